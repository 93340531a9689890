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

from .cam import logits_and_cams, normalise, overlay_heatmap, resize_heatmap, stitch_tiles
from .config import ConVitXConfig
from .hub import CARD_NAME, default_model_ref, load_checkpoint
from .images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .model import ConVitX
from .transforms import ImageViews, check_judgeable, collate_views, global_view, image_to_views

HEATMAP_MAX_SIDE = 512  # heatmaps keep the image's aspect, capped: finer than any tile map, cheap to stitch and encode


@dataclass
class Prediction:
    p_fake: float
    label: str
    probabilities: dict[str, float]
    threshold: float
    uncertain_band: tuple[float, float]
    heatmap: np.ndarray | None = field(default=None, repr=False)  # fused over branches, image aspect, [0, 1]
    image: Image.Image | None = field(default=None, repr=False)
    branch_heatmaps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # same size, per branch
    tiles: int = 0  # native-resolution tiles the score is averaged over

    def to_dict(self) -> dict:
        """JSON-friendly: no arrays, no images."""
        return {
            "p_fake": round(self.p_fake, 6),
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "threshold": self.threshold,
            "uncertain_band": list(self.uncertain_band),
            "tiles": self.tiles,
        }

    def overlay(self, image_weight: float = 0.55, branch: str | None = None) -> Image.Image:
        """The fused heatmap over the image, or one branch's (``branch="convnext"``)."""
        if self.heatmap is None or self.image is None:
            raise ValueError("this prediction was made without a heatmap (cam=False)")
        heatmap = self.heatmap if branch is None else self.branch_heatmaps[branch]
        return overlay_heatmap(self.image, heatmap, image_weight)


class Detector:
    def __init__(self, model: ConVitX, config: ConVitXConfig | None = None, source: str = "", device: str | torch.device = "cpu"):
        self.config = config or model.config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.source = source
        # One model shared by threads: one forward at a time (torch already uses every core).
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
        return self.config.decision.decide(p_fake)

    def check_judgeable(self, image: Image.Image) -> None:
        """Raise ``CannotJudgeError`` for an image too small or flat to judge (cheap; before batching)."""
        check_judgeable(image, self.config.preprocess, global_view(image, 64))

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
        """One batch of images already through ``load_image`` (RGB): no second decode or copy.

        Raises ``CannotJudgeError`` if one of them is too small or flat (``check_judgeable`` first to skip it).
        """
        views = [image_to_views(image, self.config.preprocess) for image in images]
        tiles, owner, global_view_ = (t.to(self.device) for t in collate_views(views))
        with self._lock:
            if cam:
                logits, cams = logits_and_cams(self.model, tiles, owner, global_view_)
            else:
                with torch.inference_mode():
                    logits, cams = self.model(tiles, owner, global_view_), None
        p_fake = self.config.decision.p_fake(logits)
        labels = self.config.labels
        results = []
        offset = 0
        for i, (image, view) in enumerate(zip(images, views)):
            n_tiles = len(view.boxes)
            fused, per_branch = None, {}
            if cams is not None:
                per_branch = self._branch_heatmaps(cams, i, offset, view)
                fused = normalise(sum(per_branch.values()) / len(per_branch))
            offset += n_tiles
            p = float(p_fake[i])
            results.append(
                Prediction(
                    p_fake=p,
                    label=self.decide(p),
                    probabilities={labels[0]: 1.0 - p, labels[1]: p},
                    threshold=self.config.decision.threshold,
                    uncertain_band=tuple(self.config.decision.uncertain_band),
                    heatmap=fused,
                    image=image if cam else None,
                    branch_heatmaps=per_branch,
                    tiles=n_tiles,
                )
            )
        return results

    def _branch_heatmaps(self, cams: dict[str, np.ndarray], index: int, offset: int, view: ImageViews) -> dict[str, np.ndarray]:
        display = _display_size(view.size)
        maps = {}
        for branch in self.config.branches:
            cam = cams[branch.name]
            if branch.view == "tiles":
                heatmap = stitch_tiles(cam[offset : offset + len(view.boxes)], view, self.config.preprocess.tile_size, display)
            else:
                heatmap = resize_heatmap(cam[index], display)
            maps[branch.name] = normalise(heatmap)
        return maps


def _display_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
