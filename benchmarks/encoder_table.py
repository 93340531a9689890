"""The encoder ablation table from ``fit-head`` runs: one row per run folder (its metrics.json).

    python benchmarks/encoder_table.py runs/encoder/encoder_last runs/encoder/encoder_all ... > ablation.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

NEW = ("modern_gallery_openai", "modern_gallery_google", "modern_gallery_midjourney", "modern_gallery_mixed",
       "comfyui_native", "museum_quiz_pairs", "camera_originals", "photos_hdr_edited", "photos_noisy_lowlight",
       "photo_benchmarks")


def row(folder: Path) -> list[str]:
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    per_source, robust = metrics["per_source"], metrics["robustness"]
    overall = per_source["overall"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    branches = " + ".join(f"{b['name']}" + (f" ({b['blocks']} blocks)" if b.get("readout") == "tokens" else "")
                          for b in config["branches"])
    trained_without_new = not (set(NEW) & set(config["meta"]["train_sources"]))
    return [folder.name, branches, "no" if trained_without_new else "yes", fmt(overall["macro_auc"]), fmt(overall["auc"]),
            fmt(per_source.get("cifake", {}).get("auc")), fmt(per_source.get("cifake", {}).get("accuracy")),
            fmt(robust["macro"].get("jpeg_q75")), fmt(robust["macro"].get("resize_0.5x")),
            fmt(overall["tpr_at_5pct_fpr"]), fmt(overall["uncertain_rate"])]


def main() -> None:
    header = ["run", "branches", "new sources in training", "macro AUC", "AUC", "CIFAKE AUC", "CIFAKE acc.",
              "macro AUC JPEG q75", "macro AUC 0.5x", "TPR @ 5% FPR", "can't tell"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(Path(folder))) + " |" for folder in sys.argv[1:]]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
