#!/usr/bin/python3
"""check_trainable.py — train.trainable = embeddings against float64 torch.

The reference trains with requires_grad=False on every tensor but
model.embed_tokens.weight and lm_head.weight (Colossal-LLaMA-2's
--freeze_non_embeds_params): AdamW over those tensors only, gradient
clipping by the global norm of their gradients only (what
torch.nn.utils.clip_grad_norm_ computes when the frozen parameters have no
.grad), weight decay on them only. lamina runs the same 3 steps from the same
init (tests/ref/llama_ref.py's files), on one rank and on the layouts given
by --layouts, and must agree within check_train.py's tolerances:

  * per step: loss (rel < 1e-4), grad_norm (rel < 1e-3);
  * every frozen tensor in the checkpoint bit-identical to the init (float32);
  * the trained tensors' update (||d_lam - d_ref|| / ||d_ref|| < 2e-3) and
    moments (rel < 1e-3); the frozen tensors' moments stored as zeros.

Cases: untied (clip active, weight decay 0.1) and tied embeddings (the table
is both the input embedding and the lm_head). TAP output; exit 1 on failure.
Run from the repo root: /usr/bin/python3 tests/ref/check_trainable.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import llama_ref as R  # noqa: E402
from check_train import deck_text, rel, tensor_rel  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LAMINA = os.environ.get("LAMINA", os.path.join(ROOT, "build", "lamina"))
TOL_LOSS, TOL_GNORM, TOL_UPDATE, TOL_MOM = 1e-4, 1e-3, 2e-3, 1e-3
TRAINED = ("model.embed_tokens.weight", "lm_head.weight")

results = []


def tap(ok, name, *diag):
    results.append((bool(ok), name, [d for d in diag if d]))


def train_frozen(cfg, tc, p0, samples):
    """tc.steps steps with only TRAINED tensors requiring gradients."""
    P = R.to_torch(p0)
    names = [n for n, _ in R.param_shapes(cfg) if n in TRAINED]
    opt = R.AdamW([(n, s) for n, s in R.param_shapes(cfg) if n in TRAINED], tc.beta1, tc.beta2, tc.eps,
                  tc.weight_decay)
    recs = []
    for s in range(1, tc.steps + 1):
        inp, tgt, mask, _ = R.make_batch(samples, R.step_indices(s, tc.global_batch, len(samples)), tc.seq_len)
        Pg = {k: v.detach().clone().requires_grad_(k in names) for k, v in P.items()}
        count, total = int(mask.sum()), 0.0
        for r in range(0, inp.shape[0], tc.micro_batch):
            ce = R.ce_sum(Pg, cfg, inp[r:r + tc.micro_batch], tgt[r:r + tc.micro_batch], mask[r:r + tc.micro_batch])
            (ce / count).backward()
            total += float(ce)
        frozen_grads = [k for k, v in Pg.items() if k not in names and v.grad is not None]
        assert not frozen_grads, frozen_grads
        g = {n: Pg[n].grad.detach().clone() for n in names}
        norm = R.clip_grads(g, tc.grad_clip)
        lr = R.lr_at(s, tc.lr, tc.min_lr, tc.warmup_steps, tc.steps, tc.lr_schedule)
        P.update(opt.step({n: P[n] for n in names}, g, lr))
        recs.append(dict(step=s, loss=total / count, grad_norm=norm))
    return recs, P, opt


def run(work, tag, cfg, tc, init, data, np_, ovr):
    d = os.path.join(work, tag)
    os.makedirs(d)
    ckdir, metrics, deck = os.path.join(d, "ckpt"), os.path.join(d, "m.jsonl"), os.path.join(d, "deck.in")
    with open(deck, "w") as f:
        f.write(deck_text(cfg, tc, init, data, ckdir, metrics))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(np_), LAMINA, "train", deck,
           "train.trainable=embeddings", *ovr]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    if p.returncode != 0:
        return None, None, f"exit {p.returncode}: " + " | ".join((p.stdout + p.stderr).strip().splitlines()[-6:])
    with open(metrics) as f:
        m = [json.loads(line) for line in f if line.strip()]
    return m, R.read_ckpt(R.latest_ckpt(ckdir)), ""


def check(label, cfg, tc, p0, recs, P, opt, m, ck):
    lw = max(rel(x["loss"], r["loss"]) for x, r in zip(m, recs)) if len(m) == len(recs) else float("inf")
    gw = max(rel(x["grad_norm"], r["grad_norm"]) for x, r in zip(m, recs)) if len(m) == len(recs) else float("inf")
    tap(lw < TOL_LOSS and gw < TOL_GNORM, f"{label}: per-step loss and grad_norm (rel < {TOL_LOSS:g}, {TOL_GNORM:g})",
        f"loss rel {lw:.2e}, grad_norm rel {gw:.2e}; lamina {[round(x['grad_norm'], 6) for x in m]}"
        f" ref {[round(r['grad_norm'], 6) for r in recs]}")
    moved, frozen_bad, mom_bad, uw, mw = [], [], [], 0.0, 0.0
    for n, _ in R.param_shapes(cfg):
        lam, w0 = ck["model"][n], p0[n].astype(np.float64)
        if n in TRAINED:
            uw = max(uw, tensor_rel(lam - w0, P[n].numpy() - w0))
            mw = max(mw, tensor_rel(ck["exp_avg"][n], opt.m[n].numpy()),
                     tensor_rel(ck["exp_avg_sq"][n], opt.v[n].numpy()))
            moved.append(bool(np.any(lam != w0)))
        else:
            if not np.array_equal(lam.astype(np.float32), p0[n]):
                frozen_bad.append(n)
            if np.any(ck["exp_avg"][n] != 0) or np.any(ck["exp_avg_sq"][n] != 0):
                mom_bad.append(n)
    tap(not frozen_bad and all(moved), f"{label}: frozen tensors bit-identical to the init, trained ones moved",
        f"changed: {frozen_bad[:4]}" if frozen_bad else "", "" if all(moved) else "a trained tensor did not move")
    tap(uw < TOL_UPDATE and mw < TOL_MOM and not mom_bad,
        f"{label}: trained tensors' update and moments; frozen moments zero",
        f"update rel {uw:.2e} (tol {TOL_UPDATE:g}), moments rel {mw:.2e} (tol {TOL_MOM:g})",
        f"frozen with nonzero moments: {mom_bad[:4]}" if mom_bad else "")
    return lw, gw


def main():
    torch.set_num_threads(1)
    layouts = [("1 rank", 1, [])]
    if "--layouts" in sys.argv:
        layouts += [("dp 2 ZeRO-2", 2, ["parallel.zero=2"]), ("tp 2", 2, ["parallel.tp=2"]),
                    ("pp 2", 2, ["parallel.pp=2"])]
    cases = [
        ("untied", R.ModelCfg(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=70,
                              max_seq_len=16), 0.05, 21),
        ("tied", R.ModelCfg(dim=32, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=40, vocab_size=64,
                            max_seq_len=16, tie_embeddings=True), 1.0, 22),
    ]
    work = tempfile.mkdtemp(prefix="lamina-trainable-")
    worst = [0.0, 0.0]
    try:
        for label, cfg, clip, seed in cases:
            rng = np.random.default_rng(seed)
            samples = [rng.integers(0, cfg.vocab_size, L) for L in [17, 5, 1, 12, 17, 9, 2, 16, 25, 13]]
            data, init = os.path.join(work, f"{label}.tok.h5"), os.path.join(work, f"{label}.init.h5")
            R.write_token_file(data, samples, cfg.vocab_size)
            p0 = R.random_params(cfg, seed + 100, std=0.1)
            R.write_init_ckpt(init, cfg, p0)
            tc = R.TrainCfg(steps=3, seq_len=16, micro_batch=2, global_batch=4, lr=1e-2, weight_decay=0.1,
                            grad_clip=clip)
            recs, P, opt = train_frozen(cfg, tc, p0, samples)
            if clip < 1.0:  # the clip must be active for the check to mean something
                assert all(r["grad_norm"] > clip for r in recs), [r["grad_norm"] for r in recs]
            for lname, np_, ovr in layouts:
                tag = f"{label}-{lname.replace(' ', '')}"
                m, ck, err = run(work, tag, cfg, tc, init, data, np_, ovr)
                lab = f"{label} embeddings-only, {lname} (clip {clip:g}, wd 0.1)"
                tap(not err, f"{lab}: lamina train, 3 steps", err)
                if not err:
                    lw, gw = check(lab, cfg, tc, p0, recs, P, opt, m, ck)
                    worst = [max(worst[0], lw), max(worst[1], gw)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"1..{len(results)}")
    bad = 0
    for i, (ok, name, diag) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for d in diag:
            print(f"#   {d}")
        bad += not ok
    print(f"# worst rel diff to the float64 reference: loss {worst[0]:.3e}, grad_norm {worst[1]:.3e}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
