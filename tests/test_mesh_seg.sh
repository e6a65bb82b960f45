#!/bin/sh
# tests/test_mesh_seg.sh - end-to-end test of samples/mesh_seg on a very small data set (3 meshes of
# about 2k faces, the tiny config, a few steps):
#   - gen_data writes features.npy f32 [N, 458] and labels.npy u8 [N]
#   - training lowers the loss (mean of the last two steps below the first two)
#   - resume is exact: 4 epochs straight == 2 epochs, stop, --resume, 2 more (same per-step losses)
#   - eval prints the model's and the baseline's metrics
#   - infer writes a valid .npy of labels and a PLY whose counts match its header
#   - (when PyTorch is installed) the seed's PyTorch model loads the checkpoint and gives the same logits;
#     without PyTorch the whole model's parity is build/test_mesh_seg_parity's (a committed fixture, in make test)
# Usage: sh tests/test_mesh_seg.sh [BUILD_DIR]   (default build/mesh_seg; `make mesh_seg` builds it)
#        MESH_SEG=build/mesh_seg/mesh_seg_cuda sh tests/test_mesh_seg.sh   tests that program instead (the CUDA
#        build; its training.device=auto runs everything on the GPU when one is present)
# Last line: "N passed, M failed"; exit status 1 on any failure.
B=${1:-build/mesh_seg}
PY=${PYTHON:-python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/test_mesh_seg.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

MS=${MESH_SEG:-$B/mesh_seg}
if [ ! -x "$MS" ] || [ ! -x "$B/gen_data" ]; then
    echo "test_mesh_seg: $MS or $B/gen_data missing (make mesh_seg)"; echo "0 passed, 1 failed"; exit 1
fi
export KIT_PROGRESS=plain OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
CFG="--config configs/mesh_seg_tiny.yaml --set data.train_dir=$T/data/train --set data.val_dir=$T/data/val
     --set data.workers=1 --set training.learning_rate=2e-3 --set training.warmup_steps=1 --set training.max_time_s=0"

# data
"$B/gen_data" --out "$T/data" --train 2 --val 1 --min-faces 1800 --max-faces 2200 --seed 3 > "$T/gen.log" 2>&1
check "gen_data writes 3 meshes" '[ $(ls -d "$T"/data/*/mesh_* 2>/dev/null | wc -l) -eq 3 ]'
if $PY -c "import numpy" 2>/dev/null; then
    check "features.npy f32 [N,458], labels.npy u8 [N] in {0,1}, confidence in [0,1]" "$PY - '$T/data/train/mesh_0000' <<'EOF'
import sys, numpy as np
f = np.load(sys.argv[1] + '/features.npy'); l = np.load(sys.argv[1] + '/labels.npy')
ok = f.dtype == np.float32 and f.ndim == 2 and f.shape[1] == 458 and l.dtype == np.uint8 and l.shape == (f.shape[0],)
ok = ok and set(np.unique(l)) <= {0, 1} and 0 <= f[:, 448].min() and f[:, 448].max() <= 1 and 1500 < f.shape[0] < 4000
sys.exit(0 if ok else 1)
EOF"
fi

# training A: 4 epochs x 2 meshes = 8 steps
"$MS" train $CFG --set training.epochs=4 --set output.dir="$T/a" > "$T/a.log" 2>&1
sed -n 's/.*parameters on \([a-z]*\)$/  trained on \1/p' "$T/a.log"
check "train runs (8 steps, checkpoints last + best)" '[ -f "$T/a/last.safetensors" ] && [ -f "$T/a/best.safetensors" ] && [ $(wc -l < "$T/a/train_log.csv") -eq 9 ]'
check "loss decreases (first two steps vs last two)" "awk -F, 'NR>1 { l[NR-1] = \$4 } END { a = (l[1] + l[2]) / 2; b = (l[7] + l[8]) / 2; print \"  loss \" a \" -> \" b; exit !(b < a - 0.01) }' '$T/a/train_log.csv'"
check "TensorBoard event file and loss plot written" 'ls "$T"/a/events.out.tfevents.* >/dev/null 2>&1 && [ -s "$T/a/loss.png" ]'

# training B: stop after 2 epochs, resume for the other 2; per-step losses must equal A's
"$MS" train $CFG --set training.epochs=4 --set training.max_steps=4 --set output.dir="$T/b" > "$T/b1.log" 2>&1
"$MS" train $CFG --set training.epochs=4 --set output.dir="$T/b" --resume > "$T/b2.log" 2>&1
check "resume continues at epoch 3" 'grep -q "resumed from .*epoch 2 done, step 4" "$T/b2.log" && [ $(wc -l < "$T/b/train_log.csv") -eq 9 ]'
check "resumed losses equal the uninterrupted run's" "awk -F, 'FNR>1 { if (FILENAME == ARGV[1]) a[\$1] = \$4; else b[\$1] = \$4 } END { m = 0; for (s = 5; s <= 8; s++) { d = a[s] - b[s]; if (d < 0) d = -d; if (!(s in b)) d = 1; if (d > m) m = d }; print \"  max |loss difference| over steps 5-8: \" m; exit !(m <= 1e-5) }' '$T/a/train_log.csv' '$T/b/train_log.csv'"

# eval
"$MS" eval $CFG --set output.dir="$T/a" > "$T/eval.log" 2>&1
check "eval prints model and baseline metrics" 'grep -q "model .*movable IoU" "$T/eval.log" && grep -q "confidence > threshold .*movable IoU" "$T/eval.log"'
sed -n '2,4p' "$T/eval.log"

# infer
M="$T/data/val/mesh_0000"
"$MS" infer $CFG --ckpt "$T/a/best.safetensors" "$M" --out "$T/pred" --logits > "$T/infer.log" 2>&1
N=$(sed -n 's/.*: \([0-9]*\) faces.*/\1/p' "$T/infer.log" | head -1)
check "infer writes .pred.npy, .ply, .logits.npy" '[ -s "$T/pred/mesh_0000.pred.npy" ] && [ -s "$T/pred/mesh_0000.ply" ] && [ -s "$T/pred/mesh_0000.logits.npy" ] && [ -n "$N" ]'
check "pred.npy: NumPy magic, |u1, shape (N,), N + header bytes" "head -c 6 '$T/pred/mesh_0000.pred.npy' | od -c | grep -q 'N   U   M   P   Y' &&
    head -c 128 '$T/pred/mesh_0000.pred.npy' | grep -q \"'descr': '|u1'.*'shape': ($N,)\" &&
    [ \$(( \$(wc -c < '$T/pred/mesh_0000.pred.npy') - $N )) -le 256 ]"
if $PY -c "import numpy" 2>/dev/null; then
    check "pred.npy loads in NumPy: uint8 [N] in {0,1}" "$PY -c \"import numpy as np, sys; p = np.load('$T/pred/mesh_0000.pred.npy'); sys.exit(0 if p.dtype == np.uint8 and p.shape == ($N,) and set(np.unique(p)) <= {0, 1} else 1)\""
fi
check "PLY: header counts match the body, colours in 0..255" "awk -v n=$N '
    NR == 1 && \$0 != \"ply\" { exit 1 }
    /^element vertex/ { nv = \$3 } /^element face/ { nf = \$3 }
    /^end_header/ { body = 1; next }
    body && seen < nv { if (NF != 6 || \$4 > 255 || \$6 > 255) exit 1; seen++; next }
    body { if (NF != 7 || \$1 != 3 || \$2 >= nv || \$4 >= nv || \$7 > 255) exit 1; faces++ }
    END { exit !(nv == 3 * n && nf == n && seen == nv && faces == nf) }' '$T/pred/mesh_0000.ply'"

# PyTorch parity: the seed's own model with our checkpoint
if $PY -c "import torch, safetensors, yaml" 2>/dev/null; then
    check "PyTorch (seed's model, strict load_state_dict) gives our logits" "$PY tests/check_mesh_seg_torch.py --ckpt '$T/a/best.safetensors' --mesh '$M' --logits '$T/pred/mesh_0000.logits.npy' --tol 1e-4"
else
    echo "note PyTorch parity of the whole model: test_mesh_seg_parity (tests/fixtures/mesh_seg.txt, in make test);" \
         "this checkpoint's cross-check needs python3 with torch, safetensors, yaml"
fi

if [ $fail -gt 0 ]; then for f in "$T"/*.log; do echo "--- $f"; tail -5 "$f"; done; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
