#!/bin/bash
# SIGUSR1 sent to the lamina ranks (not mpirun) within moments of their
# start, before or during MPI_Init and setup: the run stops with exit 3 (or
# completes), never dies of the signal (138). lamina issue 14, item 9.
EXCLUSIVE=1  # timing promises: runs alone under make check's -j2
. tests/lib.sh
plan 4
make_data 32
make_deck

# catching PID: the process has a handler on SIGUSR1 (bit 9 of SigCgt in
# /proc/PID/status). Until lamina's first code runs (its constructor, after
# the shared libraries' own start-up: cuBLASLt's alone takes about 0.35 s on
# this VM) no program can catch a signal, so the test starts the clock there.
catching() {
  local m
  m=$(awk '/^SigCgt:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$m" ] && (( (16#$m >> 9) & 1 ))
}

# launch NP DELAY_MS: start a 2-step run, wait until every lamina rank exists
# and catches SIGUSR1, DELAY_MS more, then SIGUSR1 to each rank; the exit
# code in $rc, the output in $T/out.
launch() {
  local np=$1 d=$2 ranks="" i pid
  rm -rf "$T/ckpt"
  timeout 120 mpirun --bind-to none -np "$np" "$LAMINA" train "$T/tiny.in" train.steps=2 >"$T/out" 2>&1 &
  local mp=$!
  for i in $(seq 1 2000); do
    ranks=$(pgrep -x lamina -P "$(pgrep -P $mp | tr '\n' ',')$mp" 2>/dev/null | tr '\n' ' ')
    if [ "$(echo $ranks | wc -w)" -ge "$np" ]; then
      local all=1
      for pid in $ranks; do catching "$pid" || all=0; done
      [ $all = 1 ] && break
    fi
    sleep 0.002
  done
  sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"
  for pid in $ranks; do kill -USR1 "$pid" 2>/dev/null; done
  rc=0; wait $mp || rc=$?
}

bad=""
for i in $(seq 1 8); do
  d=$(( (RANDOM % 200) ))
  np=$(( i % 2 + 1 ))
  launch "$np" "$d"
  case $rc in
    0|3) ;;
    *) bad="$bad np=$np delay=${d}ms exit=$rc;" ;;
  esac
  [ "$rc" = 3 ] && stopped=$((${stopped:-0} + 1))
done
if [ -z "$bad" ]; then ok "8 launches with SIGUSR1 at 0-200 ms: each exits 3 or completes (${stopped:-0} stopped)"
else notok "early SIGUSR1 must never kill a rank" "$bad" "$(tail -3 "$T/out")"; fi

# A stop during start-up: exit 3 on every rank, nothing written, and the
# next run with checkpoint.restart = auto just starts.
launch 2 0
if [ "$rc" = 3 ] && grep -q "stopped before step 1" "$T/out" && [ ! -e "$T/ckpt/latest" ]; then
  ok "a stop before step 1 exits 3 and writes no checkpoint"
else notok "a stop before step 1 exits 3 and writes no checkpoint" "exit $rc" "$(tail -3 "$T/out")"; fi
lam 2 train "$T/tiny.in" train.steps=2
if [ "$rc" = 0 ] && grep -q "step      2/2" "$T/out"; then ok "the next run (restart = auto) starts from scratch and completes"
else notok "the next run starts" "exit $rc" "$(tail -3 "$T/out")"; fi

# Other commands keep the default action of SIGTERM (prep is killed, not
# left running deaf to it).
truncate -s 4G "$T/zeros.txt" # sparse: takes no disk, reads for minutes
"$LAMINA" prep --seq-len 32 -o "$T/x.h5" "$T/zeros.txt" >/dev/null 2>&1 &
p=$!
sleep 1
kill -TERM $p
rc=0; wait $p || rc=$?
if [ "$rc" = 143 ]; then ok "lamina prep still dies of SIGTERM (exit 143)"; else notok "prep and SIGTERM" "exit $rc"; fi
finish
