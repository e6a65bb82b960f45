#!/bin/sh
# bench/f32sdpa_run/device.sh W - the f32 SDPA path on the GPU in one device call, from the repository root:
# build (sm_90, unless carried binaries load), the sdpa tests (all cases, f32/f16/bf16), compute-sanitizer memcheck on the sdpa quick subset,
# build/flash_bench f32 vs PyTorch's SDPA backends in f32 (bench/flash_torch.py, DTYPE=f32), and seed 000's
# training step at 40,000 faces in f32 side by side with PyTorch (bench/mesh_seg_step.sh). Logs go to W.
#   FCASES  flash cases (default 5,6);  MESH  0 skips the mesh_seg step;  SAN  0 skips the sanitizer
W=${1:-/tmp/f32sdpa}
FCASES=${FCASES:-5,6}
mkdir -p "$W" build
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nvcc --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__)'; } > "$W/env.txt" 2>&1
cat "$W/env.txt"
LIBDIR=$(dirname "$(command -v nvcc)")/../lib64
LD="-L$LIBDIR -Wl,-rpath,$LIBDIR -lcublas -lcublasLt -lcudart -lstdc++ -lm"
t0=$(date +%s)
# binaries built on the build machine and carried (same nvcc 13.0, /usr/local/cuda) are used when they load
if [ -x build/test_cuda ] && [ -x build/flash_bench ] && [ -x build/mesh_seg_step_bench_cuda ] && \
   ! ldd build/test_cuda | grep -q "not found"; then echo "carried binaries"; else
nvcc -O3 -std=c++17 --threads 0 -I. -gencode arch=compute_90,code=sm_90 -c nn_cuda.cu -o build/nn_cuda90.o > "$W/build.log" 2>&1 &
gcc -std=c99 -O2 -fopenmp -I. -Itests -DNN_CUDA -c tests/test_cuda.c -o build/test_cuda.o >> "$W/build.log" 2>&1 &
gcc -std=c99 -O2 -fopenmp -I. -Itests -DNN_CUDA -c bench/flash_bench.c -o build/flash_bench.o >> "$W/build.log" 2>&1 &
gcc -std=c99 -O2 -fopenmp -I. -Imodels -DNN_CUDA -c bench/mesh_seg_step_bench.c -o build/mesh_seg_step_bench.o >> "$W/build.log" 2>&1 &
wait
for x in test_cuda flash_bench; do gcc -fopenmp build/$x.o build/nn_cuda90.o -o build/$x $LD >> "$W/build.log" 2>&1; done
gcc -fopenmp build/mesh_seg_step_bench.o build/nn_cuda90.o -o build/mesh_seg_step_bench_cuda $LD >> "$W/build.log" 2>&1
fi
echo "build $(( $(date +%s) - t0 )) s"; grep -i "error" "$W/build.log" | head -20
timeout 120 build/test_cuda sdpa -v > "$W/test_sdpa.log" 2>&1; echo "test_cuda sdpa rc=$?"
grep -E "FAIL|worst|passed" "$W/test_sdpa.log" | tail -12
grep " f32 " "$W/test_sdpa.log" | awk '{print $NF}' | sort -g | tail -1 | sed 's/^/largest f32 error: /'
if [ "${SAN:-1}" != 0 ]; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 build/test_cuda sdpa quick > "$W/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed, " "$W/memcheck.log" | tail -3
fi
for c in $(echo "$FCASES" | tr ',' ' '); do timeout 60 build/flash_bench $c f32; done > "$W/flash_nn_f32.log" 2>&1
cat "$W/flash_nn_f32.log"
DTYPE=f32 CASES=$FCASES PYTHONUNBUFFERED=1 timeout 150 python3 bench/flash_torch.py "$W/flash_nn_f32.log" 2>&1 | grep -v Warning > "$W/flash_torch_f32.log"
cat "$W/flash_torch_f32.log"
if [ "${MESH:-1}" != 0 ]; then
  CONFIGS=40000:f32 timeout 240 sh bench/mesh_seg_step.sh "$W/mesh" > "$W/mesh_seg_step.log" 2>&1; echo "mesh_seg_step rc=$?"
  cat "$W/mesh_seg_step.log"; grep -h "sdpa\|RESULT" "$W/mesh/nn.log" | head -20
fi
if [ "${OPS:-1}" != 0 ]; then
  timeout 120 build/mesh_seg_step_bench_cuda --device cuda --faces 40000 --ops > "$W/mesh_ops.log" 2>&1; echo "ops rc=$?"
  grep -i "sdpa" "$W/mesh_ops.log"
fi
