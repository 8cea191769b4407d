# shellcheck shell=bash disable=SC2034 # globals set here are read by the callers
# jobscripts/lib.sh — what the Slurm and the PBS job scripts share: the run
# folder, job.env, the launch line, signal forwarding and the requeue decision.
# Sourced (after site.sh) by lamina.sbatch and lamina.pbs; the submit front ends
# and the sweeps use the helpers at the top.
#
# The run folder $LAMINA_RUNS/<jobname>-<jobid>/ (or $LAMINA_RUN_DIR) holds
#   deck.in        the deck as submitted (copied once; a requeued job reuses it)
#   command        the lamina command line of the latest attempt
#   lamina.log     the job's and lamina's stdout+stderr, appended by every attempt
#   metrics.jsonl  lamina's per-step metrics (log.metrics), appended likewise
#   ckpt/          checkpoints (checkpoint.dir); a requeued attempt resumes from ckpt/latest
#   job.env        shell assignments read by the scaling driver (see lamina_write_env)
#   attempts       one line per attempt: start time, job id, host, exit code

# lamina_say MESSAGE...: a time-stamped line of the job script (not of lamina).
lamina_say() { printf '[job %s] %s\n' "$(date '+%F %T')" "$*"; }

# lamina_die MESSAGE...: a message on stderr and exit 2 (bad input to the scripts).
lamina_die() { echo "lamina job scripts: $*" >&2; exit 2; }

