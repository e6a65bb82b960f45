#!/bin/sh
# bench/session_1207e/callX.sh OUT - main with the TF32 weight gradient on cuBLAS from 512 output channels and the two
# faster weight-layout kernels (64 x 64 transpose tiles; FPROP's layout in whole-row slices, 16-byte chunks):
# `test_cuda -v` (every op), memcheck of `test_cuda conv quick`, `cuda_bench tf32wg`, twice `cuda_bench conv` with
# PyTorch on its rows, and ncu of one TF32 fwd+bwd step at 512 channels (bench/session_1207d/tf32_probe.c).
# Build: sh bench/session_1206e/build_carry.sh $PWD/.carry_w, then tf32_probe.c with build_carry.sh's gcc line into
# .carry_w. carry [".carry_w"].
. bench/device_call.sh; call_begin "$1"
timeout 150 .carry_w/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_cuda.log" | head -8; tail -1 "$L/test_cuda.log"; pack
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 .carry_w/test_cuda conv quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 40 .carry_w/cuda_bench tf32wg 2>&1 | grep -v NN_MEM | tee "$L/tf32wg.txt"; echo "tf32wg ($(el) s)"; pack
for r in 1 2; do
  timeout 60 .carry_w/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/conv$r.txt"; echo "cuda_bench conv rc=$? ($(el) s)"
  vs_torch 120 "$L/conv$r.txt" "$L/conv_table$r.md" "$L/conv_torch$r.log" | grep -v "cudnn benchmark"; pack
done
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 60 $NCU .carry_w/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"; pack
grep gpu__time_duration "$L/ncu_nn.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -15
