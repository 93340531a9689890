"""Training configuration: defaults < config file (JSON/YAML) < command-line flags."""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class TrainConfig:
    model: str = "convitx_small"  # registry name
    data: str = "../shared/data"  # Parquet folder/file, image folder, CSV, or Hub dataset id
    sources: Optional[list[str]] = None  # restrict to these sources (None = all)
    exclude_sources: Optional[list[str]] = None  # leave-one-source-out runs
    out: str = "runs/convitx_small"
    epochs: int = 10
    samples_per_epoch: int = 20000  # drawn with the source/class-balancing sampler
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.02
    dropout: Optional[float] = None  # override the model config's head dropout
    label_smoothing: float = 0.05
    grad_clip: float = 1.0
    augment_strength: float = 1.0
    whole_crop: float = 0.0  # probability of a random crop of the whole image before the views (second recipe)
    resize_small: bool = False  # also resize images under 2x min_side, down to min_side (second recipe)
    cifake_share: float = 0.5  # fraction of each epoch drawn from CIFAKE when present
    val_fraction: float = 0.1
    num_workers: int = 1
    cache_max_side: int = 0  # 0 keeps decoded images at native size: tiles must see the original pixel grid
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    seed: int = 0
    # Which epoch becomes best/: "best" by macro validation AUC over sources with at least
    # selection_min_per_class images per class, or "last" (the end of the cosine schedule).
    select: str = "best"
    selection_min_per_class: int = 20
    max_fpr: float = 0.05  # threshold chosen on validation so real photos are flagged at most this often
    min_precision: float = 0.95  # the uncertain band is widened until both verdicts are this precise on validation
    max_half_width: float = 0.45  # ... but no wider than this on either side of the threshold
    # Initialisation (timm-style): branch names (or "all") to start from timm's pretrained weights,
    # "branch=path/to/timm-format.safetensors" files, and branches to keep frozen.
    pretrained: Optional[list[str]] = None
    init_from: Optional[list[str]] = None
    freeze: Optional[list[str]] = None
    lr_backbone: Optional[float] = None  # learning rate of the backbones (default: lr); the head uses lr
    push_to_hub: Optional[str] = None  # org/name
    hub_revision: Optional[str] = None
    hub_private: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.select not in ("best", "last"):
            raise SystemExit(f"--select must be best or last, got {self.select!r}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field, defaulting to None so only explicit flags override the file."""
    parser.add_argument("--config", help="JSON or YAML file with TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif "list" in kind:
            parser.add_argument(flag, nargs="+", default=None)
        else:
            cast = int if "int" in kind else float if "float" in kind else str
            parser.add_argument(flag, type=cast, default=None)


def resolve(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        text = Path(args.config).read_text()
        if args.config.endswith((".yaml", ".yml")):
            import yaml

            values.update(yaml.safe_load(text) or {})
        else:
            values.update(json.loads(text))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise SystemExit(f"unknown training config keys: {sorted(unknown)}")
    for name in known:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return TrainConfig(**values)
