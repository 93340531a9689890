"""ConVitX web app: upload an image, get a verdict, the evidence behind it and a Grad-CAM heatmap.

Thin on purpose: decoding, the model, provenance, calibration and the fusion rules
all live in ``detector/``; this file only wires ``detector.analyze`` to a Gradio UI
and one API endpoint, ``/predict``. It runs as a Hugging Face Space (module-level ``demo``) or with
``python app.py``. ``CONVITX_MODEL`` picks the checkpoint (default: ``weights/``);
Gradio itself reads ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""
from __future__ import annotations

import functools
import html
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import gradio as gr
from huggingface_hub import constants as hf_constants

from detector import UNCERTAIN, Detector, ImageError, Prediction, Report, analyze
from detector.fusion import PIXEL_MODEL
from detector.hub import MODEL_ENV_VAR, is_hub_ref, read_card, split_ref
from detector.report import DECIDED_BY

log = logging.getLogger("convitx.app")

APP_DIR = Path(__file__).resolve().parent
EXAMPLES = (
    ("landscape.jpg", "Landscape (synthetic)"),
    ("still_life.png", "Still life (synthetic render)"),
    ("city_night.jpg", "City at night (synthetic, wide)"),
)
# Serving limits. An upload bigger than this is refused before it is written to
# disk; the pixel-count limit (detector.images.DEFAULT_MAX_PIXELS) guards decoding.
MAX_FILE_SIZE = "20mb"
# Grad-CAM holds the model's lock, so a second worker only overlaps decoding and
# I/O with inference; more would just queue on the lock while holding memory.
CONCURRENCY_LIMIT = 2
QUEUE_MAX_SIZE = 32
# What `python app.py` passes to launch(); tests launch with the same. show_error=False
# hides unexpected exceptions from users; gr.Error messages are always shown.
LAUNCH_KWARGS = dict(max_file_size=MAX_FILE_SIZE, show_error=False)
MODEL_RETRY_S = 30.0  # after a failed load, how long requests fail fast before the next attempt

def app_model_ref() -> str:
    """``$CONVITX_MODEL``, else the ``weights/`` folder beside this file: a Space runs app.py from a
    checkout that was never pip-installed, where the package's embedded default may not exist."""
    return os.environ.get(MODEL_ENV_VAR) or str(APP_DIR / "weights")


DISPLAY_LABELS = {"real": "Real", "ai_generated": "AI-generated", UNCERTAIN: "Uncertain"}


