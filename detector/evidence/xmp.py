"""XMP packets: IPTC DigitalSourceType (how the image was made) and the CreatorTool.

Plain text search rather than an XML parser: packets in the wild are often not
well-formed, and a regex over even a 10 MB packet is linear and fast.
"""

from __future__ import annotations

import re

from ..images import DecodedImage
from .base import AI, INFORMATION, NONE, NOTE, PARTLY_AI, REAL, UNSIGNED, Evidence
from .vocab import digital_source_type, generator_in

LARGE_PACKET = 1 << 20  # above 1 MB a packet is unusual enough to mention
_URL_TERM = re.compile(rb"digitalsourcetype/([A-Za-z]+)", re.IGNORECASE)
_BARE_TERM = re.compile(rb":DigitalSourceType\s*(?:=\s*[\"']|>\s*)([A-Za-z]+)\s*[\"'<]", re.IGNORECASE)
_CREATOR_TOOL = re.compile(rb"CreatorTool\s*(?:=\s*[\"']|>\s*)([^\"'<]{1,200})", re.IGNORECASE)
_PACKET = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>", re.DOTALL)


def xmp_packets(item: DecodedImage) -> list[bytes]:
    """XMP as Pillow exposes it (JPEG/WebP/PNG/TIFF), else any packet found in the raw bytes."""
    packets = []
    for key, value in item.info.items():
        if "xmp" in str(key).lower() and isinstance(value, (bytes, str)):
            packets.append(value.encode("utf-8", "replace") if isinstance(value, str) else value)
    if not packets and item.data and b"<x:xmpmeta" in item.data:
        packets = _PACKET.findall(item.data)
    return list(dict.fromkeys(packets))  # PNG exposes the same packet under two keys


def read_xmp(item: DecodedImage) -> list[Evidence]:
    evidence: list[Evidence] = []
    for packet in xmp_packets(item):
        if len(packet) > LARGE_PACKET:
            evidence.append(
                Evidence(
                    "provenance",
                    "xmp",
                    NONE,
                    NOTE,
                    f"The file has an unusually large XMP packet ({len(packet) / 1e6:.1f} MB); it was searched as text.",
                    {"xmp_bytes": len(packet)},
                )
            )
        terms = [m.decode("ascii", "replace") for m in _URL_TERM.findall(packet) + _BARE_TERM.findall(packet)]
        seen = set()
        for term in terms:
            found = digital_source_type(term)
            if found is None or found[0] in seen:
                continue
            seen.add(found[0])
            name, signal, meaning = found
            details = {"field": "Iptc4xmpExt:DigitalSourceType", "value": name}
            if signal in (AI, PARTLY_AI):
                statement = (
                    f"The XMP metadata says the image is {meaning}. Such metadata is unsigned: "
                    "anyone can add or remove it, but nobody has a reason to tag a real photo this way."
                )
                evidence.append(Evidence("provenance", "xmp", signal, UNSIGNED, statement, details))
            else:
                extra = " Provenance never makes a verdict 'real'." if signal == REAL else ""
                evidence.append(
                    Evidence(
                        "provenance",
                        "xmp",
                        signal,
                        INFORMATION,
                        f"The XMP metadata says the image is {meaning} (information only).{extra}",
                        details,
                    )
                )
        for raw in _CREATOR_TOOL.findall(packet)[:5]:
            tool = raw.decode("utf-8", "replace").strip()
            generator = generator_in(tool)
            if generator:
                evidence.append(
                    Evidence(
                        "provenance",
                        "xmp",
                        AI,
                        UNSIGNED,
                        f"The XMP CreatorTool names the image generator {generator} ({tool!r}); "
                        "unsigned metadata that anyone can add or remove.",
                        {"field": "xmp:CreatorTool", "value": tool, "generator": generator},
                    )
                )
    return evidence
