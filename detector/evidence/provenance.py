"""Provenance read from the file itself: C2PA, XMP/IPTC, generator text chunks, EXIF, the SD watermark.

Each reader sees the decoded file and returns Evidence; one that fails on hostile
input becomes a note, never a crash. Finding nothing is stated as normal and never
counts towards "real".
"""

from __future__ import annotations

import time

from ..images import DecodedImage
from .base import CLAIMED, INFORMATION, NONE, NOTE, TAMPERED, VERIFIED, Evidence, EvidenceKind
from .c2pa_reader import read_c2pa
from .exif import read_exif
from .pngtext import read_png_text
from .watermark import MAX_PIXELS, read_watermark
from .xmp import read_xmp

NOTHING_FOUND = (
    "No provenance found in the file: no Content Credentials, AI metadata or generator watermark. "
    "That is normal for screenshots, re-uploads and most photos, and says nothing either way."
)

NO_AI_CLAIM = (
    "The file carries provenance (see the items above) but no AI claim: a camera, editor or screenshot tool "
    "signed or tagged it. That never makes a verdict 'real' on its own."
)

NOT_USABLE = (
    "No usable AI provenance in the file (see the items above: damaged, changed after signing, or not "
    "checked). Nothing here counts either way."
)


class ProvenanceEvidence(EvidenceKind):
    name = "provenance"

    def __init__(self, trust_anchors: str | None = None, watermark_max_pixels: int = MAX_PIXELS):
        """``trust_anchors``: PEM text of C2PA anchors (default: $CONVITX_C2PA_TRUST_ANCHORS or none)."""
        self.readers = (
            ("c2pa", lambda item: read_c2pa(item, trust_anchors)),
            ("xmp", read_xmp),
            ("png_text", read_png_text),
            ("exif", read_exif),
            ("watermark", lambda item: read_watermark(item, watermark_max_pixels)),
        )

    def collect(self, item: DecodedImage) -> list[Evidence]:
        evidence: list[Evidence] = []
        timings = {}
        for source, reader in self.readers:
            start = time.perf_counter()
            try:
                evidence.extend(reader(item))
            except Exception as exc:  # noqa: BLE001 - hostile metadata must never take the report down
                evidence.append(
                    Evidence(
                        self.name,
                        source,
                        NONE,
                        NOTE,
                        f"The {source} check could not read this file's data ({type(exc).__name__}); skipped.",
                        {"error": str(exc)[:200]},
                    )
                )
            timings[source] = round((time.perf_counter() - start) * 1000, 2)
        if not any(e.is_marker for e in evidence):
            unusable = any(e.strength in (TAMPERED, NOTE) and e.source != "watermark" for e in evidence)
            signed = any(e.source == "c2pa" and e.strength in (VERIFIED, CLAIMED) for e in evidence)
            statement = NOT_USABLE if unusable else NO_AI_CLAIM if signed else NOTHING_FOUND
            evidence.append(Evidence(self.name, "summary", NONE, INFORMATION, statement, {"timings_ms": timings}))
        return evidence
