#!/usr/bin/env bash
# The embedded default and everything its card reports, from one feature cache:
#   bash benchmarks/encoder_runs.sh [FEATURES=runs/features] [OUT=runs/encoder]
# 1. cache the frozen branches' features (resumable; ~40 min on 2 cores), 2. the ablation (encoder last block /
# all blocks / + ConvNeXt tiles / + Swin global, with and without the new sources), 3. leave-one-group-out,
# 4. the final head with both tables in its card, written to $OUT/final (copy it to weights/ to ship it).
set -euo pipefail
cd "$(dirname "$0")/.."
FEATURES=${1:-runs/features}
OUT=${2:-runs/encoder}
PY=${PYTHON:-python}
NEW="modern_gallery_openai modern_gallery_google modern_gallery_midjourney modern_gallery_mixed comfyui_native museum_quiz_pairs camera_originals photos_hdr_edited photos_noisy_lowlight photo_benchmarks"
HEAD=(--features "$FEATURES" --epochs 20 --samples-per-epoch 20000 --seed 0)

$PY -m train cache-features --init-from weights --data ../shared/data --out "$FEATURES" --train-variants clean jpeg resize native
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/encoder_last" --branches dinov2 --blocks last
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/encoder_all" --branches dinov2
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/encoder_convnext" --branches dinov2 convnext
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/full" 
# shellcheck disable=SC2086
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/encoder_all_old_sources" --branches dinov2 --exclude-sources $NEW
# shellcheck disable=SC2086
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/full_old_sources" --exclude-sources $NEW
$PY benchmarks/encoder_table.py "$OUT"/{encoder_last,encoder_all,encoder_convnext,full,encoder_all_old_sources,full_old_sources} > "$OUT/ablation.md"
$PY -m train loso-head "${HEAD[@]}" --out "$OUT/loso" --branches ${LOSO_BRANCHES:-dinov2 convnext swin}
$PY -m train fit-head "${HEAD[@]}" --out "$OUT/final" ${FINAL_BRANCHES:+--branches $FINAL_BRANCHES} \
    --ablation-table "$OUT/ablation.md" --loso-table "$OUT/loso/loso.md"
