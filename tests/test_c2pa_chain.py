"""C2PA beyond one manifest: validation codes by meaning, the ingredient chain, real generator files, bad input.

Real components only: files are signed here by c2pa-python with a chain made by
``cryptography`` (tests/provenance_files.py), or are the real generator files in
../shared/provenance/ (read in place, never copied; skipped if that folder is absent).
Structures the SDK refuses to sign (cycles, missing links) are real stores read from a
signed file and rewired, passed to the real chain walker.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import pytest

from detector import analyze, decode
from detector.evidence import AI, CLAIMED, NONE, NOTE, PARTLY_AI, REAL, TAMPERED, VERIFIED
from detector.evidence.c2pa_reader import (
    ASSERTION,
    CODE_EFFECTS,
    EXPIRED,
    INFO,
    INGREDIENT,
    MAX_DEPTH,
    MAX_STEPS,
    UNTRUSTED,
    VOID,
    chain_steps_markdown,
    classify_code,
    evidence_from_store,
)
from detector.evidence.provenance import ProvenanceEvidence
from detector.fusion import C2PA_VERIFIED, NOTHING, PROVENANCE
from provenance_files import (
    CAPTURE,
    COMPOSITE,
    bad_c2pa_files,
    bad_c2pa_stores,
    c2pa_sign,
    edited_capture,
    encode,
    make_chain,
    openai_structure,
    photo,
    read_store,
)

pytestmark = pytest.mark.timeout(300)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "provenance"


@pytest.fixture(scope="module")
def chain():
    return make_chain("OpenAI Test")


@pytest.fixture(scope="module")
def openai_png(chain) -> bytes:
    return openai_structure(encode(photo(), "PNG"), "image/png", chain)


@pytest.fixture(scope="module")
def openai_store(openai_png) -> dict:
    return read_store(openai_png, "image/png")


def c2pa_item(data: bytes, anchors: str | None = ""):
    found = [e for e in ProvenanceEvidence(trust_anchors=anchors).collect(decode(data)) if e.source == "c2pa"]
    assert len(found) == 1, found
    return found[0]


def report(data: bytes, anchors: str | None = ""):
    return analyze(data, kinds=[ProvenanceEvidence(trust_anchors=anchors)])


def steps(item) -> list[tuple]:
    return [(s["relationship"], s["tool"], [a["action"] for a in s["actions"]], s["status"]) for s in item.details["chain"]]


# --------------------------------------------------------------------------- validation codes, by meaning

CODES = [
    ("claimSignature.mismatch", "", VOID),
    ("claimSignature.missing", "", VOID),
    ("claimSignature.outsideValidity", "", EXPIRED),
    ("claim.hardBindings.missing", "", VOID),
    ("claim.missing", "", VOID),
    ("claim.malformed", "", VOID),
    ("claim.cbor.invalid", "", VOID),
    ("assertion.dataHash.mismatch", "", VOID),
    ("assertion.dataHash.malformed", "", VOID),
    ("assertion.boxesHash.mismatch", "", VOID),
    ("assertion.bmffHash.mismatch", "", VOID),
    ("assertion.collectionHash.mismatch", "", VOID),
    ("assertion.hashedURI.mismatch", "self#jumbf=/c2pa/urn:x/c2pa.assertions/c2pa.hash.data", VOID),
    ("assertion.hashedURI.mismatch", "self#jumbf=/c2pa/urn:x/c2pa.assertions/c2pa.actions.v2", VOID),
    ("assertion.hashedURI.mismatch", "self#jumbf=/c2pa/urn:x/c2pa.assertions/c2pa.ingredient.v3", INGREDIENT),
    ("assertion.hashedURI.mismatch", "self#jumbf=/c2pa/urn:x/c2pa.assertions/c2pa.thumbnail.claim.jpeg", ASSERTION),
    ("algorithm.unsupported", "", VOID),
    ("signingCredential.untrusted", "", UNTRUSTED),
    ("signingCredential.invalid", "", UNTRUSTED),
    ("signingCredential.revoked", "", UNTRUSTED),
    ("signingCredential.expired", "", EXPIRED),
    ("signingCredential.ocsp.skipped", "", INFO),
    ("timeStamp.mismatch", "", INFO),
    ("ingredient.manifest.mismatch", "", INGREDIENT),
    ("ingredient.claimSignature.mismatch", "", INGREDIENT),
    ("manifest.inaccessible", "", ASSERTION),
    ("assertion.action.malformed", "", ASSERTION),
    ("assertion.cbor.invalid", "", ASSERTION),
    ("assertion.ingredient.malformed", "", ASSERTION),
    ("some.future.code", "", INFO),
]


@pytest.mark.parametrize("code,url,effect", CODES, ids=[f"{c}{'@' + u.rsplit('/', 1)[-1] if u else ''}" for c, u, _ in CODES])
def test_code_table(code, url, effect):
    assert classify_code(code, url)[0] == effect


def test_every_table_row_is_tested():
    """Each row of CODE_EFFECTS is the first match for at least one code above (no dead or untested rows)."""
    import fnmatch

    first = {next(i for i, row in enumerate(CODE_EFFECTS) if fnmatch.fnmatchcase(code, row[0])) for code, _, _ in CODES}
    assert first == set(range(len(CODE_EFFECTS)))


@pytest.mark.parametrize("code,url,effect", CODES, ids=[f"{c}{'@' + u.rsplit('/', 1)[-1] if u else ''}" for c, u, _ in CODES])
def test_each_code_on_a_real_store(code, url, effect, openai_store):
    """The same code added to a real OpenAI-structure store: only 'void' codes make it tampered."""
    store = copy.deepcopy(openai_store)
    active = store["active_manifest"]
    results = store["validation_results"]["activeManifest"]
    results["failure"].append({"code": code, "url": url or f"self#jumbf=/c2pa/{active}", "explanation": "added"})
    if code.startswith("claimSignature") and effect == VOID:
        results["success"] = [e for e in results["success"] if e["code"] != "claimSignature.validated"]
    item = evidence_from_store(store)
    assert item.details["code_effects"][code] == effect
    if effect == VOID:
        assert item.strength == TAMPERED and not item.is_marker and item.signal == AI
    elif effect == INGREDIENT:  # on the active manifest it only marks the ingredient link
        assert item.strength == CLAIMED
    else:
        assert item.strength == CLAIMED and item.is_marker and item.signal == AI
    if effect in (ASSERTION, INFO) and code != "signingCredential.ocsp.skipped":
        assert code in item.statement  # listed in the report


# --------------------------------------------------------------------------- the OpenAI structure, signed here


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_openai_structure_is_ai_by_its_ingredient_not_tampered(fmt, mime, chain):
    data = openai_structure(encode(photo(seed=2), fmt), mime, chain)
    item = c2pa_item(data)
    assert (item.signal, item.strength) == (AI, CLAIMED)
    assert item.details["content_hash_binds_pixels"] and item.details["signature_valid"]
    assert "assertion.action.malformed" in item.details["validation_failures"]
    assert item.details["generator"] == "GPT-4o"
    assert steps(item) == [
        ("active", "ChatGPT", [], "valid"),
        ("componentOf", "ChatGPT", ["c2pa.created", "c2pa.converted"], "valid"),
    ]
    assert "created by GPT-4o (trainedAlgorithmicMedia), converted by OpenAI API; signed by OpenAI Test Signer" in item.statement
    assert "signer not on a trust list" in item.statement and "only claimed" in item.statement
    assert "no actions of its own" in item.statement  # the active link is named, and says it claims nothing itself
    result = report(data)
    assert result.verdict == AI and result.decided_by == PROVENANCE and not result.partly_ai
    assert "GPT-4o" in result.reason
    assert not any("changed after signing" in c for c in result.conflicts)


def test_openai_structure_with_the_anchor_is_verified(openai_png, chain):
    item = c2pa_item(openai_png, anchors=chain.anchor_pem)
    assert item.strength == VERIFIED and all(s["trusted"] for s in item.details["chain"])
    assert report(openai_png, anchors=chain.anchor_pem).decided_by == C2PA_VERIFIED


def test_trust_list_file_named_by_the_env_var(openai_png, chain, tmp_path, monkeypatch):
    """A trust-list PEM bundle (other CAs, then ours) named by CONVITX_C2PA_TRUST_ANCHORS makes the signer verified."""
    bundle = tmp_path / "C2PA-TRUST-LIST.pem"
    bundle.write_text(make_chain("Other CA One").anchor_pem + make_chain("Other CA Two").anchor_pem + chain.anchor_pem)
    monkeypatch.setenv("CONVITX_C2PA_TRUST_ANCHORS", str(bundle))
    item = c2pa_item(openai_png, anchors=None)
    assert item.strength == VERIFIED and "verified against the trust anchors" in item.statement
    assert analyze(openai_png, kinds=[ProvenanceEvidence()]).decided_by == C2PA_VERIFIED
    bundle.write_text(make_chain("Other CA One").anchor_pem)  # a list without our CA: claimed again
    assert c2pa_item(openai_png, anchors=None).strength == CLAIMED


def test_composite_in_an_ingredient_makes_it_partly_ai(chain):
    jpeg = encode(photo(seed=4), "JPEG")
    firefly = [{"action": "c2pa.edited", "softwareAgent": "Adobe Firefly", "digitalSourceType": COMPOSITE}]
    inner = c2pa_sign(jpeg, "image/jpeg", chain, generator="Adobe Photoshop", actions=firefly)
    outer = c2pa_sign(jpeg, "image/jpeg", chain, generator="Exporter", actions=[], ingredients=[(inner, "image/jpeg", "parentOf")])
    item = c2pa_item(outer)
    assert item.signal == PARTLY_AI and item.details["generator"] == "Adobe Firefly"
    result = report(outer)
    assert result.verdict == AI and result.partly_ai and result.headline == "Partly AI-generated"


# --------------------------------------------------------------------------- real photos that look edited stay real


@pytest.mark.parametrize("edits", [("c2pa.color_adjustments",), ("c2pa.edited",), ("c2pa.cropped", "c2pa.edited")])
@pytest.mark.parametrize("anchored", [False, True])
def test_edited_capture_is_said_so_and_never_ai(chain, edits, anchored):
    data = edited_capture(chain, edits)
    anchors = chain.anchor_pem if anchored else ""
    item = c2pa_item(data, anchors=anchors)
    assert item.signal == REAL and not item.is_marker
    assert steps(item)[1][:3] == ("parentOf", "Camera App", ["c2pa.created"])
    assert "claim no generative AI" in item.statement and "never makes a verdict 'real'" in item.statement
    result = report(data, anchors=anchors)
    assert result.verdict == "uncertain" and result.decided_by == NOTHING


@pytest.mark.parametrize("source", ["computationalCapture", "algorithmicallyEnhanced", "screenCapture"])
def test_phone_and_screenshot_sources_never_ai(chain, source):
    """Night mode / portrait / HDR (computational capture), enhanced captures and screenshots."""
    data = edited_capture(chain, source_type=f"http://cv.iptc.org/newscodes/digitalsourcetype/{source}")
    item = c2pa_item(data)
    assert item.signal in (REAL, NONE) and not item.is_marker
    assert report(data).verdict != AI


# --------------------------------------------------------------------------- bad input: bounded, clear, never a crash


@pytest.fixture(scope="module")
def bad_files(chain):
    return bad_c2pa_files(chain)


def test_bad_c2pa_files_give_clear_items_in_bounded_time(bad_files):
    for name, (data, _) in bad_files.items():
        start = time.monotonic()
        evidence = ProvenanceEvidence(trust_anchors="").collect(decode(data))
        assert time.monotonic() - start < 10, name
        c2pa = [e for e in evidence if e.source == "c2pa"]
        assert c2pa and all(e.statement and "Traceback" not in e.statement for e in evidence), name
        if name in ("oversized_jumbf_box.png", "huge_xlbox.png", "truncated_jumbf.png"):
            assert not any(e.is_marker for e in evidence), (name, [e.statement for e in c2pa])
    oversized = c2pa_item(bad_files["oversized_jumbf_box.png"][0])
    assert oversized.strength == NOTE and "20.0 MB" in oversized.statement and "not read" in oversized.statement


def test_deep_signed_chain_stops_at_the_bound(bad_files):
    item = c2pa_item(bad_files["deep_chain_12.png"][0])
    chain = item.details["chain"]
    assert max(s["depth"] for s in chain if s["read"]) == MAX_DEPTH - 1
    assert chain[-1]["status"] == "not_followed"
    assert any(f"deeper than {MAX_DEPTH}" in n for n in item.details["chain_notes"])
    assert item.signal == NONE and not item.is_marker  # the generator's link lies beyond the bound: unread, not counted


def test_failing_ingredient_is_listed_not_counted(bad_files):
    item = c2pa_item(bad_files["failing_ingredient.jpg"][0])
    ingredient = item.details["chain"][1]
    assert ingredient["status"] == "failed" and not ingredient["counted"]
    assert "assertion.dataHash.mismatch" in {f["code"] for f in ingredient["failures"]}
    assert item.strength == CLAIMED and item.signal == NONE and not item.is_marker  # the active link itself is intact
    assert "fails validation" in item.statement and "not counted" in item.statement


@pytest.mark.parametrize(
    "name", ["cycle", "self_loop", "missing_ingredient_manifest", "deep_10000", "wide_5000", "garbage_types",
             "ingredient_manifest_mismatch"]
)
def test_bad_stores_terminate_with_notes(name, openai_store):
    store = bad_c2pa_stores(openai_store)[name]
    start = time.monotonic()
    item = evidence_from_store(store)
    assert time.monotonic() - start < 5
    chain = item.details["chain"]
    assert len(chain) <= MAX_STEPS and max(s["depth"] for s in chain) <= MAX_DEPTH
    assert item.strength == CLAIMED  # the active manifest still binds the pixels
    notes = " ".join(item.details["chain_notes"])
    expected = {
        "cycle": "cycle",
        "self_loop": "cycle",
        "missing_ingredient_manifest": "missing",
        "deep_10000": f"deeper than {MAX_DEPTH}",
        "wide_5000": f"more than {MAX_STEPS}",
        "ingredient_manifest_mismatch": "fails validation",
    }.get(name)
    if expected:
        assert expected in notes and expected in item.statement
    if name in ("missing_ingredient_manifest", "ingredient_manifest_mismatch"):
        assert item.signal == NONE and not item.is_marker  # the AI claim sits in the missing / failing link
    if name in ("cycle", "self_loop", "deep_10000", "wide_5000"):
        assert item.signal == AI  # the generator's link is read once and counted
    assert chain_steps_markdown(item.details)


def test_ingredient_failure_filed_under_the_active_manifest_marks_that_link(openai_store):
    """An ``ingredient.*`` code in the active manifest's list whose url names the ingredient's manifest."""
    store = copy.deepcopy(openai_store)
    active = store["active_manifest"]
    inner = store["manifests"][active]["ingredients"][0]["active_manifest"]
    store["validation_results"]["activeManifest"]["failure"].append(
        {"code": "ingredient.claimSignature.mismatch", "url": f"self#jumbf=/c2pa/{inner}/c2pa.signature", "explanation": "x"}
    )
    item = evidence_from_store(store)
    assert item.details["chain"][1]["status"] == "failed" and not item.details["chain"][1]["counted"]
    assert item.strength == CLAIMED and item.signal == NONE and not item.is_marker


# --------------------------------------------------------------------------- the app panel's chain steps


def test_chain_steps_markdown_lists_links_and_escapes(openai_store):
    store = copy.deepcopy(openai_store)
    inner = store["manifests"][store["active_manifest"]]["ingredients"][0]["active_manifest"]
    store["manifests"][inner]["claim_generator_info"] = [{"name": "<img src=x onerror=alert(1)>*bold*"}]
    text = chain_steps_markdown(evidence_from_store(store).details)
    lines = text.splitlines()
    assert lines[0].lstrip().startswith("- **1. This file**")
    assert lines[1].lstrip().startswith("- **2. Ingredient (componentOf)**")
    assert len(lines[1]) - len(lines[1].lstrip()) > len(lines[0]) - len(lines[0].lstrip())  # nested under the file
    assert "created by GPT-4o (trainedAlgorithmicMedia)" in lines[1]
    assert "<img" not in text and "&lt;img" in text and r"\*bold\*" in text


def test_app_panel_shows_the_chain(openai_png):
    from ui import verdict

    text = verdict.evidence_markdown(report(openai_png).to_dict())
    assert "**1. This file**" in text and "**2. Ingredient (componentOf)**" in text and "GPT-4o" in text
    from markdown_it import MarkdownIt  # Gradio's Markdown parser: the steps must render as nested list items

    html = MarkdownIt("commonmark").render(text)
    assert re.search(r"<li><strong>1\. This file</strong>.*?<ul>\s*<li><strong>2\. Ingredient", html, re.DOTALL), html


# --------------------------------------------------------------------------- real generator files (../shared/provenance)

# file name -> what a correct report says. A present file without a row here fails the test.
EXPECTED = {
    "chatgpt_gpt4o_vinyl.png": dict(
        verdict=AI, partly=False, decided_by=PROVENANCE, generator="GPT-4o",
        steps=[("active", "ChatGPT", []), ("componentOf", "ChatGPT", ["c2pa.created", "c2pa.converted"])],
    ),
    "chatgpt_gpt4o_289.png": dict(
        verdict=AI, partly=False, decided_by=PROVENANCE, generator="GPT-4o",
        steps=[("active", "ChatGPT", []), ("componentOf", "ChatGPT", ["c2pa.created", "c2pa.converted"])],
    ),
    "sora_241.png": dict(
        verdict=AI, partly=False, decided_by=PROVENANCE, generator="GPT-4o",
        steps=[("active", "Sora", []), ("componentOf", "Sora", ["c2pa.created", "c2pa.converted"])],
    ),
    "google_gemini_case84.jpg": dict(
        verdict=AI, partly=False, decided_by=PROVENANCE, generator="Google",
        steps=[("active", "Google C2PA Core Generator Library", ["c2pa.created"]), ("inputTo", None, [])],
    ),
    "firefly_photoshop_composite_12.jpg": dict(
        verdict=AI, partly=True, decided_by=PROVENANCE, generator="Adobe Firefly",
        steps=[("active", "Adobe Photoshop", ["c2pa.edited"])],
    ),
    "nikon_c2pa_capture_building.jpeg": dict(
        verdict="uncertain", partly=False, decided_by=NOTHING, generator=None, steps=[("active", "Nikon Z 9 Sample for Adobe MAX 2022", [])],
    ),
    "real_canon_lightroom_edit.jpg": dict(verdict="uncertain", partly=False, decided_by=NOTHING, generator=None, steps=None),
    "real_canon_noise_ninja.jpg": dict(verdict="uncertain", partly=False, decided_by=NOTHING, generator=None, steps=None),
}
SHARED_FILES = sorted(p.name for p in SHARED.iterdir() if p.is_file() and p.suffix.lower() != ".md") if SHARED.is_dir() else []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/provenance is not here (CI has it)")
@pytest.mark.parametrize("name", SHARED_FILES or ["<none>"])
def test_real_generator_file(name):
    assert name in EXPECTED, f"{name} is in ../shared/provenance but has no expectation here: add one"
    expected = EXPECTED[name]
    data = (SHARED / name).read_bytes()
    result = report(data)
    assert (result.verdict, result.partly_ai, result.decided_by) == (
        expected["verdict"], expected["partly"], expected["decided_by"]
    ), result.summary()
    c2pa = [e for e in result.evidence if e.source == "c2pa"]
    assert not any(e.strength == TAMPERED for e in c2pa)  # none of these files is tampered
    if expected["steps"] is None:
        assert not c2pa
        return
    [item] = c2pa
    assert [(s["relationship"], s["tool"], [a["action"] for a in s["actions"]]) for s in item.details["chain"]] == expected["steps"]
    if expected["generator"]:
        assert expected["generator"] in item.details["generator"] and expected["generator"] in result.reason
        assert item.strength == CLAIMED and item.is_marker
    else:
        assert not item.is_marker and item.signal != AI


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/provenance is not here (CI has it)")
def test_shared_readme_files_have_expectations():
    """Every file the README's table lists has a row here (a listed file may be absent from the folder)."""
    listed = set(re.findall(r"^\| (\S+\.(?:png|jpe?g)) \|", (SHARED / "README.md").read_text(), re.MULTILINE))
    assert listed and listed <= set(EXPECTED)
