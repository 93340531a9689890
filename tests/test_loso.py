"""Leave-one-source-out: a same-budget baseline plus one run per held-out group, reported side by side."""
from __future__ import annotations

import json

import pytest

from train.config import TrainConfig
from train.loso import loso
from train_helpers import synthetic_rows, write_parquet

pytestmark = pytest.mark.timeout(300)


def test_loso_trains_without_each_group_and_scores_it_unseen(tmp_path):
    data = write_parquet(tmp_path / "data" / "mix.parquet", synthetic_rows(sources=("alpha", "beta", "gamma")))
    out = tmp_path / "loso"
    base = TrainConfig(model="convitx_tiny", data=str(data), out=str(out), epochs=1, samples_per_epoch=32,
                       batch_size=16, num_workers=0, cache_max_side=0)
    table = loso(base, groups={"alpha alone": ["alpha"], "beta and gamma": ["beta", "gamma"]})

    rows = json.loads((out / "loso.json").read_text())
    assert [r["group"] for r in rows] == ["alpha alone", "beta and gamma"]
    assert set(rows[1]["per_source"]) == {"beta", "gamma"}
    for row in rows:
        assert 0.0 <= row["auc_held_out"] <= 1.0 and 0.0 <= row["auc_trained_on_it"] <= 1.0
    # The held-out runs really never saw their group: their recorded training sources exclude it.
    held_out_config = json.loads((out / "without-alpha" / "best" / "config.json").read_text())
    assert held_out_config["meta"]["train_sources"] == ["beta", "gamma"]
    baseline_config = json.loads((out / "all-sources" / "best" / "config.json").read_text())
    assert baseline_config["meta"]["train_sources"] == ["alpha", "beta", "gamma"]
    assert "| alpha alone |" in table and table == (out / "loso.md").read_text()
