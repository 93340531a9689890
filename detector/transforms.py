"""Image -> model tensor. Training composes its augmentations in front of this."""
from __future__ import annotations

from torchvision.transforms import v2 as T
import torch

from .config import ConVitXConfig


def build_eval_transform(config: ConVitXConfig) -> T.Compose:
    """Squash-resize the whole image (no crop) so the heatmap covers all of it."""
    return T.Compose(
        [
            T.ToImage(),
            T.Resize((config.image_size, config.image_size), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=config.mean, std=config.std),
        ]
    )
