#!/bin/bash
# train.trainable = embeddings (SPEC §2): only model.embed_tokens.weight and
# lm_head.weight update. From one random init file: every other tensor in the
# checkpoints stays bit-identical to the init (fp32 and bf16, every layout),
# their stored moments are zeros, the embeddings move; the layouts (dp 2 at
# ZeRO 0/1/2, tp 2, pp 2, tied embeddings over pp 2) track the single-rank
# run; restarts are bit for bit; a trainable = all run restarts from such a
# checkpoint; the float64 torch reference (tests/ref/check_trainable.py)
# agrees; the optimizer state is allocated for the trained chunks only.
source tests/lib.sh
plan 18
make_data 32
make_deck
TOL=2e-4
# the tiny preset's shape, random weights (norm weights away from 1)
init_file() { # init_file PATH TIED
  $PY - "$1" "$2" <<'PYEOF'
import sys; sys.path.insert(0, "tests/ref")
import llama_ref as R
cfg = R.ModelCfg(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, vocab_size=258,
                 max_seq_len=256, tie_embeddings=sys.argv[2] == "1")
R.write_init_ckpt(sys.argv[1], cfg, R.random_params(cfg, 7, std=0.05))
PYEOF
}
init_file "$T/init.h5" 0
init_file "$T/init_tied.h5" 1
# frozen CKPT INIT: non-embedding tensors bit-identical to INIT with zero
# moments; the embedding (and lm_head) changed
frozen() { $PY - "$@" <<'PYEOF'
import sys, h5py, numpy as np
ck, init = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad, same, n = [], [], 0
for name in init["model"]:
    a, b = ck["model/" + name][()], init["model/" + name][()]
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        if np.array_equal(a, b): same.append(name)
        continue
    n += 1
    if a.dtype != np.float32 or not np.array_equal(a, b): bad.append(name)
    for k in ("exp_avg", "exp_avg_sq"):
        if np.any(ck[f"optim/{k}/{name}"][()] != 0): bad.append(f"{k}/{name}")
if bad or same or n < 10:
    print("changed:", bad[:4], "embeddings unchanged:", same, "frozen tensors:", n); sys.exit(1)
print(f"{n} frozen tensors bit-identical")
PYEOF
}
base=(train.trainable=embeddings train.steps=8 checkpoint.every=4 checkpoint.keep=4 train.init="$T/init.h5")
# lay NAME NP DESC OVERRIDES...: run, agree with r1, frozen tensors unchanged
lay() {
  local name=$1 np=$2 d=$3 out; shift 3
  run "$name" "$np" "$@"
  if [ "$rc" != 0 ]; then notok "$d" "exit $rc" "$(tail -3 "$T/$name.log")"; return; fi
  if ! out=$(frozen "$T/$name/step_00000008.h5" "$T/init.h5" 2>&1); then notok "$d" "$out"; return; fi
  agree "$d: losses track 1 rank, frozen tensors bit-identical" "$name" r1 1 8
}

run r1 1
if [ "$rc" = 0 ] && grep -q "train.trainable = embeddings: optimizer state over the [0-9]* trained elements" "$T/r1.log" \
  && grep -q "optimizer state [0-9]* B (8 Psi_t = " "$T/r1.log"; then ok "1 rank: runs; optimizer state for the trained chunks only (8 Psi_t)"
else notok "1 rank runs, optimizer state 8 Psi_t" "exit $rc" "$(grep -E 'memory per rank|error' "$T/r1.log" | head -3)"; fi
check "1 rank: frozen tensors bit-identical to the init at step 4 and 8, zero moments; embeddings moved" \
  bash -c "$(declare -f frozen); PY=$PY; frozen '$T/r1/step_00000004.h5' '$T/init.h5' && frozen '$T/r1/step_00000008.h5' '$T/init.h5'"
# the same init trained fully: the frozen run differs (the key is not ignored)
run all 1 train.trainable=all
if [ "$rc" = 0 ] && ! frozen "$T/all/step_00000008.h5" "$T/init.h5" >/dev/null 2>&1 \
  && [ "$(losses 2 8 "$T/all.jsonl")" != "$(losses 2 8 "$T/r1.jsonl")" ]; then ok "trainable = all changes every tensor and the losses"
