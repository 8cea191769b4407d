#!/bin/bash
# The job scripts without a scheduler: every script parses, every #SBATCH and
# #PBS directive is well formed and comes before the first command, every
# LAMINA_* value they read is set in site.sh and documented; the sweeps submit
# the right jobs (fake sbatch/qsub that record their calls). Then lamina.pbs
# runs for real under a fake PBS (qsub/qrerun/qstat that record their calls,
# PBS_* variables as a MoM sets them, the real mpiexec over PBS_NODEFILE):
# qsig -s USR1 -> checkpoint, qrerun, rerun of the same job id resumes; a
# walltime budget with qrerun refused -> a successor job into the same run
# folder; both end with the losses of an uninterrupted run and write the
# run folder and job.env the Slurm script writes.
EXCLUSIVE=1  # timing promises: runs alone under make check's -j2
source tests/lib.sh
plan 27
J=jobscripts
SCRIPTS=($J/site.sh $J/lib.sh $J/lamina.sbatch $J/lamina.pbs $J/submit $J/submit-pbs $J/strong.sh $J/weak.sh
         $J/strong-pbs.sh $J/weak-pbs.sh)

bad=
for f in "${SCRIPTS[@]}"; do bash -n "$f" 2>>"$T/n.err" || bad="$bad $f"; done
[ -z "$bad" ] && ok "bash -n: ${#SCRIPTS[@]} scripts parse" || notok "bash -n" "$bad" "$(head -3 "$T/n.err")"
bad=
for f in "${SCRIPTS[@]}"; do
  [ -e "$f" ] || { bad="$bad $f(missing)"; continue; }
  case $f in *.sh | */lib.sh) ;; *) [ -x "$f" ] || bad="$bad $f(not executable)" ;; esac
  [ "$(head -1 "$f")" = '#!/bin/bash' ] || [[ $f == *site.sh || $f == *lib.sh ]] || bad="$bad $f(no #!/bin/bash)"
done
[ -z "$bad" ] && ok "every script exists, #!/bin/bash, executable" || notok "scripts exist and run" "$bad"
if command -v shellcheck >/dev/null; then
  out=$(shellcheck -x -s bash "${SCRIPTS[@]}" 2>&1) && ok "shellcheck: no finding in the job scripts" || notok "shellcheck" "$(echo "$out" | head -12)"
else ok "shellcheck # SKIP shellcheck not installed"; fi

