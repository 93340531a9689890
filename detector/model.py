"""ConVitX: backbone branches, each on its own view of the image, pooled, fused, one head.

The flagship pairs a ConvNeXt branch on native-resolution tiles (where
upsampling and decoder traces live) with a Swin branch on a global view
(layout and semantics). A branch is a timm backbone plus the input transform
and view named in its ``BranchConfig``, so a third branch needs no new code.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from .config import BranchConfig, ConVitXConfig


class NeighbourResidual(nn.Module):
    """NPR (Tan et al., CVPR 2024): ``x - up(down(x))`` with nearest 2x resampling.

    Upsampling layers make each 2x2 neighbourhood correlated; the residual keeps
    exactly that local structure and drops the content.
    """

    def __init__(self, keep_rgb: bool = False):
        super().__init__()
        self.keep_rgb = keep_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        down = x[..., ::2, ::2]
        up = down.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :height, :width]
        residual = x - up
        return torch.cat([x, residual], dim=1) if self.keep_rgb else residual


class ToNCHW(nn.Module):
    """Put a backbone's last map in NCHW (timm's Swin emits NHWC).

    A module, not an inline permute, so Grad-CAM hooks one NCHW map per branch.
    """

    def __init__(self, layout: str):
        super().__init__()
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if self.layout == "NHWC" else x


class Branch(nn.Module):
    def __init__(self, config: BranchConfig, pretrained: bool = False, pretrained_file: str | None = None):
        super().__init__()
        self.config = config
        self.input_transform = (
            NeighbourResidual(keep_rgb=config.input == "rgb+npr") if config.input != "rgb" else nn.Identity()
        )
        extra = {}
        if pretrained_file:
            # timm's own path for local weights: it drops the classifier and adapts in_chans as for Hub weights.
            pretrained, extra["pretrained_cfg_overlay"] = True, {"file": str(pretrained_file)}
        elif pretrained:
            # timm's Hub path, pinned to model.safetensors: without the pin, a repo lacking it makes timm
            # fall back to downloading and unpickling pytorch_model.bin, which ConVitX never does.
            extra["pretrained_cfg_overlay"] = {"hf_hub_filename": "model.safetensors"}
        # num_classes=0 + global_pool="" keeps the spatial feature map.
        self.backbone = timm.create_model(
            config.model, pretrained=pretrained, num_classes=0, global_pool="", in_chans=config.in_chans,
            **extra, **config.kwargs,
        )
        # The fused head replaces each backbone's own (ConvNeXt's holds a norm): an unused
        # head would hold dead parameters, which DDP refuses to train around.
        if hasattr(self.backbone, "head"):
            self.backbone.head = nn.Identity()
        self.to_nchw = ToNCHW(getattr(self.backbone, "output_fmt", "NCHW"))
        self.num_features = self.backbone.num_features
        if config.frozen:
            self.requires_grad_(False)

    def train(self, mode: bool = True) -> "Branch":
        # A frozen branch is a fixed feature extractor: its BatchNorm statistics stay put too.
        return super().train(mode and not self.config.frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last input lets oneDNN run the depthwise convolutions 2-4x faster on CPU (same result).
        x = self.input_transform(x).contiguous(memory_format=torch.channels_last)
        return self.to_nchw(self.backbone.forward_features(x))


def pool_tiles(vectors: torch.Tensor, owner: torch.Tensor, n_images: int) -> torch.Tensor:
    """Mean of each image's tile vectors: (tiles, C) -> (images, C).

    The aggregation rule: every tile of an image counts the same, so one
    decisive region among many tiles moves the score in proportion to its area.
    """
    sums = torch.zeros(n_images, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    sums.index_add_(0, owner, vectors)
    counts = torch.bincount(owner, minlength=n_images).clamp_min(1).to(vectors.dtype)
    return sums / counts[:, None]


class ConVitX(nn.Module):
    def __init__(self, config: ConVitXConfig, pretrained: dict[str, bool | str] | None = None):
        """``pretrained``: branch name -> True (timm's Hub weights) or a local timm-format file."""
        super().__init__()
        self.config = config
        pretrained = pretrained or {}
        self.branches = nn.ModuleDict()
        for branch in config.branches:
            init = pretrained.get(branch.name, False)
            self.branches[branch.name] = Branch(
                branch, pretrained=init is True, pretrained_file=init if isinstance(init, str) else None
            )
        fused = sum(b.num_features for b in self.branches.values())
        self.head = nn.Sequential(
            {"none": nn.Identity, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}[config.head_norm](fused),
            nn.Dropout(config.dropout),
            nn.Linear(fused, config.head_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, len(config.labels)),
        )
        if config.meta.get("legacy_layout"):
            self._register_load_state_dict_pre_hook(_legacy_keys)

    @property
    def cam_target_layers(self) -> dict[str, nn.Module]:
        """Each branch's last NCHW map, by branch name."""
        return {name: branch.to_nchw for name, branch in self.branches.items()}

    def forward_features(self, tiles: torch.Tensor | None, global_view: torch.Tensor | None) -> dict[str, torch.Tensor]:
        views = {"tiles": tiles, "global": global_view}
        return {name: branch(views[branch.config.view]) for name, branch in self.branches.items()}

    def forward_head(self, maps: dict[str, torch.Tensor], owner: torch.Tensor | None, n_images: int) -> torch.Tensor:
        vectors = []
        for name, branch in self.branches.items():
            vector = maps[name].mean(dim=(2, 3))
            if branch.config.view == "tiles":
                vector = pool_tiles(vector, owner, n_images)
            vectors.append(vector)
        return self.head(torch.cat(vectors, dim=1))

    def forward(self, tiles: torch.Tensor | None, owner: torch.Tensor | None, global_view: torch.Tensor | None) -> torch.Tensor:
        """Logits (images, 2). ``tiles`` (T, C, t, t) belong to images ``owner`` (T,); ``global_view`` (images, C, g, g)."""
        n_images = global_view.shape[0] if global_view is not None else int(owner.max()) + 1
        return self.forward_head(self.forward_features(tiles, global_view), owner, n_images)


def _legacy_keys(state_dict, prefix, *args) -> None:
    """0.1 checkpoints named the backbones ``convnext.*`` / ``swin.*``."""
    for key in list(state_dict):
        for name in ("convnext", "swin"):
            if key.startswith(prefix + name + "."):
                state_dict[f"{prefix}branches.{name}.backbone.{key[len(prefix + name) + 1:]}"] = state_dict.pop(key)


def create_model(name_or_config: str | ConVitXConfig, pretrained: dict[str, bool | str] | None = None, **overrides) -> ConVitX:
    """Build a ConVitX from a registry name or a config (untrained unless ``pretrained`` says so)."""
    from .registry import get_config

    config = name_or_config if isinstance(name_or_config, ConVitXConfig) else get_config(name_or_config, **overrides)
    return ConVitX(config, pretrained=pretrained)
