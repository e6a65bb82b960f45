#!/bin/sh
# bench/session_1207d/callV.sh OUT - the TF32 weight gradient on im2col + cuBLAS against conv_cu's mma.sync kernel:
# `test_cuda conv -v` (both products forced on seven cases, TOL_TF32 against the CPU), `cuda_bench tf32wg` twice
# (each TF32 fwd+bwd row on mma.sync, on cuBLAS, on the rule's pick), then `cuda_bench conv` and PyTorch on its rows.
# Build: main + bench/session_1207d/tf32_wgrad_cublas.patch (git apply), then sh bench/session_1206e/build_carry.sh
# $PWD/.carry_v. carry [".carry_v"]. Written in stop 25 and built, not run: the device budget was spent (12:36).
# The patch's rule (cuBLAS from 512 output channels) is provisional: set it from the tf32wg rows. The patch also moves
# k_im2col's index divisions to 32 bits where every index fits (the fallback's columns, TF32's weight gradient included).
. bench/device_call.sh; call_begin "$1"
timeout 100 .carry_v/test_cuda conv -v > "$L/test_conv.log" 2>&1; echo "test_cuda conv rc=$? ($(el) s)"
grep -E "FAIL|passed" "$L/test_conv.log" | tail -6; grep -c "weight gradient on" "$L/test_conv.log"; pack
for r in 1 2; do timeout 40 .carry_v/cuda_bench tf32wg 2>&1 | grep -v NN_MEM | tee "$L/tf32wg$r.txt"; done; echo "tf32wg ($(el) s)"; pack
timeout 60 .carry_v/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/conv.txt"; echo "cuda_bench conv rc=$? ($(el) s)"
vs_torch 120 "$L/conv.txt" "$L/conv_table.md" "$L/conv_torch.log" | grep -v "cudnn benchmark"; pack
