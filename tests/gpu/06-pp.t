#!/bin/bash
# Pipeline parallelism on CUDA: the 03-train deck with 4 layers (12 steps)
# at pp 2, with 1f1b and with the interleaved schedule (2 chunks per stage),
# tracks the single-GPU run (every loss within 2%), and its checkpoint
# resumes on one GPU. Both ranks share one GPU when there is one; pipeline
# sends go through host memory (MPI) in this version.
# Without a usable GPU this fails, unless LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
TOL=0.02
STEPS=12

gpu_data
gpu_deck $STEPS "every = 6"
L=(model.n_layers=4)

lam 1 train "$T/gpu.in" "${L[@]}" train.device=cuda checkpoint.dir="$T/ck1" log.metrics="$T/cuda1.jsonl"
skip_without_gpu
plan 7
[ "$rc" = 0 ] && ok "cuda, one rank: $STEPS steps" || notok "cuda, one rank (exit $rc)" "$(why)"
lam 2 train "$T/gpu.in" "${L[@]}" train.device=cuda parallel.pp=2 parallel.comm=mpi checkpoint.dir="$T/ck2" \
  log.metrics="$T/pp2.jsonl"
[ "$rc" = 0 ] && ok "cuda, pp 2 1f1b: $STEPS steps" || notok "cuda, pp 2 (exit $rc)" "$(why)"
lam 2 train "$T/gpu.in" "${L[@]}" train.device=cuda parallel.pp=2 parallel.schedule=interleaved \
  parallel.virtual_stages=2 parallel.comm=mpi checkpoint.dir="$T/ck3" log.metrics="$T/il.jsonl"
[ "$rc" = 0 ] && ok "cuda, pp 2 interleaved: $STEPS steps" || notok "cuda, pp 2 interleaved (exit $rc)" "$(why)"
lam 1 train "$T/gpu.in" "${L[@]}" train.device=cuda checkpoint.restart="$T/ck2/step_00000006.h5" \
  checkpoint.dir="$T/ckr" log.metrics="$T/resume.jsonl"
[ "$rc" = 0 ] && ok "the pp 2 checkpoint resumes on one GPU" || notok "pp 2 checkpoint resumes on one GPU" "$(why)"

touch "$T/cuda1.jsonl" "$T/pp2.jsonl" "$T/il.jsonl" "$T/resume.jsonl"
$PY - "$T" "$STEPS" "$TOL" > "$T/verdict" <<'PYEOF'
import json, sys
d, steps, tol = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def rd(n):
    return {r["step"]: r["loss"] for r in (json.loads(l) for l in open(f"{d}/{n}.jsonl") if l.strip())}
one, pp2, il, res = rd("cuda1"), rd("pp2"), rd("il"), rd("resume")
def worst(a, b, lo=1):
    s = range(lo, steps + 1)
    if any(k not in a or k not in b for k in s): return float("inf")
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in s)
print("# step   cuda pp1   cuda pp2  cuda interleaved", file=sys.stderr)
for k in range(1, steps + 1):
    print(f"# {k:4d} " + " ".join(f"{r.get(k, float('nan')):10.5f}" for r in (one, pp2, il)), file=sys.stderr)
for name, a, b, lo in (("cuda pp 2 (1f1b) vs cuda pp 1", pp2, one, 1),
                       ("cuda pp 2 interleaved vs cuda pp 1", il, one, 1),
                       ("resumed on one GPU (steps 7+) vs cuda pp 2", res, pp2, 7)):
    w = worst(a, b, lo)
    print(("ok" if w <= tol else "notok") + f"\t{name}: every loss within {100*tol:g}% (worst {100*w:.3f}%)")
PYEOF
verdicts 3
finish
