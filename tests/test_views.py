"""The model's views of an image: native-resolution tiles (never resized), the global view,
the "cannot judge" rule, the NPR residual and the training views.

Pixel-exact checks: the tile branch exists to read neighbouring-pixel correlations,
so a tile must hold the image's own pixels, at the place its box says.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from corpus import assert_readable_message, noise_rgb, save_tiny_checkpoint
from detector import CannotJudgeError, Detector, PreprocessConfig, get_config
from detector.model import NeighbourResidual
from detector.transforms import collate_views, crop_tiles, image_to_views, tile_boxes, tile_counts
from train.augment import TrainViews

pytestmark = pytest.mark.timeout(120)

TINY = get_config("convitx_tiny").preprocess  # 32 px tiles, at most 6
SMALL = get_config("convitx_small").preprocess  # 64 px tiles, at most 16
SIZES = [(1, 1), (15, 300), (20, 500), (500, 20), (32, 32), (33, 31), (64, 64), (100, 150), (97, 1000),
         (1024, 768), (4000, 3000), (6000, 40)]


def _uint8(tiles: torch.Tensor, config: PreprocessConfig) -> np.ndarray:
    """Normalised (n, 3, t, t) tiles back to uint8 (n, t, t, 3)."""
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return ((tiles * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------- the tile grid


@pytest.mark.parametrize("config", [TINY, SMALL, PreprocessConfig(tile_size=224, max_tiles=8),
                                    PreprocessConfig(tile_size=32, max_tiles=1), PreprocessConfig(tile_size=32, max_tiles=2)],
                         ids=["tiny", "small", "large", "cap1", "cap2"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_tile_grid_is_capped_inside_the_image_and_covers_its_ends(config, size):
    width, height = size
    boxes = tile_boxes(width, height, config)
    tile = config.tile_size
    assert 1 <= len(boxes) <= config.max_tiles
    across, down = tile_counts(width, height, tile, config.max_tiles)
    assert len(boxes) == across * down == len(set(boxes))
    for x, y in boxes:
        for start, length in ((x, width), (y, height)):
            if length >= tile:  # a big enough side: the tile lies inside the image
                assert 0 <= start and start + tile <= length, (x, y, size)
            else:  # a side shorter than a tile: the image sits centred in the (mirror-padded) tile
                assert start == -((tile - length) // 2), (x, y, size)
    xs, ys = sorted({x for x, _ in boxes}), sorted({y for _, y in boxes})
    if width >= tile and len(xs) > 1:
        assert xs[0] == 0 and xs[-1] == width - tile, "the grid reaches both edges"
    if height >= tile and len(ys) > 1:
        assert ys[0] == 0 and ys[-1] == height - tile
    # When covering the whole image fits in the cap, the grid covers it without gaps.
    full = (max(1, -(-width // tile)), max(1, -(-height // tile)))
    if full[0] * full[1] <= config.max_tiles:
        assert (across, down) == full


def test_tile_grid_uses_the_budget_on_large_images():
    assert len(tile_boxes(1024, 768, SMALL)) >= SMALL.max_tiles - 2
    assert tile_counts(96, 64, 32, 6) == (3, 2)  # exactly the image: 6 tiles edge to edge
    assert tile_boxes(96, 64, TINY) == [(0, 0), (32, 0), (64, 0), (0, 32), (32, 32), (64, 32)]


def test_tiles_are_the_images_own_pixels_never_resized():
    image = noise_rgb(150, 100, seed=3)
    views = image_to_views(Image.fromarray(image), TINY)
    tiles = _uint8(views.tiles, TINY)
    assert views.tiles.shape == (len(views.boxes), 3, 32, 32)
    for (x, y), tile in zip(views.boxes, tiles):
        np.testing.assert_array_equal(tile, image[y : y + 32, x : x + 32])
    assert views.global_view.shape == (3, TINY.global_size, TINY.global_size)
    assert views.size == (150, 100)


@pytest.mark.parametrize("size", [(32, 32), (20, 500), (500, 20), (40, 17)])
def test_small_images_are_mirror_padded_not_resized(size):
    """CIFAKE's 32x32 under 64 px tiles, and slivers: the original pixels sit unscaled in the tile's middle."""
    width, height = size
    tile = SMALL.tile_size
    image = noise_rgb(width, height, seed=width)
    views = image_to_views(Image.fromarray(image), SMALL)
    tiles = _uint8(views.tiles, SMALL)
    np.testing.assert_array_equal(tiles, crop_tiles(Image.fromarray(image), views.boxes, tile))
    for (x, y), crop in zip(views.boxes, tiles):
        # tile pixel (r, c) shows image pixel (y + r, x + c) wherever that lies inside the image
        rows = np.arange(tile)[(y + np.arange(tile) >= 0) & (y + np.arange(tile) < height)]
        cols = np.arange(tile)[(x + np.arange(tile) >= 0) & (x + np.arange(tile) < width)]
        np.testing.assert_array_equal(crop[np.ix_(rows, cols)], image[np.ix_(y + rows, x + cols)])
        # ... and the padding mirrors the image (symmetric: the pixel next to the edge repeats the edge)
        if x < 0:
            np.testing.assert_array_equal(crop[np.ix_(rows, [cols[0] - 1])], image[np.ix_(y + rows, [0])])
        if y < 0:
            np.testing.assert_array_equal(crop[np.ix_([rows[0] - 1], cols)], image[np.ix_([0], x + cols)])
    if width < tile and height < tile:
        assert views.boxes == [(-((tile - width) // 2), -((tile - height) // 2))]


def test_views_are_deterministic():
    image = Image.fromarray(noise_rgb(230, 170, seed=9))
    a, b = image_to_views(image, SMALL), image_to_views(image, SMALL)
    assert a.boxes == b.boxes
    assert torch.equal(a.tiles, b.tiles) and torch.equal(a.global_view, b.global_view)


def test_collate_views_tags_each_tile_with_its_image():
    views = [image_to_views(Image.fromarray(noise_rgb(w, h, seed=w)), TINY) for w, h in [(40, 40), (200, 100), (32, 90)]]
    tiles, owner, glob = collate_views(views)
    counts = [len(v.boxes) for v in views]
    assert tiles.shape[0] == sum(counts) and glob.shape == (3, 3, TINY.global_size, TINY.global_size)
    assert owner.tolist() == [i for i, n in enumerate(counts) for _ in range(n)]
    assert torch.equal(tiles[counts[0] : counts[0] + counts[1]], views[1].tiles)


# --------------------------------------------------------------------------- cannot judge


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory) -> Detector:
    return Detector.from_pretrained(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt")), device="cpu")


@pytest.mark.parametrize("size", [(15, 100), (100, 15), (8, 8), (1, 1)])
def test_too_small_images_cannot_be_judged(tiny_detector, size):
    image = noise_rgb(*size, seed=1)
    with pytest.raises(CannotJudgeError) as info:
        image_to_views(Image.fromarray(image), TINY)
    message = assert_readable_message(info.value)
    assert "cannot judge" in message and f"{size[0]}x{size[1]}" in message and "16" in message
    for call in (tiny_detector.predict, lambda im: tiny_detector.predict(im, cam=False),
                 lambda im: tiny_detector.check_judgeable(Image.fromarray(im))):
        with pytest.raises(CannotJudgeError, match="cannot judge") as again:
            call(image)
        assert str(again.value) == message


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (120, 30, 200)])
def test_flat_images_cannot_be_judged(tiny_detector, colour):
    image = np.zeros((80, 120, 3), np.uint8) + np.array(colour, np.uint8)
    with pytest.raises(CannotJudgeError, match="flat") as info:
        tiny_detector.predict(image)
    assert_readable_message(info.value)
    with pytest.raises(CannotJudgeError):
        tiny_detector.predict_batch([noise_rgb(40, 40), image])  # a batch names the problem, not a verdict


def test_the_smallest_judgeable_images_get_a_verdict(tiny_detector):
    for image in (noise_rgb(16, 16), noise_rgb(16, 400), np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (30, 1, 3))):
        tiny_detector.check_judgeable(Image.fromarray(image))
        prediction = tiny_detector.predict(image)
        assert 0.0 <= prediction.p_fake <= 1.0 and prediction.tiles >= 1
    assert image_to_views(Image.new("RGB", (4, 4)), TINY, check=False).tiles.shape == (1, 3, 32, 32)  # metrics count all


# --------------------------------------------------------------------------- NPR


def test_npr_residual_is_zero_on_a_nearest_upsampled_image_and_not_on_noise():
    generator = torch.Generator().manual_seed(0)
    small = torch.rand(2, 3, 16, 16, generator=generator)
    upsampled = torch.nn.functional.interpolate(small, scale_factor=2, mode="nearest")
    npr = NeighbourResidual()
    assert torch.equal(npr(upsampled), torch.zeros_like(upsampled))
    noise = torch.rand(2, 3, 32, 32, generator=generator)
    residual = npr(noise)
    assert residual.shape == noise.shape and residual.abs().mean() > 0.1
    assert torch.equal(residual[..., ::2, ::2], torch.zeros_like(residual[..., ::2, ::2]))  # the kept samples
    both = NeighbourResidual(keep_rgb=True)(noise)
    assert both.shape == (2, 6, 32, 32) and torch.equal(both[:, :3], noise) and torch.equal(both[:, 3:], residual)
    odd = torch.rand(1, 3, 33, 31, generator=generator)
    assert npr(odd).shape == odd.shape


# --------------------------------------------------------------------------- training views


@pytest.mark.parametrize("size", [(32, 32), (256, 256), (300, 120), (20, 90), (1, 1)])
@pytest.mark.parametrize("strength", [1.0, 0.0])
@pytest.mark.parametrize("name", ["convitx_tiny", "convitx_small", "convitx_large"])
def test_train_views_shapes(size, strength, name):
    config = get_config(name).preprocess
    views = TrainViews(config, strength=strength)
    image = Image.fromarray(noise_rgb(*size, seed=sum(size))) if min(size) > 1 else Image.new("RGB", size, (10, 200, 30))
    random.seed(0)
    for _ in range(4):
        tiles, glob = views(image)
        assert tiles.shape == (config.train_tiles, 3, config.tile_size, config.tile_size)
        assert glob.shape == (3, config.global_size, config.global_size)
        assert tiles.dtype == glob.dtype == torch.float32
        assert torch.isfinite(tiles).all() and torch.isfinite(glob).all()


def test_train_tiles_at_strength_zero_are_crops_on_the_pixel_grid():
    """Flips and 90-degree turns of a crop, nothing resampled: each tile matches the image exactly somewhere."""
    image = noise_rgb(48, 40, seed=5)
    views = TrainViews(TINY, strength=0.0, tiles=3)
    random.seed(1)
    for _ in range(3):
        tiles, _ = views(Image.fromarray(image))
        for tile in _uint8(tiles, TINY):
            candidates = [np.rot90(t, k) for t in (tile, tile[:, ::-1]) for k in range(4)]
            found = any(np.array_equal(c, image[y : y + 32, x : x + 32])
                        for c in candidates for y in range(40 - 31) for x in range(48 - 31))
            assert found, "a training tile is not a crop of the image at its own pixel grid"
