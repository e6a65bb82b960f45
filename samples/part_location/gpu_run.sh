#!/bin/sh
# samples/part_location/gpu_run.sh BIN OUT - the GPU runs recorded in samples/part_location/README.md, on a
# machine with one GPU and 16 cores (a lent H100: one call of at most 10 minutes each; a training cut short
# goes on in the next call from the checkpoint this one returns).
#   BIN: gen_data, part_location_cuda (make part-location-cuda) and, for the profile stage, vit_train_bench's
#        CUDA build as BIN/vtb. OUT: logs, reports and the run's state (OUT/run).
#   STAGES (default "profile train"):
#     profile  the seed's config (configs/part_location.yaml: ViT-B/14, 1024 px, batch 2, checkpointing,
#              bf16) on 48 generated models: 12 steps, 5 of them timed op by op (training.profile_steps), and
#              the share of the time spent waiting for the loader; then the same step in bench/vit_train_bench
#     train    configs/part_location_gpu.yaml (1024 px) on MODELS generated models (1024 px wholes, 256 px
#              parts), until the call's deadline; with RUN_IN (a previous call's OUT/run) it --resumes from
#              its latest checkpoint. Then the test split is evaluated with the best model so far and one
#              pair inferred; OUT/run gets latest + best checkpoints, history.csv, loss.png and tb/.
# Environment: MODELS (6000), LIMIT (seconds for the whole call, 570), WORK (/tmp/plgpu), RUN_IN, SET (more
# --set arguments for the training, e.g. "--set training.batch_size=8").
B=${1:?usage: gpu_run.sh BIN OUT}; O=${2:?usage: gpu_run.sh BIN OUT}
W=${WORK:-/tmp/plgpu}; MODELS=${MODELS:-6000}; LIMIT=${LIMIT:-570}; STAGES=${STAGES:-"profile train"}
NP=$(nproc)
mkdir -p "$W" "$O"
export KIT_PROGRESS=plain GOMP_SPINCOUNT=3000
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }
left() { echo $((T0 + LIMIT - $(date +%s))); }
gen() { OMP_NUM_THREADS=$NP "$B/gen_data" --out "$3" --models "$2" --size "$1" --part-size "$4" --seed 1 > "$O/gen_$1.log" 2>&1; }

stamp "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader), $NP cores"
case " $STAGES " in *" profile "*)
    gen 1024 48 "$W/d48" 1024
    stamp "profile data: $(tail -1 "$O/gen_1024.log")"
    timeout 150 "$B/part_location_cuda" train --config configs/part_location.yaml --set data.data_dir="$W/d48" \
        --set data.output_dir="$W/seed" --set data.num_workers=12 --set training.num_epochs=1 \
        --set training.max_steps_per_epoch=12 --set training.profile_steps=5 > "$O/seed1024.log" 2>&1
    stamp "seed config at 1024 px: rc $?"
    grep -E "model:|profile|^  |done:" "$O/seed1024.log" | grep -v -E "^  [a-z_]+: " | head -40
    if [ -x "$B/vtb" ]; then
        timeout 90 "$B/vtb" --device cuda --model partloc --size 1024 --batch 2 --steps 5 --warmup 2 --dtype bf16 \
            --profile > "$O/vtb_b2.log" 2>&1
        stamp "vit_train_bench batch 2: rc $?"; grep -E "^  |median|time per op" "$O/vtb_b2.log" | head -32
    fi
esac

case " $STAGES " in *" train "*)
    gen 1024 "$MODELS" "$W/data" 256
    stamp "training data: $(tail -1 "$O/gen_1024.log")"
    R="$W/run"; mkdir -p "$R/checkpoints"; resume=""
    if [ -n "$RUN_IN" ] && [ -f "$RUN_IN/latest.safetensors" ]; then
        cp "$RUN_IN/latest.safetensors" "$R/checkpoints/"
        for f in best_model.safetensors history.csv loss.png; do [ -f "$RUN_IN/$f" ] && cp "$RUN_IN/$f" "$R/"; done
        [ -d "$RUN_IN/tb" ] && cp -r "$RUN_IN/tb" "$R/"
        resume="--resume"
    fi
    t=$(($(left) - 60)); [ $t -lt 30 ] && t=30
    timeout $t "$B/part_location_cuda" train --config configs/part_location_gpu.yaml --set data.data_dir="$W/data" \
        --set data.output_dir="$R" $SET $resume >> "$O/train.log" 2>&1
    rc=$?
    stamp "training: rc $rc ($([ $rc = 124 ] && echo "cut at the deadline; latest.safetensors = the last whole epoch" || echo finished))"
    grep -E "^data: [0-9]|^model: DINOv2|^resumed|done:|^time budget" "$O/train.log" | tail -14
    timeout 45 "$B/part_location_cuda" eval --checkpoint "$R/best_model.safetensors" --data-dir "$W/data" --split test \
        --report "$O/test_eval.json" > "$O/test_eval.log" 2>&1
    stamp "test split (best model so far): rc $?"; head -3 "$O/test_eval.log"
    m=$(ls "$W/data" | head -1); p=$(ls "$W/data/$m"/*.json | head -1)
    timeout 30 "$B/part_location_cuda" infer --checkpoint "$R/best_model.safetensors" --whole "$W/data/$m/$m-whole.png" \
        --part "${p%.json}.png" 2>&1 | tail -1
    echo "label:"; grep -E '"(translation|scale)"' "$p"
    mkdir -p "$O/run"
    cp "$R/checkpoints/latest.safetensors" "$R/best_model.safetensors" "$R/history.csv" "$R/loss.png" "$O/run/" 2>/dev/null
    cp -r "$R/tb" "$O/run/" 2>/dev/null
esac
stamp "all done"
