#!/bin/sh
# bench/final_run.sh OUT - a session's closing GPU call, from the repository root, with binaries built beforehand
# (nn_cuda.cu for sm_90a as libnn_cuda.so; test_cuda, flash_bench and vit_train_bench linked against it with
# rpath $ORIGIN) and carried in C (default .carry_lead). In order of what matters if the call is cut short:
#   1. the whole CUDA suite (test_cuda -v);
#   2. the ViT-B/14 training step of seed 001 against PyTorch (bench/vit_train_gpu.sh, CONFIGS: bf16 with
#      checkpointing at batch 1, 2, 4 by default);
#   3. issue 6's attention cases (flash_bench, all of them) against PyTorch's backends (bench/flash_torch.py);
#   4. compute-sanitizer memcheck on the quick subset, racecheck on the attention's quick subset.
# Logs under OUT (tarred: the device returns at most 8 files); the tables are printed.
O=${1:-${OUT:-/tmp/final}}
C=${C:-.carry_lead}
mkdir -p "$O" build
cp "$C/vtb" build/vit_train_bench_cuda
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$O/env.txt"
timeout 150 "$C/test_cuda" -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"
grep -E "FAIL|passed|wgmma|worst" "$O/test_cuda.log" | tail -8
LD_LIBRARY_PATH="$PWD/$C" NOBUILD=1 TESTS=0 STEPS=${STEPS:-4} WARMUP=${WARMUP:-1} NN_TIMEOUT=60 TORCH_TIMEOUT=60 \
  CONFIGS=${CONFIGS:-"partloc:1:bf16:1 partloc:2:bf16:1 partloc:4:bf16:1"} \
  bash bench/vit_train_gpu.sh "$O/vit" > "$O/vit_run.log" 2>&1
cat "$O/vit/vit_train.md"
if [ -d "$C/base" ]; then   # the step before this session's changes (C/base: its library and vit_train_bench), then now
  A="--device cuda --model partloc --size 1024 --batch 4 --steps ${STEPS:-4} --warmup 1 --dtype bf16"
  timeout 60 "$C/base/vtb" $A > "$O/vtb_base.log" 2>&1; echo "batch 4 before: $(grep RESULT "$O/vtb_base.log")"
  timeout 60 "$C/vtb" $A > "$O/vtb_new.log" 2>&1; echo "batch 4 now:    $(grep RESULT "$O/vtb_new.log")"
fi
if [ "${FLASH:-1}" = 1 ]; then
  timeout 120 "$C/flash_bench" > "$O/flash_nn.log" 2>&1; echo "flash_bench rc=$?"
  NOMATH=1 PYTHONUNBUFFERED=1 timeout 150 python3 bench/flash_torch.py "$O/flash_nn.log" 2>&1 | grep -v Warning > "$O/flash_torch.log"
  grep '^|' "$O/flash_torch.log"
fi
timeout ${SAN_TIMEOUT:-75} compute-sanitizer --tool memcheck --error-exitcode 9 "$C/test_cuda" quick > "$O/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" "$O/memcheck.log" | tail -2
timeout ${SAN_TIMEOUT:-75} compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 "$C/test_cuda" sdpa quick > "$O/racecheck.log" 2>&1
echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$O/racecheck.log" | tail -2
(cd "$O" && tar czf logs.tgz *.log vit && rm -rf vit *.log)
