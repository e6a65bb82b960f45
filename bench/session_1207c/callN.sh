#!/bin/sh
# bench/session_1207c/callN.sh OUT - stop 24's third device call. Builds (git-ignored, sm_90a only):
#   .carry_w  main f4ff712 (callM.sh's)
#   .carry_g  branch fence3 (ws_loader FENCED with the bias tile a tile ahead, for the staged-bias forward only):
#             sh bench/session_1206e/build_carry.sh $PWD/.carry_g /work/wt_wg (at fence3)
# run with carry [".carry_w", ".carry_g"]: g's attention tests; racecheck of the staged bias on g; the A/B g vs w
# (cases 10, 1, 11; three runs); g's whole suite; memcheck of the staged-bias cases on g.
. bench/device_call.sh; call_begin "$1"
G=.carry_g W=.carry_w
timeout 40 $G/test_cuda sdpa > "$L/g_test_sdpa.log" 2>&1; rc=$?; echo "g test_cuda sdpa rc=$rc ($(el) s)"; tail -2 "$L/g_test_sdpa.log"; pack
for c in "staged bias" "bias"; do race_case 100 20 $G "$c"; done
for r in 1 2 3; do for c in 10 1 11; do for b in w g; do
  B=$W; [ $b = g ] && B=$G
  timeout 20 $B/flash_bench $c | sed "s/^/$b /" >> "$L/ab.log" 2>&1; done; done; done
echo "ab ($(el) s)"; sort -s -k3,3n "$L/ab.log" | cut -c1-110; pack
timeout 60 $G/test_cuda > "$L/g_test_cuda.log" 2>&1; echo "g test_cuda rc=$? ($(el) s)"; tail -1 "$L/g_test_cuda.log"; pack
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda sdpa "case=bias" > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
