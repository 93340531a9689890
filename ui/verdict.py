"""The verdict in words: the page's card, the API's verdict line, the evidence panel.

The decision rule is stated one way everywhere, by ``detector.DecisionRule.describe`` ("AI-generated
at 83% or more, Real at 25% or less, Can't tell in between"), and every probability a person reads
goes through ``DecisionRule.percent``, so a number never contradicts the rule printed beside it.
"""
from __future__ import annotations

import html

from detector import UNCERTAIN, DecisionRule, Prediction, Report
from detector.evidence.c2pa_reader import chain_steps_markdown
from detector.fusion import C2PA_VERIFIED, PIXEL_MODEL, PROVENANCE
from detector.report import DECIDED_BY

DISPLAY_LABELS = {"real": "Real", "ai_generated": "AI-generated", UNCERTAIN: "Uncertain"}
CARD_CLASSES = {"ai_generated": "verdict-ai", "real": "verdict-real", UNCERTAIN: "verdict-uncertain"}
EMPTY_CARD = ('<div class="verdict-card verdict-empty" role="status">'
              '<div class="verdict-title">Upload an image to get a verdict</div></div>')


def escape(message: str) -> str:
    """Messages quote user-chosen file names; gr.Error and the card render HTML."""
    return html.escape(message, quote=False)


def rule_of(prediction: Prediction) -> DecisionRule:
    """The decision rule a prediction was made with."""
    return DecisionRule(threshold=prediction.threshold, uncertain_band=prediction.uncertain_band)


def model_says(prediction: Prediction) -> str:
    """"52% for AI-generated", the percentage agreeing with the model's own verdict."""
    return f"{rule_of(prediction).percent(prediction.p_fake)} for AI-generated"


# --------------------------------------------------------------------------- the API's verdict line (/predict)


def verdict_text(prediction: Prediction) -> str:
    """"Uncertain (the pixel model gives 52% for AI-generated; AI-generated at 65% or more, ...)"."""
    label = DISPLAY_LABELS.get(prediction.label, prediction.label)
    return f"{label} (the pixel model gives {model_says(prediction)}; {rule_of(prediction).describe()})"


def report_verdict_text(report: Report) -> str:
    """The fused verdict, which evidence decided it, and the model's score beside provenance."""
    prediction = report.prediction
    if report.decided_by == PIXEL_MODEL and prediction is not None:
        found = [e for e in report.evidence if e.source == "summary"]
        tail = " No provenance in the file (normal for screenshots and re-uploads)." if found else ""
        return f"{verdict_text(prediction)} · decided by the pixel model.{tail}" + _conflict_line(report)
    model = (f" Pixel model: {model_says(prediction)} ({DISPLAY_LABELS.get(prediction.label, prediction.label)})."
             if prediction is not None else " The pixel model cannot judge this image.")
    decided = DECIDED_BY.get(report.decided_by, report.decided_by)
    return f"{report.headline} (decided by {decided}): {report.reason}{model}" + _conflict_line(report)


def _conflict_line(report: Report) -> str:
    return f" Conflict: {' '.join(report.conflicts)}" if report.conflicts else ""


# --------------------------------------------------------------------------- the page's verdict card


def card_title(report: Report) -> str:
    """"Likely AI-generated — 87%", "Likely real", "Can't tell", or what the provenance says."""
    prediction = report.prediction
    if report.verdict == "ai_generated":
        what = "Partly AI-generated" if report.partly_ai else "AI-generated"
        if report.decided_by == C2PA_VERIFIED:
            return f"{what} — verified Content Credentials"
        if report.decided_by == PROVENANCE:
            return f"Likely {what} — the file's own metadata says so"
        if prediction is None:
            return f"Likely {what}"
        return f"Likely {what} — {rule_of(prediction).percent(prediction.p_fake)}"
    if report.verdict == "real":
        return "Likely real"
    return "Can't tell"


