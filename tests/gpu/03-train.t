#!/bin/bash
# Training on CUDA tracks the CPU reference: the same deck (a small GQA model
# with head_dim 64, byte vocabulary, 20 steps) run with train.device = cpu
# (float32), with the CPU's bf16 emulation (train.precision = bf16) and with
# train.device = cuda. Every CUDA loss must be within 2% (relative) of the
# float32 CPU loss at the same step, likewise against the bf16 emulation, and
# the losses must fall. The table of losses goes to stderr (shown by prove).
# Without a usable GPU this fails, unless LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
TOL=0.02
STEPS=20

gpu_data
gpu_deck $STEPS

# CUDA first: a machine without a usable GPU skips here (optional) or fails.
lam 1 train "$T/gpu.in" train.device=cuda checkpoint.dir="$T/ck_cuda" log.metrics="$T/cuda.jsonl"
skip_without_gpu
plan 7
[ "$rc" = 0 ] && ok "cuda: $STEPS steps" || notok "cuda: $STEPS steps (exit $rc)" "$(why)"
lam 1 train "$T/gpu.in" train.device=cpu checkpoint.dir="$T/ck_cpu" log.metrics="$T/cpu.jsonl"
[ "$rc" = 0 ] && ok "cpu (float32): $STEPS steps" || notok "cpu (float32): $STEPS steps (exit $rc)" "$(why)"
lam 1 train "$T/gpu.in" train.device=cpu train.precision=bf16 checkpoint.dir="$T/ck_bf16" log.metrics="$T/bf16.jsonl"
[ "$rc" = 0 ] && ok "cpu bf16 emulation: $STEPS steps" || notok "cpu bf16 emulation: $STEPS steps (exit $rc)" "$(why)"

# Compare: one "ok<TAB>text" / "notok<TAB>text" line per check; the table on stderr.
touch "$T/cuda.jsonl" "$T/cpu.jsonl" "$T/bf16.jsonl"
$PY - "$T" "$STEPS" "$TOL" > "$T/verdict" <<'PYEOF'
import json, sys
d, steps, tol = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def rd(name):
    out = {}
    for l in open(f"{d}/{name}.jsonl"):
        l = l.strip()
        if l:
            r = json.loads(l)
            out[r["step"]] = r
    return out
cu, cp, bf = rd("cuda"), rd("cpu"), rd("bf16")
def f(r, s, k):
    return r[s][k] if s in r and r[s].get(k) is not None else float("nan")
def rel(a, b):
    return abs(a - b) / abs(b) if b == b and a == a and b != 0 else float("inf")
err = sys.stderr
print(f"# {'step':>4} {'cpu fp32':>10} {'cpu bf16':>10} {'cuda':>10} {'cuda/cpu':>9} {'cuda/bf16':>9}"
      f" {'gnorm cpu':>10} {'gnorm cuda':>10}", file=err)
w_cpu = w_bf = 0.0
for s in range(1, steps + 1):
    a, b, c = f(cp, s, "loss"), f(bf, s, "loss"), f(cu, s, "loss")
    e1, e2 = rel(c, a), rel(c, b)
    w_cpu, w_bf = max(w_cpu, e1), max(w_bf, e2)
    print(f"# {s:4d} {a:10.5f} {b:10.5f} {c:10.5f} {100*e1:8.3f}% {100*e2:8.3f}%"
          f" {f(cp, s, 'grad_norm'):10.4f} {f(cu, s, 'grad_norm'):10.4f}", file=err)
cu_tps = [r.get("tokens_per_s", 0) for s, r in sorted(cu.items()) if s > 2]
if cu_tps:
    print(f"# cuda tokens/s (median of steps 3-{steps}): {sorted(cu_tps)[len(cu_tps)//2]:.0f}", file=err)
full = lambda r: sorted(r) == list(range(1, steps + 1))
print(("ok" if full(cu) and full(cp) and w_cpu <= tol else "notok")
      + f"\tevery cuda loss within {100*tol:g}% of the cpu float32 loss (worst {100*w_cpu:.3f}%)")
print(("ok" if full(cu) and full(bf) and w_bf <= tol else "notok")
      + f"\tevery cuda loss within {100*tol:g}% of the cpu bf16-emulation loss (worst {100*w_bf:.3f}%)")
for name, r in (("cpu", cp), ("cuda", cu)):
    a, b = f(r, 1, "loss"), f(r, steps, "loss")
    good = full(r) and b < 0.9 * a
    print(("ok" if good else "notok") + f"\t{name} loss falls: step 1 {a:.4f} -> step {steps} {b:.4f} (want < 90%)")
PYEOF
verdicts 4
finish
