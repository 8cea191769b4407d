#!/usr/bin/python3
"""check_train.py — lamina's CPU backend against the float64 reference.

For four small shapes (MHA untied; GQA 4:2; one kv head with tied
embeddings; odd vocab 97 with head_dim 12), with padded samples of varying
length (one of length 1, i.e. no target, one longer than seq_len+1, which is
cut) and gradient accumulation, this script writes a random init checkpoint
and a token file, runs `build/lamina train` and compares with
tests/ref/llama_ref.py:

  * per step: loss (rel < 1e-4), grad_norm before clipping (rel < 1e-3),
    lr (rel < 1e-9), tokens (exact) from log.metrics;
  * after 3 AdamW steps: the weight UPDATE w_N - w_0 per tensor
    (||d_lamina - d_ref|| / ||d_ref|| < 2e-3; float32 lands near 1e-5..2e-4,
    dropping weight decay moves it by ~1.4e-2) and max |w_lamina - w_ref| <
    0.1 * sum(lr) (the size of the Adam updates); the moments exp_avg,
    exp_avg_sq (||a-b||/||b|| < 1e-3 per tensor);
  * a 1-step run with grad_clip 0 and weight_decay 0: exp_avg = (1-beta1) g,
    so every parameter's gradient is compared (||a-b||/||b|| < 1e-4);
  * recompute=true gives the same losses and grad norms (rel < 1e-6);
  * warmup 2 + cosine schedule with min_lr > 0: the lr field and the run;
  * data parallelism: the 3-step run again under mpirun with dp = 2, 3 or 4
    (whichever divide the global batch) and parallel.zero = 0, 1, 2 (and
    overlap_comm off for some), against the same reference and tolerances
    (the checkpoint is then written by shards from every rank), and against
    the single-rank run (the worst |loss difference| per layout is printed);
  * tensor parallelism: the same with tp = 2 and 4 (kv heads split or
    replicated, the vocabulary padded, tied embeddings), with and without
    sequence parallelism, and tp 2 x dp 2 with ZeRO-1 (checkpoints then
    written as row and column slices);
  * pipeline parallelism: pp 2 (1f1b) on every shape, and on a 4-layer
    shape with tied embeddings pp 4, interleaved 1F1B with 2 chunks per
    stage, pp 2 x tp 2 + sp and dp 2 x tp 2 x pp 2 with ZeRO-1 (8 ranks).

Output is TAP; the worst figures are printed as `# ` lines. Exits 1 on any
failure. Run from the repo root with /usr/bin/python3 (tests/t/30-torch-ref.t).
"""
import json
import math
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

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LAMINA = os.environ.get("LAMINA", os.path.join(ROOT, "build", "lamina"))

TOL_LOSS, TOL_GNORM, TOL_LR = 1e-4, 1e-3, 1e-9
TOL_UPDATE, TOL_WMAX, TOL_MOM, TOL_GRAD, TOL_RECOMP = 2e-3, 0.1, 1e-3, 1e-4, 1e-6

# ------------------------------------------------------------------ TAP
results = []          # (ok, name, [diag lines])
summary = {}          # figure -> worst value seen over all cases


def tap(ok, name, *diag):
    results.append((bool(ok), name, [d for d in diag if d]))


def worst(key, value):
    summary[key] = max(summary.get(key, 0.0), value)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


