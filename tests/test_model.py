"""Model, registry, config and checkpoint round trips, on real (untrained) networks."""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from corpus import assert_readable_message, noise_rgb, save_tiny_checkpoint, torch_threads
from detector import (
    UNCERTAIN,
    ConVitX,
    ConVitXConfig,
    Detector,
    ModelLoadError,
    create_model,
    get_config,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from detector.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

pytestmark = pytest.mark.timeout(400)

SMALL_NAMES = ["convitx_tiny", "convitx_small"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


def _seeded(name: str, seed: int = 0, **overrides) -> ConVitX:
    torch.manual_seed(seed)
    return create_model(name, **overrides).eval()


def _jsonable(config: ConVitXConfig) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def _batch(config: ConVitXConfig, n: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, config.image_size, config.image_size, generator=generator)


def _target_layer_outputs(model: ConVitX, x: torch.Tensor) -> list[torch.Tensor]:
    """Run a forward pass and capture what each Grad-CAM target layer emits."""
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: captured.append(out)) for layer in model.cam_target_layers]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert logits.shape == (x.shape[0], 2)
    return captured


def _assert_nchw(model: ConVitX, outputs: list[torch.Tensor], batch: int) -> None:
    conv_map, swin_map = outputs
    assert conv_map.ndim == 4 and swin_map.ndim == 4
    assert conv_map.shape[:2] == (batch, model.convnext.num_features), conv_map.shape
    assert swin_map.shape[:2] == (batch, model.swin.num_features), swin_map.shape
    # Square inputs give square maps; the channel axis is not hiding in the last position.
    assert conv_map.shape[2] == conv_map.shape[3] and swin_map.shape[2] == swin_map.shape[3]
    assert swin_map.shape[3] != model.swin.num_features


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_config():
    assert {"convitx_large", "convitx_small", "convitx_tiny"} <= set(list_models())
    assert list_models() == sorted(list_models())
    with pytest.raises(KeyError, match="convitx_tiny"):
        get_config("convitx_nope")


def test_get_config_overrides_and_fresh_copies():
    config = get_config("convitx_tiny", head_hidden=7)
    assert config.head_hidden == 7 and config.name == "convitx_tiny"
    config.convnext_kwargs["mutated"] = True
    assert "mutated" not in get_config("convitx_tiny").convnext_kwargs, "registry configs must not share state"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", list_models())
def test_every_registered_config_builds(name, request):
    """Whatever gets registered must build with timm (convitx_large: built once, shared)."""
    model = request.getfixturevalue("large_model")[0] if name == "convitx_large" else _seeded(name)
    assert isinstance(model, ConVitX)
    assert model.config == get_config(name)
    assert model.convnext.num_features > 0 and model.swin.num_features > 0
    assert model.head[-1].out_features == len(model.config.labels) == 2
    assert len(model.cam_target_layers) == 2


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_small_models_forward(name):
    model = _seeded(name)
    assert model.config.name == name
    x = _batch(model.config, n=3)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (3, 2)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # One image's logits do not depend on the rest of the batch (no batch statistics in eval).
    with torch.no_grad():
        alone = model(x[1:2])
    torch.testing.assert_close(alone, logits[1:2], rtol=1e-4, atol=1e-5)
    _assert_nchw(model, _target_layer_outputs(model, x), batch=3)


def test_small_models_parameter_budget():
    tiny = sum(p.numel() for p in _seeded("convitx_tiny").parameters())
    small = sum(p.numel() for p in _seeded("convitx_small").parameters())
    assert tiny < 1_000_000  # "well under a million parameters"
    assert tiny < small < 3_000_000


def test_swin_branch_is_permuted_not_reshaped():
    model = _seeded("convitx_tiny")
    x = _batch(model.config, n=2)
    with torch.no_grad():
        nhwc = model.swin.forward_features(x)
        conv_map, swin_map = model.forward_features(x)
    assert nhwc.shape[-1] == model.swin.num_features
    torch.testing.assert_close(swin_map, nhwc.permute(0, 3, 1, 2), rtol=0, atol=0)
    assert model.cam_target_layers[1] is model.swin_to_nchw
    assert model.cam_target_layers[0] is model.convnext.stages[-1]


@pytest.fixture(scope="module")
def large_model():
    start = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("convitx_large").eval()
    yield model, time.perf_counter() - start
    del model


@pytest.mark.timeout(400)
def test_large_builds(large_model):
    model, _ = large_model
    assert model.config.name == "convitx_large"
    assert model.config.image_size == 224
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 150_000_000, n_params


