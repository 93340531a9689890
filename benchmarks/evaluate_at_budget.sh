#!/usr/bin/env bash
# The embedded default end to end at one budget: train it, evaluate it (per source, robustness, verdict
# precision), evaluate the first landed model (0.1, 64 px squashed) on the same splits, and run
# leave-one-source-out at the same budget, reusing the main run as the all-sources baseline.
#   bash benchmarks/evaluate_at_budget.sh [epochs] [samples_per_epoch] [out]
# Heavy (tens of CPU minutes): a benchmark, never part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-12}; SAMPLES=${2:-16000}; OUT=${3:-runs/budget}
PY=${PYTHON:-python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # no spinning threads when the 2 cores are shared
TRAIN=(--model convitx_small --data ../shared/data --epochs "$EPOCHS" --samples-per-epoch "$SAMPLES" --batch-size 64
       --lr 2e-3 --warmup-epochs 0.5 --cifake-share 0.3 --num-workers 1 --seed 0)
[ -f "$OUT/main/best/model.safetensors" ] || $PY -m train fit "${TRAIN[@]}" --out "$OUT/main"
$PY -m train evaluate --model "$OUT/main/best" --data ../shared/data --out "$OUT/main/eval" > "$OUT/main/eval.md"
# The model that landed first (weights/ at commit 4ee945c), on the same splits with the same code.
mkdir -p "$OUT/landed"
for f in config.json model.safetensors README.md; do git show "4ee945c:weights/$f" > "$OUT/landed/$f"; done
$PY -m train evaluate --model "$OUT/landed" --data ../shared/data --out "$OUT/landed/eval" > "$OUT/landed/eval.md"
$PY -m train loso "${TRAIN[@]}" --out "$OUT/loso" --baseline "$OUT/main"
