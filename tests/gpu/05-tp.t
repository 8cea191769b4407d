#!/bin/bash
# Tensor parallelism on CUDA: the 03-train deck (12 steps) with tp = 2,
# without and with sequence parallelism, tracks the single-GPU run and the
# CPU bf16 emulation at tp = 2 (every loss within 2%), and its checkpoint
# (row and column slices) resumes on one GPU. With one GPU both ranks share
# it and the tensor-parallel collectives go through MPI (NCCL refuses two
# ranks on one device); with two or more GPUs they run on NCCL.
# Without a usable GPU this fails, unless LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
TOL=0.02
STEPS=12

gpu_data
gpu_deck $STEPS "every = 6"

lam 1 train "$T/gpu.in" train.device=cuda checkpoint.dir="$T/ck1" log.metrics="$T/cuda1.jsonl"
skip_without_gpu
plan 8
[ "$rc" = 0 ] && ok "cuda, one rank: $STEPS steps" || notok "cuda, one rank (exit $rc)" "$(why)"
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
comm=mpi
[ "${ngpu:-0}" -ge 2 ] && comm=nccl
lam 2 train "$T/gpu.in" train.device=cuda parallel.tp=2 parallel.comm=$comm checkpoint.dir="$T/ck2" \
  log.metrics="$T/cuda2.jsonl"
[ "$rc" = 0 ] && ok "cuda, tp 2 (collectives on $comm): $STEPS steps" || notok "cuda, tp 2 (exit $rc)" "$(why)"
lam 2 train "$T/gpu.in" train.device=cuda parallel.tp=2 parallel.sp=true parallel.comm=$comm \
  checkpoint.dir="$T/ck2sp" log.metrics="$T/cuda2sp.jsonl"
[ "$rc" = 0 ] && ok "cuda, tp 2 + sp: $STEPS steps" || notok "cuda, tp 2 + sp (exit $rc)" "$(why)"
lam 2 train "$T/gpu.in" train.device=cpu train.precision=bf16 parallel.tp=2 checkpoint.dir="$T/ckbf" \
  log.metrics="$T/bf16.jsonl"
[ "$rc" = 0 ] && ok "cpu bf16 emulation, tp 2: $STEPS steps" || notok "cpu bf16 emulation, tp 2 (exit $rc)" "$(why)"
lam 1 train "$T/gpu.in" train.device=cuda checkpoint.restart="$T/ck2/step_00000006.h5" checkpoint.dir="$T/ckr" \
  log.metrics="$T/resume.jsonl"
[ "$rc" = 0 ] && ok "the tp 2 checkpoint resumes on one GPU" || notok "tp 2 checkpoint resumes on one GPU" "$(why)"

touch "$T/cuda1.jsonl" "$T/cuda2.jsonl" "$T/cuda2sp.jsonl" "$T/bf16.jsonl" "$T/resume.jsonl"
$PY - "$T" "$STEPS" "$TOL" > "$T/verdict" <<'PYEOF'
import json, sys
d, steps, tol = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def rd(n):
    return {r["step"]: r["loss"] for r in (json.loads(l) for l in open(f"{d}/{n}.jsonl") if l.strip())}
one, tp2, sp, bf, res = rd("cuda1"), rd("cuda2"), rd("cuda2sp"), rd("bf16"), rd("resume")
def worst(a, b, lo=1):
    s = range(lo, steps + 1)
    if any(k not in a or k not in b for k in s): return float("inf")
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in s)
print("# step   cuda tp1   cuda tp2  cuda tp2sp  cpu-bf16 tp2", file=sys.stderr)
for k in range(1, steps + 1):
    print(f"# {k:4d} " + " ".join(f"{r.get(k, float('nan')):10.5f}" for r in (one, tp2, sp, bf)), file=sys.stderr)
for name, a, b, lo in (("cuda tp 2 vs cuda tp 1", tp2, one, 1), ("cuda tp 2 + sp vs cuda tp 1", sp, one, 1),
                       ("cuda tp 2 vs cpu bf16 emulation tp 2 (and the resumed run steps 7+ vs cuda tp 2)", tp2, bf, 1)):
    w = worst(a, b, lo)
    if b is bf:
        w = max(w, worst(res, tp2, 7))
    print(("ok" if w <= tol else "notok") + f"\t{name}: every loss within {100*tol:g}% (worst {100*w:.3f}%)")
PYEOF
verdicts 3
finish
