#!/bin/bash
# bench_pp.sh — pipeline parallelism on the CPU backend (part of `make bench`).
# The pipeline bubble of 1F1B and interleaved 1F1B at several micro-batch
# counts m, next to Megatron-LM's analysis (Narayanan et al. 2021): a stage
# of a p-stage pipeline idles (p-1)(t_f + t_b) per step against m (t_f + t_b)
# of work, a bubble of (p-1)/m; with v model chunks per stage (interleaved)
# the warm-up and cool-down are made of chunks v times smaller: (p-1)/(v m).
#  measured: lamina's own figure (end of a run with pp > 1): per stage, the
#    time it was idle within the step (the stages start each step together
#    and the step ends when the last stage is done), over the time it
#    computed, summed over the steps after the first, the largest over the
#    stage's ranks;
#  replay: lamina's schedules (src/model/pipeline.c) replayed without latency.
#    "pp_simulate" is lamina's own replay: every chunk the same cost, idle
#    counted over the whole step's span (Megatron's definition; equals the
#    formula by construction). "replay, split" replays the same per-stage
#    operation order (pp_schedule) with the layer split the run used (the
#    lm_head costed like lamina's splitter does), t_b = 2 t_f, idle over the
#    whole step's span: what the measurement would read on an ideal machine.
#  tokens/s: median of the steps after the first, with pp = 1 at the same
#    global batch as the baseline.
# Two sweeps on one LLaMA shape (dp 1, micro_batch 1, global_batch = m):
#  1. vocab 512: the lm_head weighs ~0.15 layer, the 8 layers cut into equal
#     stages and chunks, so what is measured is the schedules' own bubble:
#     pp 2 (1f1b; interleaved, v 2) at m = 2, 4, 8, 16, pp 4 at m = 4, 8;
#  2. vocab 4096 (head ~1.2 layers) at pp 2, m = 4, 16: the imbalance.
# Size: at dim 256 the pp 2 figures match the replay within the machine's
# noise, and dim 384 or seq 256 change them by no more than that noise
# (compute dominates the 128 KiB messages); at dim 128 the first stage's
# figure doubled (per-operation overheads count).
# Ranks oversubscribe the cores on small machines; 1 OpenMP thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
DIM=${DIM:-256} LAYERS=${LAYERS:-8} HEADS=${HEADS:-8} FFN=${FFN:-704} SEQ=${SEQ:-128} VSMALL=${VSMALL:-512} VBIG=${VBIG:-4096}
STEPS=${STEPS:-8}
OUT0=out/bench_pp
PY=/usr/bin/python3
mkdir -p "$OUT0"
source perf/bench_lib.sh

# The replay helper: lamina's schedules (pp_schedule) and its replay
# (pp_simulate) from src/model/pipeline.c, compiled here since no CLI exposes them.
# Prints "sim IDLE0 IDLE1 ..." (pp_simulate, t_f = 1, t_b = 2), then one line
# per stage: "ops K:MB:CHUNK ..." (K = 0 forward, 1 backward).
cat > "$OUT0/pp_replay.c" <<'EOC'
#include "pipeline.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int kind = atoi(argv[1]), pp = atoi(argv[2]), v = atoi(argv[3]), m = atoi(argv[4]);
    double *idle = malloc(sizeof(double) * (size_t)pp);
    lm_pp_op *ops = malloc(sizeof(lm_pp_op) * 2 * (size_t)m * (size_t)v);
    if (pp_simulate(kind, pp, v, m, 1.0, 2.0, idle) < 0) return 1;
    printf("sim");
    for (int s = 0; s < pp; s++) printf(" %.6f", idle[s]);
    printf("\n");
    for (int s = 0; s < pp; s++) {
        pp_schedule(kind, pp, v, m, s, ops);
        printf("ops");
        for (int i = 0; i < 2 * m * v; i++) printf(" %d:%d:%d", ops[i].kind, ops[i].mb, ops[i].chunk);
        printf("\n");
    }
    free(idle);
    free(ops);
    return 0;
}
EOC
REPLAY=$OUT0/pp_replay
mpicc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -O2 -Isrc/core -Isrc/model "$OUT0/pp_replay.c" src/model/pipeline.c src/core/common.c \
  -o "$REPLAY" -lm 2>"$OUT0/pp_replay.err" || { echo "(replay helper did not build: replay columns n/a)"; REPLAY=; }

