#!/bin/bash
# Checkpoint reads are validated and restarts never silently start fresh:
# restart = auto skips a dangling/FIFO/missing `latest` and damaged newest
# files (with a warning naming each and why) and resumes bit-identically from
# the newest valid one; with none valid it stops (2) listing them and leaves
# the directory untouched. Bad attributes, non-finite or negative-second-
# moment values, a missing /config and float16 datasets are exit 2 naming the
# file and attribute or dataset. A file holding only what SPEC §5 requires
# (another tool's) loads as train.init.
source tests/lib.sh
plan 31
make_data 32
make_deck
# lamt NP ARGS: like lam with a 60 s limit (a FIFO used to block forever)
lamt() {
  local np=$1; shift
  rc=0
  timeout 60 mpirun --bind-to none -np "$np" "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?
}
# edit SRC DST OP [ARG]: a copy of checkpoint SRC changed by OP (h5py)
edit() { $PY - "$@" <<'EOP'
import h5py, numpy as np, shutil, sys
src, dst, op = sys.argv[1:4]
arg = sys.argv[4] if len(sys.argv) > 4 else None
shutil.copy(src, dst)
def nosum(f):  # drop every checksum attribute: a file another tool wrote
    def v(name, o):
        if isinstance(o, h5py.Dataset) and "checksum" in o.attrs: del o.attrs["checksum"]
    f.visititems(v)
with h5py.File(dst, "r+") as f:
    if op == "attr":       # attr NAME=VALUE (int64), NAME=fVALUE (float64)
        k, v = arg.split("=")
        g, k = (f["config"], k[7:]) if k.startswith("config/") else (f, k)
        g.attrs[k] = np.float64(v[1:]) if v.startswith("f") else np.int64(v)
    elif op == "value":    # value DATASET=X: element 0 set to X (checksums dropped)
        d, x = arg.split("=")
        nosum(f); a = f[d][...]; a.flat[0] = float(x); f[d][...] = a
    elif op == "noconfig":
        del f["config"]
    elif op == "f16":      # the dataset rewritten as float16 (checksum kept)
        a, s = f[arg][...], f[arg].attrs.get("checksum")
        del f[arg]; f.create_dataset(arg, data=a.astype(np.float16))
        if s is not None: f[arg].attrs["checksum"] = s
EOP
}
# flip SRC DST: a copy with one byte of a dataset's raw data flipped
flip() { $PY - "$@" <<'EOP'
import h5py, shutil, sys
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r") as f:
    off = f["model/model.layers.0.mlp.up_proj.weight"].id.get_offset()
with open(sys.argv[2], "r+b") as g:
    g.seek(off + 9); b = g.read(1); g.seek(off + 9); g.write(bytes([b[0] ^ 0x10]))
EOP
}
stamps() { (cd "$1" && md5sum step_*.h5 && stat -c "%n %Y.%y" step_*.h5); }
# fresh DIR: a checkpoint directory holding the reference run's step 2 and 4
fresh() { rm -rf "$1"; mkdir -p "$1"; cp "$T/full/step_00000002.h5" "$T/full/step_00000004.h5" "$1/"; }
# same DESC DIR FROM: the run exited 0, resumed (FROM > 1) or started
# fresh (FROM = 1), and its steps FROM..6 have the reference's losses bit for bit
same() {
  local resumed=0
  grep -q "resuming from" "$T/out" && resumed=1
  if [ "$rc" = 0 ] && [ "$(losses "$3" 6 "$T/full.jsonl")" = "$(losses "$3" 6 "$T/$2.jsonl")" ] \
    && [ -n "$(losses "$3" 6 "$T/$2.jsonl")" ] && [ "$resumed" = "$(($3 > 1))" ]; then ok "$1"
  else notok "$1" "exit $rc" "$(diff <(losses "$3" 6 "$T/full.jsonl") <(losses "$3" 6 "$T/$2.jsonl") | head -3)" "$(grep -i "warning\|error" "$T/out" | head -3)"; fi
}
# auto NP NAME ARGS: restart = auto in $T/NAME, 6 steps, nothing pruned
auto() {
  local np=$1 name=$2; shift 2
  rm -f "$T/$name.jsonl"
  lamt "$np" train "$T/tiny.in" train.steps=6 checkpoint.keep=8 checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl" "$@"
}