else notok "trainable = all differs" "exit $rc"; fi

lay dp2 2 "dp 2, ZeRO-0" parallel.zero=0
lay z1 2 "dp 2, ZeRO-1" parallel.zero=1
lay z2 2 "dp 2, ZeRO-2" parallel.zero=2
lay tp2 2 "tp 2 + sp" parallel.tp=2 parallel.sp=true
lay pp2 2 "pp 2" parallel.pp=2
lay pdz 4 "pp 2 x dp 2, ZeRO-2" parallel.pp=2 parallel.zero=2

# tied embeddings: one table, on both pipeline ends under pp
base=(train.trainable=embeddings train.steps=8 checkpoint.every=4 checkpoint.keep=4 train.init="$T/init_tied.h5" model.tie_embeddings=true)
run t1 1
[ "$rc" = 0 ] && ok "tied, 1 rank" || notok "tied, 1 rank" "$(tail -3 "$T/t1.log")"
run tpp2 2 parallel.pp=2
if [ "$rc" = 0 ] && frozen "$T/tpp2/step_00000008.h5" "$T/init_tied.h5" >/dev/null; then
  agree "tied, pp 2: losses track 1 rank, frozen tensors bit-identical" tpp2 t1 1 8
else notok "tied, pp 2" "exit $rc" "$(tail -3 "$T/tpp2.log")"; fi

# bf16: the float32 master of a frozen tensor is never touched
base=(train.trainable=embeddings train.steps=8 checkpoint.every=4 checkpoint.keep=4 train.init="$T/init.h5")
run bf 2 train.precision=bf16 parallel.zero=1
if [ "$rc" = 0 ] && out=$(frozen "$T/bf/step_00000008.h5" "$T/init.h5" 2>&1); then
  TOL=3e-2 agree "bf16, dp 2 ZeRO-1: frozen tensors bit-identical; losses near fp32" bf r1 1 8
else notok "bf16 frozen tensors" "exit $rc" "${out:-}" "$(tail -3 "$T/bf.log")"; fi

# restarts on the same layout are exact (frozen moments stored as zeros)
resume_same "restart from step 4, 1 rank: bit-identical losses" r1 1
resume_same "restart from step 4, dp 2 ZeRO-2: bit-identical losses" z2 2 parallel.zero=2
check "restarted run's checkpoint equals the uninterrupted one (weights and moments)" \
  bash -c "h5diff -q '$T/z2-full8.h5' '$T/z2/step_00000008.h5' /model /model && h5diff -q '$T/z2-full8.h5' '$T/z2/step_00000008.h5' /optim /optim"

# a trainable = all run continues from the embeddings-only step-4 checkpoint
lam 2 train "$T/tiny.in" train.steps=6 train.trainable=all parallel.zero=1 checkpoint.restart="$T/r1/step_00000004.h5" \
  checkpoint.dir="$T/thaw" log.metrics="$T/thaw.jsonl"
if [ "$rc" = 0 ] && grep -q "resuming from" "$T/out" && ! frozen "$T/thaw/step_00000006.h5" "$T/init.h5" >/dev/null 2>&1 \
  && [ "$(losses 5 6 "$T/thaw.jsonl" | wc -l)" = 2 ]; then ok "trainable = all resumes from an embeddings-only checkpoint and trains every tensor"
else notok "trainable = all from an embeddings-only checkpoint" "exit $rc" "$(tail -3 "$T/out")"; fi

# the float64 torch reference
if out=$(OMP_NUM_THREADS=1 timeout 300 $PY tests/ref/check_trainable.py 2>&1); then
  ok "float64 torch reference (frozen non-embedding params, AdamW and clipping over the embeddings)"
  echo "$out" | grep "^# worst" | sed 's/^/#   /'
else notok "float64 torch reference" "$(echo "$out" | grep -A2 '^not ok' | head -6)"; fi

lam 1 train "$T/tiny.in" train.trainable=layers
expect_fail 2 "train.trainable" "train.trainable = layers: exit 2 naming the key"
finish
