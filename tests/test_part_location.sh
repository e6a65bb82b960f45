#!/bin/sh
# tests/test_part_location.sh BUILD_DIR - a very small end-to-end run of samples/part_location:
# data generation and the skip-with-warning rules, training (loss goes down), --resume (continues exactly
# where an uninterrupted run would be), eval (report), infer (one pair, a data folder), a config error.
# Prints "N passed, M failed". Needs BUILD_DIR/gen_data and BUILD_DIR/part_location
# (make test-part-location builds them).
B=${1:-build/part_location}
T=$(mktemp -d /tmp/test_part_location.XXXXXX)
trap '[ -n "$KEEP" ] || rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} KIT_PROGRESS=plain
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

D=$T/data/images
"$B/gen_data" --out "$D" --models 10 --size 56 --seed 3 --min-parts 2 --max-parts 3 > "$T/gen.log" 2>&1
check "gen_data writes the seed's layout" \
  "test -f $D/model0000/model0000-whole.png && ls $D/model0000/*.json >/dev/null && grep -q '\"rotation\": \[1.0, 0.0, 0.0, 0.0\]' $D/model0000/*.json"
# defects: a model without its whole image, a part image without its label
mkdir -p "$D/nowhole" && cp "$D/model0001/model0001-whole.png" "$D/nowhole/nowhole-a.png" && echo '{}' > "$D/nowhole/nowhole-a.json"
cp "$D/model0000/model0000-whole.png" "$D/model0000/model0000-nolabel.png"

cat > "$T/cfg.yaml" <<YAML
data:
  data_dir: $D
  output_dir: $T/run
  image_size: 56
  num_workers: 1
  color_jitter: [0.0, 0.0, 0.0, 0.0]
model:
  backbone_name: custom
  pretrained_image_size: 56
  custom_hidden_size: 32
  custom_layers: 2
  custom_heads: 2
  cross_attention_layers: 1
  mlp_hidden_dim: 32
  downsample_size: 2
  use_gradient_checkpointing: true
training:
  batch_size: 4
  num_epochs: 6
  learning_rate: 2.0e-3
  warmup_epochs: 0.5
  use_amp: false
YAML
P="$B/part_location"
"$P" train --config "$T/cfg.yaml" --set training.profile_steps=2 > "$T/a.log" 2>&1
check "train runs" "grep -q 'training done' $T/a.log"
check "training.profile_steps prints the op table (nn_profile_print) and epochs the loader's wait" \
  "grep -q '^profile: .* over 2 ' $T/a.log && grep -q '^  nn_linear ' $T/a.log && grep -q 'rows add up to' $T/a.log && grep -q 'loader wait [0-9]*% of the training time' $T/a.log"
"$P" train --config "$T/cfg.yaml" --set training.use_amp=true --set training.amp_dtype=f16 --set training.num_epochs=2 \
  --set data.output_dir="$T/amp" > "$T/amp.log" 2>&1
check "f16 autocast with loss scaling trains (finite losses)" "grep -q 'training done' $T/amp.log && ! grep -qi 'nan' $T/amp.log"
check "warning for the model without a whole image" "grep -q 'nowhole: no nowhole-whole.png' $T/a.log"
check "warning for the part without a label" "grep -q 'model0000-nolabel.png: no label' $T/a.log"
check "split by model" "grep -q 'split by model' $T/a.log"
first=$(sed -n 1p "$T/run/history.csv" | cut -d, -f2); last=$(sed -n 6p "$T/run/history.csv" | cut -d, -f2)
echo "train loss: epoch 1 $first, epoch 6 $last"
check "training loss decreases (epoch 1 -> 6)" "awk 'BEGIN{exit !($last < 0.8 * $first)}'"
check "checkpoints: best_model, latest, TensorBoard, loss plot" \
  "test -f $T/run/best_model.safetensors && test -f $T/run/checkpoints/latest.safetensors && ls $T/run/tb/*tfevents* >/dev/null && test -f $T/run/loss.png"

# interrupted after 3 epochs, then resumed: the same history as the uninterrupted run
sed "s#$T/run#$T/run2#" "$T/cfg.yaml" > "$T/cfg2.yaml"
"$P" train --config "$T/cfg2.yaml" --stop-after 3 > "$T/b1.log" 2>&1
"$P" train --config "$T/cfg2.yaml" --resume > "$T/b2.log" 2>&1
check "resume starts after epoch 3" "grep -q 'resumed from .*: 3 epochs done' $T/b2.log"
check "resumed run matches the uninterrupted one (epochs 4-6)" "cmp -s $T/run/history.csv $T/run2/history.csv"
if ! cmp -s "$T/run/history.csv" "$T/run2/history.csv"; then paste -d' ' "$T/run/history.csv" "$T/run2/history.csv"; fi

"$P" eval --checkpoint "$T/run/best_model.safetensors" --split test --report "$T/report.json" > "$T/e.log" 2>&1
cat "$T/e.log" | head -2
check "eval writes a report with overall and per-sample metrics" \
  "grep -q mean_translation_error $T/report.json && grep -q scale_rel_error $T/report.json"
"$P" infer --checkpoint "$T/run/best_model.safetensors" --whole "$D/model0002/model0002-whole.png" \
  --part "$(ls $D/model0002/*.png | grep -v whole | head -1)" > "$T/i.log" 2>&1