run() { # NAME NP OVERRIDES...
  local name=$1 np=$2; shift 2
  rm -f "$OUT/$name.jsonl" # lamina appends to a metrics file
  bench_mpirun "$name.log" "$np" train "$OUT/bench.in" "$@" log.metrics="$OUT/$name.jsonl"
}
sweep() { # VOCAB "M FOR PP 2" "M FOR PP 4": pp 1 and both schedules at each m, in $OUT0/vocabVOCAB
  VOCAB=$1 OUT=$OUT0/vocab$1
  mkdir -p "$OUT"
  $PY perf/bench_tokens.py "$OUT/tokens.h5" $VOCAB $SEQ
  bench_deck "$OUT/bench.in" $STEPS 1 2
  local m
  for m in $2; do
    run pp1_m$m 1 train.global_batch=$m
    run 1f1b_p2_m$m 2 parallel.pp=2 parallel.schedule=1f1b train.global_batch=$m
    run inter_p2_m$m 2 parallel.pp=2 parallel.schedule=interleaved parallel.virtual_stages=2 train.global_batch=$m
  done
  for m in $3; do
    [[ " $2 " == *" $m "* ]] || run pp1_m$m 1 train.global_batch=$m
    run 1f1b_p4_m$m 4 parallel.pp=4 parallel.schedule=1f1b train.global_batch=$m
    run inter_p4_m$m 4 parallel.pp=4 parallel.schedule=interleaved parallel.virtual_stages=2 train.global_batch=$m
  done
}
echo "== pipeline parallelism: dim $DIM, $LAYERS layers, $HEADS heads, ffn $FFN, seq $SEQ, micro_batch 1, dp 1," \
     "$STEPS steps (bubble over steps 2-$STEPS), fp32, $(getconf _NPROCESSORS_ONLN) core(s) =="
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load (other work on the machine distorts every figure below)"
awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }' &&
  echo "WARNING: the machine is already busy with other work: rows may be off by tens of percent."
t0=$(date +%s)
S_P2="2 4 8 16" S_P4="4 8" B_P2="4 16" B_P4=""
sweep $VSMALL "$S_P2" "$S_P4"
sweep $VBIG "$B_P2" "$B_P4"
echo "(runs took $(( $(date +%s) - t0 )) s; load average after, this script's ranks included:" \
     "$(cut -d' ' -f1-3 /proc/loadavg))"
$PY - "$OUT0" "$REPLAY" "$S_P2" "$S_P4" "$B_P2" "$B_P4" $DIM $FFN $SEQ $VSMALL $VBIG "$(getconf _NPROCESSORS_ONLN)" \
  <<'EOP'
import json, re, subprocess, sys
out0, replay = sys.argv[1], sys.argv[2]
s2, s4, b2, b4 = ([int(x) for x in a.split()] for a in sys.argv[3:7])
D, F, S, VS, VB, ncores = map(int, sys.argv[7:])
SWEEPS = ((VS, s2, s4), (VB, b2, b4))

