#!/bin/bash
# The data path fails loudly: a token file that shrinks or is replaced under a
# running job is exit 1 on every rank within a step; prep never overwrites
# its own input nor destroys an existing output; FIFOs, directories and
# target-less token files are exit 2 without hanging; generate says when a
# prompt is longer than the model's window.
source tests/lib.sh
plan 18
make_data 32
make_deck
# lamt SECS NP ARGS...: lam with a short timeout (a hang shows as exit 124).
lamt() {
  local s=$1 np=$2; shift 2
  rc=0
  timeout "$s" mpirun --bind-to none -np "$np" "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?
}

# change_run NP MODE: train on a copy of the data ($T/d.h5) for many steps;
# once the metrics show 3 steps, MODE (trunc: truncate to 100000 bytes;
# rename: rename another copy over it) changes the file. $at: steps logged
# right after the change; $last: steps logged at the end; $rc: exit code.
change_run() {
  local np=$1 mode=$2 pid i
  cp "$T/data.h5" "$T/d.h5"
  : > "$T/m.jsonl"
  rc=0
  timeout 120 mpirun --bind-to none -np "$np" "$LAMINA" train "$T/tiny.in" data.train="$T/d.h5" train.steps=4000 \
    log.metrics="$T/m.jsonl" checkpoint.dir="$T/ck_$mode$np" checkpoint.restart=none >"$T/out" 2>&1 &
  pid=$!
  for i in $(seq 1200); do [ "$(wc -l < "$T/m.jsonl")" -ge 3 ] && break; sleep 0.05; done
  case $mode in
    trunc) truncate -s 100000 "$T/d.h5" ;;
    rename) cp "$T/data.h5" "$T/d2.h5" && mv "$T/d2.h5" "$T/d.h5" ;;
  esac
  at=$(wc -l < "$T/m.jsonl")
  wait "$pid" || rc=$?
  last=$(wc -l < "$T/m.jsonl")
}
# changed DESC PATTERN: the last change_run exited 1 naming d.h5 and /tokens
# and PATTERN, within one step of the change, and without MPI_Abort.
changed() {
  if [ "$rc" = 1 ] && grep -q "d.h5: /tokens: .*$2" "$T/out" && [ "$last" -le $((at + 1)) ] \
    && ! grep -q "MPI_ABORT" "$T/out"; then ok "$1 (changed after step $at, stopped after step $last)"
  else notok "$1" "exit $rc (want 1), changed after step $at, last step $last" "$(grep -m2 error "$T/out")"; fi
}

change_run 1 trunc
changed "token file truncated mid-run, 1 rank: exit 1 within a step" "changed size"
change_run 2 trunc
changed "token file truncated mid-run, 2 ranks: exit 1 on all ranks within a step" "changed size"
change_run 1 rename
changed "token file replaced by rename mid-run, 1 rank: exit 1" "replaced"
change_run 2 rename
changed "token file replaced by rename mid-run, 2 ranks: exit 1" "replaced"

# prep -o X X in three spellings: exit 2 naming the input, X unchanged
printf 'one doc\n%%\nanother doc\n' > "$T/x.txt"
sum=$(md5sum < "$T/x.txt")
unchanged() { [ "$(md5sum < "$1")" = "$2" ] && [ -z "$(ls "$T" | grep '\.tmp\.')" ]; }
lam 1 prep --seq-len 16 --doc-sep % -o "$T/x.txt" "$T/x.txt"
rc1=$rc; unchanged "$T/x.txt" "$sum" || rc1=changed
ln -s "$T/x.txt" "$T/link.txt"
lam 1 prep --seq-len 16 --doc-sep % -o "$T/link.txt" "$T/x.txt"
rc2=$rc; unchanged "$T/x.txt" "$sum" || rc2=changed
mkdir -p "$T/sub"
(cd "$T" && timeout 60 mpirun --bind-to none -np 2 "$LAMINA" prep --seq-len 16 --doc-sep % -o ./sub/../x.txt x.txt >"$T/out" 2>&1)
rc=$?; unchanged "$T/x.txt" "$sum" || rc=changed
if [ "$rc1/$rc2/$rc" = 2/2/2 ] && grep -q "x.txt is the output file" "$T/out"; then ok "prep -o X X (same path, symlink, ./sub/../X on 2 ranks): exit 2, X unchanged"
else notok "prep -o X X" "exits $rc1/$rc2/$rc (want 2/2/2)" "$(tail -2 "$T/out")"; fi

# an input that fails to read: exit 2, the existing output untouched
lam 1 prep --seq-len 16 --doc-sep % -o "$T/p.h5" "$T/x.txt"
psum=$(md5sum < "$T/p.h5")
lam 1 prep --seq-len 16 -o "$T/p.h5" "$T/corpus.txt" /proc/self/clear_refs
unchanged "$T/p.h5" "$psum" && expect_fail 2 "clear_refs" "prep input with a read error: exit 2, existing output untouched" \
  || notok "prep input with a read error: existing output untouched" "exit $rc" "$(tail -2 "$T/out")"
mkdir "$T/adir"
lam 1 prep --seq-len 16 -o "$T/p.h5" "$T/corpus.txt" "$T/adir"
unchanged "$T/p.h5" "$psum" && expect_fail 2 "adir is a directory" "directory among prep inputs: exit 2 naming it, output untouched" \
  || notok "directory among prep inputs: output untouched" "exit $rc" "$(tail -2 "$T/out")"
