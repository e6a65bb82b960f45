#!/bin/sh
# bench/session_1206e/callI.sh OUT - stop 20's device call (never started: no machine), cut to the time the failed starts left. Builds
# (bench/session_1206e/build_carry.sh DIR, from a checkout of each commit): .carry_d a7623af, .carry_f reapply
# 6294620 (main + the re-applied branches), .carry_g cf376bd (+ LDS, bias loaders), .carry_i 085941c (+ copies
# without selects, behind the products: the candidate);
# the candidate's tests, the flash A/B, memcheck, the conv A/B switches, racecheck, then PyTorch if time is left.
O=${1:?}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
G=.carry_i
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
timeout 110 $G/test_cuda -v > "$L/test_cuda_i.log" 2>&1; echo "test_cuda i rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda_i.log" | tail -8; pack
for c in 10 8 3 2; do for v in $( [ $c -ge 8 ] && echo d ) f $( [ $c = 10 ] || [ $c = 3 ] && echo g ) i; do timeout 25 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ab.log" 2>&1; done; done
NN_SDPA_D32_STAGE=1 timeout 25 $G/flash_bench 8 | sed "s/^/i_d32stage /" >> "$L/flash_ab.log" 2>&1
echo "flash A/B ($(el))"; cut -c1-150 "$L/flash_ab.log"; pack
timeout 70 compute-sanitizer --tool memcheck --error-exitcode 9 $G/test_cuda quick > "$L/memcheck.log" 2>&1
echo "memcheck rc=$? ($(el))"; grep -E "ERROR SUMMARY|passed" "$L/memcheck.log" | tail -2; pack
timeout 30 $G/cuda_bench conv > "$L/conv_i.txt" 2>&1; NN_CONV_WG_BN=256 timeout 30 $G/cuda_bench conv > "$L/conv_bn256.txt" 2>&1
timeout 30 $G/cuda_bench convpass > "$L/convpass_i.txt" 2>&1; NN_CONV_WGRAD_MMA=n64 timeout 30 $G/cuda_bench convpass > "$L/convpass_n64.txt" 2>&1
echo "conv A/B ($(el)): row default alt"
for r in $(grep -h '^NN conv' "$L/conv_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/conv_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/conv_bn256.txt") (BN=256)"; done | grep -v "^conv2d_f32"
for r in $(grep -h '^NN conv' "$L/convpass_i.txt" | awk '{print $2}'); do echo "$r $(awk -v r=$r '$2==r{print $3}' "$L/convpass_i.txt") $(awk -v r=$r '$2==r{print $3}' "$L/convpass_n64.txt") (n64)"; done; pack
timeout 80 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 9 $G/test_cuda sdpa quick > "$L/racecheck.log" 2>&1
echo "racecheck rc=$? ($(el))"; grep -E "RACECHECK SUMMARY|passed" "$L/racecheck.log" | tail -2; pack
grep '^i ' "$L/flash_ab.log" | sed 's/^i //' > "$L/flash_i.log"
CASES=10,8,3,2 NOMATH=1 PYTHONUNBUFFERED=1 timeout 60 python3 bench/flash_torch.py "$L/flash_i.log" 2>&1 | grep -v Warning > "$L/flash_torch.log"
echo "($(el))"; grep '^|' "$L/flash_torch.log" | cut -c1-230; pack
grep -v NN_MEM "$L/conv_i.txt" > "$L/rows_i.txt"
PYTHONUNBUFFERED=1 timeout 90 python3 bench/cuda_torch.py "$L/rows_i.txt" "$L/cuda_table.md" > "$L/cuda_torch.log" 2>&1
echo "cuda_torch rc=$? ($(el))"; grep '^|' "$L/cuda_table.md" | grep -v "cudnn benchmark"; pack