lam 1 train "$T/tiny.in" train.steps=6 checkpoint.every=2 checkpoint.keep=4 checkpoint.dir="$T/full" log.metrics="$T/full.jsonl"
[ "$rc" = 0 ] && ok "reference run: 6 steps, checkpoints at 2, 4, 6" || notok "reference run" "$(tail -5 "$T/out")"
G=$T/full/step_00000004.h5

# --- restart = auto ---
# 1. latest: a dangling symbolic link beside valid step 2 and 4
# (checkpoint.every = 2: a fresh start would rewrite step 2 and 4)
fresh "$T/dang"; ln -s step_00000099.h5 "$T/dang/latest"; before=$(stamps "$T/dang")
auto 1 dang checkpoint.every=2
grep -q "warning: .*latest: a symbolic link to step_00000099.h5, which is missing" "$T/out" \
  && grep -q "resuming from .*step_00000004.h5" "$T/out" && ok "dangling latest: warning naming it, resumes from step 4" \
  || notok "dangling latest" "exit $rc" "$(grep -i "warning\|error\|resum\|weights" "$T/out" | head -3)"
same "dangling latest: steps 5-6 bit-identical to the uninterrupted run" dang 5
[ "$before" = "$(stamps "$T/dang" | grep -v step_00000006)" ] && ok "dangling latest: step 2 and 4 untouched (md5, mtime)" \
  || notok "dangling latest: files changed" "$before" "$(stamps "$T/dang")"
# 2. latest missing, step files present (2 ranks)
fresh "$T/nolat"
auto 2 nolat
grep -q "resuming from .*step_00000004.h5" "$T/out" && ok "no latest, step files present: resumes from the newest (2 ranks)" \
  || notok "no latest" "exit $rc" "$(grep -i "warning\|error\|resum\|weights" "$T/out" | head -3)"
# 3. newest has a flipped byte (checksum): fall back to step 2
fresh "$T/flip"; flip "$G" "$T/flip/step_00000004.h5"; echo step_00000004.h5 > "$T/flip/latest"; before=$(stamps "$T/flip")
auto 1 flip
grep -q "warning: .*skipping .*step_00000004.h5: .*up_proj.weight: checksum mismatch" "$T/out" \
  && grep -q "resuming from .*step_00000002.h5" "$T/out" && ok "corrupt newest: warning naming it and why, resumes from step 2" \
  || notok "corrupt newest" "exit $rc" "$(grep -i "warning\|error\|resum" "$T/out" | head -3)"
same "fallback to step 2: steps 3-6 bit-identical to the uninterrupted run" flip 3
[ "$before" = "$(stamps "$T/flip" | grep -v step_00000006)" ] && ok "fallback: step 2 and the damaged step 4 left as they were (md5, mtime)" \
  || notok "fallback: files changed" "$before" "$(stamps "$T/flip")"
# 4. newest truncated, 2 ranks
fresh "$T/trunc"; head -c 30000 "$G" > "$T/trunc/step_00000004.h5"; echo step_00000004.h5 > "$T/trunc/latest"
auto 2 trunc
grep -q "skipping .*step_00000004.h5: .*truncated" "$T/out" && grep -q "resuming from .*step_00000002.h5" "$T/out" \
  && ok "truncated newest (2 ranks): skipped with a warning, resumes from step 2" \
  || notok "truncated newest" "exit $rc" "$(grep -i "warning\|error\|resum" "$T/out" | head -3)"
