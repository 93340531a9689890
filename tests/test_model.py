"""Model, registry, config and checkpoint round trips, on real (untrained) networks."""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from corpus import assert_readable_message, noise_rgb, save_tiny_checkpoint, torch_threads
from detector import (
    UNCERTAIN,
    BranchConfig,
    ConVitX,
    ConVitXConfig,
    DecisionRule,
    Detector,
    ModelLoadError,
    PreprocessConfig,
    create_model,
    get_config,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from detector.hub import CARD_NAME, CONFIG_NAME, PREPROCESSOR_NAME, WEIGHTS_NAME
from detector.model import pool_tiles
from detector.transforms import collate_views, image_to_views

pytestmark = pytest.mark.timeout(400)

SMALL_NAMES = ["convitx_tiny", "convitx_small"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


def _seeded(name, seed: int = 0, **overrides) -> ConVitX:
    torch.manual_seed(seed)
    return create_model(name, **overrides).eval()


def _jsonable(config: ConVitXConfig) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def _images(n: int = 3, seed: int = 0) -> list[Image.Image]:
    sizes = [(64, 64), (150, 90), (40, 200), (32, 32), (300, 220)]
    return [Image.fromarray(noise_rgb(*sizes[i % len(sizes)], seed=seed + i)) for i in range(n)]


def _inputs(config: ConVitXConfig, images: list[Image.Image]):
    """(tiles, owner, global_view) through the detector's own preprocessing."""
    return collate_views([image_to_views(image, config.preprocess) for image in images])


def _with_decision(config: ConVitXConfig, **rule) -> ConVitXConfig:
    return dataclasses.replace(config, decision=dataclasses.replace(config.decision, **rule))


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_config():
    assert {"convitx_large", "convitx_small", "convitx_tiny"} <= set(list_models())
    assert list_models() == sorted(list_models())
    with pytest.raises(KeyError, match="convitx_tiny"):
        get_config("convitx_nope")


def test_get_config_overrides_and_fresh_copies():
    config = get_config("convitx_tiny", head_hidden=7)
    assert config.head_hidden == 7 and config.name == "convitx_tiny"
    config.branches[0].kwargs["mutated"] = True
    config.meta["mutated"] = True
    fresh = get_config("convitx_tiny")
    assert "mutated" not in fresh.branches[0].kwargs and "mutated" not in fresh.meta, "registry configs must not share state"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", list_models())
def test_every_registered_config_builds(name, request):
    """Whatever gets registered must build with timm (convitx_large: built once, shared)."""
    model = request.getfixturevalue("large_model")[0] if name == "convitx_large" else _seeded(name)
    assert isinstance(model, ConVitX)
    assert model.config == get_config(name)
    assert list(model.branches) == [b.name for b in model.config.branches]
    assert all(branch.num_features > 0 for branch in model.branches.values())
    assert model.head[-1].out_features == len(model.config.labels) == 2
    # NCHW map branches hook their map; token branches give Grad-CAM their patch grid instead.
    assert set(model.cam_target_layers) == {b.name for b in model.config.branches if b.readout == "map"}


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_small_models_forward(name):
    model = _seeded(name)
    images = _images(3)
    tiles, owner, glob = _inputs(model.config, images)
    with torch.no_grad():
        logits = model(tiles, owner, glob)
    assert logits.shape == (3, 2) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # One image's logits do not depend on the rest of the batch (no batch statistics in eval).
    with torch.no_grad():
        alone = model(*_inputs(model.config, images[1:2]))
    torch.testing.assert_close(alone, logits[1:2], rtol=1e-4, atol=1e-5)
    # Every branch emits an NCHW map: tiles branches one per tile, global branches one per image.
    with torch.no_grad():
        maps = model.forward_features(tiles, glob)
    for branch in model.config.branches:
        rows = tiles.shape[0] if branch.view == "tiles" else 3
        if branch.readout == "tokens":  # per read block: cls + mean patch token
            module = model.branches[branch.name]
            assert maps[branch.name].shape == (3, len(module.indices), 2 * module.backbone.embed_dim), branch.name
            continue
        assert maps[branch.name].shape[:2] == (rows, model.branches[branch.name].num_features), branch.name


def test_tiles_only_and_global_only_models_run():
    """Branches, not two hard-wired backbones: one branch per view works, and so does a third branch."""
    base = get_config("convitx_tiny")
    images = _images(2)
    for branches in ([base.branches[0]], [base.branches[1]],
                     [*base.branches, dataclasses.replace(base.branches[0], name="rgb_tiles", input="rgb")]):
        config = dataclasses.replace(base, branches=branches)
        torch.manual_seed(0)
        model = ConVitX(config).eval()
        tiles, owner, glob = _inputs(config, images)
        with torch.no_grad():
            logits = model(tiles if "tiles" in config.views else None, owner, glob if "global" in config.views else None)
        assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_tile_scores_are_pooled_per_image():
    vectors = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [5.0, 5.0], [7.0, 1.0], [0.0, 3.0]])
    owner = torch.tensor([0, 0, 1, 2, 2, 2])
    torch.testing.assert_close(pool_tiles(vectors, owner, 3), torch.tensor([[2.0, 3.0], [10.0, 0.0], [4.0, 3.0]]))


