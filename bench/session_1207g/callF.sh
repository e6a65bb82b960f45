#!/bin/sh
# bench/session_1207g/callF.sh OUT - group_norm as it lands in stop 28: the two-pass forward on blocks of 1024
# threads, four float4s in flight a thread; the backward in float4s. `test_cuda gn -v` + memcheck + racecheck,
# `cuda_bench gn` (a copy of the same 32 MiB; the rule, 512 and 256 threads) with PyTorch, ncu sections on both
# kernels, `test_cuda -v`, the whole `cuda_bench` with PyTorch. Build: sh bench/session_1206e/build_carry.sh
# $PWD/.carry_i; carry [".carry_i"].
. bench/device_call.sh; call_begin "$1"
timeout 60 .carry_i/test_cuda gn -v > "$L/test_gn.log" 2>&1; echo "test_cuda gn rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_gn.log" | head -12; tail -2 "$L/test_gn.log"; pack
sanitize 90 memcheck .carry_i gn; sanitize 90 racecheck .carry_i gn
timeout 60 .carry_i/cuda_bench gn 2>&1 | grep -v NN_MEM > "$L/gn_bench.txt"; echo "cuda_bench gn rc=$? ($(el) s)"
vs_torch 90 "$L/gn_bench.txt" "$L/gn_table.md" "$L/gn_torch.log"; pack
for k in k_group_norm_fwd k_group_norm_bwd; do
  timeout 60 ncu -k "$k" -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats .carry_i/cuda_bench gn > "$L/ncu_$k.txt" 2>&1
  echo "ncu $k rc=$? ($(el) s)"
  grep -E "Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Grid Size|Block Size|Waves" "$L/ncu_$k.txt" | head -8
  pack
done
timeout 150 .carry_i/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_cuda.log" | head -8; tail -2 "$L/test_cuda.log"; pack
timeout 60 .carry_i/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
vs_torch 100 "$L/nn_bench.txt" "$L/cuda_table.md" "$L/cuda_torch.log" | grep -v "cudnn benchmark"; pack