# Directives: Slurm and PBS read them only before the first command line.
directives() { # directives FILE PREFIX REGEX: every PREFIX line matches REGEX and precedes the first command
  awk -v p="$2" -v re="$3" '
    /^#!/ && NR == 1 { next }
    index($0, p) == 1 { n++; if (cmd) { print FILENAME ":" NR ": after the first command: " $0; bad = 1 }
                        else if ($0 !~ re) { print FILENAME ":" NR ": malformed: " $0; bad = 1 }; next }
    /^[ \t]*(#|$)/ { next }
    { cmd = 1 }
    END { if (!n) { print FILENAME ": no " p " lines"; bad = 1 }; exit bad }' "$1"
}
out=$(directives $J/lamina.sbatch '#SBATCH' '^#SBATCH --[a-z][a-z-]*(=[^ ]+)?$' 2>&1) \
  && ok "lamina.sbatch: $(grep -c '^#SBATCH' $J/lamina.sbatch) #SBATCH lines, all --long[=value], before the first command" \
  || notok "#SBATCH directives" "$out"
out=$(directives $J/lamina.pbs '#PBS' '^#PBS -[A-Za-z]( [^ ]+)?$' 2>&1) \
  && ok "lamina.pbs: $(grep -c '^#PBS' $J/lamina.pbs) #PBS lines, all -X value, before the first command" \
  || notok "#PBS directives" "$out"
grep -q '^#SBATCH --requeue$' $J/lamina.sbatch && grep -q '^#SBATCH --open-mode=append$' $J/lamina.sbatch \
  && grep -q '^#SBATCH --signal=B:USR1@[0-9]*$' $J/lamina.sbatch && grep -q '^#PBS -r y$' $J/lamina.pbs \
  && ! grep -Eq '^#(SBATCH|PBS).*(account|partition|qos|-A |-q |select=|walltime|gpus|nodes)' $J/lamina.sbatch $J/lamina.pbs \
  && ok "directives: requeue, append, B:USR1 warning, rerunnable; no site value in them" \
  || notok "directive contents" "$(grep -h '^#SBATCH\|^#PBS' $J/lamina.sbatch $J/lamina.pbs)"

# Every LAMINA_* name a script reads is set in site.sh (or is one of the
# documented per-job names), and every site.sh name is in jobscripts/README.md.
perjob="LAMINA_RUN_DIR LAMINA_SWEEP LAMINA_SUBMIT_ENV LAMINA_BUDGET_MIN LAMINA_DECK LAMINA_ARGS LAMINA_QSUB_ARGS LAMINA_NODES"
site=$(grep -o '^: "${LAMINA_[A-Z_]*' $J/site.sh | sed 's/^: "\${//' | sort -u)
used=$(grep -ho 'LAMINA_[A-Z][A-Z_]*' "${SCRIPTS[@]}" | sort -u)
miss=$(comm -23 <(echo "$used") <(printf '%s\n' $site $perjob | sort -u) | tr '\n' ' ')
[ -z "$miss" ] && ok "every LAMINA_* name used ($(echo "$used" | wc -l)) is a site.sh value ($(echo "$site" | wc -l)) or a per-job name" \
  || notok "LAMINA_* names not in site.sh" "$miss"
undoc=$(for v in $site $perjob; do grep -q "$v" $J/README.md 2>/dev/null || echo "$v"; done | tr '\n' ' ')
[ -z "$undoc" ] && ok "jobscripts/README.md documents every site value and per-job name" || notok "undocumented in jobscripts/README.md" "$undoc"
exported=$(sed -n '/^export LAMINA_/,/[^\\]$/p' $J/site.sh | tr ' \\' '\n\n' | grep '^LAMINA_' | sort -u)
[ "$exported" = "$site" ] && ok "site.sh exports every value it sets (they reach the job)" \
  || notok "site.sh exports" "$(diff <(echo "$site") <(echo "$exported") | tr '\n' ' ')"
# Both job scripts source site.sh and lib.sh and run lamina_job (run folder,
# job.env, launch, signals and requeue live once, in lib.sh).
grep -q 'source "$_dir/site.sh"' $J/lamina.sbatch && grep -q 'source "$_dir/lib.sh"' $J/lamina.sbatch \
  && grep -q 'source "$LAMINA_JOBSCRIPTS/site.sh"' $J/lamina.pbs && grep -q 'source "$LAMINA_JOBSCRIPTS/lib.sh"' $J/lamina.pbs \
  && grep -q '^lamina_job slurm ' $J/lamina.sbatch && grep -q '^lamina_job pbs ' $J/lamina.pbs \
  && ok "lamina.sbatch and lamina.pbs share site.sh and lib.sh's lamina_job" || notok "shared site.sh/lib.sh"

# Fake schedulers on PATH: each records its call; qsub also keeps what a MoM
# needs to run the job (PBS_* variables, the -v list, the script, -o).
B=$T/bin F=$T/fake
mkdir -p "$B" "$F"
cat >"$B/sbatch" <<'EOF'
#!/bin/bash
n=$(($(cat "$FAKE/next" 2>/dev/null || echo 500) + 1)); echo $n >"$FAKE/next"
printf '%q ' "$@" >>"$FAKE/sbatch.log"; echo >>"$FAKE/sbatch.log"
echo "$LAMINA_SWEEP $LAMINA_RUNS $LAMINA_GPUS_PER_NODE $LAMINA_RANKS_PER_NODE" >>"$FAKE/sbatch.env"
echo "$n"
EOF
cat >"$B/qsub" <<'EOF'
#!/bin/bash
n=$(($(cat "$FAKE/next" 2>/dev/null || echo 100) + 1)); echo $n >"$FAKE/next"
id=$n.fakepbs
printf '%q ' "$@" >>"$FAKE/qsub.log"; echo >>"$FAKE/qsub.log"
{ echo "export PBS_JOBID=$id"
  while [ $# -gt 1 ]; do
    case $1 in
      -N) printf 'export PBS_JOBNAME=%q\n' "$2"; shift 2 ;;
      -o) printf 'OUT=%q\n' "$2"; shift 2 ;;
      -l) [[ $2 == walltime=* ]] && printf 'WALL=%q\n' "${2#walltime=}"; shift 2 ;;
      -v) IFS=, read -r -a vs <<<"$2"; for v in "${vs[@]}"; do printf 'export %q\n' "$v"; done; shift 2 ;;
      -r | -j | -A | -q) shift 2 ;;
      *) shift ;;
    esac
  done
  printf 'SCRIPT=%q\n' "$1"
  printf 'export PBS_O_WORKDIR=%q\n' "$PWD"; } >"$FAKE/$id.job"
