#!/bin/sh
# bench/session_1207b/callI.sh OUT - written for stop 23's last device call, NOT RUN (the device budget was spent):
# dqbulk.patch applied on 5f69579 (git apply bench/session_1207b/dqbulk.patch; it was branch dqbulk, f4918da) (wg_bwd_kernel's dQ through shared
# memory and bulk reductions; NN_SDPA_DQBULK=0 = the vector atomics of main). Build first (git-ignored):
# sh bench/session_1206e/build_carry.sh .carry_b; run with carry [".carry_b"]. The attention tests, then the A/B
# on the D = 64 backward's cases (1, 3, 11, 4), twice, then the whole suite.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_b
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 40 $G/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; echo "test_cuda sdpa rc=$? ($(el) s)"; tail -2 "$L/test_sdpa.log"; pack
for r in 1 2; do for c in 1 3 11 4; do for q in 0 1; do
  NN_SDPA_DQBULK=$q timeout 20 $G/flash_bench $c | sed "s/^/bulk$q /" >> "$L/ab.log" 2>&1; done; done; done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
timeout 40 $G/test_cuda > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; tail -1 "$L/test_cuda.log"; pack
