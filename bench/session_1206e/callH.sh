#!/bin/sh
# bench/session_1206e/callH.sh OUT - stop 20's first device call (stop 19's callG.sh, never run, plus the candidate):
#   .carry_d  a7623af (stop 19's lead build, the flash baseline)
#   .carry_f  main + branches re-applied: tf32wg beb588e (128x128 conv tiles), wgrad 162b530 (WGRAD m64n256k16),
#             biasregs a13bf2e (staged bias read before S) + f7915cf (NN_SDPA_D32_STAGE)
#   .carry_g  f + shared memory through smem_align1024 (LDS, not generic LD), the staged bias loaders' fixed
#             row addresses (forward and backward), whole-tile register bias loads, bf16 bias by shift and mask
#   .carry_i  g + load_tile_sw without the select (zero-fill rows keep their address), the K/V copies (forward) and
#             the Q/dO copies (both wgmma backwards) issued behind the products (the candidate: tests and
#             sanitizers run on it)
# Steps most important first, logs tarred after each (the last ones, ncu and the ew rows, only if time is left).
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_i
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 110 $G/test_cuda -v > "$L/test_cuda_i.log" 2>&1; echo "test_cuda i rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda_i.log" | tail -8; pack
for c in 10 8 9 3 1 2; do for v in $( [ $c -ge 8 ] && echo d f || echo f ) $( [ $c = 10 ] || [ $c = 3 ] && echo g ) i; do timeout 30 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ab.log" 2>&1; done; done
for c in 8 9; do NN_SDPA_D32_STAGE=1 timeout 30 $G/flash_bench $c | sed "s/^/i_d32stage /" >> "$L/flash_ab.log" 2>&1; done
echo "flash A/B ($(el))"; cut -c1-150 "$L/flash_ab.log"; pack
timeout 70 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $G/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el))"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2; pack
grep '^i ' "$L/flash_ab.log" | sed 's/^i //' > "$L/flash_i.log"
CASES=10,8,9,3,1,2 NOMATH=1 PYTHONUNBUFFERED=1 timeout 80 python3 bench/flash_torch.py "$L/flash_i.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
timeout 40 $G/cuda_bench conv > "$L/conv_i.txt" 2>&1; NN_CONV_WG_BN=256 timeout 40 $G/cuda_bench conv > "$L/conv_bn256.txt" 2>&1
timeout 40 $G/cuda_bench convpass > "$L/convpass_i.txt" 2>&1; NN_CONV_WGRAD_MMA=n64 timeout 40 $G/cuda_bench convpass > "$L/convpass_n64.txt" 2>&1
echo "conv A/B ($(el)): row default alt"
for r in $(grep -h '^NN conv' "$L/conv_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/conv_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/conv_bn256.txt") (BN=256)"; done | grep -v "^conv2d_f32"
for r in $(grep -h '^NN conv' "$L/convpass_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/convpass_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/convpass_n64.txt") (n64)"; done; pack
grep -v NN_MEM "$L/conv_i.txt" > "$L/rows_i.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda_torch.py "$L/rows_i.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el))"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
S="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats --section Occupancy"
for c in 8 10; do timeout 45 ncu -k regex:wg_fwd_kernel -s 2 -c 1 $S $G/flash_bench $c > "$L/ncu_fwd$c.txt" 2>&1; echo "ncu fwd $c rc=$? ($(el))"; grep -E "Duration|Executed Instructions  |Issue Slots Busy|No Eligible|Warp Cycles Per Issued" "$L/ncu_fwd$c.txt" | head -6; done; pack
timeout 30 $G/cuda_bench ew > "$L/ew_i.txt" 2>&1
PYTHONUNBUFFERED=1 timeout 40 python3 bench/cuda_torch.py "$L/ew_i.txt" "$L/ew_table.md" > "$L/ew_torch.log" 2>&1
echo "ew ($(el))"; grep '^|' "$L/ew_table.md"; pack
