#!/usr/bin/python3
"""bench_tokens.py PATH VOCAB SEQ — a token file (SPEC §4) of 256 random
full-length samples (SEQ+1 tokens, no padding) for the benchmarks, so that
lamina and PyTorch do the same work."""
import sys

import h5py
import numpy as np

path, V, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 256
rng = np.random.default_rng(0)
with h5py.File(path, "w") as f:
    f.attrs["format"] = "lamina-tokens"; f.attrs["version"] = 1; f.attrs["vocab_size"] = V
    f["tokens"] = rng.integers(0, V, n * (T + 1), dtype=np.uint32)
    f["samples/offsets"] = np.arange(n + 1, dtype=np.int64) * (T + 1)
