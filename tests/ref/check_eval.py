"""check_eval.py — `lamina eval` (SPEC §10) against an independent float64
computation: the prompts rendered here from the contract, tokenised with
python3-sentencepiece, the model run by llama_ref.py (one row at a time, no
padding) from the same checkpoint.

  check_eval.py CKPT TOKENIZER.model SEQ_LEN RESULT.json mc:FILE.jsonl|ppl:FILE ... [--tol TOL]

mc: per test item, the subject's dev items (file order) as worked examples,
dropped from the front while BOS + the prompt exceeds SEQ_LEN tokens (a
0-shot prompt still too long keeps its last SEQ_LEN tokens); letter L's
score = max(logit[last id of enc("Answer: L")], logit[last id of
enc("答案：L")]) at the prompt's last position; prediction = the first
largest. The log-likelihood score: context "...Question: q\\nAnswer:" (zh
"题目：q\\n答案："), continuation " choice" (zh "choice"), the continuation's
tokens those of BOS + enc(ctx + cont) past len(BOS + enc(ctx)), summed log
probabilities over UTF-8 bytes; dev items dropped while the longest
choice's input (all tokens but the last) exceeds SEQ_LEN.
ppl: each document BOS text EOS, windows of SEQ_LEN+1 tokens overlapping by
one; per category loss = sum CE / targets, bpb = sum CE / ln 2 / bytes.

Checks every letter score, log-likelihood score, shot count, prediction
(unless the two best reference scores are within TOL), accuracy, loss and
bpb; prints the worst absolute differences; exit 1 on a mismatch."""
import json
import math
import os
import sys

import h5py
import numpy as np
import sentencepiece as spm
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import llama_ref as R  # noqa: E402


def is_cjk(cp):
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x3000 <= cp <= 0x303F or 0xFF00 <= cp <= 0xFFEF


def zh_item(it):
    d = 0
    for s in [it["question"]] + it["choices"]:
        for ch in s:
            if ch.isascii() and ch.isalpha():
                d -= 1
            elif is_cjk(ord(ch)):
                d += 1
    return d > 0


def render(item, zh, worked):
    s = ("题目：" if zh else "Question: ") + item["question"] + "\n"
    for i, c in enumerate(item["choices"]):
        s += f"{chr(65 + i)}. {c}\n"
    s += "答案：" if zh else "Answer: "
    if worked:
        s += item["answer"] + "\n\n"
    return s


def header(subject, zh):
    if zh:
        return f"以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n"
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


class Model:
    def __init__(self, ck):
        d = R.read_ckpt(ck)
        with h5py.File(ck, "r") as f:
            c = {k: f["config"].attrs[k] for k in f["config"].attrs}
        self.cfg = R.ModelCfg(dim=int(c["dim"]), n_layers=int(c["n_layers"]), n_heads=int(c["n_heads"]),
                              n_kv_heads=int(c["n_kv_heads"]), ffn_dim=int(c["ffn_dim"]),
                              vocab_size=int(c["vocab_size"]), max_seq_len=int(c["max_seq_len"]),
                              norm_eps=float(c["norm_eps"]), rope_theta=float(c["rope_theta"]),
                              tie_embeddings=bool(c["tie_embeddings"]))
        self.P = R.to_torch(d["model"])

    def logits(self, ids):
        with torch.no_grad():
            return R.forward_logits(self.P, self.cfg, torch.tensor([ids], dtype=torch.int64))[0]


def mc_ref(M, sp, T, path):
    items = []
    for ln, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.strip():
            o = json.loads(line)
            o["line"] = ln
            items.append(o)
    subjects = list(dict.fromkeys(o["subject"] for o in items))
    zh = {s: 2 * sum(zh_item(o) for o in items if o["subject"] == s) > sum(o["subject"] == s for o in items)
          for s in subjects}
    bos = [sp.bos_id()] if sp.bos_id() >= 0 else []
    qa = [sp.encode(f"Answer: {chr(65 + L)}")[-1] for L in range(26)]
    qz = [sp.encode(f"答案：{chr(65 + L)}")[-1] for L in range(26)]
    out = []
    for t in items:
        if t["split"] != "test":
            continue
        z = zh[t["subject"]]
        dev = [o for o in items if o["split"] == "dev" and o["subject"] == t["subject"]]
        # letter prompt
        for k in range(len(dev), -1, -1):
            text = header(t["subject"], z) + "".join(render(d, z, True) for d in dev[len(dev) - k:]) + render(t, z, False)
            ids = bos + sp.encode(text)
            if len(ids) <= T or k == 0:
                break
        ids = ids[-T:]
        lg = M.logits(ids)[-1]
        n = len(t["choices"])
        scores = [max(float(lg[qa[L]]), float(lg[qz[L]])) for L in range(n)]
        # log-likelihood
        for k2 in range(len(dev), -1, -1):
            ctx = header(t["subject"], z) + "".join(render(d, z, True) for d in dev[len(dev) - k2:]) + \
                (("题目：" if z else "Question: ") + t["question"] + ("\n答案：" if z else "\nAnswer:"))
            nctx = len(bos + sp.encode(ctx))
            conts = [("" if z else " ") + c for c in t["choices"]]
            wholes = [bos + sp.encode(ctx + c) for c in conts]
            if max(len(w) - 1 for w in wholes) <= T or k2 == 0:
                break
        ll = []
        for c, w in zip(conts, wholes):
            cs = max(1, min(nctx, len(w) - 1))
            inp, tgt = w[:-1], w[1:]
            first = cs - 1  # position p predicts w[p + 1]; targets from w[cs]
            drop = max(0, len(inp) - T)
            inp, tgt, first = inp[drop:], tgt[drop:], first - drop
            logp = torch.log_softmax(M.logits(inp), dim=-1)
            s = sum(float(logp[p, tgt[p]]) for p in range(max(first, 0), len(inp)))
            ll.append(s / len(c.encode("utf-8")))
        out.append(dict(line=t["line"], subject=t["subject"], scores=scores, answer=t["answer"], shots=k,
                        shots_loglik=k2, loglik=ll))
    return out


