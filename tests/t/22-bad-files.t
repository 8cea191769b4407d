#!/bin/bash
# Truncated, corrupted or mismatched data and checkpoint files: exit 2 naming
# the file (and dataset), and nothing already saved is lost.
source tests/lib.sh
plan 10
make_data 32
make_deck
lam 1 train "$T/tiny.in" train.steps=2
[ "$rc" = 0 ] && ok "baseline run" || notok "baseline run" "$(tail -5 "$T/out")"
CK=$T/ckpt/step_00000002.h5
cp "$CK" "$T/good.h5"

# data files
head -c 3000 "$T/data.h5" > "$T/trunc.h5"
lam 1 train "$T/tiny.in" data.train="$T/trunc.h5" checkpoint.restart=none
expect_fail 2 "trunc.h5" "truncated token file: exit 2 naming it"
echo "not an hdf5 file" > "$T/garbage.h5"
lam 1 train "$T/tiny.in" data.train="$T/garbage.h5" checkpoint.restart=none
expect_fail 2 "garbage.h5" "garbage token file: exit 2 naming it"
lam 1 train "$T/tiny.in" data.train="$T/absent.h5" checkpoint.restart=none
expect_fail 2 "absent.h5" "missing token file: exit 2 naming it"
lam 1 train "$T/tiny.in" model.vocab_size=200 model.preset=tiny checkpoint.restart=none
expect_fail 2 "vocab_size" "token file vocab larger than the model's: exit 2"

# checkpoints: flip bytes inside one dataset's raw data
$PY - "$T/good.h5" "$T/flip.h5" <<'EOP'
import h5py, shutil, sys
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r") as f:
    off = f["model/model.norm.weight"].id.get_offset()
with open(sys.argv[2], "r+b") as g:
    g.seek(off + 5); b = g.read(1); g.seek(off + 5); g.write(bytes([b[0] ^ 0x40]))
EOP
lam 1 train "$T/tiny.in" train.steps=4 checkpoint.restart="$T/flip.h5"
expect_fail 2 "model.norm.weight" "checkpoint with a flipped byte: exit 2 naming the dataset"
head -c 20000 "$T/good.h5" > "$T/ctrunc.h5"
lam 1 train "$T/tiny.in" train.steps=4 checkpoint.restart="$T/ctrunc.h5"
expect_fail 2 "ctrunc.h5" "truncated checkpoint: exit 2 naming it"
lam 1 train "$T/tiny.in" train.steps=4 model.preset= model.dim=32 model.n_layers=2 model.n_heads=4 \
  model.n_kv_heads=2 model.ffn_dim=64 model.vocab_size=258 checkpoint.restart="$T/good.h5"
expect_fail 2 "model.dim" "checkpoint of another shape: exit 2 naming the key"
lam 1 train "$T/tiny.in" train.init="$T/nothing.h5" checkpoint.restart=none
expect_fail 2 "nothing.h5" "missing train.init file: exit 2"
# latest names a file that is gone: restart = auto warns naming it and
# resumes from the newest valid step file (step 2); step 2 is left as it was
echo "step_00000099.h5" > "$T/ckpt/latest"
before=$(md5sum < "$T/ckpt/step_00000002.h5")
lam 1 train "$T/tiny.in" train.steps=4 checkpoint.keep=4
after=$(md5sum < "$T/ckpt/step_00000002.h5")
if [ "$rc" = 0 ] && grep -q "warning: .*step_00000099.h5, which is missing" "$T/out" \
  && grep -q "resuming from .*step_00000002.h5" "$T/out" && [ "$before" = "$after" ]; then ok "latest naming a missing file: warning, resumes from step 2, step 2 untouched"
else notok "latest naming a missing file" "rc=$rc" "$(tail -3 "$T/out")"; fi
finish
