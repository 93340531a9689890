"""Named ConVitX configurations, timm-style: ``create_model("convitx_small")``."""
from __future__ import annotations

import dataclasses
from typing import Callable

from .config import BranchConfig, ConVitXConfig, PreprocessConfig

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
    """The flagship: ConvNeXt-Large on native 224 px tiles + Swin-Base on a 224 px global view.

    Meant to be fine-tuned from ImageNet weights on a GPU (configs/convitx_large.yaml); weights live on the Hub.
    RGB tiles rather than a residual input: the pretrained stem expects RGB statistics.
    """
    return ConVitXConfig(
        name="convitx_large",
        branches=[
            BranchConfig("convnext", "convnext_large", view="tiles", input="rgb"),
            BranchConfig("swin", "swin_base_patch4_window7_224", view="global", input="rgb"),
        ],
        preprocess=PreprocessConfig(tile_size=224, max_tiles=8, train_tiles=2, global_size=224),
        head_hidden=512,
        dropout=0.3,
    )


@register
def convitx_small() -> ConVitXConfig:
    """The embedded default, trained on 2 CPU cores: a narrow BatchNorm ConvNeXt on native 64 px tiles
    of RGB + neighbouring-pixel residual, and a 3-stage Swin on a 64 px global view (~0.9 M params).

    BatchNorm rather than LayerNorm in ConvNeXt (the ConvNeXt paper's ablation): from scratch it learned
    markedly faster here. The ablation behind the views and inputs is in weights/README.md.
    """
    return ConVitXConfig(
        name="convitx_small",
        branches=[
            BranchConfig(
                "convnext", "convnext_atto", view="tiles", input="rgb+npr",
                kwargs={"dims": (24, 48, 96, 192), "depths": (1, 1, 3, 1), "norm_layer": "batchnorm2d", "conv_mlp": True},
            ),
            BranchConfig(
                "swin", "swin_tiny_patch4_window7_224", view="global", input="rgb",
                kwargs={"img_size": 64, "patch_size": 4, "window_size": 4, "embed_dim": 32,
                        "depths": (1, 2, 2), "num_heads": (1, 2, 4)},
            ),
        ],
        preprocess=PreprocessConfig(tile_size=64, max_tiles=16, train_tiles=2, global_size=64),
        head_hidden=128,
        dropout=0.2,
    )


@register
def convitx_tiny() -> ConVitXConfig:
    """For tests: the same code path (tiles + global view), well under a million parameters."""
    return ConVitXConfig(
        name="convitx_tiny",
        branches=[
            BranchConfig("convnext", "convnext_atto", view="tiles", input="rgb+npr",
                         kwargs={"dims": (8, 16, 16, 32), "depths": (1, 1, 1, 1)}),
            BranchConfig(
                "swin", "swin_tiny_patch4_window7_224", view="global", input="rgb",
                kwargs={"img_size": 64, "patch_size": 4, "window_size": 4, "embed_dim": 16,
                        "depths": (1, 1), "num_heads": (1, 2)},
            ),
        ],
        preprocess=PreprocessConfig(tile_size=32, max_tiles=6, train_tiles=2, global_size=64),
        head_hidden=32,
        dropout=0.0,
    )


# Ablation variants of convitx_small (weights/README.md "Design ablation"): same size, one choice changed.
@register
def convitx_small_rgb_tiles() -> ConVitXConfig:
    """convitx_small with plain RGB tiles (no neighbouring-pixel residual)."""
    config = convitx_small()
    config.name = "convitx_small_rgb_tiles"
    config.branches[0] = dataclasses.replace(config.branches[0], input="rgb")
    return config


@register
def convitx_small_squashed() -> ConVitXConfig:
    """The 0.1 design: both branches on the whole image squashed to 64 px (no tiles)."""
    config = convitx_small()
    config.name = "convitx_small_squashed"
    config.branches = [dataclasses.replace(b, view="global", input="rgb") for b in config.branches]
    return config
