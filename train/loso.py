"""``python -m train loso``: leave-one-source-out generalisation check.

For each held-out group, train on every other source and score the group's test
split: the closest we get to "a generator this model has never seen". Groups
rather than single sources where sources share images (the FFHQ face sets share
real photos, so holding out one of them alone would leak its reals).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import TrainConfig
from .evaluate import evaluate
from .fit import fit
from .tables import markdown_table

DEFAULT_GROUPS = {
    "faces (StyleGAN 1/2/3 vs FFHQ)": ["faces140k_subset", "tpdne_ffhq_faces", "stylegan3_faces"],
    "modern generators (reddit pairs, campus re-generations, GPT-4o)": [
        "aiornot_reddit_pairs", "campus_regen_pairs", "gpt4o_cardamage"],
    "web art (cashbowman, kaggle mix)": ["cashbowman_aiart", "kaggle_mix_selva"],
}


def loso(base: TrainConfig, groups: dict[str, list[str]] | None = None, command: str | None = None,
         baseline: str | None = None) -> str:
    """Train once on everything (the same-budget baseline), then once per held-out group.

    ``baseline``: a finished run folder trained on all sources with the same budget (e.g. the main
    run) to reuse instead of training it again.
    """
    groups = groups or DEFAULT_GROUPS
    root = Path(base.out)
    if baseline is None:
        baseline = root / "all-sources"
        fit(dataclasses.replace(base, exclude_sources=None, out=str(baseline), push_to_hub=None))
    baseline = Path(baseline)
    rows = []
    for name, held_out in groups.items():
        out = root / ("without-" + "-".join(held_out))
        fit(dataclasses.replace(base, exclude_sources=held_out, out=str(out), push_to_hub=None))
        seen, unseen = (
            evaluate(str(folder / "best"), base.data, split="test", sources=held_out, robustness=False,
                     num_workers=base.num_workers)["per_source"]
            for folder in (baseline, out)
        )
        rows.append((name, seen["overall"]["auc"], unseen["overall"]["auc"], unseen["overall"]["accuracy"],
                     unseen["overall"]["fpr"], {s: unseen[s]["auc"] for s in held_out if s in unseen}))
    header = ["held-out group", "AUC when trained on it", "AUC held out", "accuracy held out", "FPR held out",
              "per source AUC held out"]
    lines = [markdown_table(header, (
        [name, seen_auc, auc, acc, fpr, ", ".join(f"{s}: {'n/a' if v is None else f'{v:.3f}'}" for s, v in per.items())]
        for name, seen_auc, auc, acc, fpr, per in rows))]
    if command:
        lines = [f"Reproduce: `{command}` (each run: {base.epochs} epochs x {base.samples_per_epoch} samples).", "", *lines]
    table = "\n".join(lines) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "loso.md").write_text(table)
    keys = ("group", "auc_trained_on_it", "auc_held_out", "accuracy", "fpr", "per_source")
    (root / "loso.json").write_text(json.dumps([dict(zip(keys, r)) for r in rows], indent=2))
    print(table)
    return table
