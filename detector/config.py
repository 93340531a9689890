"""The configs that rebuild a ConVitX checkpoint, saved together as ``config.json``.

Three jobs, three dataclasses, one file: the architecture (a list of branches,
each a timm backbone with the view and input it sees), the preprocessing (tile
size, tile cap, global size, normalisation) and the calibrated decision rule.
A checkpoint thereby carries everything needed to reproduce its predictions.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("real", "ai_generated")
MODEL_TYPE = "convitx"  # config.json's "model_type": how transformers' AutoConfig recognises a checkpoint
UNCERTAIN = "uncertain"

# ImageNet statistics: the backbones' convention, kept even when training from
# scratch so a checkpoint can later be swapped for a pretrained initialisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VIEWS = ("tiles", "global")
INPUTS = ("rgb", "npr", "rgb+npr")
READOUTS = ("map", "tokens")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**data)


@dataclass
class BranchConfig:
    """One backbone: which timm model, which view of the image, which input transform.

    ``view``: ``tiles`` (crops at the image's own pixel grid, never resized) or
    ``global`` (the whole image resized to ``PreprocessConfig.global_size``).
    ``input``: ``rgb``, ``npr`` (the neighbouring-pixel residual x - up(down(x)),
    Tan et al. 2024, where upsampling layers leave their trace) or ``rgb+npr``
    (both, stacked as 6 channels).
    """

    name: str
    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    view: str = "tiles"
    input: str = "rgb"
    frozen: bool = False  # parameters not trained (e.g. a pretrained feature extractor)
    # Token backbones (timm ViTs: DINOv2, CLIP, EVA, SigLIP) are read from their tokens, not an NCHW map.
    # ``blocks``: which blocks' tokens feed the head ("last", "all", or indices); with several, the head learns
    # a weighting over them (RINE). ``readout_dim``: each block's projected width before that weighting.
    readout: str = "map"  # "map" (NCHW feature map) or "tokens"
    blocks: Any = "last"
    readout_dim: int = 256
    # The global view is resized to ``image_size`` for this branch (None: the preprocessing's global size).
    image_size: int | None = None
    # A frozen branch named by reference instead of stored in model.safetensors (see detector/encoders.py):
    # {"repo", "revision", "filename", "sha256", "source": {"package", "version", "path", "format"}}.
    weights: dict[str, Any] | None = None
    # Run a frozen token backbone in bfloat16 where the CPU has native bf16 (AMX/AVX-512 BF16) or on CUDA.
    low_precision: bool = False

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; timm accepts both, but a config must equal itself after a round trip.
        self.kwargs = {k: _tuples(v) for k, v in self.kwargs.items()}
        self.blocks = self.blocks if isinstance(self.blocks, str) else list(self.blocks)
        if self.readout not in READOUTS:
            raise ValueError(f"branch {self.name!r}: readout must be one of {READOUTS}, got {self.readout!r}")
        if isinstance(self.blocks, str) and self.blocks not in ("last", "all"):
            raise ValueError(f"branch {self.name!r}: blocks must be 'last', 'all' or a list of indices, got {self.blocks!r}")
        if self.weights is not None and not self.frozen:
            raise ValueError(f"branch {self.name!r}: weights by reference are for frozen branches only")
        if self.view not in VIEWS:
            raise ValueError(f"branch {self.name!r}: view must be one of {VIEWS}, got {self.view!r}")
        if self.input not in INPUTS:
            raise ValueError(f"branch {self.name!r}: input must be one of {INPUTS}, got {self.input!r}")

    @property
    def in_chans(self) -> int:
        return 6 if self.input == "rgb+npr" else 3

    def block_indices(self, depth: int) -> list[int]:
        """The blocks ``blocks`` names, as non-negative indices of a ``depth``-block backbone."""
        if self.blocks == "last":
            return [depth - 1]
        if self.blocks == "all":
            return list(range(depth))
        return sorted({i % depth for i in self.blocks})


@dataclass
class PreprocessConfig:
    """How an image becomes the model's views.

    Tiles: a deterministic grid of ``tile_size`` crops at native resolution,
    at most ``max_tiles`` of them, spread evenly over the image (they overlap on
    small images and leave gaps on large ones). An image smaller than a tile on
    a side is mirror-padded up to it, never upsampled: resampling would paint
    over the very pixel correlations the tile branch reads. Images under
    ``min_side`` pixels on a side, or without variance, are not judged.
    """

    tile_size: int = 64
    max_tiles: int = 16
    train_tiles: int = 2  # random tiles per image and step during training
    global_size: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_side: int = 16

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.tile_size < 8 or self.global_size < 8 or self.max_tiles < 1 or self.train_tiles < 1:
            raise ValueError(f"bad preprocessing sizes: {self}")


@dataclass
class DecisionRule:
    """Temperature, threshold and uncertain band, fitted on validation data by ``train calibrate``.

    The one place that turns logits into probabilities and a probability into a
    verdict: inference, calibration and evaluation all call it.
    """

    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.35, 0.65)
    labels: tuple[str, str] = LABELS

    def __post_init__(self) -> None:
        self.uncertain_band = tuple(float(x) for x in self.uncertain_band)
        self.labels = tuple(self.labels)
        lo, hi = self.uncertain_band
        if not (0.0 <= lo <= self.threshold <= hi <= 1.0):
            raise ValueError(
                f"need 0 <= uncertain_band[0] <= threshold <= uncertain_band[1] <= 1, "
                f"got band={self.uncertain_band} threshold={self.threshold}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def p_fake(self, logits) -> np.ndarray:
        """Calibrated P(AI-generated) for (N, 2) logits (torch or numpy)."""
        logits = np.asarray(logits.detach().float().cpu() if hasattr(logits, "detach") else logits, dtype=np.float64)
        scaled = logits / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp[:, 1] / exp.sum(axis=1)

    def decide(self, p_fake: float) -> str:
        lo, hi = self.uncertain_band
        if lo < p_fake < hi:
            return UNCERTAIN
        return self.labels[1] if p_fake >= self.threshold else self.labels[0]

    def decide_all(self, p_fake: np.ndarray) -> np.ndarray:
        """Vectorised ``decide``: 1 AI-generated, 0 real, -1 uncertain."""
        lo, hi = self.uncertain_band
        p_fake = np.asarray(p_fake)
        verdict = (p_fake >= self.threshold).astype(int)
        verdict[(p_fake > lo) & (p_fake < hi)] = -1
        return verdict

    def with_threshold(self, threshold: float) -> "DecisionRule":
        """Move the threshold, shifting the uncertain band with it."""
        lo, hi = self.uncertain_band
        below, above = self.threshold - lo, hi - self.threshold
        band = (max(0.0, threshold - below), min(1.0, threshold + above))
        return dataclasses.replace(self, threshold=threshold, uncertain_band=band)

    # ----------------------------------------------------------------- the rule in a person's terms
    # One wording for the header, the verdict card, the evidence statements, the API, the CLI and the
    # model card: "AI-generated at 83% or more, Real at 25% or less, Can't tell in between".

    @property
    def ai_from(self) -> float:
        """The lowest p that is called AI-generated (``decide``: at or above the band's top, or the threshold
        when the band is empty)."""
        lo, hi = self.uncertain_band
        return hi if lo < hi else self.threshold

    @property
    def real_inclusive(self) -> bool:
        """Whether p equal to the band's bottom is still "real" (it is unless the threshold sits there)."""
        return self.uncertain_band[0] < self.threshold

    @property
    def digits(self) -> int:
        """Decimals the rule needs in percent: 0 ("83%") unless the band is too narrow to state in whole
        percent with room for a "Can't tell" value between its ends."""
        if self.uncertain_band[0] >= self.uncertain_band[1]:
            return 0
        for digits in (0, 1, 2):
            ai, real = self._edges(digits)
            if real + 1 <= ai - 1:
                return digits
        return 3

    def _edges(self, digits: int) -> tuple[int, int]:
        """(lowest "AI-generated", highest "Real") as stated, in units of 10**-digits percent."""
        real = _units(self.uncertain_band[0], digits) - (0 if self.real_inclusive else 1)
        return _units(self.ai_from, digits), real

    def describe(self) -> str:
        """The rule in percent: "AI-generated at 83% or more, Real at 25% or less, Can't tell in between"."""
        lo, hi = self.uncertain_band
        digits = self.digits
        full = 100 * 10**digits
        ai, real = (_units(self.ai_from, digits), _units(lo, digits))
        text = lambda units: f"{units / 10**digits:.{digits}f}%"  # noqa: E731
        parts = [f"AI-generated at {text(ai)} or more" if ai < full else "AI-generated only at 100%"]
        if self.real_inclusive:
            parts.append(f"Real at {text(real)} or less" if real > 0 else "Real only at 0%")
        elif real > 0:
            parts.append(f"Real below {text(real)}")
        if lo < hi:
            parts.append("Can't tell in between")
        return ", ".join(parts)

    def shown(self, p_fake: float) -> float:
        """p as a person reads it beside ``describe()``, as a fraction: whole percent (0.83), or the
        rule's own precision (``digits``).

        Within a rounding step of a stated cutoff, rounding alone could contradict the rule (82.9%
        read as "83%" next to "AI-generated at 83% or more" and a "Can't tell"); there it shows the
        neighbouring value that agrees with ``decide(p)``, under 1.5 steps (points) from p. The JSON keeps p.
        """
        digits = self.digits
        unit = 100 * 10**digits
        ai, real = self._edges(digits)
        first, last = {self.labels[1]: (ai, unit), self.labels[0]: (0, real)}.get(
            self.decide(p_fake), (real + 1, ai - 1))
        clamped = min(max(_units(p_fake, digits), first), last)
        if abs(clamped - p_fake * unit) > 1.5:  # p exactly at the threshold inside a one-sided band
            return p_fake
        return clamped / unit

    def percent(self, p_fake: float) -> str:
        """``shown(p)`` as text ("83%"); never a rounded 0% or 100% for a p strictly between."""
        return percent(p_fake, self.digits, self.shown(p_fake))

    def public(self) -> dict:
        """The rule for API users: the sentence and the exact cutoffs behind it, each named for what it is."""
        rule = {"statement": self.describe(), "ai_generated_at_or_above": self.ai_from}
        rule["real_at_or_below" if self.real_inclusive else "real_below"] = self.uncertain_band[0]
        # The real-vs-AI cut fitted on validation; with a band around it, it decides only where the band is empty.
        rule["calibrated_threshold"] = self.threshold
        return rule


def _units(x: float, digits: int = 0) -> int:
    """x in units of 10**-digits percent, halves rounded up (not to even): 0.825 -> 83."""
    return int(math.floor(x * 100 * 10**digits + 0.5 + 1e-9))


def percent(p: float, digits: int = 0, shown: float | None = None) -> str:
    """A probability in percent for a person ("83%"); never a rounded "0%" or "100%" for one strictly
    between ("<1%", ">99%"). ``shown`` (``DecisionRule.shown``) is the value to print, if not p."""
    units = _units(p if shown is None else shown, digits)
    full, step = 100 * 10**digits, f"{1 / 10**digits:.{digits}f}"
    if units <= 0 < p:
        return f"<{step}%"
    if units >= full and p < 1:
        return f">{100 - float(step):.{digits}f}%"
    return f"{units / 10**digits:.{digits}f}%"


@dataclass
class ConVitXConfig:
    name: str = "convitx_tiny"
    branches: list[BranchConfig] = field(default_factory=list)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    decision: DecisionRule = field(default_factory=DecisionRule)
    head_hidden: int = 256
    # "batchnorm" (affine at inference, so Grad-CAM's gradients see the features' scale) or "layernorm"
    # (0.1 checkpoints): a per-sample LayerNorm is scale-invariant, its gradient is orthogonal to the pooled
    # features, and the tile maps' Grad-CAM scores then cancel out instead of pointing at the evidence.
    head_norm: str = "none"
    dropout: float = 0.2
    # Free-form provenance (data, metrics, command line); never read by the model.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.branches = [b if isinstance(b, BranchConfig) else _from_dict(BranchConfig, b) for b in self.branches]
        if isinstance(self.preprocess, dict):
            self.preprocess = _from_dict(PreprocessConfig, self.preprocess)
        if isinstance(self.decision, dict):
            self.decision = _from_dict(DecisionRule, self.decision)
        if self.head_norm not in ("none", "batchnorm", "layernorm"):
            raise ValueError(f"head_norm must be none, batchnorm or layernorm, got {self.head_norm!r}")
        names = [b.name for b in self.branches]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a ConVitX needs one or more uniquely named branches, got {names}")

    # Shortcuts the rest of the code reads often.
    @property
    def labels(self) -> tuple[str, str]:
        return self.decision.labels

    @property
    def views(self) -> set[str]:
        return {b.view for b in self.branches}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConVitXConfig":
        data = dict(data)
        model_type = data.pop("model_type", MODEL_TYPE)  # absent in checkpoints saved before it was written
        if model_type != MODEL_TYPE:
            raise ValueError(f"model_type is {model_type!r}, not {MODEL_TYPE!r}: not a ConVitX config")
        if "convnext" in data and "branches" not in data:
            data = _from_legacy(data)
        data = dict(data)
        data.setdefault("head_norm", "layernorm")  # every checkpoint saved before the field existed had one
        return _from_dict(cls, data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"model_type": MODEL_TYPE, **self.to_dict()}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ConVitXConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def with_threshold(self, threshold: float) -> "ConVitXConfig":
        return dataclasses.replace(self, decision=self.decision.with_threshold(threshold))


def _from_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """The 0.1 flat layout (one ``convnext`` and one ``swin`` on a squashed image) as branches.

    Kept so the first embedded model can still be loaded and compared with its successors.
    """
    data = dict(data)
    size = data.pop("image_size", 224)
    branches = [
        {"name": "convnext", "model": data.pop("convnext"), "kwargs": data.pop("convnext_kwargs", {}), "view": "global"},
        {"name": "swin", "model": data.pop("swin"), "kwargs": data.pop("swin_kwargs", {}), "view": "global"},
    ]
    preprocess = {"global_size": size, "mean": data.pop("mean", IMAGENET_MEAN), "std": data.pop("std", IMAGENET_STD)}
    decision = {k: data.pop(k) for k in ("temperature", "threshold", "uncertain_band", "labels") if k in data}
    meta = dict(data.pop("meta", {}))
    meta["legacy_layout"] = True
    return {**data, "head_norm": "layernorm", "branches": branches, "preprocess": preprocess, "decision": decision, "meta": meta}
