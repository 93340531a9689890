"""`pip install .` into a fresh venv, then `convitx predict` on a folder, run from outside the checkout.

What it proves: the wheel builds from pyproject.toml alone, ships the embedded weights as package
data (so the default model resolves inside site-packages, not in the checkout), and installs a
working `convitx` console script.

Kept cheap: the new venv gets only convitx itself (`--no-deps --no-build-isolation --no-index`:
no network, no second 2-6 GB torch); a .pth file puts this test interpreter's site-packages
*behind* the venv's own, so torch & co. come from there while `detector` comes from the wheel.
(`venv --system-site-packages` would not do: it exposes the base interpreter, not this venv.)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def _env() -> dict[str, str]:
    """No model override, no import-path leaks from the test run, no network for pip."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONVITX_MODEL", "PYTHONPATH")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1")
    return env


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with `pip install .` of a copy of the checkout; returns the venv folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy: setuptools builds in-tree and would leave build/ in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("detector", "weights"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "_test_outer_site.pth").write_text("".join(f"{p}\n" for p in outer))

    proc = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
         "--quiet", str(src)],
        cwd=tmp, env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return venv


def test_the_wheel_carries_the_embedded_weights(installed):
    python = installed / "bin" / "python"
    proc = subprocess.run(
        [python, "-c", "import json, detector, detector.hub as h; "
                       "print(json.dumps([detector.__file__, str(h.EMBEDDED_WEIGHTS), h.default_model_ref()]))"],
        cwd=installed.parent, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, weights, default = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(module).parent.parent
    assert Path(module).is_relative_to(installed) and Path(weights) == site / "detector" / "weights", (module, weights)
    assert default == weights
    for name in ("config.json", "model.safetensors", "README.md"):
        assert _sha(Path(weights) / name) == _sha(ROOT / "weights" / name), name


def test_convitx_predict_on_a_folder(installed, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(ROOT / "examples", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "zz_broken.png").write_text("not an image\n")
    expected = sorted(p for p in folder.iterdir() if p.suffix in {".jpg", ".png"})
    assert len(expected) >= 3

    proc = subprocess.run(
        [installed / "bin" / "convitx", "predict", "--no-cam", str(folder)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: a file failed, the others were judged
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(p) for p in expected]
    assert "error" in rows[-1] and all(0.0 <= row["p_fake"] <= 1.0 for row in rows[:-1]), rows

    usage = subprocess.run([installed / "bin" / "convitx", "--help"], env=_env(), capture_output=True, text=True,
                           timeout=120)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: convitx"), usage.stdout + usage.stderr
