#!/bin/bash
# Padding-only batches, divergence, metrics, generate, version and help.
source tests/lib.sh
plan 11
make_deck
# The first 10 samples have length 1 (the file's last has targets, so it is
# accepted): unshuffled, both steps' batches have no targets. Loss 0, no NaN.
$PY - "$T/pad.h5" <<'EOP'
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["format"] = "lamina-tokens"; f.attrs["version"] = 1; f.attrs["vocab_size"] = 258
    f["tokens"] = np.arange(15, dtype=np.uint32)
    f["samples/offsets"] = np.array(list(range(11)) + [15], dtype=np.int64)
EOP
lam 1 train "$T/tiny.in" data.train="$T/pad.h5" data.shuffle=false train.steps=2 checkpoint.dir="$T/pad"
[ "$rc" = 0 ] && ! grep -qi nan "$T/metrics.jsonl" && $PY -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; assert all(x["loss"]==0 and x["tokens"]==0 for x in r)' "$T/metrics.jsonl" \
  && ok "all-padding batches: loss 0, no NaN" || notok "all-padding batches" "rc=$rc" "$(tail -3 "$T/out")"
make_data 32
rm -f "$T/metrics.jsonl"
lam 1 train "$T/tiny.in" train.steps=3 checkpoint.dir="$T/m"
check "metrics JSONL has every SPEC field" $PY - "$T/metrics.jsonl" <<'EOP'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == [1, 2, 3], rows
for r in rows:
    for k in ("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "tflops", "mfu", "step_ms"):
        assert k in r and r[k] is not None, k
    assert 0 < r["mfu"] < 1 and r["tokens_per_s"] > 0
assert rows[0]["tokens"] < rows[1]["tokens"] < rows[2]["tokens"]
EOP
grep -q "MFU" "$T/out" && grep -q "PAPI" "$T/out" && ok "log shows MFU and the PAPI status" || notok "log shows MFU and PAPI" "$(head -20 "$T/out")"
lam 1 train "$T/tiny.in" train.lr=1e12 train.warmup_steps=0 train.grad_clip=0 train.steps=30 checkpoint.dir="$T/div" checkpoint.restart=none
expect_fail 1 "diverged" "divergence: exit 1 with a message"
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/m" --prompt "The " --tokens 20
[ "$rc" = 0 ] && grep -q "^The " "$T/out" && grep -q "model weights from .*step_00000003.h5" "$T/out" && ok "generate continues a prompt from the checkpoint" || notok "generate" "$(cat "$T/out")"
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/m" checkpoint.restart=none --prompt "The " --tokens 5
grep -q "model weights from .*step_00000003.h5" "$T/out" && ok "generate reads the latest checkpoint even with restart = none" || notok "generate with restart = none" "$(cat "$T/out")"
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/empty" --tokens 5
expect_fail 2 "nothing trained" "generate with no checkpoint and random init: exit 2"
lam 1 generate "$T/tiny.in" --tokens x
expect_fail 2 "\-\-tokens" "generate: bad --tokens"
lam 1 --version
[ "$rc" = 0 ] && grep -q "cpu: float32" "$T/out" && grep -q hdf5 "$T/out" && ok "--version lists backends" || notok "--version" "$(cat "$T/out")"
# A CUDA build opens cuBLASLt only when a GPU device is created (0.35 s of
# start-up on every rank otherwise), and says whether it can.
if grep -q "cuda: not built" "$T/out"; then ok "# SKIP no CUDA in this build"
elif ! ldd "$LAMINA" | grep -q libcublasLt && grep -q "cuBLASLt: loads" "$T/out"; then
  ok "cuBLASLt is not linked at start-up and loads on demand"
else notok "cuBLASLt on demand" "$(ldd "$LAMINA" | grep cublas)" "$(grep -i cublas "$T/out")"; fi
lam 1 frobnicate
expect_fail 2 "unknown command" "unknown command: exit 2"
finish
