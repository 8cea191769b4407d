#!/bin/bash
# lamina prep, categories, bins and buckets (SPEC §9): three categories from
# JSONL fields and --category, 4 bins, a validation hold-out, near dedup.
# The files equal an independent recomputation (tests/ref/prep_ref.py) from
# the inputs and the --rejected list: the seeded hold-out and bins, every
# (category, bin) packed by first-fit decreasing, buckets in order,
# /samples/category and /samples/bytes; no token lost, categories never
# mixed; the same files from 1, 2 and 3 ranks and from 1 and 2 threads;
# --seed changes the bins, one bin and one category is the plain layout.
source tests/lib.sh
plan 9
$PY - "$T" <<'EOP'
import json, random, sys
T = sys.argv[1]; R = random.Random(5)
words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
def text(n): return " ".join(R.choice(words) for _ in range(n)) + "."
with open(f"{T}/a.jsonl", "w") as f:
    seen = []
    for i in range(150):
        cat = ["web", "book", "code"][R.randrange(3)]
        t = text(R.choice([2, 5, 9, 20, 40])) if R.random() < 0.9 else text(R.randrange(60, 200))
        if seen and R.random() < 0.05: t = R.choice(seen)            # exact duplicate
        seen.append(t)
        f.write(json.dumps({"text": t, "category": cat}) + "\n")
        if i % 37 == 0: f.write("\n")                                  # blank lines are no documents
with open(f"{T}/b.txt", "w") as f:
    for i in range(40):
        f.write("床前明月光，疑是地上霜。" * R.randrange(1, 12) + f" {i}\n%\n")
EOP
IN=("$T/a.jsonl" --category zh "$T/b.txt")
REF=("-:jsonl:$T/a.jsonl" "zh:text:%:$T/b.txt")
run_prep() { # NP OUT [extra args]
  local np=$1 out=$2; shift 2
  lam "$np" prep --seq-len 32 --doc-sep % --bins 4 --seed 7 --dedup near --valid-fraction 0.2 -o "$T/$out.h5" \
    --rejected "$T/$out.rej" --stats "$T/$out.json" "$@" "${IN[@]}"
  cp "$T/out" "$T/$out.log"
}
run_prep 1 r1
[ "$rc" = 0 ] && ok "prep with categories, bins, hold-out, near dedup: exit 0" || notok "prep r1" "$(tail -3 "$T/out")"
if out=$($PY tests/ref/prep_ref.py check "$T/r1.h5" "$T/r1.rej" 32 4 7 0.2 train "${REF[@]}" 2>&1); then
  ok "training file = the recomputation (bins, FFD per (category, bin), buckets, categories, bytes; no token lost)"; echo "#   $out"
else notok "training file = the recomputation" "$out"; fi
if out=$($PY tests/ref/prep_ref.py check "$T/r1.valid.h5" "$T/r1.rej" 32 4 7 0.2 valid "${REF[@]}" 2>&1); then
  ok "validation file = the recomputation (round(f n) per category, no buckets)"; echo "#   $out"
else notok "validation file = the recomputation" "$out"; fi
check "buckets: 4, each with samples of every category; samples of one category each; the log and stats agree" $PY - "$T/r1.h5" "$T/r1.json" "$T/r1.log" <<'EOP'
import h5py, json, sys
f = h5py.File(sys.argv[1], "r"); st = json.load(open(sys.argv[2])); log = open(sys.argv[3]).read()
b = f["buckets/offsets"][()]; cat = f["samples/category"][()]
assert len(b) == 5 and b[0] == 0 and b[-1] == len(cat)
for k in range(4):
    assert sorted(set(cat[b[k]:b[k + 1]].tolist())) == [0, 1, 2, 3], (k, set(cat[b[k]:b[k + 1]].tolist()))
    assert (cat[b[k]:b[k + 1]][1:] >= cat[b[k]:b[k + 1]][:-1]).all(), "categories in index order within a bucket"
names = [c.decode() if isinstance(c, bytes) else c for c in f.attrs["categories"]]
for c, n in enumerate(names):
    tr = st["categories"][n]["train"]
    assert tr["samples"] == int((cat == c).sum()) and tr["tokens"] == int(sum(f["samples/offsets"][i + 1] - f["samples/offsets"][i] for i in range(len(cat)) if cat[i] == c))
    assert f"training category {n}: {tr['documents']} documents, {tr['tokens']} tokens, {tr['samples']} samples" in log, n
    assert st["categories"][n]["documents_out"] == tr["documents"] + st["categories"][n]["valid"]["documents"]
