# tests/lib.sh — TAP helpers for the integration tests (sourced by tests/t/*.t).
# Each test runs from the repo root with a fresh temporary folder $T.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAMINA=$PWD/build/lamina
PY=/usr/bin/python3
T=$(mktemp -d /tmp/lamina-test.XXXXXX)
# Watchdog: a test that runs longer than LAMINA_TEST_TIMEOUT seconds (default
# 900) is killed with everything it started (mpirun, ranks), so a deadlock
# fails that test instead of hanging `make check`. Its output goes nowhere:
# prove waits for every holder of the test's stdout.
_kill_tree() { local c; for c in $(pgrep -P "$1"); do [ "$c" = "$BASHPID" ] || _kill_tree "$c"; done; [ "$1" = "$BASHPID" ] || kill -KILL "$1" 2>/dev/null; }
_watchdog() { sleep "$1" & wait $!; _kill_tree "$2"; }
_watchdog "${LAMINA_TEST_TIMEOUT:-900}" $$ >/dev/null 2>&1 &
_wd=$!
disown $_wd 2>/dev/null  # a bare `wait` in a test must not wait for the watchdog
# `make check` runs two tests at a time (prove -j2). A test whose promises
# are about time (a deadline, a budget, a signal's moment) sets EXCLUSIVE=1
# before sourcing this file and runs alone: it holds the check lock
# exclusively, every other test (and unit wrapper) holds it shared.
exec 9>>"${LAMINA_CHECK_LOCK:-$PWD/build/.check.lock}"
if [ "${EXCLUSIVE:-0}" = 1 ]; then flock -x 9; else flock -s 9; fi
# LAMINA_CHECK_LONG=1 (make check-long): the full matrices of the tests
# that run a sample of them in `make check`.
LONG=${LAMINA_CHECK_LONG:-0}
trap 'pkill -P $_wd 2>/dev/null; kill $_wd 2>/dev/null; rm -rf "$T"' EXIT
_n=0
_fail=0
plan() { echo "1..$1"; }
ok() { _n=$((_n + 1)); echo "ok $_n - $1"; }
notok() { _n=$((_n + 1)); _fail=1; echo "not ok $_n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
check() { # check DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@" >"$T/.out" 2>&1; then ok "$d"; else notok "$d" "$(tail -5 "$T/.out")"; fi
}
finish() { exit $_fail; }

# lam NP ARGS...: run lamina under mpirun; output in $T/out, exit code in $rc.
lam() {
  local np=$1; shift
  rc=0
  timeout 300 mpirun --bind-to none -np "$np" "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?
}
# expect_fail CODE PATTERN DESCRIPTION: last lam exited CODE and printed PATTERN.
expect_fail() {
  if [ "$rc" = "$1" ] && grep -q -- "$2" "$T/out"; then ok "$3"
  else notok "$3" "exit $rc (want $1), output:" "$(tail -4 "$T/out")"; fi
}

# A small corpus (fortunes) prepped into $T/data.h5 with seq-len $1 (default 32).
make_data() {
  local sl=${1:-32}
  sed -e 's/\x1b\[[0-9;]*m//g' /usr/share/games/fortunes/{wisdom,tao,linux} > "$T/corpus.txt"
  mpirun -np 1 "$LAMINA" prep --seq-len "$sl" --doc-sep % -o "$T/data.h5" "$T/corpus.txt" >/dev/null
}

# A tiny deck writing into $T; extra overrides go on the command line.
make_deck() {
  cat > "$T/tiny.in" <<EOD
[model]
preset = tiny
[train]
steps = 6
seq_len = 32
micro_batch = 2
global_batch = 4
lr = 3e-3
warmup_steps = 2
[data]
train = $T/data.h5
[checkpoint]
dir = $T/ckpt
[log]
metrics = $T/metrics.jsonl
EOD
}

# losses STEP_FROM STEP_TO FILE: the loss fields of those steps, one per line.
losses() { $PY -c 'import json,sys
a,b=int(sys.argv[1]),int(sys.argv[2])
for l in open(sys.argv[3]):
    r=json.loads(l)
    if a<=r["step"]<=b: print(r["step"], repr(r["loss"]), repr(r["grad_norm"]))' "$@"; }

# close A B FROM TO TOL: the loss and grad_norm of steps FROM..TO agree within
# relative TOL between metrics files A and B (same steps present in both);
# prints the worst relative difference.
close() { $PY - "$@" <<'PYEOF'
import json, sys
a, b, lo, hi, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def rd(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if lo <= r["step"] <= hi}
A, B = rd(a), rd(b)
if sorted(A) != list(range(lo, hi + 1)) or sorted(B) != sorted(A):
    print(f"steps differ: {sorted(A)} vs {sorted(B)}"); sys.exit(1)
w = max(abs(A[s][k] - B[s][k]) / max(abs(B[s][k]), 1e-30) for s in A for k in ("loss", "grad_norm"))
print(f"worst rel diff {w:.2e} (tol {tol:g})")
sys.exit(0 if w <= tol else 1)
PYEOF
}

# Named runs of the tiny deck (the layout tests): `base` is an array of
# overrides every run of the script shares.
# run NAME NP OVERRIDES...: train into $T/NAME (checkpoints), $T/NAME.jsonl
# (metrics) and $T/NAME.log (output).
run() {
  local name=$1 np=$2; shift 2
  lam "$np" train "$T/tiny.in" "${base[@]}" checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl" "$@"
  cp "$T/out" "$T/$name.log"
}
# agree DESCRIPTION A B FROM TO: the losses and grad norms of run A track
# run B within $TOL; the worst relative difference goes into the TAP output.
agree() {
  local d=$1 a=$2 b=$3 lo=$4 hi=$5 out
  if out=$(close "$T/$a.jsonl" "$T/$b.jsonl" "$lo" "$hi" $TOL 2>&1); then ok "$d" && echo "#   $out"
  else notok "$d" "$out" "$(tail -3 "$T/$a.log")"; fi
}
# ran DESCRIPTION NAME PATTERN: run NAME exited 0 and its log shows PATTERN.
ran() {
  if [ "$rc" = 0 ] && grep -q -- "$3" "$T/$2.log"; then ok "$1"; else notok "$1" "exit $rc" "$(tail -4 "$T/$2.log")"; fi
}
# resume_same DESCRIPTION NAME NP OVERRIDES...: run NAME (8 steps,
# checkpoints at 4 and 8) is rolled back to its step-4 checkpoint and run
# again on the same layout: its losses must be bit-identical. The full run's
# step-8 checkpoint is kept as $T/NAME-full8.h5.
resume_same() {
  local d=$1 name=$2 np=$3; shift 3
  cp "$T/$name.jsonl" "$T/$name-full.jsonl"
  cp "$T/$name/step_00000008.h5" "$T/$name-full8.h5"
  rm -f "$T/$name/step_00000008.h5"; echo step_00000004.h5 > "$T/$name/latest"
  $PY -c 'import json,sys; L=[l for l in open(sys.argv[1]) if json.loads(l)["step"]<=4]; open(sys.argv[1],"w").writelines(L)' "$T/$name.jsonl"
  lam "$np" train "$T/tiny.in" "${base[@]}" checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl" "$@"
  if [ "$rc" = 0 ] && [ "$(losses 1 8 "$T/$name-full.jsonl")" = "$(losses 1 8 "$T/$name.jsonl")" ]; then ok "$d"
  else notok "$d" "$(diff <(losses 1 8 "$T/$name-full.jsonl") <(losses 1 8 "$T/$name.jsonl") | head -4)" "$(tail -3 "$T/out")"; fi
}
