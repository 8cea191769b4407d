"""llama_ref.py — an independent float64 reference for lamina (SPEC §3-§5).

Written from the contract, not from lamina's C code, so that agreeing with it
means something:

  * the model: Hugging Face LlamaForCausalLM math (RMSNorm, rotate-half RoPE,
    causal grouped-query attention with scale 1/sqrt(head_dim), SwiGLU MLP,
    tied or untied lm_head), written out in plain torch ops on float64
    tensors; gradients come from torch.autograd;
  * the loss: mean cross-entropy over every non-padding target of the GLOBAL
    batch (so micro-batching must not change it);
  * the optimizer: torch.optim.AdamW semantics (decoupled weight decay on 2-D
    weights only), gradient clipping by the global L2 norm as
    torch.nn.utils.clip_grad_norm_, and the learning-rate schedule;
  * h5py helpers for the token file (§4) and checkpoints (§5).

`python3 llama_ref.py` runs selftest(): properties the reference must have
(finite differences, causality, padding independence, RoPE as a rotation by
relative position, attention against a naive loop, GQA as MHA with repeated
k/v heads, AdamW and clipping against torch's own, the schedule).

Use Debian's /usr/bin/python3 (torch 1.13, h5py, numpy).
"""
import math
from dataclasses import dataclass, asdict

import h5py
import numpy as np
import torch

F64 = torch.float64


# --------------------------------------------------------------------------
# Shapes and parameters
# --------------------------------------------------------------------------
@dataclass
class ModelCfg:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    max_seq_len: int = 2048
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False

    @property
    def head_dim(self):
        return self.dim // self.n_heads


def param_shapes(cfg):
    """[(Hugging Face name, shape)] in model order (SPEC §5)."""
    d, hd = cfg.dim, cfg.head_dim
    kv = cfg.n_kv_heads * hd
    out = [("model.embed_tokens.weight", (cfg.vocab_size, d))]
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (d,)),
            (p + "self_attn.q_proj.weight", (cfg.n_heads * hd, d)),
            (p + "self_attn.k_proj.weight", (kv, d)),
            (p + "self_attn.v_proj.weight", (kv, d)),
            (p + "self_attn.o_proj.weight", (d, cfg.n_heads * hd)),
            (p + "post_attention_layernorm.weight", (d,)),
            (p + "mlp.gate_proj.weight", (cfg.ffn_dim, d)),
            (p + "mlp.up_proj.weight", (cfg.ffn_dim, d)),
            (p + "mlp.down_proj.weight", (d, cfg.ffn_dim)),
        ]
    out.append(("model.norm.weight", (d,)))
    if not cfg.tie_embeddings:
        out.append(("lm_head.weight", (cfg.vocab_size, d)))
    return out


def is_decayed(shape):
    """SPEC §3: weight decay on 2-D weights only, never on norm weights."""
    return len(shape) == 2


def random_params(cfg, seed, std=0.02, norm_std=0.1):
    """Random float32 weights (numpy). Matrices ~ N(0, std); norm weights
    1 + N(0, norm_std), so that a code path that ignores them is caught."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_shapes(cfg):
        if len(shape) == 1:
            a = 1.0 + norm_std * rng.standard_normal(shape)
        else:
            a = std * rng.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out


def to_torch(params_np, dtype=F64, requires_grad=False):
    return {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=requires_grad)
            for k, v in params_np.items()}


# --------------------------------------------------------------------------
# The model (SPEC §3)
# --------------------------------------------------------------------------
def rmsnorm(x, w, eps):
    """rmsnorm(x; w) = x / sqrt(mean(x^2) + eps) * w, over the last axis."""
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope_cos_sin(T, head_dim, theta, dtype=F64):
    """cos/sin tables [T, head_dim]: inv_freq[i] = theta^(-2i/head_dim) for
    i < head_dim/2, angle p*inv_freq[i], duplicated over both halves (HF)."""
    half = head_dim // 2
    i = torch.arange(half, dtype=F64)
    inv_freq = theta ** (-2.0 * i / head_dim)
    ang = torch.arange(T, dtype=F64)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x [B, heads, T, hd]: the pair (x[i], x[i+hd/2]) rotated by p*inv_freq[i]."""
    return x * cos + rotate_half(x) * sin


