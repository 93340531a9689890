"""Files the app hands out (heatmaps, spectra, CSVs): unique names in Gradio's cache, written once."""
from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path

import gradio as gr
from PIL import Image

OUTPUT_JPEG_QUALITY = 85


def output_path(component: gr.components.Component, stem: str, suffix: str) -> str:
    """A fresh path inside Gradio's cache for one response's file.

    Gradio writes returned PIL/numpy images to a *content-hashed* cache path and
    rewrites that file in place, so two requests with the same image race: one
    truncates the file while the other is still sending it (h11 "Too little
    data for declared Content-Length"). A path that is already inside the cache
    is served as it is, so a unique name written once is never touched again.
    ``delete_cache`` on the Blocks removes them after an hour.
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


def write_csv(component: gr.components.Component, rows: list[dict], columns: list[str]) -> str:
    """The batch's rows as a CSV download (None written as an empty cell)."""
    path = output_path(component, "convitx-results", ".csv")
    with open(path + ".part", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    os.replace(path + ".part", path)
    return path
