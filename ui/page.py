"""The page's fixed texts, the heatmap toggle's choices and the CSS."""
from __future__ import annotations

from detector import Detector

INTRO = (
    "# ConVitX: AI-generated or real?\n"
    "Drop, paste or upload an image. You get a verdict, the evidence behind it, where the model looked, "
    "and the image's frequency spectrum."
)
EXAMPLES = (
    ("landscape.jpg", "Landscape (synthetic)"),
    ("still_life.png", "Still life (synthetic render)"),
    ("city_night.jpg", "City at night (synthetic, wide)"),
)
EXAMPLES_LABEL = "Examples (synthetic scenes: they show the app, not its accuracy)"
CAVEAT = (
    "A detector's score is evidence, not proof: resizing, compression, screenshots and generators it "
    "never saw all move it. Inside its uncertain zone the app says it can't tell. Provenance found in "
    "the file itself (C2PA Content Credentials, AI metadata, a generator's watermark) decides the "
    "verdict when present; finding none is normal and never counts towards 'real'."
)
SPECTRUM_HELP = (
    "**How to read it:** the centre is the coarse structure, the edges the finest detail. A camera photo fades "
    "smoothly from a bright centre. Generators upsample, which repeats a pattern every few pixels and shows up as "
    "**bright isolated dots or lines on a regular grid** away from the centre. JPEG blocks and resizing can do the "
    "same, so treat it as a clue, not proof."
)


def batch_help(max_files: int, max_bytes: int, max_file_size: str) -> str:
    return (f"Several images, or a .zip of them: up to **{max_files} images** and **{max_bytes // 2**20} MB in all** "
            f"(zip contents count), {max_file_size.upper()} per file. "
            "No heatmaps here. A file that cannot be read becomes an error row; the rest go on.")


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


APP_CSS = """
.verdict-card { border-radius: 12px; padding: 14px 18px; border-left: 10px solid #9aa0a6; background: #f1f3f4; color: #202124; }
.verdict-card .verdict-title { font-size: 1.45rem; font-weight: 700; line-height: 1.25; }
.verdict-card .verdict-reason { margin-top: 6px; font-size: 0.98rem; }
.verdict-card .verdict-note { margin-top: 6px; font-size: 0.95rem; }
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
