#!/usr/bin/env bash
# bench/run_gemm_bench.sh - nn__sgemm vs torch.matmul, 1 and 2 threads, same shapes, same run.
# Prints a markdown table (paste into bench/RESULTS_CPU_GEMM.md) and the raw lines.
# Usage: bash bench/run_gemm_bench.sh [THREAD_COUNTS...]   (default: 1 2)
# Env: CC (default cc), CFLAGS (default -std=c99 -O3 -march=native -fopenmp), PYTHON (default python3).
# Each case runs the C bench then the PyTorch twin back to back, so both see the same machine load;
# run it on an otherwise idle machine (the load average is printed before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
CFLAGS=${CFLAGS:-"-std=c99 -O3 -march=native -fopenmp"}
PYTHON=${PYTHON:-python3}
THREADS=(1 2)
if [ $# -gt 0 ]; then THREADS=("$@"); fi
TMPD=$(mktemp -d)
BIN=$TMPD/gemm_bench
RAW=$TMPD/raw.txt
# shellcheck disable=SC2086
$CC $CFLAGS bench/gemm_bench.c -o "$BIN" -lm
CASES=$(sed -n 's/^ *{"\([a-zA-Z0-9_]*\)", [0-9].*/\1/p' bench/gemm_bench.c)
HAVE_TORCH=1
$PYTHON -c "import torch" 2>/dev/null || { HAVE_TORCH=0; echo "warning: no torch; PyTorch columns left empty" >&2; }

# Other jobs on a 2-core machine halve a 2-thread result: before each measurement wait (up to IDLE_WAIT_S,
# default 300 s) until the CPUs were at least 85% idle over one second.
BUSY_RUNS=0
wait_idle() {
    local deadline=$((SECONDS + ${IDLE_WAIT_S:-300})) u1 n1 s1 i1 w1 q1 r1 t1 u2 n2 s2 i2 w2 q2 r2 t2 busy total
    while :; do
        read -r _ u1 n1 s1 i1 w1 q1 r1 t1 _ < /proc/stat
        sleep 1
        read -r _ u2 n2 s2 i2 w2 q2 r2 t2 _ < /proc/stat
        busy=$(( (u2 + n2 + s2 + q2 + r2 + t2) - (u1 + n1 + s1 + q1 + r1 + t1) ))
        total=$(( busy + (i2 + w2) - (i1 + w1) ))
        if [ $((100 * busy)) -le $((15 * total)) ]; then return 0; fi
        if [ $SECONDS -ge $deadline ]; then BUSY_RUNS=$((BUSY_RUNS + 1)); return 0; fi
    done
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "command: CC=$CC CFLAGS='$CFLAGS' bash bench/run_gemm_bench.sh ${THREADS[*]}"
echo "compiler: $($CC --version | head -1)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cpus; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${THREADS[@]}"; do
    wait_idle
    OMP_NUM_THREADS=$t "$BIN" --peak | sed "s/^peak /peak t=$t /" | tee -a "$RAW"
    for c in $CASES; do
        wait_idle
        OMP_NUM_THREADS=$t "$BIN" "$c" | grep '^case' | sed 's/^case /nn /' | tee -a "$RAW"
        if [ $HAVE_TORCH = 1 ]; then
            wait_idle
            OMP_NUM_THREADS=$t $PYTHON bench/gemm_torch.py "$t" "$c" | grep '^case' | sed 's/^case /torch /' | tee -a "$RAW"
        fi
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); measurements started on a busy machine (idle wait timed out): $BUSY_RUNS"
$PYTHON - "$RAW" <<'PY'
import sys, re
peak, nn, th = {}, {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "peak" and f[2] == "computed_gflops":
        peak[int(f[1][2:])] = float(f[3])
    elif f[0] in ("nn", "torch"):
        key = (f[1], int(f[7]))
        (nn if f[0] == "nn" else th)[key] = (f[2:7], float(f[8]), float(f[9]))
print()
print("| case | M x N x K | op | threads | nn__sgemm GFLOP/s median (best) | % of peak (median) | torch.matmul GFLOP/s median (best) | nn / torch (median) |")
print("|---|---|---|---|---|---|---|---|")
for (name, t), (dims, med, best) in nn.items():
    m, n, k, ta, tb = dims
    op = ("A^T" if ta == "1" else "A") + " " + ("B^T" if tb == "1" else "B")
    pk = peak.get(t)
    tt = th.get((name, t))
    tcol = f"{tt[1]:.1f} ({tt[2]:.1f})" if tt else "-"
    ratio = f"{med / tt[1]:.2f}" if tt else "-"
    pcol = f"{100 * med / pk:.0f}%" if pk else "-"
    print(f"| {name} | {m} x {n} x {k} | {op} | {t} | {med:.1f} ({best:.1f}) | {pcol} | {tcol} | {ratio} |")
PY
rm -rf "$TMPD"
