#!/usr/bin/env bash
# Design ablation for the embedded default: each variant of convitx_small trained with the same data and
# budget WITHOUT the "modern generators" group, then scored on that group's test split (unseen generators)
# and on the seen sources. Usage: bash benchmarks/ablation.sh [samples_per_epoch] [epochs] [out]
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-6000}; EPOCHS=${2:-3}; OUT=${3:-runs/ablation}
PY=${PYTHON:-python}
HELD_OUT="aiornot_reddit_pairs campus_regen_pairs gpt4o_cardamage"
for MODEL in convitx_small convitx_small_rgb_tiles convitx_small_squashed; do
  $PY -m train fit --model $MODEL --data ../shared/data --exclude-sources $HELD_OUT --epochs $EPOCHS \
    --samples-per-epoch $SAMPLES --batch-size 64 --lr 2e-3 --warmup-epochs 0.3 --cifake-share 0.3 \
    --num-workers 1 --seed 0 --out $OUT/$MODEL
  $PY -m train evaluate --model $OUT/$MODEL/best --data ../shared/data --sources $HELD_OUT --no-robustness \
    --out $OUT/$MODEL/held_out > /dev/null
  $PY -m train evaluate --model $OUT/$MODEL/best --data ../shared/data --no-robustness \
    --out $OUT/$MODEL/all > /dev/null
done
$PY - "$OUT" <<'PY'
import json, sys
from train.tables import markdown_table
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for run in sorted(p for p in out.iterdir() if (p / "held_out" / "metrics.json").is_file()):
    held = json.loads((run / "held_out" / "metrics.json").read_text())["per_source"]["overall"]
    every = json.loads((run / "all" / "metrics.json").read_text())["per_source"]
    speed = [json.loads(l)["train_images_per_s"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    rows.append([f"`{run.name}`", held["auc"], every["overall"]["macro_auc"], every["cifake"]["auc"], f"{sum(speed)/len(speed):.0f}"])
table = markdown_table(["variant", "held-out AUC (modern generators)", "macro AUC, all test sources", "CIFAKE AUC", "train img/s"], rows, digits=3)
(out / "ablation.md").write_text(table + "\n")
print(table)
PY
