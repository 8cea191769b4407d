#!/bin/bash
# The Slurm job scripts on a real one-node Slurm (tests/slurm_lib.sh): a job
# submitted with jobscripts/submit gets the preemption warning (SIGUSR1 to the
# batch shell, as --signal=B:USR1@T sends it), lamina stops after its step with
# a checkpoint, the script requeues the job, the same job id starts again in
# the same run folder, resumes, and ends with the losses of an uninterrupted
# run. Once with mpirun as the launcher and once with srun --mpi=pmix; then a
# train.max_minutes budget that ends every attempt (several requeues); then
# SIGTERM, which stops with a checkpoint but is not requeued.
EXCLUSIVE=1  # timing promises: runs alone under make check's -j2
source tests/lib.sh
source tests/slurm_lib.sh

for c in munged slurmctld slurmd sbatch scontrol scancel squeue srun; do
  command -v $c >/dev/null || { echo "1..0 # SKIP $c not installed (make deps installs slurm-wlm and munge)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP slurmd must run as root to start jobs (run make check as root)"; exit 0; }
plan 26

SD=$(mktemp -d /tmp/lamina-slurm.XXXXXX)
cleanup() { slurm_stop; rm -rf "$T" "$SD"; }
trap cleanup EXIT
trap "exit 1" INT TERM HUP

# S = 80 steps of 16 x 256 tokens: a few seconds of training on 2 ranks.
make_data 256
make_deck
S=80
O=(train.steps=$S train.seq_len=256 train.micro_batch=2 train.global_batch=16 checkpoint.every=0)
t0=$SECONDS
lam 2 train "$T/tiny.in" "${O[@]}" checkpoint.dir="$T/ref" log.metrics="$T/ref.jsonl"
[ "$rc" = 0 ] && ok "reference run (mpirun -np 2, uninterrupted, $((SECONDS - t0)) s)" || notok "reference run" "exit $rc" "$(tail -3 "$T/out")"

t0=$SECONDS
if slurm_start "$SD"; then ok "one-node Slurm up ($(sinfo -h -o '%c CPUs, %T'), $((SECONDS - t0)) s)"
else notok "one-node Slurm up" "$SLURM_WHY"; slurm_logs 15; finish; fi

# The site, as the test cluster needs it: CPU backend, 2 ranks on the one
# node, no GPUs, no account or partition, the run root in $T.
export LAMINA_RUNS=$T/runs LAMINA_BIN=$LAMINA LAMINA_GPUS_PER_NODE=0 LAMINA_RANKS_PER_NODE=2 \
  LAMINA_CPUS_PER_TASK=1 LAMINA_DEVICE=cpu LAMINA_TIME=00:10:00 LAMINA_SIGNAL_SECS=60 LAMINA_ACCOUNT= \
  LAMINA_PARTITION= LAMINA_QOS= LAMINA_MODULES=
SBX=()
if [ "$(getconf _NPROCESSORS_ONLN)" -lt 2 ]; then # one CPU: 2 ranks only with --overcommit, unbound
  SBX=(-S --overcommit); export LAMINA_MPIRUN_FLAGS="-np {ranks} --bind-to none --oversubscribe" LAMINA_SRUN_FLAGS=
fi

# state ID: JobState, Restarts and ExitCode of job ID, e.g. "COMPLETED 1 0:0".
state() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | awk -F= '
  $1 == "JobState" {s = $2} $1 == "Restarts" {r = $2} $1 == "ExitCode" {e = $2} END {print s, r, e}'; }
