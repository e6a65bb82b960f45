#!/bin/sh
# bench/session_1207/callF.sh OUT - stop 22's device call (2026-12-07 06:28 UTC, H100; two minutes were left):
# branch n128's attention tests, case 2 on n128 against 877d85b, cases 10 and 1 on main (ws_loader) against
# 877d85b. Builds (git-ignored), each by bench/session_1206e/build_carry.sh DIR SRC from a clean checkout:
# .carry_old (877d85b), .carry_main (e95353e: ws_loader), .carry_n128 (87ae43f: the D = 128 m64n128k16 commits);
# run with carry [".carry_main", ".carry_old", ".carry_n128"]. Two more commands followed on the same warm
# machine (logs with this call's in call0628_logs.tgz):
#   .carry_main/test_cuda sdpa; CASES=2 NOMATH=1 python3 bench/flash_torch.py (n128's case-2 line, the mean of the
#   two runs below); .carry_n128/test_cuda (whole suite)
#   nvcc -O2 -arch=sm_90a bench/session_1207/race_probe.cu -o race_probe; for m in 0 1: compute-sanitizer
#   --tool racecheck --racecheck-report hazard race_probe $m
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 60 .carry_n128/test_cuda sdpa > "$L/test_n128.log" 2>&1; echo "n128 test_cuda sdpa rc=$? ($(el) s)"
grep -E "FAIL|passed" "$L/test_n128.log" | tail -4; pack
for v in old n128; do timeout 20 .carry_$v/flash_bench 2 | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done
for c in 10 1; do for v in old main; do timeout 20 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done; done
echo "ab ($(el) s)"; cut -c1-120 "$L/ab.log"; pack
for v in old n128; do timeout 20 .carry_$v/flash_bench 2 | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done
echo "ab2 ($(el) s)"; tail -2 "$L/ab.log" | cut -c1-120; pack
