"""The image-condition check and its fusion rule, on real files made here (and a real tiny model).

A degraded image (a hard-compressed thumbnail) must come out "uncertain" with a plain-words reason
unless provenance decides; a good image must come out untouched; odd images must never raise.
"""
from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from corpus import photo_like
from detector import Detector, analyze, create_model, decode
from detector.condition import check_condition, condition_sentence, jpeg_quality
from detector.fusion import IMAGE_CONDITION, PIXEL_MODEL, PROVENANCE
from provenance_files import xmp_packet


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """1/f ("pink") noise in colour plus a little sensor noise: a photograph's spectrum."""
    rng = np.random.default_rng(seed)
    f = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.fftfreq(width)[None, :] ** 2)
    f[0, 0] = 1
    channels = [np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(height, width))) / f)) for _ in range(3)]
    array = np.stack([(c - c.mean()) / c.std() * 40 + 120 for c in channels], -1) + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _check(data: bytes):
    item = decode(data)
    return check_condition(item.image, item.data, item.format)


def _thumbnail_resaved(times: int = 3, quality: int = 40, **last) -> bytes:
    data = _save(_photo(800, 600).resize((200, 150), Image.Resampling.LANCZOS), "JPEG", quality=quality)
    for i in range(times - 1):
        data = _save(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG", quality=quality, **(last if i == times - 2 else {}))
    return data


def _screenshot() -> Image.Image:
    image = Image.new("RGB", (1280, 800), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1280, 60), fill=(40, 60, 120))
    draw.rectangle((0, 60, 240, 800), fill=(230, 232, 236))
    for i in range(25):
        draw.text((270, 90 + i * 26), f"The quick brown fox jumps over the lazy dog {i}, lorem ipsum dolor sit", fill=(20, 20, 20))
    for i in range(12):
        draw.text((12, 80 + i * 30), f"Menu item {i}", fill=(30, 30, 30))
    return image


# --------------------------------------------------------------------------- the check


@pytest.mark.parametrize("make", [_photo, lambda w, h: photo_like((w, h))], ids=["pink", "photo_like"])
def test_a_large_photo_at_q95_is_not_degraded(make):
    condition = _check(_save(make(1600, 1200), "JPEG", quality=95))
    assert condition.jpeg_quality == 95
    assert condition.findings == [] and not condition.degraded, condition.to_dict()
    assert condition.sentence() == ""


def test_a_thumbnail_resaved_at_q40_is_degraded_and_the_reason_names_both():
    condition = _check(_thumbnail_resaved())
    assert condition.degraded
    assert {"small", "low_quality"} <= set(condition.codes)
    assert condition.jpeg_quality == 40
    sentence = condition.sentence()
    assert sentence.startswith("This is a 200×150 thumbnail that was ") and "compressed" in sentence
    assert "JPEG quality about 40" in sentence and "traces of generation do not survive that" in sentence


def test_the_same_thumbnail_at_q90_is_only_noted():
    """A small but clean image: one mild finding, never enough to overrule the model."""
    data = _save(_photo(800, 600).resize((200, 150), Image.Resampling.LANCZOS), "JPEG", quality=90)
    condition = _check(data)
    assert condition.codes == ["small"] and not condition.degraded
    assert "less reliable" in condition.sentence()


@pytest.mark.parametrize("fmt,kwargs", [("PNG", {}), ("JPEG", {"quality": 95})])
def test_an_image_upscaled_4x_is_found(fmt, kwargs):
    upscaled = _photo(300, 200).resize((1200, 800), Image.Resampling.BICUBIC)
    condition = _check(_save(upscaled, fmt, **kwargs))
    assert "upscaled" in condition.codes, condition.to_dict()
    assert "upscaled" not in _check(_save(_photo(1200, 800), fmt, **kwargs)).codes  # the same content, native


@pytest.mark.parametrize("fmt,kwargs", [("PNG", {}), ("JPEG", {"quality": 90})])
def test_a_screenshot_is_found(fmt, kwargs):
    condition = _check(_save(_screenshot(), fmt, **kwargs))
    assert "screenshot" in condition.codes, condition.to_dict()
    assert "looks like a screenshot" in condition.sentence()


