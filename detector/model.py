"""ConVitX: a ConvNeXt branch and a Swin branch, pooled, concatenated, one head.

The two branches see the same image: ConvNeXt's local texture statistics and
Swin's windowed attention fail on different generators, and fusing their pooled
features is what the original ConVitX design asks for.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from .config import ConVitXConfig


class ChannelsLastToFirst(nn.Module):
    """timm's Swin returns NHWC maps; Grad-CAM and pooling expect NCHW.

    A module (not an inline permute) so Grad-CAM can hook the NCHW map directly
    instead of guessing the layout with a reshape function.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class ConVitX(nn.Module):
    def __init__(self, config: ConVitXConfig):
        super().__init__()
        self.config = config
        # num_classes=0 + global_pool="" keeps each backbone's spatial feature map.
        self.convnext = timm.create_model(
            config.convnext, pretrained=False, num_classes=0, global_pool="", **config.convnext_kwargs
        )
        self.swin = timm.create_model(
            config.swin, pretrained=False, num_classes=0, global_pool="", **config.swin_kwargs
        )
        # The fused head replaces ConvNeXt's own (norm + classifier): an unused head
        # would hold dead parameters, which DDP refuses to train around.
        self.convnext.head = nn.Identity()
        self.swin_to_nchw = ChannelsLastToFirst()
        self.pool = nn.AdaptiveAvgPool2d(1)
        fused = self.convnext.num_features + self.swin.num_features
        self.head = nn.Sequential(
            nn.LayerNorm(fused),
            nn.Dropout(config.dropout),
            nn.Linear(fused, config.head_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden, len(config.labels)),
        )

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        """The last NCHW map of each branch: Grad-CAM averages the two."""
        return [self.convnext.stages[-1], self.swin_to_nchw]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv_map = self.convnext.forward_features(x)
        swin_map = self.swin_to_nchw(self.swin.forward_features(x))
        return conv_map, swin_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_map, swin_map = self.forward_features(x)
        fused = torch.cat([self.pool(conv_map).flatten(1), self.pool(swin_map).flatten(1)], dim=1)
        return self.head(fused)


def create_model(name_or_config: str | ConVitXConfig, **overrides) -> ConVitX:
    """Build an untrained ConVitX from a registry name or a config."""
    from .registry import get_config

    config = name_or_config if isinstance(name_or_config, ConVitXConfig) else get_config(name_or_config, **overrides)
    return ConVitX(config)
