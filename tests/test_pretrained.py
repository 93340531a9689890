"""Pretrained initialisation the way timm users expect, and the flagship's GPU recipe run small on CPU.

``--pretrained`` goes through timm's own ``pretrained=True`` path, which downloads
through huggingface_hub: here from the in-memory test Hub (``HF_ENDPOINT``),
serving timm-format repos (``timm/<model>.<tag>``, ``model.safetensors``) of small
random weights shaped for convitx_tiny's backbones. The trained-from weights are
compared tensor by tensor with what the server served.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import yaml

from detector import ConVitX, Detector, get_config, load_checkpoint
from train.config import TrainConfig
from train.fit import _param_groups, build_model
from train_helpers import REPO_ROOT, failure, run_train, subprocess_env, synthetic_rows, tiny_fit_args, write_parquet

pytestmark = pytest.mark.timeout(600)

TINY = get_config("convitx_tiny")
RECIPE = REPO_ROOT / "configs" / "convitx_large.yaml"


def _timm_weights(branch, seed: int) -> dict[str, torch.Tensor]:
    """A timm-format state dict for a branch's backbone: timm's own model (3 channels, 1000-class head)."""
    torch.manual_seed(seed)
    model = timm.create_model(branch.model, **branch.kwargs)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _serve_timm_repos(hub, folder: Path, seed: int = 11, pickled: set[str] = frozenset()) -> dict[str, tuple[str, dict]]:
    """Seed ``timm/<model>.<tag>`` (the repo timm's pretrained_cfg names) for each tiny branch.

    Branches in ``pickled`` get only a ``pytorch_model.bin``, as old Hub repos have.
    """
    served = {}
    for i, branch in enumerate(TINY.branches):
        hub_id = timm.models.get_pretrained_cfg(branch.model).hf_hub_id
        repo = folder / hub_id
        repo.mkdir(parents=True)
        tensors = _timm_weights(branch, seed + i)
        if branch.name in pickled:
            torch.save(tensors, repo / "pytorch_model.bin")
        else:
            safetensors.torch.save_file(tensors, repo / "model.safetensors")
        (repo / "config.json").write_text(json.dumps({"architecture": branch.model, "num_classes": 1000}))
        hub.seed(hub_id, repo)
        served[branch.name] = (hub_id, tensors)
    return served


def _assert_starts_from(state: dict[str, torch.Tensor], branch: str, tensors: dict[str, torch.Tensor],
                        in_chans: int) -> None:
    """Every backbone tensor equals the served one; the classifier is dropped and a 6-channel stem is
    timm's adaptation of the 3-channel one (repeated, scaled by 3 / in_chans)."""
    compared = 0
    for key, value in tensors.items():
        ours = state.get(f"branches.{branch}.backbone.{key}")
        if key.startswith("head."):
            assert ours is None, f"{key}: the backbone's own head is replaced by the fused head"
            continue
        assert ours is not None, key
        if ours.shape != value.shape:
            assert in_chans == 6 and value.shape[1] == 3, (key, value.shape, ours.shape)
            expected = torch.cat([value, value], dim=1) * (3 / in_chans)
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-7)
        else:
            assert torch.equal(ours, value), key
        compared += 1
    assert compared > 10


BUILD = r"""
import sys, safetensors.torch
from train.config import TrainConfig
from train.fit import build_model
model = build_model(TrainConfig(model="convitx_tiny", pretrained=sys.argv[2:]))
safetensors.torch.save_model(model, sys.argv[1])
print(model.config.meta["init"])
"""


def test_pretrained_all_uses_timms_hub_path_and_only_safetensors(hub_server, tmp_path):
    served = _serve_timm_repos(hub_server, tmp_path / "repos")
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"))
    out = tmp_path / "built.safetensors"
    proc = run_train([out, "all"], env=env, module=("-c", BUILD), timeout=200)
    assert proc.returncode == 0, failure(proc)
    assert "{'convnext': 'timm pretrained', 'swin': 'timm pretrained'}" in proc.stdout
    state = safetensors.torch.load_file(out)
    for branch in TINY.branches:
        _assert_starts_from(state, branch.name, served[branch.name][1], branch.in_chans)
    gets = [path for method, path in hub_server.requests if method == "GET" and "/resolve/" in path]
    assert sorted(gets) == sorted(f"/{hub_id}/resolve/main/model.safetensors" for hub_id, _ in served.values())
    assert (tmp_path / "hf_home" / "hub").is_dir(), "downloads land in huggingface_hub's cache under HF_HOME"

    # One branch only: the other keeps its random initialisation.
    proc = run_train([out, "swin"], env=env, module=("-c", BUILD), timeout=200)
    assert proc.returncode == 0, failure(proc)
    state = safetensors.torch.load_file(out)
    _assert_starts_from(state, "swin", served["swin"][1], 3)
    assert not torch.equal(state["branches.convnext.backbone.stages.0.blocks.0.conv_dw.weight"],
                           served["convnext"][1]["stages.0.blocks.0.conv_dw.weight"])


