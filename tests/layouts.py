#!/usr/bin/env python3
"""tests/layouts.py — the combinations of tests/t/39-layouts.t.

For each seed: a model shape drawn from random.Random(seed) (layer count,
heads, head_dim, kv heads down to 1, ffn, a vocabulary that tp does not
always divide, tied or not) and the layouts it is run on: every dp x tp x pp
factorisation of 2, 4 and 8 ranks that the shape allows (tp dividing the
heads, pp at most the layer count), each compared with the single-rank run
of the same shape. Sampled (default): each factorisation once, with its ZeRO
stage, sequence parallelism (tp > 1 only) and pipeline schedule (interleaved
where the layers and micro-batches allow it, with a drawn virtual_stages)
drawn from the seed. --full: every combination of those for every
factorisation.

Output, one line per run, fields separated by '|':
  seed  index  np  shape-overrides  layout-overrides  description
index 0 is the single-rank reference of the seed's shape; a line with np 0
is a factorisation the shape does not allow (description says why).
"""
import argparse
import itertools
import random

GLOBAL_BATCH = 8  # micro_batch 1: 8 / dp micro-batches per step


def shape(seed):
    r = random.Random(seed)
    heads = r.choice([4, 8])
    hd = r.choice([8, 16])
    kv = r.choice([k for k in (1, 2, 4) if heads % k == 0])
    return {
        "model.n_layers": r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9]),
        "model.n_heads": heads,
        "model.dim": heads * hd,
        "model.n_kv_heads": kv,
        "model.ffn_dim": 8 * r.randint(4, 12),
        "model.vocab_size": r.choice([258, 259, 261, 263, 270, 287]),
        "model.tie_embeddings": r.choice(["true", "false"]),
    }


def factorisations(n):
    for dp in (1, 2, 4, 8):
        for tp in (1, 2, 4, 8):
            if n % (dp * tp) == 0:
                yield dp, tp, n // (dp * tp)


def why_not(s, dp, tp, pp):
    if s["model.n_heads"] % tp:
        return f"tp {tp} does not divide n_heads {s['model.n_heads']}"
    if pp > s["model.n_layers"]:
        return f"pp {pp} > n_layers {s['model.n_layers']}"
    return None


def schedules(s, dp, pp):
    """(schedule, virtual_stages) pairs this factorisation allows."""
    out = [("1f1b", 1)]
    m = GLOBAL_BATCH // dp
    if pp > 1 and m % pp == 0:
        out += [("interleaved", v) for v in (2, 3) if s["model.n_layers"] >= pp * v]
    return out


def layout(dp, tp, pp, zero, sp, sched, v):
    o = [f"parallel.dp={dp}", f"parallel.tp={tp}", f"parallel.pp={pp}", f"parallel.zero={zero}"]
    if tp > 1:
        o.append(f"parallel.sp={'true' if sp else 'false'}")
    if pp > 1:
        o.append(f"parallel.schedule={sched}")
        o.append(f"parallel.virtual_stages={v}")
    return o


def lines(seed, full):
    s = shape(seed)
    so = " ".join(f"{k}={v}" for k, v in s.items())
    desc = (f"L{s['model.n_layers']} dim {s['model.dim']} heads {s['model.n_heads']}/{s['model.n_kv_heads']} "
            f"ffn {s['model.ffn_dim']} vocab {s['model.vocab_size']} tied {s['model.tie_embeddings']}")
    out = [(seed, 0, 1, so, "", f"{desc}: single rank")]
    r = random.Random(seed * 7919 + 1)
    k = 0
    for n in (2, 4, 8):
        for dp, tp, pp in factorisations(n):
            k += 1
            bad = why_not(s, dp, tp, pp)
            if bad:
                out.append((seed, k, 0, so, "", f"{desc}: dp {dp} x tp {tp} x pp {pp}: skipped, {bad}"))
                continue
            scheds = schedules(s, dp, pp)
            sps = (False, True) if tp > 1 else (False,)
            if full:
                combos = list(itertools.product((0, 1, 2), sps, scheds))
            else:
                combos = [(r.choice((0, 1, 2)), r.choice(sps), r.choice(scheds))]
            for j, (zero, sp, (sched, v)) in enumerate(combos):
                idx = k if not full else k * 100 + j
                lo = layout(dp, tp, pp, zero, sp, sched, v)
                d = (f"{desc}: dp {dp} x tp {tp} x pp {pp}, ZeRO-{zero}" + (", sp" if sp else "")
                     + (f", {sched}" + (f" v {v}" if v > 1 else "") if pp > 1 else ""))
                out.append((seed, idx, n, so, " ".join(lo), d))
    return out


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--seeds", required=True, help="comma-separated seeds")
    a.add_argument("--full", action="store_true", help="every ZeRO x sp x schedule combination")
    a.add_argument("--only", type=int, default=-1, help="only this index (and the reference)")
    x = a.parse_args()
    for seed in (int(t) for t in x.seeds.split(",") if t):
        for ln in lines(seed, x.full):
            if x.only < 0 or ln[1] in (0, x.only):
                print("|".join(map(str, ln)))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # a reader that stopped early (head)
        pass
