#!/bin/bash
# lamina prep, bad input (issue 18): exit 2 on every rank, the message
# naming the file and line (counted across the ranks' byte ranges) or the
# flag: a JSONL line that does not parse, one without text or with a bad
# category, a document without a category when others have one, bad flag
# values, --category with no file after it, nothing left after dedup.
source tests/lib.sh
plan 13
$PY - "$T" <<'EOP'
import json, sys
T = sys.argv[1]
with open(f"{T}/big.jsonl", "w") as f:                 # line 700 is bad: far into the last rank's range
    for i in range(1, 801):
        f.write('{"text": "broken\n' if i == 700 else json.dumps({"text": f"document number {i} " * 3}) + "\n")
with open(f"{T}/cat.jsonl", "w") as f:
    for i in range(1, 301):
        o = {"text": f"doc {i} " * 4}
        if i != 250: o["category"] = "web"
        f.write(json.dumps(o) + "\n")
with open(f"{T}/badcat.jsonl", "w") as f:
    f.write(json.dumps({"text": "a b c", "category": "ok"}) + "\n")
    f.write(json.dumps({"text": "a b c d", "category": 7}) + "\n")
EOP
printf 'plain text\n%%\nmore text\n' > "$T/t.txt"
lam 3 prep --seq-len 32 -o "$T/o.h5" "$T/big.jsonl"
expect_fail 2 "big.jsonl:700:" "a broken JSON line on 3 ranks: exit 2 naming big.jsonl:700"
lam 1 prep --seq-len 32 -o "$T/o.h5" "$T/big.jsonl"
expect_fail 2 "big.jsonl:700:" "the same on 1 rank"
lam 3 prep --seq-len 32 -o "$T/o.h5" "$T/cat.jsonl"
expect_fail 2 "cat.jsonl:250: the document has no category" "a document without a category among categorised ones: file:line"
lam 2 prep --seq-len 32 --doc-sep % -o "$T/o.h5" "$T/t.txt" --category web "$T/cat.jsonl"
expect_fail 2 "t.txt:1: the document has no category" "a text file before the first --category has none: file:line"
lam 2 prep --seq-len 32 --doc-sep % -o "$T/o.h5" --category web "$T/cat.jsonl" --category notes "$T/t.txt"
if [ "$rc" = 0 ] && $PY -c 'import h5py,sys; f=h5py.File(sys.argv[1]); c=[x.decode() if isinstance(x,bytes) else x for x in f.attrs["categories"]]; sys.exit(0 if c==["web","notes"] else 1)' "$T/o.h5"
then ok "--category before each file: categories web (line 250 gets the flag's) and notes"; else notok "--category per file" "$(tail -2 "$T/out")"; fi
lam 2 prep --seq-len 32 -o "$T/o.h5" "$T/badcat.jsonl"
expect_fail 2 "badcat.jsonl:2: \"category\" must be a string" "a category that is not a string: file:line"
lam 1 prep --seq-len 32 --bins 0 -o "$T/o.h5" "$T/t.txt"
expect_fail 2 "prep: --bins '0': expected an integer in \[1, 1000000\]" "--bins 0: exit 2 naming the flag"
lam 2 prep --seq-len 32 --valid-fraction 1 -o "$T/o.h5" "$T/t.txt"
expect_fail 2 "prep: --valid-fraction '1'" "--valid-fraction 1: exit 2"
lam 1 prep --seq-len 32 --dedup fuzzy -o "$T/o.h5" "$T/t.txt"
expect_fail 2 "prep: --dedup 'fuzzy': expected exact, near or none" "--dedup fuzzy: exit 2"
lam 1 prep --seq-len 32 --dedup-threshold 0 -o "$T/o.h5" "$T/t.txt"
expect_fail 2 "prep: --dedup-threshold '0'" "--dedup-threshold 0: exit 2"
lam 2 prep --seq-len 32 -o "$T/o.h5" "$T/t.txt" --category late
expect_fail 2 "prep: --category late: no input file follows it" "--category after the last file: exit 2"
printf '{"text": "same"}\n' > "$T/d1.jsonl"
lam 1 prep --seq-len 32 -o "$T/d1.h5" "$T/d1.jsonl"
lam 2 prep --seq-len 32 --dedup-against "$T/d1.h5" -o "$T/o2.h5" "$T/d1.jsonl"
expect_fail 2 "prep: no document is left for" "every document a duplicate of the earlier file: exit 2"
lam 1 prep --seq-len 32 --valid-out "$T/v.h5" -o "$T/o.h5" "$T/t.txt"
expect_fail 2 "prep: --valid-out needs --valid-fraction" "--valid-out without --valid-fraction: exit 2"
finish
