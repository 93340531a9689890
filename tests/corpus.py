"""Plain helpers for the tests: image corpora, a tiny checkpoint and a free port, made for real.

The one home of each: the bad-file set (``BAD_FILES`` + ``ODD_FILES``), the tiny-checkpoint builder
(``save_tiny_checkpoint``) and the port helper (``free_port``); conftest.py's fixtures wrap them.

Not fixtures: each test module wraps what it needs, so this file never clashes
with conftest.py.
"""
from __future__ import annotations

import contextlib
import io
import socket
import struct
import subprocess
import time
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


# Each unreadable file: name on disk (with an image suffix, so the CLI walks it) and the error it must raise.
BAD_FILES: dict[str, tuple[str, type]] = {
    "empty": ("empty.png", EmptyImageError),
    "text": ("not_image.png", NotAnImageError),
    "truncated_jpeg": ("truncated.jpg", TruncatedImageError),
    "truncated_png": ("truncated.png", TruncatedImageError),
    "huge_png": ("huge.png", ImageTooLargeError),  # 20000x20000: beyond Pillow's own bomb limit
    "large_png": ("large_8000x6000.png", ImageTooLargeError),  # 48 MP: under Pillow's limit, over ours (40 MP)
}
# Readable but odd files an uploader meets (written by write_odd_files).
ODD_FILES = ["rgba.png", "palette.gif", "grey16.png", "cmyk.jpg", "grey.png", "exif_rotated.jpg"]


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


def photo_like(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth RGB gradient plus noise: compresses like a photo."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1) * 255
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def write_odd_files(folder: Path) -> dict[str, Path]:
    """``ODD_FILES`` into ``folder``, name -> path: rgba.png, palette.gif (2 frames), grey16.png, cmyk.jpg,
    grey.png, exif_rotated.jpg (300x150 stored, orientation 6: 150x300 upright)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ODD_FILES}
    rgba = photo_like((200, 120), seed=1).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(files["rgba.png"])
    frames = [photo_like((120, 90), seed=s).convert("P", palette=Image.Palette.ADAPTIVE) for s in (2, 3)]
    frames[0].save(files["palette.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    ramp = np.linspace(0, 65535, 160 * 100, dtype=np.float64).reshape(100, 160)
    Image.fromarray(ramp.astype(np.uint16)).save(files["grey16.png"])
    photo_like((160, 120), seed=4).convert("CMYK").save(files["cmyk.jpg"], quality=90)
    photo_like((160, 120), seed=5).convert("L").save(files["grey.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    photo_like((300, 150), seed=6).save(files["exif_rotated.jpg"], quality=90, exif=exif)
    return files


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


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it): a server, torchrun's rendezvous, or a dead endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(server: subprocess.Popen, url: str, log=None, limit_s: float = 600) -> None:
    """Poll ``url`` until it answers 200: a readiness wait for a server started as a subprocess, not a speed
    check. Fails if the server exits first (with the end of its ``log`` file, if given) or is not up in ``limit_s``."""
    import httpx

    deadline = time.monotonic() + limit_s
    while True:
        if server.poll() is not None:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = log.read()[-3000:]
            raise AssertionError(f"the server exited with {server.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"nothing served {url} within {limit_s} s"
        time.sleep(0.5)


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
