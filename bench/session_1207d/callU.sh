#!/bin/sh
# bench/session_1207d/callU.sh OUT - where the TF32 conv backward's time goes at [8, 512, 16, 16]: ncu's duration of
# every kernel (clocks and caches left alone) for nn.h (bench/session_1207d/tf32_probe.c, in .carry_u3) and for
# PyTorch (tf32_torch.py, the nvtx range "steps"). carry [".carry_u3"]
. bench/device_call.sh; call_begin "$1"
NCU="ncu --metrics gpu__time_duration.sum --clock-control none --cache-control none --csv --print-units base"
timeout 120 $NCU .carry_u3/tf32_probe > "$L/ncu_nn.csv" 2>&1; echo "ncu nn rc=$? ($(el) s)"
timeout 150 $NCU --nvtx --nvtx-include "steps/" python3 bench/session_1207d/tf32_torch.py > "$L/ncu_torch.csv" 2>&1
echo "ncu torch rc=$? ($(el) s)"; pack
for f in ncu_nn ncu_torch; do echo "== $f"; grep gpu__time_duration "$L/$f.csv" | awk -F'","' '{ n=$5; sub(/\(.*/, "", n); printf "%-60.60s %s\n", n, $NF }' | tr -d '"' | tail -40; done
