#!/bin/sh
# bench/session_1207b/callK.sh OUT - written in stop 23, NOT RUN (no device time left): the experiments that stop
# 23's profile (bench/RESULTS_FLASH.md) points to, in one build x against main (m). Patches, applied in order:
#   fence.patch: ws_loader FENCED (the loader waits for its copies, fences them, arrives with a release) for the
#     D = 128 backward (no proxy fence after the computing warps' wait, whose MEMBAR waited for the dQ atomics)
#     and for the staged-bias forward (whose shared bias loads racecheck reported after the wait).
#   dqbulk.patch: wg_bwd_kernel (D = 64, plain) adds dQ by bulk reductions from shared memory.
#   d128bulk.patch: the same for the WS D = 128 backward, with two query stages instead of three (the room for the
#     staging rows).
#   NN_SDPA_DQBULK=0 turns both bulk paths off in x (then x = main + fence.patch).
# Build first (git-ignored), each from a clean checkout of main:
#   sh bench/session_1206e/build_carry.sh .carry_m
#   for f in fence dqbulk d128bulk; do git apply bench/session_1207b/$f.patch || break; done && \
#     sh bench/session_1206e/build_carry.sh .carry_x && git checkout nn_cuda.cu
# run with carry [".carry_m", ".carry_x"]. Order, most wanted first: x's attention tests (again with the bulk
# paths off if they fail); racecheck on x (staged bias, D = 128 backward, D = 64 backward); the A/B, three runs:
# cases 1, 3, 11 (D = 64) and 2 (D = 128) with the bulk paths off and on, cases 2 and 10 on m; x's whole suite;
# memcheck.
. bench/device_call.sh; call_begin "$1"
X=.carry_x
timeout 40 $X/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; rc=$?; echo "test_cuda sdpa rc=$rc ($(el) s)"; tail -2 "$L/test_sdpa.log"
if [ $rc != 0 ]; then NN_SDPA_DQBULK=0 timeout 40 $X/test_cuda sdpa > "$L/test_sdpa_nobulk.log" 2>&1
  echo "without the bulk paths rc=$? ($(el) s)"; tail -1 "$L/test_sdpa_nobulk.log"; fi; pack
for c in "staged bias" "wgmma bwd d128" "wgmma d64 bwd one query tile"; do race_case 80 50 $X "$c"; done
for r in 1 2 3; do
  for c in 1 3 11 2; do for q in 0 1; do
    NN_SDPA_DQBULK=$q timeout 20 $X/flash_bench $c | sed "s/^/x bulk$q /" >> "$L/ab.log" 2>&1; done; done
  for c in 2 10; do timeout 20 .carry_m/flash_bench $c | sed "s/^/m /" >> "$L/ab.log" 2>&1; done
  timeout 20 $X/flash_bench 10 | sed "s/^/x /" >> "$L/ab.log" 2>&1
done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
timeout 60 $X/test_cuda > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; tail -1 "$L/test_cuda.log"; pack
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $X/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
