#!/usr/bin/env bash
# nn.h vs PyTorch on the CPU, same machine, same thread count: bash bench/run_cpu_bench.sh [threads]
set -e
cd "$(dirname "$0")/.."
t=${1:-$(nproc)}
mkdir -p build
gcc -O3 -march=native -fopenmp -I. bench/cpu_bench.c -o build/cpu_bench -lm
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $t threads, torch $(python3 -c 'import torch; print(torch.__version__)')"
OMP_NUM_THREADS=$t build/cpu_bench > build/cpu_nn.txt
python3 bench/cpu_torch.py "$t" > build/cpu_torch.txt
printf '| %-28s | %10s | %10s | %6s |\n' case "nn.h ms" "torch ms" "ratio"
printf '|%s|%s|%s|%s|\n' ------------------------------ ------------ ------------ --------
paste build/cpu_nn.txt build/cpu_torch.txt | awk -F'  +' '{ split($0, a, / +ms/); }
  { n=$0; sub(/ ms.*/, "", n); m=n; sub(/.* /, "", m); name=n; sub(/ +[0-9.]+$/, "", name);
    rest=$0; sub(/.*peak [0-9]+\t/, "", rest); tm=rest; sub(/ ms.*/, "", tm); sub(/.* /, "", tm);
    printf "| %-28s | %10.3f | %10.3f | %6.2f |\n", name, m, tm, m / tm }'
