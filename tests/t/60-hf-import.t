#!/bin/bash
# Hugging Face interchange (SPEC §7): tiny random LlamaForCausalLM folders
# written by hand (tests/ref/make_hf.py: F32, BF16, F16; one file or shards
# with an index; tied and untied; GQA 4:2) go through convert --from-hf
# (1, 2, 3 ranks) bit for bit; train.init = DIR gives the losses of
# train.init = the converted file on 1 rank, dp=2, tp=2, pp=2 and zero=2, and
# the float64 reference's first loss; --to-hf gives back the same bytes, in
# as many shards as --shard-size implies, with a config.json python reads.
source tests/lib.sh
plan 20
MK="$PY tests/ref/make_hf.py"
TOL=1e-5   # float32 reduction order over 3 steps
# one rank without mpirun (a singleton MPI world): output in $T/out, code in $rc
lam1() { rc=0; timeout 300 "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?; }
# pyok DESCRIPTION ARGS...: make_hf.py ARGS succeeds (its last line as a note)
pyok() { local d=$1; shift; if out=$($MK "$@" 2>&1); then ok "$d" && echo "#   ${out##*$'\n'}"; else notok "$d" "$(echo "$out" | tail -3)"; fi; }

$MK make "$T/A" --dtype F32 --seed 1
$MK make "$T/B" --dtype BF16 --tied --shards 3 --seed 2
$MK make "$T/C" --dtype F16 --shards 2 --seed 3

lam1 convert --from-hf "$T/A" -o "$T/A.h5"
pyok "F32 single file, 1 rank: every tensor bit-identical, step 0, no /optim, /config" cmp-h5 "$T/A" "$T/A.h5"
lam 3 convert --from-hf "$T/B" -o "$T/B.h5"
pyok "BF16 tied, 3 shards, 3 ranks: exact widening of every tensor" cmp-h5 "$T/B" "$T/B.h5"
lam 2 convert --from-hf "$T/C" -o "$T/C.h5"
pyok "F16, 2 shards, 2 ranks: exact widening of every tensor" cmp-h5 "$T/C" "$T/C.h5"
[ ! -e "$T/C.h5.convert.tmp" ] && ok "no temporary left after a conversion" || notok "no temporary left after a conversion"

# training from the folder on every layout against the converted file
make_data 32
make_deck
base=(train.steps=3 data.shuffle=false checkpoint.restart=none)
runone() { # runone NAME NP INIT OVERRIDES...
  local name=$1 np=$2 init=$3; shift 3
  if [ "$np" = 1 ]; then lam1 train "$T/tiny.in" "${base[@]}" train.init="$init" checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl" "$@"
  else lam "$np" train "$T/tiny.in" "${base[@]}" train.init="$init" checkpoint.dir="$T/$name" log.metrics="$T/$name.jsonl" "$@"; fi
  cp "$T/out" "$T/$name.log"
}
runone file1 1 "$T/A.h5"
ran "train.init = converted file (1 rank)" file1 "model weights from $T/A.h5"
runone dir1 1 "$T/A"
if [ "$rc" = 0 ] && [ "$(losses 1 3 "$T/file1.jsonl")" = "$(losses 1 3 "$T/dir1.jsonl")" ]; then
  ok "train.init = DIR on 1 rank: losses bit-identical to train.init = FILE.h5"
else notok "train.init = DIR on 1 rank: losses bit-identical to train.init = FILE.h5" "exit $rc" "$(tail -3 "$T/dir1.log")"; fi
for L in "dp2 parallel.dp=2" "tp2 parallel.tp=2" "pp2 parallel.pp=2" "zero2 parallel.zero=2"; do
  set -- $L; name=$1; shift
  runone "$name" 2 "$T/A" "$@"
  agree "train.init = DIR on $name matches the converted file on 1 rank" "$name" file1 1 3
done
ref=$($MK ref-loss "$T/A" "$T/data.h5" 32 4)
got=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["loss"])' "$T/dir1.jsonl")
if $PY -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(abs(a-b)/abs(b) > 1e-4)' "$got" "$ref"; then
  ok "first loss from the folder matches the float64 reference (tests/ref/llama_ref.py)"; echo "#   lamina $got, reference $ref"
else notok "first loss from the folder matches the float64 reference" "lamina $got, reference $ref"; fi
runone tiedfile 1 "$T/B.h5" model.tie_embeddings=true
runone tiedpp 2 "$T/B" model.tie_embeddings=true parallel.pp=2
agree "tied BF16 shards: train.init = DIR on pp=2 matches the converted file on 1 rank" tiedpp tiedfile 1 3

# back to Hugging Face
lam1 convert --to-hf "$T/A.h5" -o "$T/A2" --dtype fp32
pyok "F32 -> h5 -> --to-hf --dtype fp32: tensor bytes identical to the source" cmp-st "$T/A" "$T/A2"
pyok "config.json keys, one model.safetensors, no index" check-out "$T/A2" F32 5000000000
lam 2 convert --to-hf "$T/B.h5" -o "$T/B2" --shard-size 60K
pyok "BF16 -> h5 -> --to-hf (bf16 default, 2 ranks): tensor bytes identical" cmp-st "$T/B" "$T/B2"
pyok "--shard-size 60K: the shards transformers' rule gives, index total_size and weight_map right" check-out "$T/B2" BF16 60000
lam1 convert --to-hf "$T/C.h5" -o "$T/C2" --dtype fp16 --shard-size 0.1M
pyok "F16 -> h5 -> --to-hf --dtype fp16 --shard-size 0.1M: tensor bytes identical" cmp-st "$T/C" "$T/C2"
lam1 convert --to-hf "$T/A.h5" -o "$T/A3"
pyok "F32 checkpoint -> bf16: rounded to nearest even as torch rounds" cmp-cast "$T/A3" "$T/A.h5"
lam1 convert --to-hf "$T/A.h5" -o "$T/A4" --dtype fp16
pyok "F32 checkpoint -> fp16: rounded to nearest even as torch rounds" cmp-cast "$T/A4" "$T/A.h5"
lam1 convert --from-hf "$T/B2" -o "$T/B3.h5"
pyok "a folder lamina wrote converts back to the same tensors" cmp-h5 "$T/B" "$T/B3.h5"
finish
