"""``python -m train cache-features``: run every frozen branch once per image and variant, keep what it saw.

A frozen encoder gives the same output for the same pixels every epoch, so it
runs once: each training image, in a few variants that both classes get alike
(clean, JPEG at several qualities, a 0.5x-ish resize, a crop, and the native-
resolution centre crop where the data has one), goes through the model's own
views and frozen branches, and the per-image features (``ConVitX.pooled_features``:
per-block token summaries, pooled map vectors) are written to disk as fp16
safetensors chunks with a JSON index. ``fit-head`` then trains the readout and
the fused head from them in minutes. Test images are cached in the variants the
robustness table needs (clean, JPEG q75, 0.5x resize).

Chunks land atomically and are skipped when present, so an interrupted run
resumes where it stopped; a run with other settings refuses to mix with them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import safetensors.torch
import torch
from PIL import Image

from detector.hub import load_referenced_encoders, load_trained_weights
from detector.images import ImageError, load_image
from detector.model import ConVitX, create_model
from detector.transforms import collate_views, image_to_views

from .data import parse_label

TRAIN_VARIANTS = ("clean", "jpeg", "resize", "crop", "native")
TEST_VARIANTS = ("clean", "jpeg75", "resize50", "native")
MIN_SIDE = 16


@dataclass
class CacheConfig:
    model: str = "convitx_small_dino"
    data: str = "../shared/data"
    out: str = "runs/features"
    init_from: str | None = None  # a ConVitX checkpoint folder whose branches of the same name are copied in
    sources: list[str] | None = None
    train_variants: list[str] = field(default_factory=lambda: list(TRAIN_VARIANTS))
    test_variants: list[str] = field(default_factory=lambda: list(TEST_VARIANTS))
    cifake_train: int = 3000  # CIFAKE is 90% of the images: a balanced sample keeps the cache affordable
    cifake_test: int = 2000
    chunk_size: int = 128
    seed: int = 0


@dataclass
class Item:
    row: int  # index into the loaded rows
    variant: str


def _read_rows(config: CacheConfig) -> list[dict]:
    """Every row of the Parquet files, with the native crop where there is one; CIFAKE sampled, balanced."""
    rows = []
    for file in sorted(Path(config.data).glob("*.parquet")):
        if config.sources and file.stem not in config.sources:
            continue
        table = pq.read_table(file)
        columns = set(table.column_names)
        data = {name: table.column(name).to_pylist() for name in ("image", "label", "source", "generator", "split") if name in columns}
        natives = table.column("native_crop").to_pylist() if "native_crop" in columns else [None] * table.num_rows
        picked = []
        for i in range(table.num_rows):
            image = data["image"][i]
            native = natives[i]
            picked.append({
                "image": image["bytes"] if isinstance(image, dict) else image,
                "native": (native or {}).get("bytes") if isinstance(native, dict) else native,
                "label": parse_label(data["label"][i]),
                "source": data.get("source", [file.stem] * table.num_rows)[i] or file.stem,
                "generator": (data.get("generator") or [""] * table.num_rows)[i] or "",
                "split": (data.get("split") or ["train"] * table.num_rows)[i] or "train",
            })
        if file.stem == "cifake":
            picked = _balanced_sample(picked, {"train": config.cifake_train, "test": config.cifake_test}, config.seed)
        rows.extend(picked)
    for row in rows:
        row["key"] = hashlib.sha1(row["image"]).hexdigest()
    return rows


def _balanced_sample(rows: list[dict], per_split: dict[str, int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    kept = []
    for split, total in per_split.items():
        for label in (0, 1):
            group = [r for r in rows if r["split"] == split and r["label"] == label]
            kept.extend(rng.sample(group, min(len(group), total // 2)))
    return kept


def plan(rows: list[dict], config: CacheConfig) -> list[Item]:
    """Clean images first, then the native crops, the test split's degraded copies, the training variants:
    a cache cut short (chunks are written in this order) still has every image once and the robustness test."""
    order = ["clean", "native", *config.test_variants, *config.train_variants]
    items = []
    for variant in dict.fromkeys(order):
        for index, row in enumerate(rows):
            variants = config.train_variants if row["split"] == "train" else config.test_variants
            if variant in variants and (variant != "native" or row["native"]):
                items.append(Item(index, variant))
    return items


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _resize(image: Image.Image, scale: float) -> Image.Image:
    size = (max(MIN_SIDE, round(image.width * scale)), max(MIN_SIDE, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def variant_image(row: dict, variant: str, rng: random.Random) -> Image.Image:
    """One variant of a row's image; the same operations for both classes (no class shortcut to learn)."""
    if variant == "native":
        return load_image(row["native"])
    image = load_image(row["image"])
    if variant == "clean":
        return image
    if variant == "jpeg":
        return _jpeg(image, rng.choice((50, 65, 75, 90)))
    if variant == "jpeg75":
        return _jpeg(image, 75)
    if variant == "resize":
        return _resize(image, rng.uniform(0.4, 0.8))
    if variant == "resize50":
        return _resize(image, 0.5)
    if variant == "crop":
        keep = rng.uniform(0.5, 0.9)
        width, height = max(MIN_SIDE, round(image.width * keep)), max(MIN_SIDE, round(image.height * keep))
        left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
        return image.crop((left, top, left + width, top + height))
    raise ValueError(f"unknown variant {variant!r}")


