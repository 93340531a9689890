"""Temperature, threshold and uncertain band, fitted on validation data only."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar minimising validation NLL."""
    logits, labels = logits.double(), labels.long()

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / np.exp(log_t), labels))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def _macro_fpr(p_real_images: dict[str, np.ndarray], threshold: float) -> float:
    return float(np.mean([(p >= threshold).mean() for p in p_real_images.values()]))


def choose_threshold(p_fake: np.ndarray, labels: np.ndarray, sources: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold >= 0.5 whose false-positive rate on real images, averaged over
    sources, is at most ``max_fpr``: never trade real photos for recall below 0.5."""
    reals = {s: p_fake[(sources == s) & (labels == 0)] for s in np.unique(sources[labels == 0])}
    if not reals:
        return 0.5
    candidates = np.unique(np.concatenate([[0.5], p_fake[labels == 0] + 1e-6]))
    for threshold in candidates[candidates >= 0.5]:
        if _macro_fpr(reals, threshold) <= max_fpr:
            return float(min(threshold, 0.99))
    return 0.99


def choose_band(p_fake: np.ndarray, labels: np.ndarray, threshold: float, min_precision: float = 0.95,
                max_half_width: float = 0.25) -> tuple[float, float]:
    """Widen a band around the threshold until verdicts outside it are right at least
    ``min_precision`` of the time (classes weighted equally), capped at +-``max_half_width``."""
    weights = np.where(labels == 1, 0.5 / max(1, (labels == 1).sum()), 0.5 / max(1, (labels == 0).sum()))

    def precision(mask: np.ndarray, label: int) -> float:
        total = weights[mask].sum()
        return 1.0 if total == 0 else float(weights[mask & (labels == label)].sum() / total)

    steps = np.linspace(0.0, max_half_width, 51)
    lo = next((threshold - s for s in steps if precision(p_fake < threshold - s, 0) >= min_precision), threshold - max_half_width)
    hi = next((threshold + s for s in steps if precision(p_fake >= threshold + s, 1) >= min_precision), threshold + max_half_width)
    return float(max(0.0, lo)), float(min(1.0, hi))
