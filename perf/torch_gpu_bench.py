#!/usr/bin/env python3
"""torch_gpu_bench.py — the PyTorch baseline for lamina's CUDA backend: Hugging
Face transformers' LlamaForCausalLM trained on random tokens on one GPU.

Model: LlamaConfig(hidden 2048, 24 layers, 16 heads, 16 kv heads,
intermediate 5504, vocab 32000, max_position 2048, rms_norm_eps 1e-5,
rope_theta 10000, tie_word_embeddings False) by default (the 1.3B shape of
perf/gpu_session.sh; --dim, --layers, ... change it), bf16 weights,
attn_implementation="sdpa", torch.optim.AdamW(fused=True). A step is --accum
micro-batches of --batch random sequences of --seq tokens (inputs s[0:T],
targets s[1:T+1], mean cross-entropy in float32 over the step's tokens),
then the optimizer step.

Modes: eager and torch.compile (a compile failure is reported and the run
goes on). Per mode: --warmup steps, then --steps steps timed with
torch.cuda.synchronize; tokens/s = input tokens per step / mean step time.
TFLOP/s uses lamina's model FLOPs per token (SPEC §6): 6*N + 12*L*D*T, N =
parameters that enter a matrix product (all but the input embedding table,
lm_head counted also when tied), causal masking not halved; MFU = TFLOP/s /
--peak. Peak memory = torch.cuda.max_memory_allocated.

If a run does not fit (CUDA out of memory): --grad-ckpt auto retries with
gradient checkpointing, then with half the micro-batch (and twice the
accumulation, so the tokens per step stay the same), down to 1; the JSON
says what ran.

Output: a table on stdout and, with --json FILE, the numbers as JSON
(rewritten after each mode, so a run cut short keeps what finished).
"""
import argparse
import gc
import json
import statistics
import sys
import time
import traceback


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=16)
    p.add_argument("--ffn", type=int, default=5504)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--max-pos", type=int, default=0, help="max_position_embeddings (0: max(2048, seq))")
    p.add_argument("--tied", action="store_true", help="tie_word_embeddings")
    p.add_argument("--batch", type=int, default=4, help="sequences per micro-batch")
    p.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--peak", type=float, default=989.0, help="device peak TFLOP/s for MFU (H100/H200 SXM bf16 dense: 989)")
    p.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile")
    p.add_argument("--grad-ckpt", choices=["auto", "off", "on"], default="auto")
    p.add_argument("--json", default="")
    return p.parse_args()


def flops_per_token(n_params, vocab, dim, layers, seq, tied):
    """SPEC §6: 6*N + 12*n_layers*dim*seq_len, N = every parameter that enters a
    matrix product: all but the input embedding table, lm_head also when tied."""
    n_matmul = n_params - vocab * dim + (vocab * dim if tied else 0)
    return n_matmul, 6.0 * n_matmul + 12.0 * layers * dim * seq


def is_oom(e):
    import torch
    return isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(e).lower()


def build(args, torch, transformers):
    from transformers import LlamaConfig, LlamaForCausalLM
    import inspect
    kw = dict(vocab_size=args.vocab, hidden_size=args.dim, intermediate_size=args.ffn,
              num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
              max_position_embeddings=args.max_pos or max(2048, args.seq), rms_norm_eps=1e-5,
              tie_word_embeddings=args.tied, attn_implementation="sdpa", use_cache=False)
    # transformers >= 5 keeps rope_theta inside rope_parameters
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    else:
        kw["rope_theta"] = 10000.0
    cfg = LlamaConfig(**kw)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:
        pass
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    # parameters were created in bf16; a blanket model.to(bfloat16) would also
    # round the float32 RoPE inv_freq buffer, so cast only stray parameters
    for p in model.parameters():
        if p.dtype != torch.bfloat16:
            p.data = p.data.to(torch.bfloat16)
    model.train()
    return model


