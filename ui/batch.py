"""The batch tab: uploaded files (and zips) to image sources within limits, one row per image, the table."""
from __future__ import annotations

import base64
import io
import os
import zipfile
from pathlib import Path

import gradio as gr
from PIL import Image, ImageOps

from detector import UNCERTAIN, DecisionRule, analyze_batch
from detector.config import percent
from detector.report import DECIDED_BY

from .model import strip_dir
from .verdict import CARD_CLASSES, escape

MAX_BATCH_FILES = 100  # images per batch, zip members included
MAX_BATCH_BYTES = 200 * 2**20  # all files of a batch together, zip members uncompressed
BATCH_COLUMNS = ["file", "verdict", "p_ai_generated", "decided_by", "reason", "error"]


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


def batch_rows(model, files: list[str] | None, progress: gr.Progress | None = None) -> tuple[list[dict], list]:
    """One row per image, in order, via detector.analyze_batch (its per-item error loop): a bad file is an
    error row and the batch goes on. ``model``: the app's LazyDetector. Returns the rows and the sources
    (for thumbnails). Raises gr.Error for a batch that is empty or over its limits."""
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
            error = source.reason if isinstance(source, _Unreadable) else strip_dir(report.error, str(source))
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


def batch_table(rows: list[dict], sources: list, rule: DecisionRule | None = None) -> str:
    """HTML: a summary line, then a row per file (thumbnail, name, verdict, p, decided by / error).

    ``rule``: the model's decision rule, so that each p reads as the rule it was judged by says.
    """
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
        p = row["p_ai_generated"]
        p = "" if p is None else rule.percent(p) if rule is not None else percent(p)
        decided = escape(row["error"]) if row["error"] else escape(DECIDED_BY.get(row["decided_by"], row["decided_by"] or ""))
        body.append(f'<tr class="{css}"><td>{image}</td><td class="batch-file">{escape(row["file"])}</td>'
                    f'<td class="batch-verdict">{verdict}</td><td>{p}</td><td>{decided}</td></tr>')
    return (f'<p class="batch-summary">{len(rows)} files: {escape(summary)}</p>'
            '<div class="batch-scroll"><table class="batch-table"><thead><tr><th></th><th>File</th><th>Verdict</th>'
            '<th>p (AI)</th><th>Decided by / error</th></tr></thead><tbody>' + "".join(body) + "</tbody></table></div>")
