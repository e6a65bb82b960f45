#!/bin/sh
# bench/session_1207d/callT.sh OUT - issue 5's whole table on the final code, twice, each nn.h run followed by PyTorch
# (bench/cuda_torch.py): .carry_u3's library (main with k_unary at 256 x 1) and cuda_bench rebuilt from main with
# batch_ms (20 ms memory-bound rows, 2 ms GEMM / conv / AdamW rows):
#   gcc ... bench/cuda_bench.c -L.carry_u3 -lnn_cuda ... (the cuda_bench line of bench/session_1206e/build_carry.sh)
# carry [".carry_u3"]
. bench/device_call.sh; call_begin "$1"
for r in 1 2; do
  timeout 120 .carry_u3/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench$r.txt"; echo "cuda_bench $r rc=$? ($(el) s)"
  vs_torch 170 "$L/nn_bench$r.txt" "$L/cuda_table$r.md" "$L/cuda_torch$r.log" | grep -v "cudnn benchmark"; pack
done
