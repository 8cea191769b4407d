#!/bin/bash
# The LLaMA path wired together (SPEC §4, §5, §7, §8): a SentencePiece model
# trained by lamina tokenizes prep's documents exactly as python3-sentencepiece
# does (any thread count), is recorded in the token file and in every
# checkpoint, and is the one generate speaks; convert --to-hf writes the
# tokenizer files transformers reads (and the bos/eos ids); --from-hf and
# train.init = FOLDER pick the folder's tokenizer.model up; vocab resize from
# an HF folder equals resize from the same weights as a checkpoint.
source tests/lib.sh
plan 11
make_data
make_deck
M="$T/en.model"
lam 1 vocab train --vocab-size 500 -o "$M" "$T/corpus.txt"
[ "$rc" = 0 ] || { notok "vocab train" "$(tail -3 "$T/out")"; finish; }

# 1-2: prep --tokenizer, 1 and 2 threads; python's encode of every document
for th in 1 2; do
  OMP_NUM_THREADS=$th lam 1 prep --tokenizer "$M" --seq-len 64 --doc-sep % -o "$T/sp$th.h5" "$T/corpus.txt"
done
lam 1 prep --tokenizer "$M" --seq-len 8192 --doc-sep % -o "$T/whole.h5" "$T/corpus.txt"  # no document split
if cmp -s <(h5dump -d /tokens "$T/sp1.h5" | tail -n +3) <(h5dump -d /tokens "$T/sp2.h5" | tail -n +3) &&
   out=$($PY - "$T/whole.h5" "$M" "$T/corpus.txt" <<'PYEOF' 2>&1
import sys, h5py, sentencepiece as spm
f = h5py.File(sys.argv[1], "r"); sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
assert bytes(f["tokenizer/model"][()]) == open(sys.argv[2], "rb").read(), "recorded model bytes differ"
assert f["tokenizer/model"].attrs["bos_id"] == 1 and f["tokenizer/model"].attrs["eos_id"] == 2
assert f.attrs["vocab_size"] == 500
docs, cur = [], []
for line in open(sys.argv[3], encoding="utf-8").read().split("\n"):
    if line == "%": docs.append("\n".join(cur) + "\n"); cur = []
    else: cur.append(line)
if "\n".join(cur).strip(): docs.append("\n".join(cur))
want = sorted(tuple([1] + sp.encode(d) + [2]) for d in docs if d.strip())
toks, off = f["tokens"][()], f["samples/offsets"][()]
got = []
for i in range(len(off) - 1):
    cur = []
    for t in toks[off[i]:off[i + 1]]:
        if t == 1 and cur: got.append(tuple(cur)); cur = []
        cur.append(int(t))
    got.append(tuple(cur))
assert len(want) > 100
assert sorted(got) == want, "the documents differ from python's encoding"
print(f"{len(want)} documents, {len(toks)} ids identical to python3-sentencepiece")
PYEOF
); then ok "prep --tokenizer: python3-sentencepiece's ids, the model recorded, same file on 1 and 2 threads"; echo "#   $out"
else notok "prep --tokenizer" "$out" "$(tail -3 "$T/out")"; fi
lam 1 prep --tokenizer "$T/corpus.txt" --seq-len 64 -o "$T/bad.h5" "$T/corpus.txt"
expect_fail 2 "corpus.txt" "prep --tokenizer with a file that is not a model: exit 2 naming it"

# 3-4: train records it; generate speaks it
lam 2 train "$T/tiny.in" data.train="$T/sp1.h5" model.vocab_size=500 train.steps=3 checkpoint.dir="$T/ck"
CK="$T/ck/$(cat "$T/ck/latest" 2>/dev/null)"
if [ "$rc" = 0 ] && $PY -c "import h5py,sys; sys.exit(0 if bytes(h5py.File(sys.argv[1])['tokenizer/model'][()]) == open(sys.argv[2],'rb').read() else 1)" "$CK" "$M"
then ok "the checkpoint records the data's tokenizer"; else notok "checkpoint tokenizer" "$(tail -3 "$T/out")"; fi
lam 1 generate "$T/tiny.in" data.train="$T/sp1.h5" model.vocab_size=500 checkpoint.dir="$T/ck" --prompt "The Tao" --max-new-tokens 8 --temperature 0
if [ "$rc" = 0 ] && grep -q "(sentencepiece tokenizer, vocab 500)" "$T/out" && grep -q "^The Tao" "$T/out" &&
   [ "$(sed -n 's/.* \([0-9]*\) prompt tokens.*/\1/p' "$T/out")" = "$($PY -c "import sentencepiece as s,sys; print(1+len(s.SentencePieceProcessor(model_file=sys.argv[1]).encode('The Tao')))" "$M")" ]
then ok "generate encodes the prompt with the recorded tokenizer"; else notok "generate with the recorded tokenizer" "$(tail -3 "$T/out")"; fi

