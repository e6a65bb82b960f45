#!/bin/sh
# bench/session_1207b/callH.sh OUT - stop 23's second device call (ran 08:18 UTC, H100, 153 s; logs call0818_logs.tgz;
# then on the same machine, logs call0821_logs.tgz: NN_SDPA_WS=0 and default racecheck of test_cuda sdpa
# "case=staged bias one key tile" (--print-limit 300, 50 s each), and race_ws.cu's modes under racecheck): branch ws128 as it merges (5f69579: the D = 128
# backward warp-specialised by default, no query rotation). Build first (git-ignored):
# sh bench/session_1206e/build_carry.sh .carry_m2; run with carry [".carry_m2"]. Order, most wanted first: the
# attention tests and the whole suite; NN_SDPA_WS=0 against the default on cases 2 and 1 (twice); per-SASS-line
# stall sampling of the two wgmma backwards (ncu --page source, clocks not locked); racecheck of the staged-bias
# forward cases (callG's racecheck reported 200 hazards there only) and of the D = 128 backward cases.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_m2
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 60 $G/test_cuda sdpa > "$L/test_sdpa.log" 2>&1; echo "test_cuda sdpa rc=$? ($(el) s)"; tail -2 "$L/test_sdpa.log"
timeout 100 $G/test_cuda > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; tail -1 "$L/test_cuda.log"; pack
for r in 1 2; do for c in 2 1; do for w in 0 1; do
  NN_SDPA_WS=$w timeout 25 $G/flash_bench $c | sed "s/^/ws$w /" >> "$L/ab.log" 2>&1; done; done; done
echo "ab ($(el) s)"; cut -c1-110 "$L/ab.log"; pack
for k in "wg_bwd_d128:2" "wg_bwd_kernel:3"; do n=${k%%:*}; c=${k##*:}
  timeout 60 ncu --kernel-name regex:$n --launch-count 1 --clock-control none --section SourceCounters \
    --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    $G/flash_bench $c > "$L/ncu_$n.txt" 2>&1
  timeout 60 ncu --kernel-name regex:$n --launch-count 1 --clock-control none --section SourceCounters \
    --section WarpStateStats --page source --print-source sass --csv $G/flash_bench $c > "$L/ncu_src_$n.csv" 2>&1
  echo "ncu $n rc=$? ($(el) s)"; grep -E "Tensor|Shared|Bank|Pipe" "$L/ncu_$n.txt" | head -12; pack
done
for c in "staged bias" "wgmma bwd d128"; do
  timeout 60 compute-sanitizer --tool racecheck --racecheck-report hazard --print-limit 2000 $G/test_cuda sdpa "case=$c" > "$L/race_$(echo $c | tr ' ' _).log" 2>&1
  echo "racecheck '$c' rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/race_$(echo $c | tr ' ' _).log" | tail -2
  grep -o "in block ([0-9,]*)" "$L/race_$(echo $c | tr ' ' _).log" | sort | uniq -c | sort -rn | head -5; pack
done
