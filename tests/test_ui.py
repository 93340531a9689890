"""The app's presentation (ui/) without a server: the verdict card, the API's verdict line, the evidence
panel, the header, the batch table; and the decision rule stated one way in every place that states it.

Real objects throughout: reports come from the real fusion rules over a real PixelModelEvidence item, the
header from a real Detector on the tiny checkpoint.
"""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from detector import DecisionRule, Detector, Prediction, analyze
from detector.cli import report_row
from detector.config import percent
from detector.evidence.pixel import PixelModelEvidence
from detector.fusion import fuse
from detector.report import Report
from ui import batch, verdict
from ui.model import model_markdown

BAND = (0.35, 0.65)  # with threshold 0.5: "AI-generated at 65% or more, Real at 35% or less, Can't tell in between"
RULE_WORDS = "AI-generated at 65% or more, Real at 35% or less, Can't tell in between"


def _report(p: float, threshold: float = 0.5, band=BAND) -> Report:
    """A report exactly as analyze() fuses it when only the pixel model has something to say."""
    rule = DecisionRule(threshold=threshold, uncertain_band=band)
    prediction = Prediction(p, rule.decide(p), {"real": 1 - p, "ai_generated": p}, threshold, band)
    evidence = [PixelModelEvidence(None)._evidence(prediction)]
    fused = fuse(evidence)
    return Report("x.png", fused.label, fused.partly_ai, fused.decided_by, fused.reason, evidence)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


# --------------------------------------------------------------------------- the rule in words


@pytest.mark.parametrize("threshold, band, words", [
    (0.7043763054885461, (0.2543763054885461, 0.8293763054885461),
     "AI-generated at 83% or more, Real at 25% or less, Can't tell in between"),  # the embedded weights
    (0.5, BAND, RULE_WORDS),
    (0.5, (0.5, 0.5), "AI-generated at 50% or more, Real below 50%"),  # no band: the threshold alone
    (0.5, (0.495, 0.505), "AI-generated at 50.5% or more, Real at 49.5% or less, Can't tell in between"),
])
def test_rule_in_words(threshold, band, words):
    assert DecisionRule(threshold=threshold, uncertain_band=band).describe() == words


def _stated(rule: DecisionRule) -> tuple[float, float | None, bool]:
    """Parse describe() back: (AI from, Real up to, Real inclusive) in percent."""
    text = rule.describe()
    ai = float(re.search(r"AI-generated (?:at|only at) ([\d.]+)%", text).group(1))
    real = re.search(r"Real (at|below) ([\d.]+)%", text)
    return ai, (float(real.group(2)) if real else None), bool(real and real.group(1) == "at")


@pytest.mark.parametrize("threshold, band", [
    (0.7043763054885461, (0.2543763054885461, 0.8293763054885461)), (0.5, BAND), (0.828, (0.578, 0.878)),
    (0.5, (0.5, 0.5)), (0.5, (0.495, 0.505)), (0.4, (0.1234, 0.4)), (0.62, (0.62, 0.9051)),
])
def test_the_percent_a_person_reads_never_contradicts_the_stated_rule(threshold, band):
    """For every p on a fine grid (and at the exact cutoffs), the shown percentage read against the
    sentence gives the verdict decide() gives, and is within 1.5 steps of the rule's precision from p."""
    rule = DecisionRule(threshold=threshold, uncertain_band=band)
    ai, real, inclusive = _stated(rule)
    step = 10.0 ** -rule.digits
    grid = np.unique(np.concatenate([np.linspace(0.0005, 0.9995, 4001), [band[0], band[1], threshold],
                                     np.nextafter(band, 0), np.nextafter(band, 1)]))
    for p in grid:
        if p == band[0] == threshold:  # decide's one exception (p >= threshold) at a point no sentence states
            continue
        shown = rule.shown(float(p)) * 100
        text = rule.percent(float(p))
        if not text.startswith(("<", ">")):
            assert float(text.rstrip("%")) == pytest.approx(shown, abs=1e-9), (p, text)
        reads = ("ai_generated" if shown >= ai - 1e-9 else
                 "real" if real is not None and (shown <= real + 1e-9 if inclusive else shown < real - 1e-9)
                 else "uncertain")
        assert reads == rule.decide(float(p)), (p, shown, rule.describe())
        assert abs(shown - p * 100) <= 1.5 * step + 1e-9, (p, shown)


def test_percent_never_rounds_to_certainty():
    assert (percent(0.0001), percent(0.9999), percent(0.0), percent(1.0), percent(0.5)) == ("<1%", ">99%", "0%", "100%", "50%")


def test_api_json_names_the_cutoffs():
    public = DecisionRule(threshold=0.7, uncertain_band=(0.25, 0.83)).public()
    assert public == {"statement": "AI-generated at 83% or more, Real at 25% or less, Can't tell in between",
                      "ai_generated_at_or_above": 0.83, "real_at_or_below": 0.25, "calibrated_threshold": 0.7}
    assert DecisionRule(threshold=0.5, uncertain_band=(0.5, 0.5)).public()["real_below"] == 0.5


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Detector:
    return Detector.from_pretrained(tiny_checkpoint, device="cpu")


