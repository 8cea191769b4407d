#!/usr/bin/python3
"""torch_eval.py — the PyTorch side of perf/eval_bench.sh.

`lamina eval`'s multiple-choice scoring (SPEC §10, the mc: task) done in
PyTorch on the same lamina checkpoint, for a throughput comparison:

  run CKPT.h5 --task mc:FILE.jsonl [--batch N] [--threads T] [--lang en|zh|auto]
      [--shots K] [--context N] [--no-loglik] -o OUT.json
  compare LAMINA.json TORCH.json [--tol X]

The model is a float32 LLaMA written for the benchmark (SPEC §3: RMSNorm,
rotate-half RoPE, causal grouped-query attention, SwiGLU, lm_head or tied
embeddings), eager torch ops under torch.inference_mode(), weights read
with h5py from /model of the checkpoint, the shape from /config. The
tokenizer is the one recorded in the checkpoint (/tokenizer/model bytes,
loaded into python3-sentencepiece), as `lamina eval` uses it.

Scoring, as SPEC §10 and `lamina eval` (src/app/eval*.c) do it:
  * prompt = BOS + encode(header + worked dev examples + the test item),
    dev examples dropped from the front while the prompt exceeds the
    context (the checkpoint's max_seq_len unless --context);
  * letter L's score = max of the next-token logits, at the prompt's last
    position, of the last id of encode("Answer: L") and of encode("答案：L");
    the prediction is the best letter;
  * beside it (unless --no-loglik) the length-normalised log-likelihood of
    every full choice: context = the same header and examples then
    "Question: {q}\\nAnswer:" (zh "题目：{q}\\n答案："), continuation " {choice}"
    (zh "{choice}"), score = sum log p(continuation tokens) / UTF-8 bytes of
    the continuation.
Rows are batched N per forward (letter rows first, then choice rows, in
file order) and right-padded to the batch's longest row (lamina pads to the
context): causal attention means no real position ever attends to a padding
position, so the logits at a row's real positions are those of the row
alone. --positions all (default) puts every position through the final
norm and lm_head (as lamina and a causal LM's forward do); --positions
read only the positions whose logits are read.

Timing, as lamina's JSON defines it: `seconds` covers the batched forwards
and the scoring (padding, forward, logits, gathering the scores), not the
model load nor the prompts' rendering and tokenisation (those are in
`seconds_with_prompts`); questions/s = test items / seconds; tokens/s = real
(unpadded) tokens fed / seconds. OUT.json has lamina's layout: {"tasks":
{"mc:FILE": {accuracy, by_subject, items: [{line, subject, scores,
prediction, answer, loglik, prediction_loglik}], accuracy_loglik,
n_items, seconds, questions_per_s, tokens_per_s, tokens}}}.

`compare` matches the items of two such files by line and prints the
agreement of the letter predictions (and loglik predictions), and the
largest letter-score and loglik differences; exit 1 when the predictions
differ on an item whose top two scores are further apart than --tol (an
item closer than that may legitimately flip between two float32 summation
orders).

Threads: Debian's torch calls the system BLAS (OpenBLAS), whose thread count
torch.set_num_threads does not control, so OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS are set before torch is imported. Use /usr/bin/python3.
"""
import argparse
import json
import math
import os
import sys
import time

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("ckpt")
    r.add_argument("--task", required=True, help="mc:FILE.jsonl")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--lang", default="auto", choices=("en", "zh", "auto"))
    r.add_argument("--shots", type=int, default=-1, help="at most K dev items (default all)")
    r.add_argument("--context", type=int, default=0, help="context length (default max_seq_len)")
    r.add_argument("--no-loglik", action="store_true")
    r.add_argument("--positions", default="all", choices=("all", "read"),
                   help="all: lm_head over every position (as lamina and a causal LM's forward); "
                        "read: only where a logit is read")
    r.add_argument("-o", dest="out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=1e-3)
    return ap.parse_args()


# --------------------------------------------------------------------------
# compare (no torch needed)
# --------------------------------------------------------------------------
def compare(a_path, b_path, tol):
    A = json.load(open(a_path))["tasks"]
    B = json.load(open(b_path))["tasks"]
    bad = 0
    for key in sorted(set(A) & set(B)):
        if not key.startswith("mc:"):
            continue
        ia = {it["line"]: it for it in A[key]["items"]}
        ib = {it["line"]: it for it in B[key]["items"]}
        lines = sorted(set(ia) & set(ib))
        if len(lines) != len(ia) or len(lines) != len(ib):
            print(f"compare: {key}: items differ ({len(ia)} vs {len(ib)}, {len(lines)} common)")
            bad += 1
        same = same_ll = close = 0
        dmax = dllmax = 0.0
        for ln in lines:
            x, y = ia[ln], ib[ln]
            dmax = max([dmax] + [abs(p - q) for p, q in zip(x["scores"], y["scores"])])
            if x["prediction"] == y["prediction"]:
                same += 1
            else:
                s = sorted(x["scores"], reverse=True)
                if len(s) > 1 and s[0] - s[1] <= tol:
                    close += 1
                else:
                    bad += 1
            if "loglik" in x and "loglik" in y:
                dllmax = max([dllmax] + [abs(p - q) for p, q in zip(x["loglik"], y["loglik"])])
                same_ll += x["prediction_loglik"] == y["prediction_loglik"]
        n = max(len(lines), 1)
        print(f"compare {key}: {len(lines)} items; letter predictions agree {same}/{len(lines)} "
              f"({100.0 * same / n:.2f}%, {close} differ within a top-2 gap <= {tol}); "
              f"max |score diff| {dmax:.3g}; loglik predictions agree {same_ll}/{len(lines)}; "
              f"max |loglik diff| {dllmax:.3g}")
        if dmax > 1e-2:
            print(f"compare {key}: LETTER SCORES DIFFER by {dmax:.3g} (float32 tolerance 1e-2)")
            bad += 1
    return 1 if bad else 0


# --------------------------------------------------------------------------
# The items and their prompts (SPEC §10)
# --------------------------------------------------------------------------
def read_items(path):
    items = []
    with open(path, encoding="utf-8") as f:
        for ln, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            o = json.loads(raw)
            o["line"] = ln
            items.append(o)
    return items


def cjk_minus_latin(text):
    """CJK characters (unified ideographs, extension A, CJK punctuation,
    full-width forms) minus ASCII letters."""
    d = 0
    for ch in text:
        c = ord(ch)
        if c < 0x80:
            d -= ("a" <= ch.lower() <= "z")
        elif 0x4e00 <= c <= 0x9fff or 0x3400 <= c <= 0x4dbf or 0x3000 <= c <= 0x303f \
                or 0xff00 <= c <= 0xffef:
            d += 1
    return d


def subject_is_zh(lang, items):
    """lamina's rule: a subject is Chinese when more than half of its items
    (dev and test) are; an item is when its question and choices hold more
    CJK characters than ASCII letters."""
    if lang != "auto":
        return lang == "zh"
    n = sum(cjk_minus_latin(it["question"] + "".join(it["choices"])) > 0 for it in items)
    return 2 * n > len(items)


def header(subject, zh):
    if zh:
        return f"以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n"
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def render_item(it, zh):
    q, a = ("题目：", "答案：") if zh else ("Question: ", "Answer: ")
    s = q + it["question"] + "\n"
    for L, ch in zip(LETTERS, it["choices"]):
        s += f"{L}. {ch}\n"
    return s + a


def render_example(it, zh):
    return render_item(it, zh) + it["answer"] + "\n\n"


def loglik_context(it, zh):
    return ("题目：" + it["question"] + "\n答案：") if zh else \
        ("Question: " + it["question"] + "\nAnswer:")


def loglik_continuation(choice, zh):
    return choice if zh else " " + choice


class Prompter:
    """Token rows for one subject: BOS + encode(header + examples + tail),
    the examples dropped from the front while the row exceeds the context."""

    def __init__(self, sp, bos, ctx, subject, devs, zh):
        self.sp, self.bos, self.ctx = sp, bos, ctx
        self.head = header(subject, zh)
        self.examples = [render_example(d, zh) for d in devs]
        self.zh = zh

    def encode(self, text):
        ids = self.sp.encode(text)
        return ([self.bos] if self.bos >= 0 else []) + ids

    def letter_row(self, it):
        tail = render_item(it, self.zh)
        k = 0
        while True:
            ids = self.encode(self.head + "".join(self.examples[k:]) + tail)
            if len(ids) <= self.ctx or k == len(self.examples):
                return ids[-self.ctx:] if len(ids) > self.ctx else ids
            k += 1

    def loglik_rows(self, it):
        """[(whole, p0, nbytes)] per choice, as lamina builds them: whole =
        BOS + encode(context + continuation), the continuation its tokens
        past the first len(BOS + encode(context)) (at least the last one);
        whole[:-1] is fed, position p >= p0 predicts whole[p + 1]. The dev
        items are dropped from the front while the longest choice's fed
        row exceeds the context; a row still too long keeps its last
        `ctx` fed positions."""
        ctx_text = loglik_context(it, self.zh)
        conts = [loglik_continuation(ch, self.zh) for ch in it["choices"]]
        k = 0
        while True:
            pre = self.head + "".join(self.examples[k:]) + ctx_text
            n_ctx = len(self.encode(pre))
            wholes = [self.encode(pre + c) for c in conts]
            if max(len(w) - 1 for w in wholes) <= self.ctx or k == len(self.examples):
                break
            k += 1
        out = []
        for w, c in zip(wholes, conts):
            cs = max(min(n_ctx, len(w) - 1), 1)
            drop = max(len(w) - 1 - self.ctx, 0)
            out.append((w[drop:], max(cs - 1 - drop, 0), len(c.encode("utf-8"))))
        return out


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def main():
    args = parse()
    if args.cmd == "compare":
        return compare(args.a, args.b, args.tol)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import h5py
    import numpy as np
    import sentencepiece as spm
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)

    # ---- the checkpoint ----
    with h5py.File(args.ckpt, "r") as f:
        c = f["config"].attrs
        cfg = {k: int(c[k]) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim",
                                      "vocab_size", "max_seq_len", "tie_embeddings")}
        eps, theta = float(c["norm_eps"]), float(c["rope_theta"])
        W = {k: torch.from_numpy(np.asarray(v[()], dtype=np.float32))
             for k, v in f["model"].items()}
        if "tokenizer/model" not in f:
            sys.exit(f"torch_eval: {args.ckpt} records no tokenizer (/tokenizer/model)")
        tm = f["tokenizer/model"]
        sp_bytes = np.asarray(tm[()], dtype=np.uint8).tobytes()
        bos = int(tm.attrs["bos_id"])
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(sp_bytes)
    ctx = args.context or cfg["max_seq_len"]

    d, H, KV = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    hd = d // H
    rep = H // KV
    emb = W["model.embed_tokens.weight"]
    head_w = emb if cfg["tie_embeddings"] else W["lm_head.weight"]
    layers = []
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        # q, k, v fused into one [out, in] matrix: one GEMM instead of three
        qkv = torch.cat([W[p + "self_attn.q_proj.weight"], W[p + "self_attn.k_proj.weight"],
                         W[p + "self_attn.v_proj.weight"]], 0).contiguous()
        gu = torch.cat([W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"]], 0).contiguous()
        layers.append((W[p + "input_layernorm.weight"], qkv, W[p + "self_attn.o_proj.weight"],
                       W[p + "post_attention_layernorm.weight"], gu, W[p + "mlp.down_proj.weight"]))
    norm_w = W["model.norm.weight"]
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(ctx, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    COS, SIN = torch.cos(ang).float(), torch.sin(ang).float()
    NEG = torch.full((ctx, ctx), float("-inf")).triu(1)  # additive causal mask
    ffn = cfg["ffn_dim"]

    def rmsnorm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

    def hidden(tokens):
        """tokens int64 [B, T] -> final-norm input h [B, T, dim]."""
        B, T = tokens.shape
        cos, sin = COS[:T], SIN[:T]
        # the query heads sharing a kv head are stacked along the rows, so
        # that one batched GEMM per kv head scores them (no repeated k/v)
        mask = NEG[:T, :T].repeat(rep, 1)
        h = F.embedding(tokens, emb)
        for (w_in, qkv, wo, w_post, gu, wd) in layers:
            x = rmsnorm(h, w_in) @ qkv.T
            q = x[..., :d].view(B, T, H, hd).transpose(1, 2)
            k = x[..., d:d + KV * hd].view(B, T, KV, hd).transpose(1, 2)
            v = x[..., d + KV * hd:].view(B, T, KV, hd).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            q = q.reshape(B * KV, rep * T, hd)  # query head j*rep+r uses kv head j
            s = torch.baddbmm(mask, q, k.reshape(B * KV, T, hd).transpose(1, 2),
                              alpha=1.0 / math.sqrt(hd))
            o = torch.softmax(s, -1) @ v.reshape(B * KV, T, hd)
            h = h + o.view(B, H, T, hd).transpose(1, 2).reshape(B, T, d) @ wo.T
            g = rmsnorm(h, w_post) @ gu.T
            h = h + (F.silu(g[..., :ffn]) * g[..., ffn:]) @ wd.T
        return h

    def pad(rows):
        T = max(len(r) for r in rows)
        t = torch.zeros(len(rows), T, dtype=torch.int64)
        for i, r in enumerate(rows):
            t[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        return t

    # ---- the task ----
    kind, _, path = args.task.partition(":")
    if kind != "mc":
        sys.exit("torch_eval: only mc: tasks")
    items = read_items(path)
    subjects = {}
    for it in items:
        subjects.setdefault(it["subject"], {"dev": [], "test": []})[it["split"]].append(it)
    max_choices = max(len(it["choices"]) for it in items)
    letter_ids = [(sp.encode("Answer: " + L)[-1], sp.encode("答案：" + L)[-1])
                  for L in LETTERS[:max_choices]]

    tests = [it for it in items if it["split"] == "test"]
    tokens = padded = 0
    fwd = 0.0  # seconds in the batched forwards and scoring, as lamina's `seconds`
    every = args.positions == "all"
    results = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        prompters = {}
        for s, g in subjects.items():
            devs = g["dev"] if args.shots < 0 else g["dev"][:args.shots]
            prompters[s] = Prompter(sp, bos, ctx, s, devs, subject_is_zh(args.lang, g["dev"] + g["test"]))
        # letter scores: one row per test item
        rows = [(it, prompters[it["subject"]].letter_row(it)) for it in tests]
        # full-choice log-likelihoods: one row per choice
        lrows = []
        if not args.no_loglik:
            for it in tests:
                for j, r in enumerate(prompters[it["subject"]].loglik_rows(it)):
                    lrows.append((it, j, r))
                results[it["line"]] = {"loglik": [0.0] * len(it["choices"])}

        f0 = time.perf_counter()
        for b in range(0, len(rows), args.batch):
            chunk = rows[b:b + args.batch]
            ids = [r for _, r in chunk]
            x = pad(ids)
            tokens += sum(len(r) for r in ids)
            padded += x.numel()
            h = hidden(x)
            last = torch.tensor([len(r) - 1 for r in ids])
            if every:  # logits at every position, as a causal LM's forward gives them
                z = (rmsnorm(h, norm_w) @ head_w.T)[torch.arange(len(ids)), last]
            else:      # only the last position's
                z = rmsnorm(h[torch.arange(len(ids)), last], norm_w) @ head_w.T
            for (it, _), zr in zip(chunk, z.tolist()):
                sc = [max(zr[a], zr[c]) for a, c in letter_ids[:len(it["choices"])]]
                results.setdefault(it["line"], {})["scores"] = sc
        for b in range(0, len(lrows), args.batch):
            chunk = lrows[b:b + args.batch]
            x = pad([r[0][:-1] for _, _, r in chunk])
            tokens += sum(len(r[0]) - 1 for _, _, r in chunk)
            padded += x.numel()
            h = hidden(x)
            # row i's position p (p0 <= p < len(whole) - 1) predicts whole[p + 1]
            ri, pi, tgt = [], [], []
            for i, (whole, p0, _) in enumerate(r for _, _, r in chunk):
                ri += [i] * (len(whole) - 1 - p0)
                pi += range(p0, len(whole) - 1)
                tgt += whole[p0 + 1:]
            ri, pi, tgt = torch.tensor(ri), torch.tensor(pi), torch.tensor(tgt)
            if every:
                lp = torch.log_softmax(rmsnorm(h, norm_w) @ head_w.T, -1)[ri, pi, tgt]
            else:
                lp = torch.log_softmax(rmsnorm(h[ri, pi], norm_w) @ head_w.T, -1)
                lp = lp[torch.arange(len(tgt)), tgt]
            sums = torch.zeros(len(chunk), dtype=torch.float64)
            sums.index_add_(0, ri, lp.double())
            for i, (it, j, (_, _, nbytes)) in enumerate(chunk):
                results[it["line"]]["loglik"][j] = float(sums[i]) / nbytes
        fwd = time.perf_counter() - f0
    total = time.perf_counter() - t0
    seconds = fwd

    out_items, by_subj, by_subj_ll, ok, ok_ll = [], {}, {}, 0, 0
    for it in tests:
        r = results[it["line"]]
        sc = r["scores"]
        pred = LETTERS[max(range(len(sc)), key=lambda j: sc[j])]
        o = {"line": it["line"], "subject": it["subject"], "scores": sc,
             "prediction": pred, "answer": it["answer"]}
        by_subj.setdefault(it["subject"], []).append(pred == it["answer"])
        ok += pred == it["answer"]
        if "loglik" in r:
            ll = r["loglik"]
            pl = LETTERS[max(range(len(ll)), key=lambda j: ll[j])]
            o["loglik"], o["prediction_loglik"] = ll, pl
            by_subj_ll.setdefault(it["subject"], []).append(pl == it["answer"])
            ok_ll += pl == it["answer"]
        out_items.append(o)
    n = max(len(tests), 1)
    task = {"accuracy": ok / n,
            "by_subject": {s: sum(v) / len(v) for s, v in sorted(by_subj.items())},
            "items": out_items, "n_items": len(tests), "seconds": seconds,
            "seconds_with_prompts": total, "padded_tokens": padded, "positions": args.positions,
            "questions_per_s": len(tests) / seconds, "tokens_per_s": tokens / seconds,
            "tokens": tokens, "threads": args.threads, "batch": args.batch,
            "torch": torch.__version__}
    if not args.no_loglik:
        task["accuracy_loglik"] = ok_ll / n
        task["by_subject_loglik"] = {s: sum(v) / len(v) for s, v in sorted(by_subj_ll.items())}
    with open(args.out, "w") as f:
        json.dump({"tasks": {args.task: task}}, f, ensure_ascii=False, indent=1)
    print(f"torch_eval: {args.task}: {len(tests)} questions, {tokens} tokens in {seconds:.3f} s: "
          f"{len(tests) / seconds:.2f} questions/s, {tokens / seconds:.1f} tokens/s, "
          f"accuracy {ok / n:.4f} ({args.threads} threads, batch {args.batch}, logits at {args.positions} "
          f"positions; {total:.3f} s with the prompts' rendering and tokenisation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