# ------------------------------------------------------------------ cases
def case_list():
    """(label, model, train settings, sample lengths, seed)."""
    C = []
    C.append(("a: MHA untied", R.ModelCfg(dim=32, n_layers=2, n_heads=4, n_kv_heads=4, ffn_dim=64,
                                          vocab_size=64, max_seq_len=16),
              dict(seq_len=16, micro_batch=2, global_batch=4, grad_clip=1.0),
              [17, 5, 1, 12, 17, 9, 2, 16, 25, 13], 11))
    C.append(("b: GQA 4/2", R.ModelCfg(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48,
                                       vocab_size=80, max_seq_len=16),
              dict(seq_len=16, micro_batch=2, global_batch=6, grad_clip=0.0),
              [9, 17, 1, 14, 3, 17, 11, 6, 17, 2, 16], 12))
    # micro-batch 2 of step 1 holds two length-1 samples: a micro-step with no target
    C.append(("c: 1 kv head, tied", R.ModelCfg(dim=32, n_layers=2, n_heads=4, n_kv_heads=1,
                                               ffn_dim=40, vocab_size=64, max_seq_len=16,
                                               norm_eps=1e-3, tie_embeddings=True),
              dict(seq_len=16, micro_batch=2, global_batch=4, grad_clip=1.0),
              [13, 17, 1, 1, 8, 17, 5, 30, 12], 13))
    C.append(("d: vocab 97, head_dim 12", R.ModelCfg(dim=48, n_layers=2, n_heads=4, n_kv_heads=2,
                                                     ffn_dim=72, vocab_size=97, max_seq_len=32,
                                                     rope_theta=500.0),
              dict(seq_len=32, micro_batch=3, global_batch=6, grad_clip=0.0),
              [33, 20, 1, 7, 33, 28, 2, 31, 15, 40, 33], 14))
    # 4 layers: pipeline layouts with up to 4 stages and 2 chunks per stage
    C.append(("e: 4 layers, GQA, tied", R.ModelCfg(dim=32, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=48,
                                                  vocab_size=70, max_seq_len=16, tie_embeddings=True),
              dict(seq_len=16, micro_batch=1, global_batch=4, grad_clip=1.0),
              [17, 5, 1, 12, 17, 9, 2, 16, 25, 13], 15))
    return C


def deck_text(cfg, tc, init, data, ckdir, metrics, recompute=False):
    b = lambda x: "true" if x else "false"  # noqa: E731
    return f"""; generated by tests/ref/check_train.py
[model]
dim = {cfg.dim}
n_layers = {cfg.n_layers}
n_heads = {cfg.n_heads}
n_kv_heads = {cfg.n_kv_heads}
ffn_dim = {cfg.ffn_dim}
vocab_size = {cfg.vocab_size}
max_seq_len = {cfg.max_seq_len}
norm_eps = {cfg.norm_eps!r}
rope_theta = {cfg.rope_theta!r}
tie_embeddings = {b(cfg.tie_embeddings)}
[train]
steps = {tc.steps}
seq_len = {tc.seq_len}
micro_batch = {tc.micro_batch}
global_batch = {tc.global_batch}
lr = {tc.lr!r}
min_lr = {tc.min_lr!r}
warmup_steps = {tc.warmup_steps}
lr_schedule = {tc.lr_schedule}
weight_decay = {tc.weight_decay!r}
beta1 = {tc.beta1!r}
beta2 = {tc.beta2!r}
eps = {tc.eps!r}
grad_clip = {tc.grad_clip!r}
init = {init}
seed = 1
recompute = {b(recompute)}
[data]
train = {data}
shuffle = false
[checkpoint]
dir = {ckdir}
every = 0
keep = 2
restart = none
[log]
every = 1
metrics = {metrics}
"""


def run_lamina(work, tag, cfg, tc, init, data, recompute=False, np_=0, overrides=()):
    """Run lamina (under mpirun -np np_ when np_ > 0, with section.key=value
    overrides); returns (metrics list or None, checkpoint dict or None, error text)."""
    d = os.path.join(work, tag)
    os.makedirs(d)
    ckdir, metrics = os.path.join(d, "ckpt"), os.path.join(d, "metrics.jsonl")
    deck = os.path.join(d, "deck.in")
    with open(deck, "w") as f:
        f.write(deck_text(cfg, tc, init, data, ckdir, metrics, recompute))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        cmd = [LAMINA, "train", deck, *overrides]
        if np_:
            cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(np_)] + cmd
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, None, f"{tag}: could not run {LAMINA}: {e}"
    if p.returncode != 0:
        tail = (p.stdout + p.stderr).strip().splitlines()[-8:]
        return None, None, f"{tag}: lamina exited {p.returncode}: " + " | ".join(tail)
    try:
        with open(metrics) as f:
            m = [json.loads(line) for line in f if line.strip()]
        ck = R.read_ckpt(R.latest_ckpt(ckdir))
    except Exception as e:  # noqa: BLE001
        return None, None, f"{tag}: reading results failed: {e!r}"
    return m, ck, ""


