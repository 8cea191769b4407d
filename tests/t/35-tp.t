#!/bin/bash
# Tensor parallelism (Megatron-style, with and without sequence parallelism)
# on the tiny preset (4 heads, 2 kv heads: split at tp 2, replicated at tp 4;
# vocabulary 258: padded to 260 at tp 4): every layout tracks the
# single-rank run; tp x dp with ZeRO-1; tied embeddings; checkpoints written
# with one tp restart with another and continue the same losses, with the
# single-rank file's datasets and shapes; a same-layout restart is
# bit-identical; the communication each tp rank does is exactly the
# analytic count; sequence parallelism keeps less activation memory.
source tests/lib.sh
plan 29
make_data 32
make_deck
TOL=2e-4   # float32 reduction order over 8 steps
base=(train.steps=8 train.micro_batch=1 checkpoint.every=4 checkpoint.keep=4)

run one 1
ran "single rank, 8 steps" one "done: 8 step"

run tp2 2 parallel.tp=2
ran "tp 2 runs (kv heads split, 2 ranks)" tp2 "tp 2; per rank 2 of 4 query heads, 1 kv head(s), 88 of 176"
agree "tp 2 tracks the single-rank run" tp2 one 1 8

run tp4 4 parallel.tp=4
ran "tp 4 runs (kv heads replicated, vocabulary padded to 260)" tp4 "1 kv head(s) (replicated).*65 vocabulary rows (vocabulary 258 padded to 260)"
agree "tp 4 tracks the single-rank run" tp4 one 1 8

run tp2sp 2 parallel.tp=2 parallel.sp=true
ran "tp 2 with sequence parallelism runs" tp2sp "with sequence parallelism"
agree "tp 2 + sp tracks the single-rank run" tp2sp one 1 8

run tp4sp 4 parallel.tp=4 parallel.sp=true parallel.zero=2 train.recompute=true
agree "tp 4 + sp (ZeRO-2, recompute) tracks the single-rank run" tp4sp one 1 8

run tp2dp2 4 parallel.tp=2 parallel.zero=1
ran "tp 2 x dp 2, ZeRO-1 runs" tp2dp2 "dp 2 x tp 2 x pp 1, ZeRO-1"
agree "tp 2 x dp 2 with ZeRO-1 tracks the single-rank run" tp2dp2 one 1 8

# mixed precision (the CPU bf16 emulation: bf16 activations on the wire,
# fp32 master weights): tp 2 + sp with ZeRO-1 tracks bf16 on one rank
run bf1 1 train.precision=bf16
run bf2 2 train.precision=bf16 parallel.tp=2 parallel.sp=true parallel.zero=1
TOL=5e-3 agree "bf16: tp 2 + sp (ZeRO-1) tracks bf16 on one rank (bf16 rounding)" bf2 bf1 1 8

# tied embeddings: the vocab-parallel lm_head is the embedding's slice
run tied1 1 model.tie_embeddings=true
run tied4 4 model.tie_embeddings=true parallel.tp=4 parallel.sp=true
agree "tied embeddings, tp 4 + sp, track the single-rank run" tied4 tied1 1 8

# checkpoints: full logical tensors whatever the tp, and restarts across tp
check "tp 4 checkpoint has the single-rank checkpoint's datasets and shapes (no vocab padding)" \
  bash -c "diff <(h5ls -r '$T/tp4/step_00000004.h5' | sort) <(h5ls -r '$T/one/step_00000004.h5' | sort)"
check "tp 2 + sp checkpoint has the single-rank checkpoint's datasets and shapes" \
  bash -c "diff <(h5ls -r '$T/tp2sp/step_00000008.h5' | sort) <(h5ls -r '$T/one/step_00000008.h5' | sort)"
