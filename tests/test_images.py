"""detector.images: one decode policy, every input type, readable errors.

All inputs are real files/bytes/arrays written here; nothing is mocked.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corpus import (
    BAD_FILES,
    assert_readable_message,
    bad_file_bytes,
    encode,
    noise_rgb,
    truncated_jpeg_bytes,
)
from detector import (
    Detector,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
    create_model,
    load_image,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def corpus_dir(bad_files) -> dict[str, tuple[Path, type]]:
    """The shared bad-file set (conftest ``bad_files``), by kind: kind -> (path, expected ImageError subclass)."""
    return {kind: (bad_files[name], error) for kind, (name, error) in BAD_FILES.items()}


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(0)
    return Detector(create_model("convitx_tiny"))


def _as_input(path: Path, form: str):
    if form == "str":
        return str(path)
    if form == "path":
        return path
    if form == "bytes":
        return path.read_bytes()
    if form == "bytearray":
        return bytearray(path.read_bytes())
    if form == "memoryview":
        return memoryview(path.read_bytes())
    if form == "bytesio":
        return io.BytesIO(path.read_bytes())
    raise KeyError(form)


FORMS = ["str", "path", "bytes", "bytearray", "memoryview", "bytesio"]


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_corpus_raises_the_right_error(corpus_dir, kind, form):
    path, expected = corpus_dir[kind]
    with pytest.raises(expected) as info:
        load_image(_as_input(path, form))
    assert isinstance(info.value, ImageError)
    assert isinstance(info.value, ValueError)  # the documented base class is a ValueError
    assert_readable_message(info.value)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_path_errors_name_the_file(corpus_dir, kind):
    """predict_batch decodes a list and promises that "an ImageError names the bad one"."""
    path, expected = corpus_dir[kind]
    with pytest.raises(expected) as info:
        load_image(path)
    assert path.name in str(info.value)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_corpus_through_an_open_file(corpus_dir, kind):
    path, expected = corpus_dir[kind]
    with open(path, "rb") as handle, pytest.raises(expected) as info:
        load_image(handle)
    assert_readable_message(info.value)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_corpus_through_detector_predict(detector, corpus_dir, kind):
    path, expected = corpus_dir[kind]
    for cam in (True, False):
        with pytest.raises(expected) as info:
            detector.predict(path, cam=cam)
        assert_readable_message(info.value)
    with pytest.raises(expected):
        detector.predict(path.read_bytes())


def test_predict_batch_names_the_bad_file(detector, corpus_dir, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(noise_rgb(40, 30)).save(good)
    bad, expected = corpus_dir["truncated_jpeg"]
    with pytest.raises(expected, match=bad.name):
        detector.predict_batch([good, bad, good])


@pytest.mark.timeout(120)
def test_huge_dimensions_are_rejected_from_the_header(tmp_path):
    """400 MP claimed by a ~200 KB file: rejected without decoding (a full decode takes GBs and minutes)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(bad_file_bytes("huge_png"))
    assert path.stat().st_size < 1_000_000
    for _ in range(5):  # cheap enough to repeat well inside the timeout
        with pytest.raises(ImageTooLargeError):
            load_image(path)


def test_max_pixels_is_configurable(tmp_path):
    image = Image.fromarray(noise_rgb(100, 50))
    path = tmp_path / "small.png"
    image.save(path)
    assert load_image(path).size == (100, 50)
    for source in (path, image, np.asarray(image)):
        with pytest.raises(ImageTooLargeError) as info:
            load_image(source, max_pixels=4999)
        assert_readable_message(info.value)
        assert load_image(source, max_pixels=5000).size == (100, 50)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(NotAnImageError, match="no such file") as info:
        load_image(tmp_path / "nope.jpg")
    assert_readable_message(info.value)
    with pytest.raises(NotAnImageError):
        load_image(tmp_path)  # a folder is not an image


