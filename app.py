"""ConVitX web app: upload an image, get a verdict, the evidence behind it and a Grad-CAM heatmap.

This file only wires: decoding, the model, provenance, calibration and the fusion rules live in
``detector/``; everything the page shows (verdict card, evidence, header, batch table, CSS) is built
in ``ui/``. Here the Blocks are laid out and events connected to ``detector.analyze``, including the
API endpoints ``/predict``, ``/heatmaps`` and ``/batch``. It runs as a Hugging Face Space (module-level
``demo``) or with ``python app.py``. ``CONVITX_MODEL`` picks the checkpoint (default: ``weights/``);
Gradio itself reads ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""
from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from detector import Detector, ImageError, Report, analyze
from detector.condition import condition_sentence
from detector.spectrum import spectrum_image
from ui.batch import BATCH_COLUMNS, MAX_BATCH_BYTES, MAX_BATCH_FILES, batch_rows, batch_table
from ui.components import BUSY_MESSAGE, CLOSE_TOASTS, busy_message_when_queue_full, raw_image_input, verdict_label
from ui.files import save_jpeg, write_csv
from ui.model import APP_DIR, LazyDetector, app_model_ref, model_card_markdown, strip_dir
from ui.page import (APP_CSS, CAVEAT, EXAMPLES, EXAMPLES_LABEL, FUSED, INTRO, SPECTRUM_HELP, batch_help,
                     view_choices)
from ui.verdict import (EMPTY_CARD, error_card, escape, evidence_markdown, page_label, report_verdict_text,
                        rounded, verdict_card)

__all__ = ["BUSY_MESSAGE", "LAUNCH_KWARGS", "MAX_BATCH_BYTES", "MAX_BATCH_FILES", "build_demo", "demo"]

# Serving limits. An upload bigger than this is refused before it is written to
# disk; the pixel-count limit (detector.images.DEFAULT_MAX_PIXELS) guards decoding.
MAX_FILE_SIZE = "20mb"
# Grad-CAM holds the model's lock, so a second worker only overlaps decoding and
# I/O with inference; more would just queue on the lock while holding memory.
CONCURRENCY_LIMIT = 2
QUEUE_MAX_SIZE = 32
OUTPUT_MAX_AGE_S = 3600  # heatmaps, spectra and CSVs are deleted from the cache after an hour
# What `python app.py` passes to launch(); tests launch with the same. show_error=False
# hides unexpected exceptions from users; gr.Error messages are always shown.
LAUNCH_KWARGS = dict(max_file_size=MAX_FILE_SIZE, show_error=False, css=APP_CSS)


# --------------------------------------------------------------------------- single image


def predict(model: LazyDetector, image: str | None, overlay_component=None):
    """API ``/predict``: image file -> (verdict label + model confidences, Grad-CAM overlay, verdict text, JSON report).

    Errors become gr.Error. Kept to these four outputs so that clients written for it keep working.
    """
    if image is None:
        return None, None, "Upload an image to get a verdict.", None
    report = _analyze(model, image)
    prediction = report.prediction
    label = {"label": report.verdict, "confidences": prediction.probabilities if prediction is not None else {}}
    overlay = save_jpeg(overlay_component, prediction.overlay(), "heatmap") if prediction is not None else None
    return label, overlay, report_verdict_text(report), report.to_dict()


def _analyze(model: LazyDetector, image: str) -> Report:
    detector = model.get()
    try:
        return analyze(image, detector=detector, cam=True, name=Path(image).name)
    except ImageError as exc:
        # ImageError messages are written for end users and name the file, never its temp path.
        message = escape(strip_dir(str(exc), image))
        raise gr.Error(message, title="Cannot read this image", print_exception=False) from None


@dataclass
class Page:
    """The single-image components the page's own event fills (not part of the API)."""

    card: gr.HTML
    probabilities: gr.Label
    view: gr.Radio
    overlay: gr.Image
    maps: gr.State
    spectrum: gr.Image
    evidence: gr.Markdown
    report: gr.JSON
    error: gr.Textbox  # hidden: set to a fresh token on a bad upload; the page then clears the input

    @property
    def outputs(self) -> list:
        return [self.card, self.probabilities, self.view, self.overlay, self.maps, self.spectrum, self.evidence,
                self.report, self.error]


