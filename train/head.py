"""``python -m train fit-head`` and ``loso-head``: train the readout and fused head on cached features.

Every image-reading branch is frozen, so training is a few thousand steps of a
small MLP over ``ConVitX.pooled_features`` from ``cache-features``: minutes on
a CPU. The result is a full checkpoint (frozen branches copied or referenced,
the trained readout and head, the decision rule calibrated on a held-out part
of the training split), evaluated on the cached test split: per source AUC,
TPR at 1% / 5% FPR, verdict precision, uncertain share, and robustness
(JPEG q75, 0.5x resize) from the cached degraded copies.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from detector.config import ConVitXConfig
from detector.hub import save_checkpoint
from detector.model import ConVitX, TokenBranch
from detector.registry import get_config, list_models

from .calibrate import calibrate_rule
from .card import build_card
from .data import sample_weights
from .features import FeatureSet, build_frozen_model, load_features
from .metrics import per_source_metrics
from .tables import markdown_table

# Leave-one-source-out groups. Groups of one class only (the modern galleries are all AI, the photo sets all
# real) are scored against the other class's test images from the sources still in training.
LOSO_GROUPS = {
    "faces (StyleGAN 1/2/3 vs FFHQ)": ["faces140k_subset", "tpdne_ffhq_faces", "stylegan3_faces"],
    "modern pairs (reddit, campus re-generations, GPT-4o cars)": ["aiornot_reddit_pairs", "campus_regen_pairs", "gpt4o_cardamage"],
    "web art (cashbowman, kaggle mix)": ["cashbowman_aiart", "kaggle_mix_selva"],
    "paintings and museum quiz (aiornot game, museum quiz)": ["aiornot_fr_game", "museum_quiz_pairs"],
    "modern galleries (GPT-image, Nano Banana, Midjourney, mixed, ComfyUI)": [
        "modern_gallery_openai", "modern_gallery_google", "modern_gallery_midjourney", "modern_gallery_mixed", "comfyui_native"],
    "camera and processed photos (camera originals, HDR, low light, benchmarks)": [
        "camera_originals", "photos_hdr_edited", "photos_noisy_lowlight", "photo_benchmarks"],
}
NEW_SOURCES = [s for g in list(LOSO_GROUPS.values())[4:] for s in g] + ["museum_quiz_pairs"]
ROBUSTNESS = {"clean": "clean", "jpeg_q75": "jpeg75", "resize_0.5x": "resize50"}


@dataclass
class HeadConfig:
    features: str = "runs/features"
    model: str = "convitx_small_dino"
    init_from: str | None = None  # checkpoint whose frozen map branches were cached (copied into the result)
    out: str = "runs/head"
    branches: list[str] | None = None  # a subset of the model's branches (ablation)
    blocks: str = "all"  # "all" or "last": which cached encoder blocks the readout may use
    exclude_sources: list[str] | None = None
    epochs: int = 40
    samples_per_epoch: int = 20000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    cifake_share: float = 1.0  # CIFAKE's weight relative to any other source
    seed: int = 0
    ablation_table: str | None = None  # markdown files added to the model card
    loso_table: str | None = None


def head_config(config: HeadConfig) -> ConVitXConfig:
    """The registry config cut to ``branches`` with the encoder read at ``blocks``."""
    model_config = get_config(config.model)
    branches = [b for b in model_config.branches if config.branches is None or b.name in config.branches]
    if not branches:
        raise SystemExit(f"no branch of {config.model} in {config.branches}")
    # Every image-reading branch is frozen here (its features came from the cache); the config says so.
    branches = [dataclasses.replace(b, blocks=config.blocks) if b.readout == "tokens" else dataclasses.replace(b, frozen=True)
                for b in branches]
    result = dataclasses.replace(model_config, branches=branches, meta={})
    # A subset that some registry config builds exactly (e.g. the encoder alone) carries that config's name.
    for name in list_models():
        registered = get_config(name)
        if registered.branches == branches and registered.preprocess == result.preprocess:
            return dataclasses.replace(result, name=name)
    if branches == model_config.branches:
        return result
    return dataclasses.replace(result, name=f"{model_config.name}[{'+'.join(b.name for b in branches)}]")


def _block_slice(model: ConVitX, cached: ConVitXConfig, name: str) -> list[int]:
    """Positions, in the cached (all-blocks) features, of the blocks this model reads."""
    cached_branch = next(b for b in cached.branches if b.name == name)
    depth = len(model.branches[name].backbone.blocks)
    cached_indices = cached_branch.block_indices(depth)
    return [cached_indices.index(i) for i in model.branches[name].indices]


def model_inputs(model: ConVitX, features: FeatureSet, cached: ConVitXConfig) -> dict[str, torch.Tensor]:
    inputs = {}
    for name, branch in model.branches.items():
        value = features.features[name].float()
        if isinstance(branch, TokenBranch):
            value = value[:, _block_slice(model, cached, name)]
        inputs[name] = value
    return inputs


def split_by_image(features: FeatureSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation: a hashed fraction of *images*, so no variant of a validation image is trained on."""
    keys = features.column("key")
    salt = str(seed).encode()
    val = np.array([int.from_bytes(hashlib.sha1(salt + k.encode()).digest()[:4], "big") / 2**32 < fraction for k in keys])
    return ~val, val


