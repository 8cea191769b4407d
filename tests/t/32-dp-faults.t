#!/bin/bash
# Layout errors and failing ranks: a bad layout is exit 2 with a message from
# every rank; a fault one rank alone sees (a NaN gradient, an unwritable
# metrics file on rank 0, a signal that kills a rank) takes the whole job
# down promptly and leaves the last checkpoint intact.
source tests/lib.sh
plan 12
make_data 32
make_deck


lam 2 train "$T/tiny.in" parallel.dp=3
expect_fail 2 "parallel.dp = 3 x tp = 1 x pp = 1 = 3 does not match the 2 ranks launched" "dp that does not match the ranks: exit 2"
lam 3 train "$T/tiny.in" parallel.tp=2
expect_fail 2 "parallel.tp" "tp that does not factor the world: exit 2"
lam 2 train "$T/tiny.in" train.global_batch=6 train.micro_batch=2
expect_fail 2 "train.global_batch = 6 is not a multiple of dp (2) x train.micro_batch (2)" "global_batch not divisible by dp x micro_batch: exit 2"
lam 2 train "$T/tiny.in" parallel.zero=2 parallel.offload=param
expect_fail 2 "parallel.offload = param needs parallel.zero = 3" "offload = param at zero 2: exit 2"

# a NaN gradient on rank 1 only, at step 3, for each stage: every rank stops
# with exit 1 naming the divergence; the step-2 checkpoint stays the latest
for z in 0 1 2; do
  rm -rf "$T/ckpt"
  LAMINA_FAULT_NAN=1:3 lam 2 train "$T/tiny.in" parallel.zero=$z checkpoint.every=2
  if [ "$rc" = 1 ] && grep -q "step 3: gradient norm is NaN" "$T/out" && [ "$(cat "$T/ckpt/latest")" = step_00000002.h5 ] \
     && h5ls "$T/ckpt/step_00000002.h5" >/dev/null; then ok "ZeRO-$z: NaN on one rank stops every rank (exit 1), step-2 checkpoint kept"
  else notok "ZeRO-$z NaN on one rank" "exit $rc" "$(tail -4 "$T/out")"; fi
done

# rank 0 alone opens the metrics file
lam 2 train "$T/tiny.in" log.metrics="$T/no/such/dir/m.jsonl"
expect_fail 2 "no/such/dir" "metrics file only rank 0 opens is unwritable: every rank exits 2"

# a signal kills rank 1 mid-run: mpirun takes the job down, nothing hangs
kill_rank1() { # SIGNAL: run 2 ranks for many steps, kill rank 1 once step 2 is logged
  rm -rf "$T/ckpt"
  rc=0
  (timeout 120 mpirun --bind-to none -np 2 "$LAMINA" train "$T/tiny.in" train.steps=100000 checkpoint.every=2 \
     >"$T/out" 2>&1; echo $? >"$T/rc") &
  local job=$! t=0 pid=""
  while [ $t -lt 600 ] && ! grep -q "step      4/" "$T/out" 2>/dev/null; do sleep 0.1; t=$((t + 1)); done
  for p in $(pgrep -f "lamina train $T/tiny.in"); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && pid=$p
  done
  [ -n "$pid" ] && kill -"$1" "$pid"
  wait "$job"
  rc=$(cat "$T/rc")
}
for sig in TERM KILL; do
  t0=$(date +%s)
  kill_rank1 $sig
  t1=$(date +%s)
  if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 127 ] && [ $((t1 - t0)) -lt 100 ]; then ok "SIG$sig to rank 1: the job ends (exit $rc), no hang"
  else notok "SIG$sig to rank 1 ends the job" "exit $rc after $((t1 - t0)) s" "$(tail -3 "$T/out")"; fi
  latest=$(cat "$T/ckpt/latest" 2>/dev/null)
  lam 2 train "$T/tiny.in" train.steps=6 checkpoint.dir="$T/ckpt"
  if [ -n "$latest" ] && [ "$rc" = 0 ] && grep -q "resuming from .*$latest" "$T/out"; then
    ok "after SIG$sig: the last checkpoint ($latest) is intact and resumes"
  else notok "after SIG$sig: resume from the last checkpoint" "latest '$latest', exit $rc" "$(tail -3 "$T/out")"; fi
done
finish
