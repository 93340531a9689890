"""Grad-CAM: the heatmap must point at what the model actually looks at.

The key test trains a real convitx_tiny (CPU, ~100-400 steps) on synthetic
images whose class is decided by one bright textured square at a random
position, then checks that the heatmap's mass follows the square from quadrant
to quadrant. A wrong NHWC/NCHW layout for the Swin branch (or a transposed
heatmap) sends the mass to the wrong quadrant.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM

from corpus import noise_rgb, torch_threads
from detector import Detector, create_model
from detector.inference import HEATMAP_MAX_SIDE

pytestmark = pytest.mark.timeout(300)

SIDE = 64  # convitx_tiny's input size
PATCH = 14  # the square's side at 64 px
QUADRANTS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


# --------------------------------------------------------------------------- synthetic task


def _patch(height: int, width: int) -> np.ndarray:
    """Bright (0.85-1.0) checkerboard, 4 px cells at 64 px scale, stretched to height x width."""
    rows, cols = np.indices((height, width))
    cells = (rows * PATCH // height // 4 + cols * PATCH // width // 4) % 2
    return np.repeat((0.85 + 0.15 * cells)[..., None], 3, axis=2)


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.35, 0.1, (height, width, 3)).clip(0, 1)


def _training_batch(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: the square somewhere; class 0: the same noise, no square."""
    images = _background(n * SIDE, SIDE, rng).reshape(n, SIDE, SIDE, 3)
    labels = rng.integers(0, 2, n)
    for i in np.flatnonzero(labels):
        r, c = rng.integers(0, SIDE - PATCH + 1, 2)
        images[i, r : r + PATCH, c : c + PATCH] = _patch(PATCH, PATCH)
    return images.astype(np.float32), labels


