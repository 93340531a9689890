"""Verdict fusion: how the evidence items become one verdict. The only place these rules live.

1. A verified C2PA claim of AI generation (valid signature, content hash binds the
   pixels, signer chains to a trust anchor) decides "ai_generated".
2. Otherwise any AI marker decides "ai_generated": C2PA claims with a valid signature
   but an unverified ("claimed") signer, IPTC DigitalSourceType in XMP, generator
   parameters, a Midjourney Job ID, a generator named in EXIF, the SD watermark.
   They are unsigned or unverified, so the reason says that anyone can add or remove
   them; nobody has a reason to tag a real photo that way.
3. If every decisive marker says "composite with AI", the verdict is "ai_generated"
   with ``partly_ai`` set. A C2PA item says so when a composite claim appears anywhere
   in its ingredient chain (the C2PA reader folds the chain into one item).
4. Otherwise, if the image-condition check (``detector.condition``) finds the image
   degraded (a thumbnail compressed hard, re-compressed, upscaled or a screenshot, in
   combination), the verdict is "uncertain" and the reason says why in plain words:
   the traces the pixel model reads do not survive that, so its answer would be luck.
5. Otherwise the pixel model decides (real / ai_generated / uncertain); if it cannot
   judge the image, the verdict is "uncertain". An "uncertain" model verdict on an image
   with milder condition findings names them, so "Can't tell" always says why.
Never counted: tampered C2PA (pixels changed after signing), camera EXIF, provenance
that says "camera capture", and "no provenance found". Provenance never makes "real".
Every disagreement between items is listed in ``conflicts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .condition import Condition, condition_sentence
from .evidence.base import AI, PARTLY_AI, REAL, TAMPERED, UNCERTAIN, VERIFIED, Evidence

C2PA_VERIFIED = "c2pa_verified"
PROVENANCE = "provenance_markers"
PIXEL_MODEL = "pixel_model"
IMAGE_CONDITION = "image_condition"
NOTHING = "nothing"


@dataclass
class Verdict:
    label: str  # real | ai_generated | uncertain
    partly_ai: bool
    decided_by: str  # c2pa_verified | provenance_markers | image_condition | pixel_model | nothing
    reason: str
    conflicts: list[str] = field(default_factory=list)


def fuse(evidence: list[Evidence], condition: Condition | None = None) -> Verdict:
    """One verdict from the evidence items and (optionally) the image-condition check, by the rules above."""
    model = next((e for e in evidence if e.kind == "pixel_model"), None)
    markers = [e for e in evidence if e.is_marker]
    verified = [e for e in markers if e.strength == VERIFIED]
    conflicts = _conflicts(evidence, markers, model)
    if markers:
        decisive = verified or markers
        partly = all(e.signal == PARTLY_AI for e in decisive)
        first = decisive[0]
        what = "partly AI-generated" if partly else "AI-generated"
        if verified:
            reason = f"Verified C2PA Content Credentials say the image is {what}: {first.statement}"
        else:
            reason = (
                f"The file's own metadata says it is {what} ({_sources(decisive)}){_made_with(decisive)}. "
                "This metadata is not verified: "
                "anyone can add or remove it, but nobody has a reason to tag a real photo this way."
            )
        return Verdict(AI, partly, C2PA_VERIFIED if verified else PROVENANCE, reason, conflicts)
    why = condition_sentence(condition)
    if condition is not None and condition.degraded:
        reason = why
        if model is not None and model.payload is not None and model.signal in (AI, REAL):
            reason += f" (The pixel model alone would have said {model.signal.replace('_', '-')}, p={model.details.get('p_fake')}.)"
        return Verdict(UNCERTAIN, False, IMAGE_CONDITION, reason, conflicts)
    if model is not None and model.signal in (AI, REAL, UNCERTAIN) and model.payload is not None:
        statement = f"{model.statement} {why}" if why and model.signal == UNCERTAIN else model.statement
        return Verdict(model.signal, False, PIXEL_MODEL, statement, conflicts)
    reason = "The pixel model cannot judge this image and the file carries no AI provenance marker."
    if model is None:
        reason = "No pixel model was run and the file carries no AI provenance marker."
    return Verdict(UNCERTAIN, False, NOTHING, reason, conflicts)


def _made_with(items: list[Evidence]) -> str:
    """", made with GPT-4o": the generator the deciding items name, so the reason says who made the image."""
    names = [str(e.details.get("generator")) for e in items if isinstance(e.details, dict) and e.details.get("generator")]
    return f", made with {', '.join(dict.fromkeys(names))}" if names else ""


def _sources(items: list[Evidence]) -> str:
    names = {
        "c2pa": "C2PA, signer not verified",
        "xmp": "XMP DigitalSourceType",
        "png_text": "generator text chunks",
        "exif": "EXIF",
        "watermark": "SD invisible watermark",
    }
    return ", ".join(dict.fromkeys(names.get(e.source, e.source) for e in items))


def _conflicts(evidence: list[Evidence], markers: list[Evidence], model: Evidence | None) -> list[str]:
    conflicts = []
    signals = {e.signal for e in markers}
    if {AI, PARTLY_AI} <= signals:
        conflicts.append("Some markers say fully AI-generated, others only partly (a composite).")
    if markers and model is not None and model.signal == REAL:
        conflicts.append(
            f"The file's provenance says AI-generated, but the pixel model says real "
            f"(p={model.details.get('p_fake')}): the model misses some generators."
        )
    if markers and any(e.source == "camera_exif" for e in evidence):
        conflicts.append("The file also carries camera EXIF, which is easily copied from another photo.")
    capture = [e for e in evidence if e.kind != "pixel_model" and e.signal == REAL and e.strength != TAMPERED]
    if capture and markers:
        conflicts.append("One provenance item says camera capture while another says AI-generated.")
    if capture and not markers and model is not None and model.signal == AI:
        conflicts.append(
            "The provenance says camera capture, but the pixel model says AI-generated; "
            "provenance never makes a verdict 'real', so the model's answer stands."
        )
    for item in evidence:
        if item.strength == TAMPERED and item.signal in (AI, PARTLY_AI):
            conflicts.append(
                "C2PA Content Credentials claim AI generation, but the file changed after signing, "
                "so the claim is not counted."
            )
    return conflicts