# Every output gets a value, never gr.skip(): a skipped output is rebuilt from its constructor arguments
# in the session (Gradio 6), which would drop the instance overrides of the input image and the label.
def analyze_for_page(model: LazyDetector, image: str | None, view: str | None = FUSED):
    """The page's event: the card, display-named bars, every heatmap (fused + per branch), the spectrum.

    A file that cannot be read puts the message in the card and in a warning toast that stays until
    the next analysis closes it (CLOSE_TOASTS), and sets the hidden error token, whose change clears
    the input in the browser, instead of leaving a broken-image icon next to an old verdict.
    """
    if image is None:
        return EMPTY_CARD, None, gr.Radio(), None, {}, None, "", None, ""
    try:
        report = _analyze(model, image)
    except gr.Error as exc:
        gr.Warning(exc.message, title=exc.title, duration=None)
        return (error_card(exc.title or "Error", exc.message), None, gr.Radio(), None, {}, None, "", None,
                uuid.uuid4().hex)
    prediction = report.prediction
    maps: dict[str, str] = {}
    spectrum = None
    if prediction is not None:
        maps[FUSED] = save_jpeg(model.cache_owner, prediction.overlay(), "heatmap")
        for name in prediction.branch_heatmaps:
            maps[name] = save_jpeg(model.cache_owner, prediction.overlay(branch=name), f"heatmap-{name}")
        spectrum = save_jpeg(model.cache_owner, spectrum_image(prediction.image), "spectrum")
    view = view if view in maps else FUSED
    # The image's condition in plain words, unless the reason already says it (when it decided "Can't tell").
    note = condition_sentence(report)
    note = note if note and note not in (report.reason or "") else None
    data = report.to_dict()
    return (verdict_card(report, note), page_label(report), gr.Radio(choices=view_choices(model.loaded), value=view),
            maps.get(view), maps, spectrum, evidence_markdown(data), rounded(data), "")


def heatmaps_api(model: LazyDetector, component, image: str | None):
    """API ``/heatmaps``: image file -> gallery of (overlay, name): ``fused``, then one per branch (config names)."""
    if image is None:
        return []
    prediction = _analyze(model, image).prediction
    if prediction is None:  # the model cannot judge this image: no map to show
        return []
    out = [(save_jpeg(component, prediction.overlay(), "heatmap"), FUSED)]
    return out + [(save_jpeg(component, prediction.overlay(branch=name), f"heatmap-{name}"), name)
                  for name in prediction.branch_heatmaps]


def show_view(view: str, maps: dict[str, str]):
    """Switch the heatmap between fused and one branch: the maps were drawn with the verdict, nothing recomputes."""
    return maps.get(view) if maps else None


# --------------------------------------------------------------------------- batch


def batch_api(model: LazyDetector, csv_component, files: list[str] | None, progress=gr.Progress()):
    """API ``/batch``: files (images or .zip) -> (rows as JSON, CSV file)."""
    rows, _ = batch_rows(model, files, progress)
    return rows, write_csv(csv_component, rows, BATCH_COLUMNS)


def batch_for_page(model: LazyDetector, csv_component, files: list[str] | None, progress=gr.Progress()):
    """The page's batch: a table with thumbnails, verdict, p, decided-by; the CSV to download."""
    rows, sources = batch_rows(model, files, progress)
    rule = model.loaded.config.decision if model.loaded is not None else None
    return batch_table(rows, sources, rule), write_csv(csv_component, rows, BATCH_COLUMNS)


# --------------------------------------------------------------------------- the Blocks


