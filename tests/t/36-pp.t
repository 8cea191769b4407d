#!/bin/bash
# Pipeline parallelism on the tiny preset with 4 layers: 1F1B at pp 2 and 4,
# interleaved 1F1B (2 chunks per stage), an explicit layer list, recompute
# with ZeRO-2, tied embeddings across the first and last stage (with tp and
# sp), and dp 2 x tp 2 x pp 2 with ZeRO-1 on 8 ranks all track the
# single-rank run; checkpoints written by stages restart on other pp, tp and
# dp and continue the losses; a same-layout restart is bit-identical; bad
# pipeline decks are exit 2; a fault on one stage stops every rank.
source tests/lib.sh
plan 31
make_data 32
make_deck
TOL=2e-4   # float32 reduction order over 8 steps
base=(train.steps=8 train.micro_batch=1 model.n_layers=4 checkpoint.every=4 checkpoint.keep=4)

run one 1
ran "single rank, 4 layers, 8 steps" one "done: 8 step"

run pp2 2 parallel.pp=2
ran "pp 2, 1f1b: 2 layers per stage, 4 micro-batches" pp2 "pipeline: pp 2, schedule 1f1b, 1 model chunk(s) per stage, layers per chunk 2,2; 4 micro-batches"
agree "pp 2, 1f1b tracks the single-rank run" pp2 one 1 8
if grep -q "pipeline bubble (idle / compute time per stage, over 7 step(s)): stage 0 [0-9.]*; stage 1 [0-9.]*; formula (p-1)/(v m) = 0.250" "$T/pp2.log"; then
  ok "pp 2 reports the measured bubble per stage next to (p-1)/m"
else notok "bubble report" "$(grep bubble "$T/pp2.log")"; fi

run pp4 4 parallel.pp=4
agree "pp 4, 1f1b (one layer per stage) tracks the single-rank run" pp4 one 1 8

run il2 2 parallel.pp=2 parallel.schedule=interleaved parallel.virtual_stages=2
ran "pp 2, interleaved with 2 chunks per stage" il2 "schedule interleaved, 2 model chunk(s) per stage, layers per chunk 1,1,1,1"
agree "pp 2, interleaved tracks the single-rank run" il2 one 1 8

run list 2 parallel.pp=2 parallel.stage_layers=3,1
ran "explicit parallel.stage_layers = 3,1" list "layers per chunk 3,1"
agree "pp 2 with layers 3,1 tracks the single-rank run" list one 1 8

run rc 4 parallel.pp=2 parallel.schedule=interleaved parallel.virtual_stages=2 parallel.dp=2 parallel.zero=2 \
  train.recompute=true
agree "pp 2 interleaved x dp 2, ZeRO-2, recompute tracks the single-rank run" rc one 1 8

run d3 8 parallel.pp=2 parallel.tp=2 parallel.zero=1
ran "dp 2 x tp 2 x pp 2, ZeRO-1 on 8 ranks" d3 "8 rank(s) = dp 2 x tp 2 x pp 2, ZeRO-1"
agree "dp 2 x tp 2 x pp 2 with ZeRO-1 tracks the single-rank run" d3 one 1 8

# tied embeddings: the last stage holds a copy of the table, its gradient
# summed with the first stage's
run tied1 1 model.tie_embeddings=true
run tied4 4 model.tie_embeddings=true parallel.pp=2 parallel.tp=2 parallel.sp=true
agree "tied embeddings, pp 2 x tp 2 + sp, track the single-rank run" tied4 tied1 1 8
run tiedpp4 4 model.tie_embeddings=true parallel.pp=4 parallel.zero=1
agree "tied embeddings, pp 4 (ZeRO-1), track the single-rank run" tiedpp4 tied1 1 8

# checkpoints: full tensors whatever the stages, and restarts across layouts
check "pp 4 checkpoint has the single-rank checkpoint's datasets and shapes" \
  bash -c "diff <(h5ls -r '$T/pp4/step_00000004.h5' | sort) <(h5ls -r '$T/one/step_00000004.h5' | sort)"