def attention(x, P, pre, cfg, cos, sin):
    """Causal grouped-query self-attention. x [B, T, dim] -> [B, T, dim]."""
    B, T, _ = x.shape
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q = (x @ P[pre + "q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
    k = (x @ P[pre + "k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
    v = (x @ P[pre + "v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # query head h uses kv head h // (H/KV)
    rep = H // KV
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    s = s.masked_fill(causal, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = (p @ v).transpose(1, 2).reshape(B, T, H * hd)
    return o @ P[pre + "o_proj.weight"].T


def mlp(x, P, pre):
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    g = x @ P[pre + "gate_proj.weight"].T
    u = x @ P[pre + "up_proj.weight"].T
    return (torch.nn.functional.silu(g) * u) @ P[pre + "down_proj.weight"].T


def forward_logits(P, cfg, inputs):
    """inputs: int64 [B, T] -> logits [B, T, vocab]; positions start at 0 per row."""
    T = inputs.shape[1]
    dtype = P["model.embed_tokens.weight"].dtype
    cos, sin = rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, dtype)
    h = P["model.embed_tokens.weight"][inputs]
    for i in range(cfg.n_layers):
        pre = f"model.layers.{i}."
        n = rmsnorm(h, P[pre + "input_layernorm.weight"], cfg.norm_eps)
        a = h + attention(n, P, pre + "self_attn.", cfg, cos, sin)
        n = rmsnorm(a, P[pre + "post_attention_layernorm.weight"], cfg.norm_eps)
        h = a + mlp(n, P, pre + "mlp.")
    h = rmsnorm(h, P["model.norm.weight"], cfg.norm_eps)
    W = P["model.embed_tokens.weight"] if cfg.tie_embeddings else P["lm_head.weight"]
    return h @ W.T


def ce_sum(P, cfg, inputs, targets, mask):
    """Sum of cross-entropy over positions where mask is true."""
    logits = forward_logits(P, cfg, inputs)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (nll * mask.to(nll.dtype)).sum()


# --------------------------------------------------------------------------
# Data (SPEC §4)
# --------------------------------------------------------------------------
def make_batch(samples, idx, seq_len, pad_id=0):
    """Rows for samples[idx]: a sample cut to seq_len+1 tokens, inputs s[0:L-1],
    targets s[1:L], the rest padding (input pad_id, no target).
    Returns inputs, targets (int64 [B, seq_len]), mask (bool), input tokens."""
    B = len(idx)
    inp = torch.full((B, seq_len), pad_id, dtype=torch.int64)
    tgt = torch.zeros((B, seq_len), dtype=torch.int64)
    mask = torch.zeros((B, seq_len), dtype=torch.bool)
    ntok = 0
    for r, i in enumerate(idx):
        s = np.asarray(samples[i][: seq_len + 1], dtype=np.int64)
        L = len(s)
        if L >= 2:
            inp[r, : L - 1] = torch.from_numpy(s[:-1])
            tgt[r, : L - 1] = torch.from_numpy(s[1:])
            mask[r, : L - 1] = True
        ntok += max(L - 1, 0)
    return inp, tgt, mask, ntok


def step_indices(step, global_batch, n_samples):
    """data.shuffle=false: step s (1-based) takes (s-1)*G .. s*G-1 mod n."""
    return [((step - 1) * global_batch + j) % n_samples for j in range(global_batch)]


# --------------------------------------------------------------------------
# Optimizer, clipping, schedule (SPEC §3)
# --------------------------------------------------------------------------
def lr_at(step, lr, min_lr=0.0, warmup=0, steps=1, schedule="constant"):
    """lr at 1-based step: linear warmup lr*s/warmup for s <= warmup, then
    constant lr, or cosine min_lr + (lr-min_lr)/2 (1 + cos(pi t)), or linear
    lr - (lr-min_lr) t, with t = (s-warmup)/(steps-warmup)."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if schedule == "constant":
        return lr
    t = (step - warmup) / max(steps - warmup, 1)
    t = min(max(t, 0.0), 1.0)
    if schedule == "cosine":
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t))
    if schedule == "linear":
        return lr - (lr - min_lr) * t
    raise ValueError(schedule)


def global_norm(grads):
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))


def clip_grads(grads, max_norm):
    """As torch.nn.utils.clip_grad_norm_: returns the norm BEFORE clipping;
    scales by min(1, max_norm/(norm+1e-6)) when max_norm > 0."""
    norm = global_norm(grads)
    if max_norm > 0:
        coef = min(1.0, max_norm / (norm + 1e-6))
        for k in grads:
            grads[k] = grads[k] * coef
    return norm


class AdamW:
    """torch.optim.AdamW, one step per call:
        p <- p * (1 - lr*wd)                      (2-D weights only)
        m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2
        p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)"""

    def __init__(self, shapes, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0):
        self.b1, self.b2, self.eps, self.wd = beta1, beta2, eps, weight_decay
        self.decay = {n: is_decayed(s) for n, s in shapes}
        self.m, self.v, self.t = {}, {}, 0

    def step(self, P, grads, lr):
        self.t += 1
        b1, b2 = self.b1, self.b2
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        out = {}
        for n, p in P.items():
            g = grads[n]
            if self.decay[n]:
                p = p * (1 - lr * self.wd)
            m = self.m.get(n, torch.zeros_like(p)) * b1 + (1 - b1) * g
            v = self.v.get(n, torch.zeros_like(p)) * b2 + (1 - b2) * g * g
            self.m[n], self.v[n] = m, v
            out[n] = p - (lr / bc1) * m / (torch.sqrt(v) / math.sqrt(bc2) + self.eps)
        return out


@dataclass
class TrainCfg:
    steps: int
    seq_len: int
    micro_batch: int
    global_batch: int
    lr: float
    min_lr: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 0.0


def loss_and_grads(P, cfg, inputs, targets, mask, micro_batch=None):
    """Global-mean loss and its gradient. With micro_batch, the batch is run
    in micro-batches, each contributing sum/total_count (gradient
    accumulation done right); the result equals the one-shot computation."""
    Pg = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    count = int(mask.sum())
    B = inputs.shape[0]
    mb = micro_batch or B
    total = 0.0
    for r in range(0, B, mb):
        s = ce_sum(Pg, cfg, inputs[r:r + mb], targets[r:r + mb], mask[r:r + mb])
        (s / count).backward()
        total += float(s)
    return total / count, {k: v.grad.detach().clone() for k, v in Pg.items()}


def train(cfg, tc, params_np, samples, dtype=F64):
    """Run tc.steps steps from params_np. Returns (records, P, optimizer,
    grads_of_step), records = [{step, loss, lr, grad_norm, tokens}]."""
    P = to_torch(params_np, dtype)
    opt = AdamW(param_shapes(cfg), tc.beta1, tc.beta2, tc.eps, tc.weight_decay)
    recs, tokens, all_grads = [], 0, []
    for s in range(1, tc.steps + 1):
        idx = step_indices(s, tc.global_batch, len(samples))
        inp, tgt, mask, ntok = make_batch(samples, idx, tc.seq_len)
        tokens += ntok
        loss, g = loss_and_grads(P, cfg, inp, tgt, mask, tc.micro_batch)
        all_grads.append({k: v.clone() for k, v in g.items()})
        norm = clip_grads(g, tc.grad_clip)
        lr = lr_at(s, tc.lr, tc.min_lr, tc.warmup_steps, tc.steps, tc.lr_schedule)
        P = opt.step(P, g, lr)
        recs.append(dict(step=s, loss=loss, lr=lr, grad_norm=norm, tokens=tokens))
    return recs, P, opt, all_grads


# --------------------------------------------------------------------------
# Files (SPEC §4, §5)
# --------------------------------------------------------------------------
def write_token_file(path, samples, vocab_size):
    toks = np.concatenate([np.asarray(s, dtype=np.uint32) for s in samples]) if samples else \
        np.zeros(0, np.uint32)
    offs = np.zeros(len(samples) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(s) for s in samples])
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=toks.astype(np.uint32))
        f.create_dataset("samples/offsets", data=offs)
        f.attrs["format"] = "lamina-tokens"
        f.attrs["version"] = np.int64(1)
        f.attrs["vocab_size"] = np.int64(vocab_size)


def write_init_ckpt(path, cfg, params_np, deck_text="; written by tests/ref/llama_ref.py\n"):
    """A step-0 checkpoint holding model weights only (no /optim), float32."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "lamina-ckpt"
        f.attrs["version"] = np.int64(1)
        f.attrs["step"] = np.int64(0)
        f.attrs["tokens_seen"] = np.int64(0)
        f.attrs["consumed_samples"] = np.int64(0)
        c = f.create_group("config")
        for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size",
                  "max_seq_len"):
            c.attrs[k] = np.int64(getattr(cfg, k))
        c.attrs["tie_embeddings"] = np.int64(1 if cfg.tie_embeddings else 0)
        c.attrs["norm_eps"] = np.float64(cfg.norm_eps)
        c.attrs["rope_theta"] = np.float64(cfg.rope_theta)
        c.attrs["deck"] = deck_text
        for name, shape in param_shapes(cfg):
            a = np.asarray(params_np[name], dtype=np.float32)
            assert a.shape == tuple(shape), (name, a.shape, shape)
            f.create_dataset("model/" + name, data=a)


def read_ckpt(path):
    """{'attrs', 'model', 'exp_avg', 'exp_avg_sq'} with float64 numpy arrays."""
    out = {"attrs": {}, "model": {}, "exp_avg": {}, "exp_avg_sq": {}}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: f.attrs[k] for k in f.attrs}

        def grab(group, dst):
            if group not in f:
                return
            f[group].visititems(lambda n, o: dst.__setitem__(n, np.asarray(o[()], np.float64))
                                if isinstance(o, h5py.Dataset) else None)
        grab("model", out["model"])
        grab("optim/exp_avg", out["exp_avg"])
        grab("optim/exp_avg_sq", out["exp_avg_sq"])
    return out


def latest_ckpt(ckdir):
    import os
    with open(os.path.join(ckdir, "latest")) as f:
        return os.path.join(ckdir, f.read().strip())


# --------------------------------------------------------------------------
# Self-test of the reference
# --------------------------------------------------------------------------
def _naive_attention(x, P, pre, cfg):
    """Attention by explicit loops, RoPE as complex multiplication: an
    independent formulation of the same math."""
    B, T, _ = x.shape
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    half = hd // 2
    q = x @ P[pre + "q_proj.weight"].T
    k = x @ P[pre + "k_proj.weight"].T
    v = x @ P[pre + "v_proj.weight"].T
    out = torch.zeros(B, T, H * hd, dtype=x.dtype)

    def rot(vec, p):
        z = torch.complex(vec[:half], vec[half:])
        f = torch.tensor([cfg.rope_theta ** (-2.0 * i / hd) for i in range(half)], dtype=F64)
        z = z * torch.polar(torch.ones_like(f), p * f)
        return torch.cat([z.real, z.imag])

    for b in range(B):
        for h in range(H):
            g = h // (H // KV)
            for t in range(T):
                qt = rot(q[b, t, h * hd:(h + 1) * hd], t)
                sc = torch.stack([qt @ rot(k[b, u, g * hd:(g + 1) * hd], u) for u in range(t + 1)])
                w = torch.softmax(sc / math.sqrt(hd), 0)
                out[b, t, h * hd:(h + 1) * hd] = sum(w[u] * v[b, u, g * hd:(g + 1) * hd]
                                                     for u in range(t + 1))
    return out @ P[pre + "o_proj.weight"].T


def selftest():
    """[(ok, name, diagnostic)] for properties the reference must have."""
    res = []
    torch.manual_seed(0)
    small = ModelCfg(dim=8, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=12, vocab_size=11,
                     rope_theta=100.0)
    P = to_torch(random_params(small, 1, std=0.3), F64)
    inp = torch.randint(0, small.vocab_size, (2, 5))
    tgt = torch.randint(0, small.vocab_size, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)

    # 1. autograd gradient vs central finite differences
    names = list(P)
    flat = torch.cat([P[n].reshape(-1) for n in names]).detach()

    def f(vec):
        Q, o = {}, 0
        for n in names:
            k = P[n].numel()
            Q[n] = vec[o:o + k].view(P[n].shape)
            o += k
        return ce_sum(Q, small, inp, tgt, mask) / mask.sum()
    ok = torch.autograd.gradcheck(f, (flat.clone().requires_grad_(True),), eps=1e-6, atol=1e-7,
                                  rtol=1e-5, raise_exception=False)
    res.append((ok, "reference: autograd gradient agrees with finite differences", ""))

    # 2. zero lm_head: uniform logits, loss = ln(vocab)
    Q = dict(P)
    cfg_u = ModelCfg(**{**asdict(small), "tie_embeddings": False})
    Q["lm_head.weight"] = torch.zeros(small.vocab_size, small.dim, dtype=F64)
    L = float(ce_sum(Q, cfg_u, inp, tgt, mask) / mask.sum())
    res.append((abs(L - math.log(small.vocab_size)) < 1e-12, "reference: uniform logits give ln(V)",
                f"loss {L} vs {math.log(small.vocab_size)}"))

    # 3. causality: changing token t leaves logits at < t alone, changes >= t
    lg = forward_logits(P, small, inp)
    inp2 = inp.clone()
    inp2[0, 3] = (inp2[0, 3] + 1) % small.vocab_size
    lg2 = forward_logits(P, small, inp2)
    ok = torch.equal(lg[:, :3], lg2[:, :3]) and bool((lg[0, 3] - lg2[0, 3]).abs().max() > 1e-6) \
        and torch.equal(lg[1], lg2[1])
    res.append((ok, "reference: causal (later tokens never change earlier logits)", ""))

    # 4. padding id does not matter; rows are independent
    inp3 = inp.clone()
    inp3[0, 3:] = 7
    a = float(ce_sum(P, small, inp, tgt, mask))
    b = float(ce_sum(P, small, inp3, tgt, mask))
    res.append((a == b, "reference: padding inputs do not change the loss", f"{a} vs {b}"))

    # 5. RoPE is a rotation depending only on relative position
    hd = 8
    cos, sin = rope_cos_sin(12, hd, 10000.0)
    qv, kv = torch.randn(hd, dtype=F64), torch.randn(hd, dtype=F64)
    rq = apply_rope(qv.expand(12, hd), cos, sin)
    rk = apply_rope(kv.expand(12, hd), cos, sin)
    d1 = float(rq[5] @ rk[2])
    d2 = float(rq[9] @ rk[6])
    ok = abs(d1 - d2) < 1e-12 and torch.allclose(rq[0], qv) and \
        torch.allclose(rq.norm(dim=-1), qv.norm().expand(12))
    res.append((ok, "reference: RoPE is a norm-preserving rotation by relative position",
                f"{d1} vs {d2}"))

    # 6. attention vs a naive loop with complex-number RoPE (GQA 2:1 and MHA)
    worst = 0.0
    for kvh in (1, 2):
        c = ModelCfg(**{**asdict(small), "n_kv_heads": kvh})
        Pc = to_torch(random_params(c, 2, std=0.3), F64)
        x = torch.randn(2, 5, c.dim, dtype=F64)
        cs, sn = rope_cos_sin(5, c.head_dim, c.rope_theta)
        a = attention(x, Pc, "model.layers.0.self_attn.", c, cs, sn)
        b = _naive_attention(x, Pc, "model.layers.0.self_attn.", c)
        worst = max(worst, float((a - b).abs().max()))
    res.append((worst < 1e-12, "reference: attention equals a naive loop (MHA and GQA)",
                f"max diff {worst:.3g}"))

    # 7. GQA equals MHA with the k/v heads repeated
    c4 = ModelCfg(dim=16, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=20, vocab_size=13)
    Pg = to_torch(random_params(c4, 3, std=0.3), F64)
    cm = ModelCfg(**{**asdict(c4), "n_kv_heads": 4})
    Pm = dict(Pg)
    hd = c4.head_dim
    for w in ("k_proj", "v_proj"):
        W = Pg[f"model.layers.0.self_attn.{w}.weight"].view(2, hd, c4.dim)
        Pm[f"model.layers.0.self_attn.{w}.weight"] = W.repeat_interleave(2, 0).reshape(4 * hd, c4.dim)
    x = torch.randint(0, 13, (2, 6))
    d = float((forward_logits(Pg, c4, x) - forward_logits(Pm, cm, x)).abs().max())
    res.append((d < 1e-12, "reference: GQA equals MHA with repeated k/v heads", f"max diff {d:.3g}"))

    # 8. AdamW (decay on 2-D only) and clipping vs torch.optim.AdamW / clip_grad_norm_
    shapes = param_shapes(small)
    P0 = to_torch(random_params(small, 4), F64)
    tp = {n: v.clone().requires_grad_(True) for n, v in P0.items()}
    topt = torch.optim.AdamW(
        [{"params": [tp[n] for n, s in shapes if is_decayed(s)], "weight_decay": 0.1},
         {"params": [tp[n] for n, s in shapes if not is_decayed(s)], "weight_decay": 0.0}],
        lr=0.01, betas=(0.9, 0.95), eps=1e-8)
    mine = AdamW(shapes, 0.9, 0.95, 1e-8, 0.1)
    Pm = dict(P0)
    worst, worst_norm = 0.0, 0.0
    for step in range(3):
        g = {n: torch.randn_like(v) * (0.1 + step) for n, v in P0.items()}
        for n in tp:
            tp[n].grad = g[n].clone()
        tn = float(torch.nn.utils.clip_grad_norm_([tp[n] for n in names], 0.5))
        mn = clip_grads(g, 0.5)
        worst_norm = max(worst_norm, abs(tn - mn) / tn)
        topt.step()
        Pm = mine.step(Pm, g, 0.01)
        worst = max(worst, max(float((Pm[n] - tp[n].detach()).abs().max()) for n in names))
    res.append((worst < 1e-14 and worst_norm < 1e-14,
                "reference: AdamW + clipping equal torch.optim.AdamW + clip_grad_norm_",
                f"max weight diff {worst:.3g}, norm rel diff {worst_norm:.3g}"))

    # 9. schedule
    ok = (lr_at(1, 1.0, 0.1, 2, 4, "cosine") == 0.5 and lr_at(2, 1.0, 0.1, 2, 4, "cosine") == 1.0
          and abs(lr_at(3, 1.0, 0.1, 2, 4, "cosine") - 0.55) < 1e-15
          and abs(lr_at(4, 1.0, 0.1, 2, 4, "cosine") - 0.1) < 1e-15
          and lr_at(7, 2.0, 0.0, 0, 9, "constant") == 2.0)
    res.append((ok, "reference: lr schedule (warmup, cosine, constant)", ""))

    # 10. micro-batched accumulation of sum/total equals the one-shot global mean
    l1, g1 = loss_and_grads(P, small, inp, tgt, mask)
    l2, g2 = loss_and_grads(P, small, inp, tgt, mask, micro_batch=1)
    d = max(float((g1[n] - g2[n]).abs().max()) for n in g1)
    res.append((abs(l1 - l2) < 1e-12 and d < 1e-12,
                "reference: gradient accumulation equals the global-batch gradient",
                f"loss diff {abs(l1 - l2):.3g}, grad diff {d:.3g}"))
    return res


if __name__ == "__main__":
    import sys
    r = selftest()
    print(f"1..{len(r)}")
    bad = 0
    for i, (ok, name, diag) in enumerate(r, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        if diag:
            print(f"# {diag}")
        bad += not ok
    sys.exit(1 if bad else 0)