def test_pretrained_never_falls_back_to_a_pickle(hub_server, tmp_path):
    """A repo with only pytorch_model.bin: timm would fall back to unpickling it; fit refuses, clearly."""
    _serve_timm_repos(hub_server, tmp_path / "repos", pickled={"convnext"})
    data = write_parquet(tmp_path / "data.parquet", synthetic_rows(per_source_train=4, per_source_test=0))
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"))
    proc = run_train(tiny_fit_args(data, tmp_path / "run", "--pretrained", "convnext", epochs=1), env=env, timeout=200)
    assert proc.returncode != 0, failure(proc)
    assert "could not initialise ['convnext'] from pretrained weights" in proc.stderr, failure(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not any(path.endswith(".bin") for _, path in hub_server.requests), hub_server.requests
    assert not (tmp_path / "run" / "best").exists()


def test_init_from_a_local_timm_safetensors_file(tmp_path):
    """``--init-from swin=FILE``: timm's file path (classifier dropped, stem adapted), no network."""
    files = {}
    for branch in TINY.branches:
        files[branch.name] = (tmp_path / f"{branch.name}.safetensors", _timm_weights(branch, seed=21))
        safetensors.torch.save_file(files[branch.name][1], files[branch.name][0])
    model = build_model(TrainConfig(model="convitx_tiny", init_from=[f"{n}={p}" for n, (p, _) in files.items()]))
    state = model.state_dict()
    for branch in TINY.branches:
        _assert_starts_from(state, branch.name, files[branch.name][1], branch.in_chans)
    assert model.config.meta["init"] == {"convnext": "file convnext.safetensors", "swin": "file swin.safetensors"}

    only = build_model(TrainConfig(model="convitx_tiny", init_from=[f"swin={files['swin'][0]}"])).state_dict()
    _assert_starts_from(only, "swin", files["swin"][1], 3)
    key = "stages.0.blocks.0.conv_dw.weight"
    assert not torch.equal(only[f"branches.convnext.backbone.{key}"], files["convnext"][1][key])

    pickle = tmp_path / "convnext.pth"
    torch.save(files["convnext"][1], pickle)
    for spec, message in ((f"convnext={pickle}", "safetensors"), ("convnext=/no/such/file.safetensors", "existing"),
                          (str(files["swin"][0]), "BRANCH=FILE"), (f"vit={files['swin'][0]}", "unknown branch")):
        with pytest.raises(SystemExit, match=message):
            build_model(TrainConfig(model="convitx_tiny", init_from=[spec]))


def _views(n: int = 4):
    generator = torch.Generator().manual_seed(n)
    owner = torch.arange(n).repeat_interleave(2)
    return torch.randn(2 * n, 3, 32, 32, generator=generator), owner, torch.randn(n, 3, 64, 64, generator=generator)


def test_a_frozen_branch_keeps_its_weights_and_batchnorm_statistics():
    """BatchNorm ConvNeXt (as convitx_small's) frozen: parameters and running statistics unchanged by training."""
    convnext = dataclasses.replace(TINY.branches[0], frozen=True,
                                   kwargs={**TINY.branches[0].kwargs, "norm_layer": "batchnorm2d", "conv_mlp": True})
    config = dataclasses.replace(TINY, branches=[convnext, TINY.branches[1]])
    torch.manual_seed(0)
    model = ConVitX(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = [k for k in before if k.startswith("branches.convnext.") and k.endswith("running_mean")]
    assert norms, "the frozen branch has BatchNorm layers"
    optimizer = torch.optim.AdamW(_param_groups(model, 0.05), lr=1e-2)
    assert not any(p is q for g in optimizer.param_groups for p in g["params"] for q in model.branches["convnext"].parameters())
    model.train()
    assert not model.branches["convnext"].training and model.branches["swin"].training and model.head.training
    for step in range(3):
        loss = torch.nn.functional.cross_entropy(model(*_views()), torch.tensor([0, 1, 0, 1]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("branches.convnext."):
            assert torch.equal(after[key], value), f"{key} changed in a frozen branch"
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("branches.swin."))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("head."))


def test_backbones_learn_at_lr_backbone_and_the_head_at_lr():
    model = ConVitX(TINY)
    groups = _param_groups(model, weight_decay=0.05, lr_scale_backbone=0.04)
    backbone = {id(p) for b in model.branches.values() for p in b.parameters()}
    for group in groups:
        kinds = {id(p) in backbone for p in group["params"]}
        assert len(kinds) == 1, "a group mixes backbone and head parameters"
        assert group["lr_scale"] == (0.04 if kinds == {True} else 1.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# --------------------------------------------------------------------------- the flagship recipe


def test_flagship_recipe_is_the_gpu_fine_tuning_recipe():
    recipe = yaml.safe_load(RECIPE.read_text())
    assert set(recipe) <= {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**recipe)
    assert cfg.model == "convitx_large" and cfg.pretrained == ["all"] and cfg.mixed_precision == "bf16"
    assert cfg.lr_backbone and cfg.lr_backbone < cfg.lr, "pretrained backbones learn slower than the new head"
    assert cfg.epochs >= 1 and cfg.batch_size >= 8 and cfg.samples_per_epoch >= 10_000 and cfg.num_workers >= 2
    assert 0 < cfg.warmup_epochs < cfg.epochs and 0 < cfg.cifake_share < 0.5 and cfg.cache_max_side == 0
    for branch in get_config(cfg.model).branches:
        assert timm.models.get_pretrained_cfg(branch.model).hf_hub_id, f"{branch.model} has no Hub weights"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("data") / "tiny.parquet", synthetic_rows(per_source_train=16, per_source_test=4))


def test_flagship_recipe_runs_on_cpu_with_the_tiny_config(hub_server, tmp_path, tiny_data):
    """The same yaml (pretrained: [all], bf16, lr/lr_backbone, ...) with only the heavy parts overridden."""
    served = _serve_timm_repos(hub_server, tmp_path / "repos", seed=31)
    out = tmp_path / "run"
    env = subprocess_env(HF_ENDPOINT=hub_server.endpoint, HF_HOME=str(tmp_path / "hf_home"), CUDA_VISIBLE_DEVICES="")
    args = ["fit", "--config", RECIPE, "--model", "convitx_tiny", "--data", tiny_data, "--out", out, "--epochs", "1",
            "--samples-per-epoch", "32", "--batch-size", "16", "--num-workers", "0", "--val-fraction", "0.25",
            "--freeze", "convnext"]
    proc = run_train(args, env=env, timeout=400)
    assert proc.returncode == 0, failure(proc)
    saved = json.loads((out / "train_config.json").read_text())
    recipe = yaml.safe_load(RECIPE.read_text())
    for key in ("pretrained", "mixed_precision", "lr", "lr_backbone", "warmup_epochs", "cifake_share", "dropout"):
        assert saved[key] == recipe[key], key  # from the file
    assert (saved["model"], saved["epochs"], saved["batch_size"], saved["freeze"]) == ("convitx_tiny", 1, 16, ["convnext"])

    model, config, _ = load_checkpoint(out / "best")
    assert config.meta["init"] == {"convnext": "timm pretrained", "swin": "timm pretrained"}
    assert [b.frozen for b in config.branches] == [True, False]
    state = model.state_dict()
    # The frozen branch is still exactly the served ImageNet-format weights after training ...
    _assert_starts_from(state, "convnext", served["convnext"][1], TINY.branches[0].in_chans)
    # ... the trained one started there and moved.
    swin = served["swin"][1]
    moved = [k for k in swin if not k.startswith("head.") and not torch.equal(state[f"branches.swin.backbone.{k}"], swin[k])]
    assert moved, "the swin branch did not train"
    assert "(frozen)" in (out / "best" / "README.md").read_text()
    prediction = Detector(model, config).predict(torch.rand(48, 40, 3).mul(255).byte().numpy(), cam=False)
    assert 0.0 <= prediction.p_fake <= 1.0
