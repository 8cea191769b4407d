#!/bin/bash
# Preemption (SPEC §1, exit 3): SIGUSR1 or SIGTERM on any rank, or the
# wall-clock budget train.max_minutes, ends the run after the current step
# with a checkpoint; rerunning the same command (restart = auto) finishes
# with the final loss of an uninterrupted run.
EXCLUSIVE=1  # timing promises: runs alone under make check's -j2
source tests/lib.sh
plan 16
make_data 128
make_deck
N=400
common=(train.steps=$N train.seq_len=128 train.micro_batch=4 train.global_batch=8 log.every=1)

# wait_steps FILE K: until FILE holds K metrics lines (or 120 s pass).
wait_steps() {
  for _ in $(seq 1 2400); do [ -e "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}
# last_loss FILE: "step loss grad_norm" of the file's last line.
last_loss() { tail -1 "$1" | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["step"], repr(r["loss"]), repr(r["grad_norm"]))'; }
# bg NAME NP [ENV...]: start a run into $T/NAME in the background ($pid),
# with the extra overrides of the array $more.
more=()
bg() {
  local name=$1 np=$2; shift 2
  env "$@" mpirun --bind-to none -np "$np" "$LAMINA" train "$T/tiny.in" "${common[@]}" "${more[@]}" checkpoint.dir="$T/$name" \
    log.metrics="$T/$name.jsonl" >"$T/$name.log" 2>&1 &
  pid=$!
}
# finished DESCRIPTION NAME: rerun NAME to the end; it resumes and ends with
# the reference's final loss, bit for bit.
finished() {
  lam 2 train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/$2" log.metrics="$T/$2.jsonl"
  if [ "$rc" = 0 ] && grep -q "resuming from" "$T/out" && [ "$(last_loss "$T/$2.jsonl")" = "$(last_loss "$T/ref.jsonl")" ]; then
    ok "$1"; echo "#   final: $(last_loss "$T/$2.jsonl")"
  else notok "$1" "exit $rc; $(last_loss "$T/$2.jsonl") vs $(last_loss "$T/ref.jsonl")" "$(tail -3 "$T/out")"; fi
}

t_ref=$(date +%s.%N)
lam 2 train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/ref" log.metrics="$T/ref.jsonl"
t_ref=$($PY -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t_ref" "$(date +%s.%N)")
[ "$rc" = 0 ] && [ "$(wc -l <"$T/ref.jsonl")" = $N ] && ok "uninterrupted reference run" || notok "reference run" "$(tail -3 "$T/out")"

# 1. SIGUSR1 to mpirun (as sbatch --signal or a forwarding batch shell sends
# it): mpirun forwards it to every rank.
bg usr1 2
wait_steps "$T/usr1.jsonl" 20; kill -USR1 $pid; wait $pid; rc=$?
k=$(sed -n 's/.*stopped early at step \([0-9]*\) of.*/\1/p' "$T/usr1.log")
[ "$rc" = 3 ] && grep -q "stopped early at step .*SIGUSR1 received on rank 0" "$T/usr1.log" && ok "SIGUSR1: exit 3, reason logged" \
  || notok "SIGUSR1: exit 3" "exit $rc" "$(tail -4 "$T/usr1.log")"
[ -n "$k" ] && [ "$k" -lt $N ] && [ "$(cat "$T/usr1/latest")" = "$(printf 'step_%08d.h5' "$k")" ] && \
  [ "$(wc -l <"$T/usr1.jsonl")" = "$k" ] && ok "SIGUSR1: checkpoint of the last finished step ($k) published" \
  || notok "SIGUSR1: checkpoint of step $k" "$(ls "$T/usr1")" "$(wc -l <"$T/usr1.jsonl") metrics lines"
finished "SIGUSR1: the rerun resumes and ends with the uninterrupted final loss" usr1

# 2. SIGTERM delivered to ONE rank only (rank 1): every rank stops at the
# same step, after a collective checkpoint.
bg term 2
wait_steps "$T/term.jsonl" 20
r1=$(pgrep -f "lamina train $T/tiny.in.*$T/term.jsonl" | sed -n 2p)
kill -TERM "$r1"; wait $pid; rc=$?
[ "$rc" = 3 ] && grep -q "SIGTERM received on rank" "$T/term.log" && ok "SIGTERM on one rank: all ranks stop, exit 3" \
  || notok "SIGTERM on one rank" "exit $rc" "$(tail -4 "$T/term.log")"
[ "$(grep -c 'written in' "$T/term.log")" = 1 ] && ok "SIGTERM: one checkpoint written" || notok "SIGTERM: one checkpoint" "$(grep 'written' "$T/term.log")"
finished "SIGTERM: the rerun ends with the uninterrupted final loss" term

# 3. The wall-clock budget, no signal: 40% of the reference run's time, so
# that it ends the run half way on a fast machine as on a slow one. The stop
# comes when one more step and a checkpoint would pass the budget, so the
# elapsed time is within it (0.5 s of slack for a step slower than any before).
# The machine is shared: a load spike between the reference run and this one
# can let the run finish inside 40% (exit 0) or make one step slower than the
# slack. Up to three tries, at 40%, 30% and 20%; a real fault fails all three.
for frac in 0.4 0.3 0.2; do
  mins=$($PY -c "import sys; print('%.5f' % (float(sys.argv[2]) * float(sys.argv[1]) / 60))" "$t_ref" "$frac")
  rm -rf "$T/budget" "$T/budget.jsonl"
  lam 2 train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/budget" log.metrics="$T/budget.jsonl" train.max_minutes=$mins
  cp "$T/out" "$T/budget.log"
  el=$(sed -n 's/.*: \([0-9.]*\) s elapsed.*/\1/p' "$T/budget.log")
  [ "$rc" = 3 ] && $PY -c "import sys; sys.exit(0 if 0 < float(sys.argv[1]) <= 60 * float(sys.argv[2]) + 0.5 else 1)" "${el:-0}" "$mins" && break
done
[ "$rc" = 3 ] && grep -q "stopped early at step .*train.max_minutes = " "$T/budget.log" && ok "max_minutes = $mins: exit 3, reason logged" \
  || notok "max_minutes = $mins: exit 3" "exit $rc" "$(tail -4 "$T/budget.log")"
$PY -c "import sys; sys.exit(0 if 0 < float(sys.argv[1]) <= 60 * float(sys.argv[2]) + 0.5 else 1)" "${el:-0}" "$mins" \
  && ok "max_minutes: stopped within the budget ($el s elapsed of $($PY -c "print(round(60 * $mins, 2))") s)" \
  || notok "max_minutes: within budget" "elapsed '$el' of $mins min"
finished "max_minutes: the rerun ends with the uninterrupted final loss" budget

# 4. A signal while a cadence checkpoint is being written: that checkpoint
# completes and is the one kept; no second write of the same step.
more=(checkpoint.every=10)
bg during 2 LAMINA_CKPT_PAUSE_MS=30
more=()
for _ in $(seq 1 2400); do ls "$T/during"/*.tmp >/dev/null 2>&1 && break; sleep 0.02; done
kill -USR1 $pid; wait $pid; rc=$?
k=$(sed -n 's/.*stopped early at step \([0-9]*\) of.*/\1/p' "$T/during.log")
[ "$rc" = 3 ] && [ "$(grep -c "step_$(printf %08d "${k:-0}").h5 written" "$T/during.log")" = 1 ] && \
  ! ls "$T/during"/*.tmp >/dev/null 2>&1 && ok "signal during a checkpoint write: it completes, written once (step $k)" \
  || notok "signal during a checkpoint write" "exit $rc, step $k" "$(grep -E 'written|stopped' "$T/during.log" | tail -3)"
finished "signal during a checkpoint: the rerun ends with the uninterrupted final loss" during

# 5. One rank without mpirun (a singleton, as some sites launch serial
# jobs): SIGTERM still ends it with a checkpoint.
"$LAMINA" train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/single" log.metrics="$T/single.jsonl" >"$T/single.log" 2>&1 &
pid=$!
wait_steps "$T/single.jsonl" 10; kill -TERM $pid; wait $pid; rc=$?
[ "$rc" = 3 ] && [ -e "$T/single/latest" ] && grep -q "SIGTERM received on rank 0" "$T/single.log" && ok "singleton: SIGTERM gives exit 3 and a checkpoint" \
  || notok "singleton SIGTERM" "exit $rc" "$(tail -3 "$T/single.log")"

# 6. A run that reaches train.steps ends with 0 even with a budget, and a
# resumed run with nothing left to do exits 0.
lam 2 train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/ref" log.metrics="$T/ref2.jsonl" train.max_minutes=10
[ "$rc" = 0 ] && grep -q "nothing to do" "$T/out" && ok "a finished run resubmitted exits 0" || notok "finished run resubmitted" "exit $rc" "$(tail -3 "$T/out")"

# 7. Bad budget values exit 2 naming the key.
lam 2 train "$T/tiny.in" "${common[@]}" train.max_minutes=-1
expect_fail 2 "train.max_minutes" "train.max_minutes = -1: exit 2 naming the key"
lam 2 train "$T/tiny.in" "${common[@]}" train.max_minutes=soon
expect_fail 2 "train.max_minutes" "train.max_minutes = soon: exit 2 naming the key"
finish
