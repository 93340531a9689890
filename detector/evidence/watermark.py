"""The invisible DWT-DCT watermark of the Stable Diffusion reference pipelines, decoded with numpy + OpenCV.

The embedder is ``invisible-watermark``'s ``dwtDct``: U channel of YUV, one Haar
DWT level, 4x4 blocks of the approximation band, the bit stored in the largest
non-DC coefficient modulo 36. SD 1.x scripts write "StableDiffusionV1", SD 2.x
"SDV2" (bytes), SDXL (diffusers) the 48 bits 0xB3EC907BB19E. Some pipelines hand
the embedder RGB where it expects BGR, so both channel orders are tried.

This decoder replaces a runtime dependency on ``invisible-watermark`` (which pulls
torch-side ONNX code and the non-headless opencv); OpenCV-headless is already
here through grad-cam. The reference package is used only in the tests, to embed.
The mark does not survive JPEG re-compression or resizing: "not found" is normal.
"""

from __future__ import annotations

import numpy as np

from ..images import DecodedImage
from .base import AI, INFORMATION, NONE, NOTE, UNSIGNED, Evidence

SCALE = 36  # invisible-watermark's default scale for the U channel
BLOCK = 4
MIN_PIXELS = 256 * 256  # the embedder refuses smaller images
MAX_PIXELS = 16_000_000  # time bound: above this the check is skipped (and says so)
MAX_BIT_ERRORS = 0.10  # fraction of bits that may differ (edge blocks, rounding)
MIN_AGREEMENT = 0.4  # how consistently the blocks vote for each bit (0 = coin flips, 1 = unanimous; marked ~0.6)


def _bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


MESSAGES = {
    "StableDiffusionV1": ("Stable Diffusion 1.x", _bits(b"StableDiffusionV1")),
    "SDV2": ("Stable Diffusion 2.x", _bits(b"SDV2")),
    "SDXL": ("Stable Diffusion XL", np.array([int(b) for b in bin(0xB3EC907BB19E)[2:]], dtype=np.uint8)),
}


def block_bits(bgr: np.ndarray) -> np.ndarray:
    """Per 4x4 block of the U channel's Haar approximation, the bit it stores, in the embedder's raster order."""
    import cv2

    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    u = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV)[:rows, :cols, 1].astype(np.float64)
    approx = (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) / 2.0  # pywt.dwt2(.., "haar") cA
    nr, nc = approx.shape[0] // BLOCK, approx.shape[1] // BLOCK
    blocks = (
        approx[: nr * BLOCK, : nc * BLOCK]
        .reshape(nr, BLOCK, nc, BLOCK)
        .transpose(0, 2, 1, 3)
        .reshape(-1, BLOCK * BLOCK)
    )
    ac = np.abs(blocks[:, 1:])
    value = ac[np.arange(len(ac)), ac.argmax(axis=1)]
    return (np.mod(value, SCALE) > 0.5 * SCALE).astype(np.float64)


def decode_message(bits: np.ndarray, length: int) -> tuple[np.ndarray, float]:
    """The ``length``-bit message the blocks vote for, and how unanimous the vote is."""
    index = np.arange(len(bits)) % length
    counts = np.bincount(index, minlength=length)
    means = np.bincount(index, weights=bits, minlength=length) / np.maximum(counts, 1)
    return (means * 255 > 127).astype(np.uint8), float(np.mean(np.abs(means - 0.5) * 2))


def find_watermark(rgb: np.ndarray) -> dict | None:
    """The first known message found in either channel order, with its bit errors; None if none is."""
    for order, bgr in (("BGR", rgb[:, :, ::-1]), ("RGB", rgb)):
        bits = block_bits(bgr)
        for key, (name, message) in MESSAGES.items():
            decoded, agreement = decode_message(bits, len(message))
            errors = int(np.count_nonzero(decoded != message))
            if errors <= MAX_BIT_ERRORS * len(message) and agreement >= MIN_AGREEMENT:
                return {
                    "message": key,
                    "model": name,
                    "bit_errors": errors,
                    "bits": len(message),
                    "agreement": round(agreement, 3),
                    "channel_order": order,
                }
    return None


def read_watermark(item: DecodedImage, max_pixels: int = MAX_PIXELS) -> list[Evidence]:
    width, height = item.image.size
    if width * height < MIN_PIXELS:
        return [
            Evidence(
                "provenance",
                "watermark",
                NONE,
                INFORMATION,
                "Too small to carry the Stable Diffusion invisible watermark (under 256x256 pixels); not checked.",
                {"checked": False, "reason": "too small"},
            )
        ]
    if width * height > max_pixels:
        return [
            Evidence(
                "provenance",
                "watermark",
                NONE,
                NOTE,
                f"The Stable Diffusion watermark check was skipped: the image is {width * height / 1e6:.1f} MP, "
                f"over the {max_pixels / 1e6:.0f} MP time bound (generators output far smaller images).",
                {"checked": False, "reason": "time bound", "max_pixels": max_pixels},
            )
        ]
    found = find_watermark(np.asarray(item.image))
    if found is None:
        return [
            Evidence(
                "provenance",
                "watermark",
                NONE,
                INFORMATION,
                "No Stable Diffusion invisible watermark found (normal: most tools do not embed it, and "
                "JPEG re-compression or resizing erases it).",
                {"checked": True, "found": False},
            )
        ]
    return [
        Evidence(
            "provenance",
            "watermark",
            AI,
            UNSIGNED,
            f"The invisible watermark of the {found['model']} reference pipeline is embedded in the pixels "
            f"({found['bits'] - found['bit_errors']}/{found['bits']} bits match). Anyone can embed or strip it "
            "with the open-source library, but nobody has a reason to mark a real photo.",
            {"checked": True, "found": True, **found},
        )
    ]
