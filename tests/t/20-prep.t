#!/bin/bash
# lamina prep: text with separators, JSONL, packing limits, bad input.
source tests/lib.sh
plan 11
printf 'alpha beta\n%%\n  \n%%\nsecond doc\nwith two lines\n%%\n%s\n' "$(head -c 300 /dev/zero | tr '\0' x)" > "$T/a.txt"
lam 1 prep --seq-len 16 --doc-sep % -o "$T/a.h5" "$T/a.txt"
[ "$rc" = 0 ] && ok "prep text exits 0" || notok "prep text exits 0" "$(cat "$T/out")"
check "token file: attributes, BOS/EOS per document, samples <= seq_len+1, every token kept" $PY - "$T/a.h5" <<'EOP'
import h5py, sys
f = h5py.File(sys.argv[1], "r")
fmt = f.attrs["format"]; fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
assert fmt == "lamina-tokens" and int(f.attrs["version"]) == 1 and int(f.attrs["vocab_size"]) == 258, dict(f.attrs)
tok = f["tokens"][:]; off = f["samples/offsets"][:]
assert off[0] == 0 and off[-1] == len(tok) and (off[1:] >= off[:-1]).all()
assert ((off[1:] - off[:-1]) <= 17).all(), "a sample exceeds seq_len+1"
docs = [b"alpha beta\n", b"second doc\nwith two lines\n", b"x" * 300 + b"\n"]
assert (tok == 256).sum() == 3 and (tok == 257).sum() == 3, "BOS/EOS count"
assert len(tok) == sum(len(d) + 2 for d in docs), (len(tok), sum(len(d) + 2 for d in docs))
assert sorted(tok[tok < 256].tolist()) == sorted(b"".join(docs)), "bytes differ"
EOP
printf '{"text": "héllo wörld"}\n\n{"text": "床前明月光", "meta": 1}\n' > "$T/b.jsonl"
lam 1 prep --seq-len 64 -o "$T/b.h5" "$T/b.jsonl"
check "JSONL: one document per line, UTF-8 bytes kept" $PY - "$T/b.h5" <<'EOP'
import h5py, sys
f = h5py.File(sys.argv[1], "r"); tok = f["tokens"][:]; off = f["samples/offsets"][:]
text = bytes(t for t in tok.tolist() if t < 256).decode()
assert sorted(text) == sorted("héllo wörld\u5e8a\u524d\u660e\u6708\u5149"), text
assert len(off) == 2, "two short docs pack into one sample"
EOP
printf '{"text": "ok"}\n{"txt": 3}\n' > "$T/bad.jsonl"
lam 1 prep --seq-len 16 -o "$T/c.h5" "$T/bad.jsonl"
expect_fail 2 "bad.jsonl:2" "bad JSONL line: exit 2 naming file:line"
printf '{"text": "ok"\n' > "$T/bad2.jsonl"
lam 1 prep --seq-len 16 -o "$T/c.h5" "$T/bad2.jsonl"
expect_fail 2 "bad2.jsonl:1" "malformed JSON: exit 2 naming file:line"
lam 1 prep --seq-len 16 -o "$T/c.h5" "$T/missing.txt"
expect_fail 2 "missing.txt" "missing input: exit 2 naming it"
lam 1 prep --seq-len abc -o "$T/c.h5" "$T/a.txt"
expect_fail 2 "seq-len" "bad --seq-len: exit 2"
lam 1 prep --seq-len 16 "$T/a.txt"
expect_fail 2 "\-o OUT.h5 is required" "missing -o: exit 2"
lam 2 prep --seq-len 16 --bogus -o "$T/c.h5" "$T/a.txt"
expect_fail 2 "unknown option --bogus" "unknown option on 2 ranks: exit 2"
lam 1 prep --seq-len 16 "$T/a.txt" -o
expect_fail 2 "prep: -o needs a value (usage: lamina prep" "-o without its value: exit 2 naming it and the usage"
lam 1 prep "$T/a.txt" -o "$T/c.h5" --seq-len
expect_fail 2 "prep: --seq-len needs a value" "--seq-len without its value: exit 2"
finish
