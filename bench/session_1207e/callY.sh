#!/bin/sh
# bench/session_1207e/callY.sh OUT - the whole op table once on callX's build (.carry_w: the TF32 weight gradient on cuBLAS from
# 512 channels, the faster weight layouts), PyTorch after it. carry [".carry_w"]; run on callX's warm machine.
. bench/device_call.sh; call_begin "$1"
for r in 1; do
  timeout 60 .carry_w/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench$r.txt"; echo "cuda_bench $r rc=$? ($(el) s)"
  vs_torch 75 "$L/nn_bench$r.txt" "$L/cuda_table$r.md" "$L/cuda_torch$r.log" | grep -v "cudnn benchmark"; pack
done
