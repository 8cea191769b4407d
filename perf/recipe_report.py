#!/usr/bin/python3
"""recipe_report.py -- perf/RECIPE.md and its plots from a run of inputs/recipe.sh.

    python3 perf/recipe_report.py OUT [--scale NAME] [-o perf/RECIPE.md]

OUT is the recipe's output directory (out/recipe/SCALE). Reads what the
steps left there: config.json, times.tsv and eval/times.tsv (wall times),
compression_{base,expanded}.txt (`lamina vocab stats`), the training metrics
(base.metrics.jsonl, main.metrics.jsonl and one per ablation) and the
`lamina eval` results eval/*.json. Writes the Markdown report and PNG plots
in a folder named after it (perf/recipe/ for perf/RECIPE.md). Every number
in the report is read from those files; the statements about the seeds'
claims are decided here from the measured differences and the thresholds
printed beside them, never written in advance.
"""
import argparse
import json
import math
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Model points of the main table, in order: eval/NAME.json
MAIN_POINTS = [
    ("base", "base model (the released HF folder)"),
    ("expanded", "expanded, mean init, before training"),
    ("expanded_random", "expanded, random init, before training"),
    ("stage1", "after stage 1 (embedding warm-up)"),
    ("stage2", "after stage 2 (zh knowledge injection)"),
    ("stage3", "after stage 3 (replay) = the recipe"),
    ("final_hf", "the recipe, exported to HF (bf16)"),
]
ABLATIONS = [
    ("stage3", "the recipe (expansion, mean init, replay, 4 buckets)"),
    ("noexp", "no vocabulary expansion (base tokenizer for zh)"),
    ("randinit", "random instead of mean init of the new rows"),
    ("noreplay", "no replay (stage 3 on zh only)"),
    ("nobins", "no buckets (--bins 1, one global shuffle)"),
]
RUNS = [("main", "recipe"), ("noexp", "no expansion"), ("randinit", "random init"),
        ("noreplay", "no replay"), ("nobins", "no buckets")]
# A bits-per-byte difference smaller than this is called "no difference":
# a fixed tolerance (the run is one seed; no seed-to-seed spread is measured).
BPB_TOL = 0.01


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except OSError:
        pass
    return rows


def load_tsv(path):
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) == 2:
                    out[p[0]] = float(p[1])
    except OSError:
        pass
    return out


def eval_point(R, name):
    """{'en_acc', 'en_acc_ll', 'en_n', 'zh_acc', ..., 'en_bpb', 'zh_bpb', 'by_cat'} or None."""
    d = load_json(os.path.join(R, "eval", name + ".json"))
    if not d:
        return None
    r = {"by_cat": {}, "seq_len": d.get("seq_len")}
    for task, t in d.get("tasks", {}).items():
        base = os.path.basename(t.get("file", task.split(":", 1)[-1]))
        lang = "zh" if base.startswith("zh") else "en"
        if t.get("kind") == "mc":
            r[lang + "_acc"] = t.get("accuracy")
            r[lang + "_acc_ll"] = t.get("accuracy_loglik")
            r[lang + "_n"] = t.get("n_items")
        elif t.get("kind") == "ppl":
            r[lang + "_bpb"] = t.get("bpb")
            for c, v in t.get("by_category", {}).items():
                r["by_cat"][c] = v.get("bpb")
    return r


def compression(path):
    """{'en': (chars/tok, bytes/tok, tok/char), 'zh': ...} from `lamina vocab stats`."""
    out = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return out
    for line in lines:
        p = line.split()
        if len(p) != 6 or p[0] in ("file", "total"):
            continue
        name = os.path.basename(p[0])
        lang = "zh" if name.startswith("zh") else "en"
        ch, by, tk = float(p[1]), float(p[2]), float(p[3])
        if tk > 0 and ch > 0:
            out[lang] = (ch / tk, by / tk, tk / ch)
    return out


def fmt(x, nd=3):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def se_acc(p, n):
    """Binomial standard error of an accuracy over n items."""
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if p is not None and n else None