def test_every_place_states_the_rule_the_same_way(tiny, tmp_path):
    """Header, card, evidence, API text, API JSON, CLI row and model card: one sentence (the model card adds the
    raw numbers in brackets; the JSON keeps them under their own keys)."""
    from train.card import build_card

    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
    report = analyze(path, detector=tiny, cam=False)
    words = tiny.config.decision.describe()
    assert words == RULE_WORDS  # the tiny checkpoint's default rule
    places = {
        "header": model_markdown(tiny),
        "card": _text(verdict.verdict_card(report)),
        "evidence": report.evidence[0].statement,
        "api text": verdict.report_verdict_text(report),
        "api json": report.to_dict()["model"]["decision_rule"]["statement"],
        "cli row": report_row(report)["decision_rule"],
        "model card": build_card(tiny.config),
    }
    for name, text in places.items():
        assert words in text, name
        if name in ("header", "card", "evidence", "api text"):  # the model card keeps the raw numbers beside
            assert "threshold" not in text and "band" not in text and "0.5" not in text, name
    assert report.to_dict()["model"]["threshold"] == 0.5  # the raw numbers stay in the JSON
    assert report.to_dict()["model"]["uncertain_band"] == list(BAND)


# --------------------------------------------------------------------------- the verdict card


def test_card_for_each_verdict():
    ai, real, unsure = (verdict.verdict_card(_report(p)) for p in (0.8712, 0.09, 0.52))
    assert "verdict-ai" in ai and "Likely AI-generated — 87%" in ai
    assert "verdict-real" in real and "Likely real" in real
    assert "verdict-uncertain" in unsure and "Can't tell" in unsure
    for card, p in ((ai, "87%"), (real, "9%"), (unsure, "52%")):
        assert f"The pixel model gives {p} for AI-generated. Its rule: {RULE_WORDS}." in _text(card)
        assert "No AI provenance in the file." in card and "0.8712" not in card
    # The model's own band decides: 87% is still "can't tell" for a model that says AI from 88%.
    cautious = verdict.verdict_card(_report(0.8712, threshold=0.828, band=(0.578, 0.878)))
    assert "Can't tell" in cautious and "AI-generated at 88% or more, Real at 58% or less" in cautious


def test_card_near_a_cutoff_shows_a_percentage_that_agrees():
    """p = 64.8% is "can't tell" under "AI-generated at 65% or more": it must not read "65%"."""
    card = _text(verdict.verdict_card(_report(0.648)))
    assert "Can't tell" in card and "gives 64% for AI-generated" in card


def test_card_condition_note_and_escaping():
    report = _report(0.52)
    assert "verdict-note" not in verdict.verdict_card(report)
    card = verdict.verdict_card(report, note="A 320×240 <thumbnail>, compressed several times.")
    assert '<div class="verdict-note">A 320×240 &lt;thumbnail&gt;, compressed several times.</div>' in card
    error = verdict.error_card("Cannot read <this>", "x.png is not an image")
    assert "verdict-error" in error and 'role="alert"' in error and "&lt;this&gt;" in error


def test_page_bars_use_the_shown_percentage():
    label = verdict.page_label(_report(0.648))
    assert label["label"] == "Uncertain" and label["confidences"] == {"AI-generated": 0.64, "Real": pytest.approx(0.36)}


def test_api_verdict_line():
    assert verdict.verdict_text(_report(0.93).prediction) == (
        f"AI-generated (the pixel model gives 93% for AI-generated; {RULE_WORDS})")
    line = verdict.report_verdict_text(_report(0.3459))
    assert line.startswith(f"Real (the pixel model gives 35% for AI-generated; {RULE_WORDS}) · decided by the pixel model.")
    assert verdict.verdict_text(_report(0.99999).prediction).startswith("AI-generated (the pixel model gives >99% ")


def test_evidence_markdown_names_signer_and_conflicts():
    report = {"decided_by": "provenance_markers", "conflicts": ["a <b>conflict</b>"], "evidence": [
        {"kind": "provenance", "source": "c2pa", "signal": "ai_generated", "strength": "claimed", "statement": "says AI",
         "details": {"signer": {"common_name": "Signer <x>", "issuer": "Org"}, "signer_status": "claimed"}}]}
    text = verdict.evidence_markdown(report)
    assert "C2PA Content Credentials" in text and "Signer &lt;x&gt;" in text and "only claimed" in text
    assert "Conflicts" in text and "&lt;b&gt;" in text
    assert verdict.evidence_markdown(None) == ""


# --------------------------------------------------------------------------- batch


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_batch_table_rows_thumbnails_and_rule(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png((200, 10, 10)))
    rows = [
        {"file": "good.png", "verdict": "uncertain", "p_ai_generated": 0.648, "decided_by": "pixel_model",
         "reason": "", "error": None},
        {"file": "<bad>.png", "verdict": "error", "p_ai_generated": None, "decided_by": None, "reason": "",
         "error": "<bad>.png is not an image format we can read"},
    ]
    html = batch.batch_table(rows, [str(good), str(tmp_path / "missing.png")], DecisionRule(uncertain_band=BAND))
    assert "2 files: 1 can't tell, 1 error" in html
    good_row, bad_row = html.split("<tr class=")[1:]
    assert "verdict-uncertain" in good_row and "data:image/jpeg;base64," in good_row and "64%" in good_row
    assert "batch-error" in bad_row and "&lt;bad&gt;.png is not an image" in bad_row and "<img" not in bad_row
    assert batch.thumbnail(io.BytesIO(b"not an image")) == ""


def test_expand_batch_limits_and_zips(tmp_path, monkeypatch):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.png", _png((0, 0, 0)))
        zipped.writestr("__MACOSX/._a.png", b"junk")
        zipped.writestr(".hidden.png", b"junk")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:-30])
    sources = batch.expand_batch([str(archive), str(broken)])
    assert sources[0].name == "set.zip/a.png" and sources[1:] == [str(broken)]  # not a zip: an error row later
    monkeypatch.setattr(batch, "MAX_BATCH_FILES", 1)
    with pytest.raises(batch.BatchLimitError, match="at most 1 per batch"):
        batch.expand_batch([str(archive), str(archive)])
