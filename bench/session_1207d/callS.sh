#!/bin/sh
# bench/session_1207d/callS.sh OUT - k_unary at 256 threads x 1 float4 (.carry_u3: main e5fd16d with the one enum line
# changed, branch un256x1; sh bench/session_1206e/build_carry.sh $PWD/.carry_u3 /work/wt_u3) against 256 x 2
# (.carry_u1) and main's 128 x 4 (.carry_z): `cuda_bench ew` twice, interleaved; PyTorch twice on u3's rows;
# `test_cuda -v` on u3; then the whole table (cuda_bench, every row) on u3 with PyTorch.
# carry [".carry_z", ".carry_u1", ".carry_u3"]
. bench/device_call.sh; call_begin "$1"
for r in 1 2; do for b in z u1 u3; do
  timeout 40 .carry_$b/cuda_bench ew 2>&1 | grep -v NN_MEM > "$L/ew_$b$r.txt"; grep gelu "$L/ew_$b$r.txt" | sed "s/^/$b /"; done; done
echo "ew ($(el) s)"; pack
for r in 1 2; do
  vs_torch 90 "$L/ew_u3$r.txt" "$L/ew_table$r.md" "$L/ew_torch$r.log"; pack; done
timeout 90 .carry_u3/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; grep -E "FAIL|passed" "$L/test_cuda.log" | tail -4; pack
timeout 150 .carry_u3/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
vs_torch 200 "$L/nn_bench.txt" "$L/cuda_table.md" "$L/cuda_torch.log"; pack
