"""The decision rule (temperature, threshold, uncertain band), fitted on validation data only.

The band is what makes a verdict honest: outside it, "Real" and "AI-generated"
must each be right at least ``min_precision`` of the time, averaged over
sources. When no band within ``max_half_width`` of the threshold gets there,
calibration says so loudly (and the model card repeats it) instead of quietly
using the widest band.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from detector.config import LABELS, DecisionRule

MIN_VERDICTS = 5  # a source counts towards a verdict's precision once it has this many such verdicts


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


def macro_precision(verdict_mask: np.ndarray, labels: np.ndarray, sources: np.ndarray, label: int) -> float | None:
    """Precision of one kind of verdict, averaged over sources with at least MIN_VERDICTS of them."""
    values = []
    for source in np.unique(sources):
        mask = verdict_mask & (sources == source)
        if mask.sum() >= MIN_VERDICTS:
            values.append(float((labels[mask] == label).mean()))
    return float(np.mean(values)) if values else None


def choose_band(p_fake: np.ndarray, labels: np.ndarray, sources: np.ndarray, threshold: float,
                min_precision: float = 0.95, max_half_width: float = 0.45) -> tuple[tuple[float, float], dict]:
    """The narrowest band around the threshold outside which each verdict reaches ``min_precision``.

    Returns the band and, per verdict, the precision reached and whether the target was met.
    """
    steps = np.linspace(0.0, max_half_width, 91)
    found: dict[str, dict] = {}
    edges = {}
    for name, label, sign in (("ai_generated", 1, +1), ("real", 0, -1)):
        best = None
        for step in steps:
            edge = float(np.clip(threshold + sign * step, 0.0, 1.0))
            mask = p_fake >= edge if label == 1 else p_fake <= edge
            precision = macro_precision(mask, labels, sources, label)
            best = (edge, precision)
            if precision is None or precision >= min_precision:
                break
        edge, precision = best
        # No verdicts of this kind left (or none to begin with) is not a precision reached.
        reached = precision is not None and precision >= min_precision
        edges[name] = edge
        found[name] = {"precision": precision, "target": min_precision, "reached": bool(reached), "edge": edge}
    return (edges["real"], edges["ai_generated"]), found


def calibrate_rule(logits: torch.Tensor, labels: np.ndarray, sources: np.ndarray, max_fpr: float = 0.05,
                   min_precision: float = 0.95, max_half_width: float = 0.45,
                   labels_names: tuple[str, str] = LABELS) -> tuple[DecisionRule, dict]:
    """Temperature, then threshold, then band; with a report of what each verdict reached."""
    temperature = fit_temperature(torch.as_tensor(logits), torch.as_tensor(labels))
    rule = DecisionRule(temperature=temperature, labels=labels_names)
    p_fake = rule.p_fake(logits)
    threshold = choose_threshold(p_fake, labels, sources, max_fpr)
    band, precision = choose_band(p_fake, labels, sources, threshold, min_precision, max_half_width)
    rule = DecisionRule(temperature=temperature, threshold=threshold, uncertain_band=band, labels=labels_names)
    uncertain = float((rule.decide_all(p_fake) == -1).mean())
    warnings = [
        f'"{name}" verdicts reach only {info["precision"]:.1%} precision on validation (target {min_precision:.0%}) '
        f"even with the widest allowed band (±{max_half_width}); treat them with care"
        if info["precision"] is not None else
        f'"{name}" verdicts have no measurable precision on validation (no source has {MIN_VERDICTS} or more of '
        f"them outside the band; target {min_precision:.0%}); treat them with care"
        for name, info in precision.items() if not info["reached"]
    ]
    report = {"temperature": temperature, "threshold": threshold, "uncertain_band": list(band),
              "verdict_precision": precision, "uncertain_rate": uncertain, "warnings": warnings}
    return rule, report
