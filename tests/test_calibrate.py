"""`python -m train calibrate` takes the validation split from the run's saved train_config.json.

A leave-one-source-out run (alpha excluded, non-default seed and validation fraction) is trained
for real; calibrating its best/ again with no split flags must land on exactly the split the run
held out (same images per source, same fitted temperature/threshold/band). The default flags
(which include alpha and another seed/fraction) would give a different split: the check can fail.
"""
from __future__ import annotations

import json
import shutil

import pytest

from train_helpers import failure, run_train, synthetic_rows, tiny_fit_args, write_parquet

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def loso_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    data = write_parquet(root / "data" / "mix.parquet", synthetic_rows(sources=("alpha", "beta", "gamma")))
    out = root / "without-alpha"
    args = tiny_fit_args(data, out, "--exclude-sources", "alpha", "--seed", "7", epochs=1, samples=32)
    args[args.index("--val-fraction") + 1] = "0.3"
    proc = run_train(args)
    assert proc.returncode == 0, failure(proc)
    return data, out


def _meta(folder) -> dict:
    config = json.loads((folder / "config.json").read_text())
    rule = config["decision"]
    return {"temperature": rule["temperature"], "threshold": rule["threshold"], "band": rule["uncertain_band"],
            **{k: config["meta"][k] for k in ("train_sources", "train_images", "validation_images",
                                              "validation_metrics")}}


def test_calibrate_reproduces_the_runs_own_validation_split(loso_run):
    data, out = loso_run
    best = out / "best"
    fitted = _meta(best)
    assert fitted["train_sources"] == ["beta", "gamma"]

    proc = run_train(["calibrate", "--model-dir", best])
    assert proc.returncode == 0, failure(proc)
    again = _meta(best)
    assert {k: again[k] for k in ("train_sources", "train_images", "validation_images")} == {
        k: fitted[k] for k in ("train_sources", "train_images", "validation_images")}
    assert {s: m["n"] for s, m in again["validation_metrics"].items()} == {
        s: m["n"] for s, m in fitted["validation_metrics"].items()}
    assert again["temperature"] == pytest.approx(fitted["temperature"], rel=1e-6)
    assert again["threshold"] == pytest.approx(fitted["threshold"], abs=1e-6)
    assert again["band"] == pytest.approx(fitted["band"], abs=1e-6)

    # The same checkpoint elsewhere, its run config gone: refused, and nothing is rewritten...
    orphan = out.parent / "orphan" / "best"
    shutil.copytree(best, orphan)
    before = (orphan / "config.json").read_bytes()
    proc = run_train(["calibrate", "--model-dir", orphan])
    assert proc.returncode == 2, failure(proc)
    assert "no run config" in proc.stderr and "--split-from-flags" in proc.stderr and "Traceback" not in proc.stderr
    assert (orphan / "config.json").read_bytes() == before
    proc = run_train(["calibrate", "--model-dir", orphan, "--split-from-flags", "--data", data])
    assert proc.returncode == 2 and "--seed" in proc.stderr and "--val-fraction" in proc.stderr, failure(proc)

    # ...unless the split is spelled out. These flags name another split (alpha included), and it shows.
    proc = run_train(["calibrate", "--model-dir", orphan, "--split-from-flags", "--data", data, "--seed", "0",
                      "--val-fraction", "0.1"])
    assert proc.returncode == 0, failure(proc)
    other = _meta(orphan)
    assert other["train_sources"] == ["alpha", "beta", "gamma"]
    assert other["validation_images"] != fitted["validation_images"]


def test_flags_that_would_move_the_split_are_refused(loso_run):
    data, out = loso_run
    proc = run_train(["calibrate", "--model-dir", out / "best", "--seed", "0"])
    assert proc.returncode == 2, failure(proc)
    assert "--seed differ from the run's" in proc.stderr and str(out / "train_config.json") in proc.stderr
    proc = run_train(["calibrate", "--model-dir", out / "best", "--seed", "7", "--data", data])  # same as saved: fine
    assert proc.returncode == 0, failure(proc)
