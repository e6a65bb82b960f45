#!/bin/sh
# bench/convwg_run/device.sh OUT - the conv_wg check in one device call (carried as .carry_convwg/run.sh, run from
# the repository root on the device: sh .carry_convwg/run.sh $OUT).
# The carried folder (built without a GPU, nvcc 13.0): libnn_cuda.so of this branch,
#   nvcc -O3 -std=c++17 --threads 0 -I. -Xcompiler -fPIC -gencode arch=compute_90a,code=sm_90a -shared nn_cuda.cu \
#        -o libnn_cuda.so -lcublas -lcublasLt
# base/libnn_cuda.so the same build of main (93a8337), test_cuda (tests/test_cuda.c) and cuda_bench
# (bench/cuda_bench.c) linked against -lnn_cuda with rpath $ORIGIN (base/cuda_bench: the same binary beside the
# base library), combine.py (bench/conv_run) and cuda_torch.py (bench) beside them.
# 1. test_cuda conv -v (f32 + autocast conv cases; the new wgmma cases are "conv2d autocast wg ...")
# 2. compute-sanitizer memcheck on test_cuda conv quick
# 3. cuda_bench conv: base vs this branch vs this branch with NN_CONV_WG=0 / fd / fw; PyTorch (cuda_torch.py) on
#    the bf16 rows
W=${1:-${OUT:-/tmp/convwg_out}}
mkdir -p "$W"
D=$(cd "$(dirname "$0")" && pwd)
cd "$D"
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
t0=$(date +%s)
timeout 100 ./test_cuda conv -v > "$W/test_conv.log" 2>&1; echo "test_cuda conv rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "wgmma|FAIL|worst|passed" "$W/test_conv.log" | tail -8
timeout 80 compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda conv quick > "$W/memcheck.log" 2>&1
echo "memcheck rc=$? ($(( $(date +%s) - t0 )) s)"; grep -E "ERROR SUMMARY|passed, " "$W/memcheck.log" | tail -3
timeout 40 ./base/cuda_bench conv > "$W/nn_base.txt" 2>&1; echo "bench base rc=$?"
timeout 40 ./cuda_bench conv > "$W/nn_new.txt" 2>&1; echo "bench new rc=$?"
for v in 0 fd fw; do   # 0: conv_cu only; fd: WGRAD on conv_cu; fw: DGRAD on conv_cu (attribution of the fwd+bwd rows)
  NN_CONV_WG=$v timeout 40 ./cuda_bench conv > "$W/nn_wg_$v.txt" 2>&1; echo "bench new NN_CONV_WG=$v rc=$? ($(( $(date +%s) - t0 )) s)"
done
grep conv2d_bf16 "$W/nn_new.txt" > "$W/nn_new_bf16.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 cuda_torch.py "$W/nn_new_bf16.txt" "$W/torch.md" > "$W/torch.log" 2>&1
echo "torch rc=$? ($(( $(date +%s) - t0 )) s)"; grep -i "error\|Traceback" "$W/torch.log" | head -5
python3 combine.py "$W/nn_base.txt" "$W/torch.md" > "$W/table.md"
cat "$W/table.md"
echo "bf16 rows, ms: base | new | NN_CONV_WG=0 | =fd | =fw"
for c in $(grep -o "conv2d_bf16[^ ]*" "$W/nn_new.txt"); do
  echo "$c $(for f in nn_base nn_new nn_wg_0 nn_wg_fd nn_wg_fw; do grep " $c " "$W/$f.txt" | awk '{printf "%s ", $3}'; done)"
done
