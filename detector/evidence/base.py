"""What every kind of evidence produces, and the interface each kind implements.

The pixel model is one kind, provenance read from the file another; a third
(say, a reverse-image lookup) subclasses :class:`EvidenceKind` and is passed to
``detector.report.analyze`` without touching the others. Fusion
(``detector.fusion``) only reads the :class:`Evidence` items, never a kind's
internals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..images import DecodedImage

# signal: what an item points to (the verdict vocabulary, plus partly AI and nothing).
AI = "ai_generated"
PARTLY_AI = "partly_ai"
REAL = "real"
UNCERTAIN = "uncertain"
NONE = "none"

# strength: how much an item can be trusted.
VERIFIED = "verified"  # cryptographically signed by a signer that chains to a trust anchor we ship or were given
CLAIMED = "claimed"  # validly signed, but the signer is only who the certificate says it is
UNSIGNED = "unsigned"  # plain metadata or a watermark: anyone can add or remove it
STATISTICAL = "statistical"  # the pixel model's calibrated score
INFORMATION = "information"  # shown, never counted (camera EXIF, "nothing found")
TAMPERED = "tampered"  # signed data that no longer matches the file: reported, never decisive
NOTE = "note"  # a check that could not run or read something (damaged data, skipped, offline)

MARKER_STRENGTHS = (VERIFIED, CLAIMED, UNSIGNED)


@dataclass
class Evidence:
    """One finding: which kind and reader made it, what it points to, how strong, in one plain sentence."""

    kind: str  # the EvidenceKind that produced it: "pixel_model", "provenance", ...
    source: str  # the reader inside the kind: "c2pa", "xmp", "png_text", "exif", "watermark", "model"...
    signal: str
    strength: str
    statement: str
    details: dict = field(default_factory=dict)
    payload: Any = field(default=None, repr=False, compare=False)  # e.g. the Prediction; not serialised

    @property
    def is_marker(self) -> bool:
        """An AI provenance marker that fusion counts (never the model, never tampered or informational)."""
        return self.kind != "pixel_model" and self.signal in (AI, PARTLY_AI) and self.strength in MARKER_STRENGTHS

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "signal": self.signal,
            "strength": self.strength,
            "statement": self.statement,
            "details": self.details,
        }


class EvidenceKind(ABC):
    """A source of evidence about decoded images. Kinds never see each other's results."""

    name: str = "evidence"

    @abstractmethod
    def collect(self, item: DecodedImage) -> list[Evidence]:
        """Evidence about one image. Raise only for bugs: unreadable parts become NOTE items."""

    def collect_batch(self, items: list[DecodedImage]) -> list[list[Evidence]]:
        """Evidence for many images; kinds that batch (the pixel model) override this."""
        return [self.collect(item) for item in items]
