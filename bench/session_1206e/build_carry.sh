#!/bin/sh
# bench/session_1206e/build_carry.sh DIR [SRC]: build libnn_cuda.so + test_cuda, flash_bench, cuda_bench into DIR from SRC (default: this checkout)
D=${1:?}; S=${2:-$(git rev-parse --show-toplevel)}; cd "$S" || exit 1; mkdir -p "$D"
nvcc -O3 -std=c++17 --threads 0 -I. -Xcompiler -fPIC -gencode arch=compute_90a,code=sm_90a -shared nn_cuda.cu -o "$D/libnn_cuda.so" -lcublas -lcublasLt || exit 1
for p in tests/test_cuda.c bench/flash_bench.c bench/cuda_bench.c; do
  b=$(basename $p .c)
  gcc -std=c99 -O2 -march=x86-64-v3 -fopenmp -I. -Itests -DNN_CUDA $p -L"$D" -lnn_cuda -Wl,-rpath,'$ORIGIN' -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublas -lcublasLt -lcudart -lstdc++ -lm -l:libgomp.a -lpthread -ldl -o "$D/$b" || exit 1
  strip "$D/$b"
done
strip "$D/libnn_cuda.so"; ls -la "$D"