def build_frozen_model(name: str, init_from: str | None) -> ConVitX:
    """The registry model with its referenced encoders loaded and, from ``init_from``, every branch of the
    same name; refuses a model with a branch that would still train (its features would go stale)."""
    model = create_model(name)
    load_referenced_encoders(model)
    if init_from:
        source_state = safetensors.torch.load_file(str(Path(init_from) / "model.safetensors"))
        for branch in model.config.branches:
            if branch.weights:
                continue
            prefix = f"branches.{branch.name}."
            state = {k[len(prefix):]: v for k, v in source_state.items() if k.startswith(prefix)}
            if not state:
                raise SystemExit(f"{init_from} has no branch {branch.name!r} to initialise from")
            model.branches[branch.name].load_state_dict(state, strict=True)
    thawed = [b.name for b in model.config.branches if not b.frozen]
    if thawed and not init_from:
        raise SystemExit(f"branches {thawed} are not frozen: cache features only of frozen branches (or --init-from a checkpoint)")
    return model.eval()


@torch.inference_mode()
def cache_features(config: CacheConfig) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "cache_config.json"
    if settings.is_file() and {**json.loads(settings.read_text()), "out": config.out} != asdict(config):
        raise SystemExit(f"{out} holds a cache made with other settings ({settings}); use another --out")
    settings.write_text(json.dumps(asdict(config), indent=2) + "\n")
    model = build_frozen_model(config.model, config.init_from)
    rows = _read_rows(config)
    items = plan(rows, config)
    chunks = [items[i : i + config.chunk_size] for i in range(0, len(items), config.chunk_size)]
    print(f"{len(rows)} images, {len(items)} image-variants, {len(chunks)} chunks -> {out}", file=sys.stderr)
    started, done = time.time(), 0
    for number, chunk in enumerate(chunks):
        tensors_path, index_path = out / f"chunk-{number:05d}.safetensors", out / f"chunk-{number:05d}.json"
        if tensors_path.is_file() and index_path.is_file():
            continue
        images, entries = [], []
        for item in chunk:
            row = rows[item.row]
            rng = random.Random(f"{config.seed}:{row['key']}:{item.variant}")
            try:
                image = variant_image(row, item.variant, rng)
            except ImageError:
                continue
            if min(image.size) < MIN_SIDE:
                continue
            images.append(image)
            entries.append({"key": row["key"], "source": row["source"], "label": row["label"], "split": row["split"],
                            "generator": row["generator"], "variant": item.variant, "size": list(image.size)})
        if not images:
            _atomic_save({}, [], tensors_path, index_path)
            continue
        views = [image_to_views(image, model.config.preprocess, check=False) for image in images]
        tiles, owner, global_view = collate_views(views)
        pooled = model.pooled_features(model.forward_features(tiles, global_view), owner, len(views))
        tensors = {name: value.to(torch.float16).contiguous() for name, value in pooled.items()}
        _atomic_save(tensors, entries, tensors_path, index_path)
        done += len(chunk)
        rate = done / (time.time() - started)
        print(f"chunk {number + 1}/{len(chunks)}: {rate:.1f} image-variants/s, "
              f"~{(len(items) - number * config.chunk_size) / max(rate, 1e-6) / 60:.0f} min left", file=sys.stderr, flush=True)
    return out


def _atomic_save(tensors: dict, entries: list[dict], tensors_path: Path, index_path: Path) -> None:
    tmp = tensors_path.with_suffix(".tmp")
    safetensors.torch.save_file(tensors, str(tmp))
    os.replace(tmp, tensors_path)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries))
    os.replace(tmp, index_path)


@dataclass
class FeatureSet:
    """The cache in memory: per-branch feature tensors (N, ...) and one index entry per row."""

    features: dict[str, torch.Tensor]
    entries: list[dict]

    def select(self, mask) -> "FeatureSet":
        index = torch.as_tensor(np.flatnonzero(np.asarray(mask)))
        return FeatureSet({k: v[index] for k, v in self.features.items()}, [self.entries[i] for i in index.tolist()])

    def column(self, name: str) -> np.ndarray:
        return np.array([e[name] for e in self.entries])

    @property
    def labels(self) -> np.ndarray:
        return self.column("label").astype(int)

    def __len__(self) -> int:
        return len(self.entries)


def load_features(folder: str | Path) -> FeatureSet:
    folder = Path(folder)
    parts: dict[str, list[torch.Tensor]] = {}
    entries: list[dict] = []
    for tensors_path in sorted(folder.glob("chunk-*.safetensors")):
        index_path = tensors_path.with_suffix(".json")
        if not index_path.is_file():
            continue
        for name, value in safetensors.torch.load_file(str(tensors_path)).items():
            parts.setdefault(name, []).append(value)
        entries.extend(json.loads(index_path.read_text()))
    if not entries:
        raise SystemExit(f"no cached features in {folder}: run `python -m train cache-features --out {folder}` first")
    return FeatureSet({k: torch.cat(v) for k, v in parts.items()}, entries)
