"""EXIF: a generator named in Make/Model/Software/UserComment is a marker; camera fields are information only.

Camera EXIF is trivially copied or forged, so it never makes a verdict "real".
"""

from __future__ import annotations

from ..images import DecodedImage
from .base import AI, INFORMATION, NONE, UNSIGNED, Evidence
from .pngtext import parse_a1111
from .vocab import generator_in

MAKE, MODEL, SOFTWARE, DESCRIPTION = 0x010F, 0x0110, 0x0131, 0x010E
USER_COMMENT, EXPOSURE, F_NUMBER, ISO, TAKEN, LENS = 0x9286, 0x829A, 0x829D, 0x8827, 0x9003, 0xA434
_NAMES = {MAKE: "Make", MODEL: "Model", SOFTWARE: "Software"}
CAVEAT = "Unsigned metadata: anyone can add or remove it, but nobody has a reason to write it into a real photo."


def _text(value) -> str:
    if isinstance(value, bytes):
        return user_comment(value)
    return str(value).strip("\x00 ").strip() if value is not None else ""


def user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte charset header (ASCII/UNICODE/JIS) then the text."""
    header, body = raw[:8], raw[8:]
    if header.startswith(b"UNICODE"):
        # A1111 (piexif) writes UTF-16 big-endian, some tools little-endian: Latin text starts with NUL in BE.
        text = body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", "replace")
    elif header.startswith((b"ASCII", b"\x00\x00\x00\x00\x00\x00\x00\x00")):
        text = body.decode("utf-8", "replace")
    else:
        text = raw.decode("utf-8", "replace")
    return text.strip("\x00 ").strip()


def read_exif(item: DecodedImage) -> list[Evidence]:
    tags = item.exif
    if not tags:
        return []
    evidence: list[Evidence] = []
    for tag, field in _NAMES.items():
        value = _text(tags.get(tag))[:200]
        generator = generator_in(value)
        if generator:
            evidence.append(
                Evidence(
                    "provenance",
                    "exif",
                    AI,
                    UNSIGNED,
                    f"EXIF {field} names the image generator {generator} ({value!r}). {CAVEAT}",
                    {"field": field, "value": value, "generator": generator},
                )
            )
    comment = _text(tags.get(USER_COMMENT))[:100_000]
    if comment:
        settings = parse_a1111(comment)
        if {"steps", "sampler"} <= set(settings) or generator_in(comment[:2000]):
            generator = "AUTOMATIC1111 / Forge" if {"steps", "sampler"} <= set(settings) else generator_in(comment)
            evidence.append(
                Evidence(
                    "provenance",
                    "exif",
                    AI,
                    UNSIGNED,
                    f"EXIF UserComment holds generation settings or names {generator}. {CAVEAT}",
                    {"field": "UserComment", "generator": generator, "settings": settings, "excerpt": comment[:200]},
                )
            )
    if not evidence:
        camera = _camera(tags)
        if camera:
            summary = ", ".join(str(v) for v in camera.values())
            evidence.append(
                Evidence(
                    "provenance",
                    "camera_exif",
                    NONE,
                    INFORMATION,
                    f"Camera EXIF: {summary}. Information only: EXIF is easily copied or forged, "
                    "so it never makes a verdict 'real'.",
                    camera,
                )
            )
    return evidence


def _camera(tags: dict) -> dict:
    camera = {}
    make, model = _text(tags.get(MAKE))[:80], _text(tags.get(MODEL))[:80]
    if make or model:
        camera["camera"] = (
            model if make and model.lower().startswith(make.lower()) else " ".join(p for p in (make, model) if p)
        )
    if tags.get(LENS):
        camera["lens"] = _text(tags.get(LENS))[:80]
    try:
        if tags.get(EXPOSURE):
            exposure = float(tags[EXPOSURE])
            camera["exposure"] = f"1/{round(1 / exposure)} s" if 0 < exposure < 1 else f"{exposure:g} s"
        if tags.get(F_NUMBER):
            camera["aperture"] = f"f/{float(tags[F_NUMBER]):g}"
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    if isinstance(tags.get(ISO), (int, tuple)):
        iso = tags[ISO][0] if isinstance(tags[ISO], tuple) else tags[ISO]
        camera["iso"] = f"ISO {iso}"
    if tags.get(TAKEN):
        camera["taken"] = _text(tags.get(TAKEN))[:40]
    return camera if ("camera" in camera or len(camera) >= 2) else {}
