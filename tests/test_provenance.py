"""Provenance read from real files written here: C2PA signed in the test, XMP, generator chunks, EXIF, bad input.

No mocks: c2pa-python signs with a certificate chain made by ``cryptography``; every
file is decoded by ``detector.decode`` and read by the real readers. Network: a
local server on 127.0.0.1 proves a remote manifest is never fetched.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
import zlib

import pytest
from PIL import Image

from detector import analyze, decode
from detector.evidence import AI, CLAIMED, INFORMATION, NONE, NOTE, PARTLY_AI, TAMPERED, UNSIGNED, VERIFIED
from detector.evidence.provenance import ProvenanceEvidence
from detector.fusion import C2PA_VERIFIED, NOTHING, PROVENANCE
from provenance_files import (
    A1111_PARAMETERS,
    CAPTURE,
    COMFY_PROMPT,
    COMPOSITE,
    MIDJOURNEY_DESCRIPTION,
    c2pa_sign,
    edit_pixels_keep_manifest,
    encode,
    jpeg_with_exif,
    make_chain,
    photo,
    png_with_text,
    xmp_packet,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain():
    return make_chain("OpenAI Test")


@pytest.fixture(scope="module")
def signed_png(chain) -> bytes:
    return c2pa_sign(encode(photo(), "PNG"), "image/png", chain)


@pytest.fixture(scope="module")
def signed_jpeg(chain) -> bytes:
    return c2pa_sign(encode(photo(), "JPEG", quality=90), "image/jpeg", chain)


def provenance(data: bytes, anchors: str | None = "", **kwargs) -> list:
    """Provenance evidence only (no model), with explicit trust anchors ("" = none)."""
    return ProvenanceEvidence(trust_anchors=anchors, **kwargs).collect(decode(data))


def report(data: bytes, anchors: str | None = ""):
    return analyze(data, kinds=[ProvenanceEvidence(trust_anchors=anchors)])


def only(evidence: list, source: str):
    found = [e for e in evidence if e.source == source]
    assert len(found) == 1, [e.to_dict() for e in evidence]
    return found[0]


# --------------------------------------------------------------------------- C2PA


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_c2pa_claim_is_read_back_as_claimed(fmt, signed_png, signed_jpeg):
    item = only(provenance(signed_png if fmt == "png" else signed_jpeg), "c2pa")
    assert (item.signal, item.strength) == (AI, CLAIMED)
    details = item.details
    assert details["claim_generator"] == "ChatGPT 1.0"
    assert details["actions"][0]["action"] == "c2pa.created"
    assert details["digital_source_types"] == ["http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"]
    assert details["signer"]["common_name"] == "OpenAI Test Signer" and details["signer"]["issuer"] == "OpenAI Test"
    assert details["signature_valid"] and details["content_hash_binds_pixels"]
    assert details["signer_status"] == CLAIMED
    assert "only claimed" in item.statement and "OpenAI Test Signer" in item.statement


def test_self_signed_unknown_signer_is_claimed_not_decisive(signed_png):
    """A valid signature from an unknown certificate is a marker like unsigned metadata, never 'verified'."""
    result = report(signed_png)
    assert result.verdict == AI and result.decided_by == PROVENANCE and result.decided_by != C2PA_VERIFIED
    assert "not verified" in result.reason
    assert only(result.evidence, "c2pa").strength == CLAIMED


def test_signer_chaining_to_a_given_anchor_is_verified_and_decides(signed_png, chain):
    result = report(signed_png, anchors=chain.anchor_pem)
    item = only(result.evidence, "c2pa")
    assert (item.strength, item.details["signer_status"]) == (VERIFIED, VERIFIED)
    assert result.decided_by == C2PA_VERIFIED and result.verdict == AI
    # An unrelated anchor does not verify it.
    assert only(report(signed_png, anchors=make_chain("Someone Else").anchor_pem).evidence, "c2pa").strength == CLAIMED


def test_trust_anchors_from_the_environment(signed_png, chain, tmp_path, monkeypatch):
    path = tmp_path / "anchors.pem"
    path.write_text(chain.anchor_pem)
    monkeypatch.setenv("CONVITX_C2PA_TRUST_ANCHORS", str(path))
    assert only(provenance(signed_png, anchors=None), "c2pa").strength == VERIFIED


def test_resaved_without_metadata_finds_nothing(signed_png):
    resaved = encode(Image.open(io.BytesIO(signed_png)).convert("RGB"), "PNG")
    evidence = provenance(resaved)
    assert not [e for e in evidence if e.source == "c2pa"]
    assert not any(e.is_marker for e in evidence)
    summary = only(evidence, "summary")
    assert summary.signal == NONE and summary.strength == INFORMATION and "normal" in summary.statement
    result = report(resaved)
    assert result.decided_by == NOTHING and result.verdict == "uncertain"  # "no provenance" never counts as real


def test_pixels_edited_after_signing_are_tampered_not_decisive(signed_jpeg, chain):
    edited = edit_pixels_keep_manifest(signed_jpeg)
    result = report(edited, anchors=chain.anchor_pem)  # even a trusted signer cannot vouch for changed pixels
    item = only(result.evidence, "c2pa")
    assert item.strength == TAMPERED and item.signal == AI
    assert item.details["content_hash_binds_pixels"] is False
    assert "changed after signing" in item.statement
    assert not item.is_marker and result.decided_by == NOTHING
    assert any("changed after signing" in c for c in result.conflicts)


def test_composite_claim_is_partly_ai(chain):
    data = c2pa_sign(encode(photo(), "PNG"), "image/png", chain, source_type=COMPOSITE, generator="Photo Editor")
    result = report(data, anchors=chain.anchor_pem)
    assert result.verdict == AI and result.partly_ai and result.headline == "Partly AI-generated"
    assert only(result.evidence, "c2pa").signal == PARTLY_AI


def test_camera_capture_claim_never_makes_real(chain):
    data = c2pa_sign(encode(photo(), "JPEG"), "image/jpeg", chain, source_type=CAPTURE, generator="Camera App")
    result = report(data, anchors=chain.anchor_pem)
    assert only(result.evidence, "c2pa").signal == "real"
    assert result.verdict == "uncertain" and result.decided_by == NOTHING


def test_remote_manifest_is_never_fetched(chain):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/manifest.c2pa"
        data = c2pa_sign(encode(photo(), "PNG"), "image/png", chain, remote_url=url)
        start = time.monotonic()
        item = only(provenance(data), "c2pa")
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()
    assert hits == []
    assert item.strength == NOTE and item.details["remote_url"] == url
    assert "not fetched" in item.statement and "offline" in item.statement


def test_corrupt_c2pa_box_gives_a_note(signed_png):
    """Damaged JUMBF inside a well-formed PNG chunk (CRC recomputed, so the PNG itself still decodes)."""
    at = signed_png.index(b"caBX")
    length = int.from_bytes(signed_png[at - 4 : at], "big")
    payload = bytearray(signed_png[at + 4 : at + 4 + length])
    for offset in range(40, 400, 7):
        payload[offset] ^= 0x5A
    chunk = b"caBX" + bytes(payload)
    corrupt = (
        signed_png[: at - 4]
        + length.to_bytes(4, "big")
        + chunk
        + zlib.crc32(chunk).to_bytes(4, "big")
        + signed_png[at + 4 + length + 4 :]
    )
    item = only(provenance(bytes(corrupt)), "c2pa")
    assert item.strength in (NOTE, TAMPERED) and not item.is_marker
    assert item.statement and "Traceback" not in item.statement


# --------------------------------------------------------------------------- XMP, text chunks, EXIF


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_xmp_digital_source_type(fmt):
    packet = xmp_packet()
    data = jpeg_with_exif({}, xmp=packet) if fmt == "jpeg" else png_with_text({}, xmp=packet)
    item = only(provenance(data), "xmp")
    assert (item.signal, item.strength) == (AI, UNSIGNED)
    assert item.details["value"] == "trainedalgorithmicmedia"
    result = report(data)
    assert result.verdict == AI and result.decided_by == PROVENANCE
    assert "anyone can add or remove" in result.reason


@pytest.mark.parametrize(
    "value",
    [
        "TRAINEDALGORITHMICMEDIA",
        "trainedAlgorithmicMedia",
        "https://cv.iptc.org/newscodes/digitalsourcetype/TrainedAlgorithmicMedia",
    ],
)
def test_xmp_terms_are_case_insensitive(value):
    assert only(provenance(png_with_text({}, xmp=xmp_packet(value))), "xmp").signal == AI


def test_xmp_composite_is_partly_ai_and_capture_is_information():
    assert only(provenance(png_with_text({}, xmp=xmp_packet(COMPOSITE))), "xmp").signal == PARTLY_AI
    capture = only(provenance(png_with_text({}, xmp=xmp_packet(CAPTURE))), "xmp")
    assert capture.strength == INFORMATION and not capture.is_marker


def test_ten_megabyte_xmp_packet_is_read_quickly():
    data = png_with_text({}, xmp=xmp_packet(padding=10 * 1024 * 1024))
    start = time.monotonic()
    evidence = provenance(data)
    assert time.monotonic() - start < 10
    assert only([e for e in evidence if e.signal == AI], "xmp").strength == UNSIGNED
    assert any(e.strength == NOTE and "10.5 MB" in e.statement for e in evidence)


def test_a1111_parameters():
    item = only(provenance(png_with_text({"parameters": A1111_PARAMETERS})), "png_text")
    assert (item.signal, item.strength) == (AI, UNSIGNED)
    assert item.details["generator"] == "AUTOMATIC1111 / Forge"
    assert item.details["settings"]["steps"] == "20" and item.details["settings"]["sampler"] == "DPM++ 2M Karras"


def test_comfyui_prompt():
    item = only(provenance(png_with_text({"prompt": COMFY_PROMPT})), "png_text")
    assert item.details["generator"] == "ComfyUI" and "KSampler" in item.details["node_types"]


def test_midjourney_description_job_id():
    item = only(provenance(png_with_text({"Description": MIDJOURNEY_DESCRIPTION})), "png_text")
    assert item.details["job_id"] == "3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b" and item.signal == AI


def test_invokeai_and_novelai_chunks():
    invoke = only(provenance(png_with_text({"invokeai_metadata": '{"positive_prompt": "a cat"}'})), "png_text")
    assert invoke.details["generator"] == "InvokeAI"
    comment = json.dumps({"prompt": "a cat", "steps": 28, "signed_hash": "c2lnbmF0dXJl"})
    novel = only(
        provenance(png_with_text({"Software": "NovelAI", "Source": "NovelAI Diffusion V4", "Comment": comment})),
        "png_text",
    )
    assert novel.details["signed_hash_present"] and novel.details["signed_hash_verified"] is False
    assert "not verified" in novel.statement


@pytest.mark.parametrize(
    "chunks",
    [
        {"parameters": "\x00\x01 garbage without settings"},
        {"prompt": "{not json"},
        {"workflow": "[1, 2, 3]"},
        {"Description": "Job ID: not-a-uuid"},
    ],
)
def test_malformed_text_chunks_are_notes_not_markers(chunks):
    evidence = provenance(png_with_text(chunks))
    assert not any(e.is_marker for e in evidence)
    notes = [e for e in evidence if e.source == "png_text"]
    assert all(e.strength == NOTE for e in notes)
    if "Description" not in chunks:
        assert notes and "not counted" in notes[0].statement


def test_exif_make_ideogram():
    item = only(provenance(jpeg_with_exif({0x010F: "Ideogram AI"})), "exif")
    assert (item.signal, item.strength) == (AI, UNSIGNED) and item.details["generator"] == "Ideogram"
    assert report(jpeg_with_exif({0x010F: "Ideogram AI"})).verdict == AI


def test_a1111_parameters_in_jpeg_user_comment():
    comment = b"UNICODE\x00" + A1111_PARAMETERS.encode("utf-16-be")
    item = only(provenance(jpeg_with_exif({}, exif_ifd={0x9286: comment})), "exif")
    assert item.details["generator"] == "AUTOMATIC1111 / Forge"


def test_camera_exif_is_information_only():
    data = jpeg_with_exif(
        {0x010F: "Canon", 0x0110: "Canon EOS R5"},
        exif_ifd={0x829A: 1 / 250, 0x829D: 4.0, 0x8827: 200, 0x9003: "2024:05:01 10:00:00"},
    )
    item = only(provenance(data), "camera_exif")
    assert (item.signal, item.strength) == (NONE, INFORMATION) and not item.is_marker
    assert "Canon EOS R5" in item.statement and "1/250 s" in item.statement and "never makes" in item.statement
    result = report(data)
    assert result.verdict == "uncertain" and result.decided_by == NOTHING  # camera EXIF never makes "real"


def test_marker_and_camera_exif_is_a_conflict():
    data = jpeg_with_exif(
        {0x010F: "Canon", 0x0110: "Canon EOS R5"}, exif_ifd={0x829A: 1 / 250, 0x829D: 4.0}, xmp=xmp_packet()
    )
    result = report(data)
    assert result.verdict == AI
    assert any("camera EXIF" in c for c in result.conflicts)


def test_report_is_json_serialisable(signed_png):
    data = json.loads(json.dumps(report(signed_png).to_dict()))
    assert data["verdict"] == AI and data["decided_by"] == PROVENANCE
    assert {"kind", "source", "signal", "strength", "statement", "details"} <= set(data["evidence"][0])
