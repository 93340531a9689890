"""train/: data readers, augmentation, fit/resume/torchrun, calibration, evaluate, push and search.

Real components only: the CLI runs as ``python -m train ...`` in subprocesses on tiny synthetic data
(or on small real sources from ../shared/data, read in place), pushes go over HTTP to the in-memory
Hub of tests/hubserver.py, and checkpoints are read back with the detector's own loader.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from detector import Detector, create_model, get_config, load_image
from train.augment import DEGRADATIONS
from train.calibrate import choose_threshold, fit_temperature
from train.checkpoint import LATEST, latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from train.config import TrainConfig, add_arguments, resolve
from train.data import Record, load_records, parse_label, sample_weights, split_validation
from train.fit import lr_at
from corpus import free_port
from train_helpers import (
    REPO_ROOT,
    SHARED_DATA,
    assert_no_pickles,
    failure,
    file_digests,
    metrics_epochs,
    run_train,
    sha1,
    subprocess_env,
    synthetic_image,
    synthetic_rows,
    tiny_fit_args,
    write_image_folder,
    write_parquet,
)

pytestmark = pytest.mark.timeout(400)
SLOW = pytest.mark.timeout(600)
ROBUSTNESS = ["clean", "jpeg_q75", "jpeg_q50", "resize_0.5x", "blur_r1", "crop_0.7"]

CAMPUS = SHARED_DATA / "campus_regen_pairs.parquet"
CARDAMAGE = SHARED_DATA / "gpt4o_cardamage.parquet"
needs_shared = pytest.mark.skipif(not (CAMPUS.is_file() and CARDAMAGE.is_file()), reason="../shared/data not present")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_parquet(tmp_path_factory) -> Path:
    """60 small PNGs in the ../shared/data layout: sources alpha/beta, 24 train + 6 test each, both classes."""
    return write_parquet(tmp_path_factory.mktemp("tiny_data") / "tiny.parquet", synthetic_rows())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_parquet) -> dict:
    """One real ``python -m train fit`` run of convitx_tiny (2 epochs x 64 samples), shared by several tests."""
    out = tmp_path_factory.mktemp("fit") / "run"
    args = tiny_fit_args(tiny_parquet, out)
    proc = run_train(args)
    assert proc.returncode == 0, failure(proc)
    return {"out": out, "best": out / "best", "proc": proc, "args": args, "data": tiny_parquet}


def _sample_image(tmp_path: Path) -> Path:
    path = tmp_path / "probe.png"
    synthetic_image(1, seed=4242, size=(70, 50)).save(path)
    return path


# ============================================================================ data


@needs_shared
def test_load_records_from_a_parquet_file_keeps_labels_sources_generators_splits():
    table = pq.read_table(CAMPUS).drop(["image"]).to_pylist()
    records = load_records(str(CAMPUS))
    assert len(records) == len(table) == 69
    for record, row in zip(records, table):
        assert record.label == {"real": 0, "fake": 1}[row["label"]]
        assert (record.source, record.generator, record.split) == (row["source"], row["generator"] or "", row["split"])
        assert isinstance(record.image, bytes)
    assert {r.label for r in records} == {0, 1}
    assert load_image(records[0].image).mode == "RGB"  # the bytes are the encoded file

    train = load_records(str(CAMPUS), split="train")
    assert len(train) == 54 and {r.split for r in train} == {"train"}
    assert sum(r.label == 0 for r in train) == 33 and sum(r.label == 1 for r in train) == 21


@needs_shared
def test_load_records_from_a_folder_of_parquet_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for file in (CAMPUS, CARDAMAGE):  # links, not copies: the data stays in ../shared/data
        (folder / file.name).symlink_to(file)
    (folder / "notes.txt").write_text("ignored\n")
    records = load_records(str(folder))
    assert len(records) == 69 + 75
    assert {r.source for r in records} == {"campus_regen_pairs", "gpt4o_cardamage"}
    only = load_records(str(folder), split="test", sources=["gpt4o_cardamage"])
    assert len(only) == 18 and {(r.source, r.split) for r in only} == {("gpt4o_cardamage", "test")}
    assert sorted(r.label for r in only) == [0] * 8 + [1] * 10


def test_load_records_from_an_image_folder(tmp_path):
    root = tmp_path / "mine"
    files = {
        "train/real/a.png": 0, "train/ai/b.png": 1, "train/fake/nested/c.png": 1, "test/fake/d.jpg": 1,
        "test/real/e.PNG": 0, "real/f.png": 0, "AI/g.webp": 1, "Test/Real/h.png": 0,
    }
    for i, name in enumerate(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
        synthetic_image(files[name], seed=i).save(path, format=fmt)
    (root / "unlabelled").mkdir()
    synthetic_image(0, seed=99).save(root / "unlabelled" / "x.png")  # no label folder: skipped
    (root / "train" / "real" / "notes.txt").write_text("not an image\n")

    records = {Path(r.image).relative_to(root).as_posix(): r for r in load_records(str(root))}
    assert set(records) == set(files)
    for name, label in files.items():
        assert records[name].label == label, name
        assert records[name].source == "mine"
    expected_split = {"train/real/a.png": "train", "train/ai/b.png": "train", "train/fake/nested/c.png": "train",
                      "test/fake/d.jpg": "test", "test/real/e.PNG": "test", "real/f.png": "train",
                      "AI/g.webp": "train", "Test/Real/h.png": "test"}
    assert {n: r.split for n, r in records.items()} == expected_split
    assert {Path(r.image).name for r in load_records(str(root), split="test")} == {"d.jpg", "e.PNG", "h.png"}


def test_load_records_from_a_csv_with_relative_paths(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    rows = [("img/r0.png", "real", "", ""), ("img/f0.png", "fake", "sd15", "test"), ("img/f1.png", "ai", "", ""),
            ("img/r1.png", "0", "", "test"), ("img/f2.png", "AI_Generated", "", "")]
    for i, (path, label, _, _) in enumerate(rows):
        synthetic_image(parse_label(label), seed=i).save(folder / path)
    absolute = tmp_path / "elsewhere.png"
    synthetic_image(1, seed=50).save(absolute)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "generator", "split"])
        writer.writerows(rows)
        writer.writerow([str(absolute), "1", "", ""])
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the CSV, not the working directory

    records = load_records(str(folder / "labels.csv"))
    assert [r.label for r in records] == [0, 1, 1, 0, 1, 1]
    assert [Path(r.image) for r in records] == [folder / p for p, *_ in rows] + [absolute]
    assert all(load_image(r.image).size == (48, 40) for r in records)
    assert {r.source for r in records} == {"labels"}  # no source column: the file name
    assert [r.split for r in records] == ["train", "test", "train", "test", "train", "train"]
    assert records[1].generator == "sd15"


@pytest.mark.parametrize("label", ["maybe", "", "2", "cat", "realistic"])
def test_unknown_labels_are_rejected(label, tmp_path):
    with pytest.raises(ValueError, match="unknown label"):
        parse_label(label)
    # ... by every reader, not skipped silently
    synthetic_image(0, seed=1).save(tmp_path / "a.png")
    (tmp_path / "bad.csv").write_text(f"path,label\na.png,{label}\n")
    with pytest.raises(ValueError, match="unknown label"):
        load_records(str(tmp_path / "bad.csv"))
    rows = synthetic_rows(per_source_train=2, per_source_test=0, sources=("s",))
    rows[1]["label"] = label
    with pytest.raises(ValueError, match="unknown label"):
        load_records(str(write_parquet(tmp_path / "bad.parquet", rows)))


def test_parse_label_accepts_the_documented_names():
    for name in ("real", "REAL", " real ", "0", "human", "photo", 0):
        assert parse_label(name) == 0
    for name in ("fake", "ai", "AI", "ai_generated", "ai-generated", "generated", "synthetic", "1", 1):
        assert parse_label(name) == 1


def _records_with_duplicates(tmp_path: Path) -> list[Record]:
    records = [Record(f"image-{i}".encode(), i % 2, "a" if i < 150 else "b") for i in range(300)]
    for i in range(0, 60, 3):  # the same bytes again under other sources (as the FFHQ face sets share reals)
        records.append(Record(f"image-{i}".encode(), i % 2, "c"))
        records.append(Record(f"image-{i}".encode(), i % 2, "d", split="train"))
    path = tmp_path / "dup.bin.png"  # and once as a file on disk holding the same bytes
    path.write_bytes(b"image-3")
    records.append(Record(str(path), 1, "e"))
    return records


def test_split_validation_is_deterministic_and_keeps_identical_images_together(tmp_path):
    records = _records_with_duplicates(tmp_path)
    train, val = split_validation(records, 0.2, seed=0)
    assert len(train) + len(val) == len(records)
    again_train, again_val = split_validation(list(records), 0.2, seed=0)
    assert [id(r) for r in again_train] == [id(r) for r in train] and [id(r) for r in again_val] == [id(r) for r in val]

    side = {}
    for name, part in (("train", train), ("val", val)):
        for record in part:
            assert side.setdefault(record.key, name) == name, "identical images on both sides of the split"
    assert 0.12 < len({r.key for r in val}) / len({r.key for r in records}) < 0.28

    _, other_val = split_validation(records, 0.2, seed=1)
    assert {r.key for r in other_val} != {r.key for r in val}, "the seed changes the split"
    assert split_validation(records, 0.0, seed=0)[1] == []


def test_sample_weights_balance_classes_and_sources():
    records = ([Record(b"", 0, "a") for _ in range(10)] + [Record(b"", 1, "a") for _ in range(2)]
               + [Record(b"", 0, "b") for _ in range(3)] + [Record(b"", 1, "b") for _ in range(30)])
    labels = np.array([r.label for r in records])
    sources = np.array([r.source for r in records])

    def mass(weights, mask) -> float:
        return float(weights[mask].sum())

    for share, expected in ((None, {"a": 0.5, "b": 0.5}), ({"a": 0.8, "b": 0.2}, {"a": 0.8, "b": 0.2}),
                            ({"a": 3.0, "b": 1.0}, {"a": 0.75, "b": 0.25})):
        weights = sample_weights(records, share).numpy()
        assert weights.dtype == np.float64 and (weights > 0).all()
        assert mass(weights, np.ones(len(records), bool)) == pytest.approx(1.0)
        assert mass(weights, labels == 0) == pytest.approx(0.5) and mass(weights, labels == 1) == pytest.approx(0.5)
        for source, value in expected.items():
            assert mass(weights, sources == source) == pytest.approx(value), (share, source)
        for source in "ab":  # within a (source, class) group every image is equally likely
            for label in (0, 1):
                group = weights[(sources == source) & (labels == label)]
                assert np.allclose(group, group[0])

    # a source with one class only still leaves each class half of the mass
    lopsided = records + [Record(b"", 1, "fakes_only") for _ in range(5)]
    weights = sample_weights(lopsided).numpy()
    lopsided_labels = np.array([r.label for r in lopsided])
    assert mass(weights, lopsided_labels == 0) == pytest.approx(0.5)


# ============================================================================ augment


# The training views (tiles on the pixel grid, global view) are tested in tests/test_views.py.


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_degradations_return_rgb_images(mode):
    image = synthetic_image(0, seed=3, size=(64, 48)).convert(mode).convert("RGB")
    assert list(DEGRADATIONS) == ROBUSTNESS
    for name, degrade in DEGRADATIONS.items():
        out = degrade(image)
        assert isinstance(out, Image.Image) and out.mode == "RGB", name
        expected = {"resize_0.5x": (32, 24), "crop_0.7": (45, 34)}.get(name, (64, 48))
        assert out.size == expected, name
        if name != "clean":
            assert np.asarray(out).shape != np.asarray(image).shape or not np.array_equal(np.asarray(out), np.asarray(image)), name
    assert DEGRADATIONS["resize_0.5x"](Image.new("RGB", (1, 1))).size == (1, 1)


# ============================================================================ config


def _parse(argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve(parser.parse_args(argv))


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_config_file_then_command_line_flags_win(fmt, tmp_path):
    values = {"model": "convitx_tiny", "epochs": 7, "lr": 0.01, "sources": ["alpha"], "hub_private": True,
              "dropout": 0.3, "batch_size": 8}
    path = tmp_path / f"cfg.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    cfg = _parse(["--config", str(path), "--epochs", "3", "--no-hub-private", "--sources", "alpha", "beta",
                  "--batch-size", "4"])
    assert (cfg.epochs, cfg.hub_private, cfg.sources, cfg.batch_size) == (3, False, ["alpha", "beta"], 4)  # flags
    assert (cfg.model, cfg.lr, cfg.dropout) == ("convitx_tiny", 0.01, 0.3)  # file
    assert (cfg.weight_decay, cfg.samples_per_epoch) == (TrainConfig.weight_decay, TrainConfig.samples_per_epoch)
    assert isinstance(cfg.epochs, int) and isinstance(cfg.lr, float)
    assert _parse([]) == TrainConfig()

    path.write_text(json.dumps({"epochs": 2, "learning_rate": 0.1}))
    with pytest.raises(SystemExit, match="learning_rate"):
        _parse(["--config", str(path)])


# ============================================================================ fit end to end


@SLOW
def test_fit_cli_writes_a_calibrated_loadable_checkpoint(fitted, tmp_path):
    out, best = fitted["out"], fitted["best"]
    assert {p.name for p in best.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    config = json.loads((best / "config.json").read_text())
    assert config["name"] == "convitx_tiny"
    rule = config["decision"]
    assert 0.05 <= rule["temperature"] <= 20.0
    assert 0.5 <= rule["threshold"] <= 0.99
    lo, hi = rule["uncertain_band"]
    assert 0.0 <= lo <= rule["threshold"] <= hi <= 1.0
    assert config["branches"] == json.loads(json.dumps(get_config("convitx_tiny").to_dict()))["branches"]
    meta = config["meta"]
    assert meta["fit_command"] == "python -m train " + " ".join(fitted["args"])
    assert meta["calibration"]["temperature"] == rule["temperature"]
    assert set(meta["calibration"]["verdict_precision"]) == {"ai_generated", "real"}
    assert {"ai_precision", "real_precision", "uncertain_rate"} <= set(meta["validation_metrics"]["overall"])
    assert meta["train_sources"] == ["alpha", "beta"]
    assert meta["train_images"] + meta["validation_images"] == 48  # the train split only
    assert "overall" in meta["validation_metrics"]
    card = (best / "README.md").read_text()
    assert "# ConVitX `convitx_tiny`" in card and "## Validation (calibrated threshold)" in card

    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in entries] == [1, 2]
    assert all(np.isfinite(e["train_loss"]) and e["val_auc"] is not None for e in entries)
    assert (out / "command.txt").read_text().strip() == meta["fit_command"]
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["model"], saved["epochs"], saved["samples_per_epoch"], saved["batch_size"]) == ("convitx_tiny", 2, 64, 16)
    assert (out / LATEST).read_text().strip() == "checkpoint-0002"
    train, val = split_validation(load_records(str(fitted["data"]), split="train"), 0.25, seed=0)
    assert (meta["train_images"], meta["validation_images"]) == (len(train), len(val))
    assert f"data: {len(train)} train / {len(val)} validation images" in fitted["proc"].stdout
    assert_no_pickles(out)

    detector = Detector.from_pretrained(best, device="cpu")
    assert detector.config.decision.threshold == rule["threshold"]
    prediction = detector.predict(_sample_image(tmp_path), cam=False)
    assert 0.0 <= prediction.p_fake <= 1.0
    assert prediction.label in {"real", "ai_generated", "uncertain"}


@SLOW
def test_fit_from_an_image_folder_with_a_yaml_config_and_a_flag_override(tmp_path):
    data = write_image_folder(tmp_path / "folder", per_class=12)
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(f"model: convitx_tiny\ndata: {data}\nepochs: 4\nsamples_per_epoch: 32\nbatch_size: 16\n"
                      f"num_workers: 0\nval_fraction: 0.25\nlr: 0.004\nout: {tmp_path / 'not-this'}\n")
    proc = run_train(["fit", "--config", config, "--epochs", "1", "--out", out])
    assert proc.returncode == 0, failure(proc)
    saved = json.loads((out / "train_config.json").read_text())
    assert (saved["epochs"], saved["out"]) == (1, str(out))  # flags
    assert (saved["samples_per_epoch"], saved["lr"], saved["data"]) == (32, 0.004, str(data))  # file
    assert not (tmp_path / "not-this").exists()
    assert metrics_epochs(out) == [1]
    assert "data: " in proc.stdout and f"images from {data}" in proc.stdout
    assert Detector.from_pretrained(out / "best", device="cpu").predict(_sample_image(tmp_path), cam=False)
    assert_no_pickles(out)


# ============================================================================ resume and checkpoints


@SLOW
def test_killed_run_resumes_where_it_stopped(tiny_parquet, tmp_path):
    out = tmp_path / "run"
    epochs, samples, batch = 8, 128, 16
    args = tiny_fit_args(tiny_parquet, out, epochs=epochs, samples=samples)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], cwd=REPO_ROOT, env=subprocess_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while not (out / LATEST).exists():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 during a later epoch: no cleanup runs
    finally:
        proc.kill()
        proc.wait()
        log.close()
    done = int((out / LATEST).read_text().strip().split("-")[1])
    assert 1 <= done < epochs, f"the run finished ({done} epochs) before it could be killed"
    assert latest_checkpoint(out) == out / f"checkpoint-{done:04d}"
    # What a kill can also leave: the next epoch's metrics line written before its checkpoint, and half a line.
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": done + 1, "train_loss": 0.1}) + "\n" + '{"epoch": ' + str(done + 2))

    again = run_train(args)
    assert again.returncode == 0, failure(again)
    assert f"resuming from {out / f'checkpoint-{done:04d}'} (epoch {done} done" in again.stdout
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in entries] == list(range(1, epochs + 1))
    steps = samples // batch  # the schedule continues: each epoch's last lr is where it would be uninterrupted
    for entry in entries:
        expected = lr_at(entry["epoch"] * steps - 1, epochs * steps, int(0.5 * steps), 2e-3, 0.02)
        assert entry["lr"] == pytest.approx(expected), entry["epoch"]
    assert (out / LATEST).read_text().strip() == f"checkpoint-{epochs:04d}"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{epochs:04d}"]
    assert json.loads((out / f"checkpoint-{epochs:04d}" / "trainer_state.json").read_text())["epoch"] == epochs
    Detector.from_pretrained(out / "best", device="cpu")
    assert_no_pickles(out)


def _random_views(n: int = 4, tiles_per_image: int = 2):
    """(tiles, owner, global_view) for convitx_tiny: 32 px tiles, 64 px global views."""
    owner = torch.arange(n).repeat_interleave(tiles_per_image)
    return torch.randn(n * tiles_per_image, 3, 32, 32), owner, torch.randn(n, 3, 64, 64)


def _trained_model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("convitx_tiny")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(*_random_views()), torch.tensor([0, 1, 0, 1]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    model, optimizer = _trained_model_and_optimizer(seed=0)
    folder = save_training_checkpoint(tmp_path, model, optimizer, {"epoch": 3, "best_auc": 0.75})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "optimizer.safetensors",
                                                        "preprocessor_config.json", "trainer_state.json"]
    assert_no_pickles(tmp_path)

    fresh, fresh_optimizer = _trained_model_and_optimizer(seed=1)  # different weights and moments
    fresh_optimizer.param_groups[0]["lr"] = 0.5
    state = load_training_checkpoint(folder, fresh, fresh_optimizer)
    assert state == {"epoch": 3, "best_auc": 0.75}
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    original, restored = optimizer.state_dict(), fresh_optimizer.state_dict()
    # JSON metadata brings betas back as a list: the same numbers, and AdamW unpacks either
    assert [{**g, "betas": tuple(g["betas"])} for g in restored["param_groups"]] == original["param_groups"]
    assert original["state"].keys() == restored["state"].keys() and original["state"]
    for param_id, param_state in original["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(param_state[key], restored["state"][param_id][key]), (param_id, key)

    # and training goes on from the restored state exactly as it would have
    batch, target = _random_views(), torch.tensor([1, 0, 1, 0])
    for m, opt in ((model, optimizer), (fresh, fresh_optimizer)):
        torch.manual_seed(7)  # the Swin branch's stochastic depth draws the same paths
        torch.nn.functional.cross_entropy(m(*batch), target).backward()
        opt.step()
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_half_written_checkpoints_never_become_latest(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert latest_checkpoint(out) is None
    model, optimizer = _trained_model_and_optimizer()
    first = save_training_checkpoint(out, model, optimizer, {"epoch": 1, "best_auc": 0.6})
    assert latest_checkpoint(out) == first

    # a kill in the middle of writing epoch 9: model written, optimizer and trainer_state.json not yet
    from detector import save_checkpoint

    partial = save_checkpoint(model, out / "checkpoint-0009")
    (partial / "optimizer.safetensors").write_bytes(b"\x00" * 10)  # truncated
    (out / f".{LATEST}.tmp").write_text("checkpoint-0009")  # the pointer's temp file, never renamed
    (out / "checkpoint-0010").mkdir()  # an empty one
    assert latest_checkpoint(out) == first
    assert load_training_checkpoint(latest_checkpoint(out), *_trained_model_and_optimizer(seed=5))["epoch"] == 1

    # a pointer naming a folder that lost its trainer_state.json is not trusted either
    (out / LATEST).write_text("checkpoint-0009")
    assert latest_checkpoint(out) is None
    (out / LATEST).write_text(first.name)

    # the next complete save takes over and clears the debris
    second = save_training_checkpoint(out, model, optimizer, {"epoch": 2, "best_auc": 0.7})
    assert latest_checkpoint(out) == second
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0002"]
    assert (out / LATEST).read_text() == "checkpoint-0002"


# ============================================================================ distributed


@SLOW
def test_torchrun_two_cpu_processes_with_gloo(tiny_parquet, tmp_path):
    out = tmp_path / "ddp"
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    torchrun = ("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "-m", "train")
    proc = run_train(tiny_fit_args(tiny_parquet, out), env=env, module=torchrun)
    assert proc.returncode == 0, failure(proc)
    # One process group of two: only rank 0 prints and writes (two independent runs would print twice).
    assert sum(line.startswith("data: ") for line in proc.stdout.splitlines()) == 1, proc.stdout
    assert metrics_epochs(out) == [1, 2]
    assert (out / LATEST).read_text().strip() == "checkpoint-0002"
    config = json.loads((out / "best" / "config.json").read_text())
    assert "fit_command" in config["meta"] and 0.5 <= config["decision"]["threshold"] <= 0.99
    detector = Detector.from_pretrained(out / "best", device="cpu")
    assert 0.0 <= detector.predict(_sample_image(tmp_path), cam=False).p_fake <= 1.0
    assert_no_pickles(out)


# ============================================================================ calibrate


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


def test_fit_temperature_softens_overconfident_logits():
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 1.5, 4000)  # the true log-odds of "fake"
    labels = torch.as_tensor(rng.random(4000) < 1 / (1 + np.exp(-margin))).long()
    logits = torch.as_tensor(np.stack([np.zeros_like(margin), 4 * margin], axis=1)).float()  # 4x overconfident
    temperature = fit_temperature(logits, labels)
    assert 3.0 < temperature < 5.5
    assert _nll(logits, labels, temperature) < _nll(logits, labels, 1.0) - 0.05
    calibrated = fit_temperature(logits / 4, labels)  # already calibrated: T stays near 1
    assert 0.75 < calibrated < 1.35


def _macro_fpr(p_fake, labels, sources, threshold) -> float:
    return float(np.mean([(p_fake[(sources == s) & (labels == 0)] >= threshold).mean()
                          for s in np.unique(sources[labels == 0])]))


def test_choose_threshold_keeps_macro_fpr_within_budget_and_at_least_half():
    rng = np.random.default_rng(1)
    # source "big": 1000 easy reals; source "small": 20 reals, 4 of them scored high (0.6 .. 0.9).
    # Pooled, 4/1020 = 0.4% of reals are flagged at 0.5; averaged over sources it is 10%.
    p_fake = np.concatenate([rng.uniform(0.0, 0.3, 1000), rng.uniform(0.0, 0.3, 16), [0.6, 0.7, 0.8, 0.9],
                             rng.uniform(0.4, 1.0, 500)])
    labels = np.array([0] * 1020 + [1] * 500)
    sources = np.array(["big"] * 1000 + ["small"] * 20 + ["big"] * 250 + ["small"] * 250)
    thresholds = {}
    for max_fpr in (0.01, 0.05, 0.1, 0.3):
        threshold = choose_threshold(p_fake, labels, sources, max_fpr)
        assert 0.5 <= threshold <= 0.99
        assert _macro_fpr(p_fake, labels, sources, threshold) <= max_fpr
        thresholds[max_fpr] = threshold
    # macro, not pooled (pooled, 0.5 would do for every budget here): the small source counts
    assert thresholds[0.01] > 0.9 and 0.7 < thresholds[0.05] < 0.8 and thresholds[0.1] == thresholds[0.3] == 0.5
    assert thresholds[0.01] >= thresholds[0.05] >= thresholds[0.1] >= thresholds[0.3]

    easy = choose_threshold(np.array([0.1, 0.2, 0.9, 0.95]), np.array([0, 0, 1, 1]), np.array(["a"] * 4), 0.05)
    assert easy == 0.5  # never below 0.5, even when a lower one would separate the classes
    no_reals = choose_threshold(np.array([0.2, 0.9]), np.array([1, 1]), np.array(["a", "a"]), 0.05)
    assert no_reals == 0.5


# choose_band and the verdict-precision report: tests/test_verdict_precision.py.


# ============================================================================ evaluate


@SLOW
def test_evaluate_cli_writes_metrics_plots_robustness_and_updates_the_card(fitted, tiny_parquet, tmp_path):
    import shutil

    model = shutil.copytree(fitted["best"], tmp_path / "model")
    report = tmp_path / "eval"
    args = ["evaluate", "--model", model, "--data", tiny_parquet, "--out", report, "--update-card", "--num-workers", "0"]
    proc = run_train(args)
    assert proc.returncode == 0, failure(proc)
    for name in ("metrics.json", "metrics.md", "reliability.png", "roc.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    for plot in ("reliability.png", "roc.png"):
        with Image.open(report / plot) as image:
            assert image.format == "PNG" and min(image.size) > 100

    result = json.loads((report / "metrics.json").read_text())
    assert result["split"] == "test"
    assert set(result["per_source"]) == {"overall", "alpha", "beta"}
    assert result["per_source"]["overall"]["n"] == 12
    assert result["threshold"] == json.loads((model / "config.json").read_text())["decision"]["threshold"]
    robustness = result["robustness"]
    assert set(robustness) == {"overall", "alpha", "beta", "macro"}
    for row in robustness.values():
        assert list(row) == ROBUSTNESS
    assert all(0.0 <= v <= 1.0 for v in robustness["overall"].values())

    markdown = (report / "metrics.md").read_text()
    assert "| AUC | " + " | ".join(ROBUSTNESS) + " |" in markdown
    card = (model / "README.md").read_text()
    assert "## Test results" in card and "### Robustness (AUC per degradation)" in card
    assert "| set | " + " | ".join(ROBUSTNESS) + " |" in card
    assert "## Reproduce" in card and "python -m train fit" in card and "python -m train evaluate" in card
    assert f"{result['per_source']['overall']['accuracy']:.4f}" in card
    Detector.from_pretrained(model, device="cpu")  # config and weights untouched by the card update
    assert file_digests(model)["model.safetensors"] == file_digests(fitted["best"])["model.safetensors"]


# ============================================================================ push to the Hub

LOADER = r"""
import json, sys
from detector import Detector
image, refs = sys.argv[1], sys.argv[2:]
print(json.dumps([Detector.from_pretrained(ref, device="cpu").predict(image, cam=False).p_fake for ref in refs]))
"""


def _load_p_fakes(refs: list[str], image: Path, endpoint: str, hf_home: Path) -> list[float]:
    env = subprocess_env(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home))
    proc = run_train([image, *refs], env=env, module=("-c", LOADER), timeout=200)
    assert proc.returncode == 0, failure(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@SLOW
def test_push_then_load_by_repo_id(fitted, hub_server, tmp_path):
    hub_server.token = "hf_test_token"
    best = fitted["best"]
    before = file_digests(best)
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_TOKEN="hf_test_token", HF_HOME=str(tmp_path / "hf_push"))
    proc = run_train(["push", "--model", best, "--repo", "org/name"], env=env)
    assert proc.returncode == 0, failure(proc)
    assert "pushed" in proc.stderr and "org/name" in proc.stderr
    files = hub_server.files("org/name")
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md", "preprocessor_config.json"}
    for name in ("config.json", "model.safetensors", "README.md"):
        assert sha1(files[name]) == before[name], name
    assert file_digests(best) == before

    image = _sample_image(tmp_path)
    local, remote = _load_p_fakes([str(best), "org/name"], image, hub_server.endpoint, tmp_path / "fresh_home")
    assert remote == pytest.approx(local, abs=1e-6)
    assert ("GET", "/api/models/org/name/revision/main") in hub_server.requests  # resolved once, then by commit


@SLOW
def test_fit_push_to_hub_pushes_the_calibrated_best(tiny_parquet, hub_server, tmp_path):
    out = tmp_path / "run"
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"))
    proc = run_train(tiny_fit_args(tiny_parquet, out, "--push-to-hub", "org/name2", epochs=1), env=env)
    assert proc.returncode == 0, failure(proc)
    files = hub_server.files("org/name2")
    local = file_digests(out / "best")
    for name in ("config.json", "model.safetensors", "README.md"):
        assert sha1(files[name]) == local[name], name
    assert "fit_command" in json.loads(files["config.json"])["meta"]  # pushed after calibration, not before


def _closed_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


@SLOW
def test_failed_push_exits_1_keeps_the_checkpoint_and_says_how_to_retry(fitted, hub_server, tmp_path):
    best = fitted["best"]
    before = file_digests(best)
    retry = f"python -m train push --model {best} --repo org/name"

    # nobody listening
    env = subprocess_env(HF_ENDPOINT=_closed_endpoint(), HF_HOME=str(tmp_path / "hf1"))
    proc = run_train(["push", "--model", best, "--repo", "org/name"], env=env, timeout=200)
    assert proc.returncode == 1, failure(proc)
    assert retry in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert str(best.resolve()) in proc.stderr  # where the intact checkpoint is

    # a token the server rejects
    hub_server.token = "the-right-token"
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_TOKEN="a-wrong-token", HF_HOME=str(tmp_path / "hf2"))
    proc = run_train(["push", "--model", best, "--repo", "org/name", "--revision", "v2"], env=env, timeout=200)
    assert proc.returncode == 1, failure(proc)
    assert f"{retry} --revision v2" in proc.stderr, proc.stderr
    assert "org/name" not in hub_server.repos
    assert file_digests(best) == before
    Detector.from_pretrained(best, device="cpu")

    # a folder that is not a checkpoint is refused before any request
    requests = len(hub_server.requests)
    proc = run_train(["push", "--model", tmp_path, "--repo", "org/name"], env=env, timeout=200)
    assert proc.returncode == 1 and "nothing to push" in proc.stderr, failure(proc)
    assert len(hub_server.requests) == requests


@SLOW
def test_fit_with_a_failing_push_keeps_the_trained_checkpoint(tiny_parquet, tmp_path):
    out = tmp_path / "run"
    env = subprocess_env(HF_ENDPOINT=_closed_endpoint(), HF_HOME=str(tmp_path / "hf_home"))
    proc = run_train(tiny_fit_args(tiny_parquet, out, "--push-to-hub", "org/unreachable", epochs=1), env=env)
    assert proc.returncode == 1, failure(proc)
    assert f"retry with: python -m train push --model {out / 'best'} --repo org/unreachable" in proc.stderr
    config = json.loads((out / "best" / "config.json").read_text())
    assert "calibration" in config["meta"]  # trained and calibrated before the push was tried
    Detector.from_pretrained(out / "best", device="cpu")
    assert metrics_epochs(out) == [1]


# ============================================================================ search


@SLOW
def test_search_cli_runs_trials_and_reports_the_best_parameters(tiny_parquet, tmp_path):
    out = tmp_path / "search"
    args = ["search", "--trials", "2", "--model", "convitx_tiny", "--data", tiny_parquet, "--epochs", "1",
            "--samples-per-epoch", "128", "--num-workers", "0", "--val-fraction", "0.25", "--out", out]
    proc = run_train(args)
    assert proc.returncode == 0, failure(proc)
    summary = json.loads((out / "search.json").read_text())
    assert set(summary["best_params"]) == {"lr", "batch_size", "dropout"}
    assert 1e-4 <= summary["best_params"]["lr"] <= 3e-3 and summary["best_params"]["batch_size"] in (32, 64, 128)
    assert 0.0 <= summary["best_params"]["dropout"] <= 0.5
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    assert summary["best_value"] == max(t["value"] for t in summary["trials"])
    for trial in summary["trials"]:
        folder = out / f"trial-{trial['number']:03d}"
        assert metrics_epochs(folder) == [1]
        dropout = json.loads((folder / "best" / "config.json").read_text())["dropout"]
        assert dropout == pytest.approx(trial["params"]["dropout"])
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == summary["best_params"]
    assert_no_pickles(out)


# ============================================================================ Hub dataset id


@SLOW
@needs_shared
def test_load_records_from_a_hub_dataset_id(hub_server, tmp_path):
    """``--data org/dataset``: the datasets library downloads it from HF_ENDPOINT (here the test Hub)."""
    table = pq.read_table(CARDAMAGE)
    labels, splits = table.column("label").to_pylist(), table.column("split").to_pylist()
    pick = [next(i for i in range(len(labels)) if (labels[i], splits[i]) == key)
            for key in (("real", "train"), ("fake", "train"), ("real", "test"), ("fake", "test"))]
    pick += [i for i in range(len(labels)) if i not in pick][:6]
    first = tmp_path / "v1" / "data"
    first.mkdir(parents=True)
    pq.write_table(table.take(pick), first / "train-00000-of-00001.parquet")  # keeps the HF schema metadata
    second = tmp_path / "v2" / "data"
    second.mkdir(parents=True)
    pq.write_table(table.take(pick[:4]), second / "train-00000-of-00001.parquet")
    sha = hub_server.seed("datasets/org/cars", first.parent)
    hub_server.seed("datasets/org/cars", second.parent)

    script = r"""
import hashlib, json, sys
from train.data import load_records
def rows(records):
    return [[r.label, r.source, r.generator, r.split, hashlib.sha1(r.image).hexdigest()] for r in records]
print(json.dumps({"main": rows(load_records("org/cars")), "pinned": rows(load_records("org/cars@" + sys.argv[1])),
                  "test": rows(load_records("org/cars", split="test"))}))
"""
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"))
    proc = run_train([sha], env=env, module=("-c", script))
    assert proc.returncode == 0, failure(proc)
    got = json.loads(proc.stdout.strip().splitlines()[-1])

    def local(folder: Path, split=None):
        return [[r.label, r.source, r.generator, r.split, sha1(r.image)]
                for r in load_records(str(folder / "train-00000-of-00001.parquet"), split=split)]

    assert got["pinned"] == local(first) and len(got["pinned"]) == 10
    assert got["main"] == local(second) and len(got["main"]) == 4
    assert got["test"] == local(second, "test") and {r[3] for r in got["test"]} == {"test"}
    assert {r[0] for r in got["pinned"]} == {0, 1} and {r[1] for r in got["pinned"]} == {"gpt4o_cardamage"}
    assert any(path.startswith("/api/datasets/org/cars") for _, path in hub_server.requests)
