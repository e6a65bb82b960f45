#!/bin/sh
# bench/session_1207f/callA.sh OUT - group_norm on thread-block clusters (k_group_norm_fwd_cl / _bwd_cl) with
# bench/session_1207e/im2col_gn.patch (k_im2col a block per column row; the fallback forward channel by channel).
# `test_cuda gn -v` and memcheck + racecheck of it, `test_cuda -v`, `cuda_bench gn` (cluster vs fallback rows)
# with PyTorch, `cuda_bench tf32wg` twice, ncu of the TF32 step at 512 channels and of one group_norm step, then the
# whole `cuda_bench` and PyTorch on its rows. Build: sh bench/session_1206e/build_carry.sh $PWD/.carry_i, then
# bench/session_1207d/tf32_probe.c with build_carry.sh's gcc line into .carry_i. carry [".carry_i"].
. bench/device_call.sh; call_begin "$1"
timeout 60 .carry_i/test_cuda gn -v > "$L/test_gn.log" 2>&1; echo "test_cuda gn rc=$? ($(el) s)"
grep -E "FAIL|group_norm" "$L/test_gn.log" | head -24; tail -2 "$L/test_gn.log"; pack
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 .carry_i/test_cuda gn > "$L/memcheck_gn.log" 2>&1
echo "memcheck gn rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck_gn.log" | tail -2; pack
timeout 90 compute-sanitizer --tool racecheck --racecheck-report hazard --print-limit 8 .carry_i/test_cuda gn > "$L/race_gn.log" 2>&1
echo "racecheck gn rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$L/race_gn.log" | tail -2; pack
timeout 40 .carry_i/cuda_bench gn 2>&1 | grep -v NN_MEM > "$L/gn_bench.txt"; echo "cuda_bench gn rc=$? ($(el) s)"
vs_torch 60 "$L/gn_bench.txt" "$L/gn_table.md" "$L/gn_torch.log"; pack
timeout 150 .carry_i/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el) s)"
grep -E "FAIL" "$L/test_cuda.log" | head -8; tail -2 "$L/test_cuda.log"; pack
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 .carry_i/test_cuda conv quick > "$L/memcheck.log" 2>&1
echo "memcheck conv rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
for r in 1 2; do timeout 40 .carry_i/cuda_bench tf32wg 2>&1 | grep -v NN_MEM | tee "$L/tf32wg$r.txt"; done; echo "tf32wg ($(el) s)"; pack
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 60 $NCU .carry_i/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"; pack
grep gpu__time_duration "$L/ncu_nn.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -13
timeout 60 .carry_i/cuda_bench 2>&1 | grep -v NN_MEM > "$L/nn_bench.txt"; echo "cuda_bench rc=$? ($(el) s)"
vs_torch 100 "$L/nn_bench.txt" "$L/cuda_table.md" "$L/cuda_torch.log" | grep -v "cudnn benchmark"; pack
