"""Seeded fuzz of decoding: damaged JPEG/PNG/WebP/GIF/TIFF/BMP files either decode or give the typed, named,
actionable ImageError, never Pillow's raw text, a traceback or a hang. Provenance readers must survive them too.

The C2PA part: seeded damage inside real two-link manifests (OpenAI's layout, signed here) plus the
bad-C2PA corpus (deep chain, failing ingredient, oversized / lying JUMBF boxes): each gives a clear
evidence item in bounded time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from detector import ImageError, decode
from detector.evidence import ProvenanceEvidence
from detector.evidence.c2pa_reader import jumbf_size
from provenance_files import bad_c2pa_files, encode, make_chain, openai_structure, photo, replace_png_chunk_payload

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


PER_C2PA_FORMAT = 20


def test_fuzzed_c2pa_manifests_fail_cleanly():
    rng = np.random.default_rng(20240513)
    chain = make_chain("Fuzz")
    provenance = ProvenanceEvidence(trust_anchors="")
    corpus = [(name, data) for name, (data, _) in bad_c2pa_files(chain).items()]
    for fmt in ("PNG", "JPEG"):
        signed = openai_structure(encode(photo(96, 64, seed=2), fmt), f"image/{fmt.lower()}", chain)
        start = signed.index(b"jumb") - 4
        end = start + jumbf_size(signed) - 8
        for i in range(PER_C2PA_FORMAT):
            data = bytearray(signed)
            for at in rng.integers(start, end, rng.integers(1, 12)):
                data[at] ^= int(rng.integers(1, 256))
            if fmt == "PNG":  # keep the chunk CRC right, so the damage reaches the C2PA reader
                at = data.index(b"caBX")
                length = int.from_bytes(data[at - 4 : at], "big")
                data = bytearray(replace_png_chunk_payload(bytes(data), b"caBX", bytes(data[at + 4 : at + 4 + length])))
            corpus.append((f"fuzz_{fmt.lower()}_{i:02d}", bytes(data)))
    kinds = set()
    for name, data in corpus:
        start = time.monotonic()
        try:
            item = decode(data)
        except ImageError:
            continue
        evidence = provenance.collect(item)
        assert time.monotonic() - start < 10, name
        assert all(e.statement and "Traceback" not in e.statement for e in evidence), name
        kinds |= {e.strength for e in evidence if e.source == "c2pa"}
    assert {"note", "claimed"} <= kinds  # the corpus reaches both the unreadable and the readable paths
