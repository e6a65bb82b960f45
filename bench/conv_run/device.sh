#!/bin/sh
# bench/conv_run/device.sh - the conv2d check in one device call (the conv helper's run of 2026-12-06).
# Built here (nvcc 13.0, no GPU), from the repository root, then copied with this script, combine.py and
# bench/cuda_torch.py into one carried folder (the command runs from there):
#   nvcc -O3 -std=c++17 --threads 0 -I. -gencode arch=compute_90,code=sm_90 -c nn_cuda.cu -o build/nn_cuda90.o
#   gcc -std=c99 -O2 -fopenmp -I. -Itests -DNN_CUDA -c tests/test_cuda.c    -> test_cuda   (linked with nn_cuda90.o,
#   gcc -std=c99 -O2 -fopenmp -I. -DNN_CUDA -c bench/cuda_bench.c           -> cuda_bench   -lcublas -lcublasLt -lcudart
#   the same bench/cuda_bench.c against the base commit's nn.h + nn_cuda.cu -> cuda_bench_base   -lstdc++ -lm, libgomp.a)
# Then: tests (conv cases verbose, memcheck on their quick subset, the whole suite), the conv rows before
# (cuda_bench_base) and after (cuda_bench), PyTorch on the same rows, one table (combine.py).
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
cat $W/table.md
