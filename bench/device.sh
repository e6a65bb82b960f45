#!/usr/bin/env bash
# bench/device.sh [OUTDIR] - the whole CUDA check on a machine with a GPU, from the repository root:
# build, `make test-cuda`, bench/cuda_bench vs PyTorch (bench/cuda_torch.py), then compute-sanitizer memcheck
# on the test. Logs and the results table go to OUTDIR ($OUT on the device machine).
set -u
OUTDIR=${1:-${OUT:-/tmp/nn_cuda_out}}
mkdir -p "$OUTDIR"
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv; nvcc --version | tail -2
} > "$OUTDIR/env.txt" 2>&1
cat "$OUTDIR/env.txt"
echo "== build"
make -s cuda-build > "$OUTDIR/build.log" 2>&1 || { tail -30 "$OUTDIR/build.log"; exit 1; }
echo "== make test-cuda"
build/test_cuda -v > "$OUTDIR/test_cuda.log" 2>&1; rc=$?
grep -E "FAIL|worst|passed" "$OUTDIR/test_cuda.log" | tail -25; echo "test_cuda exit $rc"
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench"
  build/cuda_bench > "$OUTDIR/nn_bench.txt" 2>&1 || tail -5 "$OUTDIR/nn_bench.txt"
  PYTHONUNBUFFERED=1 python3 bench/cuda_torch.py "$OUTDIR/nn_bench.txt" "$OUTDIR/RESULTS_CUDA.md" > "$OUTDIR/torch.log" 2>&1 \
    || tail -20 "$OUTDIR/torch.log"
  cat "$OUTDIR/RESULTS_CUDA.md"
fi
if [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  echo "== compute-sanitizer memcheck"
  timeout ${SANITIZER_TIMEOUT:-240} compute-sanitizer --tool memcheck --error-exitcode 9 build/test_cuda > "$OUTDIR/memcheck.log" 2>&1
  echo "memcheck exit $?"; grep -E "ERROR SUMMARY|passed, " "$OUTDIR/memcheck.log" | tail -3
fi
