#!/bin/sh
# bench/attn_run/ab.sh C OUT [VARIANTS] - one device call for the attention kernels (branch attn): C holds
# libnn_cuda.so (the change), base/libnn_cuda.so (main before it), optional v*/libnn_cuda.so (variants), and
# test_cuda, flash_bench, vtb linked against libnn_cuda.so (rpath $ORIGIN; LD_LIBRARY_PATH swaps the library).
# Runs: the sdpa tests (new), memcheck on their quick subset, flash_bench cases CASES (default 1 2 3 4 11) with
# base / new / variants alternating (twice), PyTorch's backends on the same cases, then (VIT=1) the ViT-B/14
# training step of seed 001 at batch 4 (bench/vit_train_gpu.sh) with base and new. Logs under OUT.
C=${1:?usage: ab.sh C OUT [VARIANTS]}; O=${2:?usage: ab.sh C OUT [VARIANTS]}; V=${3:-}
CASES=${CASES:-"1 2 3 4 11"}
mkdir -p "$O" build
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader; } | tee "$O/env.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 150 "$C/test_cuda" ${TESTARGS:-sdpa} -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"
  grep -E "FAIL|passed|wgmma|worst" "$O/test_cuda.log" | tail -5
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/test_cuda" sdpa quick > "$O/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" "$O/memcheck.log" | tail -2
  if [ "${RACE:-0}" = 1 ]; then
    timeout 150 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 "$C/test_cuda" sdpa quick > "$O/racecheck.log" 2>&1
    echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$O/racecheck.log" | tail -2
  fi
fi
for r in 1 2; do
  for c in $CASES; do
    LD_LIBRARY_PATH="$C/base" "$C/flash_bench" $c >> "$O/flash_base.log" 2>&1
    "$C/flash_bench" $c >> "$O/flash_new.log" 2>&1
    for v in $V; do LD_LIBRARY_PATH="$C/$v" "$C/flash_bench" $c >> "$O/flash_$v.log" 2>&1; done
  done
done
for f in base new $V; do echo "$f:"; grep "^case" "$O/flash_$f.log" | awk '{print $1, $2, $3, $4, $5, $6}'; done
if [ "${TORCH:-1}" = 1 ]; then
  CASES=$(echo $CASES | tr ' ' ',') PYTHONUNBUFFERED=1 timeout 200 python3 bench/flash_torch.py "$O/flash_new.log" 2>&1 | grep -v Warning > "$O/flash_torch.log"
  grep '^|' "$O/flash_torch.log" | cut -c1-160
fi
if [ "${VIT:-0}" = 1 ]; then   # nn.h base / new alternating, then PyTorch once
  args="--device cuda --model partloc --size 1024 --batch ${BATCH:-4} --steps ${STEPS:-3} --warmup ${WARMUP:-1} --dtype bf16"
  for r in 1 2; do
    LD_LIBRARY_PATH="$C/base" timeout 90 "$C/vtb" $args > "$O/vit_base_$r.log" 2>&1
    timeout 90 "$C/vtb" $args > "$O/vit_new_$r.log" 2>&1
  done
  grep -H RESULT "$O"/vit_*.log | sed 's/.*vit_//' | cut -c1-150
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/vit_train_torch.py $args > "$O/vit_torch.log" 2>&1
  grep RESULT "$O/vit_torch.log" | cut -c1-150
fi