def check_metrics(label, m, recs, check_lr=True):
    if len(m) != len(recs) or [x.get("step") for x in m] != [r["step"] for r in recs]:
        tap(False, f"{label}: metrics has one line per step",
            f"steps in metrics: {[x.get('step') for x in m]}")
        return
    lw = max(rel(x["loss"], r["loss"]) for x, r in zip(m, recs))
    gw = max(rel(x["grad_norm"], r["grad_norm"]) for x, r in zip(m, recs))
    worst("loss rel", lw)
    worst("grad_norm rel", gw)
    tap(lw < TOL_LOSS, f"{label}: per-step loss (rel < {TOL_LOSS:g})",
        f"max rel diff {lw:.2e}; lamina {[round(x['loss'], 6) for x in m]}"
        f" ref {[round(r['loss'], 6) for r in recs]}")
    tap(gw < TOL_GNORM, f"{label}: per-step grad_norm before clipping (rel < {TOL_GNORM:g})",
        f"max rel diff {gw:.2e}; lamina {[round(x['grad_norm'], 6) for x in m]}"
        f" ref {[round(r['grad_norm'], 6) for r in recs]}")
    if check_lr:
        lrw = max(rel(x["lr"], r["lr"]) for x, r in zip(m, recs))
        tok_ok = all(x["tokens"] == r["tokens"] for x, r in zip(m, recs))
        tap(lrw < TOL_LR and tok_ok, f"{label}: lr and tokens fields",
            f"lr lamina {[x['lr'] for x in m]} ref {[r['lr'] for r in recs]}",
            f"tokens lamina {[x['tokens'] for x in m]} ref {[r['tokens'] for r in recs]}")


def tensor_rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_state(label, cfg, tc, p0, ck, P, opt, recs):
    names = [n for n, _ in R.param_shapes(cfg)]
    missing = [n for n in names if n not in ck["model"] or n not in ck["exp_avg"]
               or n not in ck["exp_avg_sq"]]
    extra = [n for n in ck["model"] if n not in names]
    a = ck["attrs"]
    meta_ok = (not missing and not extra and int(a.get("step", -1)) == tc.steps
               and int(a.get("tokens_seen", -1)) == recs[-1]["tokens"])
    tap(meta_ok, f"{label}: checkpoint has every tensor, step and tokens_seen",
        f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "",
        f"step {a.get('step')} tokens_seen {a.get('tokens_seen')} (ref {tc.steps},"
        f" {recs[-1]['tokens']})")
    if missing:
        return
    lr_sum = sum(r["lr"] for r in recs)
    uw, un, mw, mn, wm, wmn = 0.0, "", 0.0, "", 0.0, ""
    for n in names:
        w0 = p0[n].astype(np.float64)
        ref = P[n].numpy()
        lam = ck["model"][n]
        if lam.shape != ref.shape:
            uw, un = float("inf"), n + f" shape {lam.shape}"
            continue
        u = tensor_rel(lam - w0, ref - w0)
        if u > uw:
            uw, un = u, n
        x = float(np.abs(lam - ref).max()) / lr_sum
        if x > wm:
            wm, wmn = x, n
        for key, ours in (("exp_avg", opt.m[n]), ("exp_avg_sq", opt.v[n])):
            r = tensor_rel(ck[key][n], ours.numpy())
            if r > mw:
                mw, mn = r, f"{key}/{n}"
    worst("weight update rel", uw)
    worst("weight max abs / sum(lr)", wm)
    worst("moments rel", mw)
    tap(uw < TOL_UPDATE and wm < TOL_WMAX,
        f"{label}: weights after {tc.steps} AdamW steps",
        f"worst update ||d_lam - d_ref||/||d_ref|| {uw:.2e} ({un}); tol {TOL_UPDATE:g}",
        f"worst max|w_lam - w_ref| / sum(lr) {wm:.2e} ({wmn}); tol {TOL_WMAX:g}")
    tap(mw < TOL_MOM, f"{label}: AdamW moments exp_avg, exp_avg_sq",
        f"worst ||a-b||/||b|| {mw:.2e} ({mn}); tol {TOL_MOM:g}")


