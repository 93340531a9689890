# Fixtures shared across test modules live in their own files, registered here.
pytest_plugins = ["hub_fixtures"]


# --- Shared model and image fixtures (app, CLI and library tests reuse them) ---
# The builders themselves live in corpus.py (plain functions); these fixtures only wrap them.
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from corpus import BAD_FILES, ODD_FILES, free_port, save_tiny_checkpoint, write_bad_files, write_odd_files  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained convitx_tiny checkpoint folder (config.json, model.safetensors, README.md): real code, ~1 s."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), card="# test card")


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """The one bad-file set, name -> path. Unreadable (corpus.BAD_FILES): empty.png, not_image.png,
    truncated.jpg, truncated.png, huge.png (20000x20000 header, tiny on disk), large_8000x6000.png.
    Readable but odd (corpus.ODD_FILES): rgba.png, palette.gif (2 frames), grey16.png, cmyk.jpg, grey.png,
    exif_rotated.jpg (300x150 stored, orientation 6: 150x300 upright).
    """
    folder = tmp_path_factory.mktemp("bad_files")
    files = {path.name: path for path, _ in write_bad_files(folder).values()}
    files.update(write_odd_files(folder))
    assert len(files) == len(BAD_FILES) + len(ODD_FILES)  # no name written twice
    return files


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
