"""Plain helpers for tests/test_train.py: synthetic labelled data in every layout train/ reads,
and subprocess runs of ``python -m train`` (not fixtures, so nothing clashes with conftest.py)."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()

# Files a run may write: nothing that torch.load / pickle would read.
ALLOWED_SUFFIXES = {".json", ".jsonl", ".safetensors", ".md", ".txt", ".png", ""}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def synthetic_image(label: int, seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """'real': a smooth gradient with mild noise; 'fake': uniform noise. Learnable in a few steps."""
    rng = np.random.default_rng(seed)
    width, height = size
    if label == 0:
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 5.0)], axis=-1) * 255
        pixels = base + rng.normal(0, 8, base.shape)
    else:
        pixels = rng.integers(0, 256, (height, width, 3)).astype(float)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def synthetic_rows(per_source_train: int = 24, per_source_test: int = 6,
                   sources: tuple[str, ...] = ("alpha", "beta")) -> list[dict]:
    """Rows in the Hugging Face ``datasets`` layout of ../shared/data: image{bytes,path}, label, source,
    generator, split; both classes in every source and split, alternating."""
    rows, seed = [], 0
    for split, count in (("train", per_source_train), ("test", per_source_test)):
        for source in sources:
            for k in range(count):
                label = k % 2
                rows.append({
                    "image": {"bytes": encode(synthetic_image(label, seed)), "path": f"{seed:04d}.png"},
                    "label": ("real", "fake")[label],
                    "source": source,
                    "generator": "noise-gen" if label else "",
                    "split": split,
                })
                seed += 1
    return rows


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_image_folder(root: Path, per_class: int = 12) -> Path:
    """``root/{train,test}/{real,ai}/*.png`` (fake class spelled ``ai``, as a user's folder might be)."""
    seed = 1000
    for split, count in (("train", per_class), ("test", max(2, per_class // 4))):
        for label, folder in ((0, "real"), (1, "ai")):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                synthetic_image(label, seed).save(root / split / folder / f"{k:03d}.png")
                seed += 1
    return root


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment minus any HF_* settings, one thread, and an HF_HOME that never is ~/.cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "ACCELERATE_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false", GRADIO_ANALYTICS_ENABLED="False")
    env.update(extra)
    return env


def run_train(args: list[str], env: dict[str, str] | None = None, timeout: int = 280,
              module: tuple[str, ...] = ("-m", "train")) -> subprocess.CompletedProcess:
    """``python -m train ARGS`` from the repository root, output captured."""
    return subprocess.run([sys.executable, *module, *map(str, args)], cwd=REPO_ROOT,
                          env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout)


def tiny_fit_args(data: Path, out: Path, *extra: str, epochs: int = 2, samples: int = 64) -> list[str]:
    return ["fit", "--model", "convitx_tiny", "--data", str(data), "--epochs", str(epochs),
            "--samples-per-epoch", str(samples), "--batch-size", "16", "--num-workers", "0",
            "--val-fraction", "0.25", "--out", str(out), *extra]


def assert_no_pickles(folder: Path) -> None:
    """No file under ``folder`` is, or is named like, something torch.load / pickle would read."""
    for path in Path(folder).rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix.lower() not in PICKLE_SUFFIXES, f"pickle-style file written: {path}"
        assert path.suffix.lower() in ALLOWED_SUFFIXES, f"unexpected file type written: {path}"
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:  # a real safetensors file, not a renamed pickle
                handle.keys()
            continue
        with path.open("rb") as handle:
            head = handle.read(4)
        assert head[:1] != b"\x80" and head != b"PK\x03\x04", f"{path} looks like a pickle / torch.save zip"


def metrics_epochs(run: Path) -> list[int]:
    import json

    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def failure(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"


def file_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha1(p.read_bytes()) for p in sorted(Path(folder).rglob("*")) if p.is_file()}