def check_grads(label, cfg, tc, ck, grads):
    gw, gn = 0.0, ""
    for n, _ in R.param_shapes(cfg):
        if n not in ck["exp_avg"]:
            gw, gn = float("inf"), n + " missing"
            break
        g = ck["exp_avg"][n] / (1 - tc.beta1)
        r = tensor_rel(g, grads[n].numpy())
        if r > gw:
            gw, gn = r, n
    worst("gradient rel", gw)
    tap(gw < TOL_GRAD, f"{label}: every parameter's gradient (from exp_avg after 1 step)",
        f"worst ||g_lam - g_ref||/||g_ref|| {gw:.2e} ({gn}); tol {TOL_GRAD:g}")


def main():
    torch.set_num_threads(1)
    for ok, name, diag in R.selftest():
        tap(ok, name, diag)

    have = os.access(LAMINA, os.X_OK)
    tap(have, f"lamina binary present ({LAMINA})", "" if have else "run `make all` first")
    if have:
        work = tempfile.mkdtemp(prefix="lamina-ref-")
        try:
            run_cases(work)
        finally:
            if os.environ.get("KEEP_WORK"):
                print(f"# work dir kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)

    print(f"1..{len(results)}")
    bad = 0
    for i, (ok, name, diag) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for d in diag:
            print(f"#   {d}")
        bad += not ok
    if summary:
        print("# agreement with the float64 reference (worst over all cases):")
        for k, v in summary.items():
            print(f"#   {k}: {v:.3e}")
    if layout_diff:
        print("# parallel layouts: worst |loss - single-rank loss| over all cases and steps:")
        for k in sorted(layout_diff):
            print(f"#   {k}: {layout_diff[k]:.3e}")
    print(f"# {len(results) - bad}/{len(results)} passed")
    return 1 if bad else 0


def layouts(tc):
    """(dp, micro_batch, zero, overlap) for the data-parallel runs of a case:
    every dp in 2..4 that divides the global batch, the largest micro-batch
    up to the case's that divides global_batch/dp, ZeRO 0, 1, 2; overlap_comm
    off as well for the first dp."""
    out = []
    for dp in (2, 3, 4):
        if tc.global_batch % dp:
            continue
        per = tc.global_batch // dp
        mb = max(b for b in range(1, tc.micro_batch + 1) if per % b == 0)
        for z in (0, 1, 2):
            out.append((dp, mb, z, True))
            if out[0][0] == dp and z != 1:
                out.append((dp, mb, z, False))
    return out


def check_layout(work, label, tag, lt, key, np_, ovr, cfg, tc, init, data, p0, P, opt, recs, m1):
    """The 3-step run of a case on one parallel layout (tag lt, overrides
    ovr, np_ ranks) against the reference and the single-rank run m1; the
    worst |loss difference| goes to layout_diff[key]."""
    m, ck, err = run_lamina(work, f"{tag}-{lt}", cfg, tc, init, data, np_=np_, overrides=ovr)
    tap(not err, f"{label}: lamina train on {np_} ranks", err)
    if err:
        return
    check_metrics(label, m, recs)
    check_state(label, cfg, tc, p0, ck, P, opt, recs)
    if m1 and len(m) == len(m1):
        d = max(abs(x["loss"] - y["loss"]) for x, y in zip(m, m1))
        layout_diff[key] = max(layout_diff.get(key, 0.0), d)


def check_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1):
    """The 3-step run of a case on every data-parallel layout."""
    for dp, mb, z, ov in layouts(tc):
        lt = f"dp{dp}-zero{z}" + ("" if ov else "-nooverlap")
        ovr = [f"parallel.zero={z}", f"train.micro_batch={mb}", f"parallel.overlap_comm={'true' if ov else 'false'}"]
        check_layout(work, f"{label} [{lt}, micro_batch {mb}]", tag, lt, lt, dp, ovr,
                     cfg, tc, init, data, p0, P, opt, recs, m1)


