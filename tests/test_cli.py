"""`python -m detector predict`: real subprocesses on real folders (plus a few in-process runs of cli.main)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from corpus import REPO_ROOT, noise_rgb, save_tiny_checkpoint, torch_threads, truncated_jpeg_bytes, write_good_images
from detector import Detector
from detector.cli import main

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("cli_ckpt"), seed=0)


@pytest.fixture(scope="module")
def library(checkpoint) -> Detector:
    return Detector.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    """Good images only, one level of nesting."""
    root = tmp_path_factory.mktemp("good")
    paths = write_good_images(root)
    (root / "nested").mkdir()
    paths[0].rename(root / "nested" / paths[0].name)
    return root


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> dict:
    """Good images in a folder tree, one truncated JPEG, and a text file the walk must skip."""
    root = tmp_path_factory.mktemp("mixed")
    write_good_images(root / "sub")
    Image.fromarray(noise_rgb(70, 50, seed=9)).save(root / "z_last.png")
    Image.fromarray(noise_rgb(48, 48, seed=10)).save(root / "a_first.JPG")  # upper-case suffix counts
    (root / "sub" / "deeper").mkdir()
    Image.fromarray(noise_rgb(40, 60, seed=11)).save(root / "sub" / "deeper" / "m.bmp")
    bad = root / "sub" / "broken.jpg"
    bad.write_bytes(truncated_jpeg_bytes())
    (root / "readme.txt").write_text("not an image, and not an image suffix either\n")
    (root / "sub" / "notes.md").write_text("# notes\n")
    return {"root": root, "bad": bad}


def _expected_files(root: Path) -> list[str]:
    """The documented walk: image suffixes (any case), recursive, sorted."""
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
    return [str(p) for p in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)]


def _run(args: list[str], model_env: str | None = None, timeout: int = 100) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CONVITX_MODEL"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if model_env is not None:
        env["CONVITX_MODEL"] = model_env
    return subprocess.run(
        [sys.executable, "-m", "detector", "predict", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _jsonl(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    assert lines, "no output"
    return [json.loads(line) for line in lines]


def _assert_prediction_row(row: dict, library: Detector) -> None:
    assert set(row) >= {"path", "p_fake", "label", "probabilities", "threshold", "uncertain_band"}
    assert "error" not in row
    assert 0.0 <= row["p_fake"] <= 1.0
    assert row["probabilities"]["real"] + row["probabilities"]["ai_generated"] == pytest.approx(1.0, abs=2e-6)
    lo, hi = row["uncertain_band"]
    expected = "uncertain" if lo < row["p_fake"] < hi else ("ai_generated" if row["p_fake"] >= row["threshold"] else "real")
    assert row["label"] == expected
    # Same numbers as the library on the same file (rounded to 6 digits in the output).
    assert row["p_fake"] == pytest.approx(library.predict(row["path"], cam=False).p_fake, abs=2e-6)


def _assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


# --------------------------------------------------------------------------- subprocess runs


@pytest.mark.timeout(400)
def test_folder_with_a_bad_file(checkpoint, mixed_folder, library, tmp_path):
    root, bad = mixed_folder["root"], mixed_folder["bad"]
    missing = root / "gone.png"  # named explicitly, after the folder
    cam_dir = tmp_path / "cams"
    result = _run([str(root), str(missing), "--model", str(checkpoint), "--cam-dir", str(cam_dir)])
    _assert_clean_stderr(result.stderr)
    assert result.returncode == 1, result.stderr
    rows = _jsonl(result.stdout)

    expected = _expected_files(root) + [str(missing)]
    assert [row["path"] for row in rows] == expected  # sorted walk, then the explicit file
    assert not any(p.endswith((".txt", ".md")) for p in expected)
    assert str(root / "a_first.JPG") in expected and str(root / "sub" / "deeper" / "m.bmp") in expected

    errors = {row["path"]: row for row in rows if "error" in row}
    assert set(errors) == {str(bad), str(missing)}
    for row in errors.values():
        assert set(row) == {"path", "error"}
        assert row["error"] and "Traceback" not in row["error"] and "\n" not in row["error"]
    assert "truncated" in errors[str(bad)]["error"]
    assert "no such file" in errors[str(missing)]["error"]

    good = [row for row in rows if "error" not in row]
    assert len(good) == len(expected) - 2
    written = sorted(cam_dir.iterdir())
    assert len(written) == len(good)
    for row in good:
        _assert_prediction_row(row, library)
        heatmap = Path(row["heatmap"])
        assert heatmap.parent == cam_dir and heatmap.suffix == ".png" and heatmap.is_file()
        assert heatmap.name.endswith(f"_{Path(row['path']).stem}.png")
        with Image.open(heatmap) as overlay:
            assert overlay.format == "PNG" and overlay.mode == "RGB"
            with Image.open(row["path"]) as source:
                assert overlay.size == source.size  # small images: heatmap at full size
    assert sorted(Path(row["heatmap"]) for row in good) == written


@pytest.mark.timeout(400)
def test_all_good_folder_uses_the_env_model(checkpoint, good_folder, library):
    result = _run([str(good_folder), "--no-cam"], model_env=str(checkpoint))
    _assert_clean_stderr(result.stderr)
    assert result.returncode == 0, result.stderr
    rows = _jsonl(result.stdout)
    assert [row["path"] for row in rows] == _expected_files(good_folder)
    assert len(rows) == 4
    for row in rows:
        _assert_prediction_row(row, library)
        assert "heatmap" not in row


@pytest.mark.timeout(400)
def test_csv_output(checkpoint, mixed_folder, library, tmp_path):
    root, bad = mixed_folder["root"], mixed_folder["bad"]
    cam_dir = tmp_path / "cams"
    result = _run([str(root), "--model", str(checkpoint), "--format", "csv", "--no-cam", "--cam-dir", str(cam_dir)])
    _assert_clean_stderr(result.stderr)
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["path"] for row in rows] == _expected_files(root)
    assert not cam_dir.exists() or not any(cam_dir.iterdir()), "--no-cam writes no overlays"
    for row in rows:
        if row["path"] == str(bad):
            assert row["error"] and not row["p_fake"] and not row["label"]
            continue
        assert row["error"] == "" and row["heatmap"] == ""
        p_fake, p_real = float(row["p_fake"]), float(row["p_real"])
        assert p_fake + p_real == pytest.approx(1.0, abs=2e-6)
        assert float(row["threshold"]) == 0.5
        assert row["label"] in {"real", "ai_generated", "uncertain"}
        assert p_fake == pytest.approx(library.predict(row["path"], cam=False).p_fake, abs=2e-6)


@pytest.mark.timeout(400)
def test_missing_model_folder_exits_2(good_folder, tmp_path):
    missing = tmp_path / "no_such_model"
    result = _run([str(good_folder), "--model", str(missing)])
    assert result.returncode == 2
    assert result.stdout == ""
    _assert_clean_stderr(result.stderr)
    message = result.stderr.strip()
    assert message.startswith("error:"), message
    assert str(missing) in message
    assert len(message.splitlines()) == 1


# --------------------------------------------------------------------------- in-process runs of cli.main


def _main(capsys, args: list[str]) -> tuple[int, list[dict], str]:
    status = main(["predict", *args])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    return status, rows, captured.err


@pytest.mark.timeout(400)
def test_threshold_override_moves_labels_and_band(checkpoint, good_folder, capsys, monkeypatch):
    monkeypatch.delenv("CONVITX_MODEL", raising=False)
    base_args = [str(good_folder), "--model", str(checkpoint), "--no-cam"]
    status, default, _ = _main(capsys, base_args)
    assert status == 0
    p = [row["p_fake"] for row in default]
    # Precondition: every p lies between the shifted bands' inner edges (0.15 and 0.85), so the
    # labels below are forced by the threshold alone.
    assert all(0.16 < x < 0.84 for x in p), p

    status, low, _ = _main(capsys, base_args + ["--threshold", "0.0"])
    assert status == 0
    assert [row["p_fake"] for row in low] == p
    for row in low:
        assert row["threshold"] == 0.0
        assert row["uncertain_band"] == pytest.approx([0.0, 0.15])
        assert row["label"] == "ai_generated"

    status, high, _ = _main(capsys, base_args + ["--threshold", "1.0"])
    assert status == 0
    for row in high:
        assert row["threshold"] == 1.0
        assert row["uncertain_band"] == pytest.approx([0.85, 1.0])
        assert row["label"] == "real"

    status, mid, _ = _main(capsys, base_args + ["--threshold", "0.3"])
    for row in mid:
        assert row["uncertain_band"] == pytest.approx([0.15, 0.45])
        expected = "uncertain" if 0.15 < row["p_fake"] < 0.45 else ("ai_generated" if row["p_fake"] >= 0.3 else "real")
        assert row["label"] == expected


@pytest.mark.parametrize("threshold", ["1.5", "-0.2"])
def test_invalid_threshold_exits_2(checkpoint, good_folder, capsys, threshold):
    status, rows, err = _main(capsys, [str(good_folder), "--model", str(checkpoint), "--threshold", threshold])
    assert status == 2 and rows == []
    assert err.startswith("error:") and "Traceback" not in err


def test_env_model_is_the_default(good_folder, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "env_model_missing"
    monkeypatch.setenv("CONVITX_MODEL", str(missing))
    status, rows, err = _main(capsys, [str(good_folder)])
    assert status == 2 and rows == []
    assert str(missing) in err  # the env var, not weights/, is what was tried


def test_explicit_model_beats_env(checkpoint, good_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONVITX_MODEL", str(tmp_path / "env_model_missing"))
    status, rows, _ = _main(capsys, [str(good_folder), "--model", str(checkpoint), "--no-cam"])
    assert status == 0 and len(rows) == 4


def test_batches_do_not_change_rows_or_order(checkpoint, mixed_folder, capsys, tmp_path):
    args = [str(mixed_folder["root"]), "--model", str(checkpoint)]
    status_1, one, _ = _main(capsys, args + ["--batch-size", "1", "--cam-dir", str(tmp_path / "c1")])
    status_3, three, _ = _main(capsys, args + ["--batch-size", "3", "--cam-dir", str(tmp_path / "c3")])
    status_big, big, _ = _main(capsys, args + ["--batch-size", "64", "--cam-dir", str(tmp_path / "c64")])
    assert status_1 == status_3 == status_big == 1
    for rows in (three, big):
        assert [r["path"] for r in rows] == [r["path"] for r in one]
        for a, b in zip(one, rows):
            assert ("error" in a) == ("error" in b)
            if "error" not in a:
                assert a["p_fake"] == pytest.approx(b["p_fake"], abs=2e-6)
                assert Path(a["heatmap"]).name == Path(b["heatmap"]).name


def test_no_image_files_is_an_error(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see\n")
    status, rows, err = _main(capsys, [str(empty), "--model", str(checkpoint)])
    assert status == 1 and rows == []
    assert "no image files" in err


def test_explicit_bad_files_are_rows_not_crashes(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    good = tmp_path / "good.png"
    Image.fromarray(noise_rgb(30, 30)).save(good)
    status, rows, _ = _main(capsys, [str(text), str(good), str(empty), "--model", str(checkpoint), "--no-cam"])
    assert status == 1
    assert [row["path"] for row in rows] == [str(text), str(good), str(empty)]  # as given, not sorted
    assert "error" in rows[0] and "error" not in rows[1] and "error" in rows[2]
    assert "empty" in rows[2]["error"]


def test_verdict_source_and_evidence_in_jsonl_and_csv(checkpoint, tmp_path, capsys):
    """A file with an AI marker: label is the fused verdict, decided_by names the provenance, evidence is listed."""
    from provenance_files import png_with_text, photo, xmp_packet

    marked = tmp_path / "marked.png"
    marked.write_bytes(png_with_text({}, xmp=xmp_packet()))
    plain = tmp_path / "plain.png"
    photo(seed=4).save(plain)
    status, rows, _ = _main(capsys, [str(marked), str(plain), "--model", str(checkpoint), "--no-cam"])
    assert status == 0
    assert rows[0]["label"] == "ai_generated" and rows[0]["decided_by"] == "provenance_markers"
    assert rows[0]["model_label"] in {"real", "ai_generated", "uncertain"} and rows[0]["p_fake"] is not None
    assert any(e["source"] == "xmp" and e["strength"] == "unsigned" for e in rows[0]["evidence"])
    assert rows[1]["decided_by"] == "pixel_model" and rows[1]["label"] == rows[1]["model_label"]

    assert main(["predict", str(marked), str(plain), "--model", str(checkpoint), "--no-cam", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert table[0]["label"] == "ai_generated" and table[0]["decided_by"] == "provenance_markers"
    assert "xmp:ai_generated/unsigned" in table[0]["evidence"]
    assert "summary:none/information" in table[1]["evidence"]
