#!/bin/sh
# bench/session_1206d/callF.sh OUT - the session's closing call: main as merged (.carry_f), against a7623af
# (.carry_d, before the staged-bias change) on flash cases 8-10. Most important first, logs tarred after each step:
#   1. the whole CUDA suite; the A/B switches' other paths (conv, sdpa subsets);
#   2. flash cases 10, 8, 9: d, f, f with NN_SDPA_D32_STAGE=1; racecheck on sdpa quick;
#   3. conv rows (cuda_bench conv / convpass) with the A/B switches in ALT_ENVS; the elementwise rows (cuda_bench
#      ew); PyTorch on the conv and ew rows, then its attention backends on cases 8-10;  4. memcheck on quick.
# Build (here): /work/build_carry.sh-style: nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -shared
# nn_cuda.cu; gcc -std=c99 -O2 tests/test_cuda.c, bench/flash_bench.c, bench/cuda_bench.c against it (rpath $ORIGIN).
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
F=.carry_f
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } 2>&1 | tee "$L/env.txt"
timeout 100 $F/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -8
NN_SDPA_D32_STAGE=1 timeout 40 $F/test_cuda sdpa > "$L/test_sdpa_d32stage.log" 2>&1; echo "test_cuda sdpa, D32_STAGE=1 rc=$? ($(el))"; grep -E "FAIL|passed" "$L/test_sdpa_d32stage.log" | tail -4
for e in $ALT_ENVS; do env $e timeout 40 $F/test_cuda conv > "$L/test_conv_$e.log" 2>&1; echo "test_cuda conv, $e rc=$? ($(el))"; grep -E "FAIL|passed" "$L/test_conv_$e.log" | tail -4; done
pack
for c in 10 8 9; do
  for v in d f; do timeout 40 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ab.log" 2>&1; done
  [ $c = 10 ] || NN_SDPA_D32_STAGE=1 timeout 40 $F/flash_bench $c | sed "s/^/f_d32stage /" >> "$L/flash_ab.log" 2>&1
done
echo "flash A/B ($(el))"; cut -c1-150 "$L/flash_ab.log"
timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $F/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el))"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2; pack
timeout 60 $F/cuda_bench conv > "$L/conv_f.txt" 2>&1; echo "cuda_bench conv rc=$? ($(el))"
timeout 60 $F/cuda_bench convpass > "$L/convpass_f.txt" 2>&1; echo "cuda_bench convpass rc=$? ($(el))"
for e in $ALT_ENVS; do   # a WGRAD switch: the bf16 rows with their passes; a tile switch: every conv row
  case $e in *WGRAD*) env $e timeout 60 $F/cuda_bench convpass > "$L/convpass_$e.txt" 2>&1; touch "$L/conv_$e.txt";;
             *) env $e timeout 60 $F/cuda_bench conv > "$L/conv_$e.txt" 2>&1; touch "$L/convpass_$e.txt";; esac
  echo "A/B $e ($(el))"; done
timeout 60 $F/cuda_bench ew > "$L/ew_f.txt" 2>&1; echo "cuda_bench ew rc=$? ($(el))"
cat "$L/conv_f.txt" "$L/ew_f.txt" | grep -v NN_MEM > "$L/rows_f.txt"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/cuda_torch.py "$L/rows_f.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el))"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"
echo "A/B, ms (default | alternatives $ALT_ENVS):"
for r in $(grep '^NN' "$L/conv_f.txt" "$L/convpass_f.txt" -h | awk '{print $2}' | sort -u); do
  printf "%-48s" "$r"; printf " %9s" "$(grep -h "^NN $r " "$L/conv_f.txt" "$L/convpass_f.txt" | head -1 | awk '{print $3}')"
  for e in $ALT_ENVS; do printf " %9s" "$(grep -h "^NN $r " "$L/conv_$e.txt" "$L/convpass_$e.txt" | head -1 | awk '{print $3}')"; done; echo
done | tee "$L/conv_ab.txt"; pack
grep '^f ' "$L/flash_ab.log" | sed 's/^f //' > "$L/flash_f.log"
CASES=8,9,10 NOMATH=1 PYTHONUNBUFFERED=1 timeout 100 python3 bench/flash_torch.py "$L/flash_f.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 70 compute-sanitizer --tool memcheck --error-exitcode 9 $F/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
