#!/bin/sh
# bench/session_1207c/callL.sh OUT - stop 24's first device call: three builds (git-ignored, each sm_90a only):
#   .carry_m  main c01b640:               sh bench/session_1206e/build_carry.sh .carry_m
#   .carry_x  main + stop 23's patches:   for f in fence dqbulk d128bulk; do git apply bench/session_1207b/$f.patch || break; done &&
#             sh bench/session_1206e/build_carry.sh .carry_x && git checkout nn_cuda.cu
#   .carry_w  branch wgrad_ld (the WGRAD loader: a quarter warp one 128-byte row; main otherwise):
#             sh bench/session_1206e/build_carry.sh $PWD/.carry_w /work/wt_wg
# run with carry [".carry_m", ".carry_x", ".carry_w"]. Order, most wanted first (a kill keeps the logs so far):
# w's conv tests and the conv A/B against m; then bench/session_1207b/callK.sh's list on x (attention tests,
# racecheck of the staged bias and both backwards, race_ws modes 16 and 31, the dQ A/B, the whole suite, memcheck); then the conv table
# with PyTorch on w.
. bench/device_call.sh; call_begin "$1"
X=.carry_x W=.carry_w M=.carry_m
timeout 60 $W/test_cuda conv -v > "$L/w_test_conv.log" 2>&1; echo "w test_cuda conv rc=$? ($(el) s)"; grep -E "FAIL|passed" "$L/w_test_conv.log" | tail -4; pack
for r in 1 2 3; do for b in m w; do
  B=$M; [ $b = w ] && B=$W
  timeout 30 $B/cuda_bench convpass 2>&1 | grep -v NN_MEM | sed "s/^/$b /" >> "$L/convpass.log"; done; done
echo "convpass ($(el) s)"; sort -s -k2,2 "$L/convpass.log" | cut -c1-120; pack
timeout 40 $X/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; rc=$?; echo "x test_cuda sdpa rc=$rc ($(el) s)"; tail -2 "$L/test_sdpa.log"
if [ $rc != 0 ]; then NN_SDPA_DQBULK=0 timeout 40 $X/test_cuda sdpa > "$L/test_sdpa_nobulk.log" 2>&1
  echo "without the bulk paths rc=$? ($(el) s)"; tail -1 "$L/test_sdpa_nobulk.log"; fi; pack
for c in "staged bias" "wgmma bwd d128" "wgmma d64 bwd one query tile"; do race_case 70 50 $X "$c"; done
nvcc -O2 -gencode arch=compute_90a,code=sm_90a bench/session_1207b/race_ws.cu -o "$L/race_ws" > "$L/race_ws.log" 2>&1
for m in 16 31; do echo "mode $m" >> "$L/race_ws.log"; timeout 40 compute-sanitizer --tool racecheck --racecheck-report hazard "$L/race_ws" $m >> "$L/race_ws.log" 2>&1; done
grep -E "mode|RACECHECK SUMMARY|rror" "$L/race_ws.log" | head -8; echo "race_ws ($(el) s)"; pack
for r in 1 2 3; do
  for c in 1 3 11 2; do for q in 0 1; do
    NN_SDPA_DQBULK=$q timeout 20 $X/flash_bench $c | sed "s/^/x bulk$q /" >> "$L/ab.log" 2>&1; done; done
  for c in 2 10; do timeout 20 $M/flash_bench $c | sed "s/^/m /" >> "$L/ab.log" 2>&1; done
  timeout 20 $X/flash_bench 10 | sed "s/^/x /" >> "$L/ab.log" 2>&1
done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
timeout 60 $X/test_cuda > "$L/test_cuda.log" 2>&1; echo "x test_cuda rc=$? ($(el) s)"; tail -1 "$L/test_cuda.log"; pack
timeout 60 $W/test_cuda > "$L/w_test_cuda.log" 2>&1; echo "w test_cuda rc=$? ($(el) s)"; tail -1 "$L/w_test_cuda.log"; pack
timeout 30 $W/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/rows.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda_torch.py "$L/rows.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el) s)"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
R=$(( 560 - $(el) )); [ $R -lt 20 ] && exit 0
timeout $R compute-sanitizer --tool memcheck --error-exitcode 9 $X/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
