#!/bin/bash
# wip/flash_run.sh - one complete device run: build (if the carried binaries do not load), check against the CPU
# op and torch float64, compute-sanitizer memcheck + racecheck on small cases, benchmark vs PyTorch backends.
# Usage (repo root on the device machine): bash wip/flash_run.sh  (logs under $OUT)
set -o pipefail
OUT=${OUT:-/tmp/flash_out}; mkdir -p "$OUT" build
date -u '+%Y-%m-%d %H:%M UTC' | tee "$OUT/summary.log"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee -a "$OUT/summary.log"
if ldd build/flash_test | grep -q "not found"; then
  echo "rebuilding on the device"
  gcc -std=c99 -O2 -fopenmp -I. -c wip/flash_cpu_ref.c -o build/flash_cpu_ref.o
  nvcc -arch=sm_90 -O3 -std=c++17 -o build/flash_test wip/flash_test.cu build/flash_cpu_ref.o -lgomp &
  nvcc -arch=sm_90 -O3 -std=c++17 -shared -Xcompiler -fPIC -o build/libflash.so wip/flash_attn.cu; wait
fi
timeout 120 ./build/flash_test 2>&1 | tee "$OUT/test_cpu.log" | tail -42
timeout 150 compute-sanitizer --tool memcheck --print-limit 10 ./build/flash_test quick > /tmp/memcheck.log 2>&1
echo "memcheck rc=$?: $(grep -E 'ERROR SUMMARY' /tmp/memcheck.log)" | tee -a "$OUT/summary.log"
timeout 150 compute-sanitizer --tool racecheck --print-limit 10 ./build/flash_test quick > /tmp/racecheck.log 2>&1
echo "racecheck rc=$?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' /tmp/racecheck.log | tr '\n' ' ')" | tee -a "$OUT/summary.log"
PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-300} python3 wip/flash_torch.py build/libflash.so ${MODE:-all} 2>&1 | grep -v Warning | tee "$OUT/torch.log"
# the alternative bf16 D<=64 tiles (NNFA_ALT=1): checked against the CPU op (+ sanitizers) and torch, and timed
NNFA_ALT=1 timeout 120 ./build/flash_test > "$OUT/test_cpu_alt.log" 2>&1; echo "alt vs CPU op: $(tail -1 "$OUT/test_cpu_alt.log")" | tee -a "$OUT/summary.log"
NNFA_ALT=1 timeout 150 compute-sanitizer --tool memcheck ./build/flash_test quick > /tmp/memcheck_alt.log 2>&1; echo "alt memcheck: $(grep 'ERROR SUMMARY' /tmp/memcheck_alt.log)" | tee -a "$OUT/summary.log"
NNFA_ALT=1 timeout 150 compute-sanitizer --tool racecheck ./build/flash_test quick > /tmp/racecheck_alt.log 2>&1; echo "alt racecheck: $(grep 'RACECHECK SUMMARY' /tmp/racecheck_alt.log)" | tee -a "$OUT/summary.log"
NNFA_ALT=1 PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-300} python3 wip/flash_torch.py build/libflash.so ${MODE:-all} 2>&1 | grep -v Warning | tee "$OUT/torch_alt.log" | grep -E "^worst|^check|^\|"
cat "$OUT/summary.log"
