#!/bin/sh
# bench/session_1207f/callB.sh OUT - where group_norm's time goes (callA, 16:40: the forward at 1835 GB/s on
# clusters, 1874 without: 60-62 % of the copy). `cuda_bench gn` (the rule's clusters of 8, no clusters, clusters of
# 2 and 4) with PyTorch, then ncu's speed-of-light, occupancy, launch and memory sections on one launch of each
# group_norm kernel. Build: sh bench/session_1206e/build_carry.sh $PWD/.carry_i; carry [".carry_i"].
. bench/device_call.sh; call_begin "$1"
timeout 60 .carry_i/cuda_bench gn 2>&1 | grep -v NN_MEM > "$L/gn_bench.txt"; echo "cuda_bench gn rc=$? ($(el) s)"
vs_torch 90 "$L/gn_bench.txt" "$L/gn_table.md" "$L/gn_torch.log"; pack
for k in k_group_norm_fwd_cl k_group_norm_fwd k_group_norm_bwd_cl k_group_norm_bwd; do
  timeout 60 ncu -k "$k" -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
    .carry_i/cuda_bench gn > "$L/ncu_$k.txt" 2>&1; echo "ncu $k rc=$? ($(el) s)"
  grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Cluster|Grid Size|Block Size|Waves" "$L/ncu_$k.txt" | head -24
  pack
done
