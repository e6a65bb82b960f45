#!/bin/sh
# bench/mesh_seg_step.sh OUT - one training step of seed 000's model (bench/mesh_seg_step_bench.c, nn.h) and of the
# seed's own PyTorch code (bench/mesh_seg_step_torch.py) side by side in one call, on issue 10's four
# configurations (40,000 faces f32 / bf16 / bf16 + checkpointing, 200,000 faces bf16 + checkpointing), after a
# correctness check (same weights and mesh, dropout off: loss and gradient norms of nn.h vs PyTorch). PyTorch runs
# twice: the seed's code as written, and with need_weights=False on its attention calls (fused SDPA; see the .py).
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
for v in seed sdpa; do
    "$PY" bench/mesh_seg_step_torch.py --device "$DEVICE" --configs "$CONFIGS" --steps "$STEPS" --warmup "$WARMUP" --variant $v \
        > "$OUT/torch_$v.log" 2>&1 || fail=1
done

# the table: PyTorch as the seed wrote it (need_weights=True) and with need_weights=False (fused SDPA)
{
    echo "| faces | mode | nn.h step | PyTorch step (seed code) | speed-up | PyTorch step (need_weights=False) | speed-up | nn.h peak memory | PyTorch peak (seed code) | PyTorch peak (need_weights=False) |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk 'function ms(x) { return x == "" ? "-" : sprintf("%.1f ms", x) }
         function mib(x) { return (x == "" || x == "nan") ? "-" : sprintf("%.0f MiB", x) }
         function ratio(a, b) { return (a == "" || b == "") ? "-" : sprintf("%.1fx", a / b) }
         /^RESULT/ { delete v; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                     k = v["faces"] ":" v["mode"]; t[v["impl"], k] = v["median_ms"]; m[v["impl"], k] = v["peak_mib"]
                     if (v["impl"] == "nn.h") order[++n] = k }
         END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, ":")
                   printf "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], ms(t["nn.h", k]),
                          ms(t["torch", k]), ratio(t["torch", k], t["nn.h", k]), ms(t["torch_sdpa", k]),
                          ratio(t["torch_sdpa", k], t["nn.h", k]), mib(m["nn.h", k]), mib(m["torch", k]), mib(m["torch_sdpa", k]) } }' \
        "$OUT/nn.log" "$OUT/torch_seed.log" "$OUT/torch_sdpa.log"
} > "$OUT/mesh_seg_step.md"
cat "$OUT/mesh_seg_step.md"
exit $fail
