"""What the image-condition check costs on the shared test splits (issue 14, item 4).

    python benchmarks/condition_effect.py [--model weights] [--limit N] [--cifake 2000] [--data ../shared/data]

For every source's test split (CIFAKE sampled to 2000), runs ``detector.condition.check_condition``
on the file's bytes and, with a model, the pixel model on the same decoded image. Prints per source:
how many images the check flags (any finding), how many it calls degraded, and how many of the
model's *correct confident* verdicts (right label, outside the uncertain band) the degraded rule
would turn into "Can't tell", next to how many wrong confident verdicts it would withdraw. Also the
check's p50 time. ``--model none`` measures the check alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from detector import CannotJudgeError, ImageError, decode  # noqa: E402
from detector.condition import check_condition  # noqa: E402


def rows(path: Path, limit: int | None, cifake: int, seed: int = 0) -> list[dict]:
    table = pq.read_table(path, columns=["image", "label", "split"])
    test = [r for r in table.to_pylist() if r["split"] == "test"]
    cap = cifake if path.stem == "cifake" else None
    cap = min(x for x in (cap, limit) if x is not None) if (cap or limit) else None
    if cap is not None and len(test) > cap:
        picks = np.random.default_rng(seed).choice(len(test), cap, replace=False)
        test = [test[i] for i in sorted(picks)]
    return test


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="weights", help="checkpoint folder or Hub id; 'none' for the check alone")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many test images per source")
    parser.add_argument("--cifake", type=int, default=2000, help="CIFAKE test images to sample")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    detector = None
    if args.model.lower() != "none":
        from detector import Detector

        detector = Detector.from_pretrained(args.model)
    files = sorted(Path(args.data).glob("*.parquet"))
    if not files:
        print(f"no parquet files under {args.data}", file=sys.stderr)
        return 2
    header = f"{'source':28s} {'n':>5s} {'flagged':>7s} {'degraded':>8s}"
    if detector is not None:
        header += f" {'conf.right':>10s} {'hidden':>6s} {'conf.wrong':>10s} {'withdrawn':>9s}"
    print(header + "  findings")
    totals, times = Counter(), []
    for path in files:
        counts, codes = Counter(), Counter()
        batch = []
        for row in rows(path, args.limit, args.cifake):
            try:
                item = decode(row["image"]["bytes"])
            except ImageError:
                counts["unreadable"] += 1
                continue
            start = time.perf_counter()
            condition = check_condition(item.image, item.data, item.format)
            times.append(time.perf_counter() - start)
            counts["n"] += 1
            counts["flagged"] += bool(condition.findings)
            counts["degraded"] += condition.degraded
            codes.update(condition.codes)
            if detector is not None:
                batch.append((item, condition, row["label"]))
                if len(batch) >= args.batch_size:
                    _judge(detector, batch, counts)
                    batch.clear()
        if detector is not None and batch:
            _judge(detector, batch, counts)
        totals.update(counts)
        line = f"{path.stem:28s} {counts['n']:5d} {counts['flagged']:7d} {counts['degraded']:8d}"
        if detector is not None:
            line += f" {counts['right']:10d} {counts['hidden']:6d} {counts['wrong']:10d} {counts['withdrawn']:9d}"
        print(line + "  " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())), flush=True)
    line = f"{'total':28s} {totals['n']:5d} {totals['flagged']:7d} {totals['degraded']:8d}"
    if detector is not None:
        line += f" {totals['right']:10d} {totals['hidden']:6d} {totals['wrong']:10d} {totals['withdrawn']:9d}"
    print(line)
    if detector is not None and totals["right"]:
        print(f"correct confident verdicts turned into Can't tell: {totals['hidden']} of {totals['right']} "
              f"({100 * totals['hidden'] / totals['right']:.2f}%); wrong confident ones withdrawn: "
              f"{totals['withdrawn']} of {totals['wrong']}")
    if times:
        print(f"check time: p50 {1000 * statistics.median(times):.1f} ms, max {1000 * max(times):.1f} ms")
    return 0


def _judge(detector, batch, counts: Counter) -> None:
    """The model on the batch (images it cannot judge skipped): count confident right/wrong, and what the rule hides."""
    judged = []
    for item, condition, label in batch:
        try:
            detector.check_judgeable(item.image)
            judged.append((item, condition, label))
        except CannotJudgeError:
            counts["cannot_judge"] += 1
    if not judged:
        return
    predictions = detector.predict_decoded([item.image for item, _, _ in judged], cam=False)
    for (_, condition, label), prediction in zip(judged, predictions):
        if prediction.label == "uncertain":
            continue
        right = (prediction.label == "ai_generated") == (label == "fake")
        counts["right" if right else "wrong"] += 1
        if condition.degraded:
            counts["hidden" if right else "withdrawn"] += 1


if __name__ == "__main__":
    sys.exit(main())
