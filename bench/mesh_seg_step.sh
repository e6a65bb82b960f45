#!/bin/sh
# bench/mesh_seg_step.sh OUT - one training step of seed 000's model (bench/mesh_seg_step_bench.c, nn.h) and of the
# seed's own PyTorch code (bench/mesh_seg_step_torch.py) side by side in one call, on issue 10's four
# configurations (40,000 faces f32 / bf16 / bf16 + checkpointing, 200,000 faces bf16 + checkpointing), after a
# correctness check (same weights and mesh, dropout off: loss and gradient norms of nn.h vs PyTorch).
# Writes OUT/mesh_seg_step.md (the table) and the logs beside it.
#   BENCH   the nn.h program (default build/mesh_seg_step_bench_cuda; build it with -DNN_CUDA, see the .c)
#   DEVICE  cuda (default) or cpu;  CONFIGS  FACES:MODE,... (default the four);  STEPS, WARMUP (5, 2)
#   CHECK_FACES  faces of the correctness check (default 40000; 0 skips it)
OUT=${1:-${OUT:-/tmp/mesh_seg_step}}
BENCH=${BENCH:-build/mesh_seg_step_bench_cuda}
DEVICE=${DEVICE:-cuda}
CONFIGS=${CONFIGS:-40000:f32,40000:bf16,40000:bf16ckpt,200000:bf16ckpt}
STEPS=${STEPS:-5}; WARMUP=${WARMUP:-2}
CHECK_FACES=${CHECK_FACES:-40000}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: > "$OUT/nn.log"
fail=0

if [ "$CHECK_FACES" -gt 0 ]; then
    mkdir -p "$OUT/check"
    "$BENCH" --device "$DEVICE" --faces "$CHECK_FACES" --check "$OUT/check" > "$OUT/check_nn.log" 2>&1 || fail=1
    "$PY" bench/mesh_seg_step_torch.py --device "$DEVICE" --check "$OUT/check" > "$OUT/check_torch.log" 2>&1 || fail=1
    rm -f "$OUT/check/features.npy"   # 73 MB at 40,000 faces: not worth keeping
    # every CHECK value of nn.h against PyTorch's: relative difference at most 1e-3
    if ! awk '/^CHECK/ { key = $2 ($2 == "grad" ? " " $3 : ""); val = $NF
              if (FILENAME == ARGV[1]) a[key] = val; else b[key] = val }
         END { n = 0; worst = 0
               for (k in a) { if (!(k in b)) { print "missing in torch: " k; exit 1 }
                              d = a[k] - b[k]; if (d < 0) d = -d; m = b[k] < 0 ? -b[k] : b[k]
                              r = d / (m > 1e-30 ? m : 1e-30); if (r > worst) { worst = r; wk = k }; n++ }
               printf "correctness: %d values (loss, gradient norms) nn.h vs PyTorch, max relative difference %.2e (%s)\n", n, worst, wk
               exit !(n >= 3 && worst <= 1e-3) }' "$OUT/check_nn.log" "$OUT/check_torch.log" > "$OUT/check.txt"; then
        fail=1
    fi
    cat "$OUT/check.txt"
fi

for c in $(echo "$CONFIGS" | tr ',' ' '); do
    f=${c%%:*}; m=${c##*:}
    "$BENCH" --device "$DEVICE" --faces "$f" --mode "$m" --steps "$STEPS" --warmup "$WARMUP" >> "$OUT/nn.log" 2>&1 || fail=1
done
"$PY" bench/mesh_seg_step_torch.py --device "$DEVICE" --configs "$CONFIGS" --steps "$STEPS" --warmup "$WARMUP" > "$OUT/torch.log" 2>&1 || fail=1

{
    echo "| faces | mode | nn.h step (median) | PyTorch step (median) | speed-up | nn.h peak memory | PyTorch peak memory | memory nn.h / PyTorch |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                     k = v["faces"] ":" v["mode"]; if (v["impl"] == "nn.h") { nt[k] = v["median_ms"]; nm[k] = v["peak_mib"]; order[++n] = k }
                     else { tt[k] = v["median_ms"]; tm[k] = v["peak_mib"] } }
         END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, ":")
                   printf "| %d | %s | %.1f ms | %s | %s | %.0f MiB | %s | %s |\n", p[1], p[2], nt[k], (k in tt) ? sprintf("%.1f ms", tt[k]) : "-",
                          (k in tt) ? sprintf("%.1fx", tt[k] / nt[k]) : "-", nm[k], (k in tm && tm[k] != "nan") ? sprintf("%.0f MiB", tm[k]) : "-",
                          (k in tm && tm[k] != "nan" && tm[k] > 0) ? sprintf("%.2f", nm[k] / tm[k]) : "-" } }' "$OUT/nn.log" "$OUT/torch.log"
} > "$OUT/mesh_seg_step.md"
cat "$OUT/mesh_seg_step.md"
exit $fail
