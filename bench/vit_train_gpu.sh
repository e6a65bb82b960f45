#!/usr/bin/env bash
# bench/vit_train_gpu.sh OUT - issue 7/9's training-step comparison on a GPU machine, from the repository root:
# builds nn_cuda.cu (sm_90), tests/test_cuda.c and bench/vit_train_bench.c with -DNN_CUDA, runs the CUDA tests
# (TESTS=0 skips), then bench/vit_train_bench (nn.h) and bench/vit_train_torch.py (PyTorch) one after the other
# for each configuration in CONFIGS ("model:batch:dtype:ckpt" words), and writes OUT/vit_train.md.
set -u
OUT=${1:-${OUT:-/tmp/vit_out}}
mkdir -p "$OUT" build
CONFIGS=${CONFIGS:-"partloc:1:bf16:1 partloc:2:bf16:1 partloc:4:bf16:1 partloc:2:bf16:0"}
SIZE=${SIZE:-1024}; STEPS=${STEPS:-5}; WARMUP=${WARMUP:-2}
LIBS="-L/usr/local/cuda/lib64 -lcublas -lcublasLt -lcudart -lstdc++ -lm"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } | tee "$OUT/env.txt"
t0=$(date +%s)
# NOBUILD=1: use build/nn_cuda90.o and build/vit_train_bench_cuda made beforehand (and carried)
[ "${NOBUILD:-0}" = 1 ] || nvcc -O3 -std=c++17 --threads 0 -I. -gencode arch=compute_90,code=sm_90 -c nn_cuda.cu -o build/nn_cuda90.o \
  > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
[ "${NOBUILD:-0}" = 1 ] || gcc -std=c99 -O2 -march=native -fopenmp -I. -Itests -DNN_CUDA bench/vit_train_bench.c build/nn_cuda90.o \
  -o build/vit_train_bench_cuda $LIBS >> "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
if [ "${TESTS:-1}" = 1 ]; then
  gcc -std=c99 -O2 -march=native -fopenmp -I. -Itests -DNN_CUDA tests/test_cuda.c build/nn_cuda90.o -o build/test_cuda90 \
    $LIBS >> "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  timeout 300 build/test_cuda90 -v > "$OUT/test_cuda.log" 2>&1; echo "test_cuda exit $?"
  grep -E "FAIL|worst|passed" "$OUT/test_cuda.log" | tail -12
fi
export PYTHONUNBUFFERED=1
{
  echo "| model | batch | dtype | ckpt | nn.h step (ms) | torch step (ms) | nn.h / torch time | nn.h peak (MiB) | torch peak (MiB) | nn.h / torch memory |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$OUT/vit_train.md"
for c in $CONFIGS; do
  IFS=: read -r model batch dtype ckpt <<< "$c"
  flag=""; [ "$ckpt" = 0 ] && flag="--no-ckpt"
  args="--device cuda --model $model --size $SIZE --batch $batch --steps $STEPS --warmup $WARMUP --dtype $dtype $flag"
  echo "== $c"
  timeout ${NN_TIMEOUT:-150} build/vit_train_bench_cuda $args > "$OUT/nn_$model-$batch-$dtype-$ckpt.log" 2>&1
  tail -2 "$OUT/nn_$model-$batch-$dtype-$ckpt.log"
  timeout ${TORCH_TIMEOUT:-150} python3 bench/vit_train_torch.py $args > "$OUT/torch_$model-$batch-$dtype-$ckpt.log" 2>&1
  tail -2 "$OUT/torch_$model-$batch-$dtype-$ckpt.log"
  python3 - "$OUT/nn_$model-$batch-$dtype-$ckpt.log" "$OUT/torch_$model-$batch-$dtype-$ckpt.log" "$model" "$batch" "$dtype" "$ckpt" >> "$OUT/vit_train.md" <<'PY'
import sys
def res(p):
    for line in open(p, errors="replace"):
        if line.startswith("RESULT"):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return {}
a, b = res(sys.argv[1]), res(sys.argv[2])
def f(d, k, s=1.0):
    try: return float(d[k]) * s
    except (KeyError, ValueError): return float("nan")
ta, tb = f(a, "step_median_s", 1e3), f(b, "step_median_s", 1e3)
ma, mb = f(a, "peak_pool_MiB"), f(b, "peak_alloc_MiB")
print("| %s | %s | %s | %s | %.1f | %.1f | %.2f | %.0f | %.0f | %.2f |" % (*sys.argv[3:7], ta, tb, ta / tb, ma, mb, ma / mb))
PY
done
cat "$OUT/vit_train.md"
