"""Image -> the model's views: native-resolution tiles and a global view.

Tiles are crops on the image's own pixel grid: never resized, because
resampling erases the neighbouring-pixel correlations that upsampling layers
and VAE decoders leave behind. The global view is the whole image at a modest
size, for layout and semantics. Training draws random tiles with the same
helpers (``train/augment.py``), so inference and training cannot drift.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .config import PreprocessConfig
from .images import CannotJudgeError

FLAT_STD = 1.0  # grey-level standard deviation (0-255) under which an image has nothing to judge


@dataclass
class ImageViews:
    """One image's model input. ``boxes``: each tile's top-left corner in image pixels
    (negative where the tile reaches into mirror padding); every tile is ``tile_size`` square."""

    tiles: torch.Tensor  # (n, 3, t, t), normalised
    boxes: list[tuple[int, int]]
    global_view: torch.Tensor  # (3, g, g), normalised
    size: tuple[int, int]  # the image's (width, height)


def tile_counts(width: int, height: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """Tiles across and down: enough to cover the image, scaled down together to at most ``max_tiles``."""
    across, down = max(1, math.ceil(width / tile)), max(1, math.ceil(height / tile))
    if across * down <= max_tiles:
        return across, down
    scale = math.sqrt(max_tiles / (across * down))
    across, down = max(1, min(across, math.floor(across * scale))), max(1, min(down, math.floor(down * scale)))
    while across * down > max_tiles:  # a side pinned at 1 tile leaves the other one over the cap
        if across > down:
            across -= 1
        else:
            down -= 1
    # Spend what is left of the budget on the side that is covered worse.
    while True:
        grow_across = (across + 1) * down <= max_tiles and across < math.ceil(width / tile)
        grow_down = across * (down + 1) <= max_tiles and down < math.ceil(height / tile)
        if not (grow_across or grow_down):
            return across, down
        if grow_across and (not grow_down or width / across >= height / down):
            across += 1
        else:
            down += 1


def _positions(length: int, tile: int, count: int) -> list[int]:
    """Evenly spread starts of ``count`` tiles over ``length`` pixels (centred, into padding, when length < tile)."""
    if length <= tile:
        return [-((tile - length) // 2)]
    if count == 1:
        return [(length - tile) // 2]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_boxes(width: int, height: int, config: PreprocessConfig) -> list[tuple[int, int]]:
    across, down = tile_counts(width, height, config.tile_size, config.max_tiles)
    xs, ys = _positions(width, config.tile_size, across), _positions(height, config.tile_size, down)
    return [(x, y) for y in ys for x in xs]


def mirror_pad(array: np.ndarray, tile: int) -> tuple[np.ndarray, int, int]:
    """Mirror-pad an HxWxC array to at least ``tile`` on each side; returns it and the (left, top) pad."""
    height, width = array.shape[:2]
    pad_y, pad_x = max(0, tile - height), max(0, tile - width)
    top, left = pad_y // 2, pad_x // 2
    if pad_x or pad_y:
        array = np.pad(array, ((top, pad_y - top), (left, pad_x - left), (0, 0)), mode="symmetric")
    return array, left, top


def crop_tiles(image: Image.Image, boxes: list[tuple[int, int]], tile: int) -> np.ndarray:
    """(n, t, t, 3) uint8 crops at ``boxes``; mirror padding where a box leaves a too-small image."""
    width, height = image.size
    if width >= tile and height >= tile:
        return np.stack([np.asarray(image.crop((x, y, x + tile, y + tile))) for x, y in boxes])
    padded, left, top = mirror_pad(np.asarray(image), tile)
    return np.stack([padded[y + top : y + top + tile, x + left : x + left + tile] for x, y in boxes])


def global_view(image: Image.Image, size: int) -> np.ndarray:
    """The whole image squashed to ``size`` x ``size`` (uint8 HxWx3)."""
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0))


def normalize(uint8_nhwc: np.ndarray | torch.Tensor, config: PreprocessConfig, channels_last: bool = True) -> torch.Tensor:
    """uint8 HWC/NHWC (or CHW/NCHW with ``channels_last=False``) -> normalised float NCHW tensor."""
    tensor = torch.from_numpy(np.array(uint8_nhwc)) if isinstance(uint8_nhwc, np.ndarray) else uint8_nhwc
    if channels_last:
        tensor = tensor.movedim(-1, -3)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return (tensor.float() / 255.0 - mean) / std


def check_judgeable(image: Image.Image, config: PreprocessConfig, small_view: np.ndarray | None = None) -> None:
    """Refuse, with a reason a user can act on, images the pixel model has no basis to judge."""
    width, height = image.size
    if min(width, height) < config.min_side:
        raise CannotJudgeError(
            f"cannot judge: the image is {width}x{height} pixels; the detector needs at least "
            f"{config.min_side} pixels on each side"
        )
    view = small_view if small_view is not None else global_view(image, 64)
    if float(view.astype(np.float32).mean(axis=2).std()) < FLAT_STD:
        raise CannotJudgeError("cannot judge: the image is a single flat colour, with no detail to analyse")


def image_to_views(image: Image.Image, config: PreprocessConfig, check: bool = True) -> ImageViews:
    """An RGB image (from ``load_image``) -> its tiles and global view (``check``: refuse unjudgeable ones)."""
    glob = global_view(image, config.global_size)
    if check:
        check_judgeable(image, config, glob)
    boxes = tile_boxes(*image.size, config)
    tiles = crop_tiles(image, boxes, config.tile_size)
    return ImageViews(normalize(tiles, config), boxes, normalize(glob, config), image.size)


def collate_views(views: list[ImageViews]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Many images' views -> (tiles, owner, global_view) for ``ConVitX.forward``."""
    tiles = torch.cat([v.tiles for v in views])
    owner = torch.cat([torch.full((len(v.boxes),), i, dtype=torch.long) for i, v in enumerate(views)])
    return tiles, owner, torch.stack([v.global_view for v in views])
