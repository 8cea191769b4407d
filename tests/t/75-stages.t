#!/bin/bash
# Multi-stage training (SPEC §9, issue 18 item 5): a three-stage tiny run
# (1: embedding warm-up, trainable = embeddings; 2: knowledge injection;
# 3: replay on a weighted data mix with reset_optimizer) writes a checkpoint
# at each stage's end whatever checkpoint.every says; `stage` and the
# per-stage lr schedule are in the metrics; stage 1 leaves every other
# tensor bit-identical to the init; stage 3 is bit for bit a fresh run from
# stage 2's last weights (fresh moments, Adam step and schedule from 1, its
# own data from the start); restarts inside stage 2, at both stage
# boundaries and inside stage 3 give the uninterrupted run's weights, moments
# and losses bit for bit (1 rank and dp 2 ZeRO-2); overrides reach a stage;
# bad [stage.N] sections are exit 2 naming stage.N.key and file:line.
source tests/lib.sh
plan 21
make_data 32
$PY tests/ref/catdata.py "$T/replay.h5" --seed 3 --docs 60 --cats wiki,books --bins 2 --max-len 50
$PY - "$T/init.h5" <<'PYEOF'
import sys; sys.path.insert(0, "tests/ref")
import llama_ref as R
cfg = R.ModelCfg(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, vocab_size=258, max_seq_len=256)
R.write_init_ckpt(sys.argv[1], cfg, R.random_params(cfg, 7, std=0.05))
PYEOF
# the common part (no stages): also the deck of the fresh stage-3 run
cat > "$T/base.in" <<EOD
[model]
preset = tiny
[train]
seq_len = 32
micro_batch = 2
global_batch = 4
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
init = $T/init.h5
[data]
train = $T/data.h5
[checkpoint]
every = 2
keep = 20
EOD
cp "$T/base.in" "$T/stages.in"
cat >> "$T/stages.in" <<EOD
[stage.1]
steps = 3
trainable = embeddings
lr = 1e-2
lr_schedule = constant
warmup_steps = 0
[stage.2]
steps = 4
[stage.3]
steps = 5
train = $T/replay.h5:3,$T/data.h5:1
reset_optimizer = true
lr = 2e-3
min_lr = 2e-4
warmup_steps = 1
lr_schedule = linear
EOD
cp "$T/stages.in" "$T/tiny.in" # the deck of `run`
base=()
run full 1
if [ "$rc" = 0 ] && grep -q "stage 1/3 starts: steps 1-3 (3).*trainable embeddings" "$T/full.log" \
  && grep -q "stage 2/3 starts: steps 4-7 (4); data $T/data.h5 from stream sample 12 (the previous stage's stream)" "$T/full.log" \
  && grep -q "stage 3/3 starts: steps 8-12 (5); data $T/replay.h5:3,$T/data.h5:1 from stream sample 0;.*optimizer moments reset to zero" "$T/full.log" \
  && grep -q "the next stage resets the optimizer: its moments are not loaded" "$T/full.log"; then
  ok "three stages run in one job; the log names each stage's steps, data, trainable set and moments"
else notok "three stages run" "exit $rc" "$(grep -E 'stage|error' "$T/full.log" | head -5)"; fi

check "metrics: stage 1,1,1,2,2,2,2,3,3,3,3,3 and lr per stage (constant; cosine after warm-up; linear after warm-up)" $PY - "$T/full.jsonl" <<'PYEOF'
import json, sys; sys.path.insert(0, "tests/ref")
import llama_ref as R
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == list(range(1, 13)), [r["step"] for r in rows]
assert [r["stage"] for r in rows] == [1] * 3 + [2] * 4 + [3] * 5, [r["stage"] for r in rows]
want = [R.lr_at(s, 1e-2, 3e-4, 0, 3, "constant") for s in range(1, 4)]
want += [R.lr_at(s, 3e-3, 3e-4, 2, 4, "cosine") for s in range(1, 5)]
want += [R.lr_at(s, 2e-3, 2e-4, 1, 5, "linear") for s in range(1, 6)]
have = [r["lr"] for r in rows]
assert all(abs(a - b) <= 1e-12 * b for a, b in zip(have, want)), (have, want)
assert have[3] == 1.5e-3 and have[7] == 2e-3  # each stage's first warm-up step
assert all(r["loss"] == r["loss"] and r["loss"] > 0 for r in rows)
PYEOF

