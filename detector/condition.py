"""Image condition: is this image still able to carry traces of generation?

A cheap check (numpy + Pillow, a few ms) that runs before the pixel model. Small thumbnails,
heavy or repeated JPEG compression, upscaling and screenshots wipe out the pixel-level traces
the model reads, so on such an image a confident answer would be luck. When the check finds the
image degraded, fusion turns the model's verdict into "uncertain" and says why in plain words
(provenance still decides: it does not live in the pixels). Thresholds are conservative: one
mild finding (a small but clean image) is only noted; the benchmark
``benchmarks/condition_effect.py`` measures how many correct confident verdicts it would hide.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

# Thresholds (see the module docstring: conservative on purpose).
SMALL_SIDE = 400  # a long side at most this ...
SMALL_PIXELS = 400 * 300  # ... and at most this many pixels: a thumbnail
LOW_QUALITY = 60  # estimated JPEG quality at or below: heavily compressed
VERY_LOW_QUALITY = 30  # at or below: degraded alone
GRID_RATIO = 1.25  # 8x8 block-edge strength over elsewhere, off the file's own grid: compressed before
UPSCALE_LOG_RATIO = -3.0  # log10 high/mid-band spectral power below this: upscaled
UPSCALE_MIN_SIDE = 128  # smaller images have too few frequencies to tell
SCREEN_FLAT = 0.45  # share of pixels in exactly flat regions ...
SCREEN_EDGES = 0.01  # ... with this share of sharp, text-like edges ...
SCREEN_COLOURS = 0.05  # ... and few distinct colours per pixel: a screenshot
ANALYSIS_SIDE = 512  # the check looks at most at a 512 px centre crop (pixel statistics) or thumbnail

# The IJG (libjpeg) luminance table at quality 50, which quality settings scale.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


@dataclass
class Finding:
    """One thing wrong with the image: a code for programs, a clause for people, the measurement."""

    code: str  # small | low_quality | recompressed | upscaled | screenshot
    words: str  # "a 320×240 thumbnail", "compressed several times", ...
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"code": self.code, "words": self.words, "details": self.details}


@dataclass
class Condition:
    """What the check found. ``degraded``: the pixel model's verdict should not stand on this image."""

    width: int
    height: int
    jpeg_quality: int | None = None
    findings: list[Finding] = field(default_factory=list)
    degraded: bool = False
    note: str | None = None  # a measurement that could not run (odd image): the rest still counts

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def sentence(self) -> str:
        """The card's sentence: what is wrong and why that matters; "" when nothing was found."""
        return condition_sentence(self)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "jpeg_quality": self.jpeg_quality,
            "degraded": self.degraded,
            "findings": [f.to_dict() for f in self.findings],
            "sentence": self.sentence(),
            "note": self.note,
        }


def condition_sentence(condition) -> str:
    """"This is a 320×240 thumbnail that was compressed several times; traces of generation do not survive that."

    The one sentence the verdict card shows about the image's condition (and the report's reason when the
    check decides "Can't tell"). Takes a Condition or a Report (its ``condition``); "" when nothing was found.
    """
    condition = getattr(condition, "condition", condition)
    if not isinstance(condition, Condition) or not condition.findings:
        return ""
    by_code = {f.code: f for f in condition.findings}
    small = by_code.get("small")
    subject = f"This is {small.words}" if small else "This image"
    clauses = []
    if "screenshot" in by_code:
        clauses.append("looks like a screenshot")
    if "upscaled" in by_code:
        clauses.append(f"was {by_code['upscaled'].words}")
    compression = [by_code[c].words for c in ("recompressed", "low_quality") if c in by_code]
    if compression:
        clauses.append("was " + " and ".join(compression))
    if not clauses and small:
        clauses.append("has few pixels")
    verb = f"{subject} that " if small else f"{subject} "
    text = verb + _join(clauses)
    if condition.degraded:
        return f"{text}; traces of generation do not survive that."
    return f"{text}; the pixel model's answer is less reliable on such images."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def check_condition(image: Image.Image, data: bytes | None = None, fmt: str | None = None) -> Condition:
    """The condition of one decoded RGB image (``data``/``fmt``: the file's bytes and sniffed format, if any).

    Never raises: a measurement that fails on an odd image is skipped and named in ``note``.
    """
    try:
        width, height = image.size
    except Exception:  # noqa: BLE001 - not an image at all: nothing to say
        return Condition(0, 0, note="not an image")
    condition = Condition(width, height)
    notes = []
    gray = None
    try:
        gray = _gray(image)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"pixels: {type(exc).__name__}")
    checks = (
        ("size", lambda: _size(condition)),
        ("jpeg", lambda: _jpeg(condition, data, fmt, gray)),
        ("upscaling", lambda: _upscaled(condition, gray)),
        ("screenshot", lambda: _screenshot(condition, image, gray)),
    )
    for name, check in checks:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                check()
        except Exception as exc:  # noqa: BLE001 - an odd image skips a measurement, never the verdict
            notes.append(f"{name}: {type(exc).__name__}")
    if "screenshot" in condition.codes:  # text and UI rows mimic a block grid: not a sign of recompression
        condition.findings = [f for f in condition.findings if f.code != "recompressed"]
    condition.note = "; ".join(notes) or None
    condition.degraded = _degraded(condition)
    return condition