# 5-6: --to-hf writes the tokenizer files; python reads them
lam 1 convert --to-hf "$CK" --dtype fp32 -o "$T/hf"
if [ "$rc" = 0 ] && out=$($PY - "$T/hf" "$M" <<'PYEOF' 2>&1
import sys, json, sentencepiece as spm
d = sys.argv[1]
assert open(d + "/tokenizer.model", "rb").read() == open(sys.argv[2], "rb").read()
sp = spm.SentencePieceProcessor(model_file=d + "/tokenizer.model")
tc = json.load(open(d + "/tokenizer_config.json")); sm = json.load(open(d + "/special_tokens_map.json"))
cfg = json.load(open(d + "/config.json")); gc = json.load(open(d + "/generation_config.json"))
assert tc["tokenizer_class"] == "LlamaTokenizer" and tc["add_bos_token"] is True and tc["add_eos_token"] is False
assert (tc["bos_token"], tc["eos_token"], tc["unk_token"]) == ("<s>", "</s>", "<unk>") == (sm["bos_token"], sm["eos_token"], sm["unk_token"])
assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (sp.bos_id(), sp.eos_id()) == (gc["bos_token_id"], gc["eos_token_id"])
print("tokenizer.model, tokenizer_config.json, special_tokens_map.json; bos/eos ids", cfg["bos_token_id"], cfg["eos_token_id"])
PYEOF
); then ok "--to-hf: the tokenizer files LlamaTokenizer reads, ids in config.json"; echo "#   $out"
else notok "--to-hf tokenizer files" "$out" "$(tail -3 "$T/out")"; fi
lam 1 convert --to-hf "$CK" --tokenizer "$T/corpus.txt" -o "$T/hf2"
if [ "$rc" = 2 ] && grep -q "corpus.txt" "$T/out" && [ ! -e "$T/hf2" ]; then ok "--to-hf --tokenizer NOT-A-MODEL: exit 2, nothing written"
else notok "--to-hf bad tokenizer" "exit $rc" "$(tail -3 "$T/out")"; fi

# 7-8: --from-hf and train.init = FOLDER pick up tokenizer.model
lam 2 convert --from-hf "$T/hf" -o "$T/back.h5"
samebytes() { $PY -c "import h5py,sys; sys.exit(0 if bytes(h5py.File(sys.argv[1])['tokenizer/model'][()]) == open(sys.argv[2],'rb').read() else 1)" "$1" "$2"; }
if [ "$rc" = 0 ] && samebytes "$T/back.h5" "$M"; then ok "--from-hf records the folder's tokenizer.model"
else notok "--from-hf tokenizer" "$(tail -3 "$T/out")"; fi
lam 2 train "$T/tiny.in" model.vocab_size=500 train.init="$T/hf" train.steps=2 checkpoint.dir="$T/ck2"
if [ "$rc" = 0 ] && samebytes "$T/ck2/$(cat "$T/ck2/latest")" "$M"; then ok "train.init = FOLDER on untagged data records the folder's tokenizer"
else notok "train.init folder tokenizer" "$(tail -3 "$T/out")"; fi

# 9-11: expand; resize from the folder and from the checkpoint: same tensors
printf '中文\n▁lamina\n学习\n' > "$T/p.txt"
lam 1 vocab expand --base "$M" --pieces "$T/p.txt" -o "$T/B.model"
lam 1 vocab resize --old-tokenizer "$M" --new-tokenizer "$T/B.model" "$T/hf" -o "$T/r_hf.h5"
rc1=$rc
lam 1 vocab resize --old-tokenizer "$M" --new-tokenizer "$T/B.model" "$CK" -o "$T/r_ck.h5"
if [ "$rc1" = 0 ] && [ "$rc" = 0 ] && out=$($PY - "$T/r_hf.h5" "$T/r_ck.h5" "$T/B.model" <<'PYEOF' 2>&1
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = sorted(a["model"].keys()); assert names == sorted(b["model"].keys())
for n in names: assert np.array_equal(a["model"][n][()], b["model"][n][()]), n
assert a["model/model.embed_tokens.weight"].shape[0] == 503
for f in (a, b): assert bytes(f["tokenizer/model"][()]) == open(sys.argv[3], "rb").read()
print(len(names), "tensors identical; vocab 500 -> 503; both record the new tokenizer")
PYEOF
); then ok "vocab resize from an HF folder = from the checkpoint; the new tokenizer recorded"; echo "#   $out"
else notok "resize from an HF folder" "$out" "$(tail -3 "$T/out")"; fi
lam 2 train "$T/tiny.in" model.vocab_size=503 train.init="$T/r_hf.h5" train.trainable=embeddings data.train="$T/sp1.h5" train.steps=2 checkpoint.dir="$T/ck3"
if [ "$rc" = 0 ]; then ok "the resized model warms up (trainable = embeddings) on the old data"; else notok "warm-up" "$(tail -3 "$T/out")"; fi
lam 1 vocab resize --old-tokenizer "$T/B.model" --new-tokenizer "$M" "$T/hf" -o "$T/r_bad.h5"
if [ "$rc" = 2 ] && [ ! -e "$T/r_bad.h5" ]; then ok "resize with tokenizers in the wrong order: exit 2, nothing written"
else notok "resize wrong order" "exit $rc" "$(tail -3 "$T/out")"; fi
finish
