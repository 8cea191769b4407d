#!/bin/bash
# Held-out evaluation during training (SPEC §2, §6; issue 18 items 6, 7):
# val_loss, val_bpb and val_by_category equal an independent float64 torch
# forward (tests/ref/check_valid.py) on the same samples from the same
# step's checkpoint; they agree across layouts (dp 2, tp 2 + sp, pp 2,
# ZeRO-3, ZeRO-3 with parameter offload, pp 2 x dp 2 ZeRO-2, interleaved);
# evaluation leaves the training bit-identical; eval_batches takes the
# first global batches in file order; a file without /samples/bytes gives
# bpb null and says so; a stage may evaluate on its own files; a global
# batch whose every target is masked trains without NaN (loss 0, zero
# gradient, the step still runs) and the masked samples are counted.
source tests/lib.sh
plan 18
make_deck
cd_ref="$PY tests/ref/check_valid.py"
$PY tests/ref/catdata.py "$T/train.h5" --seed 6 --docs 80 --bins 4 --max-len 50
$PY tests/ref/catdata.py "$T/valid.h5" --seed 5 --docs 10 --max-len 50
$PY tests/ref/catdata.py "$T/nobytes.h5" --seed 8 --docs 6 --cats web --no-bytes
$PY tests/ref/catdata.py "$T/masked.h5" --seed 9 --docs 8 --mask all-of-first --max-len 30
$PY tests/ref/catdata.py "$T/sft.h5" --seed 10 --docs 8 --mask half --max-len 40
base=(data.train="$T/train.h5" data.valid="$T/valid.h5" train.eval_every=2 train.eval_batches=0 train.steps=4
      train.global_batch=8 checkpoint.every=2 checkpoint.keep=4)
TOL=2e-4

run r1 1
if [ "$rc" = 0 ] && grep -q "validation: $T/valid.h5 (data.valid): 30 of its 30 samples (4 global batch(es): the whole file), 3 categories" "$T/r1.log" \
  && [ "$(grep -c '^eval ' "$T/r1.log")" = 2 ] && grep -q "^eval       4 | val_loss [0-9.]* | val_bpb [0-9.]* | [0-9]* tokens in 30 samples | news: loss" "$T/r1.log"; then
  ok "1 rank: evaluation at steps 2 and 4 on the whole held-out file, one log line each with the categories"
else notok "1 rank evaluates" "exit $rc" "$(grep -E 'validation|^eval|error' "$T/r1.log" | head -4)"; fi
for s in 2 4; do
  if out=$($cd_ref "$T/r1/step_0000000$s.h5" "$T/valid.h5" "$T/r1.jsonl" $s 32 30 1e-6 2>&1); then
    ok "step $s: val_loss, val_bpb and val_by_category = the float64 torch forward of the checkpoint"; echo "$out" | sed 's/^/#   /'
  else notok "step $s against the torch forward" "$out"; fi
done

