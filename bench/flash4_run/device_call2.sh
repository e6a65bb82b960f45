#!/bin/sh
# flash4 device call: sdpa tests (wgmma path), sanitizers, then flash_bench new vs base and PyTorch, one call
cd "$(dirname "$0")"
W=${OUT:-/tmp/out}; mkdir -p $W build bench
cp flash_bench build/flash_bench; cp flash_torch.py bench/
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee $W/env.txt
t0=$(date +%s)
timeout ${TT:-200} ./test_cuda sdpa -v > $W/test_sdpa.log 2>&1; echo "test_cuda sdpa rc=$? $(( $(date +%s) - t0 )) s"
grep -E "FAIL|worst|passed|wgmma kernels" $W/test_sdpa.log | head -30
if grep -q FAIL $W/test_sdpa.log; then
  NN_SDPA_NO_WG_BWD=1 timeout 200 ./test_cuda sdpa -v > $W/test_sdpa_nobwd.log 2>&1; echo "without wg bwd rc=$?"
  grep -E "FAIL|worst|passed" $W/test_sdpa_nobwd.log | head -12
fi
grep -E "wgmma" $W/test_sdpa.log | grep -E " (bf16|f16) " | awk '{print $NF}' | sort -g | tail -1 | sed 's/^/largest wgmma-case error: /'
NN_SDPA_WG3=1 timeout 100 ./test_cuda sdpa > $W/test_sdpa_wg3.log 2>&1; echo "wg3 test rc=$?"; grep -E "FAIL|passed" $W/test_sdpa_wg3.log | tail -3
[ -n "$NOBENCH" ] && exit 0
timeout 120 ./flash_bench_base > $W/flash_nn_base.log 2>&1; echo "base rc=$?"
for c in 1 3 4; do NN_SDPA_WG3=1 ./flash_bench $c; done > $W/flash_nn_wg3.log 2>&1
NN_TIMEOUT=120 TORCH_TIMEOUT=200 sh ./flash_bench.sh $W > /dev/null 2>&1
echo "== base"; cat $W/flash_nn_base.log; echo "== wg3 (fwd D=64 with 3 warpgroups)"; cat $W/flash_nn_wg3.log; echo "== new"; cat $W/flash_nn.log; cat $W/flash_table.md
if [ -z "$NOSAN" ]; then
  S=$(date +%s)
  timeout ${ST:-90} compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda sdpa quick > $W/memcheck.log 2>&1; echo "memcheck rc=$? $(( $(date +%s) - S )) s"; grep -E "ERROR SUMMARY|passed" $W/memcheck.log | tail -2
  S=$(date +%s)
  timeout ${ST:-90} compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 ./test_cuda sdpa quick > $W/racecheck.log 2>&1; echo "racecheck rc=$? $(( $(date +%s) - S )) s"; grep -E "HAZARD|SUMMARY|passed" $W/racecheck.log | tail -3
fi
echo "total $(( $(date +%s) - t0 )) s"