def test_tile_order_within_an_image_does_not_matter():
    model = _seeded("convitx_tiny")
    tiles, owner, glob = _inputs(model.config, _images(2))
    order = torch.randperm(tiles.shape[0], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(tiles[order], owner[order], glob), model(tiles, owner, glob), rtol=1e-4, atol=1e-5)


def test_small_models_parameter_budget():
    tiny = sum(p.numel() for p in _seeded("convitx_tiny").parameters())
    small = sum(p.numel() for p in _seeded("convitx_small").parameters())
    assert tiny < 1_000_000  # "well under a million parameters"
    assert tiny < small < 3_000_000


def test_swin_branch_is_permuted_not_reshaped():
    model = _seeded("convitx_tiny")
    tiles, _, glob = _inputs(model.config, _images(2))
    swin = model.branches["swin"]
    with torch.no_grad():
        nhwc = swin.backbone.forward_features(glob)
        maps = model.forward_features(tiles, glob)
    assert nhwc.shape[-1] == swin.num_features
    torch.testing.assert_close(maps["swin"], nhwc.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-6)
    assert model.cam_target_layers["swin"] is swin.to_nchw


@pytest.fixture(scope="module")
def large_model():
    start = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("convitx_large").eval()
    yield model, time.perf_counter() - start
    del model


@pytest.mark.timeout(400)
def test_large_builds_and_runs_on_native_tiles(large_model):
    model, _ = large_model
    config = model.config
    assert config.name == "convitx_large"
    assert (config.preprocess.tile_size, config.preprocess.global_size) == (224, 224)
    assert {b.model for b in config.branches} == {"convnext_large", "swin_base_patch4_window7_224"}
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 150_000_000, n_params
    image = Image.fromarray(noise_rgb(224, 224))
    with torch.no_grad():
        tiles, owner, glob = _inputs(config, [image])
        maps = model.forward_features(tiles, glob)
        logits = model.forward_head(maps, owner, 1)
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    for name, tensor in maps.items():
        assert tensor.ndim == 4 and tensor.shape[2:] == (7, 7), (name, tensor.shape)  # 224 / 32, NCHW
        assert tensor.shape[1] == model.branches[name].num_features


# --------------------------------------------------------------------------- config


def _customised(name: str) -> ConVitXConfig:
    config = get_config(name)
    return dataclasses.replace(
        config,
        decision=DecisionRule(temperature=1.7, threshold=0.6, uncertain_band=(0.5, 0.7)),
        preprocess=dataclasses.replace(config.preprocess, max_tiles=5, min_side=20),
        meta={"data": "synthetic", "val_auc": 0.93},
    )


@pytest.mark.parametrize("name", ["convitx_tiny", "convitx_small", "convitx_large"])
def test_config_json_round_trip(tmp_path, name):
    config = _customised(name)
    path = tmp_path / CONFIG_NAME
    config.save(path)
    on_disk = json.loads(path.read_text())
    assert on_disk["name"] == name
    assert on_disk["decision"]["threshold"] == 0.6 and on_disk["preprocess"]["max_tiles"] == 5
    assert [b["name"] for b in on_disk["branches"]] == [b.name for b in config.branches]
    assert {b["view"] for b in on_disk["branches"]} == {"tiles", "global"}
    loaded = ConVitXConfig.load(path)
    # The file is stable: saving what was loaded writes the same bytes.
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()
    assert isinstance(loaded.preprocess, PreprocessConfig) and isinstance(loaded.decision, DecisionRule)
    assert all(isinstance(b, BranchConfig) for b in loaded.branches)
    assert isinstance(loaded.preprocess.mean, tuple) and isinstance(loaded.decision.uncertain_band, tuple)
    assert _jsonable(loaded) == _jsonable(config)
    # A config equals itself after a save/load round trip (tuples in the backbone kwargs included).
    assert loaded == config