def _weights(features: FeatureSet, cifake_share: float) -> torch.Tensor:
    rows = [SimpleNamespace(source=e["source"], label=e["label"]) for e in features.entries]
    return sample_weights(rows, {"cifake": cifake_share})


def train_head(model: ConVitX, inputs: dict[str, torch.Tensor], labels: np.ndarray, weights: torch.Tensor,
               config: HeadConfig) -> list[float]:
    """AdamW on the readouts and head only; each epoch draws ``samples_per_epoch`` rows by source-balanced weight."""
    torch.manual_seed(config.seed)
    for name, branch in model.branches.items():
        if isinstance(branch, TokenBranch):
            branch.readout.fit_statistics(inputs[name])
    trainable = [p for n, p in model.named_parameters() if p.requires_grad and ("readout" in n or n.startswith("head."))]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * max(1, config.samples_per_epoch // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    targets = torch.as_tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    model.train()
    for _ in range(config.epochs):
        drawn = torch.multinomial(weights, config.samples_per_epoch, replacement=True, generator=generator)
        total = 0.0
        for start in range(0, len(drawn) - config.batch_size + 1, config.batch_size):
            batch = drawn[start : start + config.batch_size]
            logits = model.forward_pooled({k: v[batch] for k, v in inputs.items()})
            loss = nn.functional.cross_entropy(logits, targets[batch], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(drawn))
    model.eval()
    return losses


@torch.inference_mode()
def logits_of(model: ConVitX, inputs: dict[str, torch.Tensor], batch_size: int = 4096) -> torch.Tensor:
    n = len(next(iter(inputs.values())))
    return torch.cat([model.forward_pooled({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)])


def evaluate_features(model: ConVitX, features: FeatureSet, cached: ConVitXConfig, sources: list[str] | None = None) -> dict:
    """Per-source metrics on the clean test images, robustness AUCs from the cached degraded copies."""
    rule = model.config.decision
    test = features.select((features.column("split") == "test")
                           & (np.isin(features.column("source"), sources) if sources else True))
    result = {"threshold": rule.threshold, "uncertain_band": list(rule.uncertain_band), "temperature": rule.temperature}
    robustness: dict[str, dict] = {}
    for name, variant in ROBUSTNESS.items():
        part = test.select(test.column("variant") == variant)
        if not len(part):
            continue
        p_fake = rule.p_fake(logits_of(model, model_inputs(model, part, cached)))
        metrics = per_source_metrics(_rows(part), p_fake, rule)
        if name == "clean":
            result["per_source"] = metrics
        for source, row in metrics.items():
            robustness.setdefault(source, {})[name] = row["auc"]
        robustness.setdefault("macro", {})[name] = metrics["overall"]["macro_auc"]
    result["robustness"] = robustness
    return result


def _rows(features: FeatureSet) -> list[SimpleNamespace]:
    return [SimpleNamespace(label=e["label"], source=e["source"]) for e in features.entries]


def fit_head(config: HeadConfig, command: str | None = None) -> tuple[ConVitX, dict]:
    features = load_features(config.features)
    cache_settings = json.loads((Path(config.features) / "cache_config.json").read_text())
    cached = get_config(cache_settings["model"])
    model_config = head_config(config)
    model = build_frozen_model_for(model_config, config.model, config.init_from or cache_settings.get("init_from"))
    train_rows = features.column("split") == "train"
    if config.exclude_sources:
        train_rows &= ~np.isin(features.column("source"), config.exclude_sources)
    train_part = features.select(train_rows)
    fit_mask, val_mask = split_by_image(train_part, config.val_fraction, config.seed)
    fit_part, val_part = train_part.select(fit_mask), train_part.select(val_mask)
    inputs = model_inputs(model, fit_part, cached)
    losses = train_head(model, inputs, fit_part.labels, _weights(fit_part, config.cifake_share), config)
    val_logits = logits_of(model, model_inputs(model, val_part, cached))
    rule, report = calibrate_rule(val_logits, val_part.labels, val_part.column("source"), labels_names=model.config.labels)
    for warning in report["warnings"]:
        print(f"WARNING (calibration): {warning}", file=sys.stderr)
    model.config.decision = rule
    model.config.meta = {
        "fit_command": command, "features": config.features, "cache": cache_settings, "head": dataclasses.asdict(config),
        "train_data": cache_settings["data"], "train_sources": sorted(set(fit_part.column("source"))),
        "train_images": len(set(fit_part.column("key"))), "validation_images": len(set(val_part.column("key"))),
        "train_rows": len(fit_part), "validation_rows": len(val_part),
        "final_loss": losses[-1], "calibration": {"fitted_on": "validation images held out of the train split (all variants)", **report},
    }
    token_branches = [n for n, b in model.branches.items() if isinstance(b, TokenBranch)]
    for name in token_branches:
        weights = model.branches[name].readout.block_weights.detach().tolist()
        model.config.meta.setdefault("block_weights", {})[name] = [round(w, 4) for w in weights]
    evaluation = evaluate_features(model, features, cached)
    evaluation.update(data=f"{cache_settings['data']} (cached features: {config.features})", split="test")
    if config.ablation_table:
        evaluation["ablation"] = Path(config.ablation_table).read_text()
    if config.loso_table:
        evaluation["leave_one_source_out"] = Path(config.loso_table).read_text()
    out = Path(config.out)
    commands = {"cache": "python -m train cache-features " + _cache_flags(cache_settings), "fit": command}
    save_checkpoint(model, out, card=build_card(model.config, evaluation, {k: v for k, v in commands.items() if v}))
    (out / "metrics.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    print(summary_line(config.out, evaluation), file=sys.stderr)
    return model, evaluation


def _cache_flags(settings: dict) -> str:
    flags = {"model": settings["model"], "data": settings["data"], "out": settings["out"], "init-from": settings.get("init_from")}
    text = " ".join(f"--{k} {v}" for k, v in flags.items() if v)
    return text + " --train-variants " + " ".join(settings["train_variants"])


def build_frozen_model_for(model_config: ConVitXConfig, registry_name: str, init_from: str | None) -> ConVitX:
    """``build_frozen_model`` for a config cut from registry config ``registry_name`` (branch subset, blocks)."""
    base = build_frozen_model(registry_name, init_from)
    model = ConVitX(model_config)
    for name in model.branches:
        model.branches[name].backbone.load_state_dict(base.branches[name].backbone.state_dict())
        if not isinstance(model.branches[name], TokenBranch):
            model.branches[name].load_state_dict(base.branches[name].state_dict())
    return model


def summary_line(name: str, evaluation: dict) -> str:
    overall = evaluation["per_source"]["overall"]
    robust = evaluation["robustness"]["macro"]
    return (f"{name}: AUC {overall['auc']:.4f}, macro AUC {overall['macro_auc']:.4f}, "
            f"macro JPEG75 {robust.get('jpeg_q75') or float('nan'):.4f}, macro 0.5x {robust.get('resize_0.5x') or float('nan'):.4f}, "
            f"uncertain {overall['uncertain_rate']:.3f}")


def loso_head(config: HeadConfig, groups: dict[str, list[str]] | None = None, command: str | None = None) -> str:
    """One head per held-out group, trained without it, scored on its test images (one-class groups against
    the other class's test images from the sources that stayed in)."""
    groups = groups or LOSO_GROUPS
    features = load_features(config.features)
    cached = get_config(json.loads((Path(config.features) / "cache_config.json").read_text())["model"])
    rows = []
    for group, sources in groups.items():
        run = dataclasses.replace(config, out=str(Path(config.out) / _slug(group)), exclude_sources=sources)
        model, _ = fit_head(run, command=command)
        test = features.select((features.column("split") == "test") & (features.column("variant") == "clean"))
        held = np.isin(test.column("source"), sources)
        present = set(test.select(held).labels.tolist())
        reference = ~np.isin(test.column("source"), sources) & (test.labels != next(iter(present))) if len(present) == 1 else np.zeros(len(test), bool)
        part = test.select(held | reference)
        p_fake = model.config.decision.p_fake(logits_of(model, model_inputs(model, part, cached)))
        metrics = per_source_metrics(_rows(part), p_fake, model.config.decision)["overall"]
        against = "" if len(present) == 2 else f" (vs {int(reference.sum())} test {'reals' if 1 in present else 'fakes'} of other sources)"
        rows.append([group + against, metrics["auc"], metrics["tpr_at_1pct_fpr"], metrics["tpr_at_5pct_fpr"], metrics["n"]])
        print(f"LOSO {group}: AUC {metrics['auc']:.4f}", file=sys.stderr)
    table = markdown_table(["held-out group", "AUC", "TPR @ 1% FPR", "TPR @ 5% FPR", "test images"], rows)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / "loso.md").write_text(f"`{command}`\n\n{table}\n")
    print(table)
    return table


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.split(" (")[0]).strip("-")
