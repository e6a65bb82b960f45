#!/bin/sh
# bench/attn_run/ab.sh C OUT [VARIANTS] - one device call for the attention kernels (branch attn): C holds
# libnn_cuda.so (the change), base/libnn_cuda.so (main before it), optional v*/libnn_cuda.so (variants), and
# test_cuda, flash_bench, vtb linked against libnn_cuda.so (rpath $ORIGIN; LD_LIBRARY_PATH swaps the library).
# Runs: the sdpa tests (new), memcheck on their quick subset, flash_bench cases CASES (default 1 2 3 4 11) with
# base / new / variants (on VCASES) alternating, twice, PyTorch's backends on the same cases, then (VIT=1) the
# ViT-B/14 training step of seed 001 at batch 4 (vit_train_bench, as bench/vit_train_gpu.sh) with base and new
# alternating and PyTorch's, and (NCU=1) ncu's times of the attention kernels in one step. Logs under OUT.
# The libraries may come gzipped (libnn_cuda.so.gz: the carry limit).
C=${1:?usage: ab.sh C OUT [VARIANTS]}; O=${2:?usage: ab.sh C OUT [VARIANTS]}; V=${3:-}
CASES=${CASES:-"1 2 3 4 11"}; VCASES=${VCASES:-$CASES}
mkdir -p "$O" build
for f in "$C"/libnn_cuda.so.gz "$C"/*/libnn_cuda.so.gz; do [ -f "$f" ] && gunzip -f "$f"; done   # carried gzipped
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader; } | tee "$O/env.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 150 "$C/test_cuda" ${TESTARGS:-sdpa} -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"
  grep -E "FAIL|passed|wgmma|worst" "$O/test_cuda.log" | tail -5
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/test_cuda" sdpa quick > "$O/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|passed" "$O/memcheck.log" | tail -2
  if [ "${RACE:-0}" = 1 ]; then
    timeout 150 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 "$C/test_cuda" sdpa quick > "$O/racecheck.log" 2>&1
    echo "racecheck rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$O/racecheck.log" | tail -2
  fi
fi
for r in 1 2; do
  for c in $CASES; do
    LD_LIBRARY_PATH="$C/base" "$C/flash_bench" $c >> "$O/flash_base.log" 2>&1
    "$C/flash_bench" $c >> "$O/flash_new.log" 2>&1
    for v in $V; do case " $VCASES " in *" $c "*) LD_LIBRARY_PATH="$C/$v" "$C/flash_bench" $c >> "$O/flash_$v.log" 2>&1;; esac; done
  done
done
for f in base new $V; do echo "$f:"; grep "^case" "$O/flash_$f.log" | awk '{print $1, $2, $3, $4, $5, $6}'; done
if [ "${TORCH:-1}" = 1 ]; then
  CASES=$(echo $CASES | tr ' ' ',') PYTHONUNBUFFERED=1 timeout 200 python3 bench/flash_torch.py "$O/flash_new.log" 2>&1 | grep -v Warning > "$O/flash_torch.log"
  grep '^|' "$O/flash_torch.log" | cut -c1-160
fi
if [ "${VIT:-0}" = 1 ]; then   # nn.h base / new alternating, then PyTorch once
  args="--device cuda --model partloc --size 1024 --batch ${BATCH:-4} --steps ${STEPS:-3} --warmup ${WARMUP:-1} --dtype bf16"
  for r in $(seq ${VREPS:-2}); do
    LD_LIBRARY_PATH="$C/base" timeout 90 "$C/vtb" $args > "$O/vit_base_$r.log" 2>&1
    timeout 90 "$C/vtb" $args > "$O/vit_new_$r.log" 2>&1
  done
  grep -H RESULT "$O"/vit_*.log | sed 's/.*vit_//' | cut -c1-150
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/vit_train_torch.py $args > "$O/vit_torch.log" 2>&1
  grep RESULT "$O/vit_torch.log" | cut -c1-150
fi
if [ "${NCU:-0}" = 1 ]; then   # per-kernel times of the attention kernels in one ViT step (new library)
  timeout 150 ncu --metrics gpu__time_duration.sum --csv --print-units base --clock-control none --cache-control none \
    -k regex:"delta|acc_convert|wg_bwd|wg_fwd" -c ${NCU_COUNT:-60} "$C/vtb" --device cuda --model partloc --size 1024 \
    --batch ${BATCH:-4} --steps 1 --warmup 0 --dtype bf16 > "$O/ncu_new.csv" 2> "$O/ncu_new.err"
  echo "ncu rc=$?"
  python3 - "$O/ncu_new.csv" <<'PY'
import csv, sys, collections
t = collections.defaultdict(list)
rows = csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))
for r in rows:
    if r.get("Metric Name") == "gpu__time_duration.sum":
        t[r["Kernel Name"].split("(")[0][:70]].append(float(r["Metric Value"].replace(",", "")) / 1e3)
for k, v in sorted(t.items()):
    v.sort()
    print("%-70s n=%3d median %8.1f us" % (k, len(v), v[len(v) // 2]))
PY
fi

