#!/bin/sh
# bench/session_1207/callE.sh OUT - callD.sh cut to what the session's last device minutes hold: branch n128's
# attention tests (bench/session_1207/n128.patch: the D = 128 backward's dV/dK and the forward's P V as one
# m64n128k16), case 2 on n128 against 877d85b, cases 10 and 1 on main (ws_loader) against 877d85b, PyTorch on
# those cases, main's whole test_cuda, the race probe, ncu of n128's D = 128 backward. Carry as callD.sh.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 60 .carry_n128/test_cuda sdpa > "$L/test_n128.log" 2>&1; echo "n128 test_cuda sdpa rc=$? ($(el) s)"
grep -E "FAIL|passed" "$L/test_n128.log" | tail -4; pack
for r in 1 2; do
  for v in old n128; do timeout 25 .carry_$v/flash_bench 2 | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done
  for c in 10 1; do for v in old main; do timeout 25 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done; done
done
echo "ab ($(el) s)"; cut -c1-120 "$L/ab.log"; pack
{ grep '^n128 case 2 ' "$L/ab.log" | tail -1; grep -E '^main case (10|1) ' "$L/ab.log" | tail -2; } | sed 's/^[a-z0-9]* //' > "$L/flash_sel.log"
CASES=2,10,1 NOMATH=1 PYTHONUNBUFFERED=1 timeout 90 python3 bench/flash_torch.py "$L/flash_sel.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "torch ($(el) s)"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 100 .carry_main/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "main test_cuda rc=$? ($(el) s)"
grep -E "FAIL|passed" "$L/test_cuda.log" | tail -4; pack
nvcc -O2 -arch=sm_90a bench/session_1207/race_probe.cu -o "$L/race_probe" > "$L/race_probe.log" 2>&1
for m in 0 1; do timeout 20 compute-sanitizer --tool racecheck --racecheck-report hazard "$L/race_probe" $m >> "$L/race_probe.log" 2>&1; done
grep -E "mode|RACECHECK SUMMARY|Error" "$L/race_probe.log" | sort | uniq -c | head -8; pack
timeout 60 ncu --kernel-name regex:wg_bwd_d128 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --import-source no .carry_n128/flash_bench 2 > "$L/ncu_d128.txt" 2>&1
echo "ncu rc=$? ($(el) s)"; grep -E "Duration|Throughput|Stall|Warp Cycles|Issued" "$L/ncu_d128.txt" | head -20; pack
