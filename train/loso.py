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

DEFAULT_GROUPS = {
    "faces (StyleGAN 1/2/3 vs FFHQ)": ["faces140k_subset", "tpdne_ffhq_faces", "stylegan3_faces"],
    "modern generators (reddit pairs, campus re-generations, GPT-4o)": [
        "aiornot_reddit_pairs", "campus_regen_pairs", "gpt4o_cardamage"],
    "web art (cashbowman, kaggle mix)": ["cashbowman_aiart", "kaggle_mix_selva"],
}


def loso(base: TrainConfig, groups: dict[str, list[str]] | None = None) -> str:
    groups = groups or DEFAULT_GROUPS
    root = Path(base.out)
    rows = []
    for name, held_out in groups.items():
        out = root / ("without-" + "-".join(held_out))
        cfg = dataclasses.replace(base, exclude_sources=held_out, out=str(out), push_to_hub=None)
        fit(cfg)
        result = evaluate(str(out / "best"), base.data, split="test", sources=held_out, robustness=False,
                          num_workers=base.num_workers)
        per = result["per_source"]
        rows.append((name, per["overall"]["auc"], per["overall"]["accuracy"], per["overall"]["fpr"],
                     {s: per[s]["auc"] for s in held_out if s in per}))
    lines = ["| held out | AUC (unseen) | accuracy | FPR | per source AUC |", "|---|---|---|---|---|"]
    for name, auc, acc, fpr, per in rows:
        per_text = ", ".join(f"{s}: {'n/a' if v is None else f'{v:.3f}'}" for s, v in per.items())
        lines.append(f"| {name} | {auc:.4f} | {acc:.4f} | {'' if fpr is None else f'{fpr:.4f}'} | {per_text} |")
    table = "\n".join(lines) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "loso.md").write_text(table)
    (root / "loso.json").write_text(json.dumps([dict(zip(("group", "auc", "accuracy", "fpr", "per_source"), r)) for r in rows], indent=2))
    print(table)
    return table
