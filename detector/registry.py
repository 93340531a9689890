"""Named ConVitX configurations, timm-style: ``create_model("convitx_small")``."""
from __future__ import annotations

import dataclasses
from typing import Callable

from .config import ConVitXConfig

_REGISTRY: dict[str, Callable[[], ConVitXConfig]] = {}


def register(fn: Callable[[], ConVitXConfig]) -> Callable[[], ConVitXConfig]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> ConVitXConfig:
    if name not in _REGISTRY:
        raise KeyError(f"unknown ConVitX config {name!r}; known: {', '.join(list_models())}")
    return dataclasses.replace(_REGISTRY[name](), **overrides)


@register
def convitx_large() -> ConVitXConfig:
    """The flagship: ConvNeXt-Large + Swin-Base at 224 px. Weights live on the Hub."""
    return ConVitXConfig(
        name="convitx_large",
        convnext="convnext_large",
        swin="swin_base_patch4_window7_224",
        image_size=224,
        head_hidden=512,
        dropout=0.3,
    )


@register
def convitx_small() -> ConVitXConfig:
    """The embedded default: narrow ConvNeXt + 3-stage Swin at 64 px (~0.9 M params).

    Sized to train at ~200 images/s on 2 CPU cores; Swin ends at 4x4 so the
    Grad-CAM map is finer than ConvNeXt's 2x2. The ConvNeXt branch uses the
    BatchNorm variant (the ConvNeXt paper's BN-vs-LN ablation): trained from
    scratch here it learned CIFAKE markedly faster (val AUC 0.80 vs 0.72 after
    200 steps of the branch alone), and no ImageNet weights are at hand.
    """
    return ConVitXConfig(
        name="convitx_small",
        convnext="convnext_atto",
        convnext_kwargs={"dims": (24, 48, 96, 192), "depths": (1, 1, 3, 1), "norm_layer": "batchnorm2d", "conv_mlp": True},
        swin="swin_tiny_patch4_window7_224",
        swin_kwargs={
            "img_size": 64,
            "patch_size": 4,
            "window_size": 4,
            "embed_dim": 32,
            "depths": (1, 2, 2),
            "num_heads": (1, 2, 4),
        },
        image_size=64,
        head_hidden=128,
        dropout=0.2,
    )


@register
def convitx_tiny() -> ConVitXConfig:
    """For tests: the same code path, well under a million parameters."""
    return ConVitXConfig(
        name="convitx_tiny",
        convnext="convnext_atto",
        convnext_kwargs={"dims": (8, 16, 16, 32), "depths": (1, 1, 1, 1)},
        swin="swin_tiny_patch4_window7_224",
        swin_kwargs={
            "img_size": 64,
            "patch_size": 4,
            "window_size": 4,
            "embed_dim": 16,
            "depths": (1, 1),
            "num_heads": (1, 2),
        },
        image_size=64,
        head_hidden=32,
        dropout=0.0,
    )