def test_a_png_that_was_a_jpeg_shows_its_block_grid():
    once = Image.open(io.BytesIO(_save(_photo(800, 600), "JPEG", quality=40))).convert("RGB")
    condition = _check(_save(once, "PNG"))
    assert "recompressed" in condition.codes and condition.jpeg_quality is None, condition.to_dict()
    assert "recompressed" not in _check(_save(_photo(800, 600), "PNG")).codes


@pytest.mark.parametrize("quality", [10, 25, 50, 75, 90, 100])
def test_jpeg_quality_is_read_from_the_tables(quality):
    data = _save(_photo(64, 64), "JPEG", quality=quality)
    assert jpeg_quality(Image.open(io.BytesIO(data)).quantization) == quality
    assert jpeg_quality(None) is None and jpeg_quality({}) is None and jpeg_quality({0: [1, 2, 3]}) is None


@functools.lru_cache(maxsize=1)
def _odd_images():
    grey16 = Image.fromarray((np.arange(120 * 90, dtype=np.uint16).reshape(90, 120) * 7))
    palette = _photo(300, 200).convert("P", palette=Image.Palette.ADAPTIVE)
    return {
        "1x1": _save(Image.new("RGB", (1, 1), (3, 4, 5)), "PNG"),
        "1x1 jpeg": _save(Image.new("RGB", (1, 1)), "JPEG"),
        "16-bit": _save(grey16, "PNG"),
        "palette": _save(palette, "GIF"),
        "flat": _save(Image.new("RGB", (700, 500), (128, 128, 128)), "JPEG", quality=95),
        "huge": _save(Image.new("RGB", (7000, 5000), (10, 200, 30)), "JPEG", quality=85),
        "line": _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (1, 4000, 3), dtype=np.uint8)), "PNG"),
        "cmyk": _save(_photo(200, 100).convert("CMYK"), "JPEG"),
    }


@pytest.mark.parametrize("name", list(_odd_images()))
def test_odd_images_never_raise(name):
    condition = _check(_odd_images()[name])
    assert isinstance(condition.degraded, bool)
    assert isinstance(condition.to_dict()["findings"], list)


def test_odd_inputs_to_the_check_itself_never_raise():
    image = _photo(200, 200)
    for args in [(image, b"not a jpeg", "jpeg"), (image, b"\xff\xd8\xff" + b"\x00" * 20, "jpeg"), (image, None, None),
                 (Image.new("F", (100, 100), 0.5), None, None), (Image.new("I;16", (80, 80)), None, None),
                 (Image.new("1", (90, 90)), None, None), ("not an image", None, None), (None, None, None)]:
        condition = check_condition(*args)
        assert isinstance(condition.degraded, bool)
    assert check_condition(image, b"not a jpeg", "jpeg").note  # the skipped measurement is named


# --------------------------------------------------------------------------- the verdict


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(0)
    return Detector(create_model("convitx_tiny"))


def test_a_degraded_image_gets_cant_tell_with_the_reason(detector):
    report = analyze(_thumbnail_resaved(), detector, cam=False)
    assert report.prediction is not None  # the model ran; its answer is reported, not followed
    assert report.verdict == "uncertain" and report.decided_by == IMAGE_CONDITION
    assert report.reason.startswith(condition_sentence(report.condition)) and condition_sentence(report) != ""
    assert "The pixel model alone would have said" in report.reason or report.prediction.label == "uncertain"
    data = report.to_dict()
    assert data["condition"]["degraded"] is True and data["condition"]["jpeg_quality"] == 40
    assert {f["code"] for f in data["condition"]["findings"]} >= {"small", "low_quality"}
    assert data["condition"]["sentence"] == condition_sentence(report)


def test_provenance_still_decides_on_a_degraded_image(detector):
    data = _thumbnail_resaved(xmp=xmp_packet())
    report = analyze(data, detector, cam=False)
    assert report.condition.degraded  # the check still reports the image's condition ...
    assert report.verdict == "ai_generated" and report.decided_by == PROVENANCE  # ... but the marker decides


def test_a_good_image_keeps_the_models_verdict(detector):
    report = analyze(_save(_photo(1600, 1200), "JPEG", quality=95), detector, cam=False)
    assert not report.condition.degraded and report.condition.findings == []
    assert report.decided_by == PIXEL_MODEL and report.verdict == report.prediction.label
    assert report.to_dict()["condition"]["degraded"] is False
