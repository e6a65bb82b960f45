#!/bin/sh
# bench/run_conv_bench.sh [batch] [reps] [threads] - builds bench/conv_bench.c, runs it and its PyTorch twin
# bench/conv_torch.py with the same OpenMP thread count, and prints the markdown table for RESULTS_CPU_CONV.md.
set -e
B=${1:-8}; R=${2:-5}; T=${3:-2}
OUT=${TMPDIR:-/tmp}
cc -std=c99 -O3 -march=native -fopenmp -I. bench/conv_bench.c -o "$OUT/conv_bench" -lm
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $T; batch $B; median of $R runs"
echo "torch: $(python3 -c 'import torch; print(torch.__version__)')"
OMP_NUM_THREADS=$T OMP_PROC_BIND=true "$OUT/conv_bench" "$B" "$R" > "$OUT/conv_nn.txt"
OMP_NUM_THREADS=$T OMP_PROC_BIND=true python3 bench/conv_torch.py "$B" "$R" "$T" > "$OUT/conv_torch.txt"
python3 - "$OUT/conv_nn.txt" "$OUT/conv_torch.txt" <<'PY'
import sys
def rows(path):
    r = {}
    for line in open(path):
        f = line.split()
        if f and f[0] == "case":
            r[f[1]] = f[2:]
    return r
nn, th = rows(sys.argv[1]), rows(sys.argv[2])
print("| case | nn.h ms | nn.h GFLOP/s | torch ms | torch GFLOP/s | nn.h / torch time | nn.h peak MiB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k, v in nn.items():
    t = th.get(k)
    gf = lambda s: "-" if float(s) == 0 else s
    if t:
        print("| %s | %s | %s | %s | %s | %.2f | %s |" % (k, v[1], gf(v[3]), t[1], gf(t[3]), float(v[1]) / float(t[1]), v[4]))
    else:
        print("| %s | %s | %s | - | - | - | %s |" % (k, v[1], gf(v[3]), v[4]))
PY