def test_config_round_trip_rebuilds_the_same_architecture(tmp_path):
    for name in SMALL_NAMES:
        config = get_config(name)
        config.save(tmp_path / f"{name}.json")
        rebuilt = ConVitX(ConVitXConfig.load(tmp_path / f"{name}.json"))
        original = ConVitX(config)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in original.state_dict().items()
        }


@pytest.mark.parametrize(
    "where, key",
    [((), "head_hiden"), (("preprocess",), "tile_sise"), (("decision",), "treshold"), (("branches", 0), "viewpoint")],
)
def test_unknown_config_keys_are_rejected(tmp_path, where, key):
    data = get_config("convitx_tiny").to_dict()
    target = data
    for step in where:
        target = target[step]
    target[key] = 64  # a typo must not be silently ignored, at any level
    with pytest.raises(ValueError, match=key):
        ConVitXConfig.from_dict(data)
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=key):
        ConVitXConfig.load(path)


@pytest.mark.parametrize(
    "rule",
    [
        {"threshold": 0.2},  # below the band
        {"threshold": 0.9},  # above the band
        {"uncertain_band": (0.7, 0.3)},
        {"uncertain_band": (-0.1, 0.6)},
        {"uncertain_band": (0.4, 1.1)},
        {"temperature": 0.0},
        {"temperature": -1.0},
    ],
)
def test_invalid_decision_rules_are_rejected(rule):
    with pytest.raises(ValueError):
        DecisionRule(**rule)
    data = get_config("convitx_tiny").to_dict()
    data["decision"].update(rule)
    with pytest.raises(ValueError):
        ConVitXConfig.from_dict(json.loads(json.dumps(data)))


@pytest.mark.parametrize(
    "change",
    [
        {"branches": []},
        {"branches": [BranchConfig("a", "convnext_atto"), BranchConfig("a", "convnext_atto")]},
    ],
    ids=["no-branch", "duplicate-names"],
)
def test_invalid_architectures_are_rejected(change):
    with pytest.raises(ValueError):
        dataclasses.replace(get_config("convitx_tiny"), **change)


@pytest.mark.parametrize("field, value", [("view", "sideways"), ("input", "fft")])
def test_invalid_branch_views_and_inputs_are_rejected(field, value):
    with pytest.raises(ValueError, match=value):
        BranchConfig("b", "convnext_atto", **{field: value})
    with pytest.raises(ValueError):
        PreprocessConfig(tile_size=4)


def test_with_threshold_shifts_the_band():
    config = get_config("convitx_tiny")
    rule = config.decision
    assert (rule.threshold, rule.uncertain_band) == (0.5, (0.35, 0.65))
    moved = config.with_threshold(0.7)
    assert moved.decision.threshold == 0.7
    assert moved.decision.uncertain_band == pytest.approx((0.55, 0.85))
    assert (rule.threshold, rule.uncertain_band) == (0.5, (0.35, 0.65)), "with_threshold must not mutate"
    assert moved.name == config.name and moved.branches == config.branches and moved.preprocess == config.preprocess
    # Clipped to [0, 1] at the ends, still a valid rule.
    assert config.with_threshold(0.0).decision.uncertain_band == pytest.approx((0.0, 0.15))
    assert config.with_threshold(1.0).decision.uncertain_band == pytest.approx((0.85, 1.0))
    assert rule.with_threshold(0.1).uncertain_band == pytest.approx((0.0, 0.25))
    # An asymmetric band keeps its asymmetry.
    skewed = DecisionRule(threshold=0.4, uncertain_band=(0.3, 0.6))
    assert skewed.with_threshold(0.5).uncertain_band == pytest.approx((0.4, 0.7))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            config.with_threshold(bad)


# --------------------------------------------------------------------------- the 0.1 layout


