#!/bin/bash
# plan_table.sh — the performance model (`lamina plan`, perf/PLAN.md):
#   bash perf/plan_table.sh [table]   the headline predictions: LLaMA-2 7B, 13B
#                                     and 70B on 8, 64 and 512 H100 SXM, global
#                                     batch 1024 x 4096 tokens (a markdown table)
#   bash perf/plan_table.sh calib     the CPU calibration microbenchmarks: OpenBLAS
#                                     sgemm on one thread against the per-rank
#                                     width, an AdamW-like streaming loop, MPI
#                                     all-reduce at 2 and 4 ranks
#   bash perf/plan_table.sh validate  lamina runs on this machine (1, 2, 4 ranks,
#                                     1 OpenMP thread each) next to the model's
#                                     predictions with inputs/clusters/local-cpu.ini:
#                                     step time (median of the steps after the
#                                     first) and memory per rank (a markdown table)
# Needs build/lamina (make). The machine is shared and noisy: run validate
# twice and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PY=/usr/bin/python3
MODE=${1:-table}
H100=inputs/clusters/h100-sxm.ini
CPU=inputs/clusters/local-cpu.ini

table() {
  local out=out/plan_table
  mkdir -p $out
  for m in llama2-7b llama2-13b llama2-70b; do
    build/lamina plan $m --cluster $H100 --gpus 8,64,512 --global-batch 1024 --seq-len 4096 --top 3 > $out/$m.txt
  done
  $PY - $out <<'EOP'
import re, sys
out = sys.argv[1]
print("| model | GPUs | best layout (dp x tp x pp, v, sp, ZeRO, offload, micro-batch, recompute) | GiB/GPU | host GiB/GPU | step s | tokens/s/GPU | MFU | bubble / tp / dp / transfer + host AdamW share |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for m in ("llama2-7b", "llama2-13b", "llama2-70b"):
    text = open(f"{out}/{m}.txt").read()
    for block in text.split("\n== ")[1:]:
        g = int(block.split(" x ")[0])
        row = re.search(r"^\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d)\s+(\d)\s+(\S+)\s+(\d+)\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)% \|"
                        r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", block, re.M)
        if not row:
            need = re.search(r"smallest needs ([\d.]+) GiB", block).group(1)
            print(f"| {m} | {g} | no layout fits (smallest needs {need} GiB) | | | | | | |")
            continue
        dp, tp, pp, v, sp, z, off, mb, rc, mem, host, step, tps, mfu, tc, tb, tt, td, tpp, to, tx, th = row.groups()
        st = float(step)
        off = "none" if off == "-" else off.replace(":", " ")
        lay = f"{dp} x {tp} x {pp}, v {v}, sp {'on' if sp == '1' else 'off'}, ZeRO-{z}, {off}, mb {mb}, rc {'on' if rc == '1' else 'off'}"
        print(f"| {m} | {g} | {lay} | {mem} | {host} | {st:.2f} | {tps} | {mfu}% | {float(tb)/st:.0%} / {float(tt)/st:.0%} / {float(td)/st:.0%} / {(float(tx) + float(th))/st:.0%} |")
EOP
}

calib() {
  local out=out/plan_calib
  mkdir -p $out
  cat > $out/gemm.c <<'EOC'
/* sgemm rate on one thread: C[M x N] = A[M x K] B[N x K]^T, best of 7 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int M = atoi(argv[1]), K = atoi(argv[2]);
    double peak = atof(argv[3]);
    for (int a = 4; a < argc; a++) {
        int N = atoi(argv[a]);
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
        for (long i = 0; i < (long)M * K; i++) A[i] = (i % 7) * 0.1f;
        for (long i = 0; i < (long)K * N; i++) B[i] = (i % 5) * 0.1f;
        double best = 1e9;
        int rep = 1 + (int)(2e8 / (2.0 * M * N * K));
        for (int r = 0; r < 7; r++) {
            double t = now();
            for (int q = 0; q < rep; q++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
            t = (now() - t) / rep;
            if (t < best) best = t;
        }
        printf("sgemm M %d K %d N %4d: %6.1f GFLOP/s = %.3f of peak\n", M, K, N, 2.0 * M * N * K / best / 1e9,
               2.0 * M * N * K / best / peak / 1e9);
        free(A); free(B); free(C);
    }
    return 0;
}
EOC
  cat > $out/adam.c <<'EOC'
/* an AdamW-like pass (read/write w, m, v; read g) on one core, best of 5 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    size_t n = 20000000;
    float *w = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4), *g = malloc(n * 4);
    for (size_t i = 0; i < n; i++) w[i] = 1, m[i] = 0, v[i] = 0, g[i] = 0.5f;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t = now();
        for (size_t i = 0; i < n; i++) {
            m[i] = 0.9f * m[i] + 0.1f * g[i];
            v[i] = 0.95f * v[i] + 0.05f * g[i] * g[i];
            w[i] -= 1e-3f * m[i] / (v[i] + 1e-8f);
        }
        t = now() - t;
        if (t < best) best = t;
    }
    printf("AdamW-like stream: %.1f GB/s (28 bytes per element)\n", 28.0 * n / best / 1e9);
    return (int)w[7];
}
EOC
  cat > $out/allreduce.c <<'EOC'
/* MPI_Allreduce (sum, float32) by size: bytes sent per rank (ring: 2 (p-1)/p n) over time, best of 5 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int r, p;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &p);
    size_t ns[] = {131072, 1 << 20, 3539968, 17699840};
    for (int k = 0; k < 4; k++) {
        size_t n = ns[k];
        float *a = malloc(n * 4);
        for (size_t i = 0; i < n; i++) a[i] = 1;
        double best = 1e9;
        for (int t = 0; t < 5; t++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, a, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double d = MPI_Wtime() - t0;
            if (d < best) best = d;
        }
        if (!r) printf("allreduce np %d, %6.1f MB: %8.2f ms, %.2f GB/s sent per rank\n", p, n * 4 / 1e6, best * 1e3,
                       2.0 * (p - 1) / p * n * 4 / best / 1e9);
        free(a);
    }
    MPI_Finalize();
    return 0;
}
EOC
  gcc -O2 $out/gemm.c -o $out/gemm $(pkg-config --cflags --libs openblas)
  gcc -O3 -march=native $out/adam.c -o $out/adam
  mpicc -O2 $out/allreduce.c -o $out/allreduce
  local peak
  peak=$($PY -c "import re; print(float(re.search(r'^peak_tflops = ([\d.]+)', open('$CPU').read(), re.M).group(1)) * 1000)")
  echo "== OpenBLAS sgemm, 1 thread, M = 1024 rows (micro-batch x seq), K = 384 (dim), N = per-rank width; peak $peak GFLOP/s =="
  $out/gemm 1024 384 "$peak" 16 32 64 96 128 192 256 384 1024
  echo "== the same, K = 256 =="
  $out/gemm 1024 256 "$peak" 32 64 128 256 704
  $out/adam
  mpirun --oversubscribe --bind-to none -np 2 $out/allreduce
  mpirun --oversubscribe --bind-to none -np 4 $out/allreduce
}

validate() {
  local out0=out/plan_validate
  mkdir -p $out0
  source perf/bench_lib.sh
  # a frozen copy of the binary: others may rebuild build/lamina meanwhile
  cp build/lamina $out0/lamina
  local LAM=$PWD/$out0/lamina
  # shape NAME DIM LAYERS HEADS KV FFN VOCAB SEQ MICRO GLOBAL STEPS
  shape() {
    OUT=$out0/$1; mkdir -p $OUT
    DIM=$2 LAYERS=$3 HEADS=$4 KV=$5 FFN=$6 VOCAB=$7 SEQ=$8
    [ -f $OUT/tokens.h5 ] || $PY perf/bench_tokens.py $OUT/tokens.h5 $VOCAB $SEQ
    bench_deck $OUT/bench.in ${11} $9 ${10}
  }
  # one NAME NP TP PP V SP ZERO MB RC [OVERRIDES...]: the run and the prediction of its layout
  one() {
    local name=$1 np=$2 tp=$3 pp=$4 v=$5 sp=$6 z=$7 mb=$8 rc=$9; shift 9
    local sched=1f1b; [ "$v" -gt 1 ] && sched=interleaved
    local pin=(parallel.tp=$tp parallel.pp=$pp parallel.virtual_stages=$v parallel.schedule=$sched
               parallel.sp=$sp parallel.zero=$z train.micro_batch=$mb train.recompute=$rc "$@")
    echo "== $name: $np rank(s) ${pin[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -rf "$OUT/ckpt"
    mpirun --oversubscribe --bind-to none -np "$np" $LAM train $OUT/bench.in log.metrics=$OUT/$name.jsonl "${pin[@]}" \
      > $OUT/$name.log 2>&1 || { tail -20 $OUT/$name.log; exit 1; }
    $LAM plan $OUT/bench.in --cluster $CPU --gpus $np --top 1 "${pin[@]}" > $OUT/$name.plan
  }
  shape A 384 6 6 6 1024 8192 256 4 4 7      # the bench model of issue 2 (16.9M parameters)
  rm -f $OUT/*.jsonl
  one a1 1 1 1 1 false 0 4 false
  one a2 1 1 1 1 false 0 4 true
  for z in 0 1 2; do one a3z$z 2 1 1 1 false $z 4 false train.global_batch=8; done
  for z in 0 1 2; do one a4z$z 4 1 1 1 false $z 1 false train.global_batch=4 train.steps=4; done
  shape B 256 4 8 4 704 4096 256 2 4 6       # the tp bench (perf/bench_tp.sh)
  rm -f $OUT/*.jsonl
  one b1 1 1 1 1 false 0 2 false
  one b2 2 2 1 1 false 0 2 false
  one b2sp 2 2 1 1 true 0 2 false
  one b4 4 4 1 1 false 0 2 false
  shape C 256 8 8 8 704 512 128 1 8 7        # the pp bench (perf/bench_pp.sh)
  rm -f $OUT/*.jsonl
  one c1 1 1 1 1 false 0 1 false
  one c2 2 1 2 1 false 0 1 false
  one c2i 2 1 2 2 false 0 1 false
  one c2m4 2 1 2 1 false 0 1 false train.global_batch=4
  $PY - $out0 <<'EOP'
import json, re, statistics, sys
out = sys.argv[1]
runs = ["A/a1", "A/a2", "A/a3z0", "A/a3z1", "A/a3z2", "A/a4z0", "A/a4z1", "A/a4z2",
        "B/b1", "B/b2", "B/b2sp", "B/b4", "C/c1", "C/c2", "C/c2i", "C/c2m4"]
print("| run | ranks | layout | measured step ms: median (min-max) | predicted ms | pred / median | pred / min | measured comm ms | predicted exposed comm ms | memory MiB measured (w+g+o+act) | predicted | peak RSS MiB | predicted + reserve |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    log, plan = open(f"{out}/{r}.log").read(), open(f"{out}/{r}.plan").read()
    rows = [json.loads(l) for l in open(f"{out}/{r}.jsonl")][1:]
    ms = [x["step_ms"] for x in rows]
    med, comm = statistics.median(ms), statistics.median(x.get("comm_ms", 0) for x in rows)
    row = re.search(r"^\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d)\s+(\d)\s+(\S+)\s+(\d+)\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)% \|"
                    r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", plan, re.M).groups()
    dp, tp, pp, v, sp, z = row[:6]
    mb, rc = row[7:9]
    step = float(row[11]) * 1e3
    tcomm = (float(row[16]) + float(row[17]) + float(row[18])) * 1e3
    w, g, o, a = map(float, re.search(r"memory per rank: weights ([\d.]+) MiB, gradients ([\d.]+) MiB.*optimizer state ([\d.]+) MiB, "
                                      r"activations\+workspace ([\d.]+) MiB", log).groups())
    pm = re.search(r"memory per GPU \(stage (\d+).*: weights ([\d.]+) MiB.*gradients ([\d.]+) MiB \(\+ buckets ([\d.]+)\), optimizer state ([\d.]+) MiB, "
                   r"activations kept ([\d.]+) MiB \+ workspace ([\d.]+) MiB", plan).groups()
    st = int(pm[0]); pw, pg, pb, po, pk, pws = map(float, pm[1:])
    rss = float(re.search(r"peak RSS ([\d.]+) MiB", log).group(1))
    res = float(re.search(r"reserve ([\d.]+) GiB", plan).group(1)) * 1024
    lay = f"dp {dp} tp {tp}{' sp' if sp == '1' else ''} pp {pp}{' v ' + v if v != '1' else ''} Z{z} mb {mb}{' rc' if rc == '1' else ''}"
    meas = f"{w:.1f}+{g:.1f}+{o:.1f}+{a:.1f}"
    pred = f"{pw:.1f}+{pg:.1f}+{po:.1f}+{pk + pws:.1f}" + (f" (stage {st})" if st else "")
    np_ = int(dp) * int(tp) * int(pp)
    print(f"| {r.split('/')[1]} | {np_} | {lay} | {med:.0f} ({min(ms):.0f}-{max(ms):.0f}) | {step:.0f} | {step / med:.2f} | {step / min(ms):.2f} | {comm:.0f} | {tcomm:.0f} | "
          f"{meas} | {pred} | {rss:.0f} | {pw + pg + pb + po + pk + pws + res:.0f} |")
EOP
}

case $MODE in
  table) table ;;
  calib) calib ;;
  validate) validate ;;
  *) echo "usage: bash perf/plan_table.sh [table|calib|validate]" >&2; exit 2 ;;
esac
