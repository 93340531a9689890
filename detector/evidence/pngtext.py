"""Text chunks that image generators and their front-ends write (PNG tEXt/zTXt/iTXt, as Pillow exposes them).

AUTOMATIC1111/Forge ``parameters``, ComfyUI ``prompt``/``workflow``, InvokeAI
``invokeai_metadata``, Fooocus ``fooocus_scheme``, NovelAI ``Software``/``Comment``
(with an Ed25519 ``signed_hash``), Midjourney's ``Description`` with a Job ID.
A chunk with the right key but the wrong shape gives a note, not a marker.
"""

from __future__ import annotations

import json
import re

from ..images import DecodedImage
from .base import AI, NONE, NOTE, UNSIGNED, Evidence
from .vocab import generator_in

CAVEAT = "Unsigned metadata: anyone can add or remove it, but nobody has a reason to write it into a real photo."
_JOB_ID = re.compile(r"Job ID:\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.IGNORECASE)
_A1111 = re.compile(r"(?:^|\n|,\s)(Steps|Sampler|CFG scale|Seed|Model|Model hash|Size):\s*([^,\n]{1,120})")


def text_chunks(item: DecodedImage) -> dict[str, str]:
    """Pillow's text entries as str (bytes decoded leniently); non-text info (dpi, icc...) left out."""
    chunks = {}
    for key, value in item.info.items():
        if not isinstance(key, str) or "xmp" in key.lower() or key in ("icc_profile", "exif"):
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            chunks[key] = value
    return chunks


def _marker(generator: str, what: str, details: dict) -> Evidence:
    return Evidence("provenance", "png_text", AI, UNSIGNED, f"{what} {CAVEAT}", {"generator": generator, **details})


def _note(statement: str, details: dict) -> Evidence:
    return Evidence("provenance", "png_text", NONE, NOTE, statement, details)


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_a1111(text: str) -> dict:
    """The settings line of an A1111/Forge ``parameters`` text: Steps, Sampler, Seed, Model..."""
    return {key.lower().replace(" ", "_"): value.strip() for key, value in _A1111.findall(text)}


def read_png_text(item: DecodedImage) -> list[Evidence]:
    chunks = text_chunks(item)
    lower = {k.lower(): (k, v) for k, v in chunks.items()}
    evidence: list[Evidence] = []

    if "parameters" in lower:
        key, text = lower["parameters"]
        settings = parse_a1111(text)
        scheme = lower.get("fooocus_scheme", (None, None))[1]
        data = _json(text) if text.lstrip().startswith("{") else None
        if scheme or (isinstance(data, dict) and any("fooocus" in str(v).lower() for v in data.values())):
            evidence.append(
                _marker(
                    "Fooocus",
                    "A Fooocus 'parameters' text chunk records the generation settings.",
                    {"chunk": key, "scheme": scheme},
                )
            )
        elif {"steps", "sampler"} & set(settings) or "seed" in settings:
            summary = ", ".join(f"{k} {v}" for k, v in settings.items() if k in ("steps", "sampler", "model", "seed"))
            evidence.append(
                _marker(
                    "AUTOMATIC1111 / Forge",
                    f"An AUTOMATIC1111/Forge 'parameters' text chunk records the prompt and settings ({summary}).",
                    {"chunk": key, "settings": settings, "prompt": text.split("\n")[0][:200]},
                )
            )
        else:
            evidence.append(
                _note(
                    "A 'parameters' text chunk is present but is not in a generator format we know; not counted.",
                    {"chunk": key, "excerpt": text[:120]},
                )
            )

    if "prompt" in lower or "workflow" in lower:
        key, text = lower.get("prompt") or lower["workflow"]
        data = _json(text)
        nodes = []
        if isinstance(data, dict):
            if isinstance(data.get("nodes"), list):  # workflow
                nodes = [n.get("type") for n in data["nodes"] if isinstance(n, dict)]
            else:  # prompt: {"3": {"class_type": "KSampler", "inputs": {...}}, ...}
                nodes = [n.get("class_type") for n in data.values() if isinstance(n, dict) and "class_type" in n]
        if nodes:
            evidence.append(
                _marker(
                    "ComfyUI",
                    f"A ComfyUI '{key}' text chunk records the generation graph ({len(nodes)} nodes).",
                    {"chunk": key, "node_types": sorted({str(n) for n in nodes if n})[:20]},
                )
            )
        else:
            evidence.append(
                _note(
                    f"A '{key}' text chunk is present but is not a ComfyUI graph (not valid JSON of nodes); not counted.",
                    {"chunk": key, "excerpt": text[:120]},
                )
            )

    for name in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "dream"):
        if name in lower:
            key, text = lower[name]
            evidence.append(
                _marker(
                    "InvokeAI",
                    f"An InvokeAI '{key}' text chunk records the generation settings.",
                    {"chunk": key, "valid_json": _json(text) is not None},
                )
            )
            break

    software = lower.get("software", (None, ""))[1]
    if "novelai" in software.lower():
        comment = _json(lower.get("comment", (None, ""))[1]) or {}
        signed = (comment.get("signed_hash") if isinstance(comment, dict) else None) or lower.get(
            "signed_hash", (None, None)
        )[1]
        signature = (
            "It carries NovelAI's signed hash, not verified: NovelAI's public key is not shipped with this tool, "
            "so the signature cannot be checked offline."
            if signed
            else "It carries no signed hash."
        )
        evidence.append(
            _marker(
                "NovelAI",
                f"The text chunks name NovelAI as the software. {signature}",
                {
                    "software": software,
                    "source": lower.get("source", (None, None))[1],
                    "signed_hash_present": bool(signed),
                    "signed_hash_verified": False,
                },
            )
        )
    elif software and generator_in(software):
        evidence.append(
            _marker(
                generator_in(software),
                f"The 'Software' text chunk names the generator {generator_in(software)}.",
                {"software": software[:200]},
            )
        )

    for key in ("description", "comment", "title"):
        if key in lower:
            match = _JOB_ID.search(lower[key][1][:100_000])
            if match:
                evidence.append(
                    _marker(
                        "Midjourney",
                        f"The '{lower[key][0]}' text carries a Midjourney Job ID ({match.group(1)}).",
                        {"chunk": lower[key][0], "job_id": match.group(1)},
                    )
                )
                break
    return evidence