mkfifo "$T/fifo.txt"
lamt 20 2 prep --seq-len 16 -o "$T/p.h5" "$T/fifo.txt"
expect_fail 2 "fifo.txt is not a regular file" "FIFO as prep input, 2 ranks: exit 2 without hanging"
# a successful prep replaces the output whole (a new file renamed over it)
lam 1 prep --seq-len 16 -o "$T/p.h5" "$T/corpus.txt"
if [ "$rc" = 0 ] && [ "$(md5sum < "$T/p.h5")" != "$psum" ] && [ -z "$(ls "$T" | grep '\.tmp\.')" ]; then ok "prep over an existing output: replaced, no temporary left"
else notok "prep over an existing output" "exit $rc" "$(tail -2 "$T/out")"; fi

# a FIFO as the data file: exit 2 on 1 and 2 ranks, no hang
mkfifo "$T/fifo.h5"
lamt 20 1 train "$T/tiny.in" data.train="$T/fifo.h5" checkpoint.restart=none
expect_fail 2 "fifo.h5: not a regular file" "FIFO as data.train, 1 rank: exit 2 without hanging"
lamt 20 2 train "$T/tiny.in" data.train="$T/fifo.h5" checkpoint.restart=none
expect_fail 2 "fifo.h5: not a regular file" "FIFO as data.train, 2 ranks: exit 2 without hanging"
lamt 60 1 train "$T/tiny.in" data.train="$T/adir" checkpoint.restart=none
expect_fail 2 "adir: not a regular file" "directory as data.train: exit 2"

# every sample shorter than 2 tokens: nothing to learn, exit 2 at open
$PY - "$T/short.h5" <<'EOP'
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["format"] = "lamina-tokens"; f.attrs["version"] = 1; f.attrs["vocab_size"] = 258
    f["tokens"] = np.arange(12, dtype=np.uint32)
    f["samples/offsets"] = np.array([0, 1, 2, 2, 3] + list(range(4, 13)), dtype=np.int64)
EOP
lamt 60 2 train "$T/tiny.in" data.train="$T/short.h5" checkpoint.restart=none
expect_fail 2 "short.h5: .*no sample has a target" "token file of only 0/1-token samples, 2 ranks: exit 2 naming it"
# mixed with real samples they are padding: the run goes on and says how many
$PY - "$T/mixed.h5" <<'EOP'
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["format"] = "lamina-tokens"; f.attrs["version"] = 1; f.attrs["vocab_size"] = 258
    f["tokens"] = np.arange(40, dtype=np.uint32)
    f["samples/offsets"] = np.array([0, 1, 2, 10, 20, 30, 40], dtype=np.int64)
EOP
lamt 60 1 train "$T/tiny.in" data.train="$T/mixed.h5" train.steps=2 checkpoint.dir="$T/ckm"
[ "$rc" = 0 ] && grep -q "2 of 6 samples are shorter than 2 tokens" "$T/out" && ok "some 0/1-token samples: run goes on, the log counts them" \
  || notok "some short samples" "exit $rc" "$(tail -2 "$T/out")"

# a bucket table or category index that does not fit the file: exit 2 on
# every rank naming the file and the dataset, before step 1
$PY - "$T/data.h5" "$T/badb.h5" "$T/badc.h5" "$T/badv.h5" <<'EOP'
import h5py, numpy as np, shutil, sys
src, badb, badc, badv = sys.argv[1:]
for dst in (badb, badc, badv):
    shutil.copy(src, dst)
with h5py.File(src, "r") as f:
    n = len(f["samples/offsets"]) - 1
def put(f, name, value):  # prep's file already has these datasets
    if name in f: del f[name]
    f[name] = value
with h5py.File(badb, "a") as f:  # bucket 1 ends before bucket 0
    put(f, "buckets/offsets", np.array([0, n // 2, n // 4, n], dtype=np.int64))
with h5py.File(badc, "a") as f:  # category 2 of a file with 2 names
    f.attrs["categories"] = np.array(["a", "b"], dtype=h5py.string_dtype())
    c = np.zeros(n, dtype=np.int32); c[n // 3] = 2
    put(f, "samples/category", c)
with h5py.File(badv, "a") as f:  # a held-out file whose buckets end short
    put(f, "buckets/offsets", np.array([0, n - 1], dtype=np.int64))
EOP
lamt 60 2 train "$T/tiny.in" data.train="$T/badb.h5" checkpoint.restart=none
expect_fail 2 "badb.h5: /buckets/offsets" "decreasing bucket offsets, 2 ranks: exit 2 naming the file and dataset"
lamt 60 2 train "$T/tiny.in" data.train="$T/badc.h5" checkpoint.restart=none
expect_fail 2 "badc.h5: /samples/category" "category index past the names, 2 ranks: exit 2 naming the file and dataset"
lamt 60 2 train "$T/tiny.in" data.valid="$T/badv.h5" train.eval_every=1 checkpoint.restart=none
expect_fail 2 "data.valid: .*badv.h5: /buckets/offsets" "held-out file with bad bucket offsets: exit 2 naming the key, file and dataset"

# generate with a prompt longer than the window (seq_len 32): a warning
lamt 60 1 train "$T/tiny.in" train.steps=2 checkpoint.dir="$T/g"
lamt 60 1 generate "$T/tiny.in" checkpoint.dir="$T/g" --prompt "$(printf 'abcdefghij%.0s' 1 2 3 4 5)" --tokens 3
if [ "$rc" = 0 ] && grep -q "warning: generate: the prompt is 51 tokens with BOS, longer than train.seq_len = 32: the first 19 tokens" "$T/out"
then ok "generate: a too-long prompt warns how many tokens are dropped and from where"
else notok "generate with a too-long prompt" "exit $rc" "$(tail -3 "$T/out")"; fi
finish
