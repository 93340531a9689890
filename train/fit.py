"""``python -m train fit``: train a ConVitX on one CPU, one GPU or many (torchrun/Accelerate).

Launch on several processes with an existing engine, e.g.
``torchrun --nproc_per_node 4 -m train fit ...`` or ``accelerate launch -m train fit ...``;
Accelerate picks up the process group from the environment.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from detector.config import DecisionRule
from detector.hub import load_checkpoint, save_checkpoint
from detector.model import ConVitX
from detector.registry import get_config

from .augment import TrainViews
from .calibrate import calibrate_rule
from .card import build_card
from .checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from .config import TrainConfig
from .data import ImageDataset, Record, load_records, sample_weights, split_validation
from .metrics import per_source_metrics, predict_logits


def train_and_validation(cfg: TrainConfig) -> tuple[list[Record], list[Record]]:
    """The train split, minus excluded sources, with its content-hashed validation hold-out."""
    records = load_records(cfg.data, split="train", sources=cfg.sources)
    if cfg.exclude_sources:
        records = [r for r in records if r.source not in set(cfg.exclude_sources)]
    return split_validation(records, cfg.val_fraction, cfg.seed)


class EpochSampler(torch.utils.data.Sampler):
    """Weighted draws with replacement, identical on every rank, then sharded by rank.

    Re-seeded per epoch so a resumed run draws what the uninterrupted one would.
    """

    def __init__(self, weights: torch.Tensor, num_samples: int, seed: int, rank: int, world: int):
        self.weights, self.num_samples, self.seed, self.rank, self.world = weights, num_samples, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        indices = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return iter(indices[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world))


def _trim_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the lines of epochs the resumed checkpoint holds: a kill between an epoch's metrics
    line and its checkpoint (or in the middle of the line) leaves lines the resumed run writes again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epochs_done:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _param_groups(model: torch.nn.Module, weight_decay: float, lr_scale_backbone: float = 1.0) -> list[dict]:
    """No decay on norms and biases; backbones may learn at their own rate (``lr_scale``)."""
    groups: dict[tuple[bool, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = lr_scale_backbone if name.startswith("branches.") else 1.0
        groups.setdefault((param.ndim <= 1 or name.endswith(".bias"), scale), []).append(param)
    return [{"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
            for (no_decay, scale), params in groups.items()]


def build_model(cfg: TrainConfig) -> ConVitX:
    """The registry config with the run's overrides, initialised the way timm users expect."""
    overrides = {"dropout": cfg.dropout} if cfg.dropout is not None else {}
    config = get_config(cfg.model, **overrides)
    names = [b.name for b in config.branches]
    pretrained: dict[str, bool | str] = {}
    for name in cfg.pretrained or []:
        for branch in names if name == "all" else [name]:
            pretrained[branch] = True
    for spec in cfg.init_from or []:
        branch, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--init-from {spec!r}: expected BRANCH=FILE with an existing timm-format file")
        if not path.endswith(".safetensors"):  # timm would torch.load (unpickle) anything else
            raise SystemExit(f"--init-from {spec!r}: give a .safetensors file (pickled weights are never loaded)")
        pretrained[branch] = path
    frozen = set(names if "all" in (cfg.freeze or []) else (cfg.freeze or []))
    unknown = (set(pretrained) | frozen) - set(names)
    if unknown:
        raise SystemExit(f"unknown branch(es) {sorted(unknown)}; {cfg.model} has {names}")
    config.branches = [dataclasses.replace(b, frozen=b.name in frozen) for b in config.branches]
    config.meta["init"] = {name: ("timm pretrained" if init is True else f"file {Path(init).name}")
                           for name, init in pretrained.items()}
    try:
        return ConVitX(config, pretrained=pretrained)
    except Exception as exc:  # Hub unreachable, repo or model.safetensors missing, shapes that do not fit
        if not pretrained:
            raise
        first = " ".join(str(exc).split())[:400]
        raise SystemExit(f"could not initialise {sorted(pretrained)} from pretrained weights "
                         f"({type(exc).__name__}: {first})") from None


# ---------------------------------------------------------------- optimiser and schedule


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``_param_groups``; ``--lr-backbone`` becomes the branches' ``lr_scale``."""
    lr_scale = (cfg.lr_backbone / cfg.lr) if cfg.lr_backbone else 1.0
    return torch.optim.AdamW(_param_groups(model, cfg.weight_decay, lr_scale), lr=cfg.lr)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The run's learning rate by global step (``lr_at``), set per step so a resumed run continues it."""

    base: float
    total_steps: int
    warmup_steps: int
    min_ratio: float

    @classmethod
    def for_run(cls, cfg: TrainConfig, steps_per_epoch: int) -> "Schedule":
        return cls(cfg.lr, steps_per_epoch * cfg.epochs, int(cfg.warmup_epochs * steps_per_epoch), cfg.min_lr_ratio)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup_steps, self.base, self.min_ratio)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.lr(step) * group["lr_scale"]


