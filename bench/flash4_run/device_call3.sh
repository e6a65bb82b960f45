#!/bin/sh
# flash4 device call 3: tests, the dQ variant (atomics vs bulk), ncu of the two wgmma kernels, bench vs base and PyTorch, sanitizers
cd "$(dirname "$0")"
W=${OUT:-/tmp/out}; mkdir -p $W build bench
cp flash_bench build/flash_bench; cp flash_torch.py bench/
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee $W/env.txt
t0=$(date +%s)
timeout 200 ./test_cuda sdpa -v > $W/test_sdpa.log 2>&1; echo "test_cuda sdpa rc=$? $(( $(date +%s) - t0 )) s"
grep -E "FAIL|worst|passed|wgmma kernels" $W/test_sdpa.log | head -20
grep -E "wgmma" $W/test_sdpa.log | grep -E " (bf16|f16) " | awk '{print $NF}' | sort -g | tail -1 | sed 's/^/largest wgmma-case error: /'
NN_SDPA_BWD_RED=1 timeout 100 ./test_cuda sdpa > $W/test_red.log 2>&1; echo "red test rc=$?"; grep -E "FAIL|passed" $W/test_red.log | tail -3
timeout 120 ./flash_bench_base > $W/flash_nn_base.log 2>&1; echo "base rc=$?"
for c in 1 3 4; do NN_SDPA_BWD_RED=1 ./flash_bench $c; done > $W/flash_nn_red.log 2>&1
NN_TIMEOUT=120 TORCH_TIMEOUT=200 sh ./flash_bench.sh $W > /dev/null 2>&1
echo "== base"; cat $W/flash_nn_base.log; echo "== dQ by per-element atomics"; cat $W/flash_nn_red.log; echo "== new"; cat $W/flash_nn.log; cat $W/flash_table.md
S=$(date +%s)
for k in wg_fwd wg_bwd; do timeout 60 ncu --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis --section SchedulerStats --section MemoryWorkloadAnalysis -k regex:$k -c 1 ./flash_bench 1 > $W/ncu_$k.log 2>&1; done
echo "ncu $(( $(date +%s) - S )) s"
for k in wg_fwd wg_bwd; do grep -E "SM Frequency|Duration|Compute \(SM\)|Issue Slots Busy|Executed Ipc A|Stall|Warp Cycles Per Issued|Shared Memory|Eligible|No Eligible" $W/ncu_$k.log | head -24; done
S=$(date +%s)
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda sdpa quick > $W/memcheck.log 2>&1; echo "memcheck rc=$? $(( $(date +%s) - S )) s"; grep -E "ERROR SUMMARY|passed" $W/memcheck.log | tail -2
S=$(date +%s)
timeout 90 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 ./test_cuda sdpa quick > $W/racecheck.log 2>&1; echo "racecheck rc=$? $(( $(date +%s) - S )) s"; grep -E "SUMMARY|passed" $W/racecheck.log | tail -2
echo "total $(( $(date +%s) - t0 )) s"
