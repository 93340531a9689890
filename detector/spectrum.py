"""The image's frequency spectrum: where upsampling leaves its fingerprint.

Generators build images by upsampling feature maps (transposed convolutions,
nearest/bilinear resizes, VAE decoders). That repeats a small pattern every 2,
4 or 8 pixels, which the 2-D Fourier transform shows as bright isolated peaks on
a grid away from the centre. A camera photo's spectrum falls off smoothly from
the centre (low frequencies) outwards. JPEG's 8x8 blocks and resizing also make
peaks, so this is a picture to look at, not a verdict.

Computed on the luminance at the image's own pixel grid: a resize would smear
exactly the periodic traces we want to see, so large images are centre-cropped,
never scaled, before the transform.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

SPECTRUM_SIDE = 512  # the centre crop (native pixels) the transform sees; keeps it ~10 ms


def log_spectrum(image: Image.Image, side: int = SPECTRUM_SIDE) -> np.ndarray:
    """Log-magnitude spectrum of the luminance, zero frequency in the centre, scaled to [0, 1].

    A Hann window stops the image borders from painting a bright cross through
    the centre; the mean is removed so the DC term does not dominate the scale.
    """
    width, height = image.size
    w, h = min(width, side), min(height, side)
    left, top = (width - w) // 2, (height - h) // 2
    crop = np.asarray(image.crop((left, top, left + w, top + h)).convert("L"), dtype=np.float32)
    crop = crop - crop.mean()
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32) if min(h, w) > 2 else 1.0
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(crop * window)))
    spectrum = np.log1p(magnitude)
    # Percentile scaling: one huge peak must not turn everything else black.
    low, high = np.percentile(spectrum, (1.0, 99.9))
    if high - low < 1e-9:
        return np.zeros_like(spectrum, dtype=np.float32)
    return np.clip((spectrum - low) / (high - low), 0.0, 1.0).astype(np.float32)


def spectrum_image(image: Image.Image, side: int = SPECTRUM_SIDE) -> Image.Image:
    """The spectrum as a greyscale picture (bright = strong frequency), square pixels as computed."""
    return Image.fromarray((log_spectrum(image, side) * 255 + 0.5).astype(np.uint8), mode="L")


def peak_ratio(spectrum: np.ndarray, exclude: float = 0.1) -> float:
    """How far the brightest off-centre point stands above the spectrum's median, in [0, 1] units.

    Used by tests to tell a spectrum with periodic peaks from a smooth one; the
    centre (the lowest ``exclude`` fraction of frequencies) is ignored.
    """
    h, w = spectrum.shape
    y, x = np.ogrid[:h, :w]
    radius = np.hypot((y - h / 2) / (h / 2), (x - w / 2) / (w / 2))
    outer = spectrum[radius > exclude]
    return float(outer.max() - np.median(outer))
