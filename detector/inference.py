"""The Detector: a loaded checkpoint plus its decision rule."""
from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .cam import logits_and_cam, overlay_heatmap, resize_heatmap
from .config import UNCERTAIN, ConVitXConfig
from .hub import CARD_NAME, default_model_ref, load_checkpoint
from .images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .model import ConVitX
from .transforms import build_eval_transform

HEATMAP_MAX_SIDE = 768  # heatmaps keep the image's aspect, capped so a 40 MP photo costs no 160 MB map


@dataclass
class Prediction:
    p_fake: float
    label: str
    probabilities: dict[str, float]
    threshold: float
    uncertain_band: tuple[float, float]
    heatmap: np.ndarray | None = field(default=None, repr=False)
    image: Image.Image | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-friendly: no arrays, no images."""
        return {
            "p_fake": round(self.p_fake, 6),
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "threshold": self.threshold,
            "uncertain_band": list(self.uncertain_band),
        }

    def overlay(self, image_weight: float = 0.55) -> Image.Image:
        if self.heatmap is None or self.image is None:
            raise ValueError("this prediction was made without a heatmap (cam=False)")
        return overlay_heatmap(self.image, self.heatmap, image_weight)


class Detector:
    def __init__(self, model: ConVitX, config: ConVitXConfig | None = None, source: str = "", device: str | torch.device = "cpu"):
        self.config = config or model.config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.source = source
        self.transform = build_eval_transform(self.config)
        # Grad-CAM registers hooks on the shared model: one request at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike | None = None,
        revision: str | None = None,
        threshold: float | None = None,
        device: str | None = None,
        **hub_kwargs,
    ) -> "Detector":
        """Load from a local folder or ``org/name[@revision]`` on the Hub (default: $CONVITX_MODEL or weights/)."""
        ref = ref if ref is not None else default_model_ref()
        model, config, folder = load_checkpoint(ref, revision=revision, **hub_kwargs)
        if threshold is not None:
            config = config.with_threshold(threshold)
            model.config = config
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        detector = cls(model, config, source=str(ref), device=device)
        detector.folder = folder
        return detector

    @property
    def card_path(self) -> Path | None:
        folder = getattr(self, "folder", None)
        return folder / CARD_NAME if folder and (folder / CARD_NAME).is_file() else None

    def decide(self, p_fake: float) -> str:
        lo, hi = self.config.uncertain_band
        if lo < p_fake < hi:
            return UNCERTAIN
        return self.config.labels[1] if p_fake >= self.config.threshold else self.config.labels[0]

    def predict(self, image: ImageSource, cam: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prediction:
        return self.predict_batch([image], cam=cam, max_pixels=max_pixels)[0]

    def predict_batch(
        self, images: Sequence[ImageSource], cam: bool = False, batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[Prediction]:
        """Decode every image first (an ImageError names the bad one), then predict in batches."""
        decoded = [load_image(image, max_pixels=max_pixels) for image in images]
        results: list[Prediction] = []
        for start in range(0, len(decoded), batch_size):
            results.extend(self.predict_decoded(decoded[start : start + batch_size], cam))
        return results

    def predict_decoded(self, images: list[Image.Image], cam: bool = False) -> list[Prediction]:
        """One batch of images already through ``load_image`` (RGB): no second decode or copy."""
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        with self._lock:
            if cam:
                logits, heatmaps = logits_and_cam(self.model, batch)
            else:
                with torch.inference_mode():
                    logits, heatmaps = self.model(batch), None
        probs = torch.softmax(logits.float() / self.config.temperature, dim=1).cpu().numpy()
        results = []
        for i, image in enumerate(images):
            p_fake = float(probs[i, 1])
            heatmap = None
            if heatmaps is not None:
                heatmap = resize_heatmap(heatmaps[i], _display_size(image.size))
            results.append(
                Prediction(
                    p_fake=p_fake,
                    label=self.decide(p_fake),
                    probabilities={self.config.labels[0]: float(probs[i, 0]), self.config.labels[1]: p_fake},
                    threshold=self.config.threshold,
                    uncertain_band=tuple(self.config.uncertain_band),
                    heatmap=heatmap,
                    image=image if cam else None,
                )
            )
        return results


def _display_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