# layouts: the same numbers within float tolerance
vals() { $PY -c 'import json,sys
for r in map(json.loads, open(sys.argv[1])):
    if "val_loss" in r: print(r["step"], r["val_loss"], r["val_bpb"], json.dumps(r["val_by_category"], sort_keys=True))' "$1"; }
same_vals() { $PY - "$1" "$2" <<'PYEOF'
import json, sys
def rd(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if "val_loss" in r}
A, B = rd(sys.argv[1]), rd(sys.argv[2])
assert sorted(A) == sorted(B) == [2, 4], (sorted(A), sorted(B))
w = 0.0
for s in A:
    xs = [(A[s]["val_loss"], B[s]["val_loss"]), (A[s]["val_bpb"], B[s]["val_bpb"])]
    assert sorted(A[s]["val_by_category"]) == sorted(B[s]["val_by_category"])
    for k, e in A[s]["val_by_category"].items():
        xs += [(e["loss"], B[s]["val_by_category"][k]["loss"]), (e["bpb"], B[s]["val_by_category"][k]["bpb"])]
    for a, b in xs:
        w = max(w, abs(a - b) / abs(b))
print(f"worst rel diff {w:.2e}")
sys.exit(0 if w <= 1e-5 else 1)
PYEOF
}
lay() { # lay NAME NP DESC OVERRIDES...
  local name=$1 np=$2 d=$3 out; shift 3
  run "$name" "$np" "$@"
  if [ "$rc" = 0 ] && out=$(same_vals "$T/$name.jsonl" "$T/${REF:-r1}.jsonl" 2>&1); then ok "$d: the same validation numbers as 1 rank"; echo "#   $out"
  else notok "$d: validation numbers" "exit $rc" "${out:-}" "$(tail -3 "$T/$name.log")"; fi
}
lay dp2 2 "dp 2"
lay tp2 2 "tp 2 + sp" parallel.tp=2 parallel.sp=true
lay pp2 2 "pp 2" parallel.pp=2
lay z3 2 "dp 2 ZeRO-3" parallel.zero=3
lay off 2 "dp 2 ZeRO-3, parameter offload" parallel.zero=3 parallel.offload=param
lay p2d2 4 "pp 2 x dp 2 ZeRO-2" parallel.pp=2 parallel.zero=2
run r4 1 model.n_layers=4 train.global_batch=16
REF=r4 lay ppi 2 "pp 2 interleaved (2 chunks per stage), 4 layers" model.n_layers=4 train.global_batch=16 parallel.pp=2 \
  parallel.schedule=interleaved parallel.virtual_stages=2

# evaluation does not touch training: the same losses, bit for bit, without it
run nov 1 data.valid=
run novz3 2 data.valid= parallel.zero=3
if [ "$(losses 1 4 "$T/nov.jsonl")" = "$(losses 1 4 "$T/r1.jsonl")" ] && [ "$(losses 1 4 "$T/novz3.jsonl")" = "$(losses 1 4 "$T/z3.jsonl")" ] \
  && h5diff -q "$T/novz3/step_00000004.h5" "$T/z3/step_00000004.h5" /model /model && ! grep -q val_loss "$T/nov.jsonl"; then
  ok "training with evaluation = without it, bit for bit (1 rank, dp 2 ZeRO-3)"
else notok "evaluation leaves training unchanged" "$(diff <(losses 1 4 "$T/nov.jsonl") <(losses 1 4 "$T/r1.jsonl") | head -3)"; fi

# eval_batches: the first global batches in file order
run eb 1 train.eval_batches=2 train.eval_every=0
if [ "$rc" = 0 ] && grep -q "16 of its 30 samples (2 global batch(es))" "$T/eb.log" && [ "$(grep -c '^eval ' "$T/eb.log")" = 1 ] \
  && out=$($cd_ref "$T/eb/step_00000004.h5" "$T/valid.h5" "$T/eb.jsonl" 4 32 16 1e-6 2>&1); then
  ok "eval_batches = 2, eval_every = 0: once, at the last step, on the first 16 samples (torch forward)"
else notok "eval_batches = 2" "exit $rc" "${out:-}"; fi

# no /samples/bytes: bpb null, said once
run nb 1 data.valid="$T/nobytes.h5"
if [ "$rc" = 0 ] && [ "$(grep -c 'have no /samples/bytes' "$T/nb.log")" = 1 ] && $PY -c '
import json, sys
r = [x for x in map(json.loads, open(sys.argv[1])) if "val_loss" in x]
assert len(r) == 2 and all(x["val_bpb"] is None and x["val_loss"] > 0 for x in r)
assert list(r[0]["val_by_category"]) == ["web"] and r[0]["val_by_category"]["web"]["bpb"] is None' "$T/nb.jsonl"; then
  ok "a held-out file without /samples/bytes: val_bpb null (said once), the loss still reported"
else notok "no /samples/bytes" "exit $rc" "$(grep -E 'bytes|error' "$T/nb.log" | head -3)"; fi

# a stage evaluates on its own held-out files
run st 1 stage.1.steps=2 stage.2.steps=2 stage.2.valid="$T/nobytes.h5"
if [ "$rc" = 0 ] && grep -q "validation: $T/nobytes.h5 (stage.2.valid)" "$T/st.log" && $PY -c '
import json, sys
r = {x["step"]: x for x in map(json.loads, open(sys.argv[1])) if "val_loss" in x}
assert sorted(r) == [2, 4] and sorted(r[2]["val_by_category"]) == ["chat", "code", "news"], r.keys()
assert list(r[4]["val_by_category"]) == ["web"] and r[4]["stage"] == 2' "$T/st.jsonl"; then
  ok "stage.2.valid: stage 2 evaluates on its own file (stage 1 on data.valid), at each stage's last step"
else notok "per-stage valid" "exit $rc" "$(grep -E 'validation|error' "$T/st.log" | head -3)"; fi

# a bad held-out file: exit 2 naming data.valid
lam 1 train "$T/tiny.in" "${base[@]}" data.valid="$T/missing.h5" checkpoint.dir="$T/bad"
expect_fail 2 "data.valid" "a missing held-out file: exit 2 naming data.valid"

# masked targets: an all-masked global batch trains without NaN and is counted
run mk 2 data.train="$T/masked.h5" data.shuffle=false data.valid="$T/masked.h5" train.global_batch=4
if [ "$rc" = 0 ] && ! grep -qi nan "$T/mk.jsonl" && $PY -c '
import json, sys
r = {x["step"]: x for x in map(json.loads, open(sys.argv[1]))}
assert all(r[s]["loss"] == 0 and r[s]["grad_norm"] == 0 and r[s]["masked_samples"] == 4 for s in (1, 2)), r[1]
assert r[3]["loss"] > 0 and "masked_samples" not in r[3] and r[2]["tokens"] == 0
v = r[4]["val_by_category"]
assert v["news"]["loss"] is None and v["news"]["bpb"] is None and v["code"]["loss"] > 0' "$T/mk.jsonl" \
  && grep -q "step      1/4 | loss 0.0000 | .* | 4 sample(s) with every target masked" "$T/mk.log" \
  && grep -q "data: 8 sample(s) had every target removed by the loss mask (no loss, no gradient)" "$T/mk.log"; then
  ok "global batches whose every target is masked: loss 0, gradient 0, no NaN, counted in the log and metrics"
else notok "all-masked batches" "exit $rc" "$(grep -E 'step      [12]|error' "$T/mk.log" | head -3)"; fi
if out=$($cd_ref "$T/mk/step_00000004.h5" "$T/masked.h5" "$T/mk.jsonl" 4 32 24 1e-6 2>&1); then
  ok "validation with a loss mask (a category all masked: null): the torch forward agrees"
else notok "masked validation against torch" "$out"; fi
run sft 1 data.train="$T/sft.h5" data.valid="$T/sft.h5"
if [ "$rc" = 0 ] && out=$($cd_ref "$T/sft/step_00000004.h5" "$T/sft.h5" "$T/sft.jsonl" 4 32 24 1e-6 2>&1); then
  ok "half of every sample's targets masked (SFT source): validation = the torch forward"
else notok "SFT-masked validation" "exit $rc" "${out:-}"; fi
finish