echo "$id"
EOF
cat >"$B/qrerun" <<'EOF'
#!/bin/bash
echo "qrerun $*" >>"$FAKE/qrerun.log"
[ "${FAKE_QRERUN_RC:-0}" = 0 ] || { echo "qrerun: Unauthorized Request  $1" >&2; exit 1; }
EOF
cat >"$B/qstat" <<'EOF'
#!/bin/bash
[ "$1" = -f ] && [ -e "$FAKE/$2.job" ] || exit 1
source "$FAKE/$2.job"; echo "Job Id: $2"; echo "    Resource_List.walltime = ${FAKE_QSTAT_WALL:-$WALL}"
EOF
chmod +x "$B"/*
export PATH=$B:$PATH FAKE=$F
printf '%s\n%s\n' "$(hostname)" "$(hostname)" >"$T/nodefile"
# pbs_start ID: run job ID as a MoM would (PBS_* set, from $HOME, output to
# -o) in the background; its pid in $JOBPID. pbs_wait: its exit code in $rc.
pbs_start() {
  ( set -a; source "$F/$1.job"; export PBS_NODEFILE=$T/nodefile PBS_JOBDIR=$T; cd "$T" && exec bash "$SCRIPT" ) \
    >>"$F/$1.out" 2>&1 &
  JOBPID=$!
}
pbs_wait() {
  rc=0
  timeout 120 tail --pid="$JOBPID" -f /dev/null || { echo "# job $JOBPID still running after 120 s: killed"; kill_tree "$JOBPID"; }
  wait "$JOBPID" || rc=$?
  JOBPID=
}
# On exit: a job still running (a failed wait) goes, with its launcher and ranks.
kill_tree() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done; kill -KILL "$1" 2>/dev/null; }
JOBPID=
trap '[ -n "$JOBPID" ] && kill_tree "$JOBPID"; rm -rf "$T"' EXIT
trap "exit 1" INT TERM HUP
steps_in() { [ -s "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

# The site for this machine: CPU backend, 2 ranks on this host, no GPUs.
export LAMINA_RUNS=$T/runs LAMINA_BIN=$LAMINA LAMINA_GPUS_PER_NODE=0 LAMINA_RANKS_PER_NODE=2 LAMINA_CPUS_PER_TASK=1 \
  LAMINA_DEVICE=cpu LAMINA_ACCOUNT=proj42 LAMINA_PBS_QUEUE=workq LAMINA_MODULES= LAMINA_SIGNAL_SECS=60
[ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ] || export LAMINA_MPIEXEC_FLAGS="-np {ranks} --hostfile {nodefile} --oversubscribe --bind-to none"

# Sweeps: the jobs they submit (fake sbatch / qsub, nothing runs).
make_deck
sed -i 's/^global_batch = 4$/global_batch = 64/; s/^micro_batch = 2$/micro_batch = 1/' "$T/tiny.in"
out=$(LAMINA_GPUS_PER_NODE=8 $J/strong.sh -l "8 16 32" -o "$T/sw-strong" "$T/tiny.in" train.steps=50 2>"$T/sw.err")
log=$(cat "$F/sbatch.log" 2>/dev/null)
if [ "$(echo "$out" | tr '\n' ' ')" = "$(awk '{print $3}' "$T/sw-strong/jobs" | tr '\n' ' ')" ] \
   && [ "$(awk '{print $1}' "$T/sw-strong/jobs" | tr '\n' ' ')" = "8 16 32 " ] \
   && [ "$(grep -o -- '--nodes=[0-9]*' <<<"$log" | tr '\n' ' ')" = "--nodes=1 --nodes=2 --nodes=4 " ] \
   && [ "$(grep -c -- '--gpus-per-node=8 .*train.steps=50 train.global_batch=64 $' <<<"$log")" = 3 ] \
   && [ "$(grep -o -- '--job-name=[^ ]*' <<<"$log" | tr '\n' ' ')" = "--job-name=tiny-strong-g0008 --job-name=tiny-strong-g0016 --job-name=tiny-strong-g0032 " ] \
   && [ "$(sort -u "$F/sbatch.env")" = "strong $T/sw-strong 8 8" ] && [ "$(grep -c -- "--output=$T/sw-strong/slurm/" <<<"$log")" = 3 ]; then
  ok "strong.sh: 3 jobs (8/16/32 GPUs on 1/2/4 nodes), global batch 64 each, SWEEP=strong, one sweep folder, ids printed"
else notok "strong.sh" "$out" "$log" "$(cat "$T/sw.err")"; fi
rm -f "$F/sbatch.log" "$F/sbatch.env"
out=$(LAMINA_GPUS_PER_NODE=8 $J/weak.sh -l "4 8 16" -b 2 -o "$T/sw-weak" "$T/tiny.in" parallel.tp=2 2>"$T/sw.err")
log=$(cat "$F/sbatch.log" 2>/dev/null)
[ "$(grep -o 'train.global_batch=[0-9]*' <<<"$log" | tr '\n' ' ')" = "train.global_batch=4 train.global_batch=8 train.global_batch=16 " ] \
  && [ "$(grep -o -- '--ntasks-per-node=[0-9]* --cpus-per-task=1 --time=[^ ]* --signal=B:USR1@60' <<<"$log" | cut -d' ' -f1 | tr '\n' ' ')" = "--ntasks-per-node=4 --ntasks-per-node=8 --ntasks-per-node=8 " ] \
  && [ "$(awk '{print $2}' "$T/sw-weak/jobs" | tr '\n' ' ')" = "4 8 16 " ] \
  && ok "weak.sh (tp 2, 2 per replica): global batch 4/8/16 at 4/8/16 GPUs (dp 2/4/8), partial first node" \
  || notok "weak.sh" "$out" "$log" "$(cat "$T/sw.err")"
$J/strong.sh -l "8 24" "$T/tiny.in" train.global_batch=20 >/dev/null 2>"$T/sw.err"; r=$?
[ "$r" = 2 ] && grep -q "8 GPUs: global batch 20 is not a multiple of dp x micro_batch = 8 x 1" "$T/sw.err" \
  && grep -q "nothing submitted" "$T/sw.err" && ! grep -q "train.global_batch=20" "$F/sbatch.log" \
  && ok "strong.sh refuses counts the global batch does not split over (exit 2, nothing submitted)" \
  || notok "strong.sh infeasible count" "exit $r" "$(cat "$T/sw.err")"
out=$(LAMINA_GPUS_PER_NODE=4 $J/weak-pbs.sh -l "4 8" -o "$T/sw-pbs" "$T/tiny.in" 2>"$T/sw.err")
log=$(cat "$F/qsub.log" 2>/dev/null)
[ "$(grep -o -- '-l select=[^ ]*' <<<"$log" | tr '\n' ' ')" = "-l select=1:ncpus=4:mpiprocs=4:ompthreads=1:ngpus=4 -l select=2:ncpus=4:mpiprocs=4:ompthreads=1:ngpus=4 " ] \
  && [ "$(grep -c -- '-A proj42 -q workq' <<<"$log")" = 2 ] && [ "$(grep -c -- '-r y -j oe' <<<"$log")" = 2 ] \
  && [ "$(grep -o 'walltime=[0-9:]*' <<<"$log" | sort -u)" = "walltime=02:00:00" ] \
  && grep -q 'train.global_batch=128' "$T"/sw-pbs/pbs/*-g0008-*.submit && [ "$(echo "$out" | wc -l)" = 2 ] \
  && ok "weak-pbs.sh: select=N:ncpus:mpiprocs:ompthreads:ngpus chunks, -A/-q, walltime, -r y; 64 per replica" \
  || notok "weak-pbs.sh" "$out" "$log" "$(cat "$T/sw.err")"
rm -f "$F/qsub.log" "$F/sbatch.log"
# The scaling driver's front end calls strong.sh/weak.sh with its settings
# in the environment (GPUS, GLOBAL_BATCH, PER_RANK_BATCH, MICRO_BATCH, STEPS)
# and reads one job id per stdout line.
if [ -e perf/scaling.py ]; then
  out=$(LAMINA_GPUS_PER_NODE=8 $PY perf/scaling.py submit --sweep both --gpus 8,16 --deck "$T/tiny.in" --global-batch 64 \
        --per-rank-batch 4 --steps 7 --out "$T/drv" --jobscripts "$J" 2>"$T/drv.err")
  got=$(grep -o -- '--job-name=[^ ]*\|train\.[a-z_]*=[0-9]*' "$F/sbatch.log" | tr '\n' ' ')
  [[ $out == *"strong: submitted 2 job(s)"*"weak: submitted 2 job(s)"* ]] \
    && [ "$got" = "--job-name=tiny-strong-g0008 train.micro_batch=1 train.steps=7 train.global_batch=64 --job-name=tiny-strong-g0016 train.micro_batch=1 train.steps=7 train.global_batch=64 --job-name=tiny-weak-g0008 train.micro_batch=1 train.steps=7 train.global_batch=32 --job-name=tiny-weak-g0016 train.micro_batch=1 train.steps=7 train.global_batch=64 " ] \
    && ok "perf/scaling.py submit drives strong.sh/weak.sh: 4 job ids read back, batches 64/64 and 32/64, steps 7" \
    || notok "scaling.py submit through the sweeps" "$out" "$got" "$(tail -3 "$T/drv.err")"
else ok "scaling.py submit # SKIP perf/scaling.py not present"; fi
rm -f "$F/sbatch.log"

# A real run under the fake PBS.
make_data 256
make_deck
S=120
O=(train.steps=$S train.seq_len=256 train.micro_batch=2 train.global_batch=16 checkpoint.every=0)
lam 2 train "$T/tiny.in" "${O[@]}" checkpoint.dir="$T/ref" log.metrics="$T/ref.jsonl"
[ "$rc" = 0 ] && ok "reference run (mpirun -np 2, uninterrupted)" || notok "reference run" "exit $rc" "$(tail -3 "$T/out")"
same_losses() { # DESCRIPTION RUN
  local out
  if out=$(close "$2/metrics.jsonl" "$T/ref.jsonl" 1 $S 1e-6 2>&1) \
     && [ "$(tail -1 "$2/metrics.jsonl" | losses $S $S /dev/stdin)" = "$(losses $S $S "$T/ref.jsonl")" ]; then
    ok "$1" && echo "#   $out"
  else notok "$1" "$out" "$(tail -3 "$2/lamina.log")"; fi
}

# 1. qsig -s USR1 (the batch shell gets it), qrerun, the same job id again.
id=$(LAMINA_TIME=00:10:00 $J/submit-pbs -J pbsjob "$T/tiny.in" "${O[@]}" 2>"$T/sub.err")
run=$LAMINA_RUNS/pbsjob-${id%%.*}
FAKE_QSTAT_WALL=00:20:00 pbs_start "$id" # the server may change the walltime: qstat has the truth
timeout 60 bash -c "$(declare -f steps_in); until steps_in '$run/metrics.jsonl' 5 || ! kill -0 $JOBPID 2>/dev/null; do sleep 0.1; done"
kill -USR1 "$JOBPID" 2>/dev/null
pbs_wait
k=$(sed -n 's/^stopped early at step \([0-9]*\) of '"$S"': SIGUSR1 received.*/\1/p' "$run/lamina.log")
[ "$rc" = 3 ] && [ -n "$k" ] && grep -q "ckpt/step_$(printf %08d "$k").h5 written" "$run/lamina.log" \
  && [ "$(cat "$F/qrerun.log" 2>/dev/null)" = "qrerun $id" ] && grep -q '^STATUS=requeued$' "$run/job.env" \
  && ok "qsig -s USR1: forwarded to mpiexec, stopped at step $k with a checkpoint, exit 3, 'qrerun $id' called" \
  || notok "USR1 -> checkpoint -> qrerun" "exit $rc, step '$k', qrerun: $(cat "$F/qrerun.log" 2>/dev/null)" "$(tail -4 "$run/lamina.log")" "$(tail -3 "$F/$id.out")"
