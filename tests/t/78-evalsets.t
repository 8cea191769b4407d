#!/bin/bash
# inputs/evalsets.py (issue 19 item 2): the evaluation sets built from Debian
# text are deterministic (two runs, different hash seeds: byte-identical
# trees) and well formed: every mc item has SPEC section 10's fields, 4
# non-empty distinct choices and an answer letter among them; every subject
# has dev and test items; no held-out document or mc answer line is in the
# training files; MANIFEST.json's counts and sha256 match the files; another
# seed draws other items.
source tests/lib.sh
plan 6
ES="/usr/bin/python3 inputs/evalsets.py --max-docs-per-category 120 --test-per-subject 12"
PYTHONHASHSEED=1 $ES --out "$T/a" > "$T/a.log" 2>&1; rc_a=$?
PYTHONHASHSEED=2 LC_ALL=C $ES --out "$T/b" > "$T/b.log" 2>&1; rc_b=$?
check "two runs exit 0 and print the summary table" \
  bash -c "[ $rc_a = 0 ] && [ $rc_b = 0 ] && grep -q '^zh-manual ' '$T/a.log' && grep -q '^en-quotes ' '$T/a.log'"
check "two runs (PYTHONHASHSEED 1 and 2, C locale): byte-identical outputs" diff -r "$T/a" "$T/b"
check "mc items: SPEC fields, 4 distinct non-empty choices, answer among the letters, dev and test per subject" \
  $PY - "$T/a" <<'EOP'
import json, sys
D = sys.argv[1]
subjects = {"en": ["en-manual", "en-quotes", "en-reference"],
            "zh": ["zh-classics", "zh-manual", "zh-poetry", "zh-reference"]}
for lang, want in subjects.items():
    n = {}
    for k, line in enumerate(open(f"{D}/mc/{lang}.jsonl", encoding="utf-8"), 1):
        it = json.loads(line)
        assert sorted(it) == ["answer", "choices", "question", "split", "subject"], (k, it)
        c = it["choices"]
        assert len(c) == 4 and len(set(c)) == 4, (k, c)
        assert all(isinstance(x, str) and x.strip() == x and x for x in c), (k, c)
        assert it["answer"] in "ABCD" and len(it["answer"]) == 1, (k, it)
        assert it["split"] in ("dev", "test") and it["question"].strip(), (k, it)
        passage = it["question"].split("\n")[1:]
        assert passage and all(passage), (k, it)
        if lang == "zh":
            assert it["question"].startswith("下面这段文字接下来是哪一句？\n"), (k, it)
        else:
            assert it["question"].startswith("Which line comes next after this passage?\n"), (k, it)
        s = n.setdefault(it["subject"], {"dev": 0, "test": 0})
        assert s["test"] == 0 or it["split"] == "test", ("dev after test", k)
        s[it["split"]] += 1
    assert sorted(n) == want, (lang, n)
    for s, c in n.items():
        assert c["dev"] == 5 and c["test"] == 12, (s, c)
EOP
check "held-out documents and mc answers never in the train files" $PY - "$T/a" <<'EOP'
import json, os, sys
D = sys.argv[1]
for lang in ("en", "zh"):
    train = {}
    for f in sorted(os.listdir(f"{D}/train/{lang}")):
        for line in open(f"{D}/train/{lang}/{f}", encoding="utf-8"):
            r = json.loads(line)
            assert f == r["category"] + ".jsonl" and r["text"], (f, r)
            train[r["text"]] = r["category"]
    held = [json.loads(l) for l in open(f"{D}/heldout/{lang}.jsonl", encoding="utf-8")]
    cats = {r["category"] for r in held}
    assert len(cats) == (3 if lang == "en" else 4), cats
    assert not [r for r in held if r["text"] in train], "held-out text in train"
    lines = {" ".join(l.split()) for t in train for l in t.split("\n")}
    for k, line in enumerate(open(f"{D}/mc/{lang}.jsonl", encoding="utf-8"), 1):
        it = json.loads(line)
        ans = it["choices"]["ABCD".index(it["answer"])]
        if len(ans.encode()) >= 24:
            assert ans not in lines, (k, ans)
        # the passage and its answer are in one held-out document of the subject
        last = it["question"].split("\n")[-1]
        assert any(last + " " + ans in n or last + ans in n for n in
                   (" ".join(r["text"].split()) for r in held if r["category"] == it["subject"])), (k, it)
EOP
check "MANIFEST.json: line counts and sha256 of every output" $PY - "$T/a" <<'EOP'
import hashlib, json, os, sys
D = sys.argv[1]
m = json.load(open(f"{D}/MANIFEST.json"))
outs = sorted(os.path.relpath(os.path.join(r, f), D) for r, _, fs in os.walk(D) for f in fs
              if f != "MANIFEST.json")
assert sorted(m["files"]) == outs, (sorted(m["files"]), outs)
for p, e in m["files"].items():
    b = open(f"{D}/{p}", "rb").read()
    assert e["sha256"] == hashlib.sha256(b).hexdigest() and e["lines"] == b.count(b"\n"), p
for lang, subj in m["mc"].items():
    assert sum(c["dev"] + c["test"] for c in subj.values()) == m["files"][f"mc/{lang}.jsonl"]["lines"]
for cat, c in m["categories"].items():
    assert m["files"][f"train/{c['lang']}/{cat}.jsonl"]["lines"] == c["train_docs"], cat
    assert c["train_docs"] + c["heldout_docs"] + c["train_dropped_overlap"] == c["docs"] <= 120, (cat, c)
EOP
$ES --seed 2 --out "$T/c" > "$T/c.log" 2>&1
check "another --seed draws other held-out documents and items" \
  bash -c "test -s '$T/c/mc/en.jsonl' && test -s '$T/c/heldout/zh.jsonl' && ! cmp -s '$T/a/mc/en.jsonl' '$T/c/mc/en.jsonl' && ! cmp -s '$T/a/heldout/zh.jsonl' '$T/c/heldout/zh.jsonl'"
finish
