#!/bin/sh
# bench/session_1207c/callM.sh OUT - stop 24's second device call. Builds (git-ignored, sm_90a only):
#   .carry_w  main f4ff712 (the new WGRAD loader):  sh bench/session_1206e/build_carry.sh $PWD/.carry_w /work/wt_wg (at f4ff712)
#   .carry_f  + branch fence2 (stop 23's fence.patch with the cp.async commit before wait_group 0, which 09:50's
#             x build lacked: its FENCED loader waited for nothing and read inf):
#             sh bench/session_1206e/build_carry.sh $PWD/.carry_f /work/wt_wg (at fence2)
# run with carry [".carry_w", ".carry_f"]. Order: f's attention tests; racecheck on f (staged bias, D = 128
# backward); the A/B f vs w (cases 2, 10, 11, 1; three runs); f's whole suite; then issue 5's whole table
# (cuda_bench, every row) with PyTorch on w.
. bench/device_call.sh; call_begin "$1"
F=.carry_f W=.carry_w
timeout 40 $F/test_cuda sdpa > "$L/f_test_sdpa.log" 2>&1; rc=$?; echo "f test_cuda sdpa rc=$rc ($(el) s)"; tail -2 "$L/f_test_sdpa.log"; pack
for c in "staged bias" "wgmma bwd d128"; do race_case 100 20 $F "$c"; done
for r in 1 2 3; do for c in 2 10 11 1; do for b in w f; do
  B=$W; [ $b = f ] && B=$F
  timeout 20 $B/flash_bench $c | sed "s/^/$b /" >> "$L/ab.log" 2>&1; done; done; done
echo "ab ($(el) s)"; sort -s -k3,3n "$L/ab.log" | cut -c1-110; pack
timeout 60 $F/test_cuda > "$L/f_test_cuda.log" 2>&1; echo "f test_cuda rc=$? ($(el) s)"; tail -1 "$L/f_test_cuda.log"; pack
timeout 90 $W/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/cuda_torch.py "$L/nn_bench.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el) s)"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
