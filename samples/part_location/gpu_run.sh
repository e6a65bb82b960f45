#!/bin/sh
# samples/part_location/gpu_run.sh BIN OUT - the GPU runs recorded in samples/part_location/README.md, in one go
# on a machine with one GPU and 16 cores (a lent H100: the whole script fits in one 10-minute call).
#   BIN: gen_data and part_location_cuda (make part-location-cuda), OUT: logs and reports.
#   1. data: gen_data at 224 px (MODELS models) and at 1024 px (48 models), sharded over the cores
#   2. the seed's own config (configs/part_location.yaml: ViT-B/14, 1024 px, pooled to 32x32, checkpointing,
#      bf16 autocast, batch 2) on the GPU for 2 short epochs: step time and peak memory; eval; infer
#   3. configs/part_location_gpu.yaml (ViT-S/14, 224 px) trained for BUDGET minutes, twice at once on the one
#      GPU: sin-cos position init (the config) and DINOv2's trunc_normal(0.02) init; eval on the test split;
#      infer one pair
# Environment: MODELS (2000), BUDGET (minutes, 4.5), WORK (/tmp/plgpu).
B=${1:?usage: gpu_run.sh BIN OUT}; O=${2:?usage: gpu_run.sh BIN OUT}
W=${WORK:-/tmp/plgpu}; MODELS=${MODELS:-2000}; BUDGET=${BUDGET:-4.5}
NP=$(nproc); WK=$((NP / 2 - 1)); [ $WK -lt 1 ] && WK=1
mkdir -p "$W" "$O"
export KIT_PROGRESS=plain OMP_WAIT_POLICY=passive
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }

# gen SIZE MODELS DIR: NP processes, each a contiguous range of model numbers (--first), one thread each
gen() {
    per=$(( ($2 + NP - 1) / NP )); i=0
    while [ $i -lt "$NP" ]; do
        f=$((i * per)); n=$per
        [ $((f + n)) -gt "$2" ] && n=$(($2 - f))
        [ "$n" -gt 0 ] && OMP_NUM_THREADS=1 "$B/gen_data" --out "$3" --models "$n" --size "$1" --seed 1 --first "$f" > /dev/null &
        i=$((i + 1))
    done
    wait
}

stamp "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader), $NP cores"
gen 224 "$MODELS" "$W/d224"
stamp "data 224 px: $(ls "$W/d224" | wc -l) models, $(ls "$W"/d224/*/*.json | wc -l) parts"
gen 1024 48 "$W/d1024"
stamp "data 1024 px: $(ls "$W/d1024" | wc -l) models, $(ls "$W"/d1024/*/*.json | wc -l) parts"

# 2. the seed's configuration at 1024 px: timing and memory only (2 epochs of 8 micro-batches)
timeout 150 "$B/part_location_cuda" train --config configs/part_location.yaml --set data.data_dir="$W/d1024" \
    --set data.output_dir="$W/r1024" --set data.num_workers=12 --set training.num_epochs=2 \
    --set training.max_steps_per_epoch=8 > "$O/seed1024.log" 2>&1
stamp "seed config at 1024 px: rc $?"; grep -E "model:|done:|training done" "$O/seed1024.log"
timeout 60 "$B/part_location_cuda" eval --checkpoint "$W/r1024/best_model.safetensors" --split test \
    --report "$O/seed1024_eval.json" > "$O/seed1024_eval.log" 2>&1; head -2 "$O/seed1024_eval.log"
p=$(ls "$W"/d1024/model0000/*.json | head -1)
timeout 60 "$B/part_location_cuda" infer --checkpoint "$W/r1024/best_model.safetensors" \
    --whole "$W/d1024/model0000/model0000-whole.png" --part "${p%.json}.png" 2>&1 | tail -1
stamp "1024 px done"

# 3. the GPU config at 224 px, two position inits side by side (each gets half the GPU and half the cores)
for v in sincos trunc_normal; do
    timeout $(awk "BEGIN{print int($BUDGET * 60 + 60)}") "$B/part_location_cuda" train --config configs/part_location_gpu.yaml \
        --set data.data_dir="$W/d224" --set data.output_dir="$W/r224_$v" --set model.pos_embed_init=$v \
        --set data.num_workers=$WK --set training.time_budget_minutes="$BUDGET" > "$O/gpu224_$v.log" 2>&1 &
done
wait
stamp "224 px training done"
for v in sincos trunc_normal; do
    grep -E "model:|data:|time budget|training done" "$O/gpu224_$v.log"
    grep "done:" "$O/gpu224_$v.log" | tail -3
    timeout 60 "$B/part_location_cuda" eval --checkpoint "$W/r224_$v/best_model.safetensors" --split test \
        --report "$O/gpu224_${v}_eval.json" > "$O/gpu224_${v}_eval.log" 2>&1; head -2 "$O/gpu224_${v}_eval.log"
    cp "$W/r224_$v/history.csv" "$O/gpu224_${v}_history.csv" 2>/dev/null
    cp "$W/r224_$v/loss.png" "$O/gpu224_${v}_loss.png" 2>/dev/null
done
# one pair of the test split (the first of the report)
m=$(grep -m1 '"model"' "$O/gpu224_sincos_eval.json" | sed 's/.*"model": "\([^"]*\)", "part": "\([^"]*\)".*/\1 \2/')
set -- $m
echo "infer $1-whole.png + $1-$2.png (test split):"
"$B/part_location_cuda" infer --checkpoint "$W/r224_sincos/best_model.safetensors" \
    --whole "$W/d224/$1/$1-whole.png" --part "$W/d224/$1/$1-$2.png" 2>&1 | tail -1
echo "label:"; grep -E '"(translation|scale)"' "$W/d224/$1/$1-$2.json"
stamp "all done"