def _legacy_checkpoint(folder, seed: int = 4) -> tuple[dict, dict]:
    """Write a checkpoint exactly as 0.1 did: a flat config.json and ``convnext.*``/``swin.*``/``head.*`` tensors.

    The tensors come from a model of the equivalent architecture, renamed to the old keys.
    """
    small = get_config("convitx_small")
    convnext, swin = small.branches
    flat = {
        "name": "convitx_small", "convnext": convnext.model, "convnext_kwargs": dict(convnext.kwargs),
        "swin": swin.model, "swin_kwargs": dict(swin.kwargs), "image_size": 64,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "labels": ["real", "ai_generated"],
        "head_hidden": small.head_hidden, "dropout": small.dropout,
        "temperature": 0.86, "threshold": 0.83, "uncertain_band": [0.58, 0.88],
        "meta": {"fit_command": "python -m train fit --model convitx_small"},
    }
    flat = json.loads(json.dumps(flat))
    torch.manual_seed(seed)
    reference = ConVitX(ConVitXConfig.from_dict(dict(flat)))
    tensors = {}
    for key, value in reference.state_dict().items():
        for name in ("convnext", "swin"):
            key = key.replace(f"branches.{name}.backbone.", f"{name}.")
        tensors[key] = value.clone().contiguous()
    assert {k.split(".")[0] for k in tensors} == {"convnext", "swin", "head"}
    folder.mkdir(parents=True)
    (folder / CONFIG_NAME).write_text(json.dumps(flat, indent=2))
    safetensors.torch.save_file(tensors, folder / WEIGHTS_NAME)
    return flat, tensors


def test_legacy_config_becomes_two_global_branches(tmp_path):
    flat, _ = _legacy_checkpoint(tmp_path / "legacy")
    config = ConVitXConfig.load(tmp_path / "legacy" / CONFIG_NAME)
    assert [(b.name, b.model, b.view, b.input) for b in config.branches] == [
        ("convnext", flat["convnext"], "global", "rgb"), ("swin", flat["swin"], "global", "rgb")]
    assert config.branches[0].kwargs == get_config("convitx_small").branches[0].kwargs
    assert config.preprocess.global_size == 64
    assert (config.decision.temperature, config.decision.threshold, config.decision.uncertain_band) == (0.86, 0.83, (0.58, 0.88))
    assert config.meta["legacy_layout"] is True and config.meta["fit_command"] == flat["meta"]["fit_command"]
    # Saved again, it is a current-layout config that loads to the same thing.
    config.save(tmp_path / "again.json")
    assert "branches" in json.loads((tmp_path / "again.json").read_text())
    assert ConVitXConfig.load(tmp_path / "again.json") == config


def test_legacy_checkpoint_loads_with_its_weights_and_predicts(tmp_path):
    _, tensors = _legacy_checkpoint(tmp_path / "legacy")
    model, config, _ = load_checkpoint(tmp_path / "legacy")
    state = model.state_dict()
    for key, value in tensors.items():
        new_key = key if key.startswith("head.") else "branches.{}.backbone.{}".format(*key.split(".", 1))
        assert torch.equal(state[new_key], value), key
    detector = Detector(model, config)
    prediction = detector.predict(noise_rgb(120, 90), cam=True)
    assert 0.0 <= prediction.p_fake <= 1.0 and prediction.heatmap.shape == (90, 120)
    assert set(prediction.branch_heatmaps) == {"convnext", "swin"}
    assert prediction.threshold == 0.83
    # Re-saved in the new layout, the same model loads and scores the same.
    save_checkpoint(model, tmp_path / "resaved")
    again, _, _ = load_checkpoint(tmp_path / "resaved")
    image = Image.fromarray(noise_rgb(77, 66, seed=2))
    inputs = _inputs(config, [image])
    with torch.no_grad():
        assert torch.equal(model(*inputs), again(*inputs))


# --------------------------------------------------------------------------- decisions


def _detector(**rule) -> Detector:
    model = _seeded("convitx_tiny")
    return Detector(model, _with_decision(model.config, **rule))