def raw_image_input(**kwargs) -> gr.Image:
    """gr.Image's widget (upload, drag-and-drop, paste) that hands ``fn`` the uploaded file untouched.

    gr.Image opens the upload with PIL before our function runs, so a file that
    is not an image, or a decompression bomb, fails there with an opaque server
    error. Passing the path through lets ``detector.load_image`` apply its one
    decode policy (16-bit, EXIF, alpha...) and its readable errors.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    # An instance attribute rather than a subclass: Gradio writes a .pyi stub
    # next to every module that defines a Component subclass.
    image.preprocess = _uploaded_path
    return image


def _uploaded_path(payload) -> str | None:
    if payload is None:
        return None
    if not payload.path:
        raise gr.Error("No image file was received: upload the image as a file.", print_exception=False)
    return payload.path


class LazyDetector:
    """Load the model on first use, not at import: a Space may start before its weights exist.

    A failed load is retried, at most every ``retry_s`` seconds, so a checkpoint
    that appears later is picked up without a restart and a broken Hub reference
    does not cost every request a network timeout.
    """

    def __init__(self, factory: Callable[[], Detector], ref: str | None = None, retry_s: float = MODEL_RETRY_S):
        self.factory = factory
        self.ref = ref
        self.retry_s = retry_s
        self._detector: Detector | None = None
        self._error: str | None = None
        self._failed_at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> Detector:
        """The loaded detector, or a gr.Error that tells the user (and the operator) what to fix."""
        with self._lock:
            if self._detector is None:
                if self._error is None or time.monotonic() - self._failed_at >= self.retry_s:
                    self._load()
                if self._detector is None:
                    raise gr.Error(self._error, title="Model not loaded", duration=None, print_exception=False)
            return self._detector

    def _load(self) -> None:
        ref = self.ref or app_model_ref()
        try:
            self._detector = self.factory()
            self._error = None
            log.info("loaded ConVitX model %s from %s", self._detector.config.name, ref)
        except Exception as exc:  # ModelLoadError, but also a torch/OS error from a broken file
            # The full reason (with server paths) goes to the log; the user gets what to do about it.
            log.error("could not load the ConVitX model from %s: %s: %s", ref, type(exc).__name__, exc)
            self._error = model_error_message(ref, from_env=self.ref is None)
            self._failed_at = time.monotonic()

    @property
    def loaded(self) -> Detector | None:
        return self._detector

    def status(self) -> str:
        """Markdown for the page header: which model answers, or why none does."""
        try:
            detector = self.get()
        except gr.Error as exc:
            return f"**Model:** not loaded. {_escape(exc.message)}"
        return model_markdown(detector)


def model_error_message(ref: str, from_env: bool = True) -> str:
    """What the user sees when no model loads: what is wrong and what the operator should set.

    Names the checkpoint but not the server's folders; the log has the full reason.
    """
    where = f"Hub repo {ref!r}" if is_hub_ref(ref) else f"folder {_display_path(ref, short=True)!r}"
    origin = ""
    if from_env:
        origin = f"set by {MODEL_ENV_VAR}" if os.environ.get(MODEL_ENV_VAR) else f"the default; {MODEL_ENV_VAR} is not set"
        origin = f" ({origin})"
    return (
        f"The model is missing: no usable ConVitX checkpoint in the {where}{origin}. "
        "Put a checkpoint there (config.json + model.safetensors), or set "
        f"{MODEL_ENV_VAR} to a checkpoint folder or a Hugging Face repo id (org/name[@revision]) and restart "
        "the app. The server log has the details."
    )


def model_markdown(detector: Detector) -> str:
    """Model name, decision rule and where its model card lives."""
    config = detector.config
    lo, hi = config.decision.uncertain_band
    source = detector.source or "(in memory)"
    if is_hub_ref(source):
        repo_id, revision = split_ref(source)
        url = f"{hf_constants.ENDPOINT}/{repo_id}" + (f"/tree/{revision}" if revision else "")
        card = f"[model card]({url})"
    elif detector.card_path is not None:
        card = f"model card: `{_display_path(detector.card_path)}` (below)"
    else:
        card = "no model card"
    return (
        f"**Model:** `{config.name}` from `{_display_path(source)}` · {card} · "
        f"threshold {_num(config.decision.threshold)}, uncertain band {_num(lo)}–{_num(hi)}"
    )


def model_card_markdown(detector: Detector) -> str:
    """The card's prose (huggingface_hub's ModelCard.text), without its YAML metadata."""
    path = detector.card_path
    if path is None:
        return "This checkpoint has no model card (README.md)."
    try:
        text = read_card(path.parent).text
    except Exception:  # metadata that is not YAML: show the file as it is rather than nothing
        text = path.read_text(encoding="utf-8", errors="replace")
    return text.strip() or "The model card is empty."


def verdict_text(prediction: Prediction) -> str:
    """One honest line: the call, the probability behind it, and the rule that made it."""
    lo, hi = (_num(x) for x in prediction.uncertain_band)
    p, rule = _num(prediction.p_fake), f"threshold {_num(prediction.threshold)}"
    if prediction.label == UNCERTAIN:
        return f"Uncertain (p={p} is inside the uncertain band {lo}–{hi}, {rule}): the model cannot tell either way."
    return f"{DISPLAY_LABELS.get(prediction.label, prediction.label)} (p={p}, {rule}; uncertain band {lo}–{hi})"


def _num(x: float) -> str:
    """Three decimals, trailing zeros dropped (0.5, 0.35, 0.346), never a rounded 0 or 1 for a probability."""
    if 0 < x < 0.0005:
        return "<0.001"
    if 0.9995 <= x < 1:
        return ">0.999"
    return f"{x:.3f}".rstrip("0").rstrip(".")


def report_verdict_text(report: Report) -> str:
    """The verdict card: the call, which evidence decided it, and the model's score beside provenance."""
    prediction = report.prediction
    if report.decided_by == PIXEL_MODEL and prediction is not None:
        found = [e for e in report.evidence if e.source == "summary"]
        tail = " No provenance in the file (normal for screenshots and re-uploads)." if found else ""
        return f"{verdict_text(prediction)} · decided by the pixel model.{tail}" + _conflict_line(report)
    model = (f" Pixel model: p={_num(prediction.p_fake)} ({DISPLAY_LABELS.get(prediction.label, prediction.label)})."
             if prediction is not None else " The pixel model cannot judge this image.")
    return f"{report.headline} (decided by {DECIDED_BY.get(report.decided_by, report.decided_by)}): {report.reason}{model}" + _conflict_line(report)