def ppl_ref(M, sp, T, path):
    base = os.path.splitext(os.path.basename(path))[0]
    if path.endswith(".jsonl"):
        docs = [(o["text"], o.get("category", base)) for o in map(json.loads, open(path, encoding="utf-8")) if o]
    else:
        docs = [(open(path, encoding="utf-8").read(), base)]
    sums = {}
    for text, cat in docs:
        ids = ([sp.bos_id()] if sp.bos_id() >= 0 else []) + sp.encode(text) + ([sp.eos_id()] if sp.eos_id() >= 0 else [])
        s = sums.setdefault(cat, [0.0, 0, 0])
        s[2] += len(text.encode("utf-8"))
        for w in range(0, len(ids) - 1, T):
            inp, tgt = ids[w:w + T], ids[w + 1:w + T + 1]
            inp = inp[:len(tgt)]
            logp = torch.log_softmax(M.logits(inp), dim=-1)
            s[0] -= float(logp[torch.arange(len(tgt)), torch.tensor(tgt)].sum())
            s[1] += len(tgt)
    return sums


def main():
    a = sys.argv[1:]
    tol = 2e-4
    if "--tol" in a:
        i = a.index("--tol")
        tol = float(a[i + 1])
        del a[i:i + 2]
    ck, tokm, T, res = a[0], a[1], int(a[2]), json.load(open(a[3], encoding="utf-8"))
    M, sp = Model(ck), spm.SentencePieceProcessor(model_file=tokm)
    bad, worst_s, worst_l, worst_p = [], 0.0, 0.0, 0.0
    for task in a[4:]:
        r = res["tasks"][task]
        kind, path = task.split(":", 1)
        if kind == "mc":
            ref = mc_ref(M, sp, T, path)
            got = r["items"]
            if [x["line"] for x in got] != [x["line"] for x in ref]:
                bad.append(f"{task}: item lines {[x['line'] for x in got]} vs {[x['line'] for x in ref]}")
                continue
            right = 0
            for g, e in zip(got, ref):
                ds = max(abs(x - y) for x, y in zip(g["scores"], e["scores"]))
                dl = max(abs(x - y) for x, y in zip(g["loglik"], e["loglik"]))
                worst_s, worst_l = max(worst_s, ds), max(worst_l, dl)
                if len(g["scores"]) != len(e["scores"]) or ds > tol * (1 + max(map(abs, e["scores"]))):
                    bad.append(f"line {e['line']}: scores {g['scores']} vs {e['scores']}")
                if dl > tol * (1 + max(map(abs, e["loglik"]))):
                    bad.append(f"line {e['line']}: loglik {g['loglik']} vs {e['loglik']}")
                if g["shots"] != e["shots"] or g["shots_loglik"] != e["shots_loglik"]:
                    bad.append(f"line {e['line']}: shots {g['shots']}/{g['shots_loglik']} vs {e['shots']}/{e['shots_loglik']}")
                for key, sc in (("prediction", e["scores"]), ("prediction_loglik", e["loglik"])):
                    p = max(range(len(sc)), key=lambda i: (sc[i], -i))
                    top = sorted(sc, reverse=True)
                    if chr(65 + p) != g[key] and (len(top) < 2 or top[0] - top[1] > tol):
                        bad.append(f"line {e['line']}: {key} {g[key]} vs {chr(65 + p)} ({sc})")
                if g["answer"] != e["answer"]:
                    bad.append(f"line {e['line']}: answer {g['answer']} vs {e['answer']}")
                right += g["prediction"] == g["answer"]
            if abs(r["accuracy"] - right / len(got)) > 1e-12:
                bad.append(f"{task}: accuracy {r['accuracy']} vs {right / len(got)}")
            print(f"{task}: {len(got)} test items; shots {[x['shots'] for x in ref]}; "
                  f"worst |score diff| {worst_s:.2e}, |loglik diff| {worst_l:.2e}")
        else:
            ref = ppl_ref(M, sp, T, path)
            for cat, (ce, nt, nb) in ref.items():
                g = r["by_category"].get(cat)
                if g is None or g["tokens"] != nt or g["bytes"] != nb:
                    bad.append(f"{task}: category {cat}: {g} vs tokens {nt} bytes {nb}")
                    continue
                for k, v in (("loss", ce / nt), ("bpb", ce / math.log(2) / nb)):
                    worst_p = max(worst_p, abs(g[k] - v) / abs(v))
                    if abs(g[k] - v) > tol * abs(v):
                        bad.append(f"{task}: {cat} {k} {g[k]} vs {v}")
            print(f"{task}: categories {sorted(ref)}; worst rel diff of loss/bpb {worst_p:.2e}")
    for b in bad[:20]:
        print("MISMATCH", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