def run_mode(args, mode, batch, accum, ckpt, torch, transformers):
    """One measured run; returns a result dict (raises on OOM)."""
    import torch.nn.functional as F
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(args, torch, transformers)
    if ckpt:
        try:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        except TypeError:
            model.gradient_checkpointing_enable()
    n_params = sum(p.numel() for p in model.parameters())
    n_matmul, fpt = flops_per_token(n_params, args.vocab, args.dim, args.layers, args.seq, args.tied)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    V, T = args.vocab, args.seq
    gen = torch.Generator(device="cuda")
    gen.manual_seed(1234)

    def step():
        total = 0.0
        for _ in range(accum):
            s = torch.randint(0, V, (batch, T + 1), device="cuda", generator=gen)
            logits = fwd(input_ids=s[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, V).float(), s[:, 1:].reshape(-1)) / accum
            loss.backward()
            total += loss.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    times, losses = [], []
    t_first = None
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i == 0:
            t_first = dt
        losses.append(float(loss))
        if i >= args.warmup:
            times.append(dt)
    tokens_step = batch * accum * T
    mean = sum(times) / len(times)
    tps = tokens_step / mean
    tflops = fpt * tps / 1e12
    res = dict(mode=mode, status="ok", batch=batch, accum=accum, grad_ckpt=ckpt, seq=T, tokens_per_step=tokens_step,
               step_ms_mean=1e3 * mean, step_ms_median=1e3 * statistics.median(times), first_step_s=t_first,
               tokens_per_s=tps, tflops=tflops, mfu=tflops / args.peak,
               peak_mem_bytes=torch.cuda.max_memory_allocated(), peak_reserved_bytes=torch.cuda.max_memory_reserved(),
               loss_first=losses[0], loss_last=losses[-1], n_params=n_params, n_matmul_params=n_matmul,
               flops_per_token=fpt, attn_implementation=getattr(model.config, "_attn_implementation", "?"))
    del fwd, model, opt
    return res


def attempts(args):
    """(batch, accum, grad_ckpt) to try in order."""
    b, a = args.batch, args.accum
    out = []
    while b >= 1:
        if args.grad_ckpt in ("auto", "off"):
            out.append((b, a, False))
        if args.grad_ckpt in ("auto", "on"):
            out.append((b, a, True))
        if b == 1:
            break
        b, a = b // 2, a * 2
    return out


def main():
    args = parse()
    report = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "runs": []}

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)

    try:
        import torch
        import transformers
    except Exception as e:  # no torch / transformers here
        report["error"] = f"import failed: {e}"
        save()
        print(f"torch_gpu_bench: {report['error']}", file=sys.stderr)
        return 1
    report["torch"] = torch.__version__
    report["transformers"] = transformers.__version__
    if not torch.cuda.is_available():
        report["error"] = "torch.cuda.is_available() is False"
        save()
        print(f"torch_gpu_bench: {report['error']}", file=sys.stderr)
        return 1
    report["device"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {report['device']}; "
          f"LLaMA dim {args.dim} x {args.layers} layers, heads {args.heads}/{args.kv_heads}, ffn {args.ffn}, "
          f"vocab {args.vocab}, seq {args.seq}; micro-batch {args.batch} x accum {args.accum}", flush=True)
    save()
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        res = None
        tried = []
        for (b, a, ck) in attempts(args):
            oom = False
            t0 = time.perf_counter()
            try:
                res = run_mode(args, mode, b, a, ck, torch, transformers)
            except Exception as e:  # keep no reference to e: its frames hold GPU tensors
                oom = is_oom(e)
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400]
                tried.append(dict(batch=b, accum=a, grad_ckpt=ck, error=("OOM: " if oom else "") + msg,
                                  seconds=time.perf_counter() - t0))
                if not oom:
                    traceback.print_exc()
            gc.collect()
            torch.cuda.empty_cache()
            if res is not None:
                res["wall_s"] = time.perf_counter() - t0
                break
            if not oom:
                break  # not a memory problem: less memory will not help (e.g. compile failed)
            print(f"  {mode}: batch {b} grad_ckpt {ck}: out of memory, trying less", flush=True)
        if res is None:
            res = dict(mode=mode, status="failed", error=tried[-1]["error"] if tried else "no attempt")
        res["attempts_failed"] = tried
        report["runs"].append(res)
        save()
        if res["status"] == "ok":
            print(f"  {mode:8s}: {res['tokens_per_s']:9.0f} tok/s  {res['tflops']:7.1f} TFLOP/s  MFU {100*res['mfu']:5.1f}%"
                  f"  peak {res['peak_mem_bytes']/2**30:6.1f} GiB  step {res['step_ms_mean']:.0f} ms"
                  f"  (batch {res['batch']} x accum {res['accum']}, grad ckpt {'on' if res['grad_ckpt'] else 'off'},"
                  f" first step {res['first_step_s']:.1f} s, loss {res['loss_first']:.3f} -> {res['loss_last']:.3f})",
                  flush=True)
        else:
            print(f"  {mode:8s}: FAILED: {res['error']}", flush=True)
    ok = [r for r in report["runs"] if r["status"] == "ok"]
    if ok:
        best = max(ok, key=lambda r: r["tokens_per_s"])
        report["best"] = {k: best[k] for k in ("mode", "tokens_per_s", "tflops", "mfu", "peak_mem_bytes", "batch",
                                                "accum", "grad_ckpt")}
    save()
    print(json.dumps({"best": report.get("best"), "runs": [{k: r.get(k) for k in ("mode", "status", "tokens_per_s",
                                                                              "tflops", "mfu", "peak_mem_bytes")}
                                                            for r in report["runs"]]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
