#!/bin/sh
# bench/conv_tf32_run/device.sh OUT - the f32 / TF32 conv2d check of the ctf32 branch in one device call, run from
# a carried folder holding: libnn_cuda.so (this branch), test_cuda and cuda_bench linked against it
# (-lnn_cuda, rpath $ORIGIN), base/libnn_cuda.so + base/cuda_bench (the same bench/cuda_bench.c against the main
# build), this script, combine.py and bench/cuda_torch.py. Built here (nvcc 13.0, no GPU), from the repo root:
#   nvcc -O3 -std=c++17 --threads 0 -I. -Xcompiler -fPIC -gencode arch=compute_90a,code=sm_90a -shared nn_cuda.cu \
#        -o DIR/libnn_cuda.so -lcublas -lcublasLt
#   gcc -std=c99 -O2 -march=x86-64-v3 -fopenmp -I. -Itests -DNN_CUDA tests/test_cuda.c -o DIR/test_cuda -LDIR -lnn_cuda \
#       -Wl,-rpath,'$ORIGIN' -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublas -lcublasLt -lcudart \
#       -lstdc++ -lm -l:libgomp.a -lpthread -ldl            (bench/cuda_bench.c the same way, -DNN_CUDA)
# Then (225 s in all, each step's timeout capped by what is left): test_cuda conv -v (TF32 cases on the
# kernels, f32 cases on the 3xTF32 kernels or im2col + cuBLAS), cuda_bench conv for this branch and base,
# PyTorch on the f32 and TF32 rows, memcheck of the quick subset, one table.
W=${1:-/tmp/ctf32out}
mkdir -p "$W"
cd "$(dirname "$0")"
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())'; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 )) s"; }
tl() { r=$(( 225 - ($(date +%s) - t0) )); [ $r -lt 1 ] && r=1; [ $r -lt $1 ] && echo $r || echo $1; }   # 225 s in all
timeout $(tl 60) ./test_cuda conv -v > "$W/test_conv.log" 2>&1; echo "test_cuda conv rc=$? ($(el))"
grep -E "FAIL|worst|passed" "$W/test_conv.log" | tail -6
timeout $(tl 25) ./cuda_bench conv > "$W/nn_new.txt" 2>&1; echo "bench new rc=$? ($(el))"
timeout $(tl 25) ./base/cuda_bench conv > "$W/nn_base.txt" 2>&1; echo "bench base rc=$? ($(el))"
grep -E "^NN conv2d_(f32|tf32)" "$W/nn_new.txt" > "$W/nn_f32rows.txt"
PYTHONUNBUFFERED=1 timeout $(tl 45) python3 cuda_torch.py "$W/nn_f32rows.txt" "$W/torch.md" > "$W/torch.log" 2>&1
echo "torch rc=$? ($(el))"; grep -i "error\|Traceback" "$W/torch.log" | head -5
timeout $(tl 80) compute-sanitizer --tool memcheck --error-exitcode 9 ./test_cuda conv quick > "$W/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed, " "$W/memcheck.log" | tail -3
python3 combine.py "$W/nn_base.txt" "$W/nn_new.txt" "$W/torch.md" > "$W/table.md"
cat "$W/table.md"
