#!/usr/bin/env bash
# The demo's training step (configs/part_location_tiny.yaml: DINOv2-style encoder hidden 64, 3 layers, the
# whole at 112 px and the part at 56 px, 2 cross-attention layers, batch 16, f32, no checkpointing) in nn.h
# and in its PyTorch twin (transformers' Dinov2Model + the same head), on the CPU, same thread count, run
# alternately ROUNDS times:   bash bench/run_partloc_tiny_cpu.sh [threads] [rounds]
# Random inputs: the step's time and memory, not the task (the demo itself: make demo). Needs torch and
# transformers (pip), which the tests do not.
set -e
cd "$(dirname "$0")/.."
t=${1:-$(nproc)}
rounds=${2:-3}
ARGS="--model partloc --size 112 --part-size 56 --hidden 64 --heads 4 --layers 3 --head-hidden 256 --ds 8
      --batch 16 --dtype f32 --no-ckpt --steps 30 --warmup 3"
mkdir -p build
gcc -std=c99 -O3 -march=native -fopenmp -I. -Itests bench/vit_train_bench.c -o build/vit_train_bench -lm
echo "# $(date -u '+%F %H:%M') UTC, $(lscpu | sed -n 's/^Model name: *//p'), $t threads, gcc $(gcc -dumpversion)," \
     "torch $(python3 -c 'import torch; print(torch.__version__)'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
    # GOMP_SPINCOUNT as the samples' Makefile sets it (part_location.mk says why)
    OMP_NUM_THREADS=$t GOMP_SPINCOUNT=3000 build/vit_train_bench $ARGS | grep '^RESULT'
    python3 bench/vit_train_torch.py $ARGS --threads "$t" | grep '^RESULT'
done
