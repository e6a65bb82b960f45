#!/bin/sh
W=${OUT:-/tmp/convout}
mkdir -p $W
cd "$(dirname "$0")"
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } > $W/env.txt 2>&1
cat $W/env.txt
t0=$(date +%s)
timeout 150 ./test_cuda conv -v > $W/test_conv.log 2>&1; echo "test_cuda conv rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "FAIL|worst|passed" $W/test_conv.log | tail -8
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda conv quick > $W/memcheck.log 2>&1
echo "memcheck rc=$? ($(( $(date +%s) - t0 )) s)"; grep -E "ERROR SUMMARY|passed, " $W/memcheck.log | tail -3
timeout 200 ./test_cuda > $W/test_full.log 2>&1; echo "test_cuda (all) rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "FAIL|worst|passed" $W/test_full.log | tail -6
timeout 150 ./cuda_bench_base conv > $W/nn_before.txt 2>&1
timeout 150 ./cuda_bench conv > $W/nn_after.txt 2>&1; echo "bench rc=$? ($(( $(date +%s) - t0 )) s)"
PYTHONUNBUFFERED=1 timeout 240 python3 cuda_torch.py $W/nn_after.txt $W/after.md > $W/torch.log 2>&1
echo "torch rc=$? ($(( $(date +%s) - t0 )) s)"; grep -i "error\|Traceback" $W/torch.log | head -5
python3 combine.py $W/nn_before.txt $W/after.md > $W/table.md
timeout 100 ncu --clock-control none --section SpeedOfLight --csv ./prof > $W/ncu.csv 2> $W/ncu.err; echo "ncu rc=$? ($(( $(date +%s) - t0 )) s)"
tar czf $W/logs.tgz -C $W test_conv.log memcheck.log test_full.log nn_before.txt nn_after.txt torch.log ncu.csv 2>/dev/null
rm -f $W/ncu.csv $W/test_full.log $W/memcheck.log $W/torch.log
cat $W/table.md
