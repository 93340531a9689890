"""C2PA Content Credentials, read offline with c2pa-python (the C2PA reference SDK).

Never fetches anything: remote manifests and OCSP are off. The overall
``validation_state`` is not used as a gate: genuine generator files come back
"Invalid" only because their signer is not in a trust store, its certificate has
expired, or an assertion is not well formed. Each failure code is classified by what it
means (``CODE_EFFECTS``, after the C2PA spec's validation section): only a failed claim
signature or a broken hard binding voids the credentials ("tampered"); an untrusted or
expired signer keeps them "claimed"; the rest is listed. The ingredient chain is
followed (parentOf / componentOf, bounded depth, cycles cut), because generators such as
ChatGPT make their AI claim in an ingredient's manifest, not in the active one.
"""

from __future__ import annotations

import fnmatch
import html
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

# Ingredient chain bounds: real files have 1-3 links; hostile ones may loop or nest thousands deep.
MAX_JUMBF_BYTES = 16_000_000  # real Content Credentials, thumbnails included, are well under 2 MB
MAX_DEPTH = 8  # links read, the active manifest included
MAX_STEPS = 32
FOLLOWED = ("parentOf", "componentOf")  # inputTo ingredients fed a generator; they do not describe this image

# What a failure code does to the credentials (only failure codes are classified).
VOID = "void"  # the credentials no longer describe this file: tampered, never counted
UNTRUSTED = "untrusted"  # signer not on a trust list we were given: at most "claimed"
EXPIRED = "expired"  # certificate expired: at most "claimed"
INGREDIENT = "ingredient"  # an ingredient link does not match what was signed: that link is not counted
ASSERTION = "assertion"  # an assertion is not well formed: listed, does not void an intact, bound claim
INFO = "info"  # listed only

# (code pattern, effect, plain meaning); the first matching row wins. Tested row by row.
CODE_EFFECTS: tuple[tuple[str, str, str], ...] = (
    ("claimSignature.mismatch", VOID, "the claim signature does not verify"),
    ("claimSignature.missing", VOID, "the claim has no signature"),
    ("claimSignature.outsideValidity", EXPIRED, "signed outside the certificate's validity period"),
    ("claim.hardBindings.missing", VOID, "no hard binding ties the claim to the file's content"),
    ("claim.missing", VOID, "the claim is missing"),
    ("claim.malformed", VOID, "the claim cannot be parsed"),
    ("claim.cbor.invalid", VOID, "the claim cannot be parsed"),
    ("assertion.dataHash.*", VOID, "the content hash does not match: the file changed after signing"),
    ("assertion.boxesHash.*", VOID, "the content hash does not match: the file changed after signing"),
    ("assertion.bmffHash.*", VOID, "the content hash does not match: the file changed after signing"),
    ("assertion.collectionHash.*", VOID, "the content hash does not match: the file changed after signing"),
    ("assertion.hashedURI.mismatch", VOID, "a signed assertion changed after signing"),  # see classify_code
    ("algorithm.unsupported", VOID, "the signature algorithm is unsupported, so the signature cannot be checked"),
    ("signingCredential.untrusted", UNTRUSTED, "signer not on a trust list"),
    ("signingCredential.invalid", UNTRUSTED, "the signing certificate is not valid for C2PA"),
    ("signingCredential.revoked", UNTRUSTED, "the signing certificate was revoked"),
    ("signingCredential.expired", EXPIRED, "certificate expired"),
    ("signingCredential.ocsp.*", INFO, "the certificate's revocation status was not checked"),
    ("timeStamp.*", INFO, "the time-stamp could not be verified"),
    ("ingredient.*", INGREDIENT, "an ingredient's manifest does not match what was signed"),
    ("manifest.*", ASSERTION, "a manifest in the store is not well formed"),
    ("assertion.*", ASSERTION, "an assertion is not well formed"),
    ("*", INFO, "another validation finding"),
)
_BINDING_LABELS = ("c2pa.hash.",)
_CLAIM_LABELS = ("c2pa.actions", "c2pa.ingredient")

ACTION_WORDS = {
    "c2pa.created": "created",
    "c2pa.opened": "opened",
    "c2pa.placed": "placed",
    "c2pa.edited": "edited",
    "c2pa.color_adjustments": "colour-adjusted",
    "c2pa.converted": "converted",
    "c2pa.cropped": "cropped",
    "c2pa.resized": "resized",
    "c2pa.filtered": "filtered",
    "c2pa.drawing": "drawn on",
    "c2pa.orientation": "rotated",
    "c2pa.transcoded": "transcoded",
    "c2pa.repackaged": "repackaged",
    "c2pa.published": "published",
    "c2pa.removed": "had parts removed",
    "c2pa.watermarked": "watermarked",
}


