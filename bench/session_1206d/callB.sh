#!/bin/sh
# bench/session_1206d/callB.sh OUT - second call: the helpers' branches (their run.sh), then the lead's tree
# (.carry_d = a7623af) against e03692e (.carry_a) on flash cases 8-10, the whole CUDA suite, and Nsight Compute on
# the biased forward / backward of case 10 and the plain forward of case 3 (sections: speed of light, warp states,
# scheduler, memory workload)
O=${1:?}; t0=$(date +%s); el() { echo "$(( $(date +%s) - t0 )) s"; }
[ "$2" = lead ] || {   # "callB.sh OUT lead": the lead's part alone
echo "=== tf32wg"; sh .carry_tf32wg/run.sh /tmp/tw > /tmp/tw.out 2>&1; grep -vE "cudnn benchmark|bf16" /tmp/tw.out; cp /tmp/tw/logs.tgz "$O/tf32wg.tgz"
echo "=== wgrad"; sh .carry_wgrad/run.sh /tmp/wg 2>&1 | tail -40; cp /tmp/wg/logs.tgz "$O/wgrad.tgz"
}
echo "=== lead ($(el))"; L=/tmp/m/logs; mkdir -p $L
timeout 100 .carry_d/test_cuda -v > "$L/test_cuda.log" 2>&1; echo "test_cuda rc=$? ($(el))"; grep -E "FAIL|passed|in use" "$L/test_cuda.log" | tail -8
for c in 8 9 10; do for v in a d; do timeout 40 .carry_$v/flash_bench $c | sed "s/^/$v /" >> "$L/flash_ad.log" 2>&1; done; done
echo "flash a/d ($(el))"; cut -c1-150 "$L/flash_ad.log"
S="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section Occupancy"
timeout 90 ncu -k regex:wg_fwd_kernel -s 2 -c 1 $S .carry_d/flash_bench 10 > "$L/ncu_fwd10.txt" 2>&1; echo "ncu fwd 10 rc=$? ($(el))"
timeout 90 ncu -k regex:wg_bwd_kernel -s 2 -c 1 $S .carry_d/flash_bench 10 > "$L/ncu_bwd10.txt" 2>&1; echo "ncu bwd 10 rc=$? ($(el))"
timeout 90 ncu -k regex:wg_fwd_kernel -s 2 -c 1 $S .carry_d/flash_bench 3 > "$L/ncu_fwd3.txt" 2>&1; echo "ncu fwd 3 rc=$? ($(el))"
for f in ncu_fwd10 ncu_bwd10 ncu_fwd3; do echo "--- $f"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Issue Slots Busy|Eligible Warps|No Eligible|Warp Cycles Per Issued|Registers Per|Achieved Occupancy|Stall|stalled|L1/TEX Hit|Shared|Bank" "$L/$f.txt" | cut -c1-400 | head -30; done
(cd /tmp/m && tar czf "$O/lead.tgz" logs); echo "done ($(el))"