def tps(out, n):
    rows = [json.loads(l) for l in open(f"{out}/{n}.jsonl")]
    t = sorted(r["tokens_per_s"] for r in rows[1:]) or [rows[0]["tokens_per_s"]]
    return t[len(t) // 2]

def head_cost(V):
    """lamina's splitter weight of the lm_head, in layers (src/run/session.c, head_cost)"""
    return 2 * V * D / (2 * (2 * D * D + 2 * D * D + 3 * F * D) + 4.0 * S * D)

def chunk_costs(counts, head):
    return [counts[c] + (head if c == len(counts) - 1 else 0.0) for c in range(len(counts))]

def replay_split(kind, pp, v, m, tf):
    """lamina's per-stage operation order (pp_schedule) replayed with model
    chunk c costing tf[c] forward and 2 tf[c] backward, no latency: each
    operation starts when its stage is free and its input exists. Returns
    pp_simulate's bubble (equal chunks, whole-step span) and, per stage, the
    idle time within the whole step's span over its busy time (the measured
    figure's definition)."""
    if not replay:
        return None, None
    lines = subprocess.run([replay, str(kind), str(pp), str(v), str(m)], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    sim = [float(x) for x in lines[0].split()[1:]]
    ops = [[tuple(map(int, o.split(":"))) for o in l.split()[1:]] for l in lines[1:1 + pp]]
    C = pp * v
    done, nxt, free, busy = {}, [0] * pp, [0.0] * pp, [0.0] * pp
    progress = True
    while progress:
        progress = False
        for s in range(pp):
            while nxt[s] < len(ops[s]):
                k, mb, j = ops[s][nxt[s]]
                c = j * pp + s
                dep = 0.0
                if k == 0 and c > 0: dep = done.get((0, mb, c - 1))
                if k == 1: dep = done.get((0, mb, c)) if c == C - 1 else done.get((1, mb, c + 1))
                if dep is None: break
                cost = tf[c] * (1 if k == 0 else 2)
                free[s] = max(free[s], dep) + cost
                busy[s] += cost
                done[(k, mb, c)] = free[s]
                nxt[s] += 1
                progress = True
    assert all(nxt[s] == len(ops[s]) for s in range(pp)), "replay deadlocked"
    span = max(free)
    return sim, [(span - busy[s]) / busy[s] for s in range(pp)]

f3 = lambda xs: " ".join(f"{x:.3f}" for x in xs)
mean = lambda xs: sum(xs) / len(xs)
tables = []
for V, p2m, p4m in SWEEPS:
    out, head, rows = f"{out0}/vocab{V}", head_cost(V), []
    for pp, ms in ((2, p2m), (4, p4m)):
        for sched, kind, v in (("1f1b", 0, 1), ("interleaved", 1, 2)):
            for m in ms:
                n = f"{'1f1b' if kind == 0 else 'inter'}_p{pp}_m{m}"
                log = open(f"{out}/{n}.log").read()
                b = re.search(r"pipeline bubble \(idle / compute time per stage, over (\d+) step\(s\)\):(.*) formula", log)
                meas = [float(x) for x in re.findall(r"stage \d+ ([\d.]+);", b.group(2))]
                counts = [int(x) for x in re.search(r"layers per chunk ([\d,]+);", log).group(1).split(",")]
                tf = chunk_costs(counts, head)
                stage = [sum(tf[c] for c in range(s, pp * v, pp)) for s in range(pp)]
                sim, rep = replay_split(kind, pp, v, m, tf)
                rows.append((sched, pp, v, m, meas, (pp - 1) / (v * m), sim, rep, counts, stage,
                             tps(out, n), tps(out, f"pp1_m{m}")))
    tables.append((V, head, rows, sorted(set(p2m) | set(p4m))))

for i, (V, head, rows, ms) in enumerate(tables):
    print(f"\n{i + 1}. pipeline bubble = idle / compute time per stage, vocab {V} (lm_head + loss ~{head:.2f} layer"
          f" by lamina's splitter cost){'; the schedules themselves' if i == 0 else '; a realistic head: the last stage heavier'}")
    print(f"{'schedule':<12}{'pp':>3}{'v':>3}{'m':>4}  {'split':<16}{'stage cost':<20}{'measured per stage':<26}"
          f"{'mean':>6}{'formula':>8}{'meas/form':>10}{'pp_simulate':>12}  {'replay, split':<26}{'mean':>6}"
          f"{'meas/repl':>10}{'tokens/s':>10}{'pp1 tok/s':>10}")
    for sched, pp, v, m, meas, form, sim, rep, counts, stage, tk, base in rows:
        simc = f"{mean(sim):>12.3f}" if sim else f"{'n/a':>12}"
        repc = f"  {f3(rep):<26}{mean(rep):>6.3f}{mean(meas) / mean(rep):>10.2f}" if rep else f"  {'n/a':<42}"
        print(f"{sched:<12}{pp:>3}{v:>3}{m:>4}  {','.join(map(str, counts)):<16}"
              f"{' '.join(f'{x:.2f}' for x in stage):<20}{f3(meas):<26}{mean(meas):>6.3f}{form:>8.3f}"
              f"{mean(meas) / form:>10.2f}{simc}{repc}{tk:>10.0f}{base:>10.0f}")
    print("   pp 1 (the baseline, same shape and global batch): " +
          ", ".join(f"m {m}: {tps(f'{out0}/vocab{V}', f'pp1_m{m}'):.0f} tokens/s" for m in ms))

print(f"""
   formula: (p-1)/m for 1f1b, (p-1)/(v m) interleaved. split: layers per model chunk in model order (chunk c runs on
   stage c mod p); stage cost: the layers each stage holds, the head counted as lamina's splitter does.
   pp_simulate: lamina's replay (src/model/pipeline.c), equal chunks, t_b = 2 t_f, idle over the whole step's span: it
   equals the formula by construction. replay, split: the same schedules (pp_schedule) with this run's split,
   t_b = 2 t_f, idle over the whole step: what the measurement would read on an ideal machine.
   tokens/s: median of steps 2-{len(open(f'{out0}/vocab{VS}/pp1_m2.jsonl').readlines())}; pp1 tok/s: pp 1 at the same global batch.

Notes (why measured differs from the formula):
 - Definition. Like the formula, lamina counts each stage's idle time over the whole step: the stages start a
   step together (a barrier of the pipeline group) and the step ends when the last stage is done.
 - Imbalance. Layers are whole and the lm_head sits on the last chunk: the lighter stages wait for the heaviest,
   every micro-batch, so the bubble no longer falls as 1/m but tends to (heaviest / own stage cost - 1). Lamina's
   splitter minimises the largest CHUNK, not the largest stage sum, which for interleaved can leave the stage sums
   uneven (table 2). The formula assumes equal chunks; "replay, split" includes the split the run used.
 - Forward:backward cost. The formula does not depend on t_b/t_f; the imbalance terms do
   (the replay assumes t_b = 2 t_f for every chunk and the head costed by FLOPs; on the CPU attention, the
   softmax/loss and the head's matmuls run at different efficiencies, so the real chunk costs differ).
 - Messaging and synchronisation. Activations and gradients cross ranks through MPI (shared memory); a receive
   that arrives late, the wait for outstanding sends at the end of the step and the per-micro-batch gradient
   bookkeeping all count as idle.
 - Oversubscription. With {ncores} core(s), pp 2 gets about a core per stage, but pp 4 runs 4 single-thread ranks on
   {ncores} cores: a stage ready to compute may wait for a core (counted as idle), and computing stages slow each
   other down (counted as busy, wall clock); MPI's busy-polling receives also take core time from the computing
   ranks. The pp 4 rows are NOT a clean measurement of the schedules' bubble, and are left in as measured.
 - Noise. Each figure is a sum over {len(open(f"{out0}/vocab{VS}/pp1_m2.jsonl").readlines()) - 1} steps; one step's hiccup (another process, a page-fault burst) is charged
   as idle. Two runs on a quiet machine differed by up to ~0.2 on single entries (pp 2, interleaved, m 8,
   stage 0: 0.08 and 0.27): compare means and trends, not digits.
 - Throughput: pp 1 runs one rank on one core; pp 2 can use both cores, so its tokens/s can reach at most about
   2/(1 + bubble) times pp 1's; pp 4 can do no better than pp 2 on {ncores} cores.""")
EOP
