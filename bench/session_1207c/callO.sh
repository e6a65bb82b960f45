#!/bin/sh
# bench/session_1207c/callO.sh OUT [race] - stop 24's closing calls on main as it stands. Build (git-ignored, sm_90a):
#   sh bench/session_1206e/build_carry.sh .carry_z ; run with carry [".carry_z"].
# Without "race": test_cuda -v; the eleven attention cases with PyTorch (flash_bench 1..11, flash_torch.py);
# issue 5's whole table (cuda_bench, every row) with PyTorch, twice. With "race": racecheck of `test_cuda sdpa
# quick` (every attention kernel family), then memcheck of `test_cuda quick`.
. bench/device_call.sh; call_begin "$1"
Z=.carry_z
if [ "$2" = race ]; then
  timeout 420 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 --print-limit 20 $Z/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
  echo "racecheck rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2
  grep -o "at void sdpa_cu::[a-z_0-9]*<[^>]*>" "$L/racecheck.log" | sort | uniq -c | head; pack
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $Z/test_cuda quick > "$L/memcheck.log" 2>&1
  echo "memcheck rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
  exit 0
fi
timeout 90 $Z/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -6; pack
for c in 1 2 3 4 5 6 7 8 9 10 11; do timeout 25 $Z/flash_bench $c >> "$L/flash.log" 2>&1; done
echo "flash ($(el) s)"; cut -c1-140 "$L/flash.log"; pack
NOMATH=1 PYTHONUNBUFFERED=1 timeout 170 python3 bench/flash_torch.py "$L/flash.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "flash_torch ($(el) s)"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
for r in 1 2; do
  timeout 90 $Z/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench$r.txt"; echo "cuda_bench $r rc=$? ($(el) s)"
  vs_torch 150 "$L/nn_bench$r.txt" "$L/cuda_table$r.md" "$L/cuda_torch$r.log" | grep -v "cudnn benchmark"; pack
done
