#!/bin/bash
# lamina prep --dedup (SPEC §9): planted exact duplicates (also one that
# differs only before NFKC normalisation) and near duplicates of known
# Jaccard similarity (5-code-point shingles, computed here): exact removes
# the exact ones only, near also those at J >= 0.9 and keeps those at
# J <= 0.5; --rejected names each dropped document's file and line, the
# rule, and the kept document it repeats; the same decisions on 1 and 3
# ranks; /docs holds the kept documents' keys; --dedup-against an earlier
# token file drops its documents (naming the file and document index), and
# is refused for a file without /docs, without the MinHash keys, or with
# another MinHash configuration.
source tests/lib.sh
plan 10
$PY - "$T" <<'EOP'
import json, random, sys
T = sys.argv[1]; R = random.Random(11)
def word(): return "".join(R.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(R.randrange(3, 9)))
def doc(n=70): return " ".join(word() for _ in range(n))
def sh(t): return {t[i:i + 5] for i in range(len(t) - 4)}
def jac(a, b): A, B = sh(a), sh(b); return len(A & B) / len(A | B)
def edit(t, k):   # replace k words
    w = t.split()
    for i in R.sample(range(len(w)), k): w[i] = word()
    return " ".join(w)
base = [doc() for _ in range(30)]
lines, plan = [], []   # plan: (line, kind, line of the original)
for i, t in enumerate(base):
    lines.append(t)
near = edit(base[3], 2); assert jac(near, base[3]) >= 0.9, jac(near, base[3])
far = edit(base[4], 40); assert jac(far, base[4]) <= 0.5, jac(far, base[4])
nfkc = base[5].replace("a", "\uff41")                     # fullwidth a: NFKC makes it 'a'
for t, kind, orig in [(base[1], "exact", 2), (near, "near", 4), (far, "keep", 0), (nfkc, "exact", 6),
                      (base[7] + "\x07", "exact", 8), (base[1], "exact", 2)]:
    lines.append(t); plan.append((len(lines), kind, orig))
with open(f"{T}/a.jsonl", "w") as f:
    for t in lines: f.write(json.dumps({"text": t}) + "\n")
json.dump(plan, open(f"{T}/plan.json", "w"))
# part B for --dedup-against: copies of a.jsonl documents and new ones
with open(f"{T}/b.jsonl", "w") as f:
    f.write(json.dumps({"text": doc()}) + "\n")
    f.write(json.dumps({"text": base[10]}) + "\n")           # line 2: exact copy of a.jsonl line 11
    f.write(json.dumps({"text": edit(base[12], 1)}) + "\n")  # line 3: near copy of a.jsonl line 13
    f.write(json.dumps({"text": doc()}) + "\n")
EOP
for np in 1 3; do
  lam $np prep --seq-len 64 --dedup near -o "$T/n$np.h5" --rejected "$T/n$np.rej" --stats "$T/n$np.json" "$T/a.jsonl"
  cp "$T/out" "$T/n$np.log"
done
check "near: the planted exact and near duplicates go, the far one stays; --rejected names line, rule and original" \
  $PY - "$T/n1.rej" "$T/plan.json" "$T/a.jsonl" "$T/n1.h5" <<'EOP'
import json, sys, h5py
rej = [json.loads(l) for l in open(sys.argv[1])]; plan = json.load(open(sys.argv[2]))
want = {(line, "dedup_" + kind, orig) for line, kind, orig in plan if kind != "keep"}
got = {(r["line"], r["rule"], r["duplicate_of"]["line"]) for r in rej}
assert got == want, (sorted(got), sorted(want))
lines = open(sys.argv[3]).read().split("\n")
for r in rej:
    assert r["file"] == sys.argv[3] and r["duplicate_of"]["file"] == sys.argv[3] and r["category"] == "default"
    assert r["text"] == json.loads(lines[r["line"] - 1])["text"]
f = h5py.File(sys.argv[4], "r")
n_kept = 36 - len(rej)
assert f["docs/hash"].shape == (n_kept,) and f["docs/minhash"].shape == (n_kept, 128), (f["docs/hash"].shape, n_kept)
assert int(f.attrs["minhash_perm"]) == 128 and int(f.attrs["minhash_bands"]) == 16 and int(f.attrs["minhash_ngram"]) == 5
assert len(set(f["docs/hash"][()].tolist())) == n_kept
EOP
if cmp -s "$T/n1.rej" "$T/n3.rej" && cmp -s "$T/n1.json" "$T/n3.json" &&
   cmp -s <(h5dump -d /docs/minhash "$T/n1.h5" | tail -n +3) <(h5dump -d /docs/minhash "$T/n3.h5" | tail -n +3) &&
   cmp -s <(h5dump -d /tokens "$T/n1.h5" | tail -n +3) <(h5dump -d /tokens "$T/n3.h5" | tail -n +3)
