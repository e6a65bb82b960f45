#!/bin/sh
# bench/session_1207/callD.sh OUT - an A/B of ws_loader (e3565b2) against 877d85b, an ncu profile of the D = 128 backward; the first call of the session after stop 21: main as merged on the GPU
# (never run as one build), the racecheck question on the WS loader, and what stop 21 did not rerun.
# Build first (git-ignored): bench/session_1206e/build_carry.sh .carry_main (main's HEAD), .carry_old (877d85b),
# .carry_n128 (branch n128, 87ae43f: bench/session_1207/n128.patch on 9fb4801)
# Then: run with carry [".carry_main", ".carry_old", ".carry_n128"] and this script. Order (most wanted first: a kill keeps
# the logs so far): the race probe, main's test_cuda -v, n128's sdpa tests, the A/B, the eleven flash cases with
# PyTorch, ncu, memcheck, racecheck, the conv table with PyTorch.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_main
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
nvcc -O2 -arch=sm_90a bench/session_1207/race_probe.cu -o "$L/race_probe" > "$L/race_probe.log" 2>&1
for m in 0 1; do compute-sanitizer --tool racecheck --racecheck-report hazard "$L/race_probe" $m >> "$L/race_probe.log" 2>&1; done
grep -E "mode|RACECHECK SUMMARY|Error" "$L/race_probe.log" | sort | uniq -c | head -8; pack
timeout 150 $G/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -6; pack
# ws_loader (the fold, the staged-bias loader at 72 registers) against 877d85b: cases 10 (staged bias), 1, 4 (WS
# bwd); branch n128 (87ae43f: the D = 128 backward's dV/dK and the forward's P V as m64n128k16) on case 2
timeout 60 .carry_n128/test_cuda sdpa > "$L/test_n128.log" 2>&1; echo "n128 test_cuda sdpa rc=$?"; tail -2 "$L/test_n128.log"
for r in 1 2; do for c in 2 10 1 4; do for v in old main n128; do
  [ $c != 2 ] && [ $v = n128 ] && continue
  timeout 25 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done; done; done
echo "ab ($(el) s)"; cut -c1-120 "$L/ab.log"; pack
for c in 1 2 3 4 5 6 7 8 9 10 11; do timeout 25 $G/flash_bench $c >> "$L/flash.log" 2>&1; done
NN_SDPA_WS=0 timeout 25 $G/flash_bench 4 | sed 's/^/ws0 /' >> "$L/flash.log" 2>&1
echo "flash ($(el) s)"; cut -c1-140 "$L/flash.log"; pack
grep -v '^ws0' "$L/flash.log" > "$L/flash_main.log"
NOMATH=1 PYTHONUNBUFFERED=1 timeout 150 python3 bench/flash_torch.py "$L/flash_main.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el) s)"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
# where the D = 128 backward (n128's) waits (case 2 fwd+bwd was 0.62 of cuDNN): one launch, stall reasons by SASS line
timeout 70 ncu --kernel-name regex:wg_bwd_d128 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --import-source no .carry_n128/flash_bench 2 > "$L/ncu_d128.txt" 2>&1
echo "ncu rc=$? ($(el) s)"; grep -E "Duration|Throughput|Stall|Warp Cycles|Issued" "$L/ncu_d128.txt" | head -20; pack
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 120 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $G/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2
grep -o "at void sdpa_cu::[a-z_0-9]*<[^>]*>" "$L/racecheck.log" | sort | uniq -c | head; pack
[ $(el) -gt 470 ] && exit 0
timeout 30 $G/cuda_bench conv 2>&1 | grep -v NN_MEM > "$L/rows.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda_torch.py "$L/rows.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el) s)"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
