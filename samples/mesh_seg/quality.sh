#!/bin/sh
# samples/mesh_seg/quality.sh - the held-out quality run recorded in samples/mesh_seg/README.md:
# 40 training and 10 held-out meshes of 10k-20k faces, the seed's model (configs/mesh_seg.yaml: 4 layers,
# 8 heads, chunks of 1024, the seed's dropout and gradient checkpointing) trained for a fixed time on the
# CPU, then `mesh_seg eval` (model vs the thresholded confidence).
# Usage: sh samples/mesh_seg/quality.sh [BIN_DIR] [WORK_DIR] [SECONDS]
B=${1:-build/mesh_seg}; W=${2:-build/mesh_seg/quality}; S=${3:-420}
set -e
"$B/gen_data" --out "$W/data" --train 40 --val 10 --min-faces 10000 --max-faces 20000 --seed 2 > "$W.gen.log"
tail -3 "$W.gen.log"
"$B/mesh_seg" train --config configs/mesh_seg.yaml --set data.train_dir="$W/data/train" --set data.val_dir="$W/data/val" \
    --set output.dir="$W/run" --set training.learning_rate=5e-4 --set training.warmup_steps=20 \
    --set training.epochs=8 --set training.max_time_s="$S"
"$B/mesh_seg" eval --config configs/mesh_seg.yaml --set data.val_dir="$W/data/val" --set output.dir="$W/run"
