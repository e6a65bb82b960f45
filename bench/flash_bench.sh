#!/bin/sh
# bench/flash_bench.sh OUT - nn_sdpa on the GPU (build/flash_bench) and PyTorch's SDPA backends
# (bench/flash_torch.py) on issue 6's ten cases in one device call; the joined table goes to OUT/flash_table.md.
OUT=${1:-${OUT:-/tmp/flash_out}}
mkdir -p "$OUT"
timeout ${NN_TIMEOUT:-150} ./build/flash_bench > "$OUT/flash_nn.log" 2>&1; echo "flash_bench rc=$?"
PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-200} python3 bench/flash_torch.py "$OUT/flash_nn.log" 2>&1 | grep -v Warning > "$OUT/flash_torch.log"
grep '^|' "$OUT/flash_torch.log" > "$OUT/flash_table.md"
cat "$OUT/flash_nn.log" "$OUT/flash_table.md"
