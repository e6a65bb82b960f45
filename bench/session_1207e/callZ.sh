#!/bin/sh
# bench/session_1207e/callZ.sh OUT - bench/session_1207e/im2col_gn.patch: k_im2col a block per column row (at 14:54
# the TF32 weight gradient's im2col took 64 of the 116 us of its cuBLAS product at 512 channels), and group_norm's
# forward channel by channel in float4 (1.16 TB/s at 14:55, 38 % of the copy). `test_cuda -v` (the conv fallback's
# forward and both gradients in f32 / TF32 / bf16 / f16; group_norm with planes of 4k pixels), memcheck of `test_cuda
# conv quick`, `cuda_bench tf32wg` twice (does cuBLAS now win at 256 channels too? set nn__conv_tf32_wgrad_gemm's
# rule from it), ncu of one TF32 fwd+bwd step at 512 channels, then the whole `cuda_bench` and PyTorch on its rows.
# Build: main + im2col_gn.patch (git apply), sh bench/session_1206e/build_carry.sh $PWD/.carry_i, then
# bench/session_1207d/tf32_probe.c with build_carry.sh's gcc line into .carry_i. carry [".carry_i"]. Written in stop
# 26 and compiled (sm_90a), not run: the device budget was spent.
. bench/device_call.sh; call_begin "$1"
timeout 150 .carry_i/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_cuda.log" | head -8; tail -1 "$L/test_cuda.log"; pack
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 .carry_i/test_cuda conv quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
for r in 1 2; do timeout 40 .carry_i/cuda_bench tf32wg 2>&1 | grep -v NN_MEM | tee "$L/tf32wg$r.txt"; done; echo "tf32wg ($(el) s)"; pack
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 60 $NCU .carry_i/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"; pack
grep gpu__time_duration "$L/ncu_nn.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -13
timeout 60 .carry_i/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
vs_torch 100 "$L/nn_bench.txt" "$L/cuda_table.md" "$L/cuda_torch.log" | grep -v "cudnn benchmark"; pack