def classify_code(code: str, url: str = "") -> tuple[str, str]:
    """``(effect, meaning)`` of one failure code, from ``CODE_EFFECTS``.

    A hashed-URI mismatch voids the credentials only when it hits the hard binding or a
    claim we read (actions, ingredients); on a thumbnail or metadata it is only listed.
    """
    code = str(code or "")
    for pattern, effect, meaning in CODE_EFFECTS:
        if fnmatch.fnmatchcase(code, pattern):
            break
    if code == "assertion.hashedURI.mismatch" and url:
        if any(label in url for label in _BINDING_LABELS):
            return VOID, "the hard binding assertion changed after signing"
        if "c2pa.ingredient" in url:
            return INGREDIENT, "an ingredient assertion changed after signing"
        if not any(label in url for label in _CLAIM_LABELS):
            return ASSERTION, "a metadata assertion (e.g. a thumbnail) changed after signing"
    return effect, meaning


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
    size = jumbf_size(item.data)
    if size > MAX_JUMBF_BYTES:
        return [
            _note(
                f"The file's C2PA data is {size / 1e6:.1f} MB, over the {MAX_JUMBF_BYTES / 1e6:.0f} MB this check "
                "reads (real Content Credentials are far smaller); it was not read.",
                {"jumbf_bytes": size},
            )
        ]
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
    return [evidence_from_store(store)]


def jumbf_size(data: bytes) -> int:
    """Bytes of C2PA (JUMBF) data in a PNG (caBX chunks) or JPEG (APP11 segments), by jumping over headers only.

    A bound on what the C2PA SDK is asked to parse; other formats rely on the decoder's file-size limit.
    """
    total = 0
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        at = 8
        while at + 8 <= len(data):
            length = int.from_bytes(data[at : at + 4], "big")
            if data[at + 4 : at + 8] == b"caBX":
                total += length
            if data[at + 4 : at + 8] == b"IEND":
                break
            at += 12 + length
    elif data.startswith(b"\xff\xd8"):
        at = 2
        while at + 4 <= len(data) and data[at] == 0xFF:
            marker = data[at + 1]
            if marker == 0xDA:  # start of scan: no more metadata segments
                break
            if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
                at += 1 if marker == 0xFF else 2
                continue
            length = int.from_bytes(data[at + 2 : at + 4], "big")
            if marker == 0xEB:
                total += length
            at += 2 + length
    return total


