# tests/slurm_lib.sh — a throw-away one-node Slurm (22.05) with its own munged,
# everything (key, sockets, state, spool, logs, pid files) under one folder.
# Sourced by tests/t/40-slurm.t; usable by hand too:
#   source tests/slurm_lib.sh; slurm_start /tmp/x && sbatch ...; slurm_stop
#
# slurm_start DIR  starts munged, slurmctld and slurmd; exports SLURM_CONF
#                  (every client and every daemon we start carries it, which
#                  is how slurm_stop finds stragglers); waits for the node to
#                  be idle. Returns 1 with the reason in $SLURM_WHY.
# slurm_stop       cancels the jobs, stops the daemons by their pid files,
#                  then kills any process still carrying our SLURM_CONF.
# slurm_leftovers CONF  pids of such processes (none after slurm_stop).
# slurm_logs N     the last N lines of each daemon log, as TAP diagnostics.
#
# The daemons start with fd 9 closed: it holds make check's test lock
# (tests/lib.sh), which a daemon outliving the test must not keep.
# Daemons run as root with SlurmUser=root (the test runs as root); munged runs
# as the munge user when we are root, as ourselves otherwise. Ports are picked
# free at start so two copies can run side by side.

SLURM_DIR=
SLURM_WHY=

# A TCP port nobody listens on now (the kernel's pick for port 0).
_slurm_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# _slurm_wait SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds.
_slurm_wait() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.2
  done
}

_slurm_node_idle() { sinfo -h -N -n localhost -o '%t' 2>/dev/null | grep -qx 'idle'; }

slurm_start() {
  local d=$1 mu=root
  SLURM_DIR=$d
  mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log" "$d/tmp"
  # munged refuses key and socket folders others can write, and its user must
  # reach the socket folder: 0755 on the chain it lives in.
  chmod 0755 "$d" "$d/munge"
  local key=$d/munge/munge.key
  if command -v mungekey >/dev/null; then mungekey -c -b 1024 -k "$key" 2>/dev/null
  elif command -v create-munge-key >/dev/null; then create-munge-key -f -r >/dev/null 2>&1 && cp /etc/munge/munge.key "$key"
  fi
  [ -s "$key" ] || dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
  chmod 0600 "$key"
  if [ "$(id -u)" = 0 ] && id munge >/dev/null 2>&1; then
    mu=munge
    chown -R munge: "$d/munge"
  fi
  local run=(); [ "$mu" = munge ] && run=(runuser -u munge --)
  "${run[@]}" munged --socket="$d/munge/munge.socket" --key-file="$key" \
    --log-file="$d/munge/munged.log" --pid-file="$d/munge/munged.pid" \
    --seed-file="$d/munge/munged.seed" >"$d/log/munged.out" 2>&1 9>&- \
    || { SLURM_WHY="munged did not start: $(tail -3 "$d/log/munged.out" "$d/munge/munged.log" 2>/dev/null)"; return 1; }
  _slurm_wait 10 munge -S "$d/munge/munge.socket" -n \
    || { SLURM_WHY="munged socket not answering"; return 1; }

  local cport dport cpus
  cport=$(_slurm_free_port); dport=$(_slurm_free_port)
  while [ "$dport" = "$cport" ]; do dport=$(_slurm_free_port); done
  cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it obeys OMP_NUM_THREADS
  cat >"$d/slurm.conf" <<EOF
# one-node test cluster (tests/slurm_lib.sh)
ClusterName=laminatest
SlurmctldHost=localhost
SlurmctldPort=$cport
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# schedule at once after a submission or a release (default: at most every 2 s)
SchedulerParameters=sched_min_interval=100000
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
# batch jobs may be requeued (scontrol requeue; the script also asks --requeue)
JobRequeue=1
MinJobAge=600
KillWait=5
InactiveLimit=0
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/slurmd-%n
# srun --mpi=pmix puts its per-step folders here (default /tmp, where two
# test clusters would collide on equal job ids)
TmpFS=$d/tmp
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  export SLURM_CONF=$d/slurm.conf
  slurmctld -f "$SLURM_CONF" >"$d/log/slurmctld.out" 2>&1 9>&- \
    || { SLURM_WHY="slurmctld did not start: $(tail -3 "$d/log/slurmctld.out")"; return 1; }
  _slurm_wait 20 scontrol ping || { SLURM_WHY="slurmctld not answering"; return 1; }
  slurmd -f "$SLURM_CONF" -N localhost >"$d/log/slurmd.out" 2>&1 9>&- \
    || { SLURM_WHY="slurmd did not start: $(tail -3 "$d/log/slurmd.out")"; return 1; }
  _slurm_wait 30 _slurm_node_idle \
    || { SLURM_WHY="node not idle: $(sinfo -N 2>&1 | tail -2)"; return 1; }
}

# _slurm_kill PIDFILE: TERM the daemon, wait up to 10 s, then KILL it.
_slurm_kill() {
  local p
  [ -s "$1" ] || return 0
  p=$(cat "$1")
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
}

# slurm_leftovers CONF: processes whose environment holds SLURM_CONF=CONF (the
# daemons, and the jobs, which inherit it from the submitting shell) outside
# our own session (the test shell and its children): what we started that
# still runs.
slurm_leftovers() {
  local f p me
  me=$(ps -o sid= -p $$ | tr -d ' ')
  for f in /proc/[0-9]*/environ; do
    p=${f#/proc/}; p=${p%/environ}
    tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF "SLURM_CONF=$1" || continue
    [ "$(ps -o sid= -p "$p" 2>/dev/null | tr -d ' ')" = "$me" ] || echo "$p"
  done
}

slurm_stop() {
  [ -n "$SLURM_DIR" ] || return 0
  if [ -s "$SLURM_DIR/slurmctld.pid" ]; then
    scancel --full --quiet --state=RUNNING 2>/dev/null
    scancel --quiet 2>/dev/null
    _slurm_wait 15 sh -c '[ -z "$(squeue -h -t R,CG 2>/dev/null)" ]'
  fi
  _slurm_kill "$SLURM_DIR/slurmd.pid"
  _slurm_kill "$SLURM_DIR/slurmctld.pid"
  _slurm_kill "$SLURM_DIR/munge/munged.pid"
  local p
  for p in $(slurm_leftovers "$SLURM_DIR/slurm.conf"); do kill -KILL "$p" 2>/dev/null; done
  SLURM_DIR=
}

slurm_logs() {
  local n=${1:-20} f
  for f in "$SLURM_DIR"/log/slurmctld.log "$SLURM_DIR"/log/slurmd.log "$SLURM_DIR"/munge/munged.log; do
    [ -e "$f" ] || continue
    echo "# --- $f"
    tail -n "$n" "$f" | sed 's/^/#   /'
  done
}
