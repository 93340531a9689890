"""ConVitX web app: upload an image, get a verdict, the evidence behind it and a Grad-CAM heatmap.

Thin on purpose: decoding, the model, provenance, calibration and the fusion rules
all live in ``detector/``; this file only wires ``detector.analyze`` to a Gradio UI
and the API endpoints ``/predict``, ``/heatmaps`` and ``/batch``. It runs as a Hugging Face Space (module-level ``demo``) or with
``python app.py``. ``CONVITX_MODEL`` picks the checkpoint (default: ``weights/``);
Gradio itself reads ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""
from __future__ import annotations

import base64
import csv
import functools
import html
import io
import logging
import os
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
from huggingface_hub import constants as hf_constants
from PIL import Image, ImageOps

from detector import UNCERTAIN, Detector, ImageError, Prediction, Report, analyze, analyze_batch
from detector.evidence.c2pa_reader import chain_steps_markdown
from detector.fusion import C2PA_VERIFIED, PIXEL_MODEL, PROVENANCE
from detector.hub import MODEL_ENV_VAR, is_hub_ref, read_card, split_ref
from detector.report import DECIDED_BY
from detector.spectrum import spectrum_image

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
MAX_BATCH_FILES = 100  # images per batch, zip members included
MAX_BATCH_BYTES = 200 * 2**20  # all files of a batch together, zip members uncompressed
OUTPUT_JPEG_QUALITY = 85
OUTPUT_MAX_AGE_S = 3600  # heatmaps, spectra and CSVs are deleted from the cache after an hour
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
        steps = chain_steps_markdown(item.get("details") or {}) if item["source"] == "c2pa" else ""
        lines += [steps] if steps else []  # the C2PA chain as steps, like CAI's Verify page
    if report.get("conflicts"):
        lines += ["", "**Conflicts:**"] + [f"- {_escape(c)}" for c in report["conflicts"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- output files


def output_path(component: gr.components.Component, stem: str, suffix: str) -> str:
    """A fresh path inside Gradio's cache for one response's file.

    Gradio writes returned PIL/numpy images to a *content-hashed* cache path and
    rewrites that file in place, so two requests with the same image race: one
    truncates the file while the other is still sending it (h11 "Too little
    data for declared Content-Length"). A path that is already inside the cache
    is served as it is, so a unique name written once is never touched again.
    ``delete_cache`` on the Blocks removes them after OUTPUT_MAX_AGE_S.
    """
    folder = Path(component.GRADIO_CACHE) / "convitx"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{stem}-{uuid.uuid4().hex[:16]}{suffix}")


def save_jpeg(component: gr.components.Component, image: Image.Image, stem: str) -> str:
    """JPEG, written under a temporary name and renamed: a reader never sees half a file.

    JPEG rather than PNG: a 768 px heatmap overlay is ~60 KB instead of ~600 KB and
    encodes in a few ms instead of ~40 ms (benchmarks/bench_app.py measures it).
    """
    path = output_path(component, stem, ".jpg")
    staging = path + ".part"
    image.convert(image.mode if image.mode in ("RGB", "L") else "RGB").save(staging, "JPEG", quality=OUTPUT_JPEG_QUALITY)
    os.replace(staging, path)
    return path


# --------------------------------------------------------------------------- the verdict card

CARD_CLASSES = {"ai_generated": "verdict-ai", "real": "verdict-real", UNCERTAIN: "verdict-uncertain"}
EMPTY_CARD = '<div class="verdict-card verdict-empty" role="status"><div class="verdict-title">Upload an image to get a verdict</div></div>'


def _pct(p: float) -> str:
    """Whole percent, never a rounded 0% or 100% for a probability."""
    if p < 0.005:
        return "<1%"
    if p >= 0.995:
        return ">99%"
    return f"{round(p * 100)}%"


def decision_words(prediction: Prediction) -> str:
    """The decision rule in plain percentages: where the model says AI, real, or can't tell."""
    lo, hi = prediction.uncertain_band
    threshold = prediction.threshold
    if lo < hi:
        ai_from, real_below = max(threshold, hi), min(threshold, lo)
        return f"it says AI-generated from {_pct(ai_from)}, real at {_pct(real_below)} or less, and can't tell in between"
    return f"it says AI-generated from {_pct(threshold)}, real below"


def card_title(report: Report) -> str:
    """"Likely AI-generated — 87%", "Likely real", "Can't tell", or what the provenance says."""
    prediction = report.prediction
    if report.verdict == "ai_generated":
        what = "Partly AI-generated" if report.partly_ai else "AI-generated"
        if report.decided_by == C2PA_VERIFIED:
            return f"{what} — verified Content Credentials"
        if report.decided_by == PROVENANCE:
            return f"Likely {what} — the file's own metadata says so"
        return f"Likely {what} — {_pct(prediction.p_fake)}" if prediction is not None else f"Likely {what}"
    if report.verdict == "real":
        return "Likely real"
    return "Can't tell"


def card_reason(report: Report) -> str:
    """The report's reason in one plain line, numbers rounded to whole percent."""
    prediction = report.prediction
    if report.decided_by == PIXEL_MODEL and prediction is not None:
        return (f"The pixel model gives {_pct(prediction.p_fake)} for AI-generated; {decision_words(prediction)}. "
                "No AI provenance in the file.")
    reason = report.reason.split(": ", 1)[0] if report.decided_by == C2PA_VERIFIED else report.reason
    if prediction is not None and report.decided_by in (C2PA_VERIFIED, PROVENANCE):
        reason += f" The pixel model alone gives {_pct(prediction.p_fake)}."
    return reason


def verdict_card(report: Report) -> str:
    """HTML: a coloured card (class verdict-ai / -real / -uncertain), the title, the reason, any conflict."""
    css = CARD_CLASSES.get(report.verdict, "verdict-uncertain")
    conflict = "".join(f'<div class="verdict-conflict">Conflict: {_escape(c)}</div>' for c in report.conflicts)
    return (f'<div class="verdict-card {css}" role="status"><div class="verdict-title">{_escape(card_title(report))}</div>'
            f'<div class="verdict-reason">{_escape(card_reason(report))}</div>{conflict}</div>')


def error_card(title: str, message: str) -> str:
    return (f'<div class="verdict-card verdict-error" role="alert"><div class="verdict-title">{_escape(title)}</div>'
            f'<div class="verdict-reason">{message}</div></div>')


def _rounded(value, digits: int = 3):
    """The report as the page shows it: floats rounded (0.828, not 0.8279100060462952)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


BRANCH_NAMES = {"convnext": "ConvNeXt", "swin": "Swin"}
FUSED = "fused"


def view_choices(detector: Detector | None) -> list[tuple[str, str]]:
    """Heatmap toggle: the fused map, then one entry per branch, named from the model's config."""
    choices = [("Both branches (fused)", FUSED)]
    if detector is not None:
        for branch in detector.config.branches:
            where = "native-resolution tiles" if branch.view == "tiles" else "whole image"
            choices.append((f"{BRANCH_NAMES.get(branch.name, branch.name.title())} branch ({where})", branch.name))
    return choices


SPECTRUM_HELP = (
    "**How to read it:** the centre is the coarse structure, the edges the finest detail. A camera photo fades "
    "smoothly from a bright centre. Generators upsample, which repeats a pattern every few pixels and shows up as "
    "**bright isolated dots or lines on a regular grid** away from the centre. JPEG blocks and resizing can do the "
    "same, so treat it as a clue, not proof."
)


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
        message = _escape(_strip_dir(str(exc), image))
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

    A file that cannot be read puts the message in the card (and a toast) and sets the hidden error
    token, whose change clears the input in the browser, instead of leaving a broken-image icon
    next to an old verdict.
    """
    if image is None:
        return EMPTY_CARD, None, gr.Radio(), None, {}, None, "", None, ""
    try:
        report = _analyze(model, image)
    except gr.Error as exc:
        gr.Warning(exc.message, title=exc.title)
        return (error_card(exc.title or "Error", exc.message), None, gr.Radio(), None, {}, None, "", None,
                uuid.uuid4().hex)
    prediction = report.prediction
    confidences = {}
    maps: dict[str, str] = {}
    spectrum = None
    if prediction is not None:
        confidences = {DISPLAY_LABELS.get(k, k): v for k, v in prediction.probabilities.items()}
        maps[FUSED] = save_jpeg_for(model, prediction.overlay(), "heatmap")
        for name in prediction.branch_heatmaps:
            maps[name] = save_jpeg_for(model, prediction.overlay(branch=name), f"heatmap-{name}")
        spectrum = save_jpeg_for(model, spectrum_image(prediction.image), "spectrum")
    view = view if view in maps else FUSED
    return (
        verdict_card(report),
        {"label": DISPLAY_LABELS.get(report.verdict, report.verdict), "confidences": confidences},
        gr.Radio(choices=view_choices(model.loaded), value=view),
        maps.get(view),
        maps,
        spectrum,
        evidence_markdown(report.to_dict()),
        _rounded(report.to_dict()),
        "",
    )


def save_jpeg_for(model: LazyDetector, image: Image.Image, stem: str) -> str:
    return save_jpeg(model.cache_owner, image, stem)


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


class BatchLimitError(ValueError):
    pass


def expand_batch(files: list[str] | None) -> list:
    """Uploaded files -> image sources; a .zip contributes its members (read in memory, size-checked).

    Raises BatchLimitError past MAX_BATCH_FILES images or MAX_BATCH_BYTES in all. A zip that
    cannot be opened becomes one source that fails (an error row), not a failed batch.
    """
    sources: list = []
    total = 0
    for path in files or []:
        path = str(path)
        if zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [m for m in archive.infolist() if not m.is_dir() and not _hidden(m.filename)]
                    for member in members:
                        total += member.file_size
                        _check_limits(len(sources) + 1, total)
                        data = archive.read(member)  # CRC-checked; file_size was declared, limits already hold
                        if len(data) > member.file_size:
                            raise BatchLimitError("A zip member is larger than it declares: the zip is refused.")
                        source = io.BytesIO(data)
                        source.name = f"{Path(path).name}/{member.filename}"
                        sources.append(source)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                sources.append(_Unreadable(Path(path).name, f"{Path(path).name}: cannot open this zip ({exc})"))
            continue
        total += os.path.getsize(path)
        _check_limits(len(sources) + 1, total)
        sources.append(path)
    return sources


def _hidden(name: str) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in Path(name).parts)


def _check_limits(count: int, total: int) -> None:
    if count > MAX_BATCH_FILES:
        raise BatchLimitError(f"Too many images: at most {MAX_BATCH_FILES} per batch (zip members count). "
                              "Split the batch or use the command line (`convitx predict`).")
    if total > MAX_BATCH_BYTES:
        raise BatchLimitError(f"The batch is over {MAX_BATCH_BYTES // 2**20} MB in all (zip contents count). "
                              "Split it or use the command line (`convitx predict`).")


class _Unreadable(io.BytesIO):
    """A source that decodes as 'empty': carries the real reason into the batch's error row."""

    def __init__(self, name: str, reason: str):
        super().__init__(b"")
        self.name, self.reason = name, reason


BATCH_COLUMNS = ["file", "verdict", "p_ai_generated", "decided_by", "reason", "error"]


def batch_rows(model: LazyDetector, files: list[str] | None, progress: gr.Progress | None = None) -> tuple[list[dict], list]:
    """One row per image, in order, via detector.analyze_batch (its per-item error loop): a bad file is an
    error row and the batch goes on. Returns the rows and the sources (for thumbnails)."""
    try:
        sources = expand_batch(files)
    except BatchLimitError as exc:
        raise gr.Error(str(exc), title="Batch too large", print_exception=False) from None
    if not sources:
        raise gr.Error("Add some image files (or a .zip of images) first.", title="Nothing to analyse",
                       print_exception=False)
    detector = model.get()
    rows = []
    if progress is not None:
        progress((0, len(sources)), desc="Analysing", unit="images")
    for source, report in zip(sources, analyze_batch(sources, detector=detector, cam=False, batch_size=8)):
        name = _source_name(source)
        if report.error:
            error = source.reason if isinstance(source, _Unreadable) else _strip_dir(report.error, str(source))
            rows.append({"file": name, "verdict": "error", "p_ai_generated": None, "decided_by": None, "reason": "",
                         "error": error})
        else:
            prediction = report.prediction
            rows.append({"file": name, "verdict": report.verdict,
                         "p_ai_generated": round(prediction.p_fake, 4) if prediction is not None else None,
                         "decided_by": report.decided_by, "reason": report.reason, "error": None})
        if progress is not None:
            progress((len(rows), len(sources)), desc="Analysing", unit="images")
    return rows, sources


def _source_name(source) -> str:
    return getattr(source, "name", None) if not isinstance(source, str) else Path(source).name


def write_csv(component, rows: list[dict]) -> str:
    path = output_path(component, "convitx-results", ".csv")
    with open(path + ".part", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=BATCH_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    os.replace(path + ".part", path)
    return path


def batch_api(model: LazyDetector, csv_component, files: list[str] | None, progress=gr.Progress()):
    """API ``/batch``: files (images or .zip) -> (rows as JSON, CSV file)."""
    rows, _ = batch_rows(model, files, progress)
    return rows, write_csv(csv_component, rows)


def batch_for_page(model: LazyDetector, csv_component, files: list[str] | None, progress=gr.Progress()):
    """The page's batch: a table with thumbnails, verdict, p, decided-by; the CSV to download."""
    rows, sources = batch_rows(model, files, progress)
    return batch_table(rows, sources), write_csv(csv_component, rows)


def thumbnail(source, side: int = 72) -> str:
    """A small JPEG data URI (draft mode decodes a big JPEG at 1/8 scale); '' if it cannot be made."""
    try:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        with Image.open(source) as opened:
            opened.draft("RGB", (side * 2, side * 2))
            image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=70)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    except Exception:  # the row already says whether the image could be read; a thumbnail is decoration
        return ""


def batch_table(rows: list[dict], sources: list) -> str:
    counts = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    words = {"ai_generated": "likely AI-generated", "real": "likely real", UNCERTAIN: "can't tell", "error": "error"}
    summary = ", ".join(f"{n} {words.get(v, v)}" for v, n in counts.items())
    body = []
    for row, source in zip(rows, sources):
        css = "batch-error" if row["error"] else CARD_CLASSES.get(row["verdict"], "")
        thumb = thumbnail(source) if not row["error"] else ""
        image = f'<img src="{thumb}" alt="" class="batch-thumb">' if thumb else ""
        verdict = "Error" if row["error"] else {"ai_generated": "Likely AI-generated", "real": "Likely real"}.get(
            row["verdict"], "Can't tell")
        p = "" if row["p_ai_generated"] is None else _pct(row["p_ai_generated"])
        decided = _escape(row["error"]) if row["error"] else _escape(DECIDED_BY.get(row["decided_by"], row["decided_by"] or ""))
        body.append(f'<tr class="{css}"><td>{image}</td><td class="batch-file">{_escape(row["file"])}</td>'
                    f'<td class="batch-verdict">{verdict}</td><td>{p}</td><td>{decided}</td></tr>')
    return (f'<p class="batch-summary">{len(rows)} files: {_escape(summary)}</p>'
            '<div class="batch-scroll"><table class="batch-table"><thead><tr><th></th><th>File</th><th>Verdict</th>'
            '<th>p (AI)</th><th>Decided by / error</th></tr></thead><tbody>' + "".join(body) + "</tbody></table></div>")


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


APP_CSS = """
.verdict-card { border-radius: 12px; padding: 14px 18px; border-left: 10px solid #9aa0a6; background: #f1f3f4; color: #202124; }
.verdict-card .verdict-title { font-size: 1.45rem; font-weight: 700; line-height: 1.25; }
.verdict-card .verdict-reason { margin-top: 6px; font-size: 0.98rem; }
.verdict-card .verdict-conflict { margin-top: 6px; font-size: 0.9rem; font-style: italic; }
.verdict-ai { background: #fdecea; border-left-color: #d93025; color: #5c1410; }
.verdict-real { background: #e6f4ea; border-left-color: #188038; color: #0d3d1c; }
.verdict-uncertain { background: #fef7e0; border-left-color: #f29900; color: #4d3500; }
.verdict-error { background: #f1f3f4; border-left-color: #5f6368; color: #202124; }
.batch-scroll { overflow-x: auto; }
.batch-table { width: 100%; border-collapse: collapse; font-size: 0.92rem; }
.batch-table td, .batch-table th { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
.batch-table tr.verdict-ai td.batch-verdict { color: #b3261e; font-weight: 600; }
.batch-table tr.verdict-real td.batch-verdict { color: #146c2e; font-weight: 600; }
.batch-table tr.verdict-uncertain td.batch-verdict { color: #8a5a00; font-weight: 600; }
.batch-table tr.batch-error td { color: #5f6368; }
.batch-thumb { max-width: 72px; max-height: 72px; border-radius: 4px; }
.batch-file { word-break: break-all; }
@media (max-width: 480px) { .verdict-card .verdict-title { font-size: 1.25rem; } }
"""
# What `python app.py` passes to launch(); tests launch with the same. show_error=False
# hides unexpected exceptions from users; gr.Error messages are always shown.
LAUNCH_KWARGS = dict(max_file_size=MAX_FILE_SIZE, show_error=False, css=APP_CSS)
BUSY_MESSAGE = "The server is busy: too many requests are waiting. Please retry in a few seconds."


def busy_message_when_queue_full(demo: gr.Blocks) -> None:
    """A full queue answers HTTP 503 with a plain 'busy, retry' message instead of Gradio's internal sizes.

    Wraps the queue's push (no public hook exists in Gradio 6); if Gradio changes it, its own message stays.
    """
    queue = getattr(demo, "_queue", None)
    push = getattr(queue, "push", None)
    if push is None:
        return

    async def push_with_message(*args, **kwargs):
        ok, message, state = await push(*args, **kwargs)
        return ok, (BUSY_MESSAGE if state == "queue_full" else message), state

    queue.push = push_with_message


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

    with gr.Blocks(title="ConVitX: AI-generated image detector", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(
            "# ConVitX: AI-generated or real?\n"
            "Drop, paste or upload an image. You get a verdict, the evidence behind it, where the model looked, "
            "and the image's frequency spectrum."
        )
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
                        gr.Examples(
                            examples=[[str(APP_DIR / "examples" / name)] for name, _ in EXAMPLES],
                            example_labels=[label for _, label in EXAMPLES],
                            inputs=[image],
                            outputs=page.outputs,
                            fn=analyze_page,
                            run_on_click=True,
                            cache_examples=False,
                            label="Examples (synthetic scenes: they show the app, not its accuracy)",
                            api_visibility="private",
                        )
                    with gr.Column(min_width=300):
                        card.render()
                        probabilities.render()
                        view.render()
                        overlay.render()
                        evidence.render()
                with gr.Accordion("Frequency spectrum", open=True, elem_id="spectrum-panel"):
                    with gr.Row(equal_height=False):
                        with gr.Column(min_width=300):
                            spectrum.render()
                        with gr.Column(min_width=300):
                            gr.Markdown(SPECTRUM_HELP, elem_id="spectrum-help")
                gr.Markdown(
                    "A detector's score is evidence, not proof: resizing, compression, screenshots and generators it "
                    "never saw all move it. Inside its uncertain zone the app says it can't tell. Provenance found in "
                    "the file itself (C2PA Content Credentials, AI metadata, a generator's watermark) decides the "
                    "verdict when present; finding none is normal and never counts towards 'real'."
                )
                with gr.Accordion("Report (JSON)", open=False):
                    report.render()
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                gr.Markdown(
                    f"Several images, or a .zip of them: up to **{MAX_BATCH_FILES} images** and "
                    f"**{MAX_BATCH_BYTES // 2**20} MB in all** (zip contents count), {MAX_FILE_SIZE.upper()} per file. "
                    "No heatmaps here. A file that cannot be read becomes an error row; the rest go on."
                )
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

        # upload (file, paste, drop) and example clicks, not change: clearing the input after a bad file
        # must not start another analysis.
        image.upload(analyze_page, inputs=[image, view], outputs=page.outputs, api_visibility="private")
        image.clear(functools.partial(analyze_for_page, model, None), outputs=page.outputs, api_visibility="private")
        page_error.change(None, inputs=[page_error, image], outputs=[image], js="(error, image) => error ? null : image",
                          api_visibility="private")
        view.change(show_view, inputs=[view, maps], outputs=[overlay], api_visibility="private", show_progress="hidden")
        api_predict.click(
            functools.partial(predict, model, overlay_component=overlay),
            inputs=[image],
            outputs=[probabilities, overlay, api_verdict, report],
            api_name="predict",
            api_description=(
                "Image file -> verdict label (real / ai_generated / uncertain) with the pixel model's confidences, "
                "Grad-CAM overlay (JPEG), verdict text, and the full evidence report as JSON."
            ),
        )
        api_heatmaps.click(
            functools.partial(heatmaps_api, model, overlay),
            inputs=[image],
            outputs=[api_gallery],
            api_name="heatmaps",
            api_description="Image file -> every Grad-CAM overlay (JPEG), captioned 'fused' then each branch's name.",
        )
        run_batch.click(functools.partial(batch_for_page, model, csv_file), inputs=[files], outputs=[table, csv_file],
                        api_visibility="private", concurrency_id="batch", concurrency_limit=1)
        api_batch.click(
            functools.partial(batch_api, model, csv_file),
            inputs=[files],
            outputs=[api_rows, csv_file],
            api_name="batch",
            api_description=(
                f"Image files and/or .zip archives (at most {MAX_BATCH_FILES} images, {MAX_BATCH_BYTES // 2**20} MB) -> "
                "(rows: file, verdict, p_ai_generated, decided_by, reason, error; the same rows as a CSV file). "
                "A file that cannot be read is a row with 'error'."
            ),
            concurrency_id="batch",
            concurrency_limit=1,
        )

        def load_model_info():
            header = model.status()
            detector = model.loaded
            text = model_card_markdown(detector) if detector is not None else "No model is loaded."
            return header, text, gr.Radio(choices=view_choices(detector))

        demo.load(load_model_info, outputs=[model_info, card_md, view], api_visibility="private")
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_max_size)
    busy_message_when_queue_full(demo)
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
