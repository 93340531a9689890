"""Seeded fuzz of decoding: damaged JPEG/PNG/WebP/GIF/TIFF/BMP files either decode or give the typed, named,
actionable ImageError, never Pillow's raw text, a traceback or a hang. Provenance readers must survive them too."""

from __future__ import annotations

import time

import numpy as np
import pytest

from detector import ImageError, decode
from detector.evidence import ProvenanceEvidence
from provenance_files import encode, photo

pytestmark = pytest.mark.timeout(300)

FORMATS = {
    "jpg": ("JPEG", {"quality": 85}),
    "png": ("PNG", {}),
    "webp": ("WEBP", {"quality": 80}),
    "gif": ("GIF", {}),
    "tif": ("TIFF", {"compression": "tiff_lzw"}),
    "bmp": ("BMP", {}),
}
PER_FORMAT = 30  # 180 files, a few seconds
RAW_PILLOW = (
    "Truncated File Read",
    "could not create decoder object",
    "broken data stream",
    "image file is truncated",
    "cannot identify",
    "Traceback",
    "decoder error",
    "buffer is not large enough",
)
ACTIONABLE = ("export or download it again", "use JPEG, PNG, WebP, GIF, BMP or TIFF", "empty", "the limit is")


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(data)
    how = rng.integers(4)
    if how == 0:  # flipped bytes anywhere
        for at in rng.integers(0, len(data), rng.integers(1, 20)):
            data[at] ^= int(rng.integers(1, 256))
    elif how == 1:  # truncation
        data = data[: int(rng.integers(1, len(data)))]
    elif how == 2:  # spliced junk
        at = int(rng.integers(0, len(data)))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 500)), dtype=np.uint8).tobytes()
    else:  # damaged header
        for at in rng.integers(0, min(64, len(data)), rng.integers(1, 6)):
            data[at] = int(rng.integers(0, 256))
    return bytes(data)


def test_fuzzed_files_fail_cleanly(tmp_path):
    rng = np.random.default_rng(20240501)
    base = photo(96, 64, seed=1)
    provenance = ProvenanceEvidence(trust_anchors="")
    failures = decoded = 0
    for ext, (fmt, kwargs) in FORMATS.items():
        original = encode(base if fmt != "GIF" else base.convert("P"), fmt, **kwargs)
        for i in range(PER_FORMAT):
            path = tmp_path / f"fuzz_{ext}_{i:02d}.{ext}"
            path.write_bytes(mutate(original, rng))
            start = time.monotonic()
            try:
                item = decode(path)
            except ImageError as exc:
                failures += 1
                message = str(exc)
                assert path.name in message, message
                assert any(hint in message for hint in ACTIONABLE), message
                assert not any(raw.lower() in message.lower() for raw in RAW_PILLOW), message
            else:
                decoded += 1
                assert item.image.mode == "RGB"
                assert all(e.statement for e in provenance.collect(item))
            assert time.monotonic() - start < 10, path.name
    assert failures > 20 and decoded > 20  # the corpus really exercises both paths
