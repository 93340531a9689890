"""``convitx predict PATH...`` (or ``python -m detector predict``): batch verdicts as JSONL or CSV.

Each row is a ``detector.report.Report``: the verdict (``label``), what decided it
(``decided_by``, ``reason``), the pixel model's numbers and the evidence list.
A file that fails becomes an ``{"path", "error"}`` row and the run goes on;
the exit status is 1 if any file failed, 2 if the model could not be loaded.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .hub import MODEL_ENV_VAR, ModelLoadError, default_model_ref
from .report import analyze_batch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
CSV_FIELDS = [
    "path", "label", "partly_ai", "decided_by", "p_fake", "model_label", "p_real", "threshold", "evidence", "heatmap", "error",
]


def iter_inputs(paths: list[str]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image suffixes, in sorted order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def build_parser() -> argparse.ArgumentParser:
    # `convitx` when run as the console script, `python -m detector` otherwise
    prog = "python -m detector" if sys.argv[0].endswith("__main__.py") else Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="predict real vs AI-generated for files and folders")
    predict.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    predict.add_argument("--model", default=None, help=f"local folder or hf-hub:org/name[@revision] (default: ${MODEL_ENV_VAR}, else the embedded weights)")
    predict.add_argument("--threshold", type=float, default=None, help="override the checkpoint's decision threshold")
    predict.add_argument("--no-cam", action="store_true", help="skip Grad-CAM (faster)")
    predict.add_argument("--cam-dir", default=None, help="write heatmap overlays here as PNG")
    predict.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    predict.add_argument("--batch-size", type=int, default=16)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .inference import Detector  # after argparse so --help is instant

    try:
        detector = Detector.from_pretrained(args.model or default_model_ref(), threshold=args.threshold)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    cam = not args.no_cam
    cam_dir = Path(args.cam_dir) if args.cam_dir and cam else None
    if cam_dir:
        cam_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(args.format, sys.stdout)
    files = list(iter_inputs(args.paths))
    failures = 0
    progress = tqdm(files, desc="predict", unit="img", file=sys.stderr, disable=None)
    for report in analyze_batch(progress, detector=detector, cam=cam, batch_size=args.batch_size):
        if report.error:
            failures += 1
            writer.write({"path": report.path, "error": report.error})
            continue
        row = report_row(report)
        if cam_dir and report.prediction is not None:
            target = cam_dir / f"{len(writer.seen):05d}_{Path(report.path).stem}.png"
            report.overlay().save(target)
            row["heatmap"] = str(target)
        writer.write(row)
    if not files:
        print("error: no image files found", file=sys.stderr)
        return 1
    return 1 if failures else 0


def report_row(report) -> dict:
    """One output row: the verdict first (``label``), then the model's numbers, then the evidence."""
    data = report.to_dict()
    model = data.pop("model") or {}
    row = {"path": report.path, "label": data["verdict"], "partly_ai": data["partly_ai"],
           "decided_by": data["decided_by"], "reason": data["reason"]}
    row.update({k: model.get(k) for k in ("p_fake", "probabilities", "threshold", "uncertain_band")})
    row["model_label"] = model.get("label")
    row.update(evidence=data["evidence"], conflicts=data["conflicts"], format=data["format"])
    return row


def compact_evidence(evidence: list[dict]) -> str:
    """CSV's evidence column: ``source:signal/strength`` per item, ``;``-separated (full detail is in JSONL)."""
    return "; ".join(f"{e['source']}:{e['signal']}/{e['strength']}" for e in evidence)


class _Writer:
    def __init__(self, fmt: str, stream):
        self.fmt, self.stream, self.seen = fmt, stream, []
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore")
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        self.seen.append(row["path"])
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(row) + "\n")
        else:
            probabilities = row.get("probabilities", {})
            extra = {"p_real": (probabilities or {}).get("real", ""), "evidence": compact_evidence(row.get("evidence", []))}
            self.csv.writerow({**row, **extra})
        self.stream.flush()
