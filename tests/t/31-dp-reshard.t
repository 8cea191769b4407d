#!/bin/bash
# Data parallelism and resharding restarts: dp = 4 with ZeRO-2 tracks the
# single-rank run; its step-4 checkpoint (written by shards from 4 ranks)
# restarts with dp = 2 / ZeRO-0 and with dp = 1, and a single-rank checkpoint
# restarts with dp = 4 / ZeRO-1, all continuing the uninterrupted losses; a
# restart on the same layout is bit-identical.
source tests/lib.sh
plan 12
make_data 32
make_deck
TOL=2e-4   # float32 reduction order over 8 steps
base=(train.steps=8 train.micro_batch=1 checkpoint.every=4 checkpoint.keep=4)

lam 1 train "$T/tiny.in" "${base[@]}" checkpoint.dir="$T/one" log.metrics="$T/one.jsonl"
[ "$rc" = 0 ] && ok "single rank, 8 steps" || notok "single rank, 8 steps" "$(tail -5 "$T/out")"

lam 4 train "$T/tiny.in" "${base[@]}" parallel.zero=2 checkpoint.dir="$T/z2" log.metrics="$T/z2.jsonl"
[ "$rc" = 0 ] && grep -q "dp 4 x tp 1 x pp 1, ZeRO-2" "$T/out" && ok "dp 4, ZeRO-2, 8 steps" \
  || notok "dp 4, ZeRO-2, 8 steps" "$(tail -5 "$T/out")"
check "dp 4 / ZeRO-2 losses track the single-rank run" close "$T/z2.jsonl" "$T/one.jsonl" 1 8 $TOL
check "dp 4 / ZeRO-2 checkpoint has the single-rank checkpoint's datasets and shapes" \
  bash -c "diff <(h5ls -r '$T/z2/step_00000004.h5' | sort) <(h5ls -r '$T/one/step_00000004.h5' | sort)"

lam 2 train "$T/tiny.in" "${base[@]}" parallel.zero=0 checkpoint.restart="$T/z2/step_00000004.h5" \
  checkpoint.dir="$T/r2" log.metrics="$T/r2.jsonl"
[ "$rc" = 0 ] && grep -q "resuming from .*step_00000004.h5" "$T/out" && ok "dp 4 / ZeRO-2 checkpoint resumes on dp 2 / ZeRO-0" \
  || notok "resume on dp 2 / ZeRO-0" "$(tail -5 "$T/out")"
check "dp 2 / ZeRO-0 continues the uninterrupted losses (steps 5-8)" close "$T/r2.jsonl" "$T/one.jsonl" 5 8 $TOL

lam 1 train "$T/tiny.in" "${base[@]}" checkpoint.restart="$T/z2/step_00000004.h5" \
  checkpoint.dir="$T/r1" log.metrics="$T/r1.jsonl"
[ "$rc" = 0 ] && ok "dp 4 / ZeRO-2 checkpoint resumes on one rank" || notok "resume on one rank" "$(tail -5 "$T/out")"
check "one rank continues the uninterrupted losses (steps 5-8)" close "$T/r1.jsonl" "$T/one.jsonl" 5 8 $TOL

lam 4 train "$T/tiny.in" "${base[@]}" parallel.zero=1 checkpoint.restart="$T/one/step_00000004.h5" \
  checkpoint.dir="$T/r4" log.metrics="$T/r4.jsonl"
check "single-rank checkpoint resumes on dp 4 / ZeRO-1 and continues the losses" close "$T/r4.jsonl" "$T/one.jsonl" 5 8 $TOL

# same layout: dp 2 / ZeRO-1 stopped at step 4 (latest rolled back) and resumed
lam 2 train "$T/tiny.in" "${base[@]}" parallel.zero=1 checkpoint.dir="$T/s" log.metrics="$T/s.jsonl"
cp "$T/out" "$T/s.log"
resume_same "dp 2 / ZeRO-1 restart on the same layout: bit-identical losses" s 2 parallel.zero=1
check "same-layout restart: identical final weights" h5diff -q "$T/s/step_00000008.h5" "$T/s-full8.h5" /model /model
check "same-layout restart: identical final moments" h5diff -q "$T/s/step_00000008.h5" "$T/s-full8.h5" /optim /optim
finish
