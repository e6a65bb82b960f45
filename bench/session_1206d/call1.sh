#!/bin/sh
# bench/session_1206d/call1.sh OUT - first call of the session: main at e03692e (.carry_a) against the work tree
# (.carry_c: the staged bias two tiles ahead and at D = 32, the warp-per-row sum, the one-pass f32 unary kernels,
# cuda_bench's calibrated batches and its "ew" rows); both built by the commands in the session note
# (nvcc -O3 sm_90a shared library, gcc -O2 programs, rpath $ORIGIN; LD_LIBRARY_PATH swaps the library).
#   1. test_cuda -v (c);  2. flash cases 8, 9, 10 on a and c, PyTorch on the same cases;
#   3. bench/session_1206d/ew_probe.cu (built here by nvcc);  4. cuda_bench ew on a's and c's library, PyTorch.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } 2>&1 | tee "$L/env.txt"
(nvcc -O3 -arch=sm_90a bench/session_1206d/ew_probe.cu -o /tmp/ew > "$L/ew_build.log" 2>&1 &)
timeout 100 .carry_c/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -8; pack
for c in 8 9 10; do
  for v in a c; do timeout 40 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ab.log" 2>&1; done
done
echo "flash a/c ($(el))"; cut -c1-150 "$L/flash_ab.log"
grep '^c ' "$L/flash_ab.log" | sed 's/^c //' > "$L/flash_c.log"
CASES=8,9,10 NOMATH=1 PYTHONUNBUFFERED=1 timeout 100 python3 bench/flash_torch.py "$L/flash_c.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 30 /tmp/ew > "$L/ew_probe.log" 2>&1; echo "ew_probe rc=$? ($(el))"; cat "$L/ew_probe.log"; pack
timeout 40 .carry_c/cuda_bench ew > "$L/ew_c.txt" 2>&1
LD_LIBRARY_PATH=$PWD/.carry_a timeout 40 .carry_c/cuda_bench ew > "$L/ew_a.txt" 2>&1; echo "cuda_bench ew a/c ($(el))"
PYTHONUNBUFFERED=1 timeout 60 python3 bench/cuda_torch.py "$L/ew_c.txt" "$L/ew_table.md" > "$L/ew_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el))"; grep '^|' "$L/ew_table.md"; echo "a (e03692e's library, same bench binary):"; cat "$L/ew_a.txt"; pack
