"""detector.spectrum: the picture the app shows must really show periodic upsampling traces."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detector.spectrum import SPECTRUM_SIDE, log_spectrum, peak_ratio, spectrum_image


def _photo(width: int = 384, height: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1) * 255
    return base + rng.normal(0, 12, base.shape)


def _pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def test_a_period_4_pattern_shows_as_peaks_where_its_frequency_is():
    """A faint dot grid every 4 px (what a 4x transposed-conv upsampler leaves) lights up at 1/4 of the spectrum."""
    height, width = 256, 384
    y, x = np.mgrid[0:height, 0:width]
    clean = _photo(width, height)
    traced = clean + ((x % 4 == 0) & (y % 4 == 0))[..., None] * 40.0
    smooth, peaky = log_spectrum(_pil(clean)), log_spectrum(_pil(traced))
    assert peaky.shape == (height, width) and peaky.dtype == np.float32
    assert 0.0 <= peaky.min() and peaky.max() <= 1.0
    assert peak_ratio(peaky) > peak_ratio(smooth) + 0.15
    # The peak sits at a quarter of the sampling frequency from the centre, along x.
    cy, cx = height // 2, width // 2
    assert peaky[cy, cx + width // 4] > np.median(peaky) + 0.4
    assert peaky[cy, cx + width // 4] - smooth[cy, cx + width // 4] > 0.3


def test_large_images_are_cropped_not_resized_and_flat_ones_are_black():
    big = _pil(_photo(1500, 900))
    assert log_spectrum(big).shape == (SPECTRUM_SIDE, SPECTRUM_SIDE)
    assert spectrum_image(big).size == (SPECTRUM_SIDE, SPECTRUM_SIDE) and spectrum_image(big).mode == "L"
    flat = Image.new("RGB", (50, 30), (120, 120, 120))
    assert log_spectrum(flat).max() == 0.0


@pytest.mark.parametrize("size", [(1, 1), (2, 7), (40, 3)])
def test_tiny_images_do_not_crash(size):
    spectrum = log_spectrum(_pil(_photo(*size)))
    assert spectrum.shape == (size[1], size[0]) and np.isfinite(spectrum).all()
