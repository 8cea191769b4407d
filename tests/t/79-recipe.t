#!/bin/bash
# The recipe (issue 19 item 3): inputs/recipe.sh at RECIPE_SCALE=tiny end to
# end (evaluation sets, English base model, HF export, vocabulary expansion,
# resize, the three stages, the four ablations, lamina eval of every model
# point, perf/recipe_report.py) into a temporary folder: every step
# finishes, the report has every table filled from measured numbers and its
# plots; the expanded tokenizer compresses Chinese and not English; vocab
# resize --init random keeps the old rows bit for bit and draws new ones
# with std 0.02, unlike the mean init; a second run skips every finished
# step and --from eval redoes only the evaluations; bad arguments exit 2.
# About 3-4 minutes on 2 cores.
source tests/lib.sh
plan 8
export RECIPE_SCALE=tiny RECIPE_OUT="$T/recipe" RECIPE_REPORT="$T/RECIPE.md"
R=$T/recipe
rc=0; timeout 850 bash inputs/recipe.sh > "$T/run.log" 2>&1 || rc=$?
if [ "$rc" = 0 ]; then ok "RECIPE_SCALE=tiny runs end to end ($(grep '^== recipe (tiny):' "$T/run.log" | cut -c1-60))"
else notok "RECIPE_SCALE=tiny runs end to end: exit $rc" "$(tail -8 "$T/run.log")"; fi
check "every step is done and timed; every model point evaluated" bash -c "
  for s in evalsets tok base expand prep main noexp randinit noreplay nobins eval; do
    [ -e '$R/done/'\$s ] && grep -q \"^\$s	\" '$R/times.tsv' || { echo missing \$s; exit 1; }; done
  for p in base expanded expanded_random stage1 stage2 stage3 final_hf noexp randinit noreplay nobins; do
    [ -s '$R/eval/'\$p.json ] || { echo no eval \$p; exit 1; }; done"
check "the report: every table filled (no 'not run', no n/a), three plots, the claims table" \
  $PY - "$T/RECIPE.md" "$T/recipe" <<'EOP'
import os, sys
md = open(sys.argv[1], encoding="utf-8").read()
for h in ("## Compression", "## Main table", "## Ablations", "## Wall time", "## What the table says"):
    assert h in md, h
assert "not run" not in md and "n/a" not in md, "an empty cell"
for p in ("val_bpb_main.png", "val_bpb_ablations.png", "val_bpb_base.png"):
    f = os.path.join(sys.argv[2], p)
    assert os.path.getsize(f) > 10000 and open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n", p
    assert "](recipe/" + p + ")" in md, p
claims = md.split("## What the table says")[1]
assert claims.count("supported") >= 6, claims
EOP
check "compression: the expanded tokenizer needs fewer tokens per Chinese character, English within 10%" \
  $PY - "$R" <<'EOP'
import sys
def tpc(path):
    out = {}
    for l in open(path):
        p = l.split()
        if len(p) == 6 and p[0] not in ("file", "total"):
            out["zh" if "zh_" in p[0] else "en"] = float(p[3]) / float(p[1])
    return out
b, e = tpc(sys.argv[1] + "/compression_base.txt"), tpc(sys.argv[1] + "/compression_expanded.txt")
assert e["zh"] < 0.6 * b["zh"], (b, e)
assert abs(e["en"] / b["en"] - 1) < 0.1, (b, e)
EOP
check "vocab resize --init random: old rows bit for bit, new rows std ~0.02, not the means" \
  $PY - "$R" <<'EOP'
import sys, h5py, numpy as np
R = sys.argv[1]
V0 = 1000  # RECIPE_SCALE=tiny's base vocabulary
for name in ("model/model.embed_tokens.weight", "model/lm_head.weight"):
    m = h5py.File(R + "/resized.h5")[name][()]
    r = h5py.File(R + "/resized_random.h5")[name][()]
    assert m.shape == r.shape and m.shape[0] > V0, (m.shape, r.shape)
    assert np.array_equal(m[:V0], r[:V0]), name
    new = r[V0:].astype(np.float64)
    assert abs(new.std() - 0.02) < 0.001 and abs(new.mean()) < 0.001, (new.std(), new.mean())
    assert not np.allclose(m[V0:], r[V0:]), name
EOP
t0=$(date +%s)
rc=0; bash inputs/recipe.sh > "$T/rerun.log" 2>&1 || rc=$?
check "a second run skips every finished step (no training, no eval) and rewrites the report" bash -c "
  [ $rc = 0 ] && ! grep -q '^== recipe (tiny) step' '$T/rerun.log' && grep -q 'recipe_report.py: ' '$T/rerun.log' \
  && [ \$(( \$(date +%s) - $t0 )) -lt 60 ]"
rc=0; bash inputs/recipe.sh --from eval --no-report > "$T/from.log" 2>&1 || rc=$?
check "--from eval redoes only the evaluations" bash -c "
  [ $rc = 0 ] && [ \$(grep -c '^== recipe (tiny) step' '$T/from.log') = 1 ] && grep -q '^== recipe (tiny) step eval' '$T/from.log' \
  && [ -s '$R/eval/nobins.json' ]"
check "a bad step name or scale exits 2" bash -c "
  bash inputs/recipe.sh --from nosuch > /dev/null 2>&1; a=\$?
  RECIPE_SCALE=huge bash inputs/recipe.sh > /dev/null 2>&1; b=\$?
  [ \$a = 2 ] && [ \$b = 2 ]"
finish