# ---------------------------------------------------------------- one epoch


@dataclasses.dataclass
class EpochStats:
    loss: float  # mean training loss over the epoch's steps
    images: int  # images this process trained on
    last_step: int  # global step of the epoch's last batch (its lr goes into metrics.jsonl)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    schedule: Schedule, criterion: torch.nn.Module, accelerator: Accelerator, epoch: int,
                    epochs: int, grad_clip: float | None) -> EpochStats:
    """One pass over ``loader`` (the sampler already set to ``epoch``); the caller validates and saves."""
    steps_per_epoch = len(loader)
    model.train()
    seen, running = 0, 0.0
    global_step = epoch * steps_per_epoch - 1
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not accelerator.is_local_main_process,
               file=sys.stderr, mininterval=5)
    for step, ((tiles, global_view), labels) in enumerate(bar):
        global_step = epoch * steps_per_epoch + step
        schedule.apply(optimizer, global_step)
        # (images, tiles per image, C, t, t) -> one flat batch of tiles, each tagged with its image.
        owner = torch.arange(len(labels)).repeat_interleave(tiles.shape[1]).to(accelerator.device)
        tiles, global_view = tiles.flatten(0, 1).to(accelerator.device), global_view.to(accelerator.device)
        labels = labels.to(accelerator.device)
        loss = criterion(model(tiles, owner, global_view), labels)
        accelerator.backward(loss)
        if grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.item()
        seen += len(labels)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{running / (step + 1):.4f}")
    return EpochStats(loss=running / max(1, steps_per_epoch), images=seen, last_step=global_step)


# ---------------------------------------------------------------- orchestration


def _start_run(cfg: TrainConfig, accelerator: Accelerator, model: ConVitX, optimizer: torch.optim.Optimizer,
               fit_command: str) -> tuple[int, float]:
    """Resume from ``out/latest`` if there is one; write the run's config and command. -> (epochs done, best AUC)."""
    out = Path(cfg.out)
    start_epoch, best_auc = 0, -1.0
    resume_from = latest_checkpoint(out)
    if resume_from is not None:
        state = load_training_checkpoint(resume_from, model, optimizer)
        start_epoch, best_auc = state["epoch"], state["best_auc"]
        accelerator.print(f"resuming from {resume_from} (epoch {start_epoch} done, best val AUC {best_auc:.4f})")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "train_config.json")
        (out / "command.txt").write_text(fit_command + "\n")
        _trim_metrics(out / "metrics.jsonl", start_epoch)
    return start_epoch, best_auc


def _train_loader(cfg: TrainConfig, records: list[Record], model_config, accelerator: Accelerator
                  ) -> tuple[DataLoader, EpochSampler]:
    share = None
    if cfg.cifake_share and any(r.source == "cifake" for r in records):
        others = {r.source for r in records} - {"cifake"}
        share = {"cifake": cfg.cifake_share, **{s: (1 - cfg.cifake_share) / max(1, len(others)) for s in others}}
    sampler = EpochSampler(
        sample_weights(records, share), cfg.samples_per_epoch, cfg.seed,
        accelerator.process_index, accelerator.num_processes,
    )
    dataset = ImageDataset(records, TrainViews(model_config.preprocess, cfg.augment_strength, whole_crop=cfg.whole_crop, resize_small=cfg.resize_small), cfg.cache_max_side)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0, drop_last=True, pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler


def _end_epoch(cfg: TrainConfig, accelerator: Accelerator, model, optimizer, val_records: list[Record],
               epoch: int, stats: EpochStats, schedule: Schedule, started: float, best_auc: float) -> float:
    """Main process: validate, keep ``best`` by macro AUC, append metrics.jsonl, then the resumable
    checkpoint (metrics before checkpoint: ``_trim_metrics`` drops a line whose checkpoint a kill lost).
    Returns the best score so far."""
    out = Path(cfg.out)
    unwrapped: ConVitX = accelerator.unwrap_model(model)
    val = _validate(unwrapped, val_records, accelerator.device, cfg.num_workers)
    entry = {
        "epoch": epoch + 1,
        "train_loss": stats.loss,
        # wall clock from the epoch's start to here, validation included (as before the split)
        "train_images_per_s": stats.images * accelerator.num_processes / (time.time() - started),
        "lr": schedule.lr(stats.last_step),
        "val_auc": val["overall"]["auc"],
        "val_macro_auc": val["overall"]["macro_auc"],
        "val_accuracy": val["overall"]["accuracy"],
        "val_per_source_auc": {k: v["auc"] for k, v in val.items() if k != "overall"},
    }
    score = selection_score(val, val_records, cfg.selection_min_per_class)
    entry["val_selection_auc"] = score
    if score > best_auc or cfg.select == "last":
        best_auc = score
        save_checkpoint(unwrapped, out / "best")
        entry["best"] = True
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")
    accelerator.print(json.dumps({k: v for k, v in entry.items() if k != "val_per_source_auc"}))
    save_training_checkpoint(out, unwrapped, optimizer, {"epoch": epoch + 1, "best_auc": best_auc})
    return best_auc


