#!/bin/sh
# mesh32 final call, from the repository root: sdpa tests + memcheck of the f32 kernels, the two builds of the merged
# f32 backward (b: __launch_bounds__ min 3 CTAs, a: none) timed on the f32 step, then bench/mesh_seg_step.sh (all four
# configurations + the correctness check) with the faster one side by side with PyTorch. Fallback: the call-2 build
# (separate dQ kernel), if the merged build fails its tests. Logs under $OUT/mesh (tarred) + a summary.
C=.carry_mesh32; W=$OUT/mesh; mkdir -p $W
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c 'import torch; print("torch", torch.__version__)'; } > $W/env.txt 2>&1; cat $W/env.txt
T=test_cuda; B=""
timeout 60 $C/test_cuda sdpa -v > $W/test_sdpa.log 2>&1; rc=$?; echo "test_cuda sdpa rc=$rc"; grep -E "FAIL|worst|passed" $W/test_sdpa.log | tail -4
if [ $rc != 0 ]; then T=test_cuda_c2; B=$C/bench_c2; echo "FALLBACK to the call-2 build"; fi
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 $C/$T sdpa quick > $W/memcheck.log 2>&1; echo "memcheck ($T) rc=$?"; grep -E "ERROR SUMMARY|passed, " $W/memcheck.log | tail -2
if [ -z "$B" ]; then
  for v in a b; do [ -x $C/bench_$v ] || continue; timeout 40 $C/bench_$v --device cuda --faces 40000 --mode f32 --steps 5 --warmup 2 2>&1 | grep RESULT | sed "s/^/$v /"; done > $W/variants.txt
  cat $W/variants.txt
  v=$(awk '{ split($0, a, "median_ms="); split(a[2], b, " "); if (best == "" || b[1] + 0 < best) { best = b[1] + 0; v = $1 } } END { print v }' $W/variants.txt)
  B=$C/bench_$v; echo "using bench_$v"
fi
timeout 30 $B --device cuda --faces 40000 --ops > $W/ops.log 2>&1
timeout 30 $B --device cuda --faces 40000 --mode f32 --steps 3 --warmup 1 --phases > $W/phases_f32.log 2>&1
BENCH=$B STEPS=4 WARMUP=1 timeout 300 sh bench/mesh_seg_step.sh $W/bench > $W/mesh_seg_step.log 2>&1; echo "mesh_seg_step rc=$?"
tar czf $OUT/final.tgz -C $OUT mesh
grep sdpa $W/ops.log; grep "step" $W/phases_f32.log | tail -1
cat $W/mesh_seg_step.log