# 5. every candidate bad (2 ranks): exit 2 listing each, directory untouched
fresh "$T/bad"; flip "$T/full/step_00000002.h5" "$T/bad/step_00000002.h5"
head -c 30000 "$G" > "$T/bad/step_00000004.h5"; echo step_00000004.h5 > "$T/bad/latest"
before=$(stamps "$T/bad")
auto 2 bad
after=$(stamps "$T/bad")
[ "$rc" = 2 ] && grep -q "no valid checkpoint" "$T/out" && grep -q "step_00000004.h5: not an HDF5 file" "$T/out" \
  && grep -q "step_00000002.h5: .*checksum mismatch" "$T/out" && [ "$before" = "$after" ] \
  && ok "all candidates bad (2 ranks): exit 2 listing each and why, directory untouched" \
  || notok "all bad" "exit $rc" "$(grep -A3 "error" "$T/out" | head -5)"
# 6. restart = none: a fresh start is allowed beside step files
fresh "$T/none"
auto 1 none checkpoint.restart=none
same "restart = none beside step files: fresh start (losses of steps 1-6 = reference)" none 1
# 7. FIFO as latest: not opened; warning, resume from the newest step file
fresh "$T/fifo"; mkfifo "$T/fifo/latest"
auto 1 fifo
grep -q "warning: .*latest: not a regular file (a FIFO)" "$T/out" && grep -q "resuming from .*step_00000004.h5" "$T/out" \
  && ok "FIFO as latest: no hang, warning naming it, resumes from step 4" \
  || notok "FIFO as latest" "exit $rc" "$(grep -i "warning\|error\|resum" "$T/out" | head -3)"
# 8. a FIFO as the newest step file: skipped; alone (latest a FIFO too): exit 2
fresh "$T/fifo2"; mkfifo "$T/fifo2/step_00000008.h5"
auto 1 fifo2
grep -q "skipping .*step_00000008.h5: not a regular file (a FIFO)" "$T/out" && grep -q "resuming from .*step_00000004.h5" "$T/out" \
  && ok "FIFO as the newest step file: skipped, resumes from step 4" \
  || notok "FIFO step file" "exit $rc" "$(grep -i "warning\|error\|resum" "$T/out" | head -3)"
rm -rf "$T/fifo3"; mkdir "$T/fifo3"; mkfifo "$T/fifo3/latest"
auto 1 fifo3
expect_fail 2 "latest: not a regular file (a FIFO).*holds no step_" "FIFO latest, no step files: exit 2 (no fresh start)"

# --- explicit files: every attribute and dataset checked ---
# bad NP DESC PATTERN OP ARG: a copy of step 4 changed by OP, given as checkpoint.restart
bad() {
  local np=$1 d=$2 pat=$3; shift 3
  edit "$G" "$T/e.h5" "$@"
  lamt "$np" train "$T/tiny.in" train.steps=6 checkpoint.dir="$T/e" checkpoint.restart="$T/e.h5" log.metrics=
  expect_fail 2 "e.h5: $pat" "$d"
}
bad 1 "step = INT64_MAX: exit 2" "root attribute step = 9223372036854775807 must be in \[0, " attr step=9223372036854775807
bad 2 "consumed_samples = INT64_MAX (2 ranks): exit 2" "root attribute consumed_samples = 9223372036854775807 exceeds step" \
  attr consumed_samples=9223372036854775807
bad 1 "consumed_samples = -5: exit 2" "root attribute consumed_samples = -5 must be >= 0" attr consumed_samples=-5
bad 1 "consumed_samples < step: exit 2" "root attribute consumed_samples = 3 is below step = 4" attr consumed_samples=3
bad 1 "tokens_seen = -1: exit 2" "root attribute tokens_seen = -1 must be >= 0" attr tokens_seen=-1
bad 1 "step of a float type: exit 2" "root attribute step: must be an integer" attr step=f4
bad 1 "/config rope_theta = -1: exit 2" "/config attribute rope_theta = -1 must be finite and > 0" attr config/rope_theta=f-1
bad 1 "NaN weight in a file without checksums: exit 2" "/model/model.norm.weight: holds NaN values" value model/model.norm.weight=nan
bad 2 "Inf in a moment (2 ranks): exit 2" "/optim/exp_avg/model.layers.1.mlp.down_proj.weight: holds Inf values" \
  value optim/exp_avg/model.layers.1.mlp.down_proj.weight=inf