def test_decide_at_the_band_edges():
    detector = _detector()  # threshold 0.5, band (0.35, 0.65)
    eps = 1e-9
    cases = {
        0.0: "real",
        0.35 - eps: "real",
        0.35: "real",  # the band is open: its edges are decided
        0.35 + eps: UNCERTAIN,
        0.5: UNCERTAIN,
        0.65 - eps: UNCERTAIN,
        0.65: "ai_generated",
        0.65 + eps: "ai_generated",
        1.0: "ai_generated",
    }
    for p, label in cases.items():
        assert detector.decide(p) == label, (p, detector.decide(p), label)
    rule = detector.config.decision
    p = np.array(list(cases))
    expected = np.array([{"real": 0, "ai_generated": 1, UNCERTAIN: -1}[label] for label in cases.values()])
    np.testing.assert_array_equal(rule.decide_all(p), expected)  # the vectorised rule agrees


def test_decide_with_an_empty_band_uses_the_threshold():
    detector = _detector(threshold=0.5, uncertain_band=(0.5, 0.5))
    assert detector.decide(0.5 - 1e-9) == "real"
    assert detector.decide(0.5) == "ai_generated"
    assert UNCERTAIN not in {detector.decide(p) for p in np.linspace(0, 1, 101)}


def test_decide_after_with_threshold():
    model = _seeded("convitx_tiny")
    low = Detector(model, model.config.with_threshold(0.0))
    assert low.decide(0.0) == "ai_generated"  # p >= threshold
    assert low.decide(0.1) == UNCERTAIN
    assert low.decide(0.16) == low.decide(0.5) == "ai_generated"
    high = Detector(model, model.config.with_threshold(1.0))
    assert high.decide(0.5) == high.decide(0.84) == "real"
    assert high.decide(0.9) == UNCERTAIN
    assert high.decide(1.0) == "ai_generated"


def test_prediction_fields_follow_the_config():
    detector = _detector(threshold=0.6, uncertain_band=(0.4, 0.8))
    prediction = detector.predict(noise_rgb(50, 40), cam=False)
    assert prediction.probabilities["real"] + prediction.probabilities["ai_generated"] == pytest.approx(1.0, abs=1e-6)
    assert prediction.probabilities["ai_generated"] == prediction.p_fake
    assert prediction.label == detector.decide(prediction.p_fake)
    assert prediction.threshold == 0.6 and prediction.uncertain_band == (0.4, 0.8)
    assert prediction.tiles == 4  # 50x40 under 32 px tiles: 2 x 2
    data = prediction.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"p_fake", "label", "probabilities", "threshold", "uncertain_band", "tiles"}


