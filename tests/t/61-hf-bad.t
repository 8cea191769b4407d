#!/bin/bash
# Broken Hugging Face folders (SPEC §7): each exits 2 naming the file and the
# tensor or config.json key, on every rank, and leaves no output behind.
source tests/lib.sh
plan 22
# one rank without mpirun (a singleton MPI world; mpirun's start-up dominates
# these runs): same conventions as lam (output in $T/out, exit code in $rc)
lam1() { rc=0; timeout 300 "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?; }
MK="$PY tests/ref/make_hf.py"
$MK make "$T/good" --dtype F32
$MK make "$T/goods" --dtype F32 --shards 3

# bad CASE BASE PATTERN [NP]: a copy of BASE broken by CASE; convert exits 2
# printing PATTERN and leaves neither the file nor its temporary directory.
bad() {
  local case=$1 base=$2 pat=$3 np=${4:-1}
  rm -rf "$T/c"; cp -r "$T/$base" "$T/c"; $MK mutate "$T/c" "$case"
  if [ "$np" = 1 ]; then lam1 convert --from-hf "$T/c" -o "$T/out.h5"; else lam "$np" convert --from-hf "$T/c" -o "$T/out.h5"; fi
  if [ "$rc" = 2 ] && grep -q -- "$pat" "$T/out" && [ ! -e "$T/out.h5" ] && [ ! -e "$T/out.h5.convert.tmp" ]; then
    ok "$case: exit 2 naming it, nothing written"
  else notok "$case: exit 2 naming it, nothing written" "exit $rc (want 2), want /$pat/:" "$(tail -3 "$T/out")" "$(ls "$T" | grep out.h5)"; fi
}
bad hdrlen good "c/model.safetensors: header length .* beyond the file"
bad offsets good "c/model.safetensors: tensor model.norm.weight: data_offsets .* end beyond the"
bad overlap good "c/model.safetensors: tensor model.layers.0.[a-z_]*layernorm.weight: data_offsets .* overlap those of tensor model.layers.0"
bad dtype good "c/model.safetensors: tensor model.layers.0.mlp.up_proj.weight: dtype I32"
bad shape good "c/model.safetensors: tensor model.layers.0.mlp.gate_proj.weight: shape \[176, 64\], config.json implies \[160, 64\]"
bad missing good "tensor model.layers.0.self_attn.v_proj.weight: missing"
bad extra good "c/model.safetensors: tensor model.layers.0.self_attn.rotary_emb.inv_freq: extra tensor"
bad tied-lm-head good "c/model.safetensors: tensor lm_head.weight: extra tensor.*tie_word_embeddings is true"
bad truncated goods "c/model-00003-of-00003.safetensors: .*tensor .*end beyond the .*truncated"
bad noshard goods "c/model-00002-of-00003.safetensors: missing shard, listed in model.safetensors.index.json for tensor model.layers"
bad rope_scaling good "c/config.json: key rope_scaling: must be null"
bad attention_bias good "c/config.json: key attention_bias: must be false"
bad badjson good "c/config.json: not valid JSON"
bad badheader good "c/model.safetensors: header is not"
bad nan good "c/model.safetensors: tensor model.norm.weight: holds NaN"
bad missing goods "tensor model.layers.0.self_attn.v_proj.weight: missing" 2
bad offsets good "tensor model.norm.weight: data_offsets .* end beyond the" 3

# train.init = a folder whose config.json does not describe the deck's model
make_data 32
make_deck
lam1 train "$T/tiny.in" train.init="$T/good" model.n_kv_heads=4 checkpoint.restart=none
expect_fail 2 "good/config.json: key num_key_value_heads = 2 does not match the deck's model.n_kv_heads = 4" \
  "train.init = DIR: config.json shape checked against the deck (exit 2 naming the key)"
rm -rf "$T/c"; cp -r "$T/good" "$T/c"; $MK mutate "$T/c" dtype
lam 2 train "$T/tiny.in" train.init="$T/c" parallel.tp=2 checkpoint.restart=none
expect_fail 2 "tensor model.layers.0.mlp.up_proj.weight: dtype I32" "train.init = a broken folder on tp=2: exit 2 on every rank"

# --to-hf: an existing non-empty folder is not overwritten; --tokenizer must exist
lam1 convert --from-hf "$T/good" -o "$T/g.h5"
mkdir -p "$T/busy"; echo keep > "$T/busy/file"
lam 2 convert --to-hf "$T/g.h5" -o "$T/busy"
if [ "$rc" = 2 ] && grep -q "busy: exists and is not empty" "$T/out" && [ "$(cat "$T/busy/file")" = keep ] \
   && [ ! -e "$T/busy.tmp" ]; then ok "--to-hf into a non-empty folder: exit 2, folder untouched"
else notok "--to-hf into a non-empty folder: exit 2, folder untouched" "exit $rc" "$(tail -3 "$T/out")"; fi
lam1 convert --to-hf "$T/g.h5" -o "$T/new" --tokenizer "$T/absent.model"
if [ "$rc" = 2 ] && grep -q "tokenizer: .*absent.model: cannot read" "$T/out" && [ ! -e "$T/new" ]; then
  ok "--tokenizer naming a missing file: exit 2, nothing written"
else notok "--tokenizer naming a missing file: exit 2, nothing written" "exit $rc" "$(tail -3 "$T/out")"; fi
# --to-hf from a checkpoint damaged in its last tensor: exit 2 naming the
# dataset, and neither DIR nor DIR.tmp is left (shards already written go too)
cp "$T/g.h5" "$T/flip.h5"
$PY - "$T/flip.h5" <<'EOP'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    off = f["model/lm_head.weight"].id.get_offset()
with open(sys.argv[1], "r+b") as fh:
    fh.seek(off + 40); b = fh.read(4); fh.seek(off + 40); fh.write(bytes(x ^ 0x55 for x in b))
EOP
lam1 convert --to-hf "$T/flip.h5" -o "$T/new2" --shard-size 100K
if [ "$rc" = 2 ] && grep -q "flip.h5: /model/lm_head.weight: checksum mismatch" "$T/out" && [ ! -e "$T/new2" ] && [ ! -e "$T/new2.tmp" ]; then
  ok "--to-hf from a damaged checkpoint: exit 2 naming the dataset, nothing left"
else notok "--to-hf from a damaged checkpoint: exit 2 naming the dataset, nothing left" "exit $rc" "$(tail -3 "$T/out")" "$(ls "$T")"; fi
finish