bad 1 "negative second moment: exit 2" "/optim/exp_avg_sq/model.embed_tokens.weight: holds negative values" \
  value optim/exp_avg_sq/model.embed_tokens.weight=-1
bad 1 "missing /config: exit 2" "/config: missing" noconfig
bad 1 "float16 dataset: exit 2" "/model/model.norm.weight: is float16, must be float32" f16 model/model.norm.weight
# 4 ranks, ZeRO-1: only rank 3's shard holds the NaN; every rank stops with 2, quickly
edit "$G" "$T/e.h5" value optim/exp_avg_sq/model.norm.weight=nan
$PY -c 'import h5py,sys; f=h5py.File(sys.argv[1],"r+"); d=f["optim/exp_avg_sq/model.norm.weight"]; a=d[...]; a[0]=1; a[-1]=float("nan"); d[...]=a' "$T/e.h5"
t0=$(date +%s)
lamt 4 train "$T/tiny.in" train.steps=6 train.micro_batch=1 parallel.zero=1 checkpoint.dir="$T/e" checkpoint.restart="$T/e.h5" log.metrics=
expect_fail 2 "exp_avg_sq/model.norm.weight: holds NaN" "4 ranks, ZeRO-1: NaN in one rank's moment shard: exit 2"
[ $(($(date +%s) - t0)) -lt 30 ] && ok "... within 30 s" || notok "4-rank NaN moment took $(($(date +%s) - t0)) s"
lamt 1 train "$T/tiny.in" train.init="$T/fifo3/latest" checkpoint.restart=none checkpoint.dir="$T/e"
expect_fail 2 "train.init: .*latest: not a regular file (a FIFO)" "FIFO as train.init: exit 2, no hang"

# --- a file holding only what SPEC §5 requires, from another tool ---
$PY - "$G" "$T/min.h5" <<'EOP'
import h5py, sys
with h5py.File(sys.argv[1], "r") as s, h5py.File(sys.argv[2], "w") as d:
    d.attrs["format"] = "lamina-ckpt"; d.attrs["version"] = 1
    d.attrs["step"] = 4; d.attrs["tokens_seen"] = int(s.attrs["tokens_seen"])
    c = d.create_group("config")
    for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len", "tie_embeddings",
              "norm_eps", "rope_theta"):
        c.attrs[k] = s["config"].attrs[k]
    for n, ds in s["model"].items(): d.create_dataset("model/" + n, data=ds[...])
EOP
lam 1 train "$T/tiny.in" train.steps=3 train.init="$T/min.h5" checkpoint.restart=none checkpoint.dir="$T/m1" log.metrics="$T/m1.jsonl"
r1=$rc
lam 1 train "$T/tiny.in" train.steps=3 train.init="$G" checkpoint.restart=none checkpoint.dir="$T/m2" log.metrics="$T/m2.jsonl"
if [ "$r1" = 0 ] && [ "$rc" = 0 ] && [ -n "$(losses 1 3 "$T/m1.jsonl")" ] && [ "$(losses 1 3 "$T/m1.jsonl")" = "$(losses 1 3 "$T/m2.jsonl")" ]; then
  ok "SPEC-minimal file as train.init: same losses as the full file"
else notok "SPEC-minimal train.init" "exit $r1/$rc" "$(tail -3 "$T/out")"; fi
lam 1 train "$T/tiny.in" train.steps=6 checkpoint.restart="$T/min.h5" checkpoint.dir="$T/m3"
expect_fail 2 "min.h5: root attribute consumed_samples: missing; a restart needs the data position" \
  "SPEC-minimal file as a restart: exit 2 (no data position), pointing to train.init"
finish