check "tied pp 2 x tp 2 checkpoint has the single-rank tied checkpoint's datasets" \
  bash -c "diff <(h5ls -r '$T/tied4/step_00000008.h5' | sort) <(h5ls -r '$T/tied1/step_00000008.h5' | sort)"
check "the tied checkpoints hold the same embedding values (to float32 reduction order)" $PY -c '
import sys, h5py, numpy as np
a, b = (h5py.File(f, "r")["model/model.embed_tokens.weight"][...] for f in sys.argv[1:3])
d = float(np.abs(a - b).max()); print("max |diff|", d); sys.exit(0 if d < 1e-4 else 1)' "$T/tied4/step_00000004.h5" "$T/tied1/step_00000004.h5"
run r21 1 checkpoint.restart="$T/pp2/step_00000004.h5"
ran "pp 2 checkpoint resumes on one rank" r21 "resuming from .*step_00000004.h5"
agree "pp 2 -> pp 1 continues the uninterrupted losses (steps 5-8)" r21 one 5 8
run r24 4 parallel.pp=4 checkpoint.restart="$T/pp2/step_00000004.h5"
agree "pp 2 -> pp 4 continues the uninterrupted losses" r24 one 5 8
run r1x 4 parallel.pp=2 parallel.tp=2 checkpoint.restart="$T/one/step_00000004.h5"
agree "pp 1 -> pp 2 x tp 2 continues the uninterrupted losses" r1x one 5 8
run r3d 2 parallel.dp=2 parallel.zero=1 checkpoint.restart="$T/d3/step_00000004.h5"
agree "dp 2 x tp 2 x pp 2 -> dp 2 continues the uninterrupted losses" r3d one 5 8
run ril 4 parallel.pp=4 checkpoint.restart="$T/il2/step_00000004.h5"
agree "pp 2 interleaved -> pp 4 1f1b continues the uninterrupted losses" ril one 5 8

# same layout: pp 2 stopped at step 4 and resumed: bit-identical
resume_same "pp 2 restart on the same layout: bit-identical losses" pp2 2 parallel.pp=2

# bad pipeline decks: exit 2 on all ranks, naming the key and the rule
lam 4 train "$T/tiny.in" parallel.pp=4
expect_fail 2 "model.n_layers = 2 is less than parallel.pp x parallel.virtual_stages = 4" "pp 4 with 2 layers"
lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 parallel.stage_layers=3,2
expect_fail 2 "parallel.stage_layers: the counts sum to 5, model.n_layers is 4" "a layer list that does not sum to n_layers"
lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 parallel.stage_layers=2,x
expect_fail 2 "parallel.stage_layers = '2,x'" "a layer list that does not parse"
lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 parallel.schedule=interleaved parallel.virtual_stages=2 \
  train.global_batch=3
expect_fail 2 "must be a multiple of parallel.pp = 2" "interleaved with 3 micro-batches on 2 stages"
lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 parallel.virtual_stages=2
expect_fail 2 "parallel.schedule = 1f1b runs one model chunk per stage" "1f1b with 2 chunks per stage"

# faults: a NaN gradient on the last stage, a tied-embedding copy that differs
LAMINA_FAULT_NAN=1:3 lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 checkpoint.dir="$T/nan" log.metrics="$T/nan.jsonl"
expect_fail 1 "step 3: gradient norm is NaN" "a NaN gradient on stage 1 stops both stages (exit 1)"
LAMINA_FAULT_REPLICA=1 lam 2 train "$T/tiny.in" "${base[@]}" parallel.pp=2 model.tie_embeddings=true \
  checkpoint.dir="$T/rep" log.metrics="$T/rep.jsonl"
expect_fail 1 "replicated tensor model.embed_tokens.weight differs between the ranks holding it" \
  "a tied-embedding copy that differs between the first and last stage stops the run before its checkpoint"
finish
