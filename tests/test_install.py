"""Installing ConVitX the ways the README says, into fresh venvs, and running what it shows.

1. `pip install .` into a fresh venv, then `convitx predict` on a folder, run from outside the checkout:
   the wheel builds from pyproject.toml alone, ships the embedded weights as package data (so the default
   model resolves inside site-packages, not in the checkout), and installs a working `convitx` script.
2. The README's first command (venv, pinned requirements + the project editable, `python app.py`) and then
   its command-line example (`convitx predict examples/`, `python -m detector predict examples/`), both
   parsed from README.md and run as written in a copy of the checkout: the app serves a verdict and both
   commands exit 0 with a prediction per example, on the checkout's embedded weights.

Kept cheap: nothing is downloaded (no second 2-6 GB torch); a .pth file puts this test interpreter's
site-packages *behind* the new venv's own, so torch & co. come from there while `detector` comes from
what was just installed. (`venv --system-site-packages` would not do: it exposes the base interpreter,
not this venv.)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from corpus import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def _env() -> dict[str, str]:
    """No model override, no import-path leaks from the test run, no network for pip."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONVITX_MODEL", "PYTHONPATH")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1")
    return env


def _see_outer_site(venv: Path) -> None:
    """Let ``venv`` import what this test interpreter has installed, behind its own site-packages."""
    site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "_test_outer_site.pth").write_text("".join(f"{p}\n" for p in outer))


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
    _see_outer_site(venv)

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


# --------------------------------------------------------------------------- the README's first five minutes


def readme_commands() -> tuple[list[str], str]:
    """The README's first command split at ``&&``, and its command-line example (the next bash block)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    first, example = blocks[0].strip(), blocks[1]
    assert "\n" not in first, first
    parts = [part.strip() for part in first.split("&&")]
    assert len(parts) == 3 and parts[0].endswith("-m venv .venv") and "pip install" in parts[1], parts
    assert parts[2].endswith("app.py"), parts
    assert "convitx predict" in example and "python -m detector predict" in example, example
    return parts, example


def _checkout_copy(folder: Path) -> Path:
    """The files a fresh clone has (tracked, plus new ones git does not ignore), copied to ``folder``."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def _bash(command: str, cwd: Path, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, **kwargs)


@pytest.mark.timeout(900)
def test_readme_first_command_then_the_command_line(tmp_path):
    from gradio_client import Client, handle_file

    (venv_part, pip_part, app_part), example = readme_commands()
    checkout = _checkout_copy(tmp_path / "convitx")
    # `python3` is this test's interpreter, so that the .pth below fits the new venv's Python.
    env = _env() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)

    made = _bash(venv_part, checkout, env, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    _see_outer_site(checkout / ".venv")
    # Offline, pip builds the editable project with this interpreter's pinned setuptools (requirements-dev)
    # instead of fetching one into an isolated build env, as it does on a fresh machine; the setuptools a
    # Python 3.11 venv ships (65) would shadow it and is too old for pyproject's license field.
    subprocess.run([checkout / ".venv/bin/python", "-m", "pip", "uninstall", "-y", "-q", "setuptools"], env=env,
                   check=True, timeout=300)
    installed = _bash(pip_part, checkout, env | {"PIP_NO_BUILD_ISOLATION": "0"}, timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]

    # The app, started as the first command starts it, answers with a verdict.
    port = free_port()
    log = (tmp_path / "app.log").open("w+")
    server = subprocess.Popen(["bash", "-c", f"exec {app_part}"], cwd=checkout, stdout=log, stderr=subprocess.STDOUT,
                              env=env | {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                                         "GRADIO_ANALYTICS_ENABLED": "False"}, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, url, log)
        _, _, verdict, report = Client(url, verbose=False).predict(
            handle_file(checkout / "examples" / "landscape.jpg"), api_name="/predict")
        assert verdict.startswith(("Real (", "AI-generated (", "Uncertain (")), verdict
        assert report["model"]["decision_rule"]["statement"] in verdict
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()

    # Then the command-line example, as written, on the default weights: the checkout's own.
    where = _bash("source .venv/bin/activate && python -c 'import detector.hub as h; print(h.EMBEDDED_WEIGHTS)'",
                  checkout, env, timeout=300)
    assert where.returncode == 0 and Path(where.stdout.strip()) == checkout / "weights", where.stdout + where.stderr
    run = _bash(example, checkout, env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    images = sorted(str(p.relative_to(checkout)) for p in (checkout / "examples").iterdir()
                    if p.suffix in {".jpg", ".png"})
    assert [row["path"] for row in rows] == images * 2, rows  # once per command
    for row in rows:
        assert row["label"] in {"real", "ai_generated", "uncertain"} and 0.0 <= row["p_fake"] <= 1.0, row
