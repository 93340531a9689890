"""The embedded default checkpoint: present, small, documented, and serving real verdicts."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detector import Detector
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
    config = json.loads((EMBEDDED_WEIGHTS / "config.json").read_text())
    assert config["name"] == "convitx_small"
    assert config["temperature"] != 1.0  # fitted, not the default
    lo, hi = config["uncertain_band"]
    assert 0.5 <= config["threshold"] and lo <= config["threshold"] <= hi
    card = (EMBEDDED_WEIGHTS / "README.md").read_text()
    assert "python -m train fit" in card and "python -m train evaluate" in card
    assert re.search(r"\| cifake \| \d+ \| 0\.\d{4}", card), "the card reports CIFAKE test metrics"


def test_default_detector_gives_a_verdict_on_the_examples():
    detector = Detector.from_pretrained()  # no argument: $CONVITX_MODEL or weights/
    assert Path(detector.source).resolve() == EMBEDDED_WEIGHTS.resolve() or detector.source
    for example in sorted((ROOT / "examples").glob("*.[jp][pn]g")):
        prediction = detector.predict(example)
        assert prediction.label in {"real", "ai_generated", "uncertain"}
        assert abs(sum(prediction.probabilities.values()) - 1.0) < 1e-5
        assert prediction.heatmap is not None and prediction.heatmap.max() <= 1.0


def test_cli_runs_on_the_embedded_weights(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "CONVITX_MODEL"}
    result = subprocess.run(
        [sys.executable, "-m", "detector", "predict", "--no-cam", str(ROOT / "examples")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(0.0 <= row["p_fake"] <= 1.0 for row in rows)
