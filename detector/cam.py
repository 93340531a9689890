"""Grad-CAM for every branch from the prediction's own forward pass, at almost no extra cost.

The backbones run once without autograd; only their last maps are re-attached
as leaves, so the graph that the backward pass walks is map -> pool -> head,
a few thousand operations instead of the whole network. The CAM arithmetic
(channel weights = mean gradient, weighted sum, ReLU) is pytorch-grad-cam's.
Tile maps are blended back onto the full image with a smooth window and
global/patch-token maps upsampled bicubically, so the heatmap follows content
(no tile seams, no flat patch per tile) and keeps the image's aspect.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image

from .model import ConVitX, TokenBranch
from .transforms import ImageViews

# pytorch-grad-cam's GradCAM with no target layers: no hooks, only its CAM arithmetic.
_CAM_MATH: dict[int, GradCAM] = {}


def _cam_math(model: ConVitX) -> GradCAM:
    if id(model) not in _CAM_MATH:
        _CAM_MATH.clear()
        _CAM_MATH[id(model)] = GradCAM(model=model, target_layers=[])
    return _CAM_MATH[id(model)]


def logits_and_cams(
    model: ConVitX, tiles: torch.Tensor | None, owner: torch.Tensor | None, global_view: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Logits (B, 2) and each branch's raw CAM, (tiles or images, h, w), for the predicted class."""
    n_images = global_view.shape[0] if global_view is not None else int(owner.max()) + 1
    token_branches = {name for name, branch in model.branches.items() if isinstance(branch, TokenBranch)}
    views = {"tiles": tiles, "global": global_view}
    with torch.no_grad():
        maps = {name: branch(views[branch.config.view]) for name, branch in model.branches.items() if name not in token_branches}
    leaves = {name: m.detach().float().requires_grad_(True) for name, m in maps.items()}
    for name in token_branches:
        # A token branch recomputes only its last read block from a leaf: its patch tokens become the CAM's map.
        branch = model.branches[name]
        maps[name], leaves[name] = branch.forward_with_cam_leaf(views[branch.config.view])
    with torch.enable_grad():
        logits = model.forward_head({**leaves, **{n: maps[n] for n in token_branches}}, owner, n_images)
        predicted = logits.argmax(dim=1, keepdim=True)
        grads = torch.autograd.grad(logits.gather(1, predicted).sum(), list(leaves.values()))
    math = _cam_math(model)
    cams = {}
    for (name, activation), grad in zip(leaves.items(), grads):
        if name in token_branches:
            activation, grad = (model.branches[name].patch_grid(t) for t in (activation, grad))
        cam = math.get_cam_image(None, None, None, activation.detach().float().cpu().numpy(), grad.float().cpu().numpy())
        cams[name] = np.maximum(cam, 0).astype(np.float32)
    return logits.detach(), cams


def _cell_weights(pixels: np.ndarray, start: float, tile: int, cells: int) -> np.ndarray:
    """(len(pixels), cells) linear-interpolation matrix from a tile's ``cells`` map cells onto pixel centres.

    Cell centres sit at ``start + (i + 0.5) * tile / cells``; beyond the first and last centre the edge cell's
    value holds (so a tile's map extends past its box, continuously, for the neighbours to blend into).
    """
    coord = np.clip((pixels - start) * cells / tile - 0.5, 0, cells - 1)
    low = np.floor(coord).astype(int)
    high = np.minimum(low + 1, cells - 1)
    frac = (coord - low).astype(np.float32)
    weights = np.zeros((len(pixels), cells), np.float32)
    rows = np.arange(len(pixels))
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _blend_weights(pixels: np.ndarray, centres: list[float]) -> np.ndarray:
    """(len(pixels), len(centres)) raised-cosine partition of unity over tile centres along one axis.

    Between two neighbouring centres the weight passes from one tile to the next as cos^2 (smooth, summing
    to 1 at every pixel); outside the outermost centres the outer tile holds alone. Whether tiles overlap,
    abut or leave gaps (``max_tiles`` spreads them out), no pixel sees a jump from one tile to the next.
    """
    weights = np.zeros((len(pixels), len(centres)), np.float32)
    if len(centres) == 1:
        weights[:] = 1.0
        return weights
    c = np.asarray(centres, np.float64)
    index = np.clip(np.searchsorted(c, pixels, side="right") - 1, 0, len(c) - 2)
    t = np.clip((pixels - c[index]) / (c[index + 1] - c[index]), 0.0, 1.0)
    rows = np.arange(len(pixels))
    weights[rows, index] = np.cos(t * np.pi / 2) ** 2
    weights[rows, index + 1] = np.sin(t * np.pi / 2) ** 2
    return weights


def stitch_tiles(tile_maps: np.ndarray, views: ImageViews, tile: int, display: tuple[int, int]) -> np.ndarray:
    """The tiles' maps as one smooth map over the image, at ``display`` (width, height).

    Each tile's coarse map is upsampled bilinearly where the tile was cut (and held at its edge values
    beyond), then neighbouring tiles are blended with raised-cosine weights that pass from one tile centre
    to the next. A flat patch per tile with seams between them would show where tiles were, not where
    the model looked; this map is continuous everywhere, and exactly a tile's own value at its centre.
    """
    width, height = views.size
    dw, dh = display
    sx, sy = dw / width, dh / height
    px = (np.arange(dw) + 0.5) / sx  # display pixel centres in image coordinates
    py = (np.arange(dh) + 0.5) / sy
    xs = sorted({x for x, _ in views.boxes})
    ys = sorted({y for _, y in views.boxes})
    blend_x = _blend_weights(px, [x + tile / 2 for x in xs])
    blend_y = _blend_weights(py, [y + tile / 2 for y in ys])
    out = np.zeros((dh, dw), np.float32)
    for (x, y), cam in zip(views.boxes, tile_maps):
        cam = np.asarray(cam, np.float32)
        wx, wy = blend_x[:, xs.index(x)], blend_y[:, ys.index(y)]
        cols, rows = np.flatnonzero(wx), np.flatnonzero(wy)
        if not len(cols) or not len(rows):
            continue
        # Separable bilinear upsampling of this tile's map onto the pixels it has weight on.
        up = _cell_weights(py[rows], y, tile, cam.shape[0]) @ cam @ _cell_weights(px[cols], x, tile, cam.shape[1]).T
        out[np.ix_(rows, cols)] += wy[rows, None] * wx[None, cols] * up
    return out


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch a coarse map (a global view's, or a ViT's patch grid) over the image's own (width, height).

    Bicubic, so the patch grid becomes a smooth surface rather than blocks or creases; clipped at 0 because
    bicubic overshoots a little and a CAM is never negative. OpenCV: ~20x faster than PIL's float resize.
    """
    return np.maximum(cv2.resize(heatmap.astype(np.float32), size, interpolation=cv2.INTER_CUBIC), 0)


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] over the whole image (all its tiles together, so tiles stay comparable)."""
    low, high = float(heatmap.min()), float(heatmap.max())
    return np.zeros_like(heatmap) if high - low < 1e-12 else (heatmap - low) / (high - low)


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, image_weight: float = 0.55) -> Image.Image:
    """Blend a jet-coloured heatmap over the image, at the heatmap's size."""
    height, width = heatmap.shape
    base = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(base, heatmap.clip(0, 1), use_rgb=True, image_weight=image_weight))