grep -Eq -- "-np 2 --hostfile $T/nodefile .*train.max_minutes=(18\.[89]|19\.0)[0-9]*" "$run/command" \
  && ok "mpiexec over PBS_NODEFILE; walltime 20 min from qstat - 60 s -> train.max_minutes=$(grep -o 'max_minutes=[0-9.]*' "$run/command" | cut -d= -f2)" \
  || notok "mpiexec line and walltime budget" "$(cat "$run/command")"
pbs_start "$id"
pbs_wait
[ "$rc" = 0 ] && grep -q "resuming from $run/ckpt/step_$(printf %08d "${k:-0}").h5 (step $k)" "$run/lamina.log" \
  && grep -q '^RESTARTS=1$' "$run/job.env" && grep -q '^STATUS=done$' "$run/job.env" \
  && ok "the rerun (same job id, same folder) resumed from step $k and finished; job.env RESTARTS=1 STATUS=done" \
  || notok "rerun resumed" "exit $rc" "$(grep -E 'resuming|^RESTARTS|^STATUS' "$run/lamina.log" "$run/job.env")"
same_losses "USR1 + qrerun: losses of steps 1-$S equal the uninterrupted run's" "$run"
want="JOB_ID JOB_NAME NODES RANKS GPUS_PER_NODE SWEEP GLOBAL_BATCH MICRO_BATCH TP PP DECK RESTARTS"
( source "$run/job.env"
  [ "$(cut -d= -f1 "$run/job.env" | head -12 | tr '\n' ' ')" = "$want " ] && [ "$JOB_ID" = "${id%%.*}" ] \
  && [ "$JOB_NAME" = pbsjob ] && [ "$NODES" = 1 ] && [ "$RANKS" = 2 ] && [ "$GPUS_PER_NODE" = 0 ] && [ "$SWEEP" = single ] \
  && [ "$GLOBAL_BATCH" = 16 ] && [ "$MICRO_BATCH" = 2 ] && [ "$TP" = 1 ] && [ "$PP" = 1 ] && [ "$DECK" = "$run/deck.in" ] \
  && [ "$SCHEDULER" = pbs ] && [ "$LAUNCHER" = mpiexec ] ) \
  && ok "job.env: the twelve names of the Slurm job, NODES/RANKS from PBS_NODEFILE" || notok "job.env" "$(tr '\n' ' ' <"$run/job.env")"
