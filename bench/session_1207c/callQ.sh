#!/bin/sh
# bench/session_1207c/callQ.sh OUT - the GELU forward's shape: gelu_probe, then `cuda_bench ew` on main (.carry_z,
# k_unary at 128 threads x 4 float4) and on two builds that differ only in k_unary's shape (UN_THREADS, UN_UNROLL):
#   .carry_u1  256 x 2:  branch un256 (sh bench/session_1206e/build_carry.sh $PWD/.carry_u1 /work/wt_wg)
#   .carry_u2  128 x 2:  the same with UN_THREADS = 128, UN_UNROLL = 2
# each twice, interleaved; PyTorch (bench/cuda_torch.py) on main's rows in the same call.
# carry [".carry_p", ".carry_z", ".carry_u1", ".carry_u2"]. Written in stop 24, not run: too little device time
# was left to start a machine (10:58). The two variant builds are main with the one enum line changed.
# Stop 25: cuda_bench (rebuilt in the three carries with gcc, same libraries) and cuda_torch.py now batch calls to
# about 20 ms (was 2 ms), and PyTorch runs twice, on ew_z1 and ew_z2.
. bench/device_call.sh; call_begin "$1"
timeout 60 .carry_p/gelu_probe > "$L/gelu_probe.log" 2>&1; echo "probe ($(el) s)"; cat "$L/gelu_probe.log"; pack
for r in 1 2; do for b in z u1 u2; do
  timeout 40 .carry_$b/cuda_bench ew 2>&1 | grep -v NN_MEM | tee "$L/ew_$b$r.txt" | grep gelu | sed "s/^/$b /"; done; done
echo "ew ($(el) s)"; pack
for r in 1 2; do
  vs_torch 90 "$L/ew_z$r.txt" "$L/ew_table$r.md" "$L/ew_torch$r.log"; pack; done