layout_diff = {}      # layout -> worst |loss - single-rank loss| over cases and steps


def tp_layouts(cfg, tc):
    """(tp, sp, dp, zero, micro_batch) for the tensor-parallel runs of a case:
    tp 2 and 4 where the heads and ffn split (kv heads split or replicated,
    the vocabulary padded when it does not divide), with and without
    sequence parallelism, and tp 2 x dp 2 with ZeRO-1 where the batch allows."""
    out = []
    rows = tc.micro_batch * tc.seq_len
    for tp in (2, 4):
        if cfg.n_heads % tp or cfg.ffn_dim % tp:
            continue
        kv_ok = cfg.n_kv_heads % tp == 0 if cfg.n_kv_heads >= tp else tp % cfg.n_kv_heads == 0
        if not kv_ok:
            continue
        out.append((tp, False, 1, 0, tc.micro_batch))
        if rows % tp == 0:
            out.append((tp, True, 1, 2 if tp == 2 else 0, tc.micro_batch))
    if out and tc.global_batch % 2 == 0:
        per = tc.global_batch // 2
        mb = max(b for b in range(1, tc.micro_batch + 1) if per % b == 0)
        out.append((2, False, 2, 1, mb))
        if (mb * tc.seq_len) % 2 == 0:
            out.append((2, True, 2, 1, mb))
    return out


def pp_layouts(cfg, tc):
    """(pp, schedule, v, tp, dp, zero, micro_batch) for the pipeline runs of a
    case: pp 2 (1f1b) on every case; with 4 layers also pp 4, interleaved
    with 2 chunks per stage, pp 2 x tp 2 + sp, and dp 2 x tp 2 x pp 2 with
    ZeRO-1 (8 ranks)."""
    out = [(2, "1f1b", 1, 1, 1, 0, tc.micro_batch)]
    m = tc.global_batch // tc.micro_batch
    if cfg.n_layers >= 4:
        out.append((4, "1f1b", 1, 1, 1, 1, tc.micro_batch))
        if m % 2 == 0:
            out.append((2, "interleaved", 2, 1, 1, 2, tc.micro_batch))
        out.append((2, "1f1b", 1, 2, 1, 0, tc.micro_batch))
        if tc.global_batch % 2 == 0:
            out.append((2, "1f1b", 1, 2, 2, 1, tc.micro_batch))
    return out


def check_pp_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1):
    """The 3-step run of a case on the pipeline layouts."""
    for pp, sched, v, tp, dp, z, mb in pp_layouts(cfg, tc):
        key = f"pp{pp}-{sched}" + (f"-tp{tp}" if tp > 1 else "") + (f"-dp{dp}" if dp > 1 else "")
        ovr = [f"parallel.pp={pp}", f"parallel.schedule={sched}", f"parallel.virtual_stages={v}",
               f"parallel.tp={tp}", f"parallel.sp={'true' if tp > 1 else 'false'}", f"parallel.zero={z}",
               f"train.micro_batch={mb}"]
        check_layout(work, f"{label} [{key}-zero{z}]", tag, f"{key}-zero{z}", key, pp * tp * dp, ovr,
                     cfg, tc, init, data, p0, P, opt, recs, m1)


