"""Scores for a model over records, and the metrics computed from them."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score
from torch.utils.data import DataLoader, Dataset

from detector.model import ConVitX
from detector.transforms import build_eval_transform

from .data import Record, load_image


class _Degraded(Dataset):
    def __init__(self, records: list[Record], transform, degrade: Callable[[Image.Image], Image.Image] | None):
        self.records, self.transform, self.degrade = records, transform, degrade

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        image = load_image(self.records[index].image)
        if self.degrade is not None:
            image = self.degrade(image)
        return self.transform(image)


@torch.inference_mode()
def predict_logits(
    model: ConVitX,
    records: list[Record],
    degrade: Callable[[Image.Image], Image.Image] | None = None,
    batch_size: int = 256,
    num_workers: int = 1,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Raw logits (N, 2) through the detector's eval transform, optionally degraded first."""
    model.eval()
    loader = DataLoader(
        _Degraded(records, build_eval_transform(model.config), degrade),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    return torch.cat([model(batch.to(device)).float().cpu() for batch in loader])


def binary_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(p_fake) >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    reals = labels == 0
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "auc": float(roc_auc_score(labels, p_fake)) if both else None,
        "fpr": float(predicted[reals].mean()) if reals.any() else None,
        "confusion": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),  # rows: true real, true fake
    }


def per_source_metrics(records: list[Record], p_fake: np.ndarray, threshold: float) -> dict:
    labels = np.array([r.label for r in records])
    sources = np.array([r.source for r in records])
    result = {"overall": binary_metrics(labels, p_fake, threshold)}
    for source in sorted(set(sources)):
        mask = sources == source
        result[source] = binary_metrics(labels[mask], p_fake[mask], threshold)
    aucs = [m["auc"] for name, m in result.items() if name != "overall" and m["auc"] is not None]
    result["overall"]["macro_auc"] = float(np.mean(aucs)) if aucs else None
    return result
