#!/bin/bash
# Restart: a run stopped at step 4 and resumed with restart = auto continues
# with bit-identical losses; keep prunes; recompute gives the same losses.
source tests/lib.sh
plan 7
make_data 32
make_deck
lam 1 train "$T/tiny.in" train.steps=8 checkpoint.dir="$T/full" log.metrics="$T/full.jsonl"
[ "$rc" = 0 ] && ok "uninterrupted 8 steps" || notok "uninterrupted 8 steps" "$(tail -5 "$T/out")"
# The same run, stopped after its step-4 checkpoint: roll the directory back
# to what it held then (latest -> step 4, later files gone) and resume.
lam 1 train "$T/tiny.in" train.steps=8 checkpoint.every=2 checkpoint.keep=4 checkpoint.dir="$T/part" log.metrics="$T/part.jsonl"
rm -f "$T/part/step_00000006.h5" "$T/part/step_00000008.h5"
echo step_00000004.h5 > "$T/part/latest"
$PY -c 'import json,sys; L=[l for l in open(sys.argv[1]) if json.loads(l)["step"]<=4]; open(sys.argv[1],"w").writelines(L)' "$T/part.jsonl"
lam 1 train "$T/tiny.in" train.steps=8 checkpoint.every=2 checkpoint.keep=2 checkpoint.dir="$T/part" log.metrics="$T/part.jsonl"
grep -q "resuming from .*step_00000004.h5" "$T/out" && ok "resumed from step 4" || notok "resumed from step 4" "$(head -30 "$T/out" | tail -8)"
if [ "$(losses 1 8 "$T/full.jsonl")" = "$(losses 1 8 "$T/part.jsonl")" ]; then ok "losses and grad norms of steps 1-8 bit-identical"
else notok "losses bit-identical after restart" "$(diff <(losses 1 8 "$T/full.jsonl") <(losses 1 8 "$T/part.jsonl") | head)"; fi
check "final checkpoints identical (weights and moments)" h5diff -q "$T/full/step_00000008.h5" "$T/part/step_00000008.h5" /model /model
check "moments identical" h5diff -q "$T/full/step_00000008.h5" "$T/part/step_00000008.h5" /optim /optim
ls_ck=$(cd "$T/part" && ls step_*.h5 | tr '\n' ' ')
[ "$ls_ck" = "step_00000006.h5 step_00000008.h5 " ] && [ "$(cat "$T/part/latest")" = "step_00000008.h5" ] \
  && ok "checkpoint.keep = 2 keeps the newest two; latest names step 8" || notok "keep/latest" "have: $ls_ck / $(cat "$T/part/latest")"
lam 1 train "$T/tiny.in" train.steps=8 train.recompute=true checkpoint.dir="$T/rc" log.metrics="$T/rc.jsonl"
if [ "$(losses 1 8 "$T/full.jsonl")" = "$(losses 1 8 "$T/rc.jsonl")" ]; then ok "recompute: identical losses"
else notok "recompute: identical losses" "$(diff <(losses 1 8 "$T/full.jsonl") <(losses 1 8 "$T/rc.jsonl") | head)"; fi
finish