def cmp_acc(a, b, n):
    """(difference a-b, 2 standard errors of the difference)."""
    if a is None or b is None or not n:
        return None, None
    return a - b, 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def verdict_lower(new, old, tol):
    """'lower' when new < old by more than tol, 'higher' when above, else 'same'."""
    if new is None or old is None:
        return None
    d = new - old
    return "lower" if d < -tol else "higher" if d > tol else "same"


def stage_info(rows):
    """Per stage: first and last step, steps, tokens, seconds of step time."""
    st = {}
    for r in rows:
        s = r.get("stage", 1)
        e = st.setdefault(s, {"first": r["step"], "last": r["step"], "steps": 0, "tokens": 0, "ms": 0.0})
        e["first"] = min(e["first"], r["step"])
        e["last"] = max(e["last"], r["step"])
        e["steps"] += 1
        e["tokens"] += r.get("sde", {}).get("TOKENS", 0)
        e["ms"] += r.get("step_ms", 0.0) + r.get("ckpt_ms", 0.0)
    return st


def val_series(rows):
    """steps, {category: [bpb]}, [overall bpb] of the rows with held-out results."""
    steps, cats, allb = [], {}, []
    for r in rows:
        if "val_by_category" not in r:
            continue
        steps.append(r["step"])
        allb.append(r.get("val_bpb"))
        for c, v in r["val_by_category"].items():
            cats.setdefault(c, []).append(v.get("bpb"))
    return steps, cats, allb