# lamina_secs TIME: seconds in a Slurm/PBS time ([D-]HH:MM:SS, MM:SS, or minutes).
lamina_secs() {
  local t=$1 d=0 h=0 m=0 s=0
  [[ $t =~ ^([0-9]+)-(.*)$ ]] && { d=${BASH_REMATCH[1]}; t=${BASH_REMATCH[2]}; }
  IFS=: read -r -a p <<<"$t"
  case ${#p[@]} in
    1) if [ "$d" -gt 0 ]; then h=${p[0]}; else m=${p[0]}; fi ;;
    2) if [ "$d" -gt 0 ]; then h=${p[0]}; m=${p[1]}; else m=${p[0]}; s=${p[1]}; fi ;;
    3) h=${p[0]}; m=${p[1]}; s=${p[2]} ;;
    *) return 1 ;;
  esac
  echo $(( ((10#$d * 24 + 10#$h) * 60 + 10#$m) * 60 + 10#$s ))
}

# lamina_deck_value DECK SECTION KEY DEFAULT [section.key=value ...]: the value
# lamina will use: the last command-line override, else the deck's line (a
# comment starts a line or follows whitespace, as in lamina), else DEFAULT.
lamina_deck_value() {
  local deck=$1 sec=$2 key=$3 def=$4 v a
  shift 4
  v=$(awk -v sec="$sec" -v key="$key" '
    { sub(/\r$/, "") }
    /^[ \t]*[;#]/ { next }
    { sub(/[ \t][;#].*$/, "") }
    /^[ \t]*\[/ { s = $0; gsub(/[][ \t]/, "", s); cur = s; next }
    index($0, "=") {
      n = index($0, "="); k = substr($0, 1, n - 1); val = substr($0, n + 1)
      gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", val)
      if (cur == sec && k == key) out = val
    }
    END { print out }' "$deck")
  for a in "$@"; do [[ $a == "$sec.$key="* ]] && v=${a#*=}; done
  echo "${v:-$def}"
}

# lamina_is_override WORD: WORD looks like section.key=value.
lamina_is_override() { [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*= ]]; }

# lamina_modules: load $LAMINA_MODULES (sourcing the module system first if the
# batch shell does not have the `module` function).
lamina_modules() {
  [ -n "$LAMINA_MODULES" ] || return 0
  if ! type module >/dev/null 2>&1; then
    local f
    for f in $LAMINA_MODULE_INIT /etc/profile.d/lmod.sh /etc/profile.d/modules.sh /usr/share/lmod/lmod/init/bash \
             /usr/share/modules/init/bash; do
      # shellcheck disable=SC1090
      [ -r "$f" ] && { set +u; source "$f"; set -u; break; }
    done
  fi
  type module >/dev/null 2>&1 || { lamina_say "LAMINA_MODULES is set but no module command was found"; return 1; }
  set +u
  # shellcheck disable=SC2086
  module load $LAMINA_MODULES || { set -u; lamina_say "module load $LAMINA_MODULES failed"; return 1; }
  set -u
}

# lamina_write_env STATUS: job.env, written atomically. The first twelve names
# are the scaling driver's contract; the rest are extra facts for people.
lamina_write_env() {
  local f=$RUN/job.env
  {
    printf 'JOB_ID=%q\n' "$JOB_ID"
    printf 'JOB_NAME=%q\n' "$JOB_NAME"
    printf 'NODES=%q\n' "$NODES"
    printf 'RANKS=%q\n' "$RANKS"
    printf 'GPUS_PER_NODE=%q\n' "$GPUS_PER_NODE"
    printf 'SWEEP=%q\n' "$SWEEP"
    printf 'GLOBAL_BATCH=%q\n' "$GLOBAL_BATCH"
    printf 'MICRO_BATCH=%q\n' "$MICRO_BATCH"
    printf 'TP=%q\n' "$TP"
    printf 'PP=%q\n' "$PP"
    printf 'DECK=%q\n' "$RUN/deck.in"
    printf 'RESTARTS=%q\n' "$RESTARTS"
    printf 'SCHEDULER=%q\n' "$SCHED"
    printf 'RANKS_PER_NODE=%q\n' "$RPN"
    printf 'CPUS_PER_TASK=%q\n' "$CPT"
    printf 'LAUNCHER=%q\n' "$LAMINA_LAUNCHER"
    printf 'STATUS=%q\n' "$1"
  } >"$f.tmp" && mv -f "$f.tmp" "$f"
}

# lamina_launch_line: the launcher words for this job into the array LAUNCH.
lamina_launch_line() {
  local f v
  case $LAMINA_LAUNCHER in
    srun)
      # -c explicitly: since Slurm 22.05 srun no longer inherits --cpus-per-task
      # from the batch job.
      # shellcheck disable=SC2206
      LAUNCH=(srun --mpi="$LAMINA_SRUN_MPI" --nodes="$NODES" --ntasks="$RANKS" --ntasks-per-node="$RPN"
              --cpus-per-task="$CPT" $LAMINA_SRUN_FLAGS)
      if [ "$LAMINA_GPU_BIND" = task ] && [ "$GPUS_PER_NODE" -gt 0 ]; then
        LAUNCH+=(--gpus-per-task=1 --gpu-bind=closest)
      fi
      ;;
    mpirun | mpiexec | */mpirun | */mpiexec)
      # PBS jobs take LAMINA_MPIEXEC_FLAGS, Slurm jobs LAMINA_MPIRUN_FLAGS.
      if [ "$SCHED" = pbs ]; then f=$LAMINA_MPIEXEC_FLAGS; else f=$LAMINA_MPIRUN_FLAGS; fi
      f=${f//"{ranks}"/$RANKS}; f=${f//"{rpn}"/$RPN}; f=${f//"{cpt}"/$CPT}; f=${f//"{nodes}"/$NODES}
      f=${f//"{nodefile}"/${PBS_NODEFILE:-}}
      # shellcheck disable=SC2206
      LAUNCH=($LAMINA_LAUNCHER $f)
      if [ -n "$LAMINA_MPI_EXPORT" ]; then
        LAUNCH+=("$LAMINA_MPI_EXPORT" OMP_NUM_THREADS)
        for v in $LAMINA_ENV; do LAUNCH+=("$LAMINA_MPI_EXPORT" "${v%%=*}"); done
      fi
      ;;
    *) lamina_say "LAMINA_LAUNCHER = '$LAMINA_LAUNCHER': expected srun, mpirun or mpiexec"; return 2 ;;
  esac
}

# lamina_job SCHED DECK [section.key=value ...]: the body of a job. The caller
# sets JOB_ID, JOB_NAME, NODES, RESTARTS (empty: count the attempts), SUBMIT_DIR
# and defines lamina_requeue (asks the scheduler to run this job again; returns
# non-zero if it cannot). Returns lamina's exit code: 0 done, 3 stopped early
# (requeued unless the requeue limit or the signal says otherwise), other =
# failure. lamina.log receives everything from here on.
lamina_job() {
  SCHED=$1; local deck=$2; shift 2
  local a
  for a in "$@"; do lamina_is_override "$a" || lamina_die "'$a' is not a section.key=value override"; done
  RUN=${LAMINA_RUN_DIR:-$LAMINA_RUNS/$JOB_NAME-$JOB_ID}
  mkdir -p "$RUN/ckpt" || return 1
  exec >>"$RUN/lamina.log" 2>&1
  cd "$SUBMIT_DIR" || return 1

  # The deck is copied on the first attempt; every later attempt (requeue,
  # resubmission into the same folder) runs the copy, so editing the original
  # cannot change a run half way.
  if [ ! -e "$RUN/deck.in" ]; then
    [ -r "$deck" ] || { lamina_say "cannot read the deck $deck"; return 2; }
    cp "$deck" "$RUN/deck.in.tmp" && mv "$RUN/deck.in.tmp" "$RUN/deck.in"
  fi
  local n_att=0
  [ -e "$RUN/attempts" ] && n_att=$(wc -l <"$RUN/attempts")
  [ -n "${RESTARTS:-}" ] || RESTARTS=$n_att

  RPN=$LAMINA_RANKS_PER_NODE
  RANKS=${RANKS:-$((NODES * RPN))}
  CPT=$LAMINA_CPUS_PER_TASK
  GPUS_PER_NODE=$LAMINA_GPUS_PER_NODE
  SWEEP=${LAMINA_SWEEP:-single}
  GLOBAL_BATCH=$(lamina_deck_value "$RUN/deck.in" train global_batch "" "$@")
  MICRO_BATCH=$(lamina_deck_value "$RUN/deck.in" train micro_batch "" "$@")
  TP=$(lamina_deck_value "$RUN/deck.in" parallel tp 1 "$@")
  PP=$(lamina_deck_value "$RUN/deck.in" parallel pp 1 "$@")
  export OMP_NUM_THREADS=$CPT
  for a in $LAMINA_ENV; do export "${a?}"; done

  lamina_say "$SCHED job $JOB_ID ($JOB_NAME), attempt $((n_att + 1)), restarts $RESTARTS, on $(hostname): $NODES node(s) x $RPN rank(s), $CPT core(s) per rank, $GPUS_PER_NODE GPU(s) per node"
  printf '%s %s %s start\n' "$(date '+%FT%T')" "$JOB_ID" "$(hostname)" >>"$RUN/attempts"
  lamina_write_env running

  # A warning that arrives before lamina runs: do not start it, just requeue.
  STOP_SIG=
  trap 'STOP_SIG=${STOP_SIG:-USR1}' USR1
  trap 'STOP_SIG=${STOP_SIG:-TERM}' TERM

  local rc=0
  lamina_modules || rc=1
  [ $rc = 0 ] && { lamina_launch_line || rc=$?; }
  local dev=()
  [ -n "$LAMINA_DEVICE" ] && dev=(train.device="$LAMINA_DEVICE")
  # Site device first, the user's overrides after (lamina: the last one wins);
  # the run folder's paths last, so that they always hold.
  local cmd=("$LAMINA_BIN" train "$RUN/deck.in" "${dev[@]}" "$@" checkpoint.dir="$RUN/ckpt"
             log.metrics="$RUN/metrics.jsonl" checkpoint.restart=auto)
  if [ -n "${LAMINA_BUDGET_MIN:-}" ]; then cmd+=(train.max_minutes="$LAMINA_BUDGET_MIN"); fi
  if [ $rc = 0 ] && [ -n "$STOP_SIG" ]; then
    lamina_say "SIG$STOP_SIG arrived before lamina started: nothing to save"
    rc=3
  elif [ $rc = 0 ]; then
    printf '%q ' "${LAUNCH[@]}" "${cmd[@]}" >"$RUN/command"; echo >>"$RUN/command"
    lamina_say "launch: $(cat "$RUN/command")"
    rc=0
    lamina_run || rc=$?
  fi
  trap - USR1 TERM

  sed -i "\$s/ start\$/ exit $rc/" "$RUN/attempts"
  case $rc in
    0) lamina_say "lamina finished (exit 0)"; lamina_write_env "done"; return 0 ;;
    3) ;;
    *) lamina_say "lamina failed (exit $rc)"; lamina_write_env failed; return "$rc" ;;
  esac
  if [ "$STOP_SIG" = TERM ] && [ "$LAMINA_REQUEUE_ON_TERM" != 1 ]; then
    lamina_say "stopped by SIGTERM: checkpoint written, not requeued (the scheduler is ending this job; LAMINA_REQUEUE_ON_TERM=1 changes that)"
    lamina_write_env stopped
    return 3
  fi
  if [ "$RESTARTS" -ge "$LAMINA_MAX_REQUEUES" ]; then
    lamina_say "stopped early after $RESTARTS restarts = LAMINA_MAX_REQUEUES: not requeued; resubmit to continue"
    lamina_write_env stopped
    return 3
  fi
  local why="train.max_minutes budget"
  [ -n "$STOP_SIG" ] && why=SIG$STOP_SIG
  lamina_say "lamina stopped early (exit 3, $why): requeueing job $JOB_ID"
  lamina_write_env requeued
  if ! lamina_requeue; then
    lamina_say "requeue failed: resubmit the same job to continue from the checkpoint"
    lamina_write_env stopped
  fi
  return 3
}

# lamina_run: runs "${LAUNCH[@]}" "${cmd[@]}" in the background so that the
# batch shell can catch the warning signals: a trapped signal interrupts
# `wait`; SIGUSR1 is then forwarded to the launcher (mpirun and srun pass
# SIGUSR1 on to every rank; SIGTERM would make mpirun kill them), and the
# shell waits again for lamina to finish its step and checkpoint.
lamina_run() {
  local pid rc
  "${LAUNCH[@]}" "${cmd[@]}" &
  pid=$!
  trap 'lamina_forward USR1 '"$pid" USR1
  trap 'lamina_forward TERM '"$pid" TERM
  while :; do
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -gt 128 ] && kill -0 "$pid" 2>/dev/null && continue
    break
  done
  # A signal may interrupt `wait` just as the launcher exits: its own status
  # is still to be collected (127: it already was).
  if [ "$rc" -gt 128 ]; then
    local rc2=0
    wait "$pid" 2>/dev/null || rc2=$?
    [ "$rc2" != 127 ] && rc=$rc2
  fi
  return "$rc"
}

lamina_forward() {
  STOP_SIG=${STOP_SIG:-$1}
  lamina_say "SIG$1 received: forwarding SIGUSR1 to the launcher (pid $2); lamina stops after the current step with a checkpoint"
  kill -USR1 "$2" 2>/dev/null || true
}

# lamina_submit_options PROG ARGS...: the options shared by submit and
# submit-pbs (see their headers), checked and resolved into S_NODES, S_RPN
# (ranks per node), S_GPN (GPUs per node), S_TIME, S_NAME, S_SWEEP, S_DRY,
# S_EXTRA (scheduler options), S_DECK (absolute) and S_ARGS (the overrides).
lamina_submit_options() {
  local prog=$1 gpus='' v; shift
  S_NODES='' S_RPN='' S_TIME=$LAMINA_TIME S_NAME='' S_SWEEP=${LAMINA_SWEEP:-single} S_DRY=0 S_EXTRA=()
  while [ $# -gt 0 ]; do
    case $1 in
      -N | --nodes) S_NODES=${2:?}; shift 2 ;;
      -G | --gpus) gpus=${2:?}; shift 2 ;;
      -n | --ranks-per-node) S_RPN=${2:?}; shift 2 ;;
      -t | --time) S_TIME=${2:?}; shift 2 ;;
      -J | --job-name) S_NAME=${2:?}; shift 2 ;;
      -r | --runs) LAMINA_RUNS=${2:?}; shift 2 ;;
      -s | --sweep) S_SWEEP=${2:?}; shift 2 ;;
      -d | --dry-run) S_DRY=1; shift ;;
      -S | --sbatch | --qsub) S_EXTRA+=("${2:?}"); shift 2 ;;
      -h | --help) sed -n "/^#   jobscripts\/$prog /,/^# Prints/p" "$LAMINA_JOBSCRIPTS/$prog" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
      --) shift; break ;;
      -*) lamina_die "$prog: unknown option $1 (see --help)" ;;
      *) break ;;
    esac
  done
  [ $# -ge 1 ] || lamina_die "$prog: no deck given (see --help)"
  S_DECK=$1; shift
  [ -r "$S_DECK" ] || lamina_die "$prog: cannot read the deck $S_DECK"
  S_DECK=$(cd "$(dirname "$S_DECK")" && pwd)/$(basename "$S_DECK")
  S_ARGS=("$@")
  for v in "$@"; do lamina_is_override "$v" || lamina_die "$prog: '$v' is not a section.key=value override"; done
  for v in S_NODES gpus S_RPN; do
    [ -z "${!v}" ] || [[ ${!v} =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: ${!v}: expected a positive number of nodes, GPUs or ranks"
  done
  [[ $LAMINA_GPUS_PER_NODE =~ ^[0-9]+$ ]] || lamina_die "$prog: LAMINA_GPUS_PER_NODE=$LAMINA_GPUS_PER_NODE: expected a number"
  [[ $LAMINA_CPUS_PER_TASK =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: LAMINA_CPUS_PER_TASK=$LAMINA_CPUS_PER_TASK: expected a positive number"
  [[ $LAMINA_SIGNAL_SECS =~ ^[0-9]+$ ]] || lamina_die "$prog: LAMINA_SIGNAL_SECS=$LAMINA_SIGNAL_SECS: expected seconds"
  lamina_secs "$S_TIME" >/dev/null || lamina_die "$prog: time limit '$S_TIME': expected [D-]HH:MM:SS"
  case $S_SWEEP in single | strong | weak) ;; *) lamina_die "$prog: --sweep $S_SWEEP: expected single, strong or weak" ;; esac
  S_GPN=$LAMINA_GPUS_PER_NODE
  : "${S_RPN:=$LAMINA_RANKS_PER_NODE}"
  [[ $S_RPN =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: LAMINA_RANKS_PER_NODE=$S_RPN: expected a positive number"
  if [ -n "$gpus" ]; then
    [ -z "$S_NODES" ] || lamina_die "$prog: give --nodes or --gpus, not both"
    if [ "$S_GPN" -gt 0 ]; then # whole nodes, or one node with some of its GPUs
      if [ "$gpus" -le "$S_GPN" ]; then S_NODES=1 S_GPN=$gpus S_RPN=$gpus
      elif [ $((gpus % S_GPN)) = 0 ]; then S_NODES=$((gpus / S_GPN)) S_RPN=$S_GPN
      else lamina_die "$prog: --gpus $gpus is not a multiple of $S_GPN GPUs per node"; fi
    else # CPU nodes: --gpus counts ranks
      [ $((gpus % S_RPN)) = 0 ] || lamina_die "$prog: --gpus $gpus is not a multiple of $S_RPN ranks per node"
      S_NODES=$((gpus / S_RPN))
    fi
  fi
  : "${S_NODES:=1}"
  : "${S_NAME:=$(basename "${S_DECK%.*}")}"
  [ "$LAMINA_SIGNAL_SECS" -lt "$(lamina_secs "$S_TIME")" ] \
    || lamina_die "$prog: LAMINA_SIGNAL_SECS=$LAMINA_SIGNAL_SECS is not less than the time limit $S_TIME"
  if [ "$S_DRY" != 1 ]; then
    mkdir -p "$LAMINA_RUNS" || lamina_die "$prog: cannot create the run root $LAMINA_RUNS"
    LAMINA_RUNS=$(cd "$LAMINA_RUNS" && pwd)
  fi
}

# lamina_sweep KIND SUBMITTER ARGS...: the scaling sweeps (strong.sh, weak.sh,
# strong-pbs.sh, weak-pbs.sh): one job per GPU count through SUBMITTER (submit
# or submit-pbs), all run folders in one sweep folder, SWEEP=KIND in job.env.
#   strong: the global batch is fixed (-g, default the deck's), so the number
#           of micro-steps per rank falls as the data-parallel size dp grows;
#   weak:   the batch per data-parallel replica is fixed (-b, default the
#           deck's global batch / dp at the first count), global = b x dp,
#   with dp = GPUs / (tp x pp) (tp, pp from the deck or the overrides).
# Every count is checked before anything is submitted. Prints each job id on
# a line of its own and writes SWEEPDIR/jobs (gpus global_batch jobid
# run_folder).
lamina_sweep() {
  local kind=$1 sub=$2; shift 2
  local prog=$kind${sub#submit}.sh
  # Defaults from the scaling driver's environment (perf/scaling.py submit):
  # GPUS (comma- or space-separated), GLOBAL_BATCH, PER_RANK_BATCH (per
  # data-parallel rank), MICRO_BATCH, STEPS; options win over them.
  local counts=${GPUS:-$LAMINA_SWEEP_GPUS} gb=${GLOBAL_BATCH:-} bpr=${PER_RANK_BATCH:-} out='' name='' dry=0 pass=() a
  local envover=()
  [ -n "${MICRO_BATCH:-}" ] && envover+=(train.micro_batch="$MICRO_BATCH")
  [ -n "${STEPS:-}" ] && envover+=(train.steps="$STEPS")
  while [ $# -gt 0 ]; do
    case $1 in
      -l | --gpus) counts=${2:?}; shift 2 ;;
      -g | --global-batch) gb=${2:?}; shift 2 ;;
      -b | --batch-per-replica) bpr=${2:?}; shift 2 ;;
      -o | --out) out=${2:?}; shift 2 ;;
      -J | --job-name) name=${2:?}; shift 2 ;;
      -t | --time | -S | --sbatch | --qsub) pass+=("$1" "${2:?}"); shift 2 ;;
      -d | --dry-run) dry=1; pass+=(-d); shift ;;
      -h | --help) sed -n "/^#   jobscripts\/$prog /,/^# Prints/p" "$LAMINA_JOBSCRIPTS/$prog" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
      --) shift; break ;;
      -*) lamina_die "$prog: unknown option $1 (see --help)" ;;
      *) break ;;
    esac
  done
  counts=${counts//,/ }
  [ $# -ge 1 ] || lamina_die "$prog: no deck given (see --help)"
  local deck=$1; shift
  [ -r "$deck" ] || lamina_die "$prog: cannot read the deck $deck"
  for a in "$@"; do lamina_is_override "$a" || lamina_die "$prog: '$a' is not a section.key=value override"; done
  set -- "${envover[@]}" "$@" # the command line's overrides after the environment's
  local tp pp mb g0 n dp
  tp=$(lamina_deck_value "$deck" parallel tp 1 "$@")
  pp=$(lamina_deck_value "$deck" parallel pp 1 "$@")
  mb=$(lamina_deck_value "$deck" train micro_batch "" "$@")
  g0=$(lamina_deck_value "$deck" train global_batch "" "$@")
  for a in tp pp mb g0; do [[ ${!a} =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: the deck's ${a/g0/global_batch} is '${!a}'"; done
  [ -z "$gb" ] || [[ $gb =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: -g $gb: expected a positive number"
  [ -z "$bpr" ] || [[ $bpr =~ ^[1-9][0-9]*$ ]] || lamina_die "$prog: -b $bpr: expected a positive number"
  [ -n "$counts" ] || lamina_die "$prog: no GPU counts"
  : "${gb:=$g0}"
  local bad=() plan=()
  for n in $counts; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { bad+=("$n: not a number"); continue; }
    [ $((n % (tp * pp))) = 0 ] || { bad+=("$n GPUs: not a multiple of tp x pp = $((tp * pp))"); continue; }
    dp=$((n / (tp * pp)))
    if [ "$kind" = weak ]; then
      [ -n "$bpr" ] || { bpr=$((g0 / dp)); [ $((bpr * dp)) = "$g0" ] || bad+=("the deck's global_batch $g0 does not split over dp $dp: give -b"); }
      [ $((bpr % mb)) = 0 ] || bad+=("-b $bpr is not a multiple of micro_batch $mb")
      plan+=("$n $((bpr * dp))")
    else
      [ $((gb % (dp * mb))) = 0 ] || { bad+=("$n GPUs: global batch $gb is not a multiple of dp x micro_batch = $dp x $mb"); continue; }
      plan+=("$n $gb")
    fi
  done
  [ ${#bad[@]} = 0 ] || lamina_die "$prog: $(printf '%s; ' "${bad[@]}")nothing submitted"
  : "${name:=$(basename "${deck%.*}")}"
  [ -n "$out" ] || out=$LAMINA_RUNS/$name-$kind-$(date +%Y%m%d-%H%M%S)
  [ "$dry" = 1 ] || { mkdir -p "$out" && out=$(cd "$out" && pwd); } || lamina_die "$prog: cannot create $out"
  echo "$prog: $kind sweep over ${counts// /,} GPUs (tp $tp, pp $pp, micro_batch $mb${bpr:+, $bpr per replica}) into $out" >&2
  local p g id keep=()
  for a in "$@"; do [[ $a == train.global_batch=* ]] || keep+=("$a"); done
  for p in "${plan[@]}"; do
    read -r n g <<<"$p"
    id=$("$LAMINA_JOBSCRIPTS/$sub" -G "$n" -J "$(printf '%s-%s-g%04d' "$name" "$kind" "$n")" -r "$out" -s "$kind" \
         "${pass[@]}" "$deck" "${keep[@]}" train.global_batch="$g") || lamina_die "$prog: submitting $n GPUs failed (jobs so far in $out/jobs)"
    if [ "$dry" = 1 ]; then echo "$id"; continue; fi
    echo "$id"
    echo "  $n GPUs: job $id, global batch $g" >&2
    printf '%s %s %s %s\n' "$n" "$g" "$id" "$out/$(printf '%s-%s-g%04d' "$name" "$kind" "$n")-${id%%.*}" >>"$out/jobs"
  done
}
