#!/bin/bash
# bench_cpu.sh — `make bench`: lamina's CPU backend against PyTorch (float32,
# eager, same thread count) on the same LLaMA shape and batch, side by side.
# Prints tokens/s and peak memory of both and their ratios, and a markdown row
# for perf/RESULTS.md.
#
# Shape (issue 2): dim 384, 6 layers, 6 heads, ffn 1024, vocab 8192, seq 256.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-8}
STEPS=${STEPS:-8}      # timed steps (after 2 warm-up steps)
DIM=384 LAYERS=6 HEADS=6 FFN=1024 VOCAB=8192 SEQ=256
OUT=out/bench
mkdir -p "$OUT"
rm -rf "$OUT/ckpt" "$OUT/metrics.jsonl" "$OUT/metrics_rc.jsonl"
PY=/usr/bin/python3

# Random tokens, every sample full length (no padding): both sides do the same work.
$PY perf/bench_tokens.py "$OUT/tokens.h5" $VOCAB $SEQ
source perf/bench_lib.sh
bench_deck "$OUT/bench.in" $((STEPS + 2)) $BATCH $BATCH "weight_decay = 0.1"

echo "== lamina (CPU backend, $THREADS threads, batch $BATCH x $SEQ) =="
OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/lamina train "$OUT/bench.in" \
  > "$OUT/lamina.log" 2>&1 || { tail -20 "$OUT/lamina.log"; exit 1; }
grep -E "^(parameters|memory|MFU|done)" "$OUT/lamina.log"
echo "== lamina with train.recompute = true =="
OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS mpirun -np 1 --bind-to none build/lamina train "$OUT/bench.in" \
  train.recompute=true log.metrics="$OUT/metrics_rc.jsonl" > "$OUT/lamina_rc.log" 2>&1 || { tail -20 "$OUT/lamina_rc.log"; exit 1; }
grep -E "^(memory|done)" "$OUT/lamina_rc.log"
echo "== PyTorch $($PY -c 'import torch; print(torch.__version__)') (float32, eager, $THREADS threads) =="
$PY perf/torch_bench.py --dim $DIM --layers $LAYERS --heads $HEADS --kv-heads $HEADS --ffn $FFN --vocab $VOCAB \
  --seq $SEQ --batch $BATCH --steps $STEPS --warmup 2 --threads $THREADS > "$OUT/torch.json"
cat "$OUT/torch.json"

$PY - "$OUT" "$THREADS" "$BATCH" <<'EOP'
import json, re, statistics, sys, datetime, platform
out, threads, batch = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(f"{out}/metrics.jsonl")][2:]
tps = statistics.median(r["tokens_per_s"] for r in rows)
mfu = statistics.median(r["mfu"] for r in rows)
log = open(f"{out}/lamina.log").read()
rss = float(re.search(r"peak RSS ([0-9.]+) MiB", log).group(1))
rc_rows = [json.loads(l) for l in open(f"{out}/metrics_rc.jsonl")][2:]
rc_tps = statistics.median(r["tokens_per_s"] for r in rc_rows)
rc_rss = float(re.search(r"peak RSS ([0-9.]+) MiB", open(f"{out}/lamina_rc.log").read()).group(1))
same = [r["loss"] for r in rows] == [r["loss"] for r in rc_rows]
t = json.loads(open(f"{out}/torch.json").read().strip().splitlines()[-1])
trss = t["peak_rss_bytes"] / 2**20
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print()
print(f"{'':10} {'tokens/s':>10} {'peak RSS MiB':>13}")
print(f"{'lamina':10} {tps:10.0f} {rss:13.1f}   (MFU {100*mfu:.1f}%)")
print(f"{'lamina rc':10} {rc_tps:10.0f} {rc_rss:13.1f}   (train.recompute; losses identical: {same})")
print(f"{'pytorch':10} {t['tokens_per_s']:10.0f} {trss:13.1f}")
print(f"{'ratio':10} {tps/t['tokens_per_s']:9.2f}x {rss/trss:12.2f}x   (targets: >= 1.50x speed, <= 0.50x memory)")
print()
print("RESULTS.md row:")
print(f"| {datetime.date.today()} | {cpu}, {threads} threads | B={batch} | {tps:.0f} | {t['tokens_per_s']:.0f} | "
      f"{tps/t['tokens_per_s']:.2f}x | {rss:.0f} | {trss:.0f} | {rss/trss:.2f}x | {100*mfu:.1f}% |")
EOP
