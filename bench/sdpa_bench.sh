#!/bin/sh
# bench/sdpa_bench.sh [threads] - nn_sdpa (bench/sdpa_bench.c) against PyTorch's CPU
# F.scaled_dot_product_attention (bench/sdpa_torch.py), same thread count, one table on stdout.
# Env: SDPA_CASES (default "mha1024 cross900 long40k seed000"), SDPA_LONG_HEADS (default 1), CC (default gcc),
#      SDPA_NO_TORCH=1 to time nn.h only.
# Columns: wall ms (median) and CPU ms (all threads, per call) for forward and forward+backward; peak memory
# added by the call in MiB: ours from the pool (nn_mem_stats peak - live before), PyTorch's from the resident
# set (VmHWM - VmRSS before; with MALLOC_MMAP_THRESHOLD_ fixed, glibc hands its big blocks back to the
# system between calls). CPU ms is steadier than wall ms when other jobs share the machine.
set -e
cd "$(dirname "$0")/.."
T=${1:-$(nproc)}
CASES=${SDPA_CASES:-"mha1024 cross900 long40k seed000"}
mkdir -p build
${CC:-gcc} -std=c99 -O3 -march=native -fopenmp -I. bench/sdpa_bench.c -o build/sdpa_bench -lm
echo "# $(date -u '+%Y-%m-%d %H:%M UTC') threads=$T host=$(uname -n) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\" torch=$(python3 -c 'import torch; print(torch.__version__)')"
printf '| %-9s | %-5s | %10s %10s | %10s %10s | %12s %12s |\n' case impl "fwd ms" "fwd cpu" "f+b ms" "f+b cpu" "fwd MiB" "f+b MiB"
for c in $CASES; do
    reps=3
    [ "$c" = mha1024 ] && reps=5
    [ "$c" = long40k ] && reps=1
    o=$(OMP_NUM_THREADS=$T ./build/sdpa_bench "$c" "$reps" 2>build/sdpa_cpu_ours.txt)
    oc=$(sed 's/.*fwd \([0-9.]*\) fwd+bwd \([0-9.]*\)/\1 \2/' build/sdpa_cpu_ours.txt)
    # a fixed mmap threshold: every block >= 128 KiB is mmapped, so the resident set follows PyTorch's tensors
    [ "${SDPA_NO_TORCH:-0}" = 1 ] && { echo "$o" | awk -v cpu="$oc" '{split(cpu, u, " "); printf "| %-9s | %-5s | %10s %10s | %10s %10s | %12s %12s |\n", $1, "nn.h", $2, u[1], $3, u[2], $4, $5}'; continue; }
    t=$(MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=$T SDPA_THREADS=$T python3 bench/sdpa_torch.py "$c" "$reps" 2>build/sdpa_cpu_torch.txt || echo "$c failed")
    tc=$(sed 's/.*fwd \([0-9.]*\) fwd+bwd \([0-9.]*\)/\1 \2/' build/sdpa_cpu_torch.txt 2>/dev/null | tail -1)
    echo "$o" | awk -v cpu="$oc" '{split(cpu, u, " "); printf "| %-9s | %-5s | %10s %10s | %10s %10s | %12s %12s |\n", $1, "nn.h", $2, u[1], $3, u[2], $4, $5}'
    echo "$t" | awk -v cpu="$tc" '{split(cpu, u, " "); if (NF >= 7) printf "| %-9s | %-5s | %10s %10s | %10s %10s | %12s %12s |\n", $1, "torch", $2, u[1], $3, u[2], $6, $7; else print "| " $0 " |"}'
done
