"""Inference speed and memory, printed as numbers and as ratios within one run.

    python benchmarks/bench_inference.py [--model weights|convitx_large|...] [--repeats 20]

``--model`` takes a checkpoint folder / Hub id, or a registry name (random weights: speed only).
Needs the project installed (``pip install -e .``, as tests/run.sh does): it imports ``detector``.
Ratios (Grad-CAM vs plain, batched vs one at a time) are what to compare across
machines; absolute times on a shared 2-core box are noisy.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch
from PIL import Image

from detector import Detector, create_model, list_models


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--skip-batch", action="store_true", help="only CAM vs plain (for big models on small machines)")
    args = parser.parse_args()

    if args.model in list_models():
        detector = Detector(create_model(args.model).eval(), device="cpu")
    else:
        detector = Detector.from_pretrained(args.model, device="cpu")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8))
    batch = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(args.batch)]

    print(f"model {detector.config.name} ({sum(p.numel() for p in detector.model.parameters()) / 1e6:.2f} M params), "
          f"torch threads {torch.get_num_threads()}")
    plain = timed(lambda: detector.predict(photo, cam=False), args.repeats)
    cam = timed(lambda: detector.predict(photo, cam=True), args.repeats)
    if not args.skip_batch:
        one_by_one = timed(lambda: [detector.predict(img, cam=False) for img in batch], max(3, args.repeats // 5))
        batched = timed(lambda: detector.predict_batch(batch, cam=False), max(3, args.repeats // 5))
    tiles = detector.predict(photo, cam=False).tiles
    print(f"predict 1024x768, no CAM : {plain * 1000:8.1f} ms   ({tiles} tiles of {detector.config.preprocess.tile_size} px)")
    print(f"predict 1024x768, CAM    : {cam * 1000:8.1f} ms   (CAM / plain = {cam / plain:.2f}x; fused + "
          f"{len(detector.config.branches)} branch heatmaps)")
    if not args.skip_batch:
        print(f"{args.batch} images one by one   : {one_by_one * 1000:8.1f} ms")
        print(f"{args.batch} images batched      : {batched * 1000:8.1f} ms   (speed-up = {one_by_one / batched:.2f}x, "
              f"{args.batch / batched:.0f} images/s)")
    print(f"peak RSS                 : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")


if __name__ == "__main__":
    main()
