"""Shared vocabularies: IPTC DigitalSourceType terms and generator names.

DigitalSourceType terms: https://cv.iptc.org/newscodes/digitalsourcetype/ (IPTC
NewsCodes, 2025 list) plus the two C2PA-namespace terms. Matching is on the last
path segment, case-insensitive, so ``TrainedAlgorithmicMedia`` and a bare term both count.
"""

from __future__ import annotations

import re

from .base import AI, NONE, PARTLY_AI, REAL

# term (lower case) -> (signal, plain-language meaning)
DIGITAL_SOURCE_TYPES: dict[str, tuple[str, str]] = {
    "trainedalgorithmicmedia": (AI, "created by a generative AI model (trainedAlgorithmicMedia)"),
    "compositewithtrainedalgorithmicmedia": (
        PARTLY_AI,
        "a composite that includes AI-generated elements (compositeWithTrainedAlgorithmicMedia)",
    ),
    "algorithmicmedia": (NONE, "created by an algorithm without training data, e.g. procedural (algorithmicMedia)"),
    "algorithmicallyenhanced": (NONE, "a capture enhanced by an algorithm (algorithmicallyEnhanced)"),
    "digitalcapture": (REAL, "captured by a digital camera (digitalCapture)"),
    "computationalcapture": (
        REAL,
        "a computational capture, e.g. a phone camera's multi-frame photo (computationalCapture)",
    ),
    "negativefilm": (REAL, "a scan of a film negative (negativeFilm)"),
    "positivefilm": (REAL, "a scan of a film positive (positiveFilm)"),
    "print": (REAL, "a scan of a print (print)"),
    "minorhumanedits": (NONE, "a capture with minor human edits (minorHumanEdits)"),
    "humanedits": (NONE, "media with human edits (humanEdits)"),
    "compositecapture": (NONE, "a composite of captured elements (compositeCapture)"),
    "compositesynthetic": (NONE, "a composite including synthetic, not necessarily AI, elements (compositeSynthetic)"),
    "composite": (NONE, "a composite of several elements (composite)"),
    "digitalart": (NONE, "made by a person with digital tools (digitalArt)"),
    "digitalcreation": (NONE, "made by a person with digital tools (digitalCreation)"),
    "softwareimage": (NONE, "rendered by software (softwareImage)"),
    "virtualrecording": (NONE, "a recording of a virtual event (virtualRecording)"),
    "screencapture": (NONE, "a screen capture (screenCapture)"),
    "datadrivenmedia": (NONE, "produced from data, e.g. a chart (dataDrivenMedia)"),
    "trainedalgorithmicdata": (NONE, "data produced by a trained model, not media (trainedAlgorithmicData)"),
    "empty": (NONE, "no source type given (empty)"),
}


def digital_source_type(value: str) -> tuple[str, str, str] | None:
    """``(term, signal, meaning)`` for a URL or bare term, or None when it is not an IPTC/C2PA term."""
    term = str(value).strip().rstrip("/").rsplit("/", 1)[-1].strip().lower()
    if term not in DIGITAL_SOURCE_TYPES:
        return None
    signal, meaning = DIGITAL_SOURCE_TYPES[term]
    return term, signal, meaning


# Names of image generators and their front-ends, as they appear in EXIF Make/Software,
# XMP CreatorTool or PNG Software. Word-bounded, case-insensitive.
GENERATOR_NAMES: dict[str, str] = {
    r"ideogram": "Ideogram",
    r"midjourney": "Midjourney",
    r"dall[-·\s]?e": "DALL-E",
    r"chatgpt|gpt-4o|gpt-image": "ChatGPT / GPT-4o",
    r"openai": "OpenAI",
    r"stable\s?diffusion|sdxl": "Stable Diffusion",
    r"novelai": "NovelAI",
    r"adobe firefly": "Adobe Firefly",
    r"leonardo\.?ai": "Leonardo.Ai",
    r"imagen": "Google Imagen",
    r"flux\.1|flux\s(?:dev|schnell|pro)|black forest labs": "FLUX (Black Forest Labs)",
    r"comfyui": "ComfyUI",
    r"automatic1111|stable-diffusion-webui": "AUTOMATIC1111",
    r"invokeai": "InvokeAI",
    r"fooocus": "Fooocus",
    r"dreamstudio": "DreamStudio",
    r"nightcafe": "NightCafe",
    r"bing image creator": "Bing Image Creator",
    r"playground\s?ai": "Playground AI",
    r"recraft": "Recraft",
    r"kandinsky": "Kandinsky",
    r"craiyon": "Craiyon",
    r"dreamina|seedream": "Dreamina / Seedream",
    r"runwayml": "Runway",
}
_GENERATOR_RE = re.compile(r"\b(" + "|".join(f"(?:{p})" for p in GENERATOR_NAMES) + r")\b", re.IGNORECASE)


def generator_in(text: str) -> str | None:
    """The generator a text names, or None."""
    if not text:
        return None
    match = _GENERATOR_RE.search(str(text)[:10_000])
    if not match:
        return None
    found = match.group(1)
    for pattern, name in GENERATOR_NAMES.items():
        if re.fullmatch(pattern, found, re.IGNORECASE):
            return name
    return found
