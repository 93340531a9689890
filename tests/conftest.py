# Fixtures shared across test modules live in their own files, registered here.
pytest_plugins = ["hub_fixtures"]


# --- Shared model and image fixtures (app, CLI and library tests reuse them) ---
import io  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained convitx_tiny checkpoint folder (config.json, model.safetensors, README.md): real code, ~1 s."""
    from detector import create_model, save_checkpoint

    return save_checkpoint(create_model("convitx_tiny"), tmp_path_factory.mktemp("ckpt"), card="# test card")


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth RGB gradient plus noise: compresses like a photo, so truncating it cuts real image data."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=-1) * 255
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Files an uploader meets, name -> path. Unreadable: empty.png, not_image.png, truncated.jpg,
    huge.png (20000x20000 header, tiny on disk). Readable but odd: rgba.png, palette.gif (2 frames),
    grey16.png, cmyk.jpg, grey.png, exif_rotated.jpg (300x150 stored, orientation 6: 150x300 upright).
    """
    folder = tmp_path_factory.mktemp("bad_files")
    files: dict[str, Path] = {}

    def path(name: str) -> Path:
        files[name] = folder / name
        return files[name]

    path("empty.png").write_bytes(b"")
    path("not_image.png").write_text("this is a text file with an image extension\n")
    buffer = io.BytesIO()
    _photo((256, 192)).save(buffer, format="JPEG", quality=90)
    path("truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.new("1", (20000, 20000)).save(path("huge.png"))  # 1-bit zeros: a few KB on disk

    rgba = _photo((200, 120), seed=1).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(path("rgba.png"))
    frames = [_photo((120, 90), seed=s).convert("P", palette=Image.Palette.ADAPTIVE) for s in (2, 3)]
    frames[0].save(path("palette.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    ramp = np.linspace(0, 65535, 160 * 100, dtype=np.float64).reshape(100, 160)
    Image.fromarray(ramp.astype(np.uint16)).save(path("grey16.png"))
    _photo((160, 120), seed=4).convert("CMYK").save(path("cmyk.jpg"), quality=90)
    _photo((160, 120), seed=5).convert("L").save(path("grey.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    _photo((300, 150), seed=6).save(path("exif_rotated.jpg"), quality=90, exif=exif)
    return files


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(tiny_checkpoint):
    """The real app (app.build_demo, launched as `python app.py` would) serving the tiny checkpoint."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # tests never phone home
    import app  # the repository root is on sys.path: pytest.ini's `pythonpath = .`

    demo = app.build_demo(str(tiny_checkpoint))
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True, **app.LAUNCH_KWARGS
    )
    yield url.rstrip("/")
    demo.close()