ls_ck=$(cd "$T/full" && ls step_*.h5 | tr '\n' ' ')
[ "$ls_ck" = "step_00000002.h5 step_00000003.h5 step_00000004.h5 step_00000006.h5 step_00000007.h5 step_00000008.h5 step_00000010.h5 step_00000012.h5 " ] \
  && ok "a checkpoint at every stage's end (steps 3, 7) besides checkpoint.every's" || notok "stage-end checkpoints" "have: $ls_ck"

check "the checkpoints record stage and stage_data_start; the resolved deck in them holds the [stage.N] sections" $PY - "$T/full" <<'PYEOF'
import h5py, sys
d = sys.argv[1]
want = {2: (1, 0), 3: (1, 0), 4: (2, 0), 7: (2, 0), 8: (3, 28), 12: (3, 28)}
for s, (st, s0) in want.items():
    with h5py.File(f"{d}/step_{s:08d}.h5", "r") as f:
        got = (int(f.attrs["stage"]), int(f.attrs["stage_data_start"]))
        assert got == (st, s0), (s, got, (st, s0))
        deck = f["config"].attrs["deck"]
        deck = deck.decode() if isinstance(deck, bytes) else deck
        assert "[stage.3]\nsteps = 5\n" in deck and "reset_optimizer = true" in deck, deck[-400:]
PYEOF

check "stage 1 (trainable = embeddings): every other tensor bit-identical to the init, zero moments; stage 2 trains them" $PY - "$T/full" "$T/init.h5" <<'PYEOF'
import sys, h5py, numpy as np
d, init = sys.argv[1], h5py.File(sys.argv[2], "r")
emb = ("model.embed_tokens.weight", "lm_head.weight")
s3, s7 = h5py.File(f"{d}/step_00000003.h5", "r"), h5py.File(f"{d}/step_00000007.h5", "r")
n = 0
for name in init["model"]:
    a, b, c = s3["model/" + name][()], init["model/" + name][()], s7["model/" + name][()]
    if name in emb:
        assert not np.array_equal(a, b), name
        continue
    n += 1
    assert np.array_equal(a, b), name
    assert not np.any(s3["optim/exp_avg/" + name][()]), name
    assert not np.array_equal(c, b), name + " unchanged in stage 2"
assert n >= 10, n
PYEOF

# stage 3 = a fresh single-stage run from stage 2's last weights
cat "$T/base.in" > "$T/fresh3.in"
lam 1 train "$T/fresh3.in" train.init="$T/full/step_00000007.h5" train.steps=5 train.lr=2e-3 train.min_lr=2e-4 \
  train.warmup_steps=1 train.lr_schedule=linear data.train="$T/replay.h5:3,$T/data.h5:1" \
  checkpoint.dir="$T/fresh3" log.metrics="$T/fresh3.jsonl"
if [ "$rc" = 0 ] && [ "$($PY -c 'import json,sys; print([(r["loss"],r["grad_norm"],r["lr"]) for r in map(json.loads,open(sys.argv[1])) if r["step"]>=8])' "$T/full.jsonl")" \
     = "$($PY -c 'import json,sys; print([(r["loss"],r["grad_norm"],r["lr"]) for r in map(json.loads,open(sys.argv[1]))])' "$T/fresh3.jsonl")" ] \
  && h5diff -q "$T/full/step_00000012.h5" "$T/fresh3/step_00000005.h5" /model /model \
  && h5diff -q "$T/full/step_00000012.h5" "$T/fresh3/step_00000005.h5" /optim /optim; then
  ok "stage 3 (reset_optimizer, its own data and schedule) = a fresh run from step 7's weights, bit for bit"