def evidence_from_store(store: dict) -> Evidence:
    """One evidence item for the whole store: the active manifest's binding, the chain's claims, per link."""
    manifests = _dict(store.get("manifests"))
    active_label = store.get("active_manifest") or ""
    if not isinstance(manifests.get(active_label), dict):
        return _note(
            "The file's C2PA store names an active manifest that it does not contain; nothing in it was counted.",
            {"active_manifest": str(active_label)[:200]},
        )
    results = _dict(store.get("validation_results"))
    active_results = _dict(results.get("activeManifest"))
    deltas = {
        str(d.get("ingredientAssertionURI")): _dict(d.get("validationDeltas"))
        for d in _list(results.get("ingredientDeltas"))
        if isinstance(d, dict)
    }
    legacy = _list(store.get("validation_status"))  # older stores list failures only here, for every manifest
    chain, notes = walk_chain(store, deltas, legacy)
    active = chain[0]
    success = _codes(active_results.get("success"))
    failures = active["failures"]
    effects = {f["effect"] for f in failures}

    signature_valid = "claimSignature.validated" in success and not any(
        f["effect"] == VOID and f["code"].startswith(("claimSignature", "claim.", "algorithm")) for f in failures
    )
    binds_pixels = any(c in success for c in _HASH_MATCH) and VOID not in effects
    trusted = active["trusted"]
    expired = EXPIRED in effects

    # Links whose claims count. When the active manifest itself is void nothing counts, but the report still
    # says what the chain claimed (and fusion lists the conflict): read as if the active link were intact.
    counted = [s for s in chain if s["counted"]] or _counted_below(chain)
    signal = _chain_signal(counted)
    deciding = [s for s in counted if s["signal"] == signal] if signal != NONE else []
    meaning = next((s["meaning"] for s in deciding), "no digital source type given")
    generator = _ai_generator(deciding) if signal in (AI, PARTLY_AI) else None
    signature = _dict(manifests[active_label].get("signature_info"))
    actions = [dict(a, step=s["step"]) for s in counted for a in s["actions"]]
    details = {
        "claim_generator": active["claim_generator"],
        "generator": generator,
        "actions": actions,
        "digital_source_types": [a["digital_source_type"] for a in actions if a["digital_source_type"]],
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
        "validation_failures": sorted({f["code"] for f in failures}),
        "code_effects": {f["code"]: f["effect"] for s in chain for f in s["failures"]},
        "chain": chain,
        "chain_notes": notes,
    }
    story = " ".join(_describe_step(s) for s in chain)
    tail = "".join(f" {n}" for n in notes)
    if signal in (AI, PARTLY_AI):
        what = f"C2PA Content Credentials say the image is {meaning}" + (f", made with {generator}" if generator else "")
    elif signal == REAL:
        what = f"C2PA Content Credentials say the image is {meaning}"
    else:
        what = "C2PA Content Credentials make no claim about how the image was made (no digital source type)"
    if not signature_valid or not binds_pixels:
        why = (
            "the signature does not verify"
            if not signature_valid
            else "the file was changed after signing (its content hash no longer matches)"
        )
        void = sorted({f["meaning"] for f in failures if f["effect"] == VOID})
        if signature_valid and void and not any("content hash" in v for v in void):
            why = "; ".join(void)
        return Evidence(
            "provenance",
            "c2pa",
            signal,
            TAMPERED,
            f"{what}, but {why}: the credentials no longer describe this file, so they are not counted. {story}{tail}",
            details,
        )
    verified = trusted and not expired and all(s["trusted"] and not s["expired"] for s in deciding)
    if verified:
        binding = "The signature is valid, binds the pixels, and the signer is verified against the trust anchors."
        strength = VERIFIED
    else:
        binding = (
            "The signature is valid and binds the pixels, but the signer is only claimed: "
            + (
                "its certificate does not chain to a trust anchor we were given"
                if not trusted
                else "a link that makes the claim is not verified"
            )
            + (" (and it has expired)" if expired else "")
            + "."
        )
        strength = CLAIMED
    statement = f"{what}. {story} {binding}"
    listed = sorted({f"{f['code']} ({f['explanation'] or f['meaning']})" for s in chain for f in s["failures"]
                     if f["effect"] in (ASSERTION, INFO)})
    if listed:
        statement += (
            " The validator also reports " + ", ".join(listed) + ": findings that do not void an intact, bound "
            "claim."
        )
    if signal == REAL:
        edits = sorted({a["action"] for s in counted for a in s["actions"] if a["action"] not in ("c2pa.created", None)})
        if edits:
            statement += (
                " A capture is at the root of the chain and the later steps ("
                + ", ".join(_action_word(a) for a in edits)
                + ") claim no generative AI: edits do not make it AI."
            )
        statement += " Provenance never makes a verdict 'real' on its own."
    return Evidence("provenance", "c2pa", signal, strength, statement + tail, details)