def _with_patch_in(quadrant: tuple[int, int], height: int, width: int, seed: int = 7) -> tuple[np.ndarray, tuple]:
    """A test image (float HxWx3 in [0, 1]) with the square centred in one quadrant."""
    image = _background(height, width, np.random.default_rng(seed))
    ph, pw = height * PATCH // SIDE, width * PATCH // SIDE
    qr, qc = quadrant
    r = qr * (height // 2) + (height // 2 - ph) // 2
    c = qc * (width // 2) + (width // 2 - pw) // 2
    image[r : r + ph, c : c + pw] = _patch(ph, pw)
    return image.astype(np.float32), (r, c, ph, pw)


def _quadrant_means(heatmap: np.ndarray) -> np.ndarray:
    h, w = heatmap.shape
    return np.array(
        [
            [heatmap[: h // 2, : w // 2].mean(), heatmap[: h // 2, w // 2 :].mean()],
            [heatmap[h // 2 :, : w // 2].mean(), heatmap[h // 2 :, w // 2 :].mean()],
        ]
    )


@pytest.fixture(scope="module")
def trained() -> Detector:
    """convitx_tiny trained until it gets 10 batches in a row right (at most 400 steps of 32)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model("convitx_tiny")
    mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std).view(1, 3, 1, 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    streak = 0
    for _ in range(400):
        images, labels = _training_batch(32, rng)
        x = (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std
        y = torch.from_numpy(labels)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        streak = streak + 1 if bool((logits.argmax(1) == y).all()) else 0
        if streak >= 10:
            break
    model.eval()
    return Detector(model)


@pytest.mark.timeout(400)
def test_the_synthetic_task_is_learned(trained):
    """Precondition for the localisation tests: the model really detects the square."""
    images, labels = _training_batch(128, np.random.default_rng(123))
    predictions = trained.predict_batch(list(images), cam=False)
    accuracy = np.mean([(p.p_fake > 0.5) == bool(y) for p, y in zip(predictions, labels)])
    assert accuracy >= 0.95, accuracy


@pytest.mark.timeout(400)
@pytest.mark.parametrize("size", [(64, 64), (96, 192), (128, 128)], ids=["64x64", "192x96", "128x128"])
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_heatmap_follows_the_patch(trained, where, size):
    quadrant = QUADRANTS[where]
    height, width = size
    image, (r, c, ph, pw) = _with_patch_in(quadrant, height, width)
    prediction = trained.predict(image)
    assert prediction.p_fake > 0.9, "the model should call the square 'ai_generated'"
    heatmap = prediction.heatmap
    assert heatmap.shape == (height, width)
    means = _quadrant_means(heatmap)
    assert np.unravel_index(means.argmax(), means.shape) == quadrant, means.round(3)
    share = means[quadrant] / means.sum()
    assert share > 0.5, f"only {share:.2f} of the heatmap mass in the square's quadrant: {means.round(3)}"
    # The square itself is hotter than the opposite quadrant.
    opposite = heatmap[
        (1 - quadrant[0]) * (height // 2) : (2 - quadrant[0]) * (height // 2),
        (1 - quadrant[1]) * (width // 2) : (2 - quadrant[1]) * (width // 2),
    ]
    assert heatmap[r : r + ph, c : c + pw].mean() > 2 * opposite.mean()


@pytest.mark.timeout(400)
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_swin_branch_alone_follows_the_patch(trained, where):
    """Grad-CAM on the Swin target layer only: its NCHW map must be laid out like the image."""
    quadrant = QUADRANTS[where]
    image, _ = _with_patch_in(quadrant, SIDE, SIDE)
    model = trained.model
    batch = trained.transform(Image.fromarray((image * 255 + 0.5).astype(np.uint8)))[None]
    cam = GradCAM(model=model, target_layers=[model.cam_target_layers[1]])
    try:
        heatmap = cam(input_tensor=batch, targets=None)[0]
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    means = _quadrant_means(heatmap)
    assert means.sum() > 0, "the Swin map is all zero"
    assert np.unravel_index(means.argmax(), means.shape) == quadrant, means.round(3)


@pytest.mark.parametrize("layer", [0, 1], ids=["convnext", "swin"])
@pytest.mark.parametrize("where", list(QUADRANTS))
def test_target_layer_activations_are_spatially_aligned(where, layer):
    """Untrained check of the target layers' layout: changing one quadrant of the image
    changes the target map most in that quadrant (Swin: only there, its windows are local)."""
    torch.manual_seed(0)
    model = create_model("convitx_tiny").eval()
    quadrant = QUADRANTS[where]
    base = _background(SIDE, SIDE, np.random.default_rng(1)).astype(np.float32)
    patched = base.copy()
    _, (r, c, ph, pw) = _with_patch_in(quadrant, SIDE, SIDE)
    patched[r : r + ph, c : c + pw] = _patch(ph, pw)
    x = torch.from_numpy(np.stack([base, patched])).permute(0, 3, 1, 2).contiguous()
    captured = []
    hook = model.cam_target_layers[layer].register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    change = (captured[0][1] - captured[0][0]).abs().sum(0).numpy()  # (H, W) of an NCHW map
    means = _quadrant_means(change)
    assert np.unravel_index(means.argmax(), means.shape) == quadrant, means.round(4)
    if layer == 1:  # Swin: windowed attention, nothing leaks into the other quadrants
        others = [means[q] for q in np.ndindex(2, 2) if q != quadrant]
        assert max(others) < 1e-5 * means[quadrant], means


# --------------------------------------------------------------------------- shapes and consistency


@pytest.fixture(scope="module")
def untrained() -> Detector:
    torch.manual_seed(1)
    return Detector(create_model("convitx_tiny"))


@pytest.mark.parametrize(
    "size, expected",
    [
        ((300, 150), (150, 300)),  # (width, height) -> heatmap (rows, cols)
        ((150, 300), (300, 150)),
        ((64, 64), (64, 64)),
        ((7, 3), (3, 7)),
        ((2000, 1000), (384, 768)),  # capped at 768 on the long side, same aspect
        ((500, 1536), (768, 250)),
    ],
)
def test_heatmap_keeps_the_aspect(untrained, size, expected):
    width, height = size
    prediction = untrained.predict(noise_rgb(width, height, seed=width))
    heatmap = prediction.heatmap
    assert heatmap.shape == expected
    assert max(heatmap.shape) <= HEATMAP_MAX_SIDE
    assert heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() > heatmap.min(), "a flat heatmap explains nothing"
    assert prediction.image.size == size


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
    assert big.overlay().size == (768, 384)


def test_overlay_without_cam_raises(untrained):
    prediction = untrained.predict(noise_rgb(40, 40), cam=False)
    with pytest.raises(ValueError, match="cam=False"):
        prediction.overlay()