def _conflict_line(report: Report) -> str:
    return f" Conflict: {' '.join(report.conflicts)}" if report.conflicts else ""


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
    lines = [f"**Decided by {_escape(DECIDED_BY.get(report['decided_by'], report['decided_by']))}.**", ""]
    for item in report["evidence"]:
        name = SOURCE_NAMES.get(item["source"], item["source"])
        meaning = STRENGTH_MEANING.get(item["strength"], item["strength"])
        signer = (item.get("details") or {}).get("signer") if item["source"] == "c2pa" else None
        who = ""
        if signer and (signer.get("common_name") or signer.get("issuer")):
            who = f" Signer: {_escape(signer.get('common_name') or '?')} (issuer {_escape(signer.get('issuer') or '?')}), " \
                  f"{_escape(item['details'].get('signer_status', ''))}."
        lines.append(f"- **{name}** · *{meaning}*: {_escape(item['statement'])}{who}")
    if report.get("conflicts"):
        lines += ["", "**Conflicts:**"] + [f"- {_escape(c)}" for c in report["conflicts"]]
    return "\n".join(lines)


def predict(model: LazyDetector, image: str | None):
    """Image file -> (verdict label + model confidences, Grad-CAM overlay, verdict text, JSON report). Errors become gr.Error."""
    if image is None:
        return None, None, "Upload an image to get a verdict.", None
    detector = model.get()
    try:
        report = analyze(image, detector=detector, cam=True, name=Path(image).name)
    except ImageError as exc:
        # ImageError messages are written for end users and name the file, never its temp path.
        message = _escape(_strip_dir(str(exc), image))
        raise gr.Error(message, title="Cannot read this image", print_exception=False) from None
    prediction = report.prediction
    label = {"label": report.verdict, "confidences": prediction.probabilities if prediction is not None else {}}
    overlay = prediction.overlay() if prediction is not None else None
    return label, overlay, report_verdict_text(report), report.to_dict()


def verdict_label(**kwargs) -> gr.Label:
    """gr.Label whose label is the fused verdict, not the model's top class, so the two can never disagree."""
    component = gr.Label(**kwargs)

    def postprocess(value):
        if not value:
            return {}
        confidences = sorted((value.get("confidences") or {}).items(), key=lambda kv: kv[1], reverse=True)
        return {"label": value["label"], "confidences": [{"label": k, "confidence": v} for k, v in confidences]}

    # An instance attribute rather than a subclass (Gradio writes .pyi stubs for Component subclasses).
    component.postprocess = postprocess
    return component


