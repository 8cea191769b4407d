#!/bin/bash
# A run killed with SIGKILL while it writes a checkpoint leaves the previous
# one valid; restart = auto resumes from it and ends where an uninterrupted
# run ends.
source tests/lib.sh
plan 5
make_data 32
make_deck
lam 1 train "$T/tiny.in" train.steps=6 checkpoint.dir="$T/full" log.metrics="$T/full.jsonl"
# Every 2 steps a checkpoint; each dataset write pauses 30 ms (test hook), so
# the write of step 4 takes about a second: kill it in the middle.
LAMINA_CKPT_PAUSE_MS=30 mpirun -np 1 "$LAMINA" train "$T/tiny.in" train.steps=6 checkpoint.every=2 \
  checkpoint.dir="$T/ck" log.metrics="$T/ck.jsonl" >"$T/killed.out" 2>&1 &
pid=$!
for i in $(seq 1 600); do [ -e "$T/ck/step_00000004.h5.tmp" ] && break; sleep 0.05; done
sleep 0.3
pkill -KILL -f "lamina train $T/tiny.in" ; wait $pid 2>/dev/null
[ -e "$T/ck/step_00000004.h5.tmp" ] && [ ! -e "$T/ck/step_00000004.h5" ] && ok "killed while writing step 4" \
  || notok "killed while writing step 4" "$(ls "$T/ck")"
[ "$(cat "$T/ck/latest")" = "step_00000002.h5" ] && ok "latest still names step 2" || notok "latest still names step 2" "$(cat "$T/ck/latest")"
lam 1 train "$T/tiny.in" train.steps=6 checkpoint.every=2 checkpoint.dir="$T/ck" log.metrics="$T/ck.jsonl"
grep -q "resuming from .*step_00000002.h5" "$T/out" && ok "restart = auto resumes from step 2" || notok "resume from step 2" "$(tail -5 "$T/out")"
[ "$(losses 6 6 "$T/full.jsonl")" = "$(losses 6 6 "$T/ck.jsonl")" ] && ok "final loss equals the uninterrupted run's" \
  || notok "final loss" "$(losses 6 6 "$T/full.jsonl") vs $(losses 6 6 "$T/ck.jsonl")"
[ ! -e "$T/ck/step_00000004.h5.tmp" ] && ok "stale .tmp removed" || notok "stale .tmp removed" "$(ls "$T/ck")"
finish
