#!/bin/sh
# bench/session_1207/callF.sh OUT - callE.sh cut to two minutes (the session's last device time): branch n128's
# attention tests, case 2 on n128 against 877d85b, cases 10 and 1 on main against 877d85b. Carry as callD.sh.
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