def build_demo(model_ref: str | None = None, detector_factory: Callable[[], Detector] | None = None) -> gr.Blocks:
    """The UI. ``model_ref`` (folder or Hub id) defaults to $CONVITX_MODEL or weights/, read at load time."""
    if detector_factory is None:
        detector_factory = lambda: Detector.from_pretrained(model_ref or app_model_ref())  # noqa: E731
    model = LazyDetector(detector_factory, ref=model_ref)

    def load_model_info() -> tuple[str, str]:
        header = model.status()
        detector = model.loaded
        card = model_card_markdown(detector) if detector is not None else "No model is loaded."
        return header, card

    with gr.Blocks(title="ConVitX: AI-generated image detector") as demo:
        gr.Markdown(
            "# ConVitX: AI-generated or real?\n"
            "Drop, paste or upload an image. The model gives the probability that it is AI-generated "
            "and highlights the regions that drove its answer."
        )
        model_info = gr.Markdown("**Model:** loading…")
        with gr.Row(equal_height=False):
            with gr.Column():
                image = raw_image_input(label="Image", sources=["upload", "clipboard"], elem_id="input-image")
                # No fn: a click fills the input and its change event predicts, so nothing
                # runs (or is cached) at startup, when the model may still be missing.
                gr.Examples(
                    examples=[[str(APP_DIR / "examples" / name)] for name, _ in EXAMPLES],
                    example_labels=[label for _, label in EXAMPLES],
                    inputs=[image],
                    label="Examples (synthetic scenes: they show the app, not its accuracy)",
                    api_visibility="private",
                )
            with gr.Column():
                verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verdict", lines=3)
                evidence = gr.Markdown(label="Evidence", elem_id="evidence", container=True)
                # No heading: the top class would read as a verdict even inside the uncertain band.
                probabilities = verdict_label(
                    label="Pixel model probabilities", num_top_classes=2, show_heading=False, elem_id="probabilities"
                )
                overlay = gr.Image(label="Grad-CAM heatmap", format="png", interactive=False, elem_id="heatmap")
        gr.Markdown(
            "p is the model's calibrated probability that the image is AI-generated. Inside the uncertain "
            "band the app does not commit to an answer. A detector's score is evidence, not proof: "
            "resizing, compression, screenshots and generators it never saw all move it. Provenance found in the "
            "file itself (C2PA Content Credentials, AI metadata, a generator's watermark) decides the verdict when "
            "present; finding none is normal and never counts towards 'Real'."
        )
        with gr.Accordion("Report (JSON)", open=False):
            report = gr.JSON(label="Report", elem_id="report")
        with gr.Accordion("Model card", open=False):
            card = gr.Markdown()

        image.change(
            functools.partial(predict, model),
            inputs=[image],
            outputs=[probabilities, overlay, verdict, report],
            api_name="predict",
            api_description=(
                "Image file -> verdict label (real / ai_generated / uncertain) with the pixel model's confidences, "
                "Grad-CAM overlay, verdict text, and the full evidence report as JSON."
            ),
        ).then(evidence_markdown, inputs=[report], outputs=[evidence], api_visibility="private")
        demo.load(load_model_info, outputs=[model_info, card], api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)
    return demo



def _display_path(path: str | os.PathLike, short: bool = False) -> str:
    """Paths inside the app folder relative to it; with ``short``, others by their last part only."""
    try:
        return str(Path(path).resolve().relative_to(APP_DIR))
    except ValueError:
        return Path(path).name if short else str(path)


def _strip_dir(message: str, path: str) -> str:
    """Belt and braces: never echo the upload's server-side directory, only its file name."""
    folder = str(Path(path).parent)
    return message.replace(folder + os.sep, "").replace(folder, "")


def _escape(message: str) -> str:
    """gr.Error renders HTML, and messages quote user-chosen file names."""
    return html.escape(message, quote=False)


demo = build_demo()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes
    demo.launch(**LAUNCH_KWARGS)