[ "$(cd "$run" && ls | tr '\n' ' ')" = "attempts ckpt command deck.in job.env lamina.log metrics.jsonl " ] \
  && cmp -s "$run/deck.in" "$T/tiny.in" \
  && ok "run folder pbsjob-<id>/: attempts ckpt command deck.in job.env lamina.log metrics.jsonl (as under Slurm)" \
  || notok "run folder" "$(ls "$run")"

# 2. A walltime of 60 s + b, b = 40% (rounded down) of the training time of the job just
#    run (at least 1 s): past the 60 s warning lamina has b seconds and stops itself;
#    qrerun is refused, so a successor job is submitted into the same run
#    folder; the server gives the successor 10 min (qstat), so it finishes.
b=$($PY -c 'import json,sys,math; t=sum(json.loads(l)["step_ms"] for l in open(sys.argv[1]))/1e3; print(min(59, max(1, math.floor(0.4*t))))' "$run/metrics.jsonl")
rm -f "$F/qrerun.log" "$F/qsub.log"
id=$(LAMINA_TIME=00:01:04 $J/submit-pbs -J budget "$T/tiny.in" "${O[@]}" 2>"$T/sub.err")
run=$LAMINA_RUNS/budget-${id%%.*}
FAKE_QRERUN_RC=1 FAKE_QSTAT_WALL=$(printf '00:01:%02d' "$b") pbs_start "$id"
FAKE_QRERUN_RC=1 pbs_wait
next=$(cat "$F/next").fakepbs
k=$(sed -n 's/^stopped early at step \([0-9]*\) of '"$S"': train.max_minutes = [0-9.e-]*: .*/\1/p' "$run/lamina.log")
[ "$rc" = 3 ] && [ -n "$k" ] && [ "$(cat "$F/qrerun.log")" = "qrerun $id" ] && [ "$next" != "$id" ] \
  && grep -q "qrerun $id refused: submitting a successor job" "$run/lamina.log" && grep -q "^successor job $next\$\|successor job $next\$" "$run/lamina.log" \
  && ok "walltime 60 + $b s: stopped on train.max_minutes at step $k, qrerun refused, successor $next submitted" \
  || notok "budget stop + successor" "exit $rc, step '$k', next $next" "$(grep -E 'stopped|qrerun|successor|max_minutes' "$run/lamina.log" | tail -4)"
