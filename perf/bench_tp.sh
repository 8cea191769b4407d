#!/bin/bash
# bench_tp.sh — tensor parallelism on the CPU backend (part of `make bench`).
# For tp = 1, 2, 4, without and with sequence parallelism (and with
# recompute at tp 4), on one LLaMA shape:
#  1. the bytes each tp rank moves per step: the payloads lamina's comm layer
#     counted (all-reduce / reduce-scatter / all-gather), the bytes sent (=
#     received) under ring algorithms, lamina's exact formula (model.h,
#     tp_comm_formula) and Megatron-LM's per-layer figure (Korthikanti et
#     al. 2022: 4 all-reduces of b*s*h per layer and micro-batch without sp,
#     4 all-gathers + 4 reduce-scatters with sp, i.e. 8 (p-1)/p b s h e bytes
#     sent either way), times layers and micro-batches;
#  2. activation memory per rank kept for backward, with and without sp,
#     against the per-token count of the tensors kept per layer:
#       without sp: 2D (x, a: the residual stream) + (2D + 2KVD + 2F)/tp
#                   (q, att, k, v, g, u: this rank's heads and ffn columns)
#       with sp:    (2D + 2D + 2KVD + 2F)/tp  (the residual stream sharded)
#     plus float32 statistics (rstd, lse), times R tokens and L layers;
#  3. tokens/s and step time (the machine is shared: ratios, not targets).
# Ranks oversubscribe the cores on small machines; 1 OpenMP thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
DIM=256 LAYERS=4 HEADS=8 KV=4 FFN=704 VOCAB=4096 SEQ=256 MB=2
OUT=out/bench_tp
PY=/usr/bin/python3
mkdir -p "$OUT"
$PY perf/bench_tokens.py "$OUT/tokens.h5" $VOCAB $SEQ
source perf/bench_lib.sh
bench_deck "$OUT/bench.in" 4 $MB 4
run() { # NAME NP OVERRIDES...
  local name=$1 np=$2; shift 2
  bench_mpirun "$name.log" "$np" train "$OUT/bench.in" "$@" log.metrics="$OUT/$name.jsonl"
}
echo "== tensor parallelism: dim $DIM, $LAYERS layers, $HEADS heads ($KV kv), ffn $FFN, vocab $VOCAB," \
     "micro-batch $MB x $SEQ tokens, 2 micro-batches per step, fp32 =="
run tp1 1
for tp in 2 4; do
  run tp$tp $tp parallel.tp=$tp
  run tp${tp}sp $tp parallel.tp=$tp parallel.sp=true
done
run tp4sp_rc 4 parallel.tp=4 parallel.sp=true train.recompute=true
$PY - "$OUT" $DIM $LAYERS $HEADS $KV $FFN $SEQ $MB <<'EOP'
import json, re, sys
out = sys.argv[1]
D, L, H, KV, F, S, B = map(int, sys.argv[2:])
hd, R, micro = D // H, S * B, 2
def log(n): return open(f"{out}/{n}.log").read()
def num(pat, t):
    m = re.search(pat, t)
    return [float(x) for x in m.groups()] if m else None
def tps(n):
    rows = [json.loads(l) for l in open(f"{out}/{n}.jsonl")]
    ms = sorted(r["step_ms"] for r in rows[1:]) or [rows[0]["step_ms"]]
    toks = sorted(r["tokens_per_s"] for r in rows[1:]) or [rows[0]["tokens_per_s"]]
    return toks[len(toks) // 2], ms[len(ms) // 2]
print("\n1. tensor-parallel communication per step and rank (bytes; e = 4, fp32 over MPI)")
print(f"{'layout':<14}{'all-reduce':>12}{'red-scatter':>12}{'all-gather':>12}{'sent=recv':>12}"
      f"{'formula':>12}{'Meg. paper':>12}{'sent/paper':>11}{'Meg. code':>12}{'sent/code':>10}")
for n, p, sp in (("tp2", 2, 0), ("tp2sp", 2, 1), ("tp4", 4, 0), ("tp4sp", 4, 1), ("tp4sp_rc", 4, 1)):
    t = log(n)
    m = num(r"measured: all-reduce (\d+), reduce-scatter (\d+), all-gather (\d+); sent (\d+)", t)
    f = num(r"formula:  all-reduce (\d+), reduce-scatter (\d+), all-gather (\d+); sent (\d+)", t)
    rc = n.endswith("_rc")
    unit = (p - 1) / p * R * D * 4 * L * micro
    meg = 8 * unit * (1.5 if rc else 1.0)
    code = ((10 + (4 if rc else 0)) if sp else (8 + (4 if rc else 0))) * unit
    print(f"{n:<14}{m[0]:>12.0f}{m[1]:>12.0f}{m[2]:>12.0f}{m[3]:>12.0f}{f[3]:>12.0f}{meg:>12.0f}{m[3] / meg:>11.3f}"
          f"{code:>12.0f}{m[3] / code:>10.3f}" + ("" if m == f else "   MEASURED != FORMULA"))
print("   formula = lamina's exact count (src/model/model.h, tp_comm_formula)")
print("   Meg. paper = Korthikanti et al. 2022: 8 (p-1)/p b s h e bytes per layer and micro-batch, tp or tp+sp")
print("   Meg. code = Megatron-LM's implementation: the same without sp; with sp its column-parallel backward")
print("   all-gathers the layer input again (+2 all-gathers per layer: 10 (p-1)/p b s h e); full recompute")
print("   re-runs each layer forward (+4 (p-1)/p b s h e). Neither counts the embedding, lm_head and loss statistics,")
print("   which is the remaining ~12% here (2 extra all-reduces per micro-batch over 16 for 4 layers).")

print("\n2. activation memory per rank kept for backward (bytes)")
print(f"{'layout':<14}{'measured':>12}{'formula':>12}{'vs tp1':>9}{'with workspace':>16}")
base = None
for n, p, sp in (("tp1", 1, 0), ("tp2", 2, 0), ("tp2sp", 2, 1), ("tp4", 4, 0), ("tp4sp", 4, 1)):
    t = log(n)
    kept, tot = num(r"activation memory per rank: (\d+) B kept for backward, (\d+) B with workspace", t)
    Hl = H // p
    kvl = hd if KV < p else KV * hd // p   # kv heads replicated when KV < p: one head per rank
    per_tok = (2 * D / (p if sp else 1) + (2 * D / p + 2 * kvl + 2 * F / p)) * 4
    stats = (2 / (p if sp else 1) + Hl) * 4          # rstd1, rstd2; lse per head
    want = L * R * (per_tok + stats)
    base = base or kept
    print(f"{n:<14}{kept:>12.0f}{want:>12.0f}{kept / base:>9.3f}{tot:>16.0f}")

print("\n3. throughput (median of steps 2-4; oversubscribed shared cores: compare side by side only)")
for n in ("tp1", "tp2", "tp2sp", "tp4", "tp4sp", "tp4sp_rc"):
    tk, ms = tps(n)
    print(f"{n:<14}{tk:>10.0f} tokens/s {ms:>10.0f} ms/step")
EOP
