#!/bin/sh
# bench/session_1207e/callW.sh OUT - the TF32 weight gradient on im2col + cuBLAS against conv_cu's mma.sync kernel:
# `test_cuda conv -v` (both products forced on seven cases, TOL_TF32 against the CPU), `cuda_bench tf32wg` (each TF32
# fwd+bwd row on mma.sync, on cuBLAS, on the rule's pick), layout_probe (the two weight layouts' kernels), then twice
# `cuda_bench conv` and PyTorch on its rows.
# Build: main + bench/session_1207d/tf32_wgrad_cublas.patch (git apply), sh bench/session_1206e/build_carry.sh
# $PWD/.carry_v, and layout_probe.cu with the nvcc line in its header into .carry_v. carry [".carry_v"].
. bench/device_call.sh; call_begin "$1"
timeout 100 .carry_v/test_cuda conv -v > "$L/test_conv.log" 2>&1; echo "test_cuda conv rc=$? ($(el) s)"
grep -E "FAIL|passed" "$L/test_conv.log" | tail -6; grep -c "weight gradient on" "$L/test_conv.log"; pack
timeout 40 .carry_v/cuda_bench tf32wg 2>&1 | grep -v NN_MEM | tee "$L/tf32wg.txt"; echo "tf32wg ($(el) s)"; pack
timeout 30 .carry_v/layout_probe 2>&1 | tee "$L/layout_probe.txt"; echo "layout_probe ($(el) s)"; pack
for r in 1 2; do
  timeout 60 .carry_v/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/conv$r.txt"; echo "cuda_bench conv rc=$? ($(el) s)"
  vs_torch 120 "$L/conv$r.txt" "$L/conv_table$r.md" "$L/conv_torch$r.log" | grep -v "cudnn benchmark"; pack
done
