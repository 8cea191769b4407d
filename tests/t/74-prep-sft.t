#!/bin/bash
# lamina prep with SFT JSONL (issue 18 item 7): a line with "source" and
# "target" becomes BOS source target EOS with /loss_mask 0 on BOS and the
# source, 1 on the target and EOS; plain documents are all 1; the mask
# follows its tokens through splitting and packing (the recomputation in
# tests/ref/prep_ref.py), on 1 and 2 ranks alike; a file without SFT
# documents has no /loss_mask; the validation file gets its own.
source tests/lib.sh
plan 5
$PY - "$T" <<'EOP'
import json, random, sys
T = sys.argv[1]; R = random.Random(3)
def text(n): return "".join(R.choice("abcdefgh ") for _ in range(n))
with open(f"{T}/sft.jsonl", "w") as f:
    for i in range(60):
        if i % 3 == 0: f.write(json.dumps({"text": text(R.randrange(5, 80)), "category": "plain"}) + "\n")
        else: f.write(json.dumps({"source": "Q%d: " % i + text(R.randrange(1, 50)), "target": text(R.randrange(1, 50)), "category": "chat"}) + "\n")
with open(f"{T}/one.jsonl", "w") as f:
    f.write(json.dumps({"source": "ab", "target": "cde"}) + "\n")
EOP
lam 1 prep --seq-len 24 -o "$T/one.h5" "$T/one.jsonl"
check "one SFT pair: tokens BOS a b c d e EOS, mask 0 0 0 1 1 1 1" $PY -c '
import h5py, sys
f = h5py.File(sys.argv[1], "r")
assert f["tokens"][()].tolist() == [256, 97, 98, 99, 100, 101, 257], f["tokens"][()].tolist()
assert f["loss_mask"][()].tolist() == [0, 0, 0, 1, 1, 1, 1], f["loss_mask"][()].tolist()
assert f["samples/bytes"][()].tolist() == [5]
' "$T/one.h5"
for np in 1 2; do
  lam $np prep --seq-len 24 --bins 2 --valid-fraction 0.2 -o "$T/s$np.h5" --rejected "$T/s$np.rej" "$T/sft.jsonl"
done
REF=("-:jsonl:$T/sft.jsonl")
if [ "$rc" = 0 ] && out=$($PY tests/ref/prep_ref.py check "$T/s1.h5" "$T/s1.rej" 24 2 1234 0.2 train "${REF[@]}" 2>&1) &&
   out2=$($PY tests/ref/prep_ref.py check "$T/s1.valid.h5" "$T/s1.rej" 24 2 1234 0.2 valid "${REF[@]}" 2>&1)
then ok "mixed SFT and plain, split at 24+1 and packed: tokens and /loss_mask = the recomputation (training and validation)"; echo "#   $out"
else notok "SFT mask = the recomputation" "$out" "${out2:-}"; fi
check "2 ranks: the same tokens and mask" $PY -c '
import h5py, sys, numpy as np
for s in ("", ".valid"):
    a, b = h5py.File(sys.argv[1] + s + ".h5", "r"), h5py.File(sys.argv[2] + s + ".h5", "r")
    for k in ("tokens", "loss_mask", "samples/offsets", "samples/category", "samples/bytes"):
        assert np.array_equal(a[k][()], b[k][()]), (s, k)
' "$T/s1" "$T/s2"
lam 1 prep --seq-len 200 -o "$T/whole.h5" "$T/sft.jsonl"
check "no document split: each SFT pair's mask is 0 on BOS and its source bytes, 1 on its target and EOS" \
  $PY - "$T/whole.h5" "$T/sft.jsonl" <<'EOP'
import h5py, json, sys
f = h5py.File(sys.argv[1], "r"); tok = f["tokens"][()].tolist(); m = f["loss_mask"][()].tolist()
want = {}
for l in open(sys.argv[2]):
    o = json.loads(l)
    if "source" in o: want[(o["source"] + o["target"]).encode()] = len(o["source"].encode())
    else: want[o["text"].encode()] = -1
seen = 0
i = 0
while i < len(tok):
    assert tok[i] == 256, i
    j = tok.index(257, i)
    body = bytes(tok[i + 1:j]); src = want[body]
    exp = [1] * (j + 1 - i) if src < 0 else [0] * (1 + src) + [1] * (j - i - src)
    assert m[i:j + 1] == exp, (body, m[i:j + 1], exp)
    seen += src >= 0
    i = j + 1
assert seen == 40, seen
EOP
printf '{"text": "no pairs here"}\n' > "$T/p.jsonl"
lam 1 prep --seq-len 24 -o "$T/p.h5" "$T/p.jsonl"
if [ "$rc" = 0 ] && $PY -c 'import h5py,sys; sys.exit("loss_mask" in h5py.File(sys.argv[1]))' "$T/p.h5"
then ok "no SFT document: no /loss_mask"; else notok "no /loss_mask" "$(tail -2 "$T/out")"; fi
finish