else notok "stage 3 = fresh run from step 7" "exit $rc" "$(tail -3 "$T/out")"; fi

# restart_at NAME STEP NP OVERRIDES...: run NAME's directory rolled back to
# its step-STEP checkpoint (later files gone, latest -> it, metrics cut),
# resumed: weights, moments and losses equal the uninterrupted run's
restart_at() {
  local name=$1 at=$2 np=$3 d="$T/$1-r$2"; shift 3
  mkdir -p "$d"
  for f in "$T/$name"/step_*.h5; do
    local s=$(basename "$f" .h5); s=$((10#${s#step_}))
    [ "$s" -le "$at" ] && cp "$f" "$d/"
  done
  printf 'step_%08d.h5\n' "$at" > "$d/latest"
  lam "$np" train "$T/stages.in" checkpoint.dir="$d" log.metrics="$d.jsonl" "$@"
  cp "$T/out" "$d.log"
  local want have
  want=$(losses $((at + 1)) 12 "$T/$name.jsonl")
  have=$(losses $((at + 1)) 12 "$d.jsonl")
  if [ "$rc" = 0 ] && [ -n "$have" ] && [ "$want" = "$have" ] && h5diff -q "$T/$name/step_00000012.h5" "$d/step_00000012.h5" /model /model \
     && h5diff -q "$T/$name/step_00000012.h5" "$d/step_00000012.h5" /optim /optim; then return 0; fi
  echo "exit $rc; $(diff <(echo "$want") <(echo "$have") | head -3); $(tail -2 "$d.log")"
  return 1
}
for at in 6 3 7 10; do
  case $at in
    6) what="inside stage 2";; 3) what="at the stage 1/2 boundary (trainable changes)";;
    7) what="at the stage 2/3 boundary (reset_optimizer, new data)";; 10) what="inside stage 3";;
  esac
  if out=$(restart_at full $at 1); then ok "restart $what (step $at): bit-identical weights, moments and losses"
  else notok "restart $what (step $at)" "$out"; fi
done
grep -q "stage 2/3 resumes: steps 4-7 (4); data $T/data.h5 from stream sample 24" "$T/full-r6.log" \
  && grep -q "stage 3/3 resumes: steps 8-12 (5); data .* from stream sample 12;" "$T/full-r10.log" \
  && ok "a resumed stage's log line names its stream position" || notok "resume log lines" "$(grep 'stage .*resumes' "$T"/full-r*.log | head -3)"

# the newest checkpoints (steps 7, 8) damaged in their data only: the
# stage-3 set-up chosen from step 8's attributes is rebuilt as stage 2's
# when the load falls back to step 6
d="$T/fallback"; mkdir -p "$d"
for s in 2 3 4 6 7 8; do cp "$T/full/step_0000000$s.h5" "$d/"; done
echo step_00000008.h5 > "$d/latest"
$PY -c 'import h5py, sys
for p in sys.argv[1:]:
    with h5py.File(p, "r+") as f:
        x = f["model/model.norm.weight"]; v = x[()]; v[0] += 1; x[...] = v' "$d/step_00000007.h5" "$d/step_00000008.h5"
lam 1 train "$T/stages.in" checkpoint.dir="$d" log.metrics="$d.jsonl"
if [ "$rc" = 0 ] && grep -q "stage 3: the checkpoint loaded belongs to stage 2; setting that stage up instead" "$T/out" \
  && grep -q "resuming from $d/step_00000006.h5" "$T/out" && [ "$(losses 7 12 "$T/full.jsonl")" = "$(losses 7 12 "$d.jsonl")" ] \
  && h5diff -q "$T/full/step_00000012.h5" "$d/step_00000012.h5" /model /model; then
  ok "damaged newest checkpoints of stage 3: the load falls back to stage 2's step 6, which is set up again; bit-identical end"
