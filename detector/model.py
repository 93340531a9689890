"""ConVitX: backbone branches, each on its own view of the image, pooled, fused, one head.

The flagship pairs a ConvNeXt branch on native-resolution tiles (where
upsampling and decoder traces live) with a Swin branch on a global view
(layout and semantics). A branch is a timm backbone plus the input transform
and view named in its ``BranchConfig``, so a third branch needs no new code.
"""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
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
        x = self.input_transform(resize_view(x, self.config.image_size)).contiguous(memory_format=torch.channels_last)
        return self.to_nchw(self.backbone.forward_features(x))


def resize_view(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """The global view at a branch's own input size (antialiased, so a 224 px view shrinks like a thumbnail)."""
    if size is None or x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


def bf16_is_native() -> bool:
    """True where bfloat16 matmuls run in hardware (CPU with AMX/AVX-512 BF16, or CUDA): then a frozen
    encoder in bf16 is 3x faster here at no measurable cost (weights/README.md); elsewhere bf16 is emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - builds without oneDNN
        return False


class BlockReadout(nn.Module):
    """RINE (Koutlis & Papadopoulos, ECCV 2024): every read block's summary -> one vector.

    Each block's (cls, mean patch token) is standardised with statistics fitted on training
    features (fixed buffers, so Grad-CAM sees an affine map), projected by one shared layer, and the
    blocks are averaged with learned softmax weights: the head decides which depths carry the traces.
    """

    def __init__(self, n_blocks: int, dim_in: int, dim_out: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_blocks, dim_in))
        self.register_buffer("feature_std", torch.ones(n_blocks, dim_in))
        self.proj = nn.Linear(dim_in, dim_out)
        self.block_logits = nn.Parameter(torch.zeros(n_blocks))

    @torch.no_grad()
    def fit_statistics(self, features: torch.Tensor) -> None:
        """Standardise with the mean/std of (N, blocks, dim) training features."""
        features = features.float()
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-4))

    @property
    def block_weights(self) -> torch.Tensor:
        return self.block_logits.softmax(0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float() - self.feature_mean) / self.feature_std
        return torch.einsum("blf,l->bf", F.gelu(self.proj(x)), self.block_weights)


class TokenBranch(nn.Module):
    """A timm ViT-family backbone read from its tokens at several depths.

    ``forward`` returns, for each read block, the cls token beside the mean patch token: (B, blocks, 2D).
    That tensor is what the feature cache stores, so a head trained on the cache sees exactly what
    inference computes; ``readout`` is the learned weighting over blocks.
    """

    def __init__(self, config: BranchConfig, pretrained: bool = False, pretrained_file: str | None = None):
        super().__init__()
        self.config = config
        extra = {}
        if pretrained_file:
            pretrained, extra["pretrained_cfg_overlay"] = True, {"file": str(pretrained_file)}
        elif pretrained:
            extra["pretrained_cfg_overlay"] = {"hf_hub_filename": "model.safetensors"}
        self.backbone = timm.create_model(config.model, pretrained=pretrained, num_classes=0, **extra, **config.kwargs)
        self.num_prefix = self.backbone.num_prefix_tokens
        self.indices = config.block_indices(len(self.backbone.blocks))
        self.readout = BlockReadout(len(self.indices), 2 * self.backbone.embed_dim, config.readout_dim)
        self.num_features = config.readout_dim
        self.patch_size = self.backbone.patch_embed.patch_size[0]
        if config.frozen:
            self.backbone.requires_grad_(False)
        self.low_precision = bool(config.low_precision and config.frozen and bf16_is_native())
        if self.low_precision:
            self.backbone.to(torch.bfloat16)

    def train(self, mode: bool = True) -> "TokenBranch":
        super().train(mode)
        if self.config.frozen:
            self.backbone.eval()
        return self

    def _apply(self, fn, recurse=True):
        # A frozen bf16 encoder stays bf16 through .to(device) / .float() of the whole model.
        result = super()._apply(fn, recurse)
        if self.low_precision and self.backbone.cls_token.dtype != torch.bfloat16:
            self.backbone.to(torch.bfloat16)
        return result

    def _summary(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens[:, 0], tokens[:, self.num_prefix:].mean(dim=1)], dim=-1).float()

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        x = resize_view(x, self.config.image_size).to(backbone.cls_token.dtype)
        return backbone.norm_pre(backbone.patch_drop(backbone._pos_embed(backbone.patch_embed(x))))

    def _blocks(self, x: torch.Tensor, start: int, summaries: dict[int, torch.Tensor]) -> torch.Tensor:
        for i in range(start, self.indices[-1] + 1):
            x = self.backbone.blocks[i](x)
            if i in self.indices:
                summaries[i] = self._summary(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summaries: dict[int, torch.Tensor] = {}
        self._blocks(self._embed(x), 0, summaries)
        return torch.stack([summaries[i] for i in self.indices], dim=1)

    def forward_with_cam_leaf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features whose last read block is recomputed from a leaf: the tokens entering it.

        Everything before that block runs without autograd, so Grad-CAM's backward walks one block,
        not the encoder. Returns (features (B, blocks, 2D), leaf (B, tokens, D)).
        """
        last = self.indices[-1]
        summaries: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            tokens = self._embed(x)
            for i in range(last):
                tokens = self.backbone.blocks[i](tokens)
                if i in self.indices:
                    summaries[i] = self._summary(tokens)
        leaf = tokens.detach().float().requires_grad_(True)
        with torch.enable_grad():
            summaries[last] = self._summary(self.backbone.blocks[last](leaf.to(tokens.dtype)))
            features = torch.stack([summaries[i] for i in self.indices], dim=1)
        return features, leaf

    def patch_grid(self, leaf: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, tokens, D) as an NCHW map (B, D, h, w), pytorch-grad-cam's reshape transform for ViTs."""
        patches = leaf[:, self.num_prefix:]
        side = round(patches.shape[1] ** 0.5)
        return patches.reshape(patches.shape[0], side, side, -1).permute(0, 3, 1, 2)


def make_branch(config: BranchConfig, pretrained: bool = False, pretrained_file: str | None = None) -> nn.Module:
    cls = TokenBranch if config.readout == "tokens" else Branch
    return cls(config, pretrained=pretrained, pretrained_file=pretrained_file)


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
            self.branches[branch.name] = make_branch(
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
        """Each map branch's last NCHW map, by branch name (token branches: see ``TokenBranch.patch_grid``)."""
        return {name: branch.to_nchw for name, branch in self.branches.items() if isinstance(branch, Branch)}

    def forward_features(self, tiles: torch.Tensor | None, global_view: torch.Tensor | None) -> dict[str, torch.Tensor]:
        views = {"tiles": tiles, "global": global_view}
        return {name: branch(views[branch.config.view]) for name, branch in self.branches.items()}

    def pooled_features(self, maps: dict[str, torch.Tensor], owner: torch.Tensor | None, n_images: int) -> dict[str, torch.Tensor]:
        """Per image, what each frozen branch contributes before any trained layer: what the feature cache stores.

        Map branches: the spatial mean (tiles averaged per image). Token branches: their per-block summaries.
        """
        pooled = {}
        for name, branch in self.branches.items():
            if isinstance(branch, TokenBranch):
                pooled[name] = maps[name]
                continue
            vector = maps[name].mean(dim=(2, 3))
            pooled[name] = pool_tiles(vector, owner, n_images) if branch.config.view == "tiles" else vector
        return pooled

    def forward_pooled(self, pooled: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from ``pooled_features`` (the trained part: token readouts and the fused head)."""
        vectors = [branch.readout(pooled[name]) if isinstance(branch, TokenBranch) else pooled[name]
                   for name, branch in self.branches.items()]
        return self.head(torch.cat(vectors, dim=1))

    def forward_head(self, maps: dict[str, torch.Tensor], owner: torch.Tensor | None, n_images: int) -> torch.Tensor:
        return self.forward_pooled(self.pooled_features(maps, owner, n_images))

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
