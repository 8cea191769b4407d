#!/bin/bash
# Randomised layouts: for each seed, a model shape drawn from it (odd and
# even layer counts down to 1, tied or untied embeddings, 1 kv head, a
# vocabulary tp does not divide) runs on every dp x tp x pp factorisation of
# 2, 4 and 8 ranks it allows, with the ZeRO stage (0-2), sequence
# parallelism and the pipeline schedule (1f1b, interleaved) drawn from the
# seed (tests/layouts.py); each run must finish, pass the replica check of
# its checkpoint and track the single-rank run of the shape (losses and
# gradient norms, steps 1-4). A failure prints the shape, the layout and the
# command that reruns it alone.
#   LAYOUTS_SEEDS=a,b,c  the seeds (default: the CI list below)
#   LAYOUTS_FULL=1       every ZeRO x sp x schedule combination (make check-long)
#   LAYOUTS_ONLY=k       only combination k of the seed (and its reference)
source tests/lib.sh
# CI seeds: layer counts 3, 5, 1 and 3, tied and untied, 1 kv head, vocab
# 258-287 (not a multiple of 4 or 8)
SEEDS=${LAYOUTS_SEEDS:-24,14,6,28}
TOL=2e-4   # float32 reduction order over 4 steps (36-pp.t's tolerance)
gen=(--seeds "$SEEDS")
[ "${LAYOUTS_FULL:-0}" = 1 ] && gen+=(--full)
[ -n "${LAYOUTS_ONLY:-}" ] && gen+=(--only "$LAYOUTS_ONLY")
$PY tests/layouts.py "${gen[@]}" > "$T/combos" || { echo "1..0 # SKIP layouts.py failed"; exit 1; }
plan "$(wc -l < "$T/combos")"
make_data 32
cat > "$T/shape.in" <<EOD
[model]
dim = 64
n_layers = 2
n_heads = 4
ffn_dim = 64
vocab_size = 258
[train]
steps = 4
seq_len = 32
micro_batch = 1
global_batch = 8
lr = 3e-3
warmup_steps = 1
[data]
train = $T/data.h5
EOD

t0=$(date +%s)
while IFS='|' read -r -u 3 seed idx np shape layout desc; do
  name="s$seed-$idx"
  rerun="LAYOUTS_SEEDS=$seed LAYOUTS_ONLY=$idx${LAYOUTS_FULL:+ LAYOUTS_FULL=$LAYOUTS_FULL} prove -e bash -v tests/t/39-layouts.t"
  if [ "$np" = 0 ]; then ok "seed $seed case $idx $desc # SKIP"; continue; fi
  # shellcheck disable=SC2086  # the override lists split on spaces
  lam "$np" train "$T/shape.in" $shape $layout checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl"
  cp "$T/out" "$T/$name.log"
  if [ "$rc" != 0 ]; then
    notok "seed $seed case $idx $desc" "exit $rc; shape: $shape" "layout: $layout" "rerun: $rerun" "$(grep -E 'error|lamina:' "$T/$name.log" | tail -4)"
    continue
  fi
  if [ "$idx" = 0 ]; then ok "seed $seed case 0 $desc"; continue; fi
  if out=$(close "$T/$name.jsonl" "$T/s$seed-0.jsonl" 1 4 $TOL 2>&1); then ok "seed $seed case $idx $desc" && echo "#   $out"
  else notok "seed $seed case $idx $desc" "$out; shape: $shape" "layout: $layout" "rerun: $rerun"; fi
done 3< "$T/combos"
echo "# $(grep -c . "$T/combos") combination(s) in $(( $(date +%s) - t0 )) s"
finish
