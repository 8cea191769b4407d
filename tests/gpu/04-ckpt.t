#!/bin/bash
# Checkpoints move between devices: a run on CUDA writes step 3, the CPU
# resumes it for steps 4-6 and must track the uninterrupted CUDA run (losses
# within 2%); and the other way, a CPU checkpoint resumed on CUDA tracks the
# uninterrupted CPU run. The losses go to stderr (shown by prove).
# Without a usable GPU this fails, unless LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
TOL=0.02

gpu_data
gpu_deck 6 "$(printf 'every = 3\nkeep = 4')"

# A: uninterrupted on CUDA, checkpoints at steps 3 and 6.
lam 1 train "$T/gpu.in" train.device=cuda checkpoint.dir="$T/A" log.metrics="$T/A.jsonl"
skip_without_gpu
plan 10
[ "$rc" = 0 ] && [ -f "$T/A/step_00000003.h5" ] && ok "cuda: 6 steps, checkpoint at step 3" \
  || notok "cuda: 6 steps, checkpoint at step 3 (exit $rc)" "$(why)"
# B: the CUDA step-3 checkpoint resumed on the CPU.
lam 1 train "$T/gpu.in" train.device=cpu checkpoint.restart="$T/A/step_00000003.h5" checkpoint.dir="$T/B" \
  log.metrics="$T/B.jsonl"
[ "$rc" = 0 ] && ok "cpu resumes the cuda checkpoint (exit 0)" || notok "cpu resumes the cuda checkpoint (exit $rc)" "$(why)"
grep -q "resuming from .*A/step_00000003.h5" "$T/out" && ok "cpu: resumed from the cuda step 3" \
  || notok "cpu: resumed from the cuda step 3" "$(head -30 "$T/out" | tail -8)"
# C: uninterrupted on the CPU.
lam 1 train "$T/gpu.in" train.device=cpu checkpoint.dir="$T/C" log.metrics="$T/C.jsonl"
[ "$rc" = 0 ] && [ -f "$T/C/step_00000003.h5" ] && ok "cpu: 6 steps, checkpoint at step 3" \
  || notok "cpu: 6 steps, checkpoint at step 3 (exit $rc)" "$(why)"
# D: the CPU step-3 checkpoint resumed on CUDA.
lam 1 train "$T/gpu.in" train.device=cuda checkpoint.restart="$T/C/step_00000003.h5" checkpoint.dir="$T/D" \
  log.metrics="$T/D.jsonl"
[ "$rc" = 0 ] && ok "cuda resumes the cpu checkpoint (exit 0)" || notok "cuda resumes the cpu checkpoint (exit $rc)" "$(why)"
grep -q "resuming from .*C/step_00000003.h5" "$T/out" && ok "cuda: resumed from the cpu step 3" \
  || notok "cuda: resumed from the cpu step 3" "$(head -30 "$T/out" | tail -8)"

touch "$T/A.jsonl" "$T/B.jsonl" "$T/C.jsonl" "$T/D.jsonl"
$PY - "$T" "$TOL" > "$T/verdict" <<'PYEOF'
import json, sys
d, tol = sys.argv[1], float(sys.argv[2])
def rd(name):
    out = {}
    for l in open(f"{d}/{name}.jsonl"):
        l = l.strip()
        if l:
            r = json.loads(l)
            out[r["step"]] = r["loss"]
    return out
A, B, C, D = rd("A"), rd("B"), rd("C"), rd("D")
nan = float("nan")
def rel(a, b):
    return abs(a - b) / abs(b) if a == a and b == b and b != 0 else float("inf")
print(f"# {'step':>4} {'A cuda':>10} {'B cpu<-A@3':>11} {'C cpu':>10} {'D cuda<-C@3':>12} {'B/A':>8} {'D/C':>8} {'A/C':>8}",
      file=sys.stderr)
for s in range(1, 7):
    a, b, c, e = A.get(s, nan), B.get(s, nan), C.get(s, nan), D.get(s, nan)
    print(f"# {s:4d} {a:10.5f} {b:11.5f} {c:10.5f} {e:12.5f} {100*rel(b, a) if s > 3 else 0:7.3f}% "
          f"{100*rel(e, c) if s > 3 else 0:7.3f}% {100*rel(a, c):7.3f}%", file=sys.stderr)
def verdict(name, x, y, steps):
    w = max((rel(x.get(s, nan), y.get(s, nan)) for s in steps), default=float("inf"))
    good = all(s in x and s in y for s in steps) and w <= tol
    print(("ok" if good else "notok") + f"\t{name}: steps {steps[0]}-{steps[-1]} within {100*tol:g}% (worst {100*w:.3f}%)")
verdict("cpu resumed from cuda step 3 vs uninterrupted cuda", B, A, [4, 5, 6])
verdict("cuda resumed from cpu step 3 vs uninterrupted cpu", D, C, [4, 5, 6])
verdict("cuda vs cpu before the checkpoint", A, C, [1, 2, 3])
extra = sorted(set(B) | set(D))
print(("ok" if extra == [4, 5, 6] else "notok") + f"\tresumed runs logged exactly steps 4-6 (have {extra})")
PYEOF
verdicts 4
finish
