"""Grad-CAM: the heatmap must point at what the model actually looks at, at native resolution.

The key tests train real convitx_tiny models (CPU, a few seconds) on synthetic
images whose class is decided by one bright textured square at a random
position, then check that the stitched heatmap's mass follows the square:
from quadrant to quadrant, and across the boundaries between tiles (where a
wrong box, a transposed tile map or a misplaced stitch would send it elsewhere).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from corpus import noise_rgb, torch_threads
from detector import ConVitX, Detector, create_model, get_config
from detector.cam import logits_and_cams, stitch_tiles
from detector.inference import HEATMAP_MAX_SIDE
from detector.transforms import ImageViews, collate_views, image_to_views

pytestmark = pytest.mark.timeout(300)

SIDE = 64  # training images: 2 x 2 tiles of 32 px for convitx_tiny
PATCH = 14  # the square's side, in native pixels at every image size
QUADRANTS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


# --------------------------------------------------------------------------- synthetic task


def _patch(height: int, width: int) -> np.ndarray:
    """Bright (0.85-1.0) checkerboard with 4 px cells."""
    rows, cols = np.indices((height, width))
    cells = (rows // 4 + cols // 4) % 2
    return np.repeat((0.85 + 0.15 * cells)[..., None], 3, axis=2)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.35, 0.1, (height, width, 3)).clip(0, 1)


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((image * 255 + 0.5).astype(np.uint8))


TRAIN_SIZES = [(64, 64), (64, 96), (96, 64)]  # (height, width): 4 or 6 tiles of 32 px, edge to edge


def _training_batch(n: int, rng: np.random.Generator, size: tuple[int, int] = (SIDE, SIDE)):
    """Class 1: the square anywhere (often across a tile boundary); class 0: the same noise, no square."""
    height, width = size
    images = _background(n * height, width, rng).reshape(n, height, width, 3)
    labels = rng.integers(0, 2, n)
    for i in np.flatnonzero(labels):
        r, c = rng.integers(0, height - PATCH + 1), rng.integers(0, width - PATCH + 1)
        images[i, r : r + PATCH, c : c + PATCH] = _patch(PATCH, PATCH)
    return [_pil(image) for image in images], labels


def _with_patch_at(r: int, c: int, height: int, width: int, seed: int = 7) -> Image.Image:
    image = _background(height, width, np.random.default_rng(seed))
    image[r : r + PATCH, c : c + PATCH] = _patch(PATCH, PATCH)
    return _pil(image)


def _with_patch_in(quadrant: tuple[int, int], height: int, width: int) -> tuple[Image.Image, tuple[int, int]]:
    """A test image with the square centred in one quadrant; returns it and the square's top-left corner."""
    qr, qc = quadrant
    r = qr * (height // 2) + (height // 2 - PATCH) // 2
    c = qc * (width // 2) + (width // 2 - PATCH) // 2
    return _with_patch_at(r, c, height, width), (r, c)


def _quadrant_means(heatmap: np.ndarray) -> np.ndarray:
    h, w = heatmap.shape
    return np.array(
        [
            [heatmap[: h // 2, : w // 2].mean(), heatmap[: h // 2, w // 2 :].mean()],
            [heatmap[h // 2 :, : w // 2].mean(), heatmap[h // 2 :, w // 2 :].mean()],
        ]
    )


def _far_from(heatmap: np.ndarray, r: int, c: int, margin: int = 16) -> np.ndarray:
    """The heatmap outside the square grown by ``margin`` px on each side."""
    mask = np.ones(heatmap.shape, bool)
    mask[max(0, r - margin) : r + PATCH + margin, max(0, c - margin) : c + PATCH + margin] = False
    return heatmap[mask]


def _train(config, seed: int = 0) -> Detector:
    """Train on the detector's own inference views until 10 batches of 32 in a row are right with loss < 0.1 (<= 400 steps)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ConVitX(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    streak = 0
    for step in range(400):
        images, labels = _training_batch(32, rng, TRAIN_SIZES[step % len(TRAIN_SIZES)])
        tiles, owner, glob = collate_views([image_to_views(image, config.preprocess) for image in images])
        logits = model(tiles, owner, glob)
        y = torch.from_numpy(labels)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        # Right *and* confident: a model that barely separates the classes has no evidence map to show.
        streak = streak + 1 if bool((logits.argmax(1) == y).all()) and loss.item() < 0.1 else 0
        if streak >= 10:
            break
    model.eval()
    return Detector(model)


@pytest.fixture(scope="module")
def trained() -> Detector:
    """convitx_tiny as registered: a tile branch (ConvNeXt, RGB + NPR) and a global branch (Swin)."""
    return _train(get_config("convitx_tiny"))


@pytest.fixture(scope="module")
def tiles_only() -> Detector:
    """convitx_tiny's tile branch alone: the verdict, and so the map, can only come from the stitched tiles."""
    config = get_config("convitx_tiny")
    return _train(dataclasses.replace(config, branches=[b for b in config.branches if b.view == "tiles"]))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("which", ["trained", "tiles_only"])
def test_the_synthetic_task_is_learned(which, request):
    """Precondition for the localisation tests: the model really detects the square."""
    detector = request.getfixturevalue(which)
    rng = np.random.default_rng(123)
    images, labels = [], []
    for size in TRAIN_SIZES:
        batch, batch_labels = _training_batch(32, rng, size)
        images, labels = images + batch, [*labels, *batch_labels]
    predictions = detector.predict_batch(images, cam=False)
    accuracy = np.mean([(p.p_fake > 0.5) == bool(y) for p, y in zip(predictions, labels)])
    assert accuracy >= 0.95, accuracy


@pytest.mark.timeout(400)
@pytest.mark.parametrize("size", TRAIN_SIZES, ids=["64x64", "96x64", "64x96"])
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_heatmap_follows_the_patch(trained, where, size):
    quadrant = QUADRANTS[where]
    height, width = size
    image, (r, c) = _with_patch_in(quadrant, height, width)
    prediction = trained.predict(image)
    assert prediction.p_fake > 0.5, "the model should call the square 'ai_generated'"
    heatmap = prediction.heatmap
    assert heatmap.shape == (height, width)
    means = _quadrant_means(heatmap)
    assert np.unravel_index(means.argmax(), means.shape) == quadrant, means.round(3)
    share = means[quadrant] / means.sum()
    assert share > 0.5, f"only {share:.2f} of the heatmap mass in the square's quadrant: {means.round(3)}"
    assert heatmap[r : r + PATCH, c : c + PATCH].mean() > 2 * _far_from(heatmap, r, c).mean()


@pytest.mark.timeout(400)
@pytest.mark.parametrize("corner", [(25, 25), (25, 57), (9, 25), (41, 57)],
                         ids=["four-tiles-left", "four-tiles-right", "two-tiles-across", "two-tiles-lower"])
def test_heatmap_follows_a_patch_across_tile_boundaries(trained, corner):
    """96x64 is six 32 px tiles edge to edge: these squares straddle two or four of them."""
    r, c = corner
    prediction = trained.predict(_with_patch_at(r, c, 64, 96))
    assert prediction.tiles == 6 and prediction.p_fake > 0.75
    heatmap = prediction.heatmap
    inside = heatmap[r : r + PATCH, c : c + PATCH].mean()
    # 1.5x, not 2x: the fused map averages in the Swin branch's coarse 4x4 global map, which is diffuse.
    assert inside > 1.5 * _far_from(heatmap, r, c).mean(), (inside, _far_from(heatmap, r, c).mean())
    heat = {(x, y): heatmap[y : y + 32, x : x + 32].mean() for y in (0, 32) for x in (0, 32, 64)}
    x, y = max(heat, key=heat.get)
    assert x < c + PATCH and c < x + 32 and y < r + PATCH and r < y + 32, f"hottest tile {(x, y)} misses the square"


def _straddling_corners(n: int, seed: int = 5) -> list[tuple[int, int]]:
    """Top-left corners of squares that cross at least one tile boundary of the 96x64 grid."""
    rng, corners = np.random.default_rng(seed), []
    while len(corners) < n:
        r, c = int(rng.integers(0, 64 - PATCH + 1)), int(rng.integers(0, 96 - PATCH + 1))
        if r < 32 < r + PATCH or any(c < edge < c + PATCH for edge in (32, 64)):
            corners.append((r, c))
    return corners


@pytest.mark.timeout(400)
def test_tile_branch_lights_the_tiles_that_hold_the_patch(tiles_only):
    """The verdict comes from the tiles alone: for squares cut by tile boundaries, the stitched map's hottest
    tile holds part of the square, and the square is hotter than the rest of the image.

    Judged over 16 positions: the tiny tile branch has one CAM cell per 32 px tile, so one tile is lit or not,
    and a single position can fall either way; a wrong box or stitch would miss almost always.
    """
    hits, ratios = 0, []
    for r, c in _straddling_corners(16):
        prediction = tiles_only.predict(_with_patch_at(r, c, 64, 96))
        heatmap = prediction.branch_heatmaps["convnext"]
        np.testing.assert_array_equal(heatmap, prediction.heatmap)  # one branch: the fused map is its map
        heat = {(x, y): heatmap[y : y + 32, x : x + 32].mean() for y in (0, 32) for x in (0, 32, 64)}
        x, y = max(heat, key=heat.get)
        hits += x < c + PATCH and c < x + 32 and y < r + PATCH and r < y + 32
        ratios.append(heatmap[r : r + PATCH, c : c + PATCH].mean() / max(1e-6, _far_from(heatmap, r, c).mean()))
    assert hits >= 12, f"the hottest tile held the square for only {hits} of 16 positions"
    assert np.median(ratios) > 2, np.round(ratios, 2)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_each_branch_map_follows_the_patch(trained, where):
    """Per branch: the tile branch's stitched map and the Swin branch's global map (NCHW, not transposed)."""
    quadrant = QUADRANTS[where]
    image, _ = _with_patch_in(quadrant, SIDE, SIDE)
    prediction = trained.predict(image)
    assert set(prediction.branch_heatmaps) == {"convnext", "swin"}
    for name, heatmap in prediction.branch_heatmaps.items():
        means = _quadrant_means(heatmap)
        assert means.sum() > 0, f"the {name} map is all zero"
        assert np.unravel_index(means.argmax(), means.shape) == quadrant, (name, means.round(3))


# --------------------------------------------------------------------------- the cheap CAM is the real CAM


def _inputs(model: ConVitX, images: list[np.ndarray]):
    return collate_views([image_to_views(Image.fromarray(image), model.config.preprocess) for image in images])


def test_cheap_cam_gives_the_logits_of_a_plain_forward_and_the_full_graph_cam(trained):
    """Backbones under no_grad, maps re-attached as leaves: same logits, same CAM as autograd through everything."""
    model = trained.model
    images = [noise_rgb(w, h, seed=w) for w, h in [(64, 64), (150, 90), (40, 200)]]
    tiles, owner, glob = _inputs(model, images)
    logits, cams = logits_and_cams(model, tiles, owner, glob)
    with torch.no_grad():
        plain = model(tiles, owner, glob)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-6)

    maps = model.forward_features(tiles, glob)  # with autograd through the backbones this time
    for tensor in maps.values():
        tensor.retain_grad()
    full = model.forward_head(maps, owner, len(images))
    full.gather(1, full.argmax(1, keepdim=True)).sum().backward()
    model.zero_grad(set_to_none=True)
    for name, tensor in maps.items():
        weights = tensor.grad.mean(dim=(2, 3), keepdim=True)
        expected = torch.relu((weights * tensor).sum(1)).detach().numpy()
        assert cams[name].shape == expected.shape
        np.testing.assert_allclose(cams[name], expected, rtol=1e-4, atol=1e-6 * max(1.0, float(expected.max())))
    assert sum(float(c.max()) for c in cams.values()) > 0, "every CAM is zero: the check would be vacuous"


def test_stitch_places_each_tile_map_at_its_box():
    """Constant maps per tile: the stitched map has each tile's value at the tile's centre (in the right place,
    at any display size), blends monotonically between neighbours, and holds the outer tiles' values at the edges."""
    views = image_to_views(Image.fromarray(noise_rgb(96, 64)), get_config("convitx_tiny").preprocess)
    values = np.arange(1, len(views.boxes) + 1, dtype=np.float32)
    maps = np.repeat(values[:, None, None], 2, axis=1).repeat(2, axis=2)  # (6, 2, 2)
    stitched = stitch_tiles(maps, views, 32, (96, 64))
    assert stitched.shape == (64, 96)
    for (x, y), value in zip(views.boxes, values):
        assert stitched[y + 15 : y + 17, x + 15 : x + 17].mean() == pytest.approx(value, abs=0.01), (x, y)
    assert stitched[:16, :16].min() == pytest.approx(1) and stitched[48:, 80:].max() == pytest.approx(6)
    assert (np.diff(stitched[16, 16:80]) >= 0).all() and (np.diff(stitched[16:48, 48]) >= 0).all()
    half = stitch_tiles(maps, views, 32, (48, 32))  # a display half the size keeps the layout
    for (x, y), value in zip(views.boxes, values):
        assert half[y // 2 + 7 : y // 2 + 9, x // 2 + 7 : x // 2 + 9].mean() == pytest.approx(value, abs=0.02), (x, y)
    # An image with gaps between tiles: every pixel has a value, between the values of the tiles around it.
    sparse = ImageViews(views.tiles[:4], [(0, 0), (68, 0), (0, 68), (68, 68)], views.global_view, (100, 100))
    gaps = stitch_tiles(maps[:4], sparse, 32, (100, 100))
    assert gaps[10, 10] == pytest.approx(1) and gaps[90, 90] == pytest.approx(4)
    assert 1 < gaps[10, 50] < 2 and 1 < gaps[50, 10] < 3 and gaps[10, 45] < gaps[10, 55]
    # A transposed tile map would be caught: a map with a hot left column stays on the left.
    left = np.zeros((1, 4, 4), np.float32)
    left[0, :, 0] = 1.0
    one = ImageViews(views.tiles[:1], [(0, 0)], views.global_view, (32, 32))
    placed = stitch_tiles(left, one, 32, (32, 32))
    assert placed[:, :4].min() > 0.99 and placed[:, 16:].max() < 0.01


def _jumps(heatmap: np.ndarray, edges_x: list[int], edges_y: list[int]) -> tuple[float, float]:
    """The largest step between neighbouring pixels across a tile edge, and the largest one anywhere else."""
    across = np.abs(np.diff(heatmap, axis=1))  # across[:, i] is the step from column i to i + 1
    down = np.abs(np.diff(heatmap, axis=0))
    at_x, at_y = np.zeros(across.shape[1], bool), np.zeros(down.shape[0], bool)
    at_x[[e - 1 for e in edges_x]] = True
    at_y[[e - 1 for e in edges_y]] = True
    at_edge = max(across[:, at_x].max(initial=0), down[at_y].max(initial=0))
    inside = max(across[:, ~at_x].max(initial=0), down[~at_y].max(initial=0))
    return float(at_edge), float(inside)


@pytest.mark.timeout(400)
def test_tile_heatmap_has_no_seams(tiles_only):
    """The trained tile branch's real stitched map (one CAM cell per 32 px tile, so the old stitch was one
    flat patch per tile): across every tile edge it changes no more than it does inside the tiles, and it
    does change (a flat map would pass vacuously). A blocky map has all its change at the edges and fails."""
    for r, c in _straddling_corners(4, seed=11):
        prediction = tiles_only.predict(_with_patch_at(r, c, 64, 96))
        heatmap = prediction.branch_heatmaps["convnext"]
        assert heatmap.max() - heatmap.min() > 0.5, "the map is flat: nothing to check"
        at_edge, inside = _jumps(heatmap, [32, 64], [32])
        assert inside > 0, "all the map's change is at tile edges: one flat patch per tile"
        assert at_edge <= 1.5 * inside, f"a seam: a step of {at_edge:.3f} across a tile edge, at most {inside:.3f} inside"
        # Smooth, not merely seamless: no step anywhere is a large part of the map's range.
        assert max(at_edge, inside) < 0.15, (at_edge, inside)


def test_spread_out_tiles_blend_without_seams(untrained):
    """A 150x100 image gets 6 tiles of 32 px spread over it (overlaps down, gaps across): the real (untrained)
    tile branch's stitched map is a smooth surface, no step between neighbouring pixels over a tenth of its
    range. Taking the nearest tile's patch instead would step by up to the whole range where two tiles meet."""
    for seed in range(3):
        prediction = untrained.predict(noise_rgb(150, 100, seed=seed))
        assert prediction.tiles > 1
        heatmap = prediction.branch_heatmaps["convnext"]
        assert heatmap.max() - heatmap.min() > 0.5
        steps = max(np.abs(np.diff(heatmap, axis=0)).max(), np.abs(np.diff(heatmap, axis=1)).max())
        assert steps < 0.1, f"a step of {steps:.3f} between neighbouring pixels"


@pytest.mark.parametrize("where", list(QUADRANTS))
def test_target_layer_activations_are_spatially_aligned(where):
    """Untrained check of the layout: changing one quadrant of a 64x64 image changes only that quadrant's
    tile map (tiles never see each other) and the Swin map most there (its windows are local)."""
    torch.manual_seed(0)
    model = create_model("convitx_tiny").eval()
    quadrant = QUADRANTS[where]
    base = _background(SIDE, SIDE, np.random.default_rng(1))
    patched, (r, c) = _with_patch_in(quadrant, SIDE, SIDE)
    pair = [_pil(base), Image.fromarray(np.asarray(_pil(base)).copy())]
    pair[1].paste(patched.crop((c, r, c + PATCH, r + PATCH)), (c, r))
    views = [image_to_views(image, model.config.preprocess) for image in pair]
    assert views[0].boxes == [(0, 0), (32, 0), (0, 32), (32, 32)]
    with torch.no_grad():
        maps = [model.forward_features(v.tiles, v.global_view[None]) for v in views]
    tile_change = (maps[1]["convnext"] - maps[0]["convnext"]).abs().sum(dim=(1, 2, 3)).numpy()
    changed = [i for i, (x, y) in enumerate(views[0].boxes) if (y // 32, x // 32) == quadrant]
    assert tile_change[changed[0]] > 0 and np.delete(tile_change, changed).max() == 0, tile_change
    swin_change = (maps[1]["swin"][0] - maps[0]["swin"][0]).abs().sum(0).numpy()
    means = _quadrant_means(swin_change)
    assert np.unravel_index(means.argmax(), means.shape) == quadrant, means.round(4)
    others = [means[q] for q in np.ndindex(2, 2) if q != quadrant]
    assert max(others) < 1e-5 * means[quadrant], means


# --------------------------------------------------------------------------- shapes and consistency


@pytest.fixture(scope="module")
def untrained() -> Detector:
    torch.manual_seed(1)
    return Detector(create_model("convitx_tiny"))


def _display(width: int, height: int) -> tuple[int, int]:
    """Heatmap (rows, cols): the image's own size, scaled down to HEATMAP_MAX_SIDE on the long side if larger."""
    scale = min(1.0, HEATMAP_MAX_SIDE / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


@pytest.mark.parametrize(
    "size",
    [(300, 150), (150, 300), (64, 64), (16, 40), (20, 500), (2000, 1000), (500, 1536)],
)
def test_heatmap_keeps_the_aspect(untrained, size):
    width, height = size
    prediction = untrained.predict(noise_rgb(width, height, seed=width))
    heatmap = prediction.heatmap
    expected = _display(width, height)
    assert heatmap.shape == expected
    if max(size) > HEATMAP_MAX_SIDE:  # capped on the long side, same aspect
        assert max(expected) == HEATMAP_MAX_SIDE
        assert expected[0] / expected[1] == pytest.approx(height / width, rel=0.01)
    else:
        assert expected == (height, width)
    assert max(heatmap.shape) <= HEATMAP_MAX_SIDE
    assert heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() > heatmap.min(), "a flat heatmap explains nothing"
    assert prediction.image.size == size


@pytest.mark.parametrize("size", [(300, 150), (40, 200), (1000, 700)])
def test_every_branch_has_its_own_map_at_the_images_aspect(untrained, size):
    width, height = size
    prediction = untrained.predict(noise_rgb(width, height, seed=3))
    maps = prediction.branch_heatmaps
    assert set(maps) == {b.name for b in untrained.config.branches} == {"convnext", "swin"}
    for name, heatmap in maps.items():
        assert heatmap.shape == prediction.heatmap.shape, name
        assert heatmap.dtype == np.float32 and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert not np.allclose(maps["convnext"], maps["swin"], atol=1e-3), "the branches look at different things"
    np.testing.assert_allclose(  # the fused map is the normalised mean of the branch maps
        prediction.heatmap, _normalised(np.mean([maps["convnext"], maps["swin"]], axis=0)), atol=1e-5)
    a = np.asarray(prediction.overlay(branch="convnext"), dtype=np.float32)
    b = np.asarray(prediction.overlay(branch="swin"), dtype=np.float32)
    assert a.shape == b.shape == (prediction.heatmap.shape[0], prediction.heatmap.shape[1], 3)
    assert np.abs(a - b).mean() > 1.0
    with pytest.raises(KeyError):
        prediction.overlay(branch="nope")


def _normalised(heatmap: np.ndarray) -> np.ndarray:
    low, high = heatmap.min(), heatmap.max()
    return (heatmap - low) / (high - low)


def test_heatmap_follows_exif_orientation(untrained, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(noise_rgb(300, 150)).save(path, exif=exif)  # stored 300x150, shown 150x300
    prediction = untrained.predict(path)
    assert prediction.heatmap.shape == (300, 150)
    assert prediction.overlay().size == (150, 300)


def test_cam_shares_the_forward(untrained):
    for seed, size in enumerate([(64, 64), (200, 90), (33, 120)]):
        image = noise_rgb(*size, seed=seed)
        with_cam = untrained.predict(image, cam=True)
        without = untrained.predict(image, cam=False)
        assert abs(with_cam.p_fake - without.p_fake) < 1e-6
        assert with_cam.label == without.label
        assert without.heatmap is None and without.image is None


def test_cam_leaves_the_model_clean(untrained):
    """Grad-CAM hooks and gradients must not outlive the call (the app shares one model)."""
    model = untrained.model
    untrained.predict(noise_rgb(50, 50))
    assert all(p.grad is None for p in model.parameters())
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks, module
    assert not model.training
    # A second call on another image gives a different map: nothing cached.
    a = untrained.predict(noise_rgb(50, 50, seed=1)).heatmap
    b = untrained.predict(noise_rgb(50, 50, seed=2)).heatmap
    assert not np.array_equal(a, b)


def test_predict_batch_with_cam_equals_per_image(untrained):
    images = [noise_rgb(w, h, seed=i) for i, (w, h) in enumerate([(64, 64), (120, 80), (50, 140), (90, 90), (200, 60)])]
    batched = untrained.predict_batch(images, cam=True, batch_size=3)  # two batches: 3 + 2
    assert len(batched) == len(images)
    for image, from_batch in zip(images, batched):
        alone = untrained.predict(image, cam=True)
        assert from_batch.p_fake == pytest.approx(alone.p_fake, abs=1e-6)
        assert from_batch.label == alone.label
        assert from_batch.heatmap.shape == alone.heatmap.shape == (image.shape[0], image.shape[1])
        np.testing.assert_allclose(from_batch.heatmap, alone.heatmap, atol=1e-4)


def test_predict_batch_without_cam_equals_per_image(untrained):
    images = [noise_rgb(40 + 10 * i, 60, seed=i) for i in range(5)]
    batched = untrained.predict_batch(images, batch_size=2)
    for image, from_batch in zip(images, batched):
        assert from_batch.heatmap is None
        assert from_batch.p_fake == pytest.approx(untrained.predict(image, cam=False).p_fake, abs=1e-6)
    assert untrained.predict_batch([]) == []


def test_overlay(untrained):
    prediction = untrained.predict(noise_rgb(300, 150))
    overlay = prediction.overlay()
    assert isinstance(overlay, Image.Image)
    assert overlay.mode == "RGB"
    assert overlay.size == (300, 150) == (prediction.heatmap.shape[1], prediction.heatmap.shape[0])
    # Mostly image vs mostly heatmap: the blend weight matters.
    a = np.asarray(prediction.overlay(image_weight=0.9), dtype=np.float32)
    b = np.asarray(prediction.overlay(image_weight=0.1), dtype=np.float32)
    assert np.abs(a - b).mean() > 1.0
    big = untrained.predict(noise_rgb(1600, 800))
    rows, cols = _display(1600, 800)
    assert big.overlay().size == (cols, rows) and max(rows, cols) == min(1600, HEATMAP_MAX_SIDE)


def test_overlay_without_cam_raises(untrained):
    prediction = untrained.predict(noise_rgb(40, 40), cam=False)
    with pytest.raises(ValueError, match="cam=False"):
        prediction.overlay()