def _degraded(condition: Condition) -> bool:
    """When the findings together leave too little for the pixel model. One mild finding alone never does."""
    codes = set(condition.codes)
    quality = condition.jpeg_quality
    if quality is not None and quality <= VERY_LOW_QUALITY:
        return True
    compressed = "low_quality" in codes or "recompressed" in codes
    if "small" in codes and compressed:
        return True
    if "low_quality" in codes and "recompressed" in codes:
        return True
    if "upscaled" in codes and ("small" in codes or compressed or "screenshot" in codes):
        return True
    return "screenshot" in codes and ("small" in codes or compressed)


# --------------------------------------------------------------------------- the measurements


def _gray(image: Image.Image) -> np.ndarray:
    """Luminance, float32, at most ANALYSIS_SIDE on each side (a centre crop: native pixels, never resampled)."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    width, height = image.size
    left, top = max(0, (width - ANALYSIS_SIDE) // 2), max(0, (height - ANALYSIS_SIDE) // 2)
    if left or top:
        # Keep the crop on the 8x8 JPEG grid, so block edges stay where the file put them.
        left, top = left - left % 8, top - top % 8
        image = image.crop((left, top, left + min(width, ANALYSIS_SIDE), top + min(height, ANALYSIS_SIDE)))
    return np.asarray(image.convert("L"), dtype=np.float32)


def _size(condition: Condition) -> None:
    w, h = condition.width, condition.height
    if max(w, h) <= SMALL_SIDE and w * h <= SMALL_PIXELS:
        condition.findings.append(Finding("small", f"a {w}×{h} thumbnail", {"width": w, "height": h}))


def jpeg_quality(quantization: dict | None) -> int | None:
    """The IJG quality (1-100) whose luminance table best matches the file's, or None without tables.

    Compared sorted, so the table's storage order (zigzag or natural) does not matter; tables from
    cameras and editors that do not follow IJG get the closest IJG quality.
    """
    if not quantization:
        return None
    table = np.sort(np.asarray(list(quantization.get(0, next(iter(quantization.values())))), np.float64))
    if table.size != 64:
        return None
    base = np.sort(_IJG_LUMA)
    best, best_error = None, np.inf
    for quality in range(1, 101):
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        reference = np.clip(np.floor((base * scale + 50) / 100), 1, 255)
        error = np.abs(np.log(reference) - np.log(np.maximum(table, 1))).mean()
        if error < best_error:
            best, best_error = quality, error
    return best


def block_grid(gray: np.ndarray) -> tuple[float, tuple[int, int]]:
    """How strongly an 8x8 block grid shows in the pixels, and at which (x, y) phase.

    The strength is the mean step across the strongest grid phase over the median step at the other
    phases (1.0: no grid). A grid off phase (0, 0) of a JPEG, or any grid in a PNG, is an earlier JPEG
    compression the image was cropped or converted after.
    """
    if min(gray.shape) < 64:
        return 1.0, (0, 0)
    dx = np.abs(np.diff(gray, axis=1)).mean(axis=0)  # step between column i and i + 1
    dy = np.abs(np.diff(gray, axis=0)).mean(axis=1)
    strengths, phases = [], []
    for steps in (dx, dy):
        per_phase = np.array([steps[p::8].mean() for p in range(8)])
        best = int(per_phase.argmax())
        # Over the median phase and over the phase 4 away: a period of 2 or 4 (interpolation, text) is no block grid.
        others = max(float(np.median(np.delete(per_phase, best))), float(per_phase[(best + 4) % 8]), 1e-6)
        strengths.append(per_phase[best] / others)
        phases.append((best + 1) % 8)  # the grid line falls between column best and best + 1
    return float(min(strengths)), (phases[0], phases[1])


def _jpeg(condition: Condition, data: bytes | None, fmt: str | None, gray: np.ndarray | None) -> None:
    quantization = None
    if data is not None and fmt == "jpeg":
        with Image.open(io.BytesIO(data)) as opened:
            quantization = getattr(opened, "quantization", None)
    quality = jpeg_quality(quantization)
    condition.jpeg_quality = quality
    if quality is not None and quality <= LOW_QUALITY:
        condition.findings.append(
            Finding("low_quality", f"heavily compressed (JPEG quality about {quality})", {"jpeg_quality": quality})
        )
    if gray is None:
        return
    strength, phase = block_grid(gray)
    # _gray's crop keeps the file's grid at phase (0, 0): a grid elsewhere is an earlier compression's.
    if strength >= GRID_RATIO and (quality is None or phase != (0, 0)):
        words = "JPEG-compressed before it was saved in this format" if quality is None else "compressed several times"
        condition.findings.append(
            Finding("recompressed", words, {"grid_strength": round(strength, 3), "grid_phase": list(phase)})
        )


def spectral_ratio(gray: np.ndarray) -> float:
    """log10 of the mean spectral power at high frequencies (0.6-0.95 Nyquist) over mid ones (0.1-0.3).

    Photographs and generated images keep detail up to the pixel grid (about -1 to -2.5); an image
    blown up 2x or more by interpolation has next to none above its old Nyquist (below -3).
    """
    h, w = gray.shape
    top, left = (h - min(h, 256)) // 2, (w - min(w, 256)) // 2
    g = gray[top : top + 256, left : left + 256]  # 256 px are plenty of frequencies, at a quarter of the cost
    g = g - g.mean()
    h, w = g.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2(g * window)) ** 2
    fy = np.abs(np.fft.fftfreq(h))[:, None] * 2
    fx = np.fft.rfftfreq(w)[None, :] * 2
    radius = np.sqrt(fy**2 + fx**2)
    high = power[(radius > 0.6) & (radius < 0.95)].mean()
    mid = power[(radius > 0.1) & (radius < 0.3)].mean()
    return float(np.log10(max(high, 1e-12) / max(mid, 1e-12)))


def _upscaled(condition: Condition, gray: np.ndarray | None) -> None:
    if gray is None or min(gray.shape) < UPSCALE_MIN_SIDE:
        return
    if condition.jpeg_quality is not None and condition.jpeg_quality <= LOW_QUALITY:
        return  # heavy compression removes high frequencies too: that is already said
    if float(gray.std()) < 2.0:
        return  # nearly flat: no spectrum to read
    ratio = spectral_ratio(gray)
    if ratio < UPSCALE_LOG_RATIO:
        condition.findings.append(Finding("upscaled", "upscaled from a smaller image", {"log_spectral_ratio": round(ratio, 2)}))


def _screenshot(condition: Condition, image: Image.Image, gray: np.ndarray | None) -> None:
    """Large exactly-flat regions, sharp text-like edges and few colours: a rendered screen, not a capture."""
    if gray is None or min(gray.shape) < 64:
        return
    g = gray
    # Flat: the 3x3 neighbourhood spans at most 2 grey levels (JPEG ringing allowed, sensor noise not).
    kernel = np.ones((3, 3), np.uint8)
    flat = float(((cv2.dilate(g, kernel) - cv2.erode(g, kernel)) <= 2).mean())
    # Text-like edges: steps of 80+ grey levels between neighbouring pixels.
    edges = float(((np.abs(np.diff(g, axis=1)) >= 80)[:-1, :].mean() + (np.abs(np.diff(g, axis=0)) >= 80)[:, :-1].mean()) / 2)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    side = 256  # distinct colours per pixel, on a nearest-neighbour thumbnail (no new colours made)
    small = rgb if max(rgb.size) <= side else rgb.resize(
        (max(1, rgb.width * side // max(rgb.size)), max(1, rgb.height * side // max(rgb.size))), Image.Resampling.NEAREST)
    pixels = np.asarray(small).reshape(-1, 3)
    colours = len(np.unique(pixels[:, 0].astype(np.uint32) << 16 | pixels[:, 1].astype(np.uint32) << 8 | pixels[:, 2])) / len(pixels)
    details = {"flat_share": round(flat, 3), "edge_share": round(edges, 4), "colour_share": round(colours, 4)}
    if flat >= SCREEN_FLAT and edges >= SCREEN_EDGES and colours <= SCREEN_COLOURS:
        condition.findings.append(Finding("screenshot", "a screenshot", details))
