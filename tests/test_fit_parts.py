"""train/fit.py's parts, each on its own: optimiser + schedule setup, and one epoch (fit end to end: test_train.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from detector import create_model
from train.config import TrainConfig
from train.fit import Schedule, build_optimizer, lr_at, train_one_epoch


def test_schedule_sets_each_group_to_lr_at_times_its_scale():
    model = create_model("convitx_tiny")
    cfg = dataclasses.replace(TrainConfig(), lr=1e-3, lr_backbone=1e-4, weight_decay=0.05, epochs=3,
                              warmup_epochs=0.5, min_lr_ratio=0.1)
    optimizer = build_optimizer(model, cfg)
    scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
    assert scales == pytest.approx([0.1, 1.0])  # backbones at lr_backbone, the head at lr
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}  # no decay on norms and biases
    schedule = Schedule.for_run(cfg, steps_per_epoch=10)
    assert (schedule.total_steps, schedule.warmup_steps) == (30, 5)
    for step in (0, 4, 5, 17, 29):
        schedule.apply(optimizer, step)
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(lr_at(step, 30, 5, 1e-3, 0.1) * group["lr_scale"])
    assert schedule.lr(30) == pytest.approx(1e-4)  # decayed to min_lr_ratio * lr at the end


def test_one_epoch_trains_on_every_batch_and_reports_its_last_step():
    torch.manual_seed(0)
    model = create_model("convitx_tiny")
    cfg = dataclasses.replace(TrainConfig(), lr=1e-2, epochs=2, warmup_epochs=0)
    optimizer = build_optimizer(model, cfg)
    t, g = model.config.preprocess.tile_size, model.config.preprocess.global_size
    batches = [((torch.randn(4, 2, 3, t, t), torch.randn(4, 3, g, g)), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    loader = DataLoader(batches, batch_size=None)
    accelerator = Accelerator(cpu=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(model, loader, optimizer, Schedule.for_run(cfg, len(loader)),
                            torch.nn.CrossEntropyLoss(), accelerator, epoch=1, epochs=2, grad_clip=1.0)
    assert (stats.images, stats.last_step) == (12, 5)  # 3 batches of 4; epoch 1's steps are 3, 4, 5
    assert stats.loss > 0 and torch.isfinite(torch.tensor(stats.loss))
    assert model.training
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("branches.") for k in changed)