def test_temperature_scales_probabilities_not_argmax():
    images = [noise_rgb(64, 48, seed) for seed in range(6)]
    model = _seeded("convitx_tiny")
    # Push the head's bias so the logits are not all ~0 and the check is not vacuous.
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.tensor([0.0, 1.5]))
    base = Detector(model, _with_decision(model.config, temperature=1.0))
    hot = Detector(model, _with_decision(model.config, temperature=3.0))
    cold = Detector(model, _with_decision(model.config, temperature=0.5))
    p1 = np.array([p.p_fake for p in base.predict_batch(images)])
    p3 = np.array([p.p_fake for p in hot.predict_batch(images)])
    p05 = np.array([p.p_fake for p in cold.predict_batch(images)])
    assert not np.allclose(p1, p3)
    # Softmax over two classes: p = sigmoid(d / T) with d the logit gap.
    gap = np.log(p1 / (1 - p1))
    np.testing.assert_allclose(p3, 1 / (1 + np.exp(-gap / 3.0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p05, 1 / (1 + np.exp(-gap / 0.5)), rtol=1e-5, atol=1e-6)
    # Same argmax; hotter is closer to 0.5, colder further.
    assert ((p1 > 0.5) == (p3 > 0.5)).all() and ((p1 > 0.5) == (p05 > 0.5)).all()
    assert (np.abs(p3 - 0.5) < np.abs(p1 - 0.5)).all()
    assert (np.abs(p05 - 0.5) > np.abs(p1 - 0.5)).all()


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_save_load_round_trip_is_exact(tmp_path, name):
    model = _seeded(name, seed=3)
    model.config = dataclasses.replace(_with_decision(model.config, temperature=1.3), meta={"note": "round trip"})
    folder = save_checkpoint(model, tmp_path / "ckpt", card="# card\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, PREPROCESSOR_NAME])  # no temp files
    loaded, config, where = load_checkpoint(folder)
    assert where == folder
    assert not loaded.training, "load_checkpoint returns an eval-mode model"
    assert _jsonable(config) == _jsonable(model.config)
    inputs = _inputs(model.config, _images(4, seed=1))
    with torch.no_grad():
        assert torch.equal(model(*inputs), loaded(*inputs))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_detector_from_pretrained_matches_in_memory(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "ckpt", seed=5)
    torch.manual_seed(5)
    in_memory = Detector(create_model("convitx_tiny"))
    loaded = Detector.from_pretrained(folder, device="cpu")
    assert loaded.card_path == folder / CARD_NAME
    images = [noise_rgb(40, 30, s) for s in range(3)]
    a = [p.p_fake for p in in_memory.predict_batch(images)]
    b = [p.p_fake for p in loaded.predict_batch(images)]
    assert a == b
    moved = Detector.from_pretrained(folder, threshold=0.7, device="cpu")
    assert moved.config.decision.threshold == 0.7 and moved.config.decision.uncertain_band == pytest.approx((0.55, 0.85))
    assert moved.predict(images[0], cam=False).threshold == 0.7


def test_strict_loading_rejects_mismatched_config(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "ckpt")
    config = ConVitXConfig.load(folder / CONFIG_NAME)
    dataclasses.replace(config, head_hidden=config.head_hidden * 2).save(folder / CONFIG_NAME)
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(folder)
    message = assert_readable_message(info.value)
    assert WEIGHTS_NAME in message and CONFIG_NAME in message


def test_strict_loading_rejects_weights_of_another_architecture(tmp_path):
    small = tmp_path / "small"
    torch.manual_seed(0)
    save_checkpoint(create_model("convitx_small"), small)
    tiny = save_tiny_checkpoint(tmp_path / "tiny")
    (tiny / WEIGHTS_NAME).write_bytes((small / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ModelLoadError):
        load_checkpoint(tiny)


def test_strict_loading_rejects_missing_or_extra_tensors(tmp_path):
    import safetensors.torch

    folder = save_tiny_checkpoint(tmp_path / "ckpt")
    tensors = safetensors.torch.load_file(folder / WEIGHTS_NAME)
    extra = dict(tensors, **{"head.extra": torch.zeros(3)})
    safetensors.torch.save_file(extra, folder / WEIGHTS_NAME)
    with pytest.raises(ModelLoadError):
        load_checkpoint(folder)
    missing = dict(tensors)
    missing.pop(sorted(missing)[0])
    safetensors.torch.save_file(missing, folder / WEIGHTS_NAME)
    with pytest.raises(ModelLoadError):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    "config_text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"name": "convitx_tiny", "colour": "blue"}', id="unknown-key"),
        pytest.param("invalid-rule", id="invalid-rule"),
        pytest.param('{"name": "convitx_tiny", "branches": []}', id="no-branches"),
    ],
)
def test_invalid_config_file_is_a_model_load_error(tmp_path, config_text):
    folder = save_tiny_checkpoint(tmp_path / "ckpt")
    if config_text == "invalid-rule":  # a real config whose threshold lies outside its band
        data = json.loads((folder / CONFIG_NAME).read_text())
        data["decision"]["threshold"] = 0.9
        config_text = json.dumps(data)
    (folder / CONFIG_NAME).write_text(config_text)
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(folder)
    assert CONFIG_NAME in assert_readable_message(info.value)


@pytest.mark.parametrize("missing", [CONFIG_NAME, WEIGHTS_NAME])
def test_incomplete_folder_is_a_model_load_error(tmp_path, missing):
    folder = save_tiny_checkpoint(tmp_path / "ckpt")
    (folder / missing).unlink()
    with pytest.raises(ModelLoadError, match=missing) as info:
        load_checkpoint(folder)
    assert_readable_message(info.value)


def test_missing_folder_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        load_checkpoint(tmp_path / "does" / "not" / "exist")
    assert "exist" in assert_readable_message(info.value)


def test_save_overwrites_atomically(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "ckpt", seed=1)
    torch.manual_seed(2)
    second = create_model("convitx_tiny").eval()
    save_checkpoint(second, folder)  # over an existing checkpoint, no card: the old card stays
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, PREPROCESSOR_NAME])
    loaded, _, _ = load_checkpoint(folder)
    for key, value in second.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