def walk_chain(store: dict, deltas: dict | None = None, legacy: list | None = None) -> tuple[list[dict], list[str]]:
    """The manifest chain from the active manifest down its ingredients, one step per link, and notes.

    Follows parentOf / componentOf ingredients recursively, at most ``MAX_DEPTH`` deep and
    ``MAX_STEPS`` in all; a manifest met again (a cycle, or the same ingredient twice) is
    listed but not followed. Each step carries its own validation status: a link that
    fails validation, or hangs under one that does, is listed but its claims are not counted.
    """
    manifests = _dict(store.get("manifests"))
    if deltas is None:
        results = _dict(store.get("validation_results"))
        deltas = {
            str(d.get("ingredientAssertionURI")): _dict(d.get("validationDeltas"))
            for d in _list(results.get("ingredientDeltas"))
            if isinstance(d, dict)
        }
    legacy = _list(store.get("validation_status")) if legacy is None else legacy
    active_label = str(store.get("active_manifest") or "")
    steps: list[dict] = []
    notes: list[str] = []
    seen: dict[str, int] = {}
    active_results = _dict(_dict(store.get("validation_results")).get("activeManifest"))
    if active_results:
        active_codes = active_results
    else:  # older stores: failures for every manifest in one list, told apart by their url
        active_codes = {"failure": [e for e in legacy if _label_of(e) in ("", active_label)]}
    # Failures about an ingredient may be filed under the active manifest (or, in older stores, in one list):
    # each goes to the link whose manifest or ingredient assertion its url names.
    about_links = [_dict(e) for e in _list(active_codes.get("failure")) + ([] if active_results else legacy)]
    root = _step(1, 0, "active", None, active_label, manifests.get(active_label), [active_codes], None)
    steps.append(root)
    seen[active_label] = 1
    truncated = {"depth": False, "steps": 0}

    def visit(parent: dict, manifest: dict, depth: int) -> None:
        for ingredient in _list(manifest.get("ingredients")):
            if len(steps) >= MAX_STEPS:
                truncated["steps"] += 1
                continue
            ingredient = _dict(ingredient)
            relationship = str(ingredient.get("relationship") or "componentOf")
            label = ingredient.get("active_manifest")
            label = str(label) if isinstance(label, str) else None
            uri = f"self#jumbf=/c2pa/{parent['label']}/c2pa.assertions/{ingredient.get('label') or 'c2pa.ingredient'}"
            delta = deltas.get(uri) or {}
            recorded = [_dict(ingredient.get("validation_results")).get("activeManifest") or {}]
            recorded.append({"failure": _list(ingredient.get("validation_status"))})
            recorded.append(
                {"failure": [e for e in about_links if (label and _label_of(e) == label) or _text(e.get("url")) == uri]}
            )
            step = _step(len(steps) + 1, depth, relationship, parent["step"], label, None, recorded, delta)
            step["title"] = _text(ingredient.get("title"))
            steps.append(step)
            if relationship not in FOLLOWED:
                step["status"] = "not_followed"
                step["note"] = f"{relationship}: an input the tool used, not a part of this image; not followed"
            elif label is None:
                step["status"], step["note"] = "no_credentials", "no Content Credentials of its own"
            elif label in seen:
                step["status"] = "repeated"
                step["note"] = f"the same manifest as step {seen[label]} (a cycle or a repeated ingredient): not followed again"
                if not any("cycle" in n for n in notes):
                    notes.append("The ingredient chain refers back to a manifest already read (a cycle or a repeat); it was not followed again.")
            elif not isinstance(manifests.get(label), dict):
                step["status"], step["note"] = "missing", "its manifest is referenced but missing from the file"
                notes.append(f"An ingredient's manifest ({_short(label, 80)}) is missing from the file; its claims are unknown.")
            elif depth >= MAX_DEPTH:
                step["status"], step["note"] = "not_followed", f"deeper than {MAX_DEPTH} links: not read"
                truncated["depth"] = True
            else:
                seen[label] = step["step"]
                _fill(step, manifests[label])
                step["counted"] = parent["counted"] and step["status"] == "valid"
                if step["status"] == "valid" and not parent["counted"]:
                    step["note"] = "hangs under a link that failed validation: not counted"
                if step["status"] != "valid":
                    notes.append(
                        f"Ingredient step {step['step']} ({step['claim_generator'] or 'unnamed tool'}) fails validation "
                        f"({', '.join(sorted({f['code'] for f in step['failures'] if f['effect'] in (VOID, INGREDIENT)}))}): "
                        "its claims are not counted."
                    )
                visit(step, manifests[label], depth + 1)

    if isinstance(manifests.get(active_label), dict):
        visit(root, manifests[active_label], 1)
    if truncated["depth"]:
        notes.append(f"The ingredient chain is deeper than {MAX_DEPTH} links; links beyond that were not read.")
    if truncated["steps"]:
        notes.append(f"The ingredient chain has more than {MAX_STEPS} links; {truncated['steps']} more were not listed.")
    return steps, notes


