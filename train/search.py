"""``python -m train search``: Optuna over learning rate, batch size and dropout.

Each trial is a short ``fit`` into its own folder; the objective is the best
validation macro AUC the trial reached. Single process only.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna

from .config import TrainConfig
from .fit import fit


def search(base: TrainConfig, trials: int) -> optuna.Study:
    root = Path(base.out)

    def objective(trial: optuna.Trial) -> float:
        cfg = dataclasses.replace(
            base,
            lr=trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
            dropout=trial.suggest_float("dropout", 0.0, 0.5),
            out=str(root / f"trial-{trial.number:03d}"),
            push_to_hub=None,
        )
        fit(cfg)
        entries = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        return max((e["val_macro_auc"] or e["val_auc"] or 0.0) for e in entries)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))
    study.optimize(objective, n_trials=trials)
    root.mkdir(parents=True, exist_ok=True)
    summary = {"best_params": study.best_params, "best_value": study.best_value,
               "trials": [{"number": t.number, "params": t.params, "value": t.value} for t in study.trials]}
    (root / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["best_params"]))
    return study
