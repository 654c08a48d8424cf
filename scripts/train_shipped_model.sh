#!/usr/bin/env bash
# Reproduces the model shipped in triton_models/hfrisk/1 (see triton_models/hfrisk/MODEL.md).
# Usage: scripts/train_shipped_model.sh PTBXL_ROOT [WORK_DIR]
#   PTBXL_ROOT: a PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/, records500/)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?PTB-XL folder}
WORK=${2:-runs/shipped-model}
H=.venv/bin/hfrisk
mkdir -p "$WORK"
$H pretrain --data-root "$DATA" --sampling-rate 500 --max-epochs 40 --batch-size 64 \
  --run-dir "$WORK/pretrain" --cache-dir "$WORK/cache" --no-progress
$H synthetic-cohort "$DATA" --out "$WORK/cohort" --sampling-rate 100 --event-rate 0.05 --seed 0
$H finetune "$WORK/cohort/cohort.csv" --records-root "$DATA" --init "$WORK/pretrain/best.pt" \
  --epochs 40 --batch-size 128 --out "$WORK/finetune" --cache-dir "$WORK/cache" --patience 15
$H export "$WORK/finetune/best.pt" --repo-dir triton_models --version 1 --weights float16
# The card's risk scale (percentile, 5-year absolute risk): the model's scores of all 1,999 100 Hz
# records with outcomes simulated by the same hazard (docs/score-scale.md).
$H synthetic-cohort "$DATA" --out "$WORK/reference" --sampling-rate 100 --event-rate 0.05 --seed 0
$H risk-scale "$WORK/reference/cohort.csv" --model triton_models --horizon-years 5 \
  --plot docs/score-scale-calibration.png
