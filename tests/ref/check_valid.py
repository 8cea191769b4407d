"""check_valid.py — lamina's held-out evaluation (val_loss, val_bpb,
val_by_category in the metrics, SPEC §6) against an independent float64
forward (llama_ref.py) on the same samples, from the checkpoint of the same
step.

  check_valid.py CKPT VALID.h5 METRICS.jsonl STEP SEQ_LEN N_SAMPLES [TOL]

The reference: the first N_SAMPLES samples of VALID.h5 in file order (no
shuffle), each cut to SEQ_LEN+1 tokens; target t of a sample (predicting
token t+1) counts where /loss_mask[t+1] is 1 (all, without a mask); per
category the sum of cross-entropy (nats) over its targets and of
/samples/bytes (a sample without targets counts in neither); loss = sum CE / targets, bpb = sum CE / ln 2 / bytes.
Prints the worst relative difference; exit 1 beyond TOL (default 1e-5)."""
import json
import math
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import llama_ref as R  # noqa: E402


def main():
    ck, vf, mf, step, T, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    tol = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-5
    d = R.read_ckpt(ck)
    with h5py.File(ck, "r") as f:
        c = {k: f["config"].attrs[k] for k in f["config"].attrs}
    cfg = R.ModelCfg(dim=int(c["dim"]), n_layers=int(c["n_layers"]), n_heads=int(c["n_heads"]),
                     n_kv_heads=int(c["n_kv_heads"]), ffn_dim=int(c["ffn_dim"]), vocab_size=int(c["vocab_size"]),
                     max_seq_len=int(c["max_seq_len"]), norm_eps=float(c["norm_eps"]),
                     rope_theta=float(c["rope_theta"]), tie_embeddings=bool(c["tie_embeddings"]))
    P = R.to_torch(d["model"])
    with h5py.File(vf, "r") as f:
        toks = f["tokens"][()].astype(np.int64)
        offs = f["samples/offsets"][()]
        cat = f["samples/category"][()] if "samples/category" in f else np.zeros(len(offs) - 1, np.int32)
        names = list(f.attrs["categories"]) if "categories" in f.attrs else [vf.rsplit("/", 1)[-1][:-3]]
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in names]
        nbytes = f["samples/bytes"][()] if "samples/bytes" in f else None
        mask = f["loss_mask"][()] if "loss_mask" in f else None
    K = len(names)
    ce, nt, by = np.zeros(K), np.zeros(K), np.zeros(K)
    with torch.no_grad():
        for i in range(n):
            s = toks[offs[i]: offs[i + 1]][: T + 1]
            L = len(s)
            if L < 2:
                continue
            inp = torch.from_numpy(s[:-1]).unsqueeze(0)
            tgt = torch.from_numpy(s[1:])
            m = np.ones(L - 1, bool) if mask is None else mask[offs[i] + 1: offs[i] + L].astype(bool)
            logp = torch.log_softmax(R.forward_logits(P, cfg, inp)[0], dim=-1)
            nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).numpy()
            k = int(cat[i])
            if not m.any():
                continue  # every target masked: neither loss nor bytes
            ce[k] += nll[m].sum()
            nt[k] += m.sum()
            by[k] += nbytes[i] if nbytes is not None else 0
    rec = [json.loads(l) for l in open(mf)]
    rec = [r for r in rec if r["step"] == step and "val_loss" in r]
    if not rec:
        print(f"no val_loss at step {step} in {mf}")
        sys.exit(1)
    r = rec[-1]
    want = {"val_loss": ce.sum() / nt.sum(), "val_bpb": ce.sum() / math.log(2) / by.sum() if nbytes is not None else None}
    for k in range(K):
        want[f"{names[k]}.loss"] = ce[k] / nt[k] if nt[k] else None
        want[f"{names[k]}.bpb"] = ce[k] / math.log(2) / by[k] if nbytes is not None and nt[k] and by[k] else None
    have = {"val_loss": r["val_loss"], "val_bpb": r["val_bpb"]}
    for k in range(K):
        e = r["val_by_category"].get(names[k], {})
        have[f"{names[k]}.loss"] = e.get("loss")
        have[f"{names[k]}.bpb"] = e.get("bpb")
    worst, bad = 0.0, []
    for key, w in want.items():
        h = have[key]
        if w is None or h is None:
            if (w is None) != (h is None):
                bad.append(f"{key}: lamina {h}, reference {w}")
            continue
        rel = abs(h - w) / max(abs(w), 1e-30)
        worst = max(worst, rel)
        if rel > tol:
            bad.append(f"{key}: lamina {h!r}, reference {w!r} (rel {rel:.2e})")
    if sorted(r["val_by_category"]) != sorted(names):
        bad.append(f"categories {sorted(r['val_by_category'])} != {sorted(names)}")
    print(f"# worst rel diff {worst:.2e} over {len(want)} values ({int(nt.sum())} targets, {K} categories)")
    for b in bad:
        print(b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