assert st["rules"]["dedup_exact"]["documents_dropped"] > 0, "the planted exact duplicates"
EOP
# 2 and 3 ranks, 2 threads: the same datasets and attributes, the same reports
same_files() { # A B: every dataset and attribute identical
  $PY - "$1" "$2" <<'EOP'
import h5py, sys, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def walk(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
A, B = walk(a), walk(b)
assert sorted(A) == sorted(B), (sorted(A), sorted(B))
for k in A: assert np.array_equal(A[k], B[k]), k
assert sorted(a.attrs) == sorted(b.attrs)
for k in a.attrs: assert np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k])), k
EOP
}
run_prep 3 r3
if [ "$rc" = 0 ] && same_files "$T/r1.h5" "$T/r3.h5" >"$T/.o" 2>&1 && same_files "$T/r1.valid.h5" "$T/r3.valid.h5" >>"$T/.o" 2>&1 &&
   cmp -s "$T/r1.rej" "$T/r3.rej" && cmp -s "$T/r1.json" "$T/r3.json" && h5dump "$T/r1.h5" > "$T/d1" && h5dump "$T/r3.h5" > "$T/d3" &&
   diff <(tail -n +2 "$T/d1") <(tail -n +2 "$T/d3") >/dev/null
then ok "3 ranks: identical training and validation files (h5py and h5dump), rejected list and stats"
else notok "3 ranks: identical files" "$(cat "$T/.o")" "$(tail -3 "$T/r3.log")"; fi
run_prep 2 r2
OMP_NUM_THREADS=2 run_prep 1 t2
if same_files "$T/r1.h5" "$T/r2.h5" >"$T/.o" 2>&1 && same_files "$T/r1.h5" "$T/t2.h5" >>"$T/.o" 2>&1; then ok "2 ranks and 2 threads: identical"
else notok "2 ranks / 2 threads" "$(cat "$T/.o")"; fi
# another seed: other bins, the same documents and tokens in all
lam 1 prep --seq-len 32 --doc-sep % --bins 4 --seed 8 --dedup near --valid-fraction 0.2 -o "$T/s8.h5" --rejected "$T/s8.rej" "${IN[@]}"
if [ "$rc" = 0 ] && $PY tests/ref/prep_ref.py check "$T/s8.h5" "$T/s8.rej" 32 4 8 0.2 train "${REF[@]}" >"$T/.o" 2>&1 &&
   $PY -c 'import h5py,sys; a,b=h5py.File(sys.argv[1])["tokens"][()],h5py.File(sys.argv[2])["tokens"][()]; sys.exit(0 if a.tolist()!=b.tolist() else 1)' "$T/r1.h5" "$T/s8.h5"
then ok "--seed 8: another bin assignment, still the recomputation"; else notok "--seed 8" "$(cat "$T/.o")"; fi
# --bins 1 with one category and no hold-out: /buckets/offsets [0, n], and the recomputation
lam 2 prep --seq-len 32 --doc-sep % -o "$T/one.h5" --rejected "$T/one.rej" "$T/b.txt"
if [ "$rc" = 0 ] && $PY tests/ref/prep_ref.py check "$T/one.h5" "$T/one.rej" 32 1 1234 0 train "-:text:%:$T/b.txt" >"$T/.o" 2>&1
then ok "one category (default), one bin, 2 ranks: the recomputation"; else notok "one bin" "$(cat "$T/.o")" "$(tail -2 "$T/out")"; fi
# a document much longer than seq_len+1 is split into pieces that pack with others; nothing dropped
$PY -c 'import json; print(json.dumps({"text": "x" * 500})); print(json.dumps({"text": "short"}))' > "$T/long.jsonl"
lam 3 prep --seq-len 16 -o "$T/long.h5" --rejected "$T/long.rej" "$T/long.jsonl"
if [ "$rc" = 0 ] && $PY tests/ref/prep_ref.py check "$T/long.h5" "$T/long.rej" 16 1 1234 0 train "-:jsonl:$T/long.jsonl" >"$T/.o" 2>&1 &&
   grep -q "1 split at 16+1 tokens" "$T/out"
then ok "a 500-byte document over 3 ranks: 30 pieces, every token kept, bytes per piece sum to the document's"
else notok "long document" "$(cat "$T/.o")" "$(tail -2 "$T/out")"; fi
finish
