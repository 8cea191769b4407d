#!/bin/bash
# bench_offload.sh — offload on the CPU backend (part of `make bench`):
# tokens/s of parallel.offload = optim (ZeRO-2), param and auto (ZeRO-3)
# under an emulated device of train.device_memory = $CAP, against
# offload = none on the same layouts without the cap, side by side in one
# run. The shape (dim 256, 4 layers, vocab 2048, seq 128; 4.2M parameters)
# only fits the cap with offload: offload = none needs 53.7 MiB per rank at
# ZeRO-2 and 63.5 MiB at ZeRO-3 (dp 2, by the memory check), and is run under the cap too, to
# show its exit 2. Per mode: the median tokens/s and step time of steps
# 3..$STEPS, mem_device_peak, h2d/d2h bytes per step against the formula
# line lamina prints at start, and lamina's "transfers" summary line (bytes
# moved, copy-engine busy seconds, host wait seconds, the share hidden
# behind compute). ZeRO-3 without a cap frees each gathered chunk after its
# use and gathers it again at the next; under a cap, chunks stay gathered
# while there is room: a ZeRO-3 row with offload = none under a large cap
# ($BIG) separates that from the offload itself. dp 2, ranks oversubscribe the cores, 1 OpenMP thread each.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
DIM=256 LAYERS=4 HEADS=4 FFN=688 VOCAB=2048 SEQ=128
STEPS=${STEPS:-10}
CAP=${CAP:-46M}
BIG=256M   # ZeRO-3 without offload under a cap it fits: gathered chunks stay cached while there is room
OUT=out/bench_offload
PY=/usr/bin/python3
mkdir -p "$OUT"
$PY perf/bench_tokens.py "$OUT/tokens.h5" $VOCAB $SEQ
source perf/bench_lib.sh
bench_deck "$OUT/bench.in" "$STEPS" 1 4
# run NAME OVERRIDES...: lamina on 2 ranks into $OUT/NAME.log and NAME.jsonl;
# a failing run is recorded (its log says why), not fatal.
run() {
  local name=$1; shift
  rm -rf "$OUT/ckpt" "$OUT/$name.jsonl"
  mpirun --oversubscribe --bind-to none -np 2 build/lamina train "$OUT/bench.in" log.metrics="$OUT/$name.jsonl" "$@" \
    >"$OUT/$name.log" 2>&1
  echo "$name: exit $?"
}
echo "== offload, dp 2, $STEPS steps of 4 x $SEQ tokens; device cap $CAP for the offload modes =="
run none_z2 parallel.zero=2
run none_z3 parallel.zero=3
run none_z3_big parallel.zero=3 train.device_memory=$BIG
run optim_z2 parallel.zero=2 parallel.offload=optim train.device_memory=$CAP
run param_z3 parallel.zero=3 parallel.offload=param train.device_memory=$CAP
run auto_z3 parallel.zero=3 parallel.offload=auto train.device_memory=$CAP
run none_z2_cap parallel.zero=2 train.device_memory=$CAP
$PY - "$OUT" "$CAP" "$BIG" <<'EOP'
import json, os, re, statistics, sys
out, cap, big = sys.argv[1:4]
MiB = 1024 * 1024
rows = [("none_z2", "none", 2, "-"), ("none_z3", "none", 3, "-"), ("none_z3_big", "none", 3, big),
        ("optim_z2", "optim", 2, cap),
        ("param_z3", "param", 3, cap), ("auto_z3", "auto", 3, cap)]
base = {}
print("\n| offload | ZeRO | device_memory | tokens/s (median, steps 3+) | vs none, same ZeRO | step ms | "
      "mem_device_peak MiB | H2D / D2H per step MiB (formula) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
summ = []
for name, mode, z, c in rows:
    log = open(os.path.join(out, name + ".log")).read()
    p = os.path.join(out, name + ".jsonl")
    m = [json.loads(l) for l in open(p)] if os.path.exists(p) else []
    tail = [r for r in m if r["step"] >= 3]
    err = next((l for l in log.splitlines() if l.startswith("lamina: error")), "")
    if not tail or err:
        print(f"| {mode} | {z} | {c} | failed: {err.strip()[:160]} | | | | |")
        continue
    tps = statistics.median(r["tokens_per_s"] for r in tail)
    ms = statistics.median(r["step_ms"] for r in tail)
    peak = max(r.get("mem_device_peak", 0) for r in m) / MiB
    h2d = statistics.median(r.get("h2d_bytes", 0) for r in tail) / MiB
    d2h = statistics.median(r.get("d2h_bytes", 0) for r in tail) / MiB
    f = re.search(r"transfers per step \(formula\): H2D (\d+) B, D2H (\d+) B", log)
    fs = f" ({int(f.group(1)) / MiB:.2f} / {int(f.group(2)) / MiB:.2f})" if f else ""
    if mode == "none" and c == "-":
        base[z] = tps
    rel = f"{tps / base[z]:.2f}x" if z in base and not (mode == "none" and c == "-") else "1"
    print(f"| {mode} | {z} | {c} | {tps:.0f} | {rel} | {ms:.1f} | {peak:.2f} | {h2d:.2f} / {d2h:.2f}{fs} |")
    t = next((l for l in log.splitlines() if l.startswith("transfers:")), "")
    if t:
        summ.append(f"{mode} z{z}: {t}")
print()
for s in summ:
    print(s)
log = open(os.path.join(out, "none_z2_cap.log")).read()
err = next((l for l in log.splitlines() if "train.device_memory" in l and "error" in l), "(no exit-2 message)")
print(f"\noffload = none, ZeRO-2 under the cap: {err.strip()}")
EOP
