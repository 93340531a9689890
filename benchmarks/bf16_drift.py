"""What running the frozen encoder in bfloat16 costs in accuracy: the same images through the same checkpoint with
the encoder in bf16 and in fp32, AUC of each and the largest change of p(AI-generated).

    python benchmarks/bf16_drift.py --model weights --per-source 40

Uses the shared test splits (clean images, at most ``--per-source`` per source, CIFAKE included).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from detector import Detector
from detector.model import TokenBranch, bf16_is_native


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="weights")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--per-source", type=int, default=40)
    args = parser.parse_args()
    images, labels = [], []
    for file in sorted(Path(args.data).glob("*.parquet")):
        table = pq.read_table(file, columns=["image", "label", "split"]).to_pylist()
        rows = [r for r in table if r["split"] == "test"][: args.per_source]
        images += [Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB") for r in rows]
        labels += [int(r["label"] == "fake") for r in rows]
    detector = Detector.from_pretrained(args.model, device="cpu")
    encoders = [b for b in detector.model.branches.values() if isinstance(b, TokenBranch)]
    print(f"{len(images)} test images; native bf16 on this CPU: {bf16_is_native()}; "
          f"encoder dtype {encoders[0].backbone.cls_token.dtype}")
    scores = {}
    for precision in ("as loaded", "fp32"):
        if precision == "fp32":
            for branch in encoders:
                branch.low_precision = False
                branch.backbone.float()
        scores[precision] = np.array([p.p_fake for p in detector.predict_batch(images, cam=False)])
        print(f"{precision:9s}: AUC {roc_auc_score(labels, scores[precision]):.4f}")
    delta = np.abs(scores["as loaded"] - scores["fp32"])
    print(f"|p(bf16) - p(fp32)|: max {delta.max():.4f}, mean {delta.mean():.4f}; "
          f"AUC drift {roc_auc_score(labels, scores['as loaded']) - roc_auc_score(labels, scores['fp32']):+.4f}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
