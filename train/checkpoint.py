"""Resumable training checkpoints, safetensors only, committed atomically.

``out/checkpoint-NNNN/`` holds the model (Hub layout), the optimizer state and
``trainer_state.json``; ``out/latest`` names the newest complete one and is
replaced with an atomic rename only after everything else is on disk, so a
kill mid-write leaves the previous checkpoint in charge.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from detector.hub import save_checkpoint
from detector.model import ConVitX

LATEST = "latest"


def save_training_checkpoint(out: Path, model: ConVitX, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    folder = out / f"checkpoint-{state['epoch']:04d}"
    if folder.exists():
        shutil.rmtree(folder)
    save_checkpoint(model, folder)
    _save_optimizer(optimizer, folder / "optimizer.safetensors")
    (folder / "trainer_state.json").write_text(json.dumps(state, indent=2))
    tmp = out / f".{LATEST}.tmp"
    tmp.write_text(folder.name)
    os.replace(tmp, out / LATEST)
    for old in out.glob("checkpoint-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / LATEST
    if not pointer.is_file():
        return None
    folder = out / pointer.read_text().strip()
    return folder if (folder / "trainer_state.json").is_file() else None


def load_training_checkpoint(folder: Path, model: ConVitX, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors.torch import load_model

    load_model(model, folder / "model.safetensors", strict=True)
    _load_optimizer(optimizer, folder / "optimizer.safetensors")
    return json.loads((folder / "trainer_state.json").read_text())


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    state = optimizer.state_dict()
    tensors = {
        f"{param_id}.{key}": (value if torch.is_tensor(value) else torch.tensor(value)).contiguous()
        for param_id, param_state in state["state"].items()
        for key, value in param_state.items()
    }
    save_file(tensors, str(path), metadata={"param_groups": json.dumps(state["param_groups"])})


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    with safe_open(str(path), framework="pt") as handle:
        param_groups = json.loads(handle.metadata()["param_groups"])
    state: dict[int, dict] = {}
    for name, value in load_file(str(path)).items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