cat "$T/i.log"
check "infer prints {\"translation\": [3], \"scale\": [1]}" \
  "grep -Eq '^\{\"translation\": \[-?[0-9.]+, -?[0-9.]+, -?[0-9.]+\], \"scale\": \[-?[0-9.]+\]\}$' $T/i.log"
"$P" infer --checkpoint "$T/run/checkpoints/latest.safetensors" --data-dir "$D" --out "$T/results.json" > "$T/i2.log" 2>&1
n=$(grep -c '"model"' "$T/results.json" 2>/dev/null)
check "infer --data-dir writes one result per labelled part ($n)" "test \"$n\" -ge 20"
# gradient accumulation: 2 micro-batches of 2 = one batch of 4 (the same items, the loader's order is per epoch)
sed "s#$T/run#$T/run3#" "$T/cfg.yaml" > "$T/cfg3.yaml"
"$P" train --config "$T/cfg3.yaml" --set training.batch_size=2 --set training.accumulation_steps=2 > "$T/acc.log" 2>&1
check "accumulation_steps=2 x batch 2 matches batch 4 (train and val loss per epoch, 1e-3 relative)" \
  "paste -d, $T/run/history.csv $T/run3/history.csv | awk -F, '{for (i = 2; i <= 3; i++) { d = \$i - \$(i + 3); if (d < 0) d = -d; if (d > 1e-3 * \$i) bad = 1 }} END {exit bad}'"
# the tiny config's from-scratch settings (sin-cos position code, matching start of the cross-attention, the
# part image at half the size): they train, and eval and infer rebuild the model from the checkpoint's config
"$P" train --config "$T/cfg.yaml" --set data.output_dir="$T/run5" --set training.num_epochs=2 \
  --set model.pos_embed_init=sincos --set model.xattn_qk_gain=3 --set data.part_image_size=28 > "$T/qk.log" 2>&1
"$P" eval --checkpoint "$T/run5/best_model.safetensors" --split val > "$T/qk_eval.log" 2>&1
"$P" infer --checkpoint "$T/run5/best_model.safetensors" --whole "$D/model0002/model0002-whole.png" \
  --part "$(ls $D/model0002/*.png | grep -v whole | head -1)" > "$T/qk_infer.log" 2>&1
check "sincos + xattn_qk_gain 3 + part_image_size 28 train, and eval and infer restore them" \
  "grep -q 'training done' $T/qk.log && grep -q 'mean translation error' $T/qk_eval.log && grep -q 'xattn_qk_gain: 3' $T/qk.log && grep -q '^{\"translation\"' $T/qk_infer.log"
# with lr 0 the checkpoint holds the init: k_proj is q_proj with xattn_qk_gain > 0, and not without it
for g in 0 3; do
  "$P" train --config "$T/cfg.yaml" --set data.output_dir="$T/run6_$g" --set training.num_epochs=1 \
    --set training.max_steps_per_epoch=1 --set training.learning_rate=0 --set model.xattn_qk_gain=$g > "$T/qk$g.log" 2>&1
done
qk_same() {   # prints 1 if cross_attn.0.k_proj.weight and q_proj.weight hold the same bytes in safetensors file $1
  python3 -c 'import json,struct,sys
b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; h=json.loads(b[8:8+n])
t=lambda k: b[8+n+h[k]["data_offsets"][0]:8+n+h[k]["data_offsets"][1]]
print(int(t("cross_attn.0.k_proj.weight")==t("cross_attn.0.q_proj.weight")))' "$1"
}
check "xattn_qk_gain 3 starts k_proj = q_proj (lr 0), gain 0 does not" \
  "test \"\$(qk_same $T/run6_3/best_model.safetensors)\" = 1 && test \"\$(qk_same $T/run6_0/best_model.safetensors)\" = 0"
# a wall-time budget: the first epoch is timed and the rest cut to fit (here: nothing fits, 1 epoch), and
# --resume keeps the fitted length instead of the config's num_epochs
"$P" train --config "$T/cfg.yaml" --set data.output_dir="$T/run4" --set training.time_budget_minutes=0.00001 > "$T/tb1.log" 2>&1
"$P" train --config "$T/cfg.yaml" --set data.output_dir="$T/run4" --set training.time_budget_minutes=0.00001 --resume > "$T/tb2.log" 2>&1
check "time_budget_minutes fits the epochs (1 here) and --resume keeps them" \
  "grep -q -- '-> 1 epochs' $T/tb1.log && test \$(wc -l < $T/run4/history.csv) = 1 && grep -q 'training done: 0 epochs' $T/tb2.log"
# any input size is resized to the training size (req. 5.5)
"$B/gen_data" --out "$T/other" --models 1 --size 80 --seed 9 > /dev/null 2>&1
"$P" infer --checkpoint "$T/run/best_model.safetensors" --whole "$T/other/model0000/model0000-whole.png" \
  --part "$(ls $T/other/model0000/*.png | grep -v whole | head -1)" > "$T/i3.log" 2>&1
check "infer resizes an 80 px pair to the trained 56 px" "grep -q '^{\"translation\"' $T/i3.log"
"$P" train --config "$T/cfg.yaml" --set training.bach_size=3 > "$T/c.log" 2>&1
check "a misspelt key is reported with a suggestion" "grep -q \"did you mean 'training.batch_size'\" $T/c.log"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
