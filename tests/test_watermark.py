"""The SD/SDXL invisible watermark: embedded with the reference embedder (invisible-watermark, test-only), decoded by ours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector import decode
from detector.evidence import AI, INFORMATION, NOTE, UNSIGNED
from detector.evidence.watermark import MESSAGES, find_watermark, read_watermark
from provenance_files import encode, photo

imwatermark = pytest.importorskip(
    "imwatermark", reason="the reference embedder: pip install --no-deps invisible-watermark"
)
cv2 = pytest.importorskip("cv2")
pytestmark = pytest.mark.timeout(120)

SDXL_BITS = [int(bit) for bit in bin(0xB3EC907BB19E)[2:]]


def embed(rgb: np.ndarray, key: str) -> np.ndarray:
    """As the pipelines do: SD 1.x/2.x scripts convert to BGR first; diffusers' SDXL hands over RGB as is."""
    encoder = imwatermark.WatermarkEncoder()
    if key == "SDXL":
        encoder.set_watermark("bits", SDXL_BITS)
        return encoder.encode(rgb.copy(), "dwtDct")
    encoder.set_watermark("bytes", key.encode())
    return cv2.cvtColor(encoder.encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "dwtDct"), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return np.asarray(photo(640, 512, seed=3))


def evidence_for(image: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs):
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    [item] = read_watermark(decode(encode(image, fmt, **kwargs)))
    return item


def test_sdxl_message_is_the_documented_48_bits():
    assert len(MESSAGES["SDXL"][1]) == 48 and list(MESSAGES["SDXL"][1]) == SDXL_BITS


@pytest.mark.parametrize("key,order", [("SDXL", "RGB"), ("StableDiffusionV1", "BGR"), ("SDV2", "BGR")])
def test_embedded_marks_are_found(clean, key, order):
    item = evidence_for(embed(clean, key))
    assert (item.signal, item.strength) == (AI, UNSIGNED)
    assert item.details["message"] == key and item.details["channel_order"] == order
    assert item.details["bit_errors"] <= 0.1 * item.details["bits"]


def test_reference_decoder_agrees_on_our_test_image(clean):
    """Guards the test itself: the reference decoder reads back what the reference embedder wrote."""
    decoded = imwatermark.WatermarkDecoder("bits", 48).decode(embed(clean, "SDXL"), "dwtDct")
    assert [int(b) for b in decoded] == SDXL_BITS


@pytest.mark.parametrize("key", ["SDXL", "StableDiffusionV1"])
@pytest.mark.parametrize("damage", ["jpeg75", "half"])
def test_jpeg_or_resize_erases_it_and_we_say_not_found(clean, key, damage):
    marked = Image.fromarray(embed(clean, key))
    if damage == "jpeg75":
        item = evidence_for(Image.open(io.BytesIO(encode(marked, "JPEG", quality=75))), "PNG")
    else:
        item = evidence_for(marked.resize((marked.width // 2, marked.height // 2), Image.BICUBIC))
    assert item.strength == INFORMATION and item.details == {"checked": True, "found": False}
    assert "No Stable Diffusion invisible watermark found" in item.statement


@pytest.mark.parametrize("seed", range(12))
def test_never_found_on_clean_photos(seed):
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(256, 900)), int(rng.integers(256, 900))
    image = photo(width, height, seed=seed)
    if seed % 3 == 0:
        image = Image.fromarray(np.full((height, width, 3), rng.integers(0, 256, 3), dtype=np.uint8))  # flat
    assert find_watermark(np.asarray(image)) is None


def test_large_images_are_skipped_and_say_so(clean):
    item = read_watermark(decode(encode(Image.fromarray(embed(clean, "SDXL")), "PNG")), max_pixels=100_000)[0]
    assert item.strength == NOTE and item.details["reason"] == "time bound" and "skipped" in item.statement


def test_small_images_are_not_checked():
    item = read_watermark(decode(encode(photo(100, 100), "PNG")))[0]
    assert item.details == {"checked": False, "reason": "too small"}
