#!/bin/sh
# bench/session_1206c/final2.sh OUT - the session's closing call on main as merged, binaries in C (default
# .carry_f: libnn_cuda.so, test_cuda, flash_bench, cuda_bench, linked with rpath $ORIGIN), most important first,
# logs tarred after each step:
#   1. the whole CUDA suite; 2. issue 5's table (bench/cuda_bench.c, every row) against PyTorch;
#   3. issue 6's cases (flash_bench, all) against PyTorch's backends; 4. memcheck on quick, racecheck on sdpa quick.
O=${1:?}; C=${C:-.carry_f}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } 2>&1 | tee "$L/env.txt"
timeout 90 $C/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -8; pack
timeout 90 $C/cuda_bench > "$L/nn_bench.txt" 2>&1; echo "cuda_bench rc=$? ($(el))"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/cuda_torch.py "$L/nn_bench.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el))"; grep '^|' "$L/cuda_table.md"; pack
timeout 100 $C/flash_bench > "$L/flash_nn.log" 2>&1; echo "flash_bench rc=$? ($(el))"
NOMATH=1 PYTHONUNBUFFERED=1 timeout 130 python3 bench/flash_torch.py "$L/flash_nn.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-220; pack
timeout 70 compute-sanitizer --tool memcheck --error-exitcode 9 $C/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $C/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el))"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2; pack
