# bench/device_call.sh - what the one-call device scripts (bench/session_*/call*.sh) share. Sourced, not run:
#     . bench/device_call.sh; call_begin "$1"
# call_begin OUT     O = OUT, L = OUT/logs (made), starts el's clock, the card into logs/env.txt (and stdout)
# el                 seconds since call_begin
# pack               logs/ into OUT/logs.tgz; each step calls it, so a call cut short by its limit keeps what ran
# race_case S N BIN CASE
#                    compute-sanitizer racecheck (hazards, at most N reports) of `BIN/test_cuda sdpa "case=CASE"`
#                    under `timeout S`, into logs/race_<CASE, spaces as _>.log; its summary on stdout
# sanitize S TOOL BIN ARGS...
#                    compute-sanitizer TOOL (memcheck: exit code 9 on errors; racecheck: hazards, at most 8 reports)
#                    of `BIN/test_cuda ARGS` under `timeout S`, into logs/TOOL_<ARGS, spaces as _>.log; its summary
#                    on stdout
# test_log S NAME BIN ARGS...
#                    `BIN/test_cuda ARGS` under `timeout S` into logs/NAME.log; its failures and summary on stdout
# ncu_sections S K BIN ARGS...
#                    ncu's SpeedOfLight / Occupancy / LaunchStats sections of kernel K's first launch in `BIN/ARGS`,
#                    into logs/ncu_K.txt; time, DRAM share, blocks and registers on stdout
# bench_torch S1 S2 NAME BIN ARGS...
#                    `BIN/cuda_bench ARGS` (timeout S1) into logs/NAME.txt, then vs_torch (timeout S2) into
#                    logs/NAME_table.md and logs/NAME_torch.log
# vs_torch S ROWS TABLE LOG
#                    bench/cuda_torch.py (under `timeout S`) on the rows cuda_bench printed into ROWS: the table in
#                    TABLE, the output in LOG, the table's rows on stdout
call_begin() {
    O=${1:?usage: call_begin OUT}; L="$O/logs"; mkdir -p "$L"; t0=$(date +%s)
    { date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } 2>&1 | tee "$L/env.txt"
}
el() { echo "$(( $(date +%s) - t0 ))"; }
pack() { (cd "$O" && tar czf logs.tgz logs); }
race_case() {
    rc_f="$L/race_$(echo "$4" | tr ' ' _).log"
    timeout "$1" compute-sanitizer --tool racecheck --racecheck-report hazard --print-limit "$2" "$3/test_cuda" sdpa "case=$4" > "$rc_f" 2>&1
    echo "racecheck '$4' rc=$? ($(el) s)"; grep -E "RACECHECK SUMMARY|passed" "$rc_f" | tail -2; pack
}
sanitize() {
    sz_s=$1; sz_t=$2; sz_b=$3; shift 3
    sz_f="$L/${sz_t}_$(echo "$*" | tr ' ' _).log"
    if [ "$sz_t" = racecheck ]; then sz_o="--racecheck-report hazard --print-limit 8"; else sz_o="--error-exitcode 9"; fi
    timeout "$sz_s" compute-sanitizer --tool "$sz_t" $sz_o "$sz_b/test_cuda" "$@" > "$sz_f" 2>&1
    echo "$sz_t $* rc=$? ($(el) s)"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$sz_f" | tail -2; pack
}
vs_torch() {
    PYTHONUNBUFFERED=1 timeout "$1" python3 bench/cuda_torch.py "$2" "$3" > "$4" 2>&1
    echo "cuda_torch rc=$? ($(el) s)"; grep '^|' "$3"
}
test_log() {
    tl_s=$1; tl_n=$2; tl_b=$3; shift 3
    timeout "$tl_s" "$tl_b/test_cuda" "$@" > "$L/$tl_n.log" 2>&1; echo "test_cuda $* rc=$? ($(el) s)"
    grep -E "FAIL" "$L/$tl_n.log" | head -12; tail -2 "$L/$tl_n.log"; pack
}
ncu_sections() {
    nc_s=$1; nc_k=$2; nc_b=$3; shift 3
    timeout "$nc_s" ncu -k "$nc_k" -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats "$nc_b/$@" > "$L/ncu_$nc_k.txt" 2>&1
    echo "ncu $nc_k rc=$? ($(el) s)"
    grep -E "Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Max Active Clusters|Grid Size|Block Size|Waves" "$L/ncu_$nc_k.txt" | head -12
    pack
}
bench_torch() {
    bt_s=$1; bt_t=$2; bt_n=$3; bt_b=$4; shift 4
    timeout "$bt_s" "$bt_b/cuda_bench" "$@" 2>&1 | grep -v NN_MEM > "$L/$bt_n.txt"; echo "cuda_bench $* rc=$? ($(el) s)"
    vs_torch "$bt_t" "$L/$bt_n.txt" "$L/${bt_n}_table.md" "$L/${bt_n}_torch.log" | grep -v "cudnn benchmark"; pack
}
