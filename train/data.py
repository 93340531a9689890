"""Labelled images from Parquet, an image folder, a CSV, or a Hub dataset.

Every source becomes the same in-memory table of ``Record``s (encoded bytes or a
path, a 0/1 label, source, generator, split), decoded later by the detector's
own ``load_image`` so training and inference share one pipeline.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from detector.images import ImageError, load_image

REAL_NAMES = {"real", "0", "human", "photo"}
FAKE_NAMES = {"fake", "ai", "ai_generated", "ai-generated", "generated", "synthetic", "1"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class Record:
    image: bytes | str  # encoded file bytes, or a path
    label: int  # 0 real, 1 AI-generated
    source: str
    generator: str = ""
    split: str = "train"

    @property
    def key(self) -> str:
        """Content hash: identical images land on the same side of any split."""
        data = self.image if isinstance(self.image, bytes) else Path(self.image).read_bytes()
        return hashlib.sha1(data).hexdigest()


def parse_label(value) -> int:
    text = str(value).strip().lower()
    if text in REAL_NAMES:
        return 0
    if text in FAKE_NAMES:
        return 1
    raise ValueError(f"unknown label {value!r}: use real/fake (or 0/1, ai, ai_generated)")


def load_records(spec: str, split: str | None = None, sources: Sequence[str] | None = None) -> list[Record]:
    """``spec``: a Parquet file or folder of them, an image folder, a CSV, or a Hub dataset id."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".csv":
        records = _from_csv(path)
    elif path.is_file() and path.suffix == ".parquet":
        records = _from_parquet([path])
    elif path.is_dir() and sorted(path.glob("*.parquet")):
        records = _from_parquet(sorted(path.glob("*.parquet")))
    elif path.is_dir():
        records = _from_image_folder(path)
    else:
        records = _from_hub(spec)
    if split:
        records = [r for r in records if r.split == split]
    if sources:
        records = [r for r in records if r.source in set(sources)]
    if not records:
        raise ValueError(f"no labelled images in {spec!r} (split={split}, sources={sources})")
    return records


def _from_parquet(files: Iterable[Path]) -> list[Record]:
    records = []
    for file in files:
        table = pq.read_table(file)
        columns = set(table.column_names)
        images = table.column("image").to_pylist()
        labels = table.column("label").to_pylist()
        n = len(labels)
        sources = table.column("source").to_pylist() if "source" in columns else [file.stem] * n
        generators = table.column("generator").to_pylist() if "generator" in columns else [""] * n
        splits = table.column("split").to_pylist() if "split" in columns else ["train"] * n
        for image, label, source, generator, split in zip(images, labels, sources, generators, splits):
            data = image["bytes"] if isinstance(image, dict) else image
            records.append(Record(data, parse_label(label), source, generator or "", split))
    return records


def _from_image_folder(root: Path) -> list[Record]:
    """``root/[split/]{real,fake|ai}/...``; the folder name above the label is the split if train/test/val."""
    records = []
    for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        parts = file.relative_to(root).parts[:-1]
        label_dirs = [i for i, part in enumerate(parts) if part.lower() in REAL_NAMES | FAKE_NAMES]
        if not label_dirs:
            continue
        i = label_dirs[-1]
        above = parts[i - 1].lower() if i > 0 else ""
        split = above if above in ("train", "test", "val", "validation") else "train"  # Test/Real as test/real
        records.append(Record(str(file), parse_label(parts[i]), root.name, "", split))
    return records


def _from_csv(file: Path) -> list[Record]:
    """Columns ``path,label`` (+ optional source, generator, split); paths relative to the CSV."""
    records = []
    with file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            image = Path(row["path"])
            image = image if image.is_absolute() else file.parent / image
            records.append(
                Record(str(image), parse_label(row["label"]), row.get("source") or file.stem,
                       row.get("generator") or "", row.get("split") or "train")
            )
    return records


def _from_hub(dataset_id: str) -> list[Record]:
    import datasets

    repo_id, _, revision = dataset_id.partition("@")
    loaded = datasets.load_dataset(repo_id, revision=revision or None)
    records = []
    for split_name, ds in loaded.items():
        ds = ds.cast_column("image", datasets.Image(decode=False))
        for row in ds:
            records.append(
                Record(row["image"]["bytes"] or row["image"]["path"], parse_label(row["label"]),
                       row.get("source") or repo_id, row.get("generator") or "", row.get("split") or split_name)
            )
    return records


def split_validation(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Hold out a content-hashed fraction of each (source, label) group."""
    salt = str(seed).encode()
    train, val = [], []
    for record in records:
        digest = hashlib.sha1(salt + record.key.encode()).digest()
        (val if int.from_bytes(digest[:4], "big") / 2**32 < fraction else train).append(record)
    return train, val


def sample_weights(records: list[Record], source_share: dict[str, float] | None = None) -> torch.Tensor:
    """Weights for a sampler: each source gets its share, both classes half of the total mass.

    Without this CIFAKE (90% of the images) would drown the small, varied sources.
    """
    sources = sorted({r.source for r in records})
    share = {s: (source_share or {}).get(s, 1.0) for s in sources}
    counts: dict[tuple[str, int], int] = {}
    for r in records:
        counts[(r.source, r.label)] = counts.get((r.source, r.label), 0) + 1
    labels_in = {s: {lab for (src, lab) in counts if src == s} for s in sources}
    weights = np.array([share[r.source] / (len(labels_in[r.source]) * counts[(r.source, r.label)]) for r in records])
    labels = np.array([r.label for r in records])
    for label in (0, 1):  # equalise the total mass of the two classes
        mask = labels == label
        if mask.any():
            weights[mask] *= 0.5 / weights[mask].sum()
    return torch.as_tensor(weights / weights.sum(), dtype=torch.double)


class ImageDataset(Dataset):
    """Decodes with the detector's ``load_image`` and keeps the decoded image in memory (per worker),
    so a 512 px JPEG is not decoded again every epoch.

    ``cache_max_side`` (0: never) shrinks what is kept; native-resolution tiles
    need the original pixel grid, so the default keeps images as they are.
    """

    def __init__(self, records: list[Record], transform, cache_max_side: int | None = None):
        self.records = records
        self.transform = transform
        self.cache_max_side = cache_max_side
        self._cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.records)

    def decode(self, index: int) -> Image.Image:
        if index in self._cache:
            return self._cache[index]
        record = self.records[index]
        image = load_image(record.image)
        if self.cache_max_side and max(image.size) > self.cache_max_side:
            image.thumbnail((self.cache_max_side, self.cache_max_side), Image.Resampling.LANCZOS)
        self._cache[index] = image
        return image

    def __getitem__(self, index: int):
        record = self.records[index]
        return self.transform(self.decode(index)), record.label
