#!/bin/sh
# bench/session_1207b/callK.sh OUT - written in stop 23, NOT RUN (no device time left): the two experiments that
# stop 23's profile (bench/RESULTS_FLASH.md) points to, in one build against main.
#   dqbulk.patch: wg_bwd_kernel (D = 64, plain) adds dQ by bulk reductions from shared memory (NN_SDPA_DQBULK=0:
#     main's vector atomics, in the same build).
#   fence.patch: ws_loader FENCED (the loader waits for its copies, fences them, arrives with a release) for the
#     D = 128 backward (no proxy fence after the computing warps' wait, whose MEMBAR waited for the dQ atomics)
#     and for the staged-bias forward (whose shared bias loads racecheck reported after the wait).
# Build first (git-ignored), each from a clean checkout of main:
#   sh bench/session_1206e/build_carry.sh .carry_m
#   git apply bench/session_1207b/fence.patch && git apply bench/session_1207b/dqbulk.patch && \
#     sh bench/session_1206e/build_carry.sh .carry_x && git checkout nn_cuda.cu
# run with carry [".carry_m", ".carry_x"]. Order, most wanted first: x's attention tests; racecheck of the staged
# bias and of the D = 128 backward on x; the A/B (D = 64 by the switch, D = 128 and case 10 by build), three runs;
# x's whole suite; memcheck.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
X=.carry_x
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 40 $X/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; echo "test_cuda sdpa rc=$? ($(el) s)"; tail -2 "$L/test_sdpa.log"; pack
for c in "staged bias" "wgmma bwd d128" "wgmma d64 bwd one query tile"; do f="$L/race_$(echo $c | tr ' ' _).log"
  timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --print-limit 50 $X/test_cuda sdpa "case=$c" > "$f" 2>&1
  echo "racecheck '$c' rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$f" | tail -2; pack
done
for r in 1 2 3; do
  for c in 1 3 11; do for q in 0 1; do
    NN_SDPA_DQBULK=$q timeout 20 $X/flash_bench $c | sed "s/^/x bulk$q /" >> "$L/ab.log" 2>&1; done; done
  for c in 2 10; do for v in m x; do timeout 20 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done; done
done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
timeout 60 $X/test_cuda > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; tail -1 "$L/test_cuda.log"; pack
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $X/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
