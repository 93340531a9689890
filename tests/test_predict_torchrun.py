"""``convitx predict`` under ``torchrun``: real processes, 2 ranks on CPU (gloo), rendezvous on 127.0.0.1.

The merged output of 2 ranks must be the single-process output row for row; statuses must agree.
"""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from corpus import REPO_ROOT, free_port, noise_rgb, truncated_jpeg_bytes, write_good_images
from train_helpers import subprocess_env

pytestmark = pytest.mark.timeout(400)

ENV = subprocess_env(PYTHONPATH=str(REPO_ROOT), OMP_WAIT_POLICY="PASSIVE")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """7 files, nested: 6 images in assorted formats and one truncated JPEG in the middle of the order."""
    root = tmp_path_factory.mktemp("inputs")
    write_good_images(root / "b")
    Image.fromarray(noise_rgb(70, 50, seed=9)).save(root / "a_first.png")
    Image.fromarray(noise_rgb(40, 60, seed=11)).save(root / "z_last.bmp")
    (root / "b" / "broken.jpg").write_bytes(truncated_jpeg_bytes())
    return root


def single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detector", "predict", *args], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def torchrun(args: list[str], script: tuple[str, ...] = ("-m", "detector", "predict"), env=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *script, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env or ENV, capture_output=True, text=True, timeout=300)


def rank_exit_codes(stderr: str) -> set[int]:
    """The per-rank exit codes torchrun's failure summary lists (a rank it had to kill shows up as -15)."""
    return {int(code) for code in re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)}


def assert_close(a, b, where: str = "row") -> None:
    """Equal, except floats within 2e-6 and wall-clock ``timings_ms``, which two runs may differ on."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            if key != "timings_ms":
                assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for k, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, abs=2e-6), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_rows(one: list[dict], two: list[dict]) -> None:
    assert [r["path"] for r in two] == [r["path"] for r in one]
    for a, b in zip(one, two):
        a, b = dict(a), dict(b)
        if "heatmap" in a:  # written into different --cam-dir folders, under the same name
            assert Path(a.pop("heatmap")).name == Path(b.pop("heatmap")).name
        assert_close(a, b, a["path"])


def test_two_ranks_write_the_single_process_jsonl_in_order(folder, tiny_checkpoint, tmp_path):
    one = single([str(folder), "--model", str(tiny_checkpoint), "--cam-dir", str(tmp_path / "cam1")])
    two = torchrun([str(folder), "--model", str(tiny_checkpoint), "--cam-dir", str(tmp_path / "cam2")])
    assert one.returncode == 1, one.stderr[-3000:]
    assert two.returncode == 1, two.stderr[-3000:]  # torchrun: 1 when a rank exits non-zero
    assert rank_exit_codes(two.stderr) == {1}, two.stderr[-3000:]  # both ranks: 1 (the bad file), none killed
    rows_1 = [json.loads(line) for line in one.stdout.splitlines()]
    rows_2 = [json.loads(line) for line in two.stdout.splitlines()]
    assert len(rows_1) == 7 and sum("error" in r for r in rows_1) == 1
    assert "broken.jpg" in next(r["error"] for r in rows_2 if "error" in r)
    heatmaps_1 = sorted(p.name for p in (tmp_path / "cam1").iterdir())
    assert_same_rows(rows_1, rows_2)
    assert sorted(p.name for p in (tmp_path / "cam2").iterdir()) == heatmaps_1 and len(heatmaps_1) == 6


def test_two_ranks_write_the_single_process_csv(folder, tiny_checkpoint):
    args = [str(folder), "--model", str(tiny_checkpoint), "--no-cam", "--format", "csv", "--batch-size", "2"]
    one, two = single(args), torchrun(args)
    assert (one.returncode, two.returncode) == (1, 1), two.stderr[-3000:]
    table_1 = list(csv.DictReader(io.StringIO(one.stdout)))
    table_2 = list(csv.DictReader(io.StringIO(two.stdout)))
    assert one.stdout.splitlines()[0] == two.stdout.splitlines()[0]  # one header, written once
    assert len(table_2) == 7
    for a, b in zip(table_1, table_2, strict=True):
        for key in ("p_fake", "p_real"):
            assert (float(b[key]) if b[key] else None) == pytest.approx(float(a[key]) if a[key] else None, abs=2e-6)
        assert {k: v for k, v in b.items() if k not in ("p_fake", "p_real")} == \
               {k: v for k, v in a.items() if k not in ("p_fake", "p_real")}


def test_one_rank_without_a_model_stops_every_rank_with_2(folder, tiny_checkpoint, tmp_path):
    """Rank 1 gets a missing model (per-rank CONVITX_MODEL): rank 0 must not wait for it, all exit 2, no rows."""
    script = tmp_path / "per_rank_model.py"
    script.write_text("import os\nos.environ['CONVITX_MODEL'] = os.environ['MODEL_RANK' + os.environ['RANK']]\n"
                      "from detector.cli import entry_point\nentry_point()\n")
    missing = tmp_path / "no_model_here"
    env = {**ENV, "MODEL_RANK0": str(tiny_checkpoint), "MODEL_RANK1": str(missing)}
    run = torchrun(["predict", str(folder), "--no-cam"], script=(str(script),), env=env)
    assert run.returncode != 0 and run.stdout == ""
    assert rank_exit_codes(run.stderr) == {2}, run.stderr[-3000:]
    assert str(missing) in run.stderr and "(rank 1)" in run.stderr


def test_no_rank_variables_means_one_plain_process(folder, tiny_checkpoint):
    """WORLD_SIZE=1 (what `accelerate launch` sets for one process) takes the single-process path."""
    run = subprocess.run([sys.executable, "-m", "detector", "predict", str(folder / "a_first.png"), "--model",
                          str(tiny_checkpoint), "--no-cam"], cwd=REPO_ROOT, env={**ENV, "WORLD_SIZE": "1"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.stdout.splitlines()) == 1
