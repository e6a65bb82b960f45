#!/bin/sh
# bench/session_1207d/callR.sh OUT - stop 25's first call: bench/session_1207c/callQ.sh (the GELU shapes: the probe,
# `cuda_bench ew` on three k_unary shapes twice, PyTorch twice; batches of about 20 ms on both sides), then
# `test_cuda -v` on .carry_y, main with the loss formulas folded into nn.h's [shared] section
# (sh bench/session_1206e/build_carry.sh $PWD/.carry_y).
# carry [".carry_p", ".carry_z", ".carry_u1", ".carry_u2", ".carry_y"]
O=${1:?}; L="$O/logs"; mkdir -p "$L"
sh bench/session_1207c/callQ.sh "$O"
t0=$(date +%s)
timeout 150 .carry_y/test_cuda -v > "$L/test_cuda_y.log" 2>&1; echo "test_cuda (fold) rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "FAIL|passed" "$L/test_cuda_y.log" | tail -4; (cd "$O" && tar czf logs.tgz logs)
