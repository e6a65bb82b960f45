#!/bin/sh
# flash4 final device call: the final tree (wgmma forward + bwd_kernel) - sdpa tests, memcheck, cases 1-4 vs base
cd "$(dirname "$0")"
W=${OUT:-/tmp/out}; mkdir -p $W
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee $W/env.txt
t0=$(date +%s)
timeout 60 ./test_cuda sdpa -v > $W/test_sdpa.log 2>&1; echo "test_cuda sdpa rc=$? $(( $(date +%s) - t0 )) s"
grep -E "FAIL|worst|passed|wgmma kernels" $W/test_sdpa.log | head -12
grep -E "wgmma" $W/test_sdpa.log | grep -E " (bf16|f16) " | awk '{print $NF}' | sort -g | tail -1 | sed 's/^/largest wgmma-case error: /'
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda sdpa quick > $W/memcheck.log 2>&1; echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" $W/memcheck.log | tail -2
for c in 1 2 3 4; do ./flash_bench_base $c; ./flash_bench $c; done > $W/flash_nn_final.log 2>&1; cat $W/flash_nn_final.log
echo "total $(( $(date +%s) - t0 )) s"