def test_exhausted_file_object_is_empty(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(noise_rgb(8, 8)).save(path)
    with open(path, "rb") as handle:
        handle.read()
        with pytest.raises(EmptyImageError):
            load_image(handle)


def test_lazily_opened_truncated_pil_image_is_a_truncated_error(tmp_path):
    """Image.open() is lazy: a PIL image handed to us may still fail to decode.

    The failure must surface as TruncatedImageError from load_image (and from
    Detector.predict), not as a raw OSError later inside the transform.
    """
    path = tmp_path / "truncated.jpg"
    path.write_bytes(truncated_jpeg_bytes())
    with Image.open(path) as lazy, pytest.raises(TruncatedImageError) as info:
        load_image(lazy)
    assert_readable_message(info.value)
    torch.manual_seed(0)
    detector = Detector(create_model("convitx_tiny"))
    with Image.open(path) as lazy, pytest.raises(TruncatedImageError):
        detector.predict(lazy, cam=False)


def test_text_mode_file_object_is_unsupported(tmp_path):
    """A file opened in text mode yields str, not bytes: a readable UnsupportedImageError, not a TypeError."""
    path = tmp_path / "x.png"
    path.write_text("not bytes")
    with open(path) as handle, pytest.raises(UnsupportedImageError) as info:
        load_image(handle)
    assert_readable_message(info.value)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(np.zeros((4, 4, 2), np.uint8), id="2-channels"),
        pytest.param(np.zeros((4, 4, 5), np.uint8), id="5-channels"),
        pytest.param(np.zeros((16,), np.uint8), id="1-d"),
        pytest.param(np.zeros((2, 4, 4, 3), np.uint8), id="4-d-batch"),
        pytest.param(np.zeros((3, 8, 8), np.uint8), id="channels-first"),
        pytest.param(np.zeros((4, 4, 3), np.int32), id="int32"),
        pytest.param(np.zeros((4, 4), np.int64), id="int64"),
        pytest.param(np.zeros((4, 4), np.complex64), id="complex"),
        pytest.param(np.zeros((4, 4), object), id="object"),
        pytest.param(np.zeros((4, 4), "U1"), id="str-array"),
        pytest.param(12345, id="int"),
        pytest.param([[0, 1], [1, 0]], id="list"),
        pytest.param(None, id="none"),
    ],
)
def test_unsupported_sources(source):
    with pytest.raises(UnsupportedImageError) as info:
        load_image(source)
    assert_readable_message(info.value)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0, 3)])
def test_zero_size_arrays_are_empty(shape):
    with pytest.raises(EmptyImageError) as info:
        load_image(np.zeros(shape, np.uint8))
    assert_readable_message(info.value)


def test_error_hierarchy():
    for cls in (EmptyImageError, NotAnImageError, TruncatedImageError, ImageTooLargeError, UnsupportedImageError):
        assert issubclass(cls, ImageError) and issubclass(cls, ValueError)


# --------------------------------------------------------------------------- every input type


def test_every_input_type_gives_the_same_pixels(tmp_path):
    array = noise_rgb(37, 23, seed=3)
    path = tmp_path / "img.png"
    Image.fromarray(array).save(path)
    data = path.read_bytes()
    with open(path, "rb") as handle:
        from_handle = load_image(handle)
    sources = {
        "str": str(path),
        "path": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "bytesio": io.BytesIO(data),
        "pil": Image.fromarray(array),
        "pil-lazy": Image.open(path),
        "ndarray": array,
        "ndarray-noncontiguous": np.asfortranarray(array),
    }
    results = {name: load_image(source) for name, source in sources.items()}
    results["handle"] = from_handle
    for name, image in results.items():
        assert isinstance(image, Image.Image), name
        assert image.mode == "RGB", name
        assert image.size == (37, 23), name
        np.testing.assert_array_equal(np.asarray(image), array, err_msg=name)


# --------------------------------------------------------------------------- colour policy


def _pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (10, 200, 30, 255)  # opaque -> itself
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    rgba[1, :] = (255, 0, 0, 0)  # transparent red -> white, not red
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    for source in (path, Image.open(path), rgba):
        image = load_image(source)
        assert _pixel(image, (0, 0)) == (255, 255, 255)
        assert _pixel(image, (1, 0)) == (10, 200, 30)
        assert all(abs(c - 127) <= 1 for c in _pixel(image, (2, 0)))
        assert _pixel(image, (0, 1)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(tmp_path, fmt):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 200, 30, 40, 10, 220, 30] + [0] * (256 * 3 - 9))
    image.putpixel((1, 0), 1)
    image.putpixel((2, 0), 2)
    path = tmp_path / f"palette.{fmt.lower()}"
    image.save(path, fmt, transparency=0)
    reopened = Image.open(path)
    assert reopened.mode == "P" and "transparency" in reopened.info
    rgb = load_image(path)
    assert _pixel(rgb, (0, 0)) == (255, 255, 255)  # index 0 is transparent
    assert _pixel(rgb, (1, 0)) == (200, 30, 40)
    assert _pixel(rgb, (2, 0)) == (10, 220, 30)


def test_palette_without_transparency(tmp_path):
    image = Image.new("P", (2, 1), 1)
    image.putpalette([0, 0, 0, 90, 80, 70] + [0] * (256 * 3 - 6))
    path = tmp_path / "p.png"
    image.save(path)
    assert _pixel(load_image(path)) == (90, 80, 70)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animation_gives_the_first_frame(tmp_path, fmt):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (16, 12), colour) for colour in colours]
    path = tmp_path / f"anim.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    image = load_image(path)
    assert image.size == (16, 12)
    assert _pixel(image, (5, 5)) == (255, 0, 0)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    grey = np.full((10, 12), 30000, np.uint16)
    grey[0, 0], grey[0, 1] = 0, 65535
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert _pixel(image, (5, 5)) == (117, 117, 117)  # 30000 / 257 = 116.7, not 255 (white)
    assert _pixel(image, (0, 0)) == (0, 0, 0)
    assert _pixel(image, (1, 0)) == (255, 255, 255)


