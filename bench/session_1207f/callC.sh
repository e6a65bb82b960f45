#!/bin/sh
# bench/session_1207f/callC.sh OUT - group_norm's cluster kernels made persistent (as many clusters as fit, each
# loading its next group while it reduces and writes the current one) and the fallback forward with four float4s in
# flight per thread; k_im2col a block column per channel and tap, a thread per pixel over every image. `test_cuda gn
# -v` + memcheck + racecheck, `cuda_bench gn` with PyTorch, ncu sections on each
# group_norm kernel, `test_cuda -v`, memcheck of `test_cuda conv quick`, `cuda_bench tf32wg`, ncu of the TF32 step at
# 512 channels, the whole `cuda_bench` with PyTorch. Build: git apply bench/session_1207f/persist_im2col.patch, then
# sh bench/session_1206e/build_carry.sh $PWD/.carry_i, then bench/session_1207d/tf32_probe.c with build_carry.sh's gcc
# line into .carry_i; carry [".carry_i"]. Written in stop 27 and compiled (sm_90a), not run: the device budget ran out.
. bench/device_call.sh; call_begin "$1"
timeout 60 .carry_i/test_cuda gn -v > "$L/test_gn.log" 2>&1; echo "test_cuda gn rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_gn.log" | head -12; tail -2 "$L/test_gn.log"; pack
sanitize 90 memcheck .carry_i gn; sanitize 90 racecheck .carry_i gn
timeout 60 .carry_i/cuda_bench gn 2>&1 | grep -v NN_MEM > "$L/gn_bench.txt"; echo "cuda_bench gn rc=$? ($(el) s)"
vs_torch 90 "$L/gn_bench.txt" "$L/gn_table.md" "$L/gn_torch.log"; pack
for k in k_group_norm_fwd_cl k_group_norm_fwd k_group_norm_bwd_cl; do
  timeout 60 ncu -k "$k" -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats .carry_i/cuda_bench gn > "$L/ncu_$k.txt" 2>&1
  echo "ncu $k rc=$? ($(el) s)"
  grep -E "Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Max Active Clusters|Grid Size|Block Size|Waves" "$L/ncu_$k.txt" | head -12
  pack
done
timeout 150 .carry_i/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_cuda.log" | head -8; tail -2 "$L/test_cuda.log"; pack
sanitize 100 memcheck .carry_i conv quick
timeout 40 .carry_i/cuda_bench tf32wg 2>&1 | grep -v NN_MEM > "$L/tf32wg.txt"; echo "tf32wg ($(el) s)"; grep 512 "$L/tf32wg.txt"; pack
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 60 $NCU .carry_i/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"; pack
grep gpu__time_duration "$L/ncu_nn.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -4
timeout 60 .carry_i/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
vs_torch 100 "$L/nn_bench.txt" "$L/cuda_table.md" "$L/cuda_torch.log" | grep -v "cudnn benchmark"; pack
