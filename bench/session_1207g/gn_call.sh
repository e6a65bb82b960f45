#!/bin/sh
# bench/session_1207g/gn_call.sh OUT KERNEL... - stop 28's device calls on group_norm: `test_cuda gn -v` + memcheck +
# racecheck, `cuda_bench gn` with PyTorch (a copy of the same 32 MiB; the rule's blocks, 512 and 256 threads), ncu
# sections on each KERNEL's first launch there, `test_cuda -v`, the whole `cuda_bench` with PyTorch. Build: sh
# bench/session_1206e/build_carry.sh $PWD/.carry_i; carry [".carry_i"]. Run as (bench/RESULTS_CUDA.md, stop 28):
#   19:07  kernels k_group_norm_fwd k_group_norm_bwd, the forward on blocks chosen for one wave (not kept: on what
#          landed, the _t512 rows time those blocks) and the cluster kernels removed
#   19:28  k_group_norm_fwd_regs k_group_norm_bwd, on what landed + bench/session_1207g/regs_fwd.patch
#   19:35  k_group_norm_fwd k_group_norm_bwd, what landed
# (the 19:07 and 19:28 calls named their bench rows as their builds did: _t1024/_t256, _2pass1024/_2pass512)
. bench/device_call.sh; call_begin "$1"; shift
test_log 60 test_gn .carry_i gn -v
sanitize 90 memcheck .carry_i gn; sanitize 90 racecheck .carry_i gn
bench_torch 60 90 gn_bench .carry_i gn
for k in "$@"; do ncu_sections 60 "$k" .carry_i cuda_bench gn; done
test_log 150 test_cuda .carry_i -v
bench_torch 60 100 nn_bench .carry_i
