"""prep_ref.py — an independent model of `lamina prep`'s output (SPEC §4, §9)
for tests/t/74-prep-*.t: from the inputs and the list of dropped documents
(--rejected), recompute every dataset of the token file (byte tokenizer) and
compare.

    python3 prep_ref.py check OUT.h5 REJECTED.jsonl SEQ_LEN BINS SEED VALID_FRACTION SET INPUT...

INPUT is CATEGORY:FORMAT:PATH (CATEGORY '-' for none; FORMAT jsonl, text:SEP (documents
between lines equal to SEP) or whole (the file is one document));
SET is train or valid. Prints a summary; exits 1 on the first difference.
"""
import json
import math
import sys

M = (1 << 64) - 1
PHI = 0x9E3779B97F4A7C15


def mix64(z):
    z &= M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def rmix(z):  # rng_mix64
    return mix64((z + PHI) & M)


def fnv(b):
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & M
    return h


def stream(seed, name):
    return rmix(seed ^ rmix(fnv(name.encode())))


def below(key, i, n):
    return (rmix(key ^ rmix(i)) * n) >> 64


def shuffle(n, key):
    a = list(range(n))
    for i in range(n - 1, 0, -1):
        j = below(key, i, i + 1)
        a[i], a[j] = a[j], a[i]
    return a


def cat_key(seed, what, name):
    return rmix(stream(seed, what) ^ fnv(name.encode()))


def blank(b):
    return all(c in b" \n\r\t" for c in b)


def read_docs(inputs):
    """Documents in global order: dicts with file, line, category, text (bytes),
    src (bytes of the source part, or None)."""
    docs = []
    for spec in inputs:
        cat, rest = spec.split(":", 1)
        cat = None if cat == "-" else cat
        if rest.startswith("text:"):
            sepstr, path = rest[len("text:"):].split(":", 1)
            fmt = "text:" + sepstr
        else:
            fmt, path = rest.split(":", 1)
        data = open(path, "rb").read()
        if fmt == "jsonl":
            line = 0
            for raw in data.split(b"\n"):
                line += 1
                if raw.strip(b" \t\r") == b"":
                    continue
                o = json.loads(raw)
                if "text" in o:
                    text, src = o["text"].encode(), None
                else:
                    s, t = o["source"].encode(), o["target"].encode()
                    text, src = s + t, len(s)
                if blank(text):
                    continue
                docs.append(dict(file=path, line=line, category=o.get("category") or cat, text=text, src=src))
        else:
            sep = fmt[len("text:"):].encode() if fmt.startswith("text:") else None
            spans = []
            if sep is None:
                spans.append((0, len(data)))
            else:
                doc, pos, n = 0, 0, len(data)
                while pos <= n:
                    e = data.find(b"\n", pos)
                    e = n if e < 0 else e
                    le = e - 1 if e > pos and data[e - 1:e] == b"\r" else e
                    if data[pos:le] == sep:
                        spans.append((doc, pos - doc))
                        doc = e + 1
                    pos = e + 1
                if doc < n:
                    spans.append((doc, n - doc))
            for at, ln in spans:
                text = data[at:at + ln]
                if ln == 0 or blank(text):
                    continue
                docs.append(dict(file=path, line=data.count(b"\n", 0, at) + 1, category=cat, text=text, src=None))
    return docs


def first_fit_decreasing(lens, cap):
    order = sorted(range(len(lens)), key=lambda i: (-lens[i], i))
    room, bin_of = [], [0] * len(lens)
    for i in order:
        for b, r in enumerate(room):
            if r >= lens[i]:
                break
        else:
            b = len(room)
            room.append(cap)
        room[b] -= lens[i]
        bin_of[i] = b
    return bin_of, order, len(room)


