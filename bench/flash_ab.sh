#!/bin/sh
# bench/flash_ab.sh C OUT - one device call that checks and times a change to nn_cuda.cu against the build before
# it, with PyTorch in the same call. C holds libnn_cuda.so (the change), base/libnn_cuda.so (before), and
# test_cuda, flash_bench, vtb linked against libnn_cuda.so (rpath $ORIGIN; LD_LIBRARY_PATH=C/base swaps in the
# old library). Runs: the whole CUDA suite (new), memcheck on its quick subset, flash_bench cases 1-4 old and
# new alternately (twice each) and PyTorch's backends on the same cases, then the ViT-B/14 training step of
# seed 001 against PyTorch (bench/vit_train_gpu.sh, CONFIGS) with the new library. Logs under OUT.
C=${1:?usage: flash_ab.sh C OUT}; O=${2:?usage: flash_ab.sh C OUT}
mkdir -p "$O" build
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$O/env.txt"
timeout 120 "$C/test_cuda" -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"; grep -E "FAIL|passed|wgmma" "$O/test_cuda.log" | tail -4
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/test_cuda" quick > "$O/memcheck.log" 2>&1
echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" "$O/memcheck.log" | tail -2
: > "$O/flash_new.log"; : > "$O/flash_old.log"
for r in 1 2; do
    for c in 1 2 3 4; do
        "$C/flash_bench" $c >> "$O/flash_new.log" 2>&1
        LD_LIBRARY_PATH="$C/base" "$C/flash_bench" $c >> "$O/flash_old.log" 2>&1
    done
done
echo "new:"; grep "^case" "$O/flash_new.log"; echo "old:"; grep "^case" "$O/flash_old.log"
CASES=1,2,3,4 PYTHONUNBUFFERED=1 timeout 150 python3 bench/flash_torch.py "$O/flash_new.log" 2>&1 | grep -v Warning > "$O/flash_torch.log"
grep '^|' "$O/flash_torch.log"
cp "$C/vtb" build/vit_train_bench_cuda
LD_LIBRARY_PATH="$PWD/$C" NOBUILD=1 TESTS=0 STEPS=${STEPS:-3} WARMUP=${WARMUP:-1} NN_TIMEOUT=60 TORCH_TIMEOUT=60 \
  CONFIGS=${CONFIGS:-"partloc:1:bf16:1 partloc:2:bf16:1 partloc:4:bf16:1"} bash bench/vit_train_gpu.sh "$O/vit" > "$O/vit_run.log" 2>&1
cat "$O/vit/vit_train.md"