@pytest.mark.timeout(400)
def test_large_cam_target_layers_are_nchw(large_model):
    model, _ = large_model
    x = _batch(model.config, n=1)
    start = time.perf_counter()
    outputs = _target_layer_outputs(model, x)
    elapsed = time.perf_counter() - start
    _assert_nchw(model, outputs, batch=1)
    assert outputs[0].shape[2:] == (7, 7) and outputs[1].shape[2:] == (7, 7)  # 224 / 32
    assert elapsed < 60, f"one 224 px forward of convitx_large took {elapsed:.1f} s"


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["convitx_tiny", "convitx_small", "convitx_large"])
def test_config_json_round_trip(tmp_path, name):
    config = dataclasses.replace(
        get_config(name),
        temperature=1.7,
        threshold=0.6,
        uncertain_band=(0.5, 0.7),
        meta={"data": "synthetic", "val_auc": 0.93},
    )
    path = tmp_path / CONFIG_NAME
    config.save(path)
    on_disk = json.loads(path.read_text())
    assert on_disk["name"] == name and on_disk["threshold"] == 0.6
    loaded = ConVitXConfig.load(path)
    # The file is stable: saving what was loaded writes the same bytes.
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()
    assert isinstance(loaded.mean, tuple) and isinstance(loaded.uncertain_band, tuple)
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


def test_unknown_config_keys_are_rejected(tmp_path):
    data = get_config("convitx_tiny").to_dict()
    data["head_hiden"] = 64  # a typo must not be silently ignored
    with pytest.raises(ValueError, match="head_hiden"):
        ConVitXConfig.from_dict(data)
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="head_hiden"):
        ConVitXConfig.load(path)


@pytest.mark.parametrize(
    "overrides",
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
def test_invalid_decision_rules_are_rejected(overrides):
    with pytest.raises(ValueError):
        dataclasses.replace(get_config("convitx_tiny"), **overrides)


def test_with_threshold_shifts_the_band():
    config = get_config("convitx_tiny")
    assert (config.threshold, config.uncertain_band) == (0.5, (0.35, 0.65))
    moved = config.with_threshold(0.7)
    assert moved.threshold == 0.7
    assert moved.uncertain_band == pytest.approx((0.55, 0.85))
    assert (config.threshold, config.uncertain_band) == (0.5, (0.35, 0.65)), "with_threshold must not mutate"
    assert moved.name == config.name and moved.convnext_kwargs == config.convnext_kwargs
    # Clipped to [0, 1] at the ends, still a valid config.
    assert config.with_threshold(0.0).uncertain_band == pytest.approx((0.0, 0.15))
    assert config.with_threshold(1.0).uncertain_band == pytest.approx((0.85, 1.0))
    assert config.with_threshold(0.1).uncertain_band == pytest.approx((0.0, 0.25))
    # An asymmetric band keeps its asymmetry.
    skewed = dataclasses.replace(config, threshold=0.4, uncertain_band=(0.3, 0.6))
    assert skewed.with_threshold(0.5).uncertain_band == pytest.approx((0.4, 0.7))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            config.with_threshold(bad)


# --------------------------------------------------------------------------- decisions


def _detector(**config_overrides) -> Detector:
    model = _seeded("convitx_tiny")
    return Detector(model, dataclasses.replace(model.config, **config_overrides))


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
    data = prediction.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"p_fake", "label", "probabilities", "threshold", "uncertain_band"}


def test_temperature_scales_probabilities_not_argmax():
    images = [noise_rgb(64, 48, seed) for seed in range(6)]
    model = _seeded("convitx_tiny")
    # Push the head's bias so the logits are not all ~0 and the check is not vacuous.
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.tensor([0.0, 1.5]))
    base = Detector(model, dataclasses.replace(model.config, temperature=1.0))
    hot = Detector(model, dataclasses.replace(model.config, temperature=3.0))
    cold = Detector(model, dataclasses.replace(model.config, temperature=0.5))
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
    model.config = dataclasses.replace(model.config, temperature=1.3, meta={"note": "round trip"})
    folder = save_checkpoint(model, tmp_path / "ckpt", card="# card\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])  # no temp files
    loaded, config, where = load_checkpoint(folder)
    assert where == folder
    assert not loaded.training, "load_checkpoint returns an eval-mode model"
    assert _jsonable(config) == _jsonable(model.config)
    x = _batch(model.config, n=4, seed=1)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
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
    assert moved.config.threshold == 0.7 and moved.config.uncertain_band == pytest.approx((0.55, 0.85))


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
        pytest.param('{"threshold": 0.9}', id="invalid-rule"),
    ],
)
def test_invalid_config_file_is_a_model_load_error(tmp_path, config_text):
    folder = save_tiny_checkpoint(tmp_path / "ckpt")
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
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    loaded, _, _ = load_checkpoint(folder)
    for key, value in second.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

