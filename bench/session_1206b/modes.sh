#!/bin/sh
# the other modes of issue 7's table with this session's build: batch 2 without checkpointing, f16 and f32 at batch 1
C=${C:-.carry_lead}; O=${1:-/tmp/modes}; mkdir -p "$O" build
cp "$C/vtb" build/vit_train_bench_cuda
LD_LIBRARY_PATH="$PWD/$C" NOBUILD=1 TESTS=0 STEPS=4 WARMUP=1 NN_TIMEOUT=60 TORCH_TIMEOUT=90 \
  CONFIGS="partloc:2:bf16:0 partloc:1:f16:1 partloc:1:f32:1" bash bench/vit_train_gpu.sh "$O/vit" > "$O/vit_run.log" 2>&1
cat "$O/vit/vit_train.md"
(cd "$O" && tar czf modes_logs.tgz vit vit_run.log && rm -rf vit vit_run.log)