def expected(inputs, rejected, seq_len, bins, seed, vf, which):
    docs = read_docs(inputs)
    dropped = set()
    for l in open(rejected):
        r = json.loads(l)
        dropped.add((r["file"], r["line"]))
    cats = []
    if all(d["category"] is None for d in docs):
        for d in docs:
            d["category"] = "default"
    for d in docs:
        if d["category"] not in cats:
            cats.append(d["category"])
    C = len(cats)
    kept = [d for d in docs if (d["file"], d["line"]) not in dropped]
    assert len(kept) + len(dropped) == len(docs), "rejected names documents that do not exist"
    # validation hold-out, then bins
    for c, name in enumerate(cats):
        mine = [d for d in kept if d["category"] == name]
        n = len(mine)
        v = int(math.floor(vf * n + 0.5)) if vf > 0 else 0
        sel = set(shuffle(n, cat_key(seed, "prep.valid", name))[:v]) if vf > 0 else set()
        train = []
        for j, d in enumerate(mine):
            d["bin"] = -1 if j in sel else 0
            if j not in sel:
                train.append(d)
        perm = shuffle(len(train), cat_key(seed, "prep.bins", name))
        for i, t in enumerate(perm):
            train[t]["bin"] = i % bins
    K = 1 if which == "valid" else bins
    mset = [d for d in kept if (d["bin"] < 0) == (which == "valid")]
    cap = seq_len + 1
    pieces = []  # (group, tokens, mask, bytes)
    for d in mset:
        b = 0 if which == "valid" else d["bin"]
        g = b * C + cats.index(d["category"])
        tok = [256] + list(d["text"]) + [257]
        src = d["src"] if d["src"] is not None else -1
        mask = [0 if k < src + 1 else 1 for k in range(len(tok))] if src >= 0 else [1] * len(tok)
        rest = len(d["text"])
        for o in range(0, len(tok), cap):
            pt = tok[o:o + cap]
            last = o + cap >= len(tok)
            by = rest if last else min(rest, sum(1 for t in pt if t < 256))
            rest -= by
            pieces.append((g, pt, mask[o:o + cap], by))
    tokens, mask, offsets, scat, sbytes, bucket = [], [], [0], [], [], []
    for g in range(K * C):
        if g % C == 0:
            bucket.append(len(scat))
        gp = [p for p in pieces if p[0] == g]
        bin_of, order, nb = first_fit_decreasing([len(p[1]) for p in gp], cap)
        samples = [[] for _ in range(nb)]
        for i in order:
            samples[bin_of[i]].append(gp[i])
        for s in samples:
            for p in s:
                tokens += p[1]
                mask += p[2]
            offsets.append(len(tokens))
            scat.append(g % C)
            sbytes.append(sum(p[3] for p in s))
    bucket.append(len(scat))
    any_sft = any(d["src"] is not None for d in mset)
    return dict(cats=cats, tokens=tokens, mask=mask if any_sft else None, offsets=offsets, scat=scat, sbytes=sbytes,
                bucket=bucket if which == "train" else None, kept=mset)


def check(path, exp):
    import h5py
    import numpy as np
    f = h5py.File(path, "r")
    cats = [c.decode() if isinstance(c, bytes) else str(c) for c in f.attrs["categories"]]
    assert cats == exp["cats"], f"categories {cats} != {exp['cats']}"
    tok = f["tokens"][()]
    assert tok.tolist() == exp["tokens"], f"tokens differ ({len(tok)} vs {len(exp['tokens'])})"
    assert f["samples/offsets"][()].tolist() == exp["offsets"], "offsets differ"
    assert f["samples/category"][()].tolist() == exp["scat"], "sample categories differ"
    assert f["samples/bytes"][()].tolist() == exp["sbytes"], "sample bytes differ"
    if exp["bucket"] is None:
        assert "buckets" not in f, "a validation file has /buckets"
    else:
        assert f["buckets/offsets"][()].tolist() == exp["bucket"], f"buckets {f['buckets/offsets'][()].tolist()} != {exp['bucket']}"
    if exp["mask"] is None:
        assert "loss_mask" not in f, "/loss_mask without SFT documents"
    else:
        assert f["loss_mask"][()].tolist() == exp["mask"], "loss mask differs"
    # invariants, stated directly as well
    n_doc_tok = sum(len(d["text"]) + 2 for d in exp["kept"])
    assert len(tok) == n_doc_tok, f"{len(tok)} tokens, the kept documents have {n_doc_tok}"
    off = exp["offsets"]
    for i in range(len(off) - 1):
        assert off[i + 1] - off[i] <= int(f.attrs["seq_len"]) + 1
    return f"{len(exp['kept'])} documents, {len(tok)} tokens, {len(off) - 1} samples, buckets {exp['bucket']}"


if __name__ == "__main__":
    if sys.argv[1] == "check":
        out, rej, seq_len, bins, seed, vf, which = sys.argv[2:9]
        exp = expected(sys.argv[9:], rej, int(seq_len), int(bins), int(seed), float(vf), which)
        print(check(out, exp))
