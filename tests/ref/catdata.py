"""catdata.py — token files with the optional datasets of SPEC §9 written
directly (categories, buckets, /samples/bytes, /loss_mask), for the stage
and validation tests, from text with lamina's byte tokenizer (ids = UTF-8
bytes, BOS 256, EOS 257; vocabulary 258).

  catdata.py OUT.h5 [--seed S] [--cats a,b,c] [--docs N] [--bins K]
             [--no-bytes] [--mask none|half|all-of-first] [--min-len L] [--max-len L]

Each category gets N documents of random words from a vocabulary of its
own (so the categories' losses differ); a document is one sample
[BOS] + bytes + [EOS]; samples are grouped by bucket (bucket b = bin b of
every category, bins by document index mod K) and, within a bucket, by
category. --mask half masks the first half of each sample's targets;
all-of-first masks every target of the samples of the first category.
"""
import argparse
import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cats", default="news,code,chat")
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--bins", type=int, default=1)
    ap.add_argument("--no-bytes", action="store_true")
    ap.add_argument("--mask", default="none")
    ap.add_argument("--min-len", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=60)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    cats = a.cats.split(",")
    docs = []  # (bin, cat, text bytes)
    for k, c in enumerate(cats):
        letters = "abcdefghijklmnopqrstuvwxyz"[k * 7 % 26:] + "äöü"[: k % 3]
        words = ["".join(rng.choice(list(letters), size=rng.integers(2, 7))) for _ in range(30)]
        for i in range(a.docs):
            text, n = [], int(rng.integers(a.min_len, a.max_len))
            while len(" ".join(text).encode()) < n:
                text.append(str(rng.choice(words)))
            docs.append((i % a.bins, k, " ".join(text).encode()))
    docs.sort(key=lambda d: (d[0], d[1]))
    samples = [[256] + list(t) + [257] for _, _, t in docs]
    toks = np.concatenate([np.asarray(s, np.uint32) for s in samples])
    offs = np.zeros(len(samples) + 1, np.int64)
    offs[1:] = np.cumsum([len(s) for s in samples])
    bucket_off = np.searchsorted([d[0] for d in docs], np.arange(a.bins + 1), side="left").astype(np.int64)
    bucket_off[-1] = len(docs)
    with h5py.File(a.out, "w") as f:
        f.attrs["format"] = "lamina-tokens"
        f.attrs["version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(258)
        f.create_dataset("tokens", data=toks)
        f.create_dataset("samples/offsets", data=offs)
        f.create_dataset("samples/category", data=np.asarray([d[1] for d in docs], np.int32))
        f.attrs.create("categories", cats, dtype=h5py.string_dtype("utf-8"))
        if not a.no_bytes:
            f.create_dataset("samples/bytes", data=np.asarray([len(d[2]) for d in docs], np.int64))
        if a.bins > 1:
            f.create_dataset("buckets/offsets", data=bucket_off)
        if a.mask != "none":
            m = np.ones(len(toks), np.uint8)
            for i, (_, k, _) in enumerate(docs):
                lo, hi = offs[i], offs[i + 1]
                if a.mask == "half":
                    m[lo: lo + (hi - lo) // 2] = 0
                elif a.mask == "all-of-first" and k == 0:
                    m[lo:hi] = 0
            f.create_dataset("loss_mask", data=m)


if __name__ == "__main__":
    main()
