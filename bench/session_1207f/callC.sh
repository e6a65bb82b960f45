#!/bin/sh
# bench/session_1207f/callC.sh OUT - group_norm's cluster kernels made persistent (as many clusters as fit, each
# loading its next group while it reduces and writes the current one) and the fallback forward with four float4s in
# flight per thread; k_im2col a block column per channel and tap, a thread per pixel over every image. `test_cuda gn
# -v` + memcheck + racecheck, `cuda_bench gn` with PyTorch, ncu sections on each
# group_norm kernel, `test_cuda -v`, memcheck of `test_cuda conv quick`, `cuda_bench tf32wg`, ncu of the TF32 step at
# 512 channels, the whole `cuda_bench` with PyTorch. Build: on main 713d678 (stop 27), git apply
# bench/session_1207f/persist_im2col.patch, then sh bench/session_1206e/build_carry.sh $PWD/.carry_i, then
# bench/session_1207d/tf32_probe.c with build_carry.sh's gcc line into .carry_i; carry [".carry_i"]. Written in stop
# 27, run in stop 28 (2026-12-07 19:00, bench/RESULTS_CUDA.md); its steps since folded into bench/device_call.sh's
# helpers, the same commands (the tables now in logs/gn_bench_table.md and logs/nn_bench_table.md).
. bench/device_call.sh; call_begin "$1"
test_log 60 test_gn .carry_i gn -v
sanitize 90 memcheck .carry_i gn; sanitize 90 racecheck .carry_i gn
bench_torch 60 90 gn_bench .carry_i gn
for k in k_group_norm_fwd_cl k_group_norm_fwd k_group_norm_bwd_cl; do ncu_sections 60 "$k" .carry_i cuda_bench gn; done
test_log 150 test_cuda .carry_i -v
sanitize 100 memcheck .carry_i conv quick
timeout 40 .carry_i/cuda_bench tf32wg 2>&1 | grep -v NN_MEM > "$L/tf32wg.txt"; echo "tf32wg ($(el) s)"; grep 512 "$L/tf32wg.txt"; pack
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 60 $NCU .carry_i/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"; pack
grep gpu__time_duration "$L/ncu_nn.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -4
bench_torch 60 100 nn_bench .carry_i
