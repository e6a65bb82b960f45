#!/bin/sh
# bench/final_run.sh OUT - a session's closing GPU call, from the repository root, with binaries built beforehand
# (nn_cuda.cu for sm_90 + sm_90a) and carried in C (default .carry_lead): the whole CUDA suite, the ViT-B/14
# training step of seed 001 against PyTorch (bench/vit_train_gpu.sh: bf16 at batch 1, 2, 4 with checkpointing,
# batch 2 without, f16 and f32 at batch 1), test_amp's GPU sections (their training curves in
# OUT/amp_curves.csv) and memcheck on the quick subset. Logs under OUT.
O=${1:-${OUT:-/tmp/final}}
C=${C:-.carry_lead}
mkdir -p "$O" build
cp "$C/vtb" build/vit_train_bench_cuda
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$O/env.txt"
timeout 120 "$C/test_cuda" -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"; grep -E "FAIL|passed|wgmma" "$O/test_cuda.log" | tail -6
NOBUILD=1 TESTS=0 STEPS=${STEPS:-3} WARMUP=${WARMUP:-1} NN_TIMEOUT=60 TORCH_TIMEOUT=60 \
  CONFIGS=${CONFIGS:-"partloc:1:bf16:1 partloc:2:bf16:1 partloc:4:bf16:1 partloc:2:bf16:0 partloc:1:f16:1 partloc:1:f32:1"} \
  bash bench/vit_train_gpu.sh "$O/vit" > "$O/vit_run.log" 2>&1
cat "$O/vit/vit_train.md"
rm -f "$O/amp_curves.csv"
AMP_CURVES="$O/amp_curves.csv" AMP_DEVICE=cuda AMP_ONLY=cde timeout 60 "$C/test_amp" > "$O/test_amp_cuda.log" 2>&1
echo "test_amp cuda rc=$?"; grep -E "FAIL|passed|->" "$O/test_amp_cuda.log" | tail -6
timeout ${SAN_TIMEOUT:-60} compute-sanitizer --tool memcheck --error-exitcode 9 "$C/test_cuda" quick > "$O/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" "$O/memcheck.log" | tail -2
(cd "$O" && tar czf vit_logs.tgz vit && rm -rf vit)
