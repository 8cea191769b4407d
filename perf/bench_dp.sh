#!/bin/bash
# bench_dp.sh — data parallelism and ZeRO on the CPU backend (part of
# `make bench`):
#  1. peak memory per rank for ZeRO 0/1/2 at dp = 4 (measured peak RSS of the
#     largest rank, and the bytes lamina accounts for weights / gradients /
#     optimizer state against the ZeRO formulas);
#  2. communication/computation overlap at dp = 2: the time ranks are blocked
#     in communication per step with parallel.overlap_comm on and off; the
#     fraction of it that overlap hides is 1 - blocked(on) / blocked(off).
# Same LLaMA shape as bench_cpu.sh (16.9M parameters). Ranks oversubscribe
# the cores on small machines; each rank runs 1 OpenMP thread.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
DIM=384 LAYERS=6 HEADS=6 FFN=1024 VOCAB=8192 SEQ=256
OUT=out/bench_dp
PY=/usr/bin/python3
mkdir -p "$OUT"
$PY perf/bench_tokens.py "$OUT/tokens.h5" $VOCAB $SEQ
source perf/bench_lib.sh
bench_deck "$OUT/bench.in" 3 1 4
run() { # LOG NP OVERRIDES...
  local log=$1 np=$2; shift 2
  bench_mpirun "$log" "$np" train "$OUT/bench.in" "$@"
}
echo "== 1. memory per rank, dp = 4, ZeRO 0/1/2 (3 steps, micro_batch 1, seq $SEQ) =="
for z in 0 1 2; do run mem_z$z.log 4 parallel.zero=$z log.metrics="$OUT/mem_z$z.jsonl"; done
echo "== 2. overlap, dp = 2 (14 steps, 4 sequences per rank per step; medians of steps 3-14) =="
for z in 0 2; do
  for ov in true false; do
    run ov_z${z}_$ov.log 2 parallel.zero=$z parallel.overlap_comm=$ov train.steps=14 train.global_batch=8 \
      train.micro_batch=4 log.metrics="$OUT/ov_z${z}_$ov.jsonl"
  done
done
$PY - "$OUT" <<'EOP'
import json, re, sys
out = sys.argv[1]
MiB = 1024 * 1024
print("\n| ZeRO stage (dp 4) | weights MiB | gradients MiB | optimizer MiB | sum (formula) MiB | peak RSS, largest rank MiB |")
print("| --- | --- | --- | --- | --- | --- |")
for z in (0, 1, 2):
    log = open(f"{out}/mem_z{z}.log").read()
    m = re.search(r"Psi = (\d+) elements with padding\): weights (\d+) B .*gradients (\d+) B .*optimizer state (\d+) B", log)
    psi, w, g, o = map(int, m.groups())
    rss = float(re.search(r"peak RSS ([\d.]+) MiB", log).group(1))
    print(f"| {z} | {w/MiB:.1f} | {g/MiB:.1f} | {o/MiB:.1f} | {(w+g+o)/MiB:.1f} | {rss:.1f} |")
print(f"\nPsi = {psi} elements (with chunk padding)")

def mean(path, key):
    """median over steps 3.. (after warm-up): robust to a noisy shared machine"""
    v = sorted(json.loads(l)[key] for l in list(open(path))[2:])
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

print("\n| ZeRO stage (dp 2) | step ms, overlap on | step ms, overlap off | blocked in comm ms, on | blocked ms, off | hidden fraction |")
print("| --- | --- | --- | --- | --- | --- |")
for z in (0, 2):
    on, off = f"{out}/ov_z{z}_true.jsonl", f"{out}/ov_z{z}_false.jsonl"
    s_on, s_off, c_on, c_off = mean(on, "step_ms"), mean(off, "step_ms"), mean(on, "comm_ms"), mean(off, "comm_ms")
    print(f"| {z} | {s_on:.0f} | {s_off:.0f} | {c_on:.1f} | {c_off:.1f} | {1 - c_on / c_off:.2f} |")
EOP
