#!/bin/bash
# The tokenizer recorded in data and checkpoints (SPEC §4, §5): a token file
# carrying /tokenizer/model (fake model bytes: lamina treats them as opaque)
# trains, and every checkpoint holds the identical bytes with bos_id and
# eos_id; two data files with different tokenizers, or a deck vocabulary
# smaller than the tokenizer's, stop with exit 2 naming both; a restart and
# a train.init run on untagged data keep the checkpoint's tokenizer; a
# malformed record is refused naming the file and dataset.
source tests/lib.sh
plan 9
make_data 32
make_deck
# tag SRC DST PAYLOAD-SEED LEN BOS EOS: DST = SRC plus /tokenizer/model
tag() {
  $PY - "$@" <<'PYEOF'
import sys, shutil, h5py, numpy as np
src, dst, seed, n, bos, eos = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
shutil.copy(src, dst)
with h5py.File(dst, "a") as f:
    d = f.create_dataset("tokenizer/model", data=np.random.default_rng(seed).integers(0, 256, n).astype(np.uint8))
    d.attrs["bos_id"] = np.int64(bos)
    d.attrs["eos_id"] = np.int64(eos)
PYEOF
}
# same_tok CKPT DATA: the checkpoint's /tokenizer/model bytes and ids equal the data file's
same_tok() {
  $PY - "$@" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["tokenizer/model"], h5py.File(sys.argv[2], "r")["tokenizer/model"]
ok = a.dtype == np.uint8 and a.shape == b.shape and np.array_equal(a[()], b[()])
ok = ok and all(int(a.attrs[k]) == int(b.attrs[k]) for k in ("bos_id", "eos_id"))
ok = ok and int(a.attrs["vocab_size"]) == 258
print("same" if ok else f"differ: {a.shape} vs {b.shape}, attrs {dict(a.attrs)} vs {dict(b.attrs)}")
sys.exit(0 if ok else 1)
PYEOF
}
tag "$T/data.h5" "$T/a.h5" 1 5000 256 257
tag "$T/data.h5" "$T/a2.h5" 1 5000 256 257
tag "$T/data.h5" "$T/b.h5" 2 5000 256 257

lam 2 train "$T/tiny.in" train.steps=2 data.train="$T/a.h5,$T/a2.h5,$T/data.h5" checkpoint.dir="$T/ck"
if [ "$rc" = 0 ] && grep -q "tokenizer: recorded from $T/a.h5 (5000 bytes, bos_id 256, eos_id 257" "$T/out"; then ok "trains on tagged data (two identical tokenizers, one untagged file)"
else notok "trains on tagged data" "exit $rc" "$(tail -3 "$T/out")"; fi
check "the checkpoint holds the identical bytes, bos_id, eos_id (and vocab_size)" same_tok "$T/ck/step_00000002.h5" "$T/a.h5"

lam 2 train "$T/tiny.in" train.steps=2 data.train="$T/a.h5,$T/b.h5" checkpoint.dir="$T/ckx"
expect_fail 2 "$T/a.h5 and $T/b.h5 record different tokenizers" "different tokenizers in data.train: exit 2 naming both files"
lam 1 train "$T/tiny.in" train.steps=2 data.train="$T/a.h5" model.vocab_size=200 checkpoint.dir="$T/ckv"
expect_fail 2 "model.vocab_size = 200 is smaller than the vocabulary of the tokenizer recorded in $T/a.h5 (vocab_size 258)" \
  "deck vocabulary below the tokenizer's: exit 2 naming both"

# untagged data: a restart and a train.init run keep the checkpoint's tokenizer
lam 1 train "$T/tiny.in" train.steps=4 data.train="$T/data.h5" checkpoint.dir="$T/ck"
if [ "$rc" = 0 ] && grep -q "resuming from" "$T/out"; then check "restart on untagged data keeps the tokenizer" same_tok "$T/ck/step_00000004.h5" "$T/a.h5"
else notok "restart on untagged data" "exit $rc" "$(tail -3 "$T/out")"; fi
lam 1 train "$T/tiny.in" train.steps=1 data.train="$T/data.h5" train.init="$T/ck/step_00000002.h5" checkpoint.dir="$T/ckinit"
if [ "$rc" = 0 ]; then check "train.init on untagged data keeps the tokenizer" same_tok "$T/ckinit/step_00000001.h5" "$T/a.h5"
else notok "train.init on untagged data" "exit $rc" "$(tail -3 "$T/out")"; fi
lam 1 train "$T/tiny.in" train.steps=1 data.train="$T/data.h5" checkpoint.dir="$T/plain"
if [ "$rc" = 0 ] && $PY -c 'import h5py,sys; sys.exit("tokenizer" in h5py.File(sys.argv[1], "r"))' "$T/plain/step_00000001.h5"; then
  ok "no tokenizer anywhere: none recorded"
else notok "no tokenizer anywhere: none recorded" "exit $rc"; fi

# malformed records: refused naming the file and dataset
tag "$T/data.h5" "$T/badid.h5" 3 100 258 1
lam 1 train "$T/tiny.in" train.steps=1 data.train="$T/badid.h5" checkpoint.dir="$T/ckb"
expect_fail 2 "$T/badid.h5: token file dataset /tokenizer/model: bos_id 258 / eos_id 1 must be below" "bos_id outside the vocabulary: exit 2 naming file and dataset"
$PY -c 'import h5py,sys,shutil; shutil.copy(sys.argv[1], sys.argv[2]); f=h5py.File(sys.argv[2],"a"); f.create_dataset("tokenizer/model", data=[1.5,2.5])' "$T/data.h5" "$T/badtype.h5"
lam 1 train "$T/tiny.in" train.steps=1 data.train="$T/badtype.h5" checkpoint.dir="$T/ckb"
expect_fail 2 "$T/badtype.h5: token file dataset /tokenizer/model: must be uint8" "a float tokenizer dataset: exit 2 naming file and dataset"
finish