FAKE_QSTAT_WALL=00:10:00 pbs_start "$next"
pbs_wait
[ "$rc" = 0 ] && [ "$(grep -c "LAMINA_RUN_DIR=$run" "$F/qsub.log")" = 1 ] && [ "$(grep -c -- '-l walltime=00:01:04' "$F/qsub.log")" = 2 ] \
  && [ "$(awk '{print $2, $4, $5}' "$run/attempts" | tr '\n' ' ')" = "${id%%.*} exit 3 ${next%%.*} exit 0 " ] \
  && grep -q "resuming from $run/ckpt/step_$(printf %08d "${k:-0}").h5" "$run/lamina.log" && grep -q '^RESTARTS=1$' "$run/job.env" \
  && ok "the successor (same qsub options + LAMINA_RUN_DIR) resumed from step $k in the same folder; RESTARTS=1" \
  || notok "successor run" "exit $rc" "$(cat "$F/qsub.log")" "$(cat "$run/attempts")"
same_losses "walltime budget + successor: losses of steps 1-$S equal the uninterrupted run's" "$run"

# 3. SIGTERM (walltime, qdel, preemption): checkpoint, exit 3, no rerun.
rm -f "$F/qrerun.log"
id=$(LAMINA_TIME=00:10:00 $J/submit-pbs -J term "$T/tiny.in" "${O[@]}" 2>"$T/sub.err")
run=$LAMINA_RUNS/term-${id%%.*}
pbs_start "$id"
timeout 60 bash -c "$(declare -f steps_in); until steps_in '$run/metrics.jsonl' 3 || ! kill -0 $JOBPID 2>/dev/null; do sleep 0.1; done"
kill -TERM "$JOBPID" 2>/dev/null
pbs_wait
[ "$rc" = 3 ] && [ ! -e "$F/qrerun.log" ] && grep -q '^STATUS=stopped$' "$run/job.env" \
  && grep -q "^stopped early at step [0-9]* of $S: SIGUSR1" "$run/lamina.log" && grep -q 'SIGTERM received: forwarding SIGUSR1' "$run/lamina.log" \
  && ok "SIGTERM: forwarded as SIGUSR1, checkpoint, exit 3, not rerun (STATUS=stopped)" \
  || notok "SIGTERM" "exit $rc, qrerun: $(cat "$F/qrerun.log" 2>/dev/null)" "$(tail -3 "$run/lamina.log")"
# Bad input to the front ends: exit 2 with the reason, nothing submitted.
rm -f "$F/qsub.log" "$F/sbatch.log"
$J/submit-pbs "$T/tiny.in" train.steps >"$T/o" 2>&1; r1=$?
$J/submit -G 3 -n 2 "$T/tiny.in" >>"$T/o" 2>&1; r2=$?
$J/submit "$T/nope.in" >>"$T/o" 2>&1; r3=$?
[ "$r1$r2$r3" = 222 ] && grep -q "'train.steps' is not a section.key=value override" "$T/o" \
  && grep -q -- "--gpus 3 is not a multiple of 2 ranks per node" "$T/o" && grep -q "cannot read the deck $T/nope.in" "$T/o" \
  && [ ! -e "$F/qsub.log" ] && [ ! -e "$F/sbatch.log" ] \
  && ok "front ends: a bad override, GPU count or deck is exit 2 with the reason" || notok "front-end errors" "$r1 $r2 $r3" "$(cat "$T/o")"
finish
