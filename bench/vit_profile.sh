#!/usr/bin/env bash
# bench/vit_profile.sh OUT - where one training step's GPU time goes, nn.h vs PyTorch, same model and settings:
# nn.h's kernels through ncu (one step, gpu__time_duration of every launch, summed by kernel name by
# bench/kernel_summary.py) and PyTorch's through torch.profiler (one step after the timed ones).
# Needs build/vit_train_bench_cuda (bench/vit_train_gpu.sh builds it). BATCH, DTYPE (bf16), CKPT (1), SIZE (1024).
set -u
OUT=${1:-${OUT:-/tmp/vit_profile}}
mkdir -p "$OUT"
BATCH=${BATCH:-2}; DTYPE=${DTYPE:-bf16}; CKPT=${CKPT:-1}; SIZE=${SIZE:-1024}; MODEL=${MODEL:-partloc}
flag=""; [ "$CKPT" = 0 ] && flag="--no-ckpt"
args="--device cuda --model $MODEL --size $SIZE --batch $BATCH --dtype $DTYPE $flag"
timeout ${NCU_TIMEOUT:-240} ncu --metrics gpu__time_duration.sum --csv --print-units base --clock-control none --cache-control none \
    build/vit_train_bench_cuda $args --steps 1 --warmup 0 > "$OUT/ncu_nn.csv" 2> "$OUT/ncu_nn.err"
echo "ncu exit $?"
python3 bench/kernel_summary.py "$OUT/ncu_nn.csv" > "$OUT/nn_kernels.md"
head -45 "$OUT/nn_kernels.md"
PYTHONUNBUFFERED=1 python3 bench/vit_train_torch.py $args --steps 2 --warmup 1 --profile "$OUT/torch_kernels.txt" \
    > "$OUT/torch.log" 2>&1
echo "torch exit $?"
head -60 "$OUT/torch_kernels.txt"
