"""C2PA Content Credentials, read offline with c2pa-python (the C2PA reference SDK).

Never fetches anything: remote manifests and OCSP are off. The overall
``validation_state`` is not used as a gate: genuine generator files often come back
"Invalid" only because their signer is not in a trust store or its certificate has
expired. What matters is read from the validation codes: is the claim signature
valid, does the content hash still bind the pixels, and does the signer chain to a
trust anchor we were given (then "verified"; otherwise the signer is only "claimed").
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from pathlib import Path

from ..images import DecodedImage
from .base import AI, CLAIMED, NONE, NOTE, PARTLY_AI, REAL, TAMPERED, VERIFIED, Evidence
from .vocab import digital_source_type

TRUST_ENV_VAR = "CONVITX_C2PA_TRUST_ANCHORS"
# We ship no anchors (see README "Provenance"): put a PEM bundle here, or point the env var at one.
SHIPPED_ANCHORS = Path(__file__).with_name("trust_anchors.pem")
_HASH_MATCH = (
    "assertion.dataHash.match",
    "assertion.boxesHash.match",
    "assertion.bmffHash.match",
    "assertion.collectionHash.match",
)
_REMOTE = re.compile(r"remote manifests? from url (\S+)", re.IGNORECASE)
_contexts: dict[str, object] = {}
_lock = threading.Lock()


def trust_anchors(explicit: str | None = None) -> str:
    """PEM text of the anchors that make a signer "verified": argument, env var file, shipped file, or none."""
    if explicit is not None:
        return explicit
    path = os.environ.get(TRUST_ENV_VAR) or (str(SHIPPED_ANCHORS) if SHIPPED_ANCHORS.is_file() else "")
    return Path(path).read_text(encoding="utf-8") if path else ""


def _context(anchors: str):
    """One c2pa Context per anchor set: offline, no remote manifests, no OCSP, no thumbnails."""
    import c2pa

    with _lock:
        if anchors not in _contexts:
            settings = {
                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
                "core": {"allowed_network_hosts": []},
            }
            if anchors.strip():
                settings["trust"] = {"trust_anchors": anchors}
            _contexts[anchors] = c2pa.Context.from_dict(settings)
        return _contexts[anchors]


def read_c2pa(item: DecodedImage, anchors: str | None = None) -> list[Evidence]:
    if item.data is None or item.mime is None or item.format == "bmp":
        return []
    import c2pa

    try:
        with c2pa.Reader(item.mime, io.BytesIO(item.data), context=_context(trust_anchors(anchors))) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return []
    except c2pa.C2paError as exc:
        message = str(exc)
        remote = _REMOTE.search(message)
        if remote:
            url = remote.group(1)
            return [
                _note(
                    f"The file says its Content Credentials are stored online at {url}; they were not fetched "
                    "(this check works offline), so they were not checked.",
                    {"remote_url": url},
                )
            ]
        return [
            _note(
                f"The file has C2PA data that could not be read (damaged or unsupported): {_short(message)}",
                {"error": _short(message)},
            )
        ]
    return [_manifest_evidence(store)]


def _manifest_evidence(store: dict) -> Evidence:
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    success = {entry.get("code") for entry in results.get("success", [])}
    failure = {entry.get("code") for entry in results.get("failure", [])}
    # Older stores list failures only in validation_status.
    failure |= {entry.get("code") for entry in store.get("validation_status", []) or []}

    signature_valid = "claimSignature.validated" in success and "claimSignature.mismatch" not in failure
    hash_failures = sorted(
        c
        for c in failure
        if c and (c.endswith(".mismatch") or c.endswith(".malformed")) and not c.startswith("signingCredential")
    )
    binds_pixels = any(c in success for c in _HASH_MATCH) and not hash_failures
    trusted = "signingCredential.trusted" in success
    expired = bool({"signingCredential.expired", "claimSignature.outsideValidity"} & failure)

    signature = manifest.get("signature_info") or {}
    signer = signature.get("common_name") or signature.get("issuer") or "an unnamed signer"
    generator = _generator(manifest)
    actions, source_types = _actions(manifest)
    signal, meaning = NONE, "no digital source type given"
    for term in source_types:
        found = digital_source_type(term)
        if found and (signal == NONE or found[1] == AI or (found[1] == PARTLY_AI and signal != AI)):
            _, signal, meaning = found
    details = {
        "claim_generator": generator,
        "actions": actions,
        "digital_source_types": source_types,
        "signer": {
            "common_name": signature.get("common_name"),
            "issuer": signature.get("issuer"),
            "time": signature.get("time"),
            "alg": signature.get("alg"),
        },
        "signer_status": VERIFIED if trusted else CLAIMED,
        "signature_valid": signature_valid,
        "content_hash_binds_pixels": binds_pixels,
        "certificate_expired": expired,
        "validation_state": store.get("validation_state"),
        "validation_failures": sorted(c for c in failure if c),
    }
    who = f"signed by {signer}" + (
        f" (issuer {signature['issuer']})" if signature.get("issuer") and signature.get("issuer") != signer else ""
    )
    what = f"C2PA Content Credentials from {generator or 'an unnamed tool'}, {who}, say the image is {meaning}"
    if not signature_valid or not binds_pixels:
        why = "the signature does not verify" if not signature_valid else "the pixels were changed after signing"
        return Evidence(
            "provenance",
            "c2pa",
            signal,
            TAMPERED,
            f"{what}, but {why}: the credentials no longer describe this file, so they are not counted.",
            details,
        )
    if trusted:
        statement = (
            f"{what}. The signature is valid, binds the pixels, and the signer is verified against the trust anchors."
        )
        strength = VERIFIED
    else:
        statement = (
            f"{what}. The signature is valid and binds the pixels, but the signer is only claimed: "
            "its certificate does not chain to a trust anchor we ship"
            + (" (and it has expired)" if expired else "")
            + "."
        )
        strength = CLAIMED
    if signal == REAL:
        statement += " Provenance never makes a verdict 'real' on its own."
    return Evidence("provenance", "c2pa", signal, strength, statement, details)


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info") or []
    names = [
        " ".join(str(part) for part in (entry.get("name"), entry.get("version")) if part)
        for entry in info
        if isinstance(entry, dict)
    ]
    return ", ".join(n for n in names if n) or manifest.get("claim_generator")


def _actions(manifest: dict) -> tuple[list[dict], list[str]]:
    actions, source_types = [], []
    for assertion in manifest.get("assertions", []) or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions", []) or []:
            agent = action.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, dict) else agent
            entry = {
                "action": action.get("action"),
                "digital_source_type": action.get("digitalSourceType"),
                "software_agent": agent,
            }
            actions.append(entry)
            if action.get("digitalSourceType"):
                source_types.append(action["digitalSourceType"])
    return actions, source_types


def _note(statement: str, details: dict) -> Evidence:
    return Evidence("provenance", "c2pa", NONE, NOTE, statement, details)


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