def selection_score(val: dict, records: list[Record], min_per_class: int) -> float:
    """Macro AUC over the validation sources that hold at least ``min_per_class`` images of each class.

    A source with a handful of validation images gives an AUC that swings by 0.3 between epochs; averaged in,
    it picks the checkpoint by noise (the first retraining kept epoch 2 of 8 that way, overall AUC 0.68 vs 0.80).
    """
    counts: dict[str, list[int]] = {}
    for record in records:
        counts.setdefault(record.source, [0, 0])[record.label] += 1
    aucs = [val[s]["auc"] for s, (real, fake) in counts.items()
            if min(real, fake) >= min_per_class and val.get(s, {}).get("auc") is not None]
    return float(sum(aucs) / len(aucs)) if aucs else (val["overall"]["auc"] or 0.0)


def _finish_run(cfg: TrainConfig, accelerator: Accelerator, best_auc: float, train_records: list[Record],
                val_records: list[Record], fit_command: str) -> Path:
    """Main process: calibrate ``best`` on the validation split, then push it if asked (PushError propagates)."""
    best = Path(cfg.out) / "best"
    calibrate_checkpoint(best, val_records, cfg, accelerator.device, train_records=train_records, command=fit_command)
    accelerator.print(f"best checkpoint (val macro AUC {best_auc:.4f}, calibrated): {best}")
    if cfg.push_to_hub:
        from .publish import push

        push(best, cfg.push_to_hub, revision=cfg.hub_revision, private=cfg.hub_private)
    return best


def fit(cfg: TrainConfig, argv: list[str] | None = None) -> Path:
    """Data, model, resume, then ``train_one_epoch`` + validation/checkpoint per epoch; calibrate and push the best."""
    # Under torchrun without a GPU, Accelerate only builds the (gloo) process group when told it runs
    # on CPU; otherwise every rank would train alone and all of them would write the same files.
    on_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=on_cpu)
    set_seed(cfg.seed)
    fit_command = " ".join(["python -m train fit", *(argv or [])])

    train_records, val_records = train_and_validation(cfg)
    accelerator.print(f"data: {len(train_records)} train / {len(val_records)} validation images from {cfg.data}")

    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    start_epoch, best_auc = _start_run(cfg, accelerator, model, optimizer, fit_command)
    loader, sampler = _train_loader(cfg, train_records, model.config, accelerator)
    model, optimizer = accelerator.prepare(model, optimizer)
    schedule = Schedule.for_run(cfg, len(loader))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        started = time.time()
        stats = train_one_epoch(model, loader, optimizer, schedule, criterion, accelerator, epoch, cfg.epochs,
                                cfg.grad_clip)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            best_auc = _end_epoch(cfg, accelerator, model, optimizer, val_records, epoch, stats, schedule,
                                  started, best_auc)
        accelerator.wait_for_everyone()

    best = Path(cfg.out) / "best"
    if accelerator.is_main_process:
        best = _finish_run(cfg, accelerator, best_auc, train_records, val_records, fit_command)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return best


def _validate(model: ConVitX, records: list[Record], device, num_workers: int) -> dict:
    logits = predict_logits(model, records, device=device, num_workers=num_workers)
    model.train()
    rule = DecisionRule(labels=model.config.labels)  # uncalibrated: 0.5, for model selection by AUC
    return per_source_metrics(records, rule.p_fake(logits), rule)


def calibrate_checkpoint(folder: Path, val_records: list[Record], cfg: TrainConfig, device="cpu",
                         train_records: list[Record] | None = None, command: str | None = None) -> dict:
    """Fit the decision rule on validation data; rewrite config + card. Loud when a precision target is missed."""
    model, config, _ = load_checkpoint(folder)
    logits = predict_logits(model.to(device), val_records, device=device, num_workers=cfg.num_workers)
    labels = np.array([r.label for r in val_records])
    sources = np.array([r.source for r in val_records])
    rule, report = calibrate_rule(logits, labels, sources, max_fpr=cfg.max_fpr, min_precision=cfg.min_precision,
                                  max_half_width=cfg.max_half_width, labels_names=config.labels)
    for line in report["warnings"]:
        print(f"WARNING (calibration): {line}", file=sys.stderr)
    p_fake = rule.p_fake(logits)
    metrics = per_source_metrics(val_records, p_fake, rule)
    config.decision = rule
    config.meta.update(
        {
            "train_data": cfg.data,
            "train_sources": sorted({r.source for r in (train_records or [])}),
            "train_images": len(train_records or []),
            "validation_images": len(val_records),
            "calibration": {**report, "max_fpr": cfg.max_fpr, "fitted_on": "validation split held out from train"},
            "validation_metrics": metrics,
        }
    )
    if command:
        config.meta["fit_command"] = command
    model.config = config
    save_checkpoint(model, folder, card=build_card(config))
    return metrics