else notok "fallback to another stage's checkpoint" "exit $rc" "$(grep -E 'warning|stage|error' "$T/out" | head -5)"; fi

# data parallel with ZeRO-2: tracks 1 rank; a restart at the reset boundary is exact
base=(parallel.zero=2)
run z2 2
TOL=2e-4
if [ "$rc" = 0 ]; then agree "dp 2 ZeRO-2: the three stages track 1 rank" z2 full 1 12
else notok "dp 2 ZeRO-2 runs" "exit $rc" "$(tail -3 "$T/z2.log")"; fi
if out=$(restart_at z2 7 2 parallel.zero=2); then ok "dp 2 ZeRO-2: restart at the stage 2/3 boundary is bit-identical"
else notok "dp 2 ZeRO-2 restart at 7" "$out"; fi

# checkpoint.every = 0: still the stage ends, and the end
base=(checkpoint.every=0)
run every0 1
ls_ck=$(cd "$T/every0" && ls step_*.h5 2>/dev/null | tr '\n' ' ')
[ "$rc" = 0 ] && [ "$ls_ck" = "step_00000003.h5 step_00000007.h5 step_00000012.h5 " ] \
  && [ "$(losses 1 12 "$T/every0.jsonl")" = "$(losses 1 12 "$T/full.jsonl")" ] \
  && ok "checkpoint.every = 0: checkpoints at steps 3, 7 (stage ends) and 12; the same losses" || notok "every = 0" "exit $rc; have $ls_ck"

# an override reaches one stage
base=(stage.2.lr=1e-3 train.steps=12)
run ov 1
check "stage.2.lr=1e-3 on the command line: stage 2's peak lr, stages 1 and 3 unchanged" $PY - "$T/ov.jsonl" "$T/full.jsonl" <<'PYEOF'
import json, sys
a = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[1]))}
b = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[2]))}
assert a[5] == 1e-3 and a[4] == 5e-4, (a[4], a[5])
assert all(a[s] == b[s] for s in (1, 2, 3)) and a[8] == b[8] == 2e-3
PYEOF

# bad stage sections: exit 2 naming stage.N(.key) and file:line
printf '[stage.4]\nlr = 1e-3\n' > "$T/x1"; cat "$T/stages.in" "$T/x1" > "$T/bad1.in"
lam 1 train "$T/bad1.in"
expect_fail 2 "bad1.in:32: \[stage.4\] has no steps: stage.4.steps is required" "an empty stage (no steps): exit 2 naming stage.4.steps and file:line"
printf '[stage.5]\nsteps = 2\n' > "$T/x1"; cat "$T/stages.in" "$T/x1" > "$T/bad2.in"
lam 1 train "$T/bad2.in"
expect_fail 2 "bad2.in:32: \[stage.5\] without \[stage.4\]" "a gap in the stage numbers: exit 2 naming the section"
lam 1 train "$T/stages.in" stage.2.epochs=3
expect_fail 2 "unknown key stage.2.epochs" "an unknown key in a stage: exit 2 naming stage.2.epochs"
lam 1 train "$T/stages.in" train.steps=11
expect_fail 2 "train.steps = 11 must equal the sum of the stages' steps (stage.1.steps + stage.2.steps + stage.3.steps = 12)" \
  "train.steps other than the stages' sum: exit 2 naming both"
sed 's/^steps = 4$/steps = 0/' "$T/stages.in" > "$T/bad3.in"
lam 1 train "$T/bad3.in"
expect_fail 2 "bad3.in:23: stage.2.steps = '0': must be >= 1" "steps = 0 in a stage: exit 2 naming stage.2.steps and file:line"
finish
