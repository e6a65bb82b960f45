#!/bin/sh
# bench/session_1207c/callP.sh OUT - GELU shapes: gelu_probe (built here: nvcc -O3 -gencode arch=compute_90a,code=sm_90a
# bench/session_1207c/gelu_probe.cu -o .carry_p/gelu_probe), then main's `cuda_bench ew` (.carry_z) with
# bench/cuda_torch.py on its rows, in one call; carry [".carry_p", ".carry_z"].
O=${1:?}; L="$O/logs"; mkdir -p "$L"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 60 .carry_p/gelu_probe 2>&1 | tee "$L/gelu_probe.log"
timeout 40 .carry_z/cuda_bench ew 2>&1 | grep -v NN_MEM > "$L/ew.txt"
PYTHONUNBUFFERED=1 timeout 60 python3 bench/cuda_torch.py "$L/ew.txt" "$L/ew_table.md" > "$L/ew_torch.log" 2>&1
grep '^|' "$L/ew_table.md"