def card_reason(report: Report) -> str:
    """The report's reason in one plain line: the model's score and its rule, or what the provenance says."""
    prediction = report.prediction
    if report.decided_by == PIXEL_MODEL and prediction is not None:
        return f"{report.reason} No AI provenance in the file."
    reason = report.reason.split(": ", 1)[0] if report.decided_by == C2PA_VERIFIED else report.reason
    if prediction is not None and report.decided_by in (C2PA_VERIFIED, PROVENANCE):
        reason += f" The pixel model alone gives {model_says(prediction)}."
    return reason


def verdict_card(report: Report, note: str | None = None) -> str:
    """HTML: a coloured card (class verdict-ai / -real / -uncertain), the title, the reason, any conflict.

    ``note``: one line in plain words about the image's condition ("This is a 320×240 thumbnail that
    was compressed several times; ..."), shown under the reason when given (``.verdict-note``).
    """
    css = CARD_CLASSES.get(report.verdict, "verdict-uncertain")
    note_html = f'<div class="verdict-note">{escape(note)}</div>' if note else ""
    conflict = "".join(f'<div class="verdict-conflict">Conflict: {escape(c)}</div>' for c in report.conflicts)
    return (f'<div class="verdict-card {css}" role="status"><div class="verdict-title">{escape(card_title(report))}'
            f'</div><div class="verdict-reason">{escape(card_reason(report))}</div>{note_html}{conflict}</div>')


def error_card(title: str, message: str) -> str:
    """The card for an image that could not be analysed; ``message`` is already escaped (gr.Error's text)."""
    return (f'<div class="verdict-card verdict-error" role="alert"><div class="verdict-title">{escape(title)}</div>'
            f'<div class="verdict-reason">{message}</div></div>')


def page_label(report: Report) -> dict:
    """The page's bars: display names, the verdict as label, the model's score as a person reads it."""
    prediction = report.prediction
    confidences = {}
    if prediction is not None:
        shown = rule_of(prediction).shown(prediction.p_fake)
        confidences = {"AI-generated": shown, "Real": 1 - shown}
    return {"label": DISPLAY_LABELS.get(report.verdict, report.verdict), "confidences": confidences}


# --------------------------------------------------------------------------- the evidence panel

STRENGTH_MEANING = {
    "verified": "verified: signed by a signer that chains to a trusted anchor",
    "claimed": "signed, but who signed it is only claimed (not in our trust anchors)",
    "unsigned": "plain metadata or watermark: anyone can add or remove it",
    "statistical": "the model's calibrated score",
    "information": "information only, not counted",
    "tampered": "the file changed after signing: not counted",
    "note": "could not be checked",
}
SOURCE_NAMES = {
    "model": "Pixel model", "c2pa": "C2PA Content Credentials", "xmp": "XMP / IPTC", "png_text": "Generator text chunks",
    "exif": "EXIF", "camera_exif": "Camera EXIF", "watermark": "SD invisible watermark", "summary": "Provenance",
}


def evidence_markdown(report: dict | None) -> str:
    """The evidence panel: what was found, who signed it, what it means; conflicts last."""
    if not report or "evidence" not in report:
        return ""
    lines = [f"**Decided by {escape(DECIDED_BY.get(report['decided_by'], report['decided_by']))}.**", ""]
    for item in report["evidence"]:
        name = SOURCE_NAMES.get(item["source"], item["source"])
        meaning = STRENGTH_MEANING.get(item["strength"], item["strength"])
        signer = (item.get("details") or {}).get("signer") if item["source"] == "c2pa" else None
        who = ""
        if signer and (signer.get("common_name") or signer.get("issuer")):
            who = f" Signer: {escape(signer.get('common_name') or '?')} (issuer {escape(signer.get('issuer') or '?')}), " \
                  f"{escape(item['details'].get('signer_status', ''))}."
        lines.append(f"- **{name}** · *{meaning}*: {escape(item['statement'])}{who}")
        steps = chain_steps_markdown(item.get("details") or {}) if item["source"] == "c2pa" else ""
        lines += [steps] if steps else []  # the C2PA chain as steps, like CAI's Verify page
    if report.get("conflicts"):
        lines += ["", "**Conflicts:**"] + [f"- {escape(c)}" for c in report["conflicts"]]
    return "\n".join(lines)


def rounded(value, digits: int = 3):
    """The report as the page shows it: floats rounded (0.828, not 0.8279100060462952)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value
