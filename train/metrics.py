"""Scores for a model over records, and the metrics computed from them."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score, roc_curve
from torch.utils.data import DataLoader, Dataset

from detector.config import DecisionRule
from detector.model import ConVitX
from detector.transforms import collate_views, image_to_views

from .data import Record, load_image


class _Degraded(Dataset):
    def __init__(self, records: list[Record], config, degrade: Callable[[Image.Image], Image.Image] | None):
        self.records, self.config, self.degrade = records, config, degrade

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        image = load_image(self.records[index].image)
        if self.degrade is not None:
            image = self.degrade(image)
        # Scored even if too small or flat for the app to judge: a metric must count every image.
        return image_to_views(image, self.config, check=False)


@torch.inference_mode()
def predict_logits(
    model: ConVitX,
    records: list[Record],
    degrade: Callable[[Image.Image], Image.Image] | None = None,
    batch_size: int = 256,
    num_workers: int = 1,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Raw logits (N, 2) through the detector's own views, optionally degraded first."""
    model.eval()
    loader = DataLoader(
        _Degraded(records, model.config.preprocess, degrade),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_views,
    )
    return torch.cat([model(*(t.to(device) for t in batch)).float().cpu() for batch in loader])


def tpr_at_fpr(labels: np.ndarray, p_fake: np.ndarray, fpr: float) -> float | None:
    """Share of AI images caught when at most ``fpr`` of the real ones are flagged (threshold set on this data)."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return None
    fprs, tprs, _ = roc_curve(labels, p_fake)
    return float(tprs[fprs <= fpr].max())


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, rule: DecisionRule) -> dict:
    """Threshold metrics, plus what users see: each verdict's precision and the share left uncertain."""
    labels = np.asarray(labels).astype(int)
    p_fake = np.asarray(p_fake)
    # Accuracy, precision, recall and FPR count every image at the threshold: the same rule with an empty band.
    predicted = dataclasses.replace(rule, uncertain_band=(rule.threshold, rule.threshold)).decide_all(p_fake)
    verdicts = rule.decide_all(p_fake)
    both = len(np.unique(labels)) == 2
    reals = labels == 0

    def verdict_precision(kind: int) -> float | None:
        mask = verdicts == kind
        return float((labels[mask] == kind).mean()) if mask.any() else None

    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "auc": float(roc_auc_score(labels, p_fake)) if both else None,
        "tpr_at_1pct_fpr": tpr_at_fpr(labels, p_fake, 0.01),
        "tpr_at_5pct_fpr": tpr_at_fpr(labels, p_fake, 0.05),
        "fpr": float(predicted[reals].mean()) if reals.any() else None,
        "confusion": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),  # rows: true real, true fake
        "ai_verdicts": int((verdicts == 1).sum()),
        "ai_precision": verdict_precision(1),
        "real_verdicts": int((verdicts == 0).sum()),
        "real_precision": verdict_precision(0),
        "uncertain_rate": float((verdicts == -1).mean()) if len(verdicts) else None,
    }


def per_source_metrics(records: list[Record], p_fake: np.ndarray, rule: DecisionRule) -> dict:
    """``records``: anything with ``.label`` and ``.source`` (Records, or cached-feature rows)."""
    labels = np.array([r.label for r in records])
    sources = np.array([r.source for r in records])
    result = {"overall": binary_metrics(labels, p_fake, rule)}
    for source in sorted(set(sources)):
        mask = sources == source
        result[source] = binary_metrics(labels[mask], p_fake[mask], rule)
    aucs = [m["auc"] for name, m in result.items() if name != "overall" and m["auc"] is not None]
    result["overall"]["macro_auc"] = float(np.mean(aucs)) if aucs else None
    return result
