#!/bin/sh
# bench/session_1206c/all1.sh OUT - every branch of this session in one device call, most important first (the
# logs are tarred after each step, so a cut call still returns what ran):
#   attention (.carry_bwd128: wgmma bias forward/backward, D = 32 forward, D = 128 backward; main in .carry_ab/base)
#   conv TF32 / 3xTF32 (.carry_ctf32), conv on wgmma (.carry_convwg); each folder's base/ holds main's library.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
A=.carry_bwd128; T=.carry_ctf32; W=.carry_convwg; M=.carry_ab/base
pack() { (cd "$O" && tar czf logs.tgz logs); }
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; b=torch.backends; print("torch", torch.__version__, "cudnn", b.cudnn.version(), "cudnn.allow_tf32", b.cudnn.allow_tf32, "matmul.allow_tf32", b.cuda.matmul.allow_tf32)'; } 2>&1 | tee "$L/env.txt"
echo "== 1 tests"
timeout 80 $A/test_cuda sdpa -v > "$L/t_sdpa.log" 2>&1; echo "sdpa rc=$? ($(el))"; grep -E "FAIL|passed" "$L/t_sdpa.log" | tail -8
NN_CONV_F32X3=1 timeout 60 $T/test_cuda conv -v > "$L/t_ctf32.log" 2>&1; echo "ctf32 conv (x3) rc=$? ($(el))"; grep -E "FAIL|passed" "$L/t_ctf32.log" | tail -8
timeout 60 $W/test_cuda conv -v > "$L/t_convwg.log" 2>&1; echo "convwg conv rc=$? ($(el))"; grep -E "FAIL|passed" "$L/t_convwg.log" | tail -8
pack
echo "== 2 attention speed"
for c in 8 9 10 2; do
  timeout 25 $A/flash_bench $c >> "$L/flash_new.log" 2>&1
  LD_LIBRARY_PATH="$M" timeout 25 $A/flash_bench $c >> "$L/flash_main.log" 2>&1
done
echo "branch:"; grep "^case" "$L/flash_new.log" | cut -c1-100; echo "main:"; grep "^case" "$L/flash_main.log" | cut -c1-100
CASES=8,9,10,2 NOMATH=1 PYTHONUNBUFFERED=1 timeout 90 python3 $A/flash_torch.py "$L/flash_new.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-200; pack
echo "== 3 conv speed"
timeout 30 $W/base/cuda_bench conv > "$L/cb_main.txt" 2>&1
timeout 30 $T/cuda_bench conv > "$L/cb_ctf32.txt" 2>&1
NN_CONV_F32X3=1 timeout 30 $T/cuda_bench conv > "$L/cb_ctf32x3.txt" 2>&1
timeout 30 $W/cuda_bench conv > "$L/cb_convwg.txt" 2>&1
echo "($(el))"; grep -h "^NN conv2d" "$L/cb_ctf32.txt" | grep -E "f32|tf32" > "$L/rows_f32.txt"; grep -h "^NN conv2d_bf16" "$L/cb_convwg.txt" > "$L/rows_bf16.txt"
cat "$L/rows_f32.txt" "$L/rows_bf16.txt" > "$L/rows.txt"
PYTHONUNBUFFERED=1 timeout 100 python3 $T/cuda_torch.py "$L/rows.txt" "$L/torch_conv.md" > "$L/torch_conv.log" 2>&1; echo "torch rc=$? ($(el))"
python3 $T/combine.py "$L/cb_main.txt" "$L/cb_ctf32.txt" "$L/cb_ctf32x3.txt" "$L/torch_conv.md" | grep -v bf16
python3 $W/combine.py "$L/cb_main.txt" "$L/torch_conv.md" | grep -v "f32\|tf32" > "$L/convwg_table.md"
echo "convwg (nn.h before = main):"; grep -E "conv2d_bf16|case" "$L/convwg_table.md" | grep -v benchmark; pack
echo "== 4 sanitizers"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 $A/test_cuda sdpa quick > "$L/mc_sdpa.log" 2>&1; echo "memcheck sdpa rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/mc_sdpa.log" | tail -2
NN_CONV_F32X3=1 timeout 40 compute-sanitizer --tool memcheck --error-exitcode 9 $T/test_cuda conv quick > "$L/mc_ctf32.log" 2>&1; echo "memcheck ctf32 rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/mc_ctf32.log" | tail -2
timeout 40 compute-sanitizer --tool memcheck --error-exitcode 9 $W/test_cuda conv quick > "$L/mc_convwg.log" 2>&1; echo "memcheck convwg rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/mc_convwg.log" | tail -2
pack
timeout 90 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $A/test_cuda sdpa quick > "$L/rc_sdpa.log" 2>&1; echo "racecheck sdpa rc=$? ($(el))"; grep -E "RACECHECK SUMMARY|passed" "$L/rc_sdpa.log" | tail -2
pack
