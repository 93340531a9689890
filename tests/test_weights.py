"""The embedded default checkpoint: present, small, documented, and serving real verdicts."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detector import ConVitXConfig, Detector, get_config, list_models
from detector.hub import EMBEDDED_WEIGHTS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def test_layout_and_size():
    names = {p.name for p in EMBEDDED_WEIGHTS.iterdir()}
    assert {"config.json", "model.safetensors", "README.md"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names), "pickled weights must never ship"
    total = sum(p.stat().st_size for p in EMBEDDED_WEIGHTS.iterdir())
    assert total <= 30 * 1024 * 1024


def test_config_is_calibrated_and_card_is_reproducible():
    """Properties, not numbers: whichever model weights/ holds (the 0.1 layout or a retrained one)."""
    config = ConVitXConfig.load(EMBEDDED_WEIGHTS / "config.json")
    assert config.name in list_models()
    rule = config.decision
    assert rule.temperature != 1.0  # fitted, not the default
    lo, hi = rule.uncertain_band
    assert 0.5 <= rule.threshold and lo <= rule.threshold <= hi
    if not config.meta.get("legacy_layout"):
        assert config.branches == get_config(config.name).branches, "the registry rebuilds the shipped architecture"
        assert "calibration" in config.meta and set(config.meta["calibration"]["verdict_precision"]) == {"ai_generated", "real"}
    card = (EMBEDDED_WEIGHTS / "README.md").read_text()
    # Trained by `fit` and tested by `evaluate`, or (a head on a frozen encoder) trained and tested by `fit-head` on the
    # features `cache-features` wrote: either way the card names the commands.
    assert ("python -m train fit" in card and "python -m train evaluate" in card) or (
        "python -m train cache-features" in card and "python -m train fit-head" in card)
    assert config.meta["fit_command"] in card, "the card names the command that trained these weights"
    # The card's decision line is the config's rule, to the digit it prints.
    assert (f"- Decision: {rule.describe()} (calibrated p; temperature {rule.temperature:.3f}, "
            f"threshold {rule.threshold:.3f}, can't-tell band {lo:.3f}–{hi:.3f})") in card
    assert re.search(r"\| cifake \| \d+ \| 0\.\d{4}", card), "the card reports CIFAKE test metrics"


def test_default_detector_gives_a_verdict_on_the_examples():
    detector = Detector.from_pretrained()  # no argument: $CONVITX_MODEL or weights/
    examples = sorted((ROOT / "examples").glob("*.[jp][pn]g"))
    assert examples
    for example in examples:
        prediction = detector.predict(example)
        assert prediction.label in {"real", "ai_generated", "uncertain"}
        assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-5
        assert prediction.heatmap is not None and 0.0 <= prediction.heatmap.min() and prediction.heatmap.max() <= 1.0
        assert set(prediction.branch_heatmaps) == {b.name for b in detector.config.branches}
        assert prediction.heatmap.shape[0] / prediction.heatmap.shape[1] == pytest.approx(
            prediction.image.size[1] / prediction.image.size[0], rel=0.02)  # the image's aspect
        again = detector.predict(example, cam=False)
        assert again.p_fake == pytest.approx(prediction.p_fake, abs=1e-6)


def test_cli_runs_on_the_embedded_weights(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "CONVITX_MODEL"}
    result = subprocess.run(
        [sys.executable, "-m", "detector", "predict", "--no-cam", str(ROOT / "examples")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(0.0 <= row["p_fake"] <= 1.0 for row in rows)
