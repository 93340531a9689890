"""The one config that rebuilds a ConVitX checkpoint.

It is saved as ``config.json`` next to ``model.safetensors`` so a checkpoint
carries everything needed to reproduce its predictions: architecture,
preprocessing, labels and the calibrated decision rule.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABELS = ("real", "ai_generated")
UNCERTAIN = "uncertain"

# ImageNet statistics: the backbones' convention, kept even when training from
# scratch so a checkpoint can later be swapped for a pretrained initialisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass
class ConVitXConfig:
    name: str = "convitx_tiny"
    convnext: str = "convnext_atto"
    convnext_kwargs: dict[str, Any] = field(default_factory=dict)
    swin: str = "swin_tiny_patch4_window7_224"
    swin_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    head_hidden: int = 256
    dropout: float = 0.2
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: tuple[str, str] = LABELS
    # Decision rule, fitted on validation data by `train calibrate`.
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.35, 0.65)
    # Free-form provenance (data, metrics, command line); never read by the model.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = tuple(self.mean)
        self.std = tuple(self.std)
        self.labels = tuple(self.labels)
        self.uncertain_band = tuple(self.uncertain_band)
        # JSON turns tuples into lists; timm accepts both, but a config must equal itself after a round trip.
        self.convnext_kwargs = {k: _tuples(v) for k, v in self.convnext_kwargs.items()}
        self.swin_kwargs = {k: _tuples(v) for k, v in self.swin_kwargs.items()}
        lo, hi = self.uncertain_band
        if not (0.0 <= lo <= self.threshold <= hi <= 1.0):
            raise ValueError(
                f"need 0 <= uncertain_band[0] <= threshold <= uncertain_band[1] <= 1, "
                f"got band={self.uncertain_band} threshold={self.threshold}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConVitXConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ConVitX config keys: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ConVitXConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_threshold(self, threshold: float) -> "ConVitXConfig":
        """Move the decision threshold, shifting the uncertain band with it."""
        lo, hi = self.uncertain_band
        below, above = self.threshold - lo, hi - self.threshold
        band = (max(0.0, threshold - below), min(1.0, threshold + above))
        return dataclasses.replace(self, threshold=threshold, uncertain_band=band)
