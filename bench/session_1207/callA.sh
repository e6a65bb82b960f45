#!/bin/sh
# bench/session_1207/callA.sh OUT - stop 21's first device call. Builds (bench/session_1206e/build_carry.sh DIR SRC,
# from a clean checkout of each commit; git-ignored): .carry_m main c6d56d3 (7c1f49f's kernels: never run as one
# build), .carry_f reapply 259770e (main + stop 19's three branches re-applied), .carry_g 44354ab (+ LDS,
# BiasStage, whole-tile register bias, bf16 shift), .carry_i bfc2f09 (+ load_tile_sw without a select, copies
# behind the products: the candidate), .carry_w ws (i + the warp-specialised forward and D = 64 backward behind
# NN_SDPA_WS=1 (=2: no turns) and NN_SDPA_WS_BWD=1). Order: the candidate's tests (the others' only if it fails), the flash A/B,
# PyTorch side by side, memcheck, racecheck, the conv A/B switches; each step packs the logs.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_i
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 120 $G/test_cuda -v > "$L/test_cuda_i.log" 2>&1; rc=$?; echo "test_cuda i rc=$rc ($(el) s)"
grep -E "FAIL|passed|in use" "$L/test_cuda_i.log" | tail -6; pack
if [ $rc != 0 ]; then for v in g f m; do
  timeout 120 .carry_$v/test_cuda > "$L/test_cuda_$v.log" 2>&1; echo "test_cuda $v rc=$? ($(el) s)"; grep -E "FAIL|passed" "$L/test_cuda_$v.log" | tail -4; pack
done; fi
NN_SDPA_WS=1 NN_SDPA_WS_BWD=1 timeout 60 .carry_w/test_cuda sdpa > "$L/test_ws.log" 2>&1; wrc=$?; echo "test_cuda sdpa WS rc=$wrc ($(el) s)"
grep -E "FAIL|passed" "$L/test_ws.log" | head -5; grep passed "$L/test_ws.log" | tail -1; pack
[ $wrc = 124 ] || for c in 10 3 2 1 11; do for w in 1 2; do NN_SDPA_WS=$w NN_SDPA_WS_BWD=1 timeout 15 .carry_w/flash_bench $c | sed "s/^/ws$w /" >> "$L/flash_ab.log" 2>&1; done; done
for c in 10 8 3 2 9 1 11; do for v in $( [ $c = 11 ] || echo m ) $( [ $c = 10 ] || [ $c = 8 ] && echo f ) $( [ $c = 11 ] || echo g ) i; do
  timeout 25 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ab.log" 2>&1; done; done
echo "flash A/B ($(el) s)"; cut -c1-150 "$L/flash_ab.log"; pack
grep '^i ' "$L/flash_ab.log" | sed 's/^i //' > "$L/flash_i.log"
CASES=10,8,3,2,9,1,11 NOMATH=1 PYTHONUNBUFFERED=1 timeout 80 python3 bench/flash_torch.py "$L/flash_i.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el) s)"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 80 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed|Invalid" "$L/memcheck.log" | sort | uniq -c | head -5; pack
timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $G/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2; pack
[ $(el) -gt 440 ] && exit 0
timeout 30 $G/cuda_bench conv > "$L/conv_i.txt" 2>&1; NN_CONV_WG_BN=256 timeout 30 $G/cuda_bench conv > "$L/conv_bn256.txt" 2>&1
timeout 30 $G/cuda_bench convpass > "$L/convpass_i.txt" 2>&1; NN_CONV_WGRAD_MMA=n64 timeout 30 $G/cuda_bench convpass > "$L/convpass_n64.txt" 2>&1
echo "conv A/B ($(el) s): row default alt"
for r in $(grep -h '^NN conv' "$L/conv_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/conv_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/conv_bn256.txt") (BN=256)"; done | grep -v "^conv2d_f32"
for r in $(grep -h '^NN conv' "$L/convpass_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/convpass_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/convpass_n64.txt") (n64)"; done; pack
[ $(el) -gt 500 ] && exit 0
NN_SDPA_WS=1 NN_SDPA_WS_BWD=1 timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 .carry_w/test_cuda sdpa quick > "$L/racecheck_ws.log" 2>&1
echo "racecheck WS rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck_ws.log" | tail -2; pack