then ok "3 ranks: the same decisions, /docs and tokens"; else notok "3 ranks: the same decisions" "$(tail -3 "$T/n3.log")"; fi
check "stats: documents and bytes through dedup_exact and dedup_near" $PY - "$T/n1.json" <<'EOP'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["stages"] == ["dedup_exact", "dedup_near"], s["stages"]
e, n = s["rules"]["dedup_exact"], s["rules"]["dedup_near"]
assert (e["documents_in"], e["documents_dropped"], n["documents_in"], n["documents_dropped"], n["documents_out"]) == (36, 4, 32, 1, 31), (e, n)
assert e["bytes_out"] == n["bytes_in"] and s["bytes_out"] == n["bytes_out"] and s["documents_out"] == 31
d = s["categories"]["default"]
assert d["documents_out"] == 31 and d["train"]["documents"] == 31
EOP
lam 2 prep --seq-len 64 -o "$T/x.h5" --rejected "$T/x.rej" "$T/a.jsonl"
check "exact (the default): the exact and NFKC-equal copies only" $PY -c '
import json, sys
rej = [json.loads(l) for l in open(sys.argv[1])]
assert sorted(r["line"] for r in rej) == [31, 34, 35, 36] and all(r["rule"] == "dedup_exact" for r in rej), rej
' "$T/x.rej"
lam 1 prep --seq-len 64 --dedup none -o "$T/none.h5" --rejected "$T/none.rej" "$T/a.jsonl"
if [ "$rc" = 0 ] && [ ! -s "$T/none.rej" ] && grep -q "^prep: 36 documents" "$T/out" &&
   $PY -c 'import h5py,sys; sys.exit("docs" in h5py.File(sys.argv[1]))' "$T/none.h5"
then ok "--dedup none keeps all 36, writes no /docs"; else notok "--dedup none" "$(tail -2 "$T/out")"; fi
# against the earlier file: b.jsonl lines 2 (exact) and 3 (near) go
lam 3 prep --seq-len 64 --dedup near --dedup-against "$T/n1.h5" -o "$T/b.h5" --rejected "$T/b.rej" "$T/b.jsonl"
check "--dedup-against: the earlier file's documents dropped, named by file and document index" \
  $PY - "$T/b.rej" "$T/n1.rej" "$T/a.jsonl" "$T/n1.h5" <<'EOP'
import json, sys
rej = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["line"], r["rule"]) for r in rej] == [(2, "dedup_exact"), (3, "dedup_near")], rej
# the kept documents of a.jsonl, in order: /docs index k is the k-th
dropped = {json.loads(l)["line"] for l in open(sys.argv[2])}
kept = [i + 1 for i in range(36) if i + 1 not in dropped]
for r, orig in zip(rej, (11, 13)):
    assert r["duplicate_of"] == {"file": sys.argv[4], "document": kept.index(orig)}, (r["duplicate_of"], kept.index(orig))
EOP
lam 1 prep --seq-len 64 --dedup exact --dedup-against "$T/x.h5" -o "$T/b2.h5" --rejected "$T/b2.rej" "$T/b.jsonl"
if [ "$rc" = 0 ] && [ "$(wc -l < "$T/b2.rej")" = 1 ] && grep -q '"line":2,.*"dedup_exact"' "$T/b2.rej"
then ok "--dedup exact against a file made with exact: the exact copy only"; else notok "exact against" "$(tail -2 "$T/out")"; fi
lam 2 prep --seq-len 64 --dedup near --dedup-against "$T/x.h5" -o "$T/b3.h5" "$T/b.jsonl"
expect_fail 2 "x.h5: the file has no /docs/minhash" "--dedup near against a file without MinHash keys: exit 2 naming it"
lam 2 prep --seq-len 64 --dedup-against "$T/none.h5" -o "$T/b3.h5" "$T/b.jsonl"
expect_fail 2 "none.h5: the file has no /docs" "--dedup-against a file without /docs: exit 2 naming it"
cp "$T/n1.h5" "$T/other.h5"
$PY -c 'import h5py,sys,numpy as np; f=h5py.File(sys.argv[1],"r+"); f.attrs.modify("minhash_seed", np.uint64(int(f.attrs["minhash_seed"]) + 1))' "$T/other.h5"
lam 2 prep --seq-len 64 --dedup near --dedup-against "$T/other.h5" -o "$T/b4.h5" "$T/b.jsonl"
expect_fail 2 "other.h5: its MinHash configuration (perm 128, bands 16, ngram 5, words 0, seed" "--dedup-against a file with another MinHash seed: exit 2 naming it"
finish
