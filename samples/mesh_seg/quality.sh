#!/bin/sh
# samples/mesh_seg/quality.sh - the held-out quality runs recorded in samples/mesh_seg/README.md:
# 40 training and 10 held-out meshes of 10k-20k faces (generator seed 2), a model trained for a fixed
# time on the CPU, then `mesh_seg eval` (the model vs the thresholded confidence on the held-out meshes).
# Usage: sh samples/mesh_seg/quality.sh [BIN_DIR] [WORK_DIR] [SECONDS] [CONFIG] [EPOCHS] [LR]
#   defaults: build/mesh_seg build/mesh_seg/quality 420 configs/mesh_seg.yaml 8 5e-4
B=${1:-build/mesh_seg}; W=${2:-build/mesh_seg/quality}; S=${3:-420}
C=${4:-configs/mesh_seg.yaml}; E=${5:-8}; LR=${6:-5e-4}
set -e
mkdir -p "$W"
"$B/gen_data" --out "$W/data" --train 40 --val 10 --min-faces 10000 --max-faces 20000 --seed 2 > "$W/gen.log"
tail -3 "$W/gen.log"
"$B/mesh_seg" train --config "$C" --set data.train_dir="$W/data/train" --set data.val_dir="$W/data/val" \
    --set output.dir="$W/run" --set training.learning_rate="$LR" --set training.warmup_steps=20 \
    --set training.epochs="$E" --set training.max_time_s="$S"
"$B/mesh_seg" eval --config "$C" --set data.val_dir="$W/data/val" --set output.dir="$W/run"
