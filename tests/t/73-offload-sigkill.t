#!/bin/bash
# A run with ZeRO-3 and parameter offload (optimizer state and bf16-style
# parameter shards on the host, checkpoint pieces streamed from the device
# through the writer's bounded blocks) killed with SIGKILL while it writes a
# checkpoint leaves the previous one valid; restart = auto resumes from it
# on another layout (ZeRO-1, optimizer offload of half the chunks) and ends
# where an uninterrupted run ends, bit for bit.
source tests/lib.sh
plan 5
make_data 32
make_deck
Z3="parallel.zero=3 parallel.offload=param parallel.prefetch=1"
export LAMINA_CKPT_STREAM=1
timeout 300 mpirun --oversubscribe --bind-to none -x LAMINA_CKPT_STREAM -np 2 "$LAMINA" train "$T/tiny.in" \
  train.steps=6 checkpoint.dir="$T/full" log.metrics="$T/full.jsonl" $Z3 >"$T/full.out" 2>&1 || true
# Every 2 steps a checkpoint; each dataset write pauses 30 ms (test hook):
# kill the write of step 4 in the middle.
LAMINA_CKPT_PAUSE_MS=30 mpirun --oversubscribe --bind-to none -x LAMINA_CKPT_STREAM -x LAMINA_CKPT_PAUSE_MS -np 2 \
  "$LAMINA" train "$T/tiny.in" train.steps=6 checkpoint.every=2 checkpoint.dir="$T/ck" log.metrics="$T/ck.jsonl" \
  $Z3 >"$T/killed.out" 2>&1 &
pid=$!
for i in $(seq 1 600); do [ -e "$T/ck/step_00000004.h5.tmp" ] && break; sleep 0.05; done
sleep 0.3
pkill -KILL -f "lamina train $T/tiny.in"; wait $pid 2>/dev/null
[ -e "$T/ck/step_00000004.h5.tmp" ] && [ ! -e "$T/ck/step_00000004.h5" ] && ok "killed while writing step 4" \
  || notok "killed while writing step 4" "$(ls "$T/ck")"
[ "$(cat "$T/ck/latest" 2>/dev/null)" = "step_00000002.h5" ] && ok "latest still names step 2" \
  || notok "latest still names step 2" "$(cat "$T/ck/latest" 2>/dev/null)"
lam 2 train "$T/tiny.in" train.steps=6 checkpoint.every=2 checkpoint.dir="$T/ck" log.metrics="$T/ck.jsonl" \
  parallel.zero=1 parallel.offload=optim parallel.offload_frac=0.5
grep -q "resuming from .*step_00000002.h5" "$T/out" && ok "restart = auto resumes from step 2 on ZeRO-1 with optimizer offload" \
  || notok "resume from step 2" "$(tail -5 "$T/out")"
[ -n "$(losses 6 6 "$T/full.jsonl")" ] && [ "$(losses 3 6 "$T/full.jsonl")" = "$(losses 3 6 "$T/ck.jsonl" | tail -4)" ] \
  && ok "losses of steps 3-6 equal the uninterrupted ZeRO-3 run's" \
  || notok "losses" "$(losses 3 6 "$T/full.jsonl" | tr '\n' ' ') vs $(losses 3 6 "$T/ck.jsonl" | tr '\n' ' ')"
[ ! -e "$T/ck/step_00000004.h5.tmp" ] && ok "stale .tmp removed" || notok "stale .tmp removed" "$(ls "$T/ck")"
finish
