#!/bin/sh
# the suite again after a test fix (tests/test_cuda.c: one backward for both tapes), then the batch-4 step twice more
C=${C:-.carry_lead}; O=${1:-/tmp/rerun}; mkdir -p "$O"
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$O/env.txt"
timeout 200 "$C/test_cuda" -v > "$O/test_cuda.log" 2>&1; echo "test_cuda rc=$?"
grep -E "FAIL|passed|wgmma|worst" "$O/test_cuda.log" | tail -8
grep -E "unary16|eight-wide|addcmul case 2 h bf16|layer_norm_to bf16 shape 0|vit block|adaptive_avg_pool2d [0-9]" "$O/test_cuda.log" | head -16
A="--device cuda --model partloc --size 1024 --batch 4 --steps 5 --warmup 1 --dtype bf16"
timeout 60 "$C/vtb" $A > "$O/vtb1.log" 2>&1; echo "nn.h  : $(grep RESULT "$O/vtb1.log")"
timeout 90 python3 bench/vit_train_torch.py $A > "$O/torch.log" 2>&1; echo "torch : $(grep RESULT "$O/torch.log")"
timeout 60 "$C/vtb" $A > "$O/vtb2.log" 2>&1; echo "nn.h  : $(grep RESULT "$O/vtb2.log")"
gzip "$O/test_cuda.log"