def check_tp_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1):
    """The 3-step run of a case on the tensor-parallel layouts."""
    for tp, sp, dp, z, mb in tp_layouts(cfg, tc):
        key = f"tp{tp}" + ("-sp" if sp else "") + (f"-dp{dp}" if dp > 1 else "")
        ovr = [f"parallel.tp={tp}", f"parallel.sp={'true' if sp else 'false'}", f"parallel.zero={z}",
               f"train.micro_batch={mb}"]
        check_layout(work, f"{label} [{key}-zero{z}]", tag, f"{key}-zero{z}", key, tp * dp, ovr,
                     cfg, tc, init, data, p0, P, opt, recs, m1)


def run_cases(work):
    for ci, (label, cfg, tsets, lens, seed) in enumerate(case_list()):
        tag = label.split(":")[0]
        rng = np.random.default_rng(seed)
        samples = [rng.integers(0, cfg.vocab_size, L) for L in lens]
        data = os.path.join(work, f"{tag}.tokens.h5")
        init = os.path.join(work, f"{tag}.init.h5")
        R.write_token_file(data, samples, cfg.vocab_size)
        p0 = R.random_params(cfg, seed + 100, std=0.1)
        R.write_init_ckpt(init, cfg, p0)

        # 3 steps, weight decay 0.1, clipping per case
        tc = R.TrainCfg(steps=3, lr=1e-2, weight_decay=0.1, **tsets)
        recs, P, opt, _ = R.train(cfg, tc, p0, samples)
        m, ck, err = run_lamina(work, f"{tag}-3step", cfg, tc, init, data)
        tap(not err, f"{label}: lamina train, 3 steps (clip {tc.grad_clip:g}, wd 0.1)", err)
        if not err:
            check_metrics(label, m, recs)
            check_state(label, cfg, tc, p0, ck, P, opt, recs)
        m1 = m if not err else None
        if cfg.n_layers < 4:  # the 4-layer case runs the pipeline layouts only
            check_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1)
            check_tp_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1)
        check_pp_layouts(work, label, tag, cfg, tc, init, data, p0, P, opt, recs, m1)

        # the same with recompute=true: same losses
        if ci == 1 and not err:
            m2, _, err2 = run_lamina(work, f"{tag}-recompute", cfg, tc, init, data, recompute=True)
            if err2:
                tap(False, f"{label}: recompute=true run", err2)
            else:
                d = max(max(rel(x["loss"], y["loss"]), rel(x["grad_norm"], y["grad_norm"]))
                        for x, y in zip(m2, m)) if len(m2) == len(m) else float("inf")
                worst("recompute vs not, rel", d)
                tap(d < TOL_RECOMP, f"{label}: recompute=true gives the same losses/grad norms",
                    f"max rel diff {d:.2e}; tol {TOL_RECOMP:g}")

        # 1 step, no clipping, no decay: gradients from exp_avg
        tg = R.TrainCfg(steps=1, lr=1e-2, weight_decay=0.0, **{**tsets, "grad_clip": 0.0})
        recs1, _, _, grads = R.train(cfg, tg, p0, samples)
        m, ck, err = run_lamina(work, f"{tag}-grad", cfg, tg, init, data)
        tap(not err, f"{label}: lamina train, 1 step (clip 0, wd 0)", err)
        if not err:
            check_metrics(label + " 1-step", m, recs1, check_lr=False)
            check_grads(label, cfg, tg, ck, grads[0])

        # warmup 2 + cosine to min_lr over 4 steps
        if ci == 3:
            ts = R.TrainCfg(steps=4, lr=1e-2, min_lr=1e-3, warmup_steps=2, lr_schedule="cosine",
                            weight_decay=0.1, **{**tsets, "grad_clip": 1.0})
            recs, P, opt, _ = R.train(cfg, ts, p0, samples)
            m, ck, err = run_lamina(work, f"{tag}-cosine", cfg, ts, init, data)
            lab = label + " warmup+cosine"
            tap(not err, f"{lab}: lamina train, 4 steps", err)
            if not err:
                check_metrics(lab, m, recs)
                check_state(lab, cfg, ts, p0, ck, P, opt, recs)


if __name__ == "__main__":
    sys.exit(main())