def _step(number, depth, relationship, parent, label, manifest, code_sets, delta) -> dict:
    """One link: who made it, what it claims, and its own validation codes classified."""
    failures, success = [], set()
    trusted_here = delta is not None and "signingCredential.trusted" in _codes(delta.get("success"))
    for codes in [*code_sets, delta or {}]:
        codes = _dict(codes)
        success |= _codes(codes.get("success"))
        for entry in _list(codes.get("failure")):
            entry = _dict(entry)
            code = _text(entry.get("code"))
            if not code:
                continue
            effect, meaning = classify_code(code, _text(entry.get("url")))
            if effect == UNTRUSTED and trusted_here and codes is not delta:
                continue  # recorded by the signer's trust list; ours (the delta) trusts it
            if any(f["code"] == code for f in failures):
                continue
            failures.append(
                {"code": code, "effect": effect, "meaning": meaning, "explanation": _short(_text(entry.get("explanation")), 120)}
            )
    effects = {f["effect"] for f in failures}
    if delta is None:  # the active manifest
        valid = VOID not in effects
        trusted = "signingCredential.trusted" in success and UNTRUSTED not in effects
    else:
        validated = bool({"ingredient.manifest.validated", "claimSignature.validated"} & success)
        valid = not ({VOID, INGREDIENT} & effects) and (validated or not success)
        trusted = "signingCredential.trusted" in success and UNTRUSTED not in effects
    step = {
        "step": number,
        "depth": depth,
        "relationship": relationship,
        "parent_step": parent,
        "label": label,
        "title": None,
        "claim_generator": None,
        "tool": None,
        "signer": None,
        "issuer": None,
        "actions": [],
        "signal": NONE,
        "meaning": None,
        "status": "valid" if valid else "failed",
        "trusted": trusted,
        "expired": EXPIRED in effects,
        "failures": failures,
        "counted": valid and delta is None,
        "note": None,
        "read": False,
    }
    if manifest is not None:
        _fill(step, manifest)
    return step


def _fill(step: dict, manifest: dict) -> None:
    """A link's claim generator, signer and actions, and the signal its source types give."""
    signature = _dict(manifest.get("signature_info"))
    step["read"] = True
    step["claim_generator"] = _generator(manifest)
    step["tool"] = _tool(manifest)
    step["title"] = step["title"] or _text(manifest.get("title")) or None
    step["signer"] = _text(signature.get("common_name")) or None
    step["issuer"] = _text(signature.get("issuer")) or None
    actions, source_types = _actions(manifest)
    step["actions"] = actions
    signal, meaning = NONE, None
    for term in source_types:
        found = digital_source_type(term)
        if found and (signal == NONE or found[1] == AI and signal != PARTLY_AI or found[1] == PARTLY_AI):
            _, signal, meaning = found
    step["signal"], step["meaning"] = signal, meaning


def _counted_below(chain: list[dict]) -> list[dict]:
    """The links that would count if the active one were valid: each valid link whose parents are all valid."""
    ok = {1}
    for step in chain[1:]:  # depth-first order: a parent always comes before its ingredients
        if step["parent_step"] in ok and step["status"] == "valid" and step["read"]:
            ok.add(step["step"])
    return [s for s in chain if s["step"] in ok]


def _chain_signal(counted: list[dict]) -> str:
    """A composite claim anywhere makes it partly AI; else an AI claim anywhere makes it AI; else a capture."""
    signals = {s["signal"] for s in counted}
    for signal in (PARTLY_AI, AI, REAL):
        if signal in signals:
            return signal
    return NONE


def _ai_generator(deciding: list[dict]) -> str | None:
    """The generator's name: the software agent of the AI action, else the link's tool and its signer's issuer."""
    for step in deciding:
        for action in step["actions"]:
            found = digital_source_type(action["digital_source_type"] or "")
            if found and found[1] == step["signal"] and action["software_agent"]:
                return action["software_agent"]
    for step in deciding:
        name, issuer = step["tool"], step["issuer"]
        if name and issuer and issuer.split()[0].lower() not in name.lower():
            return f"{name} ({issuer})"
        return name or issuer
    return None


def _describe_step(step: dict) -> str:
    """One sentence: which link, by which tool, claims what, signed by whom, with what status."""
    where = "This file's manifest" if step["step"] == 1 else f"Step {step['step']}, an ingredient ({step['relationship']})"
    if step["status"] in ("no_credentials", "missing", "repeated", "not_followed"):
        title = f" ({step['title']})" if step["title"] else ""
        return f"{where}{title}: {step['note']}."
    tool = f" ({step['claim_generator']})" if step["claim_generator"] else ""
    claims = ", ".join(_describe_action(a) for a in step["actions"]) or "no actions of its own"
    return f"{where}{tool}: {claims}; {_signed(step)}."


def _signed(step: dict) -> str:
    who = step["signer"] or step["issuer"] or "an unnamed signer"
    issuer = f" ({step['issuer']})" if step["issuer"] and step["issuer"] != who else ""
    status = "signer verified against the trust anchors" if step["trusted"] else "signer not on a trust list"
    extra = [f["meaning"] for f in step["failures"] if f["effect"] in (EXPIRED,)]
    bad = [f["code"] for f in step["failures"] if f["effect"] in (VOID, INGREDIENT)]
    text = f"signed by {who}{issuer}, {status}" + "".join(f", {e}" for e in dict.fromkeys(extra))
    if bad:
        text += f"; fails validation ({', '.join(sorted(set(bad)))})"
    if step["note"]:
        text += f"; {step['note']}"
    return text


