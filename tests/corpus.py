"""Plain helpers for the tests: image corpora and a tiny checkpoint, written for real.

Not fixtures: each test module wraps what it needs, so this file never clashes
with conftest.py.
"""
from __future__ import annotations

import contextlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from detector import (
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    create_model,
    save_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- images


def noise_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A uint8 HxWx3 noise image: incompressible, so truncating its JPEG really cuts pixels."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, **kwargs) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def blank_bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of any size, compressed row by row (no width*height buffer).

    20000x20000 comes out at ~50 KB: what a decompression bomb looks like on disk.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(1)
    rows_per_chunk = max(1, (1 << 20) // len(row))
    idat = bytearray()
    for start in range(0, height, rows_per_chunk):
        idat += compressor.compress(row * min(rows_per_chunk, height - start))
    idat += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", bytes(idat)) + _png_chunk(b"IEND", b"")


def truncated_jpeg_bytes(seed: int = 0) -> bytes:
    data = encode(noise_rgb(160, 120, seed), "JPEG", quality=95)
    return data[: len(data) // 2]


def truncated_png_bytes(seed: int = 0) -> bytes:
    data = encode(noise_rgb(160, 120, seed), "PNG")
    return data[: len(data) // 2]


# Each bad file: name on disk (with an image suffix, so the CLI walks it) and the error it must raise.
BAD_FILES: dict[str, tuple[str, type]] = {
    "empty": ("empty.jpg", EmptyImageError),
    "text": ("notes.jpg", NotAnImageError),
    "truncated_jpeg": ("truncated.jpg", TruncatedImageError),
    "truncated_png": ("truncated.png", TruncatedImageError),
    "huge_png": ("huge_20000x20000.png", ImageTooLargeError),  # beyond Pillow's own bomb limit
    "large_png": ("large_8000x6000.png", ImageTooLargeError),  # 48 MP: under Pillow's limit, over ours (40 MP)
}


def bad_file_bytes(kind: str) -> bytes:
    if kind == "empty":
        return b""
    if kind == "text":
        return b"This is a shopping list, not a picture.\nmilk\neggs\n"
    if kind == "truncated_jpeg":
        return truncated_jpeg_bytes()
    if kind == "truncated_png":
        return truncated_png_bytes()
    if kind == "huge_png":
        return blank_bilevel_png(20000, 20000)
    if kind == "large_png":
        return blank_bilevel_png(8000, 6000)
    raise KeyError(kind)


def write_bad_files(folder: Path, kinds=None) -> dict[str, tuple[Path, type]]:
    """Write the bad corpus into ``folder``: kind -> (path, expected ImageError subclass)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind in kinds or BAD_FILES:
        name, error = BAD_FILES[kind]
        path = folder / name
        path.write_bytes(bad_file_bytes(kind))
        written[kind] = (path, error)
    return written


def write_good_images(folder: Path, seed: int = 0) -> list[Path]:
    """A handful of small, decodable images in assorted formats, sizes and modes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [
        ("photo.jpg", Image.fromarray(noise_rgb(96, 64, seed)), "JPEG"),
        ("square.png", Image.fromarray(noise_rgb(64, 64, seed + 1)), "PNG"),
        ("wide_grey.png", Image.fromarray(noise_rgb(120, 40, seed + 2)[:, :, 0]), "PNG"),
        ("tall.webp", Image.fromarray(noise_rgb(30, 90, seed + 3)), "WEBP"),
    ]
    paths = []
    for name, image, fmt in specs:
        path = folder / name
        image.save(path, fmt)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- models


def save_tiny_checkpoint(folder: Path, seed: int = 0, card: str | None = "# convitx_tiny (test)\n") -> Path:
    """An untrained convitx_tiny saved in the Hub layout, deterministic for a seed."""
    torch.manual_seed(seed)
    model = create_model("convitx_tiny").eval()
    return save_checkpoint(model, folder, card=card)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run torch on ``n`` threads: on a shared 2-core box, 1 thread is ~8x faster than 2 fighting a trainer."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- messages


def assert_readable_message(exc: BaseException) -> str:
    """An ImageError/ModelLoadError message must be fit to show a user as is."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} has an empty message"
    assert "\n" not in message, f"multi-line message: {message!r}"
    assert len(message) < 600, f"message too long ({len(message)} chars): {message[:200]!r}..."
    for garbage in ("Traceback", "object at 0x", "<PIL.", "<class ", "b'", 'b"', "\\x"):
        assert garbage not in message, f"{garbage!r} in message: {message!r}"
    # Raised `from None`: printing the error shows no chain of library internals.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    return message
