"""detector.analyze / analyze_batch with the real tiny model: fusion beside the pixel model, batching, per-item errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detector import CannotJudgeError, Detector, Evidence, EvidenceKind, analyze, analyze_batch
from detector.evidence import AI, PixelModelEvidence, ProvenanceEvidence
from detector.fusion import NOTHING, PIXEL_MODEL, PROVENANCE, fuse
from provenance_files import encode, photo, png_with_text, xmp_packet

pytestmark = pytest.mark.timeout(200)


@pytest.fixture(scope="module")
def detector(tiny_checkpoint) -> Detector:
    return Detector.from_pretrained(tiny_checkpoint, device="cpu")


class MinSizeDetector(Detector):
    """The tiny model plus the documented refusal (CannotJudgeError) for images under 48 px, as the real one may raise."""

    def predict_decoded(self, images, cam=False):
        for image in images:
            if min(image.size) < 48:
                raise CannotJudgeError(f"the image is {image.width}x{image.height}; at least 48 px a side is needed")
        return super().predict_decoded(images, cam)


def test_plain_image_is_decided_by_the_model(detector, tmp_path):
    path = tmp_path / "plain.png"
    photo().save(path)
    report = analyze(path, detector=detector, cam=True)
    expected = detector.predict(path, cam=False)
    assert report.decided_by == PIXEL_MODEL and report.verdict == expected.label
    assert report.prediction.p_fake == pytest.approx(expected.p_fake, abs=1e-5)
    assert report.overlay().size == (320, 240)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["model"]["p_fake"] == pytest.approx(expected.p_fake, abs=1e-5)
    assert data["verdict"] == expected.label and data["file"] == str(path)


def test_marker_decides_and_the_model_score_is_still_shown(detector):
    report = analyze(png_with_text({}, xmp=xmp_packet()), detector=detector, cam=False)
    assert report.verdict == AI and report.decided_by == PROVENANCE
    assert report.to_dict()["model"]["p_fake"] is not None
    model = [e for e in report.evidence if e.kind == "pixel_model"]
    assert len(model) == 1 and model[0].strength == "statistical"
    if model[0].signal == "real":
        assert any("pixel model says real" in c for c in report.conflicts)


def test_model_that_cannot_judge_still_uses_provenance(tiny_checkpoint):
    strict = MinSizeDetector.from_pretrained(tiny_checkpoint, device="cpu")
    tiny_marked = png_with_text({}, image=photo(32, 32), xmp=xmp_packet())
    tiny_plain = encode(photo(32, 32), "PNG")
    big = encode(photo(), "PNG")
    reports = list(analyze_batch([tiny_marked, tiny_plain, big], detector=strict, batch_size=8))
    assert reports[0].verdict == AI and reports[0].decided_by == PROVENANCE and reports[0].prediction is None
    assert any("cannot judge" in e.statement for e in reports[0].evidence)
    assert (
        reports[1].verdict == "uncertain" and reports[1].decided_by == NOTHING and "cannot judge" in reports[1].reason
    )
    assert reports[2].decided_by == PIXEL_MODEL and reports[2].prediction is not None  # the batch-mate still judged


def test_batch_keeps_order_and_per_item_errors(detector, tmp_path, bad_files):
    good = tmp_path / "good.jpg"
    photo(seed=2).save(good, quality=90)
    sources = [good, bad_files["truncated.jpg"], tmp_path / "missing.png", good]
    reports = list(analyze_batch(sources, detector=detector, batch_size=2))
    assert [r.path for r in reports] == [str(s) for s in sources]
    assert reports[1].error and "truncated.jpg" in reports[1].error and "truncated or corrupted" in reports[1].error
    assert reports[2].error and "missing.png" in reports[2].error
    first, last = reports[0].to_dict(), reports[3].to_dict()
    assert (first["verdict"], first["decided_by"]) == (last["verdict"], last["decided_by"])
    assert first["model"]["p_fake"] == pytest.approx(last["model"]["p_fake"], abs=1e-5)
    assert reports[1].to_dict() == {"file": str(sources[1]), "error": reports[1].error}


def test_a_third_kind_plugs_in_without_touching_the_others(detector):
    class SizeKind(EvidenceKind):
        name = "size"

        def collect(self, item):
            return [Evidence("size", "size", "none", "information", f"{item.image.width}x{item.image.height}", {})]

    report = analyze(
        encode(photo(), "PNG"), kinds=[PixelModelEvidence(detector, cam=False), ProvenanceEvidence(), SizeKind()]
    )
    assert [e.statement for e in report.evidence if e.kind == "size"] == ["320x240"]
    assert report.decided_by == PIXEL_MODEL


def test_fusion_rules_are_order_independent():
    marker = Evidence("provenance", "xmp", AI, "unsigned", "xmp says AI", {})
    composite = Evidence("provenance", "c2pa", "partly_ai", "verified", "verified composite", {})
    assert fuse([marker, composite]).partly_ai and fuse([composite, marker]).partly_ai  # verified tier decides
    verdict = fuse([marker, composite])
    assert verdict.decided_by == "c2pa_verified" and any("partly" in c for c in verdict.conflicts)
    assert fuse([]).label == "uncertain"


def test_detector_images_are_not_changed_by_decode(detector, tmp_path):
    """decode() gives the pixel model the same RGB pixels as load_image()."""
    from detector import decode, load_image

    path = tmp_path / "p.png"
    Image.fromarray(np.asarray(photo())).save(path)
    assert np.array_equal(np.asarray(decode(path).image), np.asarray(load_image(path)))
    assert decode(path).format == "png" and decode(path.read_bytes()).data == path.read_bytes()