def _describe_action(action: dict) -> str:
    text = _action_word(action["action"])
    if action["software_agent"]:
        text += f" by {action['software_agent']}"
    if action["digital_source_type"]:
        text += f" ({str(action['digital_source_type']).rstrip('/').rsplit('/', 1)[-1]})"
    return text


def _action_word(action: str | None) -> str:
    if not action:
        return "an unnamed action"
    return ACTION_WORDS.get(action) or action.removeprefix("c2pa.").replace("_", " ").replace(".", " ")


def chain_steps_markdown(details: dict, indent: str = "  ") -> str:
    """The chain as numbered steps for the app's provenance panel, like CAI's Verify page (escaped, nested).

    Meant to sit under a "- " bullet. Bullets, not "N." items: an ordered list not starting at 1 cannot
    interrupt a paragraph in CommonMark. Each ingredient is indented 4 more spaces: past its parent's
    marker (so it nests) but not 4 past it (which would make a code block).
    """
    steps = [s for s in _list((details or {}).get("chain")) if isinstance(s, dict)]
    if not steps:
        return ""
    lines = []
    for step in steps:
        where = "This file" if step.get("step") == 1 else f"Ingredient ({step.get('relationship')})"
        head = f"{indent}{'    ' * int(step.get('depth') or 0)}- **{step.get('step')}. {_esc(where)}**"
        title = f" “{_esc(step['title'])}”" if step.get("title") else ""
        if step.get("status") in ("no_credentials", "missing", "repeated", "not_followed"):
            lines.append(f"{head}{title}: {_esc(step.get('note') or step.get('status'))}")
            continue
        tool = f" · {_esc(step['claim_generator'])}" if step.get("claim_generator") else ""
        claims = "; ".join(_describe_action(a) for a in _list(step.get("actions"))) or "no actions of its own"
        counted = "" if step.get("counted") else " · *not counted*"
        lines.append(f"{head}{title}{tool} · {_esc(claims)} · {_esc(_signed(step))}{counted}")
    lines += [f"{indent}- {_esc(n)}" for n in _list(details.get("chain_notes"))]
    return "\n".join(lines)


def _esc(text) -> str:
    """HTML-escaped, and markdown emphasis/link characters neutralised: names in manifests are untrusted."""
    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(str(text), quote=False))


def _label_of(entry) -> str:
    url = _text(_dict(entry).get("url"))
    match = re.search(r"/c2pa/([^/]+)", url)
    return match.group(1) if match else (url if url.startswith("urn:") else "")


def _codes(entries) -> set[str]:
    return {_text(_dict(e).get("code")) for e in _list(entries)} - {""}


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _generator(manifest: dict) -> str | None:
    names = [
        " ".join(_text(part) for part in (entry.get("name"), entry.get("version")) if _text(part))
        for entry in _list(manifest.get("claim_generator_info"))
        if isinstance(entry, dict)
    ]
    return ", ".join(n for n in names if n) or _text(manifest.get("claim_generator")) or None


def _tool(manifest: dict) -> str | None:
    """The claim generator's name without its version (for naming a generator)."""
    for entry in _list(manifest.get("claim_generator_info")):
        if isinstance(entry, dict) and _text(entry.get("name")):
            return _text(entry["name"])
    return _text(manifest.get("claim_generator")).split("/")[0].split(" ")[0].replace("_", " ") or None


def _actions(manifest: dict) -> tuple[list[dict], list[str]]:
    actions, source_types = [], []
    for assertion in _list(manifest.get("assertions")):
        if not isinstance(assertion, dict) or not _text(assertion.get("label")).startswith("c2pa.actions"):
            continue
        for action in _list(_dict(assertion.get("data")).get("actions"))[:100]:
            action = _dict(action)
            agent = action.get("softwareAgent")
            agent = _text(agent.get("name")) if isinstance(agent, dict) else _text(agent)
            entry = {
                "action": _text(action.get("action")) or None,
                "digital_source_type": _text(action.get("digitalSourceType")) or None,
                "software_agent": agent or None,
            }
            actions.append(entry)
            if entry["digital_source_type"]:
                source_types.append(entry["digital_source_type"])
    return actions, source_types


def _note(statement: str, details: dict) -> Evidence:
    return Evidence("provenance", "c2pa", NONE, NOTE, statement, details)


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
