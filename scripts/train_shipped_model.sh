#!/usr/bin/env bash
# Reproduces the model shipped in triton_models/hfrisk/1 (see triton_models/hfrisk/MODEL.md).
# Usage: scripts/train_shipped_model.sh PTBXL_ROOT [WORK_DIR]
#   PTBXL_ROOT: a PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/, records500/);
#   the third-party 100 Hz arrays are read from PTBXL_ROOT/../ptbxl-extra when present.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?PTB-XL folder}
WORK=${2:-runs/shipped-model}
H=.venv/bin/hfrisk
mkdir -p "$WORK"
# 1. Pretraining on every PTB-XL ECG-report pair at hand (500 Hz, 100 Hz, ptbxl-extra; one per ecg_id),
#    InfoNCE on the structured statements, best epoch by validation alignment, stopped after 8 epochs
#    without a better one (docs/training/pretraining.md).
$H pretrain --data-root "$DATA" --sources 500,100,extra --all-reports --text structured --loss infonce \
  --batch-size 64 --max-epochs 24 --monitor val_align --early-stop-patience 8 --checkpoint-every 0 \
  --run-dir "$WORK/pretrain" --cache-dir "$WORK/cache" --no-progress
# 2. Outcomes: MUSIC's pump-failure Cox model applied to each 100 Hz record's own measurements (5 % events).
$H synthetic-cohort "$DATA" --out "$WORK/cohort" --sampling-rate 100 --scenario music-pump-failure \
  --event-rate 0.05 --seed 0
# 3. Fine-tuning for few events: ridge-Cox start of the head, validation partial likelihood, two learning rates.
$H finetune "$WORK/cohort/cohort.csv" --init "$WORK/pretrain/best.pt" --head-init ridge_cox --monitor val_cox \
  --lr-grid 3e-5,1e-4 --epochs 8 --patience 3 --batch-size 128 --out "$WORK/finetune" --cache-dir "$WORK/cache"
$H export "$WORK/finetune/best.pt" --repo-dir triton_models --version 1 --weights float16
# 4. The card's risk scale (percentile, 5-year absolute risk): the exported model's scores of the same cohort.
$H risk-scale "$WORK/cohort/cohort.csv" --model triton_models --horizon-years 5 \
  --plot docs/score-scale-calibration.png \
  --cohort-name "PTB-XL 100 Hz records ecg_id 1-1999, outcomes simulated from MUSIC's pump-failure Cox model (seed 0)"
