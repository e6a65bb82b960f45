#!/bin/sh
# bench/session_1207b/callJ.sh OUT - written in stop 23, NOT RUN: the D = 128 backward with the loader fencing its
# own copies (fence128.patch on 3fb5162: ws_loader FENCED; no fence.proxy.async, so no MEMBAR waiting for the dQ
# atomics, after the computing warps' wait) against main. Build first (git-ignored), from clean checkouts:
#   sh bench/session_1206e/build_carry.sh .carry_m             (main)
#   git apply bench/session_1207b/fence128.patch && sh bench/session_1206e/build_carry.sh .carry_f && git checkout nn_cuda.cu
# run with carry [".carry_m", ".carry_f"]: the D = 128 tests and racecheck on the patched build, then case 2
# (and case 2's causal twin is not in flash_bench: the tests cover causal) interleaved, three runs.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 40 .carry_f/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; echo "test_cuda sdpa rc=$? ($(el) s)"; tail -2 "$L/test_sdpa.log"; pack
timeout 90 compute-sanitizer --tool racecheck --racecheck-report hazard .carry_f/test_cuda sdpa "case=wgmma bwd d128" > "$L/race.log" 2>&1
echo "racecheck rc=$? ($(el) s)"; grep -E "SUMMARY|passed" "$L/race.log"; pack
for r in 1 2 3; do for v in m f; do timeout 20 .carry_$v/flash_bench 2 | sed "s/^/$v /" >> "$L/ab.log" 2>&1; done; done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