def plot_main(R, pngdir):
    rows = load_jsonl(os.path.join(R, "main.metrics.jsonl"))
    steps, cats, _ = val_series(rows)
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for c in sorted(cats):
        ax.plot(steps, cats[c], "-" if c.startswith("en") else "--", marker=".", label=c)
    for s, e in sorted(stage_info(rows).items()):
        ax.axvline(e["last"], color="grey", lw=0.8, ls=":")
        ax.text(e["last"], ax.get_ylim()[1], f" end of stage {s}", rotation=90, va="top", ha="right", fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title("The recipe: held-out bits per byte per category (stage ends dotted)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = os.path.join(pngdir, "val_bpb_main.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def lang_mean(cats, lang):
    """Per step, the mean over the categories of one language (unweighted)."""
    cs = [v for c, v in cats.items() if c.startswith(lang)]
    if not cs:
        return []
    return [sum(v[i] for v in cs) / len(cs) for i in range(min(len(v) for v in cs))]


def plot_ablations(R, pngdir):
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2))
    any_ = False
    bounds = None
    for name, label in RUNS:
        rows = load_jsonl(os.path.join(R, name + ".metrics.jsonl"))
        steps, cats, _ = val_series(rows)
        if not steps:
            continue
        any_ = True
        if bounds is None:
            bounds = [e["last"] for _, e in sorted(stage_info(rows).items())]
        for ax, lang in zip(axs, ("en", "zh")):
            m = lang_mean(cats, lang)
            ax.plot(steps[:len(m)], m, marker=".", label=label)
    if not any_:
        plt.close(fig)
        return None
    for ax, lang in zip(axs, ("English", "Chinese")):
        for b in bounds or []:
            ax.axvline(b, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("step")
        ax.set_ylabel("bits per byte (mean over categories)")
        ax.set_title(f"{lang} held-out text")
        ax.legend(fontsize=7)
    fig.suptitle("The recipe and its ablations, same steps (stage ends dotted)")
    fig.tight_layout()
    p = os.path.join(pngdir, "val_bpb_ablations.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def plot_base(R, pngdir):
    rows = load_jsonl(os.path.join(R, "base.metrics.jsonl"))
    steps, cats, _ = val_series(rows)
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for c in sorted(cats):
        ax.plot(steps, cats[c], marker=".", label=c)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title("The English base model")
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = os.path.join(pngdir, "val_bpb_base.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def claims(P, comp):
    """The seeds' claims, each with what the measured table says."""
    out = []
    b, e = comp.get("base", {}), comp.get("expanded", {})

    def say(claim, measured, verdict):
        out.append((claim, measured, verdict))

    # 1. compression
    if "zh" in b and "zh" in e:
        r = b["zh"][2] / e["zh"][2]
        en = (e["en"][2] / b["en"][2]) if "en" in b and "en" in e else None
        v = "supported" if e["zh"][2] < b["zh"][2] else "not supported"
        say("The expanded tokenizer needs far fewer tokens for Chinese (LLaMA-2 1.205 -> 0.659 tokens per "
            "character, 1.83x) and leaves English as it was",
            f"Chinese {b['zh'][2]:.3f} -> {e['zh'][2]:.3f} tokens per character ({r:.2f}x fewer); English "
            f"tokens per character x{fmt(en)} of the base's", v)
    base, s3 = P.get("base"), P.get("stage3")
    # 2. Chinese gained
    if base and s3 and base.get("zh_bpb") is not None and s3.get("zh_bpb") is not None:
        d, tol = cmp_acc(s3.get("zh_acc"), base.get("zh_acc"), s3.get("zh_n"))
        vb = verdict_lower(s3["zh_bpb"], base["zh_bpb"], BPB_TOL)
        acc_ok = d is not None and d > tol
        acc_bad = d is not None and d < -tol
        v = ("supported" if vb == "lower" and acc_ok else
             "supported for bits per byte; accuracy difference within noise" if vb == "lower" and not acc_bad else
             "not supported")
        say("Continued pre-training gains Chinese (CMMLU 32.97 -> 49.89)",
            f"zh bits per byte {fmt(base['zh_bpb'])} -> {fmt(s3['zh_bpb'])}; zh accuracy "
            f"{fmt(base.get('zh_acc'))} -> {fmt(s3.get('zh_acc'))} (difference {fmt(d)}, 2 s.e. {fmt(tol)})", v)
    # 3. English kept
    if base and s3 and base.get("en_bpb") is not None and s3.get("en_bpb") is not None:
        d, tol = cmp_acc(s3.get("en_acc"), base.get("en_acc"), s3.get("en_n"))
        vb = verdict_lower(s3["en_bpb"], base["en_bpb"], BPB_TOL)
        acc_txt = ("higher" if d is not None and d > tol else "lower" if d is not None and d < -tol
                   else "the same within noise")
        v = ("supported" if vb in ("lower", "same") and acc_txt != "lower" else
             "not supported: English is partly forgotten" if vb == "higher" else "not supported")
        say("English is kept and even improved (MMLU 44.47 -> 53.06)",
            f"en bits per byte {fmt(base['en_bpb'])} -> {fmt(s3['en_bpb'])} "
            f"({'within' if vb == 'same' else vb + ' by more than'} {BPB_TOL}); en accuracy {fmt(base.get('en_acc'))} -> {fmt(s3.get('en_acc'))}, "
            f"{acc_txt} (2 s.e. {fmt(tol)})", v)

    def ablation(key, claim, lang, what):
        a = P.get(key)
        if not (s3 and a and s3.get(lang + "_bpb") is not None and a.get(lang + "_bpb") is not None):
            return
        vb = verdict_lower(s3[lang + "_bpb"], a[lang + "_bpb"], BPB_TOL)
        d, tol = cmp_acc(s3.get(lang + "_acc"), a.get(lang + "_acc"), s3.get(lang + "_n"))
        v = ("supported" if vb == "lower" else "not supported (no difference beyond the tolerance)" if vb == "same"
             else "not supported (the ablation is better)")
        say(claim, f"{lang} bits per byte: recipe {fmt(s3[lang + '_bpb'])} vs {what} {fmt(a[lang + '_bpb'])}; "
            f"{lang} accuracy {fmt(s3.get(lang + '_acc'))} vs {fmt(a.get(lang + '_acc'))} (2 s.e. {fmt(tol)})", v)

    ablation("noexp", "Vocabulary expansion helps Chinese (at the same steps)", "zh", "no expansion")
    ex, exr = P.get("expanded"), P.get("expanded_random")
    if ex and exr and ex.get("zh_bpb") is not None and exr.get("zh_bpb") is not None:
        vz = verdict_lower(ex["zh_bpb"], exr["zh_bpb"], BPB_TOL)
        ve = verdict_lower(ex.get("en_bpb"), exr.get("en_bpb"), BPB_TOL)
        v = ("supported" if vz == "lower" and ve in ("lower", "same") else
             "not supported" if vz != "lower" and ve != "lower" else
             f"mixed: mean init is better on {'Chinese' if vz == 'lower' else 'English'}, "
             f"{'worse' if (ve if vz == 'lower' else vz) == 'higher' else 'no better'} on "
             f"{'English' if vz == 'lower' else 'Chinese'}")
        say("Mean-initialised new rows start better than random ones",
            f"before training, zh bits per byte mean {fmt(ex['zh_bpb'])} vs random {fmt(exr['zh_bpb'])}; en "
            f"{fmt(ex.get('en_bpb'))} vs {fmt(exr.get('en_bpb'))}", v)
    ablation("randinit", "Mean init is still better after the three stages", "zh", "random init")
    ablation("noreplay", "The replay stage limits forgetting of English", "en", "no replay")
    ablation("nobins", "Bucketed data (4 buckets) helps over one global shuffle", "zh", "no buckets")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--scale", default=None)
    ap.add_argument("-o", "--output", default="perf/RECIPE.md")
    a = ap.parse_args()
    R = a.out_dir
    if not os.path.isdir(R):
        sys.exit(f"recipe_report.py: {R}: no such directory (run inputs/recipe.sh first)")
    cfg = load_json(os.path.join(R, "config.json")) or {}
    scale = a.scale or cfg.get("scale", "?")
    pngdir = os.path.splitext(a.output)[0].lower()
    if os.path.basename(pngdir) == "recipe":
        pngdir = os.path.join(os.path.dirname(a.output), "recipe")
    os.makedirs(pngdir, exist_ok=True)
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(a.output)) or ".")

    P = {n: eval_point(R, n) for n, _ in MAIN_POINTS + ABLATIONS}
    comp = {k: compression(os.path.join(R, f"compression_{k}.txt")) for k in ("base", "expanded")}
    times = load_tsv(os.path.join(R, "times.tsv"))
    etimes = load_tsv(os.path.join(R, "eval", "times.tsv"))
    pngs = [p for p in (plot_main(R, pngdir), plot_ablations(R, pngdir), plot_base(R, pngdir)) if p]

    L = []
    w = L.append
    w("# The Colossal-LLaMA-2 recipe at small scale, measured")
    w("")
    w(f"Generated by `make recipe` (`inputs/recipe.sh`, then `perf/recipe_report.py`) at "
      f"RECIPE_SCALE={scale}; do not edit by hand. Every number below is read from the run's files in "
      f"`{R}`.")
    w("")
    if cfg:
        w(f"Run: {cfg.get('ranks')} rank(s) x {cfg.get('threads')} thread(s) on {cfg.get('device')} "
          f"({cfg.get('cpu', '?')}), lamina {cfg.get('git', '?')}. Model: dim {cfg.get('dim')}, "
          f"{cfg.get('layers')} layers, {cfg.get('heads')} heads ({cfg.get('kv_heads')} kv), ffn "
          f"{cfg.get('ffn')}, context {cfg.get('seq_len')}, {cfg.get('global_batch')} sequences per step. "
          f"Base vocabulary {cfg.get('en_vocab')} (English SentencePiece BPE), expanded "
          f"{cfg.get('expanded_vocab')} (a {cfg.get('zh_vocab')}-piece Chinese tokenizer merged in). Steps: base "
          f"{cfg.get('base_steps')}; stages {cfg.get('s1')} + {cfg.get('s2')} + {cfg.get('s3')} (the ablations "
          f"run the same steps, so the same number of tokens).")
        w("")
    w("Data (`inputs/evalsets.py`, from Debian packages): English fortunes, manual pages and the Debian "
      "reference; Chinese Tang and Song poems, fortunes-zh, zh_CN manual pages and the Chinese Debian "
      "reference. Held-out documents (for bits per byte, and the only source of the multiple-choice items: "
      "\"which line continues this passage?\", 4 choices, chance = 0.25) are removed from the training text. "
      "Stage 1 trains only the embeddings and lm_head; stage 2 every weight on Chinese:English 9:1 by weight; "
      "stage 3 (replay) on 1:1 with fresh AdamW moments and a lower peak learning rate "
      "(`inputs/recipe_stages.in`).")
    w("")
    w("Accuracy: `lamina eval` mc, the letter score of SPEC section 10 (ColossalEval's first-token method, the "
      "dev items as worked examples, trimmed to the context) and, after the slash, the length-normalised "
      "log-likelihood of each choice. Bits per byte: `lamina eval` ppl on the held-out text (independent of "
      "the tokenizer, so the rows compare). s.e.: the binomial standard error of an accuracy.")
    w("")

    w("## Compression: characters and bytes per token")
    w("")
    w("`lamina vocab stats` on the held-out text (each line encoded alone). The seeds' table: LLaMA-2 1.205 "
      "tokens per character on Chinese, the expanded tokenizer 0.659.")
    w("")
    w("| tokenizer | en chars/token | en bytes/token | en tokens/char | zh chars/token | zh bytes/token | "
      "zh tokens/char |")
    w("|---|---|---|---|---|---|---|")
    for k, label in (("base", f"base (English, {cfg.get('en_vocab', '?')})"),
                     ("expanded", f"expanded ({cfg.get('expanded_vocab', '?')})")):
        c = comp.get(k, {})
        en, zh = c.get("en", (None,) * 3), c.get("zh", (None,) * 3)
        w(f"| {label} | {fmt(en[0])} | {fmt(en[1])} | {fmt(en[2])} | {fmt(zh[0])} | {fmt(zh[1])} | {fmt(zh[2])} |")
    w("")

    w("## Main table: each model point")
    w("")
    n_en = next((p.get("en_n") for p in P.values() if p and p.get("en_n")), None)
    n_zh = next((p.get("zh_n") for p in P.values() if p and p.get("zh_n")), None)
    w(f"Multiple choice: {n_en} English and {n_zh} Chinese test items (accuracy letter / log-likelihood).")
    w("")
    w("| model | en accuracy | zh accuracy | en bits/byte | zh bits/byte |")
    w("|---|---|---|---|---|")
    for n, label in MAIN_POINTS:
        p = P.get(n)
        if not p:
            w(f"| {label} | not run | | | |")
            continue
        ea = f"{fmt(p.get('en_acc'))} / {fmt(p.get('en_acc_ll'))}"
        za = f"{fmt(p.get('zh_acc'))} / {fmt(p.get('zh_acc_ll'))}"
        w(f"| {label} | {ea} | {za} | {fmt(p.get('en_bpb'))} | {fmt(p.get('zh_bpb'))} |")
    s3 = P.get("stage3")
    if s3 and s3.get("en_acc") is not None:
        w("")
        w(f"One standard error of an accuracy near 0.25-0.5: about {fmt(se_acc(0.3, n_en))} (en) and "
          f"{fmt(se_acc(0.3, n_zh))} (zh).")
    w("")
    if P.get("stage3") and P.get("final_hf"):
        d = [abs(P["final_hf"].get(k, 0) - P["stage3"].get(k, 0)) for k in ("en_bpb", "zh_bpb")]
        w(f"The bf16 HF export differs from its float32 checkpoint by {max(d):.4f} bits per byte at most.")
        w("")

    w("## Ablations: the same steps (tokens), one change each")
    w("")
    w("| run | en accuracy | zh accuracy | en bits/byte | zh bits/byte | en bpb vs recipe | zh bpb vs recipe |")
    w("|---|---|---|---|---|---|---|")
    for n, label in ABLATIONS:
        p = P.get(n)
        if not p:
            w(f"| {label} | not run | | | | | |")
            continue
        de = (p["en_bpb"] - s3["en_bpb"]) if s3 and p.get("en_bpb") is not None and s3.get("en_bpb") is not None else None
        dz = (p["zh_bpb"] - s3["zh_bpb"]) if s3 and p.get("zh_bpb") is not None and s3.get("zh_bpb") is not None else None
        w(f"| {label} | {fmt(p.get('en_acc'))} / {fmt(p.get('en_acc_ll'))} | {fmt(p.get('zh_acc'))} / "
          f"{fmt(p.get('zh_acc_ll'))} | {fmt(p.get('en_bpb'))} | {fmt(p.get('zh_bpb'))} | "
          f"{'' if n == 'stage3' else ('%+.3f' % de if de is not None else 'n/a')} | "
          f"{'' if n == 'stage3' else ('%+.3f' % dz if dz is not None else 'n/a')} |")
    w("")
    w("Without expansion the same steps carry fewer Chinese characters (the base tokenizer spends more tokens "
      "on each), which is the seeds' argument for expanding.")
    w("")

    w("## Held-out bits per byte per category at the end of each stage (from training)")
    w("")
    mrows = load_jsonl(os.path.join(R, "main.metrics.jsonl"))
    last = {}
    for r in mrows:
        if "val_by_category" in r:
            last[r.get("stage", 1)] = r
    if last:
        cats = sorted({c for r in last.values() for c in r["val_by_category"]})
        w("| stage | step | " + " | ".join(cats) + " |")
        w("|---|---|" + "---|" * len(cats))
        for s in sorted(last):
            r = last[s]
            w(f"| {s} | {r['step']} | " + " | ".join(fmt(r["val_by_category"].get(c, {}).get("bpb")) for c in cats) + " |")
        w("")
    for p in pngs:
        w(f"![{os.path.basename(p)}]({rel(p)})")
        w("")

    w("## Wall time")
    w("")
    w("| step of inputs/recipe.sh | seconds |")
    w("|---|---|")
    for k, v in times.items():
        w(f"| {k} | {v:.1f} |")
    if times:
        w(f"| total | {sum(times.values()):.1f} |")
    w("")
    st = stage_info(mrows)
    if st:
        w("The three stages of the recipe's job (step times and checkpoint writes from its metrics; the "
          "held-out evaluations and start-up are the rest of the `main` step):")
        w("")
        w("| stage | steps | tokens | seconds | tokens/s |")
        w("|---|---|---|---|---|")
        for s, e in sorted(st.items()):
            sec = e["ms"] / 1000
            w(f"| {s} | {e['first']}-{e['last']} ({e['steps']}) | {e['tokens']} | {sec:.1f} | "
              f"{(e['tokens'] / sec if sec else 0):.0f} |")
        w("")
    if etimes:
        w("`lamina eval` per model point (both mc sets and both held-out texts): " +
          ", ".join(f"{k} {v:.1f} s" for k, v in etimes.items()) + ".")
        w("")

    w("## What the table says about the seeds' claims")
    w("")
    w(f"Decided by `perf/recipe_report.py` from the numbers above: a bits-per-byte difference counts when "
      f"it exceeds {BPB_TOL} (one seed: no seed-to-seed spread was measured); an accuracy difference counts "
      f"when it exceeds two standard errors of the difference.")
    w("")
    w("| claim (Colossal-LLaMA-2) | measured here | verdict |")
    w("|---|---|---|")
    for c, m, v in claims(P, {k: comp[k] for k in comp}):
        w(f"| {c} | {m} | {v} |")
    w("")
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with open(a.output, "w", encoding="utf-8") as f:
        f.write("\n".join(L))
    print(f"recipe_report.py: {a.output} and {len(pngs)} plot(s) in {pngdir}")


if __name__ == "__main__":
    main()