def build_demo(
    model_ref: str | None = None,
    detector_factory: Callable[[], Detector] | None = None,
    queue_max_size: int = QUEUE_MAX_SIZE,
    concurrency_limit: int = CONCURRENCY_LIMIT,
) -> gr.Blocks:
    """The UI. ``model_ref`` (folder or Hub id) defaults to $CONVITX_MODEL or weights/, read at load time."""
    if detector_factory is None:
        detector_factory = lambda: Detector.from_pretrained(model_ref or app_model_ref())  # noqa: E731
    model = LazyDetector(detector_factory, ref=model_ref)
    private = dict(api_visibility="private")

    with gr.Blocks(title="ConVitX: AI-generated image detector", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(INTRO)
        model_info = gr.Markdown("**Model:** loading…")
        # The page's outputs first (unrendered), so the examples can run the analysis on click.
        card = gr.HTML(EMPTY_CARD, elem_id="verdict-card", render=False)
        # No heading: the top class would read as a verdict even inside the uncertain band.
        probabilities = verdict_label(label="Pixel model", num_top_classes=2, show_heading=False,
                                      elem_id="probabilities", render=False)
        view = gr.Radio(choices=view_choices(None), value=FUSED, label="Heatmap: where the model looked",
                        elem_id="heatmap-view", render=False)
        overlay = gr.Image(label="Grad-CAM heatmap", interactive=False, elem_id="heatmap", render=False)
        evidence = gr.Markdown(label="Evidence", elem_id="evidence", container=True, render=False)
        spectrum = gr.Image(label="Log-magnitude spectrum of the luminance (centre 512 px)", interactive=False,
                            elem_id="spectrum", height=320, render=False)
        report = gr.JSON(label="Report", elem_id="report", render=False)
        page_error = gr.Textbox(label="Page error", visible=False, render=False)
        maps = gr.State({})
        model.cache_owner = overlay
        page = Page(card, probabilities, view, overlay, maps, spectrum, evidence, report, page_error)
        analyze_page = functools.partial(analyze_for_page, model)
        with gr.Tabs():
            with gr.Tab("One image", id="single", elem_id="tab-single"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        image = raw_image_input(label="Image", sources=["upload", "clipboard"], elem_id="input-image")
                        # Run on click, never cached: nothing runs at startup, when the model may still be missing.
                        examples = gr.Examples(
                            examples=[[str(APP_DIR / "examples" / name)] for name, _ in EXAMPLES],
                            example_labels=[label for _, label in EXAMPLES], inputs=[image], outputs=page.outputs,
                            fn=analyze_page, run_on_click=True, cache_examples=False, label=EXAMPLES_LABEL, **private)
                    with gr.Column(min_width=300):
                        for component in (card, probabilities, view, overlay, evidence):
                            component.render()
                with gr.Accordion("Frequency spectrum", open=True, elem_id="spectrum-panel"):
                    with gr.Row(equal_height=False):
                        with gr.Column(min_width=300):
                            spectrum.render()
                        with gr.Column(min_width=300):
                            gr.Markdown(SPECTRUM_HELP, elem_id="spectrum-help")
                gr.Markdown(CAVEAT)
                with gr.Accordion("Report (JSON)", open=False):
                    report.render()
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                gr.Markdown(batch_help(MAX_BATCH_FILES, MAX_BATCH_BYTES, MAX_FILE_SIZE))
                files = gr.File(label="Images or .zip", file_count="multiple", type="filepath", elem_id="batch-files")
                run_batch = gr.Button("Analyse all", variant="primary", elem_id="batch-run")
                table = gr.HTML(elem_id="batch-table")
                csv_file = gr.File(label="Results (CSV)", interactive=False, elem_id="batch-csv")
        with gr.Accordion("Model card", open=False):
            card_md = gr.Markdown()
        # API-only plumbing: the /predict and /batch endpoints keep their documented outputs.
        with gr.Row(visible=False):
            api_predict = gr.Button("predict")
            api_verdict = gr.Textbox(label="Verdict")
            api_batch = gr.Button("batch")
            api_rows = gr.JSON(label="Rows")
            api_heatmaps = gr.Button("heatmaps")
            api_gallery = gr.Gallery(label="Heatmaps")
        page_error.render()

        # A new analysis closes the toasts of the last one (in the browser, before the server answers).
        for trigger in (image.upload, image.clear, examples.dataset.click, run_batch.click):
            trigger(None, js=CLOSE_TOASTS, **private)
        # upload (file, paste, drop) and example clicks, not change: clearing the input after a bad file
        # must not start another analysis.
        image.upload(analyze_page, inputs=[image, view], outputs=page.outputs, **private)
        image.clear(functools.partial(analyze_for_page, model, None), outputs=page.outputs, **private)
        page_error.change(None, inputs=[page_error, image], outputs=[image], js="(error, image) => error ? null : image",
                          **private)
        view.change(show_view, inputs=[view, maps], outputs=[overlay], show_progress="hidden", **private)
        api_predict.click(
            functools.partial(predict, model, overlay_component=overlay), inputs=[image],
            outputs=[probabilities, overlay, api_verdict, report], api_name="predict",
            api_description=(
                "Image file -> verdict label (real / ai_generated / uncertain) with the pixel model's confidences, "
                "Grad-CAM overlay (JPEG), verdict text, and the full evidence report as JSON."
            ),
        )
        api_heatmaps.click(
            functools.partial(heatmaps_api, model, overlay), inputs=[image], outputs=[api_gallery], api_name="heatmaps",
            api_description="Image file -> every Grad-CAM overlay (JPEG), captioned 'fused' then each branch's name.",
        )
        run_batch.click(functools.partial(batch_for_page, model, csv_file), inputs=[files], outputs=[table, csv_file],
                        concurrency_id="batch", concurrency_limit=1, **private)
        api_batch.click(
            functools.partial(batch_api, model, csv_file), inputs=[files], outputs=[api_rows, csv_file],
            api_name="batch",
            api_description=(
                f"Image files and/or .zip archives (at most {MAX_BATCH_FILES} images, {MAX_BATCH_BYTES // 2**20} MB) -> "
                "(rows: file, verdict, p_ai_generated, decided_by, reason, error; the same rows as a CSV file). "
                "A file that cannot be read is a row with 'error'."
            ),
            concurrency_id="batch", concurrency_limit=1,
        )

        def load_model_info():
            header = model.status()
            return header, model_card_markdown(model.loaded), gr.Radio(choices=view_choices(model.loaded))

        demo.load(load_model_info, outputs=[model_info, card_md, view], **private)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_max_size)
    busy_message_when_queue_full(demo)
    return demo


demo = build_demo()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes
    demo.launch(**LAUNCH_KWARGS)
