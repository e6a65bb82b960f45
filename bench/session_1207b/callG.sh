#!/bin/sh
# bench/session_1207b/callG.sh OUT - the first device call of stop 23 (ran 2026-12-07 08:01 UTC on an H100, 430 s; logs
# call0801_logs.tgz; racecheck, last, stopped at its time limit): branch ws128 (5dd1087: main f05dea5, the
# review fold never run on the GPU, + the rotated query-tile order of the wgmma backward, NN_SDPA_QROT=0 = main's
# order, + the warp-specialised D = 128 backward, NN_SDPA_WS128=0 = main's kernel) as one build. Build first
# (git-ignored): sh bench/session_1206e/build_carry.sh .carry_w; run with carry [".carry_w"]. Order, most wanted
# first (a kill keeps the logs so far): the ring race probe, the attention tests (WS128 off for the rest of the
# call if they fail), test_cuda -v, the A/B, the eleven flash cases with PyTorch, memcheck, ncu of the D = 128
# backward, the conv table with PyTorch, racecheck of the attention tests.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_w
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
nvcc -O2 -arch=sm_90a bench/session_1207/race_ring.cu -o "$L/race_ring" > "$L/race_ring.log" 2>&1
for m in 0 1; do echo "mode $m" >> "$L/race_ring.log"; timeout 60 compute-sanitizer --tool racecheck --racecheck-report hazard "$L/race_ring" $m >> "$L/race_ring.log" 2>&1; done
grep -E "mode|RACECHECK SUMMARY|Error|sum" "$L/race_ring.log" | head -12; echo "($(el) s)"; pack
timeout 90 $G/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; rc=$?; echo "test_cuda sdpa rc=$rc ($(el) s)"; tail -3 "$L/test_sdpa.log"
[ $rc != 0 ] && export NN_SDPA_WS128=0 WSBAD=1 && echo "WS128 off from here"; pack
timeout 150 $G/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -6; pack
for r in 1 2; do for c in 2 1 3 11; do for w in 0 1; do for q in 0 1; do
  [ $c != 2 ] && [ $w = 0 ] && continue; [ "$WSBAD" = 1 ] && [ $w = 1 ] && continue
  NN_SDPA_WS128=$w NN_SDPA_QROT=$q timeout 25 $G/flash_bench $c | sed "s/^/ws$w qrot$q /" >> "$L/ab.log" 2>&1; done; done; done; done
echo "ab ($(el) s)"; cut -c1-120 "$L/ab.log"; pack
for c in 1 2 3 4 5 6 7 8 9 10 11; do timeout 25 $G/flash_bench $c >> "$L/flash.log" 2>&1; done
echo "flash ($(el) s)"; cut -c1-140 "$L/flash.log"; pack
NOMATH=1 PYTHONUNBUFFERED=1 timeout 150 python3 bench/flash_torch.py "$L/flash.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el) s)"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 70 ncu --kernel-name regex:wg_bwd_d128 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --import-source no $G/flash_bench 2 > "$L/ncu_d128.txt" 2>&1
echo "ncu rc=$? ($(el) s)"; grep -E "Duration|Throughput|Stall|Warp Cycles|Issued" "$L/ncu_d128.txt" | head -20; pack
timeout 30 $G/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/rows.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda_torch.py "$L/rows.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el) s)"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
R=$(( 430 - $(el) )); [ $R -lt 30 ] && exit 0
timeout $R compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $G/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2
grep -o "at void sdpa_cu::[a-z_0-9]*<[^>]*>" "$L/racecheck.log" | sort | uniq -c | head; pack