def test_sixteen_bit_array_is_scaled():
    grey = np.full((6, 8), 30000, np.uint16)
    assert _pixel(load_image(grey)) == (117, 117, 117)
    rgb = np.zeros((6, 8, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 30000, 257
    assert _pixel(load_image(rgb)) == (255, 117, 1)


def test_float_array_in_unit_range():
    array = np.zeros((4, 4, 3), np.float32)
    array[..., 0], array[..., 1], array[..., 2] = 1.0, 0.5, 0.0
    assert _pixel(load_image(array)) == (255, 128, 0)
    # float64, greyscale, and out-of-range / NaN values clipped rather than wrapped
    grey = np.array([[0.25, 2.0], [-1.0, np.nan]], np.float64)
    image = load_image(grey)
    assert _pixel(image, (0, 0)) == (64, 64, 64)
    assert _pixel(image, (1, 0)) == (255, 255, 255)
    assert _pixel(image, (0, 1)) == (0, 0, 0)
    assert _pixel(image, (1, 1)) == (0, 0, 0)


def test_bool_array():
    mask = np.array([[True, False], [False, True]])
    image = load_image(mask)
    assert _pixel(image, (0, 0)) == (255, 255, 255)
    assert _pixel(image, (1, 0)) == (0, 0, 0)


def test_array_shapes_accepted():
    assert load_image(np.full((5, 7), 9, np.uint8)).size == (7, 5)
    assert _pixel(load_image(np.full((5, 7, 1), 9, np.uint8))) == (9, 9, 9)
    rgba = np.zeros((5, 7, 4), np.uint8)
    assert _pixel(load_image(rgba)) == (255, 255, 255)  # transparent -> white


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, quality=95)  # pure cyan ink
    assert Image.open(path).mode == "CMYK"
    r, g, b = _pixel(load_image(path), (8, 8))
    assert r < 20 and g > 235 and b > 235
    white = tmp_path / "white.jpg"
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(white, quality=95)
    assert all(c > 245 for c in _pixel(load_image(white), (8, 8)))


def test_la_mode(tmp_path):
    image = Image.new("LA", (2, 1), (100, 255))
    image.putpixel((1, 0), (0, 0))  # transparent black -> white
    path = tmp_path / "la.png"
    image.save(path)
    for source in (image, path):
        rgb = load_image(source)
        assert _pixel(rgb, (0, 0)) == (100, 100, 100)
        assert _pixel(rgb, (1, 0)) == (255, 255, 255)


def test_f_mode(tmp_path):
    unit = Image.fromarray(np.full((3, 4), 0.5, np.float32))
    assert unit.mode == "F"
    assert _pixel(load_image(unit)) == (128, 128, 128)  # [0, 1] floats scaled
    wide = Image.fromarray(np.full((3, 4), 200.0, np.float32))
    assert _pixel(load_image(wide)) == (200, 200, 200)  # 0..255 floats kept
    path = tmp_path / "f.tif"
    unit.save(path)
    assert Image.open(path).mode == "F"
    assert _pixel(load_image(path)) == (128, 128, 128)


def test_grey_and_bilevel(tmp_path):
    assert _pixel(load_image(Image.new("L", (3, 3), 77))) == (77, 77, 77)
    one = Image.new("1", (3, 3), 1)
    path = tmp_path / "one.png"
    one.save(path)
    assert _pixel(load_image(path)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    array = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall
    array[:, :20] = (255, 0, 0)  # left half red, right half blue
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / f"rotated.{fmt.lower()}"
    extra = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(array).save(path, fmt, exif=exif, **extra)
    for source in (path, path.read_bytes(), Image.open(path)):
        image = load_image(source)
        assert image.size == (20, 40)  # displayed upright: 20 wide, 40 tall
        # Rotating clockwise puts the stored left edge (red) on top.
        top, bottom = _pixel(image, (10, 5)), _pixel(image, (10, 34))
        assert top[0] > 200 and top[2] < 60, top
        assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_broken_exif_does_not_reject_a_decodable_image(tmp_path):
    data = encode(noise_rgb(12, 10), "JPEG", exif=b"Exif\x00\x00garbage-not-tiff")
    image = load_image(data)
    assert image.size == (12, 10) and image.mode == "RGB"


def test_loaded_image_is_fully_decoded_and_detached(tmp_path):
    """The returned image must not depend on the source staying around (bytes buffer, open file)."""
    path = tmp_path / "x.jpg"
    Image.fromarray(noise_rgb(32, 24)).save(path, quality=90)
    with open(path, "rb") as handle:
        image = load_image(handle)
    path.unlink()
    assert np.asarray(image).shape == (24, 32, 3)
