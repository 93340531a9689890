"""Kinds of evidence about an image: the pixel model, provenance read from the file, and any added later."""

from .base import (
    AI,
    CLAIMED,
    INFORMATION,
    NONE,
    NOTE,
    PARTLY_AI,
    REAL,
    STATISTICAL,
    TAMPERED,
    UNCERTAIN,
    UNSIGNED,
    VERIFIED,
    Evidence,
    EvidenceKind,
)
from .pixel import PixelModelEvidence
from .provenance import ProvenanceEvidence

__all__ = [
    "AI",
    "CLAIMED",
    "INFORMATION",
    "NONE",
    "NOTE",
    "PARTLY_AI",
    "REAL",
    "STATISTICAL",
    "TAMPERED",
    "UNCERTAIN",
    "UNSIGNED",
    "VERIFIED",
    "Evidence",
    "EvidenceKind",
    "PixelModelEvidence",
    "ProvenanceEvidence",
]