# steps_logged FILE N: FILE holds at least N metrics lines.
steps_logged() { [ -s "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
# finished ID: the job reached a final state; while the requeue holds it
# (Slurm sets BeginTime = requeue + 121 s), release it, but only 2 s after
# the requeue was first seen: slurmd refuses a start in the second of the
# requeue ("Job credential revoked") and the job then fails.
finished() {
  local st f
  final "$1" && return 0
  if [ "$(squeue -h -j "$1" -o %r 2>/dev/null)" = BeginTime ]; then
    st=$(state "$1"); f=$T/held.$1.$(echo "$st" | cut -d' ' -f2)
    if [ ! -e "$f" ]; then date +%s >"$f"
    elif [ $(($(date +%s) - $(cat "$f"))) -ge 2 ]; then scontrol update JobId="$1" StartTime=now >/dev/null 2>&1; fi
  fi
  return 1
}
final() { [[ $(state "$1") =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) ]]; }
# wait_done SECONDS ID: until the job is finished (see finished).
wait_done() { _slurm_wait "$1" finished "$2"; }
# wait_steps SECONDS ID RUN N: until RUN/metrics.jsonl has N steps (1 if the job ends first).
steps_or_end() { { [ -s "$2/metrics.jsonl" ] && [ "$(wc -l <"$2/metrics.jsonl")" -ge "$3" ]; } || final "$1"; }
wait_steps() { _slurm_wait "$1" steps_or_end "$2" "$3" "$4" && ! final "$2"; }
# requeued ID: Restarts=1 (or the job ended).
requeued() { [[ $(state "$1") =~ ^[A-Z]+\ 1\  ]] || final "$1"; }
# pending1 ID: requeued and back to PENDING (a requeue passes through
# REQUEUED states first; under load the check could land there)
pending1() { [[ $(state "$1") =~ ^PENDING\ 1\  ]] || final "$1"; }
# diag ID RUN: what a failure needs.
diag() {
  echo "# job $1: $(state "$1") ($(squeue -h -j "$1" -o '%T %r' 2>/dev/null))"
  tail -n 15 "$2/lamina.log" 2>/dev/null | sed 's/^/#   log: /'
  tail -n 5 "$LAMINA_RUNS"/slurm/*-"$1".out 2>/dev/null | sed 's/^/#   slurm out: /'
  slurm_logs 10
}
# same_losses DESCRIPTION RUN: steps 1..$S of the run's metrics (both
# attempts) equal the reference's within 1e-6 relative, the last line is step $S.
same_losses() {
  local out
  if out=$(close "$2/metrics.jsonl" "$T/ref.jsonl" 1 $S 1e-6 2>&1) \
     && [ "$(tail -1 "$2/metrics.jsonl" | losses $S $S /dev/stdin)" = "$(losses $S $S "$T/ref.jsonl")" ]; then
    ok "$1" && echo "#   $out; step $S: $(losses $S $S "$T/ref.jsonl")"
  else notok "$1" "$out" "last: $(tail -1 "$2/metrics.jsonl" | cut -c1-80)" "ref: $(losses $S $S "$T/ref.jsonl")"; fi
}

# preempt LAUNCHER NAME: submit, warn after 5 steps, expect a requeue, release
# it, expect a resumed and finished run with the reference's losses.
preempt() {
  local launcher=$1 name=$2 id run k t0=$SECONDS
  id=$(LAMINA_LAUNCHER=$launcher jobscripts/submit -J "$name" "${SBX[@]}" "$T/tiny.in" "${O[@]}" 2>"$T/submit.err")
  run=$LAMINA_RUNS/$name-$id
  LAST=$run
  if [[ $id =~ ^[0-9]+$ ]] && wait_steps 60 "$id" "$run" 5; then
    ok "$launcher: job $id submitted by jobscripts/submit, running, steps logged in $run/metrics.jsonl"
  else notok "$launcher: job submitted and running" "submit: $id $(cat "$T/submit.err")"; diag "$id" "$run"; return; fi
  scancel --signal=USR1 --batch "$id"
  if _slurm_wait 60 pending1 "$id" && [[ $(state "$id") =~ ^PENDING\ 1\  ]]; then
    ok "$launcher: SIGUSR1 to the batch shell: job $id requeued (Restarts=1, $(state "$id" | cut -d' ' -f1))"
  else notok "$launcher: job requeued after SIGUSR1" "$(state "$id")"; diag "$id" "$run"; fi
  k=$(sed -n 's/^stopped early at step \([0-9]*\) of '"$S"': SIGUSR1 received on rank [0-9]*;.*/\1/p' "$run/lamina.log")
  if [ -n "$k" ] && grep -q "ckpt/step_$(printf %08d "$k").h5 written" "$run/lamina.log" && [ "$k" -lt $S ] \
     && grep -q "SIGUSR1 received: forwarding SIGUSR1 to the launcher" "$run/lamina.log"; then
    ok "$launcher: the script forwarded SIGUSR1; lamina stopped at step $k of $S with a checkpoint (exit 3)"
  else notok "$launcher: forwarded, stopped with a checkpoint" "step '$k'"; diag "$id" "$run"; fi
  if wait_done 90 "$id" && [[ $(state "$id") == COMPLETED* ]]; then
    ok "$launcher: requeued job released (StartTime=now) and COMPLETED: $(state "$id") ($((SECONDS - t0)) s since submission)"
  else notok "$launcher: requeued job completed" "$(state "$id")"; diag "$id" "$run"; fi
  if grep -q "resuming from $run/ckpt/step_$(printf %08d "${k:-0}").h5 (step $k)" "$run/lamina.log" \
     && grep -q '^RESTARTS=1$' "$run/job.env" && grep -q '^STATUS=done$' "$run/job.env" \
     && [ "$(awk '{print $4, $5}' "$run/attempts" | tr '\n' ' ')" = "exit 3 exit 0 " ]; then
    ok "$launcher: the second attempt (same job id, same folder) resumed from step $k; job.env RESTARTS=1 STATUS=done"
  else notok "$launcher: resumed from the checkpoint" "$(grep -E 'resuming|^RESTARTS|^STATUS' "$run/lamina.log" "$run/job.env")" \
    "$(cat "$run/attempts")"; fi
  same_losses "$launcher: losses of steps 1-$S (both attempts) equal the uninterrupted run's" "$run"
}

preempt mpirun preempt-mpirun
R1=$LAST
preempt srun preempt-srun

# The run folder and job.env: the names the scaling driver reads.
miss=
for f in deck.in lamina.log metrics.jsonl ckpt/latest job.env; do [ -e "$R1/$f" ] || miss="$miss $f"; done
cmp -s "$R1/deck.in" "$T/tiny.in" || miss="$miss deck.in(differs)"
[ -z "$miss" ] && ok "run folder <jobname>-<jobid>/ holds deck.in, lamina.log, metrics.jsonl, ckpt/, job.env" \
  || notok "run folder contents" "missing:$miss" "$(ls -R "$R1" | head)"
want="JOB_ID JOB_NAME NODES RANKS GPUS_PER_NODE SWEEP GLOBAL_BATCH MICRO_BATCH TP PP DECK RESTARTS"
got=$(cut -d= -f1 "$R1/job.env" | head -12 | tr '\n' ' ')
( set -u; source "$R1/job.env"
  [ "$got" = "$want " ] && [ "$JOB_NAME" = preempt-mpirun ] && [ "$R1" = "$LAMINA_RUNS/$JOB_NAME-$JOB_ID" ] \
  && [ "$NODES" = 1 ] && [ "$RANKS" = 2 ] && [ "$GPUS_PER_NODE" = 0 ] && [ "$SWEEP" = single ] \
  && [ "$GLOBAL_BATCH" = 16 ] && [ "$MICRO_BATCH" = 2 ] && [ "$TP" = 1 ] && [ "$PP" = 1 ] \
  && [ "$DECK" = "$R1/deck.in" ] && [ "$RESTARTS" = 1 ] ) \
  && ok "job.env: the twelve names, in order, with this job's values (sourceable by sh)" \
  || notok "job.env names and values" "$(tr '\n' ' ' <"$R1/job.env")"
n_ok=$(grep -c '^\[job ' "$R1/lamina.log"); n_lam=$(grep -c '^resuming from' "$R1/lamina.log")
[ "$n_ok" -ge 6 ] && [ "$n_lam" = 1 ] && [ "$(grep -c '^{' "$R1/metrics.jsonl")" -ge $S ] \
  && ok "lamina.log and metrics.jsonl appended across the requeue ($n_ok job-script lines, 1 resume)" \
  || notok "logs appended across the requeue" "$n_ok script lines, $n_lam resumes"
grep -q -- "--mpi=pmix" "$LAMINA_RUNS/preempt-srun-"*/command && grep -q '^LAUNCHER=srun$' "$LAMINA_RUNS/preempt-srun-"*/job.env \
  && ok "the srun job launched with srun --mpi=pmix ($(cut -c1-70 "$LAMINA_RUNS/preempt-srun-"*/command)...)" \
  || notok "srun --mpi=pmix launch line" "$(cat "$LAMINA_RUNS/preempt-srun-"*/command)"

# A wall-clock budget shorter than the run: every attempt stops itself (no
# signal), the script requeues, the job ends with the same losses. The
# budget is 40% of the training time of the srun job just run (at least
# 0.3 s): a stop is certain even if the machine got 2.5 times faster since,
# and a few attempts finish the run.
mm=$($PY -c 'import json,sys; t=sum(json.loads(l)["step_ms"] for l in open(sys.argv[1]))/1e3; print("%.4f" % max(0.005, 0.4*t/60))' "$LAST/metrics.jsonl")
t0=$SECONDS
id=$(LAMINA_LAUNCHER=mpirun jobscripts/submit -J budget "${SBX[@]}" "$T/tiny.in" "${O[@]}" train.max_minutes=$mm 2>"$T/submit.err")
run=$LAMINA_RUNS/budget-$id
if [[ $id =~ ^[0-9]+$ ]] && wait_done 150 "$id" && [[ $(state "$id") == COMPLETED* ]]; then
  ok "train.max_minutes = $mm: job $id requeued itself until done: $(state "$id") ($((SECONDS - t0)) s)"
else notok "max_minutes job completed" "$id $(state "$id") $(cat "$T/submit.err")"; diag "$id" "$run"; fi
n=$(grep -c "^stopped early at step [0-9]* of $S: train.max_minutes = [0-9.e-]*: " "$run/lamina.log")
r=$(state "$id" | cut -d' ' -f2)
[ "$n" -ge 1 ] && [ "$r" = "$n" ] && grep -q "^RESTARTS=$n\$" "$run/job.env" \
  && [ "$(grep -c 'train.max_minutes budget): requeueing' "$run/lamina.log")" = "$n" ] \
  && ok "every attempt but the last stopped on the budget ($n stop(s), Restarts=$r, job.env RESTARTS=$n)" \
  || notok "budget stops and requeues" "$n stops, Restarts=$r" "$(grep -E 'stopped|requeue' "$run/lamina.log" | tail -3)"
same_losses "max_minutes: losses of steps 1-$S over $((n + 1)) attempts equal the uninterrupted run's" "$run"

# SIGTERM (scancel, preemption, the time limit): lamina stops with a
# checkpoint, the job ends with exit 3 and is not requeued (the scheduler
# ends or requeues it itself; LAMINA_REQUEUE_ON_TERM=1 would requeue).
t0=$SECONDS
id=$(LAMINA_LAUNCHER=srun jobscripts/submit -J term "${SBX[@]}" "$T/tiny.in" "${O[@]}" 2>"$T/submit.err")
run=$LAMINA_RUNS/term-$id
wait_steps 60 "$id" "$run" 3
scancel --signal=TERM --batch "$id"
if wait_done 60 "$id"; then
  ok "SIGTERM: job $id ended: $(state "$id") ($((SECONDS - t0)) s since submission)"
else notok "SIGTERM: job ended" "$(state "$id")"; diag "$id" "$run"; fi
st=$(state "$id")
k=$(sed -n 's/^stopped early at step \([0-9]*\) of '"$S"': SIGTERM.*\|^stopped early at step \([0-9]*\) of '"$S"': SIGUSR1.*/\1\2/p' "$run/lamina.log")
[ "$st" = "FAILED 0 3:0" ] && [ -n "$k" ] && [ "$(cat "$run/ckpt/latest")" = "step_$(printf %08d "$k").h5" ] \
  && grep -q '^STATUS=stopped$' "$run/job.env" && grep -q 'not requeued' "$run/lamina.log" \
  && ok "SIGTERM: checkpoint of step $k written, exit 3, not requeued (Restarts=0, STATUS=stopped)" \
  || notok "SIGTERM: checkpoint, exit 3, no requeue" "state $st, step '$k'" "$(tail -3 "$run/lamina.log")"
# The same command resumes it: a plain resubmission into the same folder.
id2=$(LAMINA_RUN_DIR=$run LAMINA_LAUNCHER=srun jobscripts/submit -J term "${SBX[@]}" "$T/tiny.in" "${O[@]}" 2>"$T/submit.err")
if wait_done 60 "$id2" \
   && [ "$(state "$id2")" = "COMPLETED 0 0:0" ] && grep -q "resuming from $run/ckpt/step_$(printf %08d "${k:-0}").h5" "$run/lamina.log"; then
  ok "resubmitted with LAMINA_RUN_DIR: job $id2 resumed from step $k in the same folder ($((SECONDS - t0)) s)"
else notok "resubmission resumed" "$(state "$id2")"; diag "$id2" "$run"; fi
same_losses "SIGTERM then resubmission: losses equal the uninterrupted run's" "$run"

# Nothing of ours is left running once the daemons are stopped.
t0=$SECONDS
pids="$(cat "$SD/slurmctld.pid" "$SD/slurmd.pid" "$SD/munge/munged.pid" 2>/dev/null | tr '\n' ' ')"
slurm_stop
left=$(slurm_leftovers "$SD/slurm.conf"; for p in $pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done)
[ -z "$left" ] && [ -n "$pids" ] && ok "daemons ($pids) stopped by their pid files; no job process left" \
  || notok "nothing left running" "$(for p in $left; do ps -o pid=,args= -p "$p"; done)"
finish
