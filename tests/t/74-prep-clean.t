#!/bin/bash
# lamina prep --clean (issue 18 item 1): crafted documents per category, a
# rules file with a [default] override and a per-category one; --stats
# counts documents and bytes into and out of every rule per category;
# --rejected names the rule; the cleaned (NFKC) text is what is tokenized;
# the same on 2 ranks; --clean=FILE and --clean FILE.ini are one thing;
# --clean alone uses the built-in thresholds.
source tests/lib.sh
plan 6
$PY - "$T" <<'EOP'
import json, random, sys
T = sys.argv[1]; R = random.Random(1)
def word(): return "".join(R.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
def prose(n=60): return " ".join(word() for _ in range(n)) + "."
good = prose()
docs = [("web", good, "keep"),
        ("web", "hello there friend", "min_words"),
        ("web", " ".join(word() for _ in range(60)) + " " + " ".join("%05d" % R.randrange(99999) for _ in range(26)), "max_digit_frac"),
        ("web", " ".join(word() + "!!" for _ in range(60)), "max_punct_frac"),
        ("web", "\n".join(" ".join(word() for _ in range(6)) + "..." for _ in range(10)), "max_ellipsis_line_frac"),
        ("web", prose().replace("a", "\uff41"), "keep"),                       # fullwidth a: NFKC gives a
        ("code", " ".join(word() + "!!" for _ in range(60)), "keep"),          # code: max_punct_frac off
        ("code", prose(), "keep"),
        ("web", good, "dedup_exact")]
with open(f"{T}/in.jsonl", "w") as f:
    for c, t, _ in docs: f.write(json.dumps({"text": t, "category": c}) + "\n")
json.dump([d[2] for d in docs], open(f"{T}/want.json", "w"))
EOP
printf '; test rules\n[default]\nmin_words = 5\n\n[category.code]\nmax_punct_frac = off\n' > "$T/rules.ini"
lam 1 prep --seq-len 64 --clean "$T/rules.ini" --stats "$T/s1.json" --rejected "$T/r1.jsonl" -o "$T/c1.h5" "$T/in.jsonl"
check "--rejected: each crafted document dropped by its rule, the others kept" $PY - "$T/r1.jsonl" "$T/want.json" <<'EOP'
import json, sys
want = json.load(open(sys.argv[2]))
got = {json.loads(l)["line"]: json.loads(l)["rule"] for l in open(sys.argv[1])}
exp = {i + 1: w for i, w in enumerate(want) if w != "keep"}
assert got == exp, (got, exp)
EOP
check "--stats: per category and rule, documents and bytes in, dropped and out" $PY - "$T/s1.json" <<'EOP'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["stages"][0] == "max_invalid_utf8_frac" and s["stages"][-1] == "dedup_exact" and s["clean"].endswith("rules.ini")
w, c = s["categories"]["web"], s["categories"]["code"]
drops = {k: v["documents_dropped"] for k, v in w["rules"].items() if v["documents_dropped"]}
assert drops == {"min_words": 1, "max_digit_frac": 1, "max_punct_frac": 1, "max_ellipsis_line_frac": 1, "dedup_exact": 1}, drops
assert (w["documents_in"], w["documents_out"], c["documents_in"], c["documents_out"]) == (7, 2, 2, 2)
# chained: each rule's in is the previous rule's out, documents and bytes
for cat in (w, c):
    prev_d, prev_b = cat["documents_in"], cat["bytes_in"]
    for k in s["stages"]:
        r = cat["rules"][k]
        assert (r["documents_in"], r["bytes_in"]) == (prev_d, prev_b), k
        assert r["documents_out"] == r["documents_in"] - r["documents_dropped"] and r["bytes_out"] == r["bytes_in"] - r["bytes_dropped"]
        prev_d, prev_b = r["documents_out"], r["bytes_out"]
    assert (prev_d, prev_b) == (cat["documents_out"], cat["bytes_out"])
assert s["rules"]["max_punct_frac"]["documents_dropped"] == 1 and s["documents_in"] == 9 and s["documents_out"] == 4
assert w["train"]["documents"] == 2 and c["train"]["documents"] == 2
EOP
check "the tokens are the normalised text: no fullwidth letters, every kept byte ASCII" $PY -c '
import h5py, sys
t = h5py.File(sys.argv[1], "r")["tokens"][()]
body = bytes(int(x) for x in t if x < 256)
assert body.isascii() and b"\xef\xbd\x81" not in body, body[:80]
assert (t == 256).sum() == 4
' "$T/c1.h5"
lam 2 prep --seq-len 64 --clean="$T/rules.ini" --stats "$T/s2.json" --rejected "$T/r2.jsonl" -o "$T/c2.h5" "$T/in.jsonl"
if [ "$rc" = 0 ] && cmp -s "$T/s1.json" "$T/s2.json" && cmp -s "$T/r1.jsonl" "$T/r2.jsonl" &&
   cmp -s <(h5dump -d /tokens "$T/c1.h5" | tail -n +3) <(h5dump -d /tokens "$T/c2.h5" | tail -n +3)
then ok "2 ranks, --clean=FILE: the same stats, rejected list and tokens"; else notok "2 ranks --clean=" "$(tail -2 "$T/out")"; fi
lam 1 prep --seq-len 64 --clean --rejected "$T/r3.jsonl" -o "$T/c3.h5" "$T/in.jsonl"
check "--clean alone: the built-in thresholds (min_words 50; code's punctuation doc dropped too)" $PY -c '
import json, sys
got = {json.loads(l)["line"]: json.loads(l)["rule"] for l in open(sys.argv[1])}
assert got[2] == "min_words" and got[7] == "max_punct_frac" and got[4] == "max_punct_frac" and 1 not in got and 8 not in got, got
' "$T/r3.jsonl"
printf '[default]\nmin_words = 5\nmin_wordz = 3\n' > "$T/bad.ini"
lam 2 prep --seq-len 64 --clean "$T/bad.ini" -o "$T/c4.h5" "$T/in.jsonl"
expect_fail 2 "bad.ini:3: unknown key default.min_wordz" "an unknown rule name: exit 2 naming FILE:LINE and the key"
finish
