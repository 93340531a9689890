"""Honest calibration: the band makes each verdict reach its stated precision, or says loudly that it cannot.

Synthetic scores with known overlap stand in for a model's validation logits, so
whether 95% is reachable is decided by construction, not by a training run.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from corpus import save_tiny_checkpoint
from detector import ConVitXConfig, DecisionRule, load_checkpoint
from detector.hub import CARD_NAME, CONFIG_NAME
from train.calibrate import calibrate_rule, choose_band, macro_precision
from train.card import build_card
from train.config import TrainConfig
from train.data import Record
from train.fit import calibrate_checkpoint
from train.metrics import binary_metrics, per_source_metrics
from train_helpers import encode, synthetic_image

pytestmark = pytest.mark.timeout(120)


def _logits(n_per_class: int, separation: float, sources=("a", "b"), seed: int = 0):
    """Logit gaps ~ N(-sep, 1) for reals and N(+sep, 1) for fakes, in every source."""
    rng = np.random.default_rng(seed)
    gaps, labels, names = [], [], []
    for source in sources:
        for label, sign in ((0, -1.0), (1, 1.0)):
            gaps.append(rng.normal(sign * separation, 1.0, n_per_class))
            labels += [label] * n_per_class
            names += [source] * n_per_class
    gap = np.concatenate(gaps)
    logits = torch.as_tensor(np.stack([np.zeros_like(gap), gap], axis=1), dtype=torch.float32)
    return logits, np.array(labels), np.array(names)


def _verdict_precision(rule: DecisionRule, logits, labels, sources) -> dict[str, float | None]:
    """Per-source-averaged precision of each verdict, recomputed here from the rule alone."""
    verdicts = rule.decide_all(rule.p_fake(logits))
    return {"ai_generated": macro_precision(verdicts == 1, labels, sources, 1),
            "real": macro_precision(verdicts == 0, labels, sources, 0)}


def test_reachable_precision_is_reached_and_reported():
    logits, labels, sources = _logits(400, separation=2.0)
    rule, report = calibrate_rule(logits, labels, sources, min_precision=0.95)
    lo, hi = rule.uncertain_band
    assert 0.0 <= lo <= rule.threshold <= hi <= 1.0
    for name, info in report["verdict_precision"].items():
        assert info["reached"] is True, (name, info)
        assert info["precision"] >= 0.95 and info["target"] == 0.95
    assert report["warnings"] == []
    measured = _verdict_precision(rule, logits, labels, sources)
    assert measured["ai_generated"] >= 0.95 and measured["real"] >= 0.95
    assert report["uncertain_rate"] == pytest.approx(float((rule.decide_all(rule.p_fake(logits)) == -1).mean()))
    assert report["uncertain_rate"] < 0.5  # reachable without refusing most images
    # The band is the narrowest that works: a stricter target needs a wider band.
    strict, strict_report = calibrate_rule(logits, labels, sources, min_precision=0.99)
    assert strict.uncertain_band[1] - strict.uncertain_band[0] >= hi - lo
    assert strict_report["uncertain_rate"] >= report["uncertain_rate"]


def test_unreachable_precision_is_not_claimed_and_warns():
    logits, labels, sources = _logits(400, separation=0.3)  # heavy overlap: no band within +-0.2 gets to 95%
    rule, report = calibrate_rule(logits, labels, sources, min_precision=0.95, max_half_width=0.2)
    lo, hi = rule.uncertain_band
    assert rule.threshold - lo <= 0.2 + 1e-9 and hi - rule.threshold <= 0.2 + 1e-9
    missed = [name for name, info in report["verdict_precision"].items() if not info["reached"]]
    assert missed, report["verdict_precision"]
    measured = _verdict_precision(rule, logits, labels, sources)
    for name in missed:
        assert measured[name] is None or measured[name] < 0.95
        reported = report["verdict_precision"][name]["precision"]
        assert reported is None or reported < 0.95  # None: the band swallowed every such verdict
    assert len(report["warnings"]) == len(missed)
    for name, warning in zip(missed, report["warnings"]):
        assert f'"{name}"' in warning and "95%" in warning


def test_a_verdict_nobody_gets_is_not_a_precision_reached():
    """Scores all below the threshold: no "AI-generated" verdict exists, so its precision is not claimed."""
    labels = np.array([0, 1] * 50)
    sources = np.array(["s"] * 100)
    p_fake = np.random.default_rng(0).uniform(0.05, 0.3, 100)
    _, found = choose_band(p_fake, labels, sources, 0.5, min_precision=0.95, max_half_width=0.2)
    assert found["ai_generated"]["precision"] is None and found["ai_generated"]["reached"] is False
    assert found["real"]["reached"] is False  # half of the "Real" verdicts are wrong, at any band


def test_precision_is_averaged_over_sources_not_pooled():
    """A small source where "Real" is mostly wrong cannot hide behind a big easy one."""
    big = _logits(1000, separation=3.0, sources=("big",), seed=1)
    rng = np.random.default_rng(2)
    # source "small": 40 fakes that all score like reals, 40 reals
    small_gap = np.concatenate([rng.normal(-3, 1, 40), rng.normal(-3, 1, 40)])
    logits = torch.cat([big[0], torch.as_tensor(np.stack([np.zeros(80), small_gap], 1), dtype=torch.float32)])
    labels = np.concatenate([big[1], [0] * 40 + [1] * 40])
    sources = np.concatenate([big[2], ["small"] * 80])
    pooled = float((labels[(logits[:, 1] < 0).numpy()] == 0).mean())
    assert pooled > 0.95, "pooled, 'Real' would look fine"
    _, report = calibrate_rule(logits, labels, sources, min_precision=0.95, max_half_width=0.45)
    assert report["verdict_precision"]["real"]["reached"] is False
    assert report["verdict_precision"]["real"]["precision"] < 0.8
    assert any('"real"' in w for w in report["warnings"])


def test_choose_band_contains_the_threshold_and_widens_with_overlap():
    rng = np.random.default_rng(2)
    n = 2000
    labels = np.array([0] * n + [1] * n)
    sources = np.array(["s"] * (2 * n))

    def width(a: float, b: float, threshold: float = 0.5) -> float:
        p_fake = np.concatenate([rng.beta(a, b, n), rng.beta(b, a, n)])
        (lo, hi), found = choose_band(p_fake, labels, sources, threshold, min_precision=0.95, max_half_width=0.25)
        assert 0.0 <= lo <= threshold <= hi <= 1.0
        assert threshold - lo <= 0.25 + 1e-9 and hi - threshold <= 0.25 + 1e-9
        assert found["real"]["edge"] == lo and found["ai_generated"]["edge"] == hi
        return hi - lo

    assert width(1, 12) < 0.1 < width(3, 4)
    width(2, 5, threshold=0.7)  # an off-centre threshold stays inside its band too


def test_metrics_report_each_verdicts_precision_and_the_uncertain_share():
    rule = DecisionRule(threshold=0.5, uncertain_band=(0.3, 0.7))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    p_fake = np.array([0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.4, 0.6, 0.1, 0.25])
    # verdicts: real, real, unc, ai, ai, ai, unc, unc, real, real
    metrics = binary_metrics(labels, p_fake, rule)
    assert metrics["ai_verdicts"] == 3 and metrics["ai_precision"] == pytest.approx(2 / 3)
    assert metrics["real_verdicts"] == 4 and metrics["real_precision"] == pytest.approx(3 / 4)
    assert metrics["uncertain_rate"] == pytest.approx(3 / 10)
    none_ai = binary_metrics(np.array([0, 1]), np.array([0.1, 0.5]), rule)
    assert none_ai["ai_precision"] is None and none_ai["ai_verdicts"] == 0
    records = [Record(b"", int(y), "a" if i < 5 else "b") for i, y in enumerate(labels)]
    per_source = per_source_metrics(records, p_fake, rule)
    assert set(per_source) == {"overall", "a", "b"}
    for row in per_source.values():
        assert {"ai_precision", "real_precision", "uncertain_rate", "auc"} <= set(row)


def test_card_repeats_what_calibration_reached_and_what_it_did_not():
    logits, labels, sources = _logits(300, separation=0.3)
    rule, report = calibrate_rule(logits, labels, sources, max_half_width=0.2)
    config = ConVitXConfig.from_dict({**_tiny_dict(), "decision": {"temperature": rule.temperature,
                                      "threshold": rule.threshold, "uncertain_band": list(rule.uncertain_band)},
                                      "meta": {"calibration": {**report, "max_fpr": 0.05}}})
    card = build_card(config)
    assert "## Calibration" in card and "**NOT reached**" in card
    for warning in report["warnings"]:
        assert f"**Warning:** {warning}" in card
    good_rule, good = calibrate_rule(*_logits(300, separation=2.5))
    config.meta["calibration"] = {**good, "max_fpr": 0.05}
    card = build_card(config)
    assert "NOT reached" not in card and "**Warning:**" not in card and card.count(": reached") == 2


def _tiny_dict() -> dict:
    from detector import get_config

    return json.loads(json.dumps(get_config("convitx_tiny").to_dict()))


def test_calibrating_an_untrained_checkpoint_warns_in_the_output_config_and_card(tmp_path, capsys):
    """An untrained model cannot make either verdict 95% precise: calibration must say so, not hide it."""
    folder = save_tiny_checkpoint(tmp_path / "ckpt", seed=1)
    records = [Record(encode(synthetic_image(i % 2, seed=i, size=(40, 36))), i % 2, "ab"[i % 4 // 2]) for i in range(64)]
    cfg = TrainConfig(model="convitx_tiny", num_workers=0, min_precision=0.95, max_half_width=0.2)
    metrics = calibrate_checkpoint(folder, records, cfg, train_records=records[:8])
    err = capsys.readouterr().err
    config = json.loads((folder / CONFIG_NAME).read_text())
    calibration = config["meta"]["calibration"]
    missed = [n for n, info in calibration["verdict_precision"].items() if not info["reached"]]
    # Whatever an untrained net does on this data, its verdict precision stays far from 95% somewhere.
    assert missed, calibration["verdict_precision"]
    assert err.count("WARNING (calibration)") == len(missed) == len(calibration["warnings"])
    card = (folder / CARD_NAME).read_text()
    assert "**NOT reached**" in card and all(w in card for w in calibration["warnings"])
    assert {"ai_precision", "real_precision", "uncertain_rate"} <= set(metrics["overall"])
    _, loaded, _ = load_checkpoint(folder)
    assert loaded.decision.threshold == config["decision"]["threshold"] == calibration["threshold"]