run r21 1 checkpoint.restart="$T/tp2/step_00000004.h5"
ran "tp 2 checkpoint resumes on one rank" r21 "resuming from .*step_00000004.h5"
agree "tp 2 -> tp 1 continues the uninterrupted losses (steps 5-8)" r21 one 5 8
run r24 4 parallel.tp=4 parallel.sp=true checkpoint.restart="$T/tp2/step_00000004.h5"
agree "tp 2 -> tp 4 + sp continues the uninterrupted losses" r24 one 5 8
run r12 2 parallel.tp=2 checkpoint.restart="$T/one/step_00000004.h5"
agree "tp 1 -> tp 2 continues the uninterrupted losses" r12 one 5 8
run r42 2 parallel.tp=2 parallel.zero=1 checkpoint.restart="$T/tp4/step_00000004.h5"
agree "tp 4 -> tp 2 (ZeRO-1 on dp 1) continues the uninterrupted losses" r42 one 5 8
run r41 4 parallel.dp=4 parallel.zero=2 checkpoint.restart="$T/tp4sp/step_00000004.h5"
agree "tp 4 + sp (ZeRO-2) -> dp 4 (ZeRO-2) continues the uninterrupted losses" r41 one 5 8

# same layout: tp 2 + sp stopped at step 4 and resumed: bit-identical
resume_same "tp 2 + sp restart on the same layout: bit-identical losses" tp2sp 2 parallel.tp=2 parallel.sp=true

# communication: what each tp rank moved equals the analytic count
comm_exact() { # comm_exact NAME: measured and formula lines of the log agree
  $PY - "$T/$1.log" <<'PYEOF'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"measured: all-reduce (\d+), reduce-scatter (\d+), all-gather (\d+); sent (\d+)", t)
f = re.search(r"formula:  all-reduce (\d+), reduce-scatter (\d+), all-gather (\d+); sent (\d+)", t)
if not m or not f: print("no communication report"); sys.exit(1)
print("measured", m.groups(), "formula", f.groups())
sys.exit(0 if m.groups() == f.groups() else 1)
PYEOF
}
check "tp 2: measured all-reduce/all-gather bytes per step = formula" comm_exact tp2
check "tp 2 + sp: measured reduce-scatter/all-gather/all-reduce bytes per step = formula" comm_exact tp2sp
run c4 4 parallel.tp=4 train.recompute=true train.steps=2
check "tp 4 with recompute: measured bytes per step = formula" comm_exact c4

# sequence parallelism keeps less activation memory
kept() { sed -n 's/^activation memory per rank: \([0-9]*\) B kept.*/\1/p' "$T/$1.log"; }
a=$(kept tp2) b=$(kept tp2sp)
if [ -n "$a" ] && [ -n "$b" ] && [ "$b" -lt "$a" ]; then ok "sp keeps less activation memory ($b B vs $a B per rank at tp 2)"
else notok "sp keeps less activation memory" "without sp: '$a', with: '$b'"; fi

# replicated tensors are checked before every checkpoint: a replica that
# differs stops the run (exit 1) and no checkpoint is written
LAMINA_FAULT_REPLICA=1 lam 2 train "$T/tiny.in" "${base[@]}" parallel.tp=2 checkpoint.dir="$T/fault" \
  log.metrics="$T/fault.jsonl"
expect_fail 1 "replicated tensor model.layers.0.input_layernorm.weight differs between the ranks holding it" \
  "a norm weight that differs across tp ranks stops the run before its checkpoint (exit 1)"
check "... and nothing was published" test ! -e "$T/fault/latest"

# a NaN gradient on one tp rank stops every rank (the norm is summed over tp)
LAMINA_FAULT_NAN=1:3 lam 2 train "$T/tiny.in" "${base[@]}" parallel.tp=2 parallel.sp=true checkpoint.dir="$T/nan" \
  log.metrics="$T/nan.jsonl"
expect_fail 1 "step 3: gradient norm is NaN" "a NaN gradient on tp rank 1 stops both ranks (exit 1)"

# generation under tp samples the same text as on one rank
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/one" --prompt "The " --tokens 12
cp "$T/out" "$T/g1"
lam 2 generate "$T/tiny.in" checkpoint.dir="$T/one" parallel.tp=2 --prompt "The " --tokens 12
if [ "$rc" = 0 ] && diff <(grep -v "^lamina\|resuming\|model weights" "$T/g1") <(grep -v "^lamina\|resuming\|model weights" "$T/out") >/dev/null; then
  ok "generate with tp 2 gives the single-rank text"
else notok "generate with tp 2" "$(tail -3 "$T/out")" "$(tail -3 "$T/g1")"; fi
finish
