#!/bin/bash
# gpu_session.sh — everything a GPU machine should tell us, in one command:
#   1. build lamina for the local GPU (CUDA_ARCH from nvidia-smi's compute
#      capability),
#   2. make check-gpu (tests/gpu/*.t: ops, model, training, checkpoints),
#   3. build/gpu/gpu_bench (cuBLAS GEMM and flash-attention TFLOP/s),
#   4. lamina on the 1.3B LLaMA shape (dim 2048, 24 layers, 16 heads, ffn
#      5504, vocab 32000, seq 2048; micro-batch 4, global batch 8;
#      recompute off, on only if off runs out of memory), a short run,
#   5. perf/torch_gpu_bench.py (Hugging Face LlamaForCausalLM, sdpa, fused
#      AdamW; eager and torch.compile) on the same shape and batch,
#   5b. lamina on the LLaMA-2-7B shape on one GPU with optimizer offload
#      (parallel.offload = optim), tokens/s and MFU next to `lamina plan`'s
#      prediction (SKIP_7B=1 skips it),
#   6. a table: tokens/s, TFLOP/s, MFU, peak GPU memory of both, and the
#      attention-vs-GEMM rates, written as markdown and JSON to $OUT (or
#      perf/out/) and appended as a dated section to perf/RESULTS.md.
# A stage that fails is recorded in the table and the next one still runs;
# every stage has a time limit so that the whole session stays within
# BUDGET seconds (default 540) on an H100.
#
# Knobs (environment): BUDGET, STEPS (lamina steps, 12), MICRO (4), GLOBAL
# (8), TORCH_MODES (eager,compile), PEAK_TFLOPS (device peak; default from
# the GPU's name: H100/H200 989, A100 312), SKIP_BUILD=1, SKIP_CHECK=1,
# SKIP_TORCH=1, RESULTS_MD (the file the section is appended to), LAMINA
# (the binary), DIM LAYERS HEADS KV_HEADS FFN VOCAB SEQ (another shape).
# Files in the output folder: session.log (all of it), build.log,
# check-gpu.log, lamina.log, torch.log, gpu_session.md, gpu_session.json.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUTDIR=${OUT:-$ROOT/perf/out}
mkdir -p "$OUTDIR"
WORK=$(mktemp -d /tmp/lamina-gpu-session.XXXXXX)
CKDIR=""
cleanup() { rm -rf "$WORK"; [ -n "$CKDIR" ] && rm -rf "$CKDIR"; }
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
START=$(date +%s)
BUDGET=${BUDGET:-540}
STEPS=${STEPS:-12}
MICRO=${MICRO:-4}
GLOBAL=${GLOBAL:-8}
TORCH_MODES=${TORCH_MODES:-eager,compile}
RESULTS_MD=${RESULTS_MD:-$ROOT/perf/RESULTS.md}
LAMINA=${LAMINA:-build/lamina}
# the model shape (default: the 1.3B LLaMA) and sequence length
DIM=${DIM:-2048} LAYERS=${LAYERS:-24} HEADS=${HEADS:-16} KV_HEADS=${KV_HEADS:-16} FFN=${FFN:-5504}
VOCAB=${VOCAB:-32000} SEQ=${SEQ:-2048}
NPROC=$(nproc)
STATUS=$WORK/status.txt   # stage<TAB>result<TAB>note, read by the report
: > "$STATUS"

elapsed() { echo $(($(date +%s) - START)); }
# limit WANT [RESERVE]: seconds a stage may take so that RESERVE seconds
# remain for what must follow (0 when none are left)
limit() {
  local want=$1 reserve=${2:-25} left
  left=$((BUDGET - $(elapsed) - reserve))
  [ "$left" -lt "$want" ] && want=$left
  [ "$want" -lt 5 ] && want=0
  echo "$want"
}
record() { # STAGE RESULT NOTE (a failure that was a skip for time is recorded as skipped)
  local r=$2
  case "$r:$3" in FAIL*:skipped:*) r=skipped ;; esac
  printf '%s\t%s\t%s\n' "$1" "$r" "$3" >> "$STATUS"
  echo "== [$1] $r${3:+: $3} (at $(elapsed) s)"
}
# run LIMIT CMD...: the command under timeout; sets rc (124 = timed out)
run() {
  local t=$1; shift
  rc=0
  if [ "$t" -le 0 ]; then rc=125; return; fi
  timeout --kill-after=10 "$t" "$@" || rc=$?
}
why_rc() { case $1 in 0) echo ok ;; 124|137) echo "timed out" ;; 125) echo "skipped: time budget spent" ;; *) echo "exit $1" ;; esac; }

# GPU memory in use (MiB), sampled every 250 ms into FILE while a stage runs
smi_start() { # FILE
  SMI_PID=""
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$1" 2>/dev/null &
  SMI_PID=$!
}
smi_stop() { [ -n "${SMI_PID:-}" ] && kill "$SMI_PID" 2>/dev/null && wait "$SMI_PID" 2>/dev/null; SMI_PID=""; }

main() {
  trap '[ -n "$CKDIR" ] && rm -rf "$CKDIR"' EXIT  # the 16 GB checkpoint folder, also when cut short
  echo "gpu_session: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $ROOT (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')), budget ${BUDGET} s"
  # ------------------------------------------------------------ the device
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  GPU_CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  GPU_MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader 2>/dev/null | head -1)
  DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
  MEM_IDLE=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' ')
  echo "device: ${GPU_NAME:-no nvidia-smi} (compute capability ${GPU_CC:-?}, ${GPU_MEM:-?}, driver ${DRIVER:-?}); $NPROC CPU cores"
  echo "$GPU_NAME" > "$WORK/gpu_name"
  case "$GPU_NAME" in
    *H100*|*H200*|*H800*|*GH200*) PEAK=989 ;;
    *A100*|*A800*) PEAK=312 ;;
    *L40S*) PEAK=362 ;;
    *) PEAK=989 ;;
  esac
  PEAK=${PEAK_TFLOPS:-$PEAK}
  echo "MFU peak: $PEAK TFLOP/s (bf16 dense; PEAK_TFLOPS overrides)"
  ARCH_ARGS=()
  if [ -n "$GPU_CC" ]; then
    SM=${GPU_CC/./}
    CUDA_ARCH="-gencode arch=compute_${SM},code=sm_${SM}"
    ARCH_ARGS=(CUDA_ARCH="$CUDA_ARCH")
    echo "CUDA_ARCH: $CUDA_ARCH"
  fi

  # ----------------------------------------------------------------- build
  if [ "${SKIP_BUILD:-0}" = 1 ]; then
    record build skipped "SKIP_BUILD=1"
  else
    run "$(limit 300 150)" make -j"$NPROC" "${ARCH_ARGS[@]}" all > "$OUTDIR/build.log" 2>&1
    if [ "$rc" = 0 ]; then
      # the GPU test binaries and build/gpu/gpu_bench
      run "$(limit 200 150)" make -j"$NPROC" "${ARCH_ARGS[@]}" gpu-tests >> "$OUTDIR/build.log" 2>&1
      [ "$rc" = 0 ] && record build ok "make all gpu-tests" || record build FAILED "make gpu-tests: $(why_rc $rc)"
    else
      record build FAILED "make all: $(why_rc $rc)"
    fi
    tail -15 "$OUTDIR/build.log"
  fi

  # ------------------------------------------------------------ check-gpu
  if [ "${SKIP_CHECK:-0}" = 1 ]; then
    record check-gpu skipped "SKIP_CHECK=1"
  else
    export LAMINA_GPU_TAP_DIR=$WORK/tap
    if command -v prove >/dev/null; then
      run "$(limit 240 120)" make -j"$NPROC" "${ARCH_ARGS[@]}" check-gpu > "$OUTDIR/check-gpu.log" 2>&1
      if [ "$rc" != 0 ] && ! grep -q "^Result:" "$OUTDIR/check-gpu.log" && [ -x build/gpu/test_gpu_ops ]; then
        # make stopped before prove (e.g. `make deps` cannot install on a
        # machine without a package registry): the tests themselves
        echo "---- make check-gpu stopped before the tests; running prove directly" >> "$OUTDIR/check-gpu.log"
        run "$(limit 240 120)" prove -e bash --timer tests/gpu/*.t >> "$OUTDIR/check-gpu.log" 2>&1
      fi
    else
      # no prove (perl's Test::Harness) on this machine: the same scripts, one by one
      echo "prove not found: running tests/gpu/*.t directly" > "$OUTDIR/check-gpu.log"
      rc=0
      for t in tests/gpu/*.t; do
        echo "---- $t" >> "$OUTDIR/check-gpu.log"
        run "$(limit 240 120)" bash "$t" >> "$OUTDIR/check-gpu.log" 2>&1
        echo "$t: $(why_rc $rc)" >> "$OUTDIR/check-gpu.log"
        [ "$rc" = 0 ] || fails="${fails:-}$t "
      done
      rc=0
      [ -n "${fails:-}" ] && rc=1
      echo "Result: $([ "$rc" = 0 ] && echo PASS || echo "FAIL ($fails)")" >> "$OUTDIR/check-gpu.log"
    fi
    unset LAMINA_GPU_TAP_DIR
    summary=$(grep -E "^(Files=|Result:)" "$OUTDIR/check-gpu.log" | tr '\n' ' ')
    failed_tests=$(cat "$WORK"/tap/*.tap 2>/dev/null | grep -c "^not ok")
    cat "$OUTDIR/check-gpu.log"
    for f in "$WORK"/tap/*.tap; do
      [ -f "$f" ] && { echo; echo "---- full TAP of $(basename "$f" .tap) ----"; cat "$f"; } >> "$OUTDIR/check-gpu.log"
    done
    if [ "$rc" = 0 ]; then record check-gpu PASS "$summary"
    else record check-gpu FAIL "$(why_rc $rc); $summary; $failed_tests failing op/model checks (full TAP in check-gpu.log)"; fi
  fi

  # ------------------------------------------------------------ gpu_bench
  if [ -x build/gpu/gpu_bench ]; then
    run "$(limit 90 100)" build/gpu/gpu_bench --json "$WORK/gpu_bench.json"
    [ "$rc" = 0 ] && record gpu_bench ok "" || record gpu_bench FAILED "$(why_rc $rc)"
  else
    record gpu_bench FAILED "build/gpu/gpu_bench is missing"
  fi

  # ------------------------------------------------- lamina, 1.3B shape
  PYH5=""
  for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import h5py, numpy' 2>/dev/null; then PYH5=$p; break; fi
  done
  if [ ! -x "$LAMINA" ]; then
    record lamina FAILED "$LAMINA is missing"
  elif [ -z "$PYH5" ]; then
    record lamina FAILED "no python3 with h5py and numpy for perf/bench_tokens.py"
  elif ! "$PYH5" perf/bench_tokens.py "$WORK/tokens.h5" "$VOCAB" "$SEQ"; then
    record lamina FAILED "perf/bench_tokens.py failed"
  else
    # The end-of-run checkpoint of 1.3B parameters is ~16 GB (weights and
    # two moments in float32): on tmpfs when it has room, else on disk.
    shm_gb=$(df -B1G --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
    if [ -n "$shm_gb" ] && [ "$shm_gb" -ge 24 ] 2>/dev/null; then CKDIR=$(mktemp -d /dev/shm/lamina-ckpt.XXXXXX)
    else CKDIR=$WORK/ckpt; fi
    cat > "$WORK/bench13b.in" <<EOD
; lamina benchmark (perf/gpu_session.sh)
[model]
dim = $DIM
n_layers = $LAYERS
n_heads = $HEADS
n_kv_heads = $KV_HEADS
ffn_dim = $FFN
vocab_size = $VOCAB
max_seq_len = $SEQ
[train]
device = cuda
steps = $STEPS
seq_len = $SEQ
micro_batch = $MICRO
global_batch = $GLOBAL
lr = 1e-4
warmup_steps = 0
lr_schedule = constant
weight_decay = 0.1
recompute = false
[data]
train = $WORK/tokens.h5
[checkpoint]
dir = $CKDIR
restart = none
[log]
metrics = $WORK/lamina_metrics.jsonl
peak_tflops = $PEAK
EOD
    LAUNCH=("$LAMINA")
    command -v mpirun >/dev/null && LAUNCH=(mpirun -np 1 --bind-to none "$LAMINA")
    RECOMPUTE=off
    smi_start "$WORK/mem_lamina.txt"
    OMP_NUM_THREADS=$NPROC run "$(limit 200 60)" "${LAUNCH[@]}" train "$WORK/bench13b.in" > "$OUTDIR/lamina.log" 2>&1
    smi_stop
    if [ "$rc" != 0 ] && grep -qi "out of memory" "$OUTDIR/lamina.log"; then
      echo "lamina: out of memory with recompute off; again with train.recompute = true"
      mv "$OUTDIR/lamina.log" "$WORK/lamina_oom.log"
      rm -rf "$CKDIR"/* "$WORK/lamina_metrics.jsonl"
      RECOMPUTE=on
      smi_start "$WORK/mem_lamina.txt"
      OMP_NUM_THREADS=$NPROC run "$(limit 200 60)" "${LAUNCH[@]}" train "$WORK/bench13b.in" train.recompute=true \
        > "$OUTDIR/lamina.log" 2>&1
      smi_stop
      { echo "---- first attempt (recompute off) ----"; tail -20 "$WORK/lamina_oom.log"; } >> "$OUTDIR/lamina.log"
    fi
    grep -E "^(lamina|parameters|memory|MFU|data|done)|^step +[0-9]" "$OUTDIR/lamina.log" | head -40
    echo "$RECOMPUTE" > "$WORK/lamina_recompute"
    if [ "$rc" = 0 ]; then record lamina ok "recompute $RECOMPUTE"
    elif [ -s "$WORK/lamina_metrics.jsonl" ]; then
      record lamina partial "$(why_rc $rc) after $(wc -l < "$WORK/lamina_metrics.jsonl") step(s); recompute $RECOMPUTE"
    else
      record lamina FAILED "$(why_rc $rc); recompute $RECOMPUTE: $(grep -m1 -i "error" "$OUTDIR/lamina.log")"
    fi
    rm -rf "$CKDIR"
  fi

  # ------------------------------------ lamina, LLaMA-2-7B on one GPU, offload
  # The LLaMA-2-7B shape (random init) with the optimizer state on the host
  # (parallel.offload = optim: fp32 master, moments and AdamW in host memory,
  # host_adamw), recompute on, micro-batch 1: tokens/s, MFU and the device
  # peak against what `lamina plan` predicts for the same deck. The run is
  # stopped after its time limit (the end-of-run checkpoint of 7B would be
  # 81 GB); the metrics of the steps done are what counts.
  if [ "${SKIP_7B:-0}" = 1 ] || [ ! -x "$LAMINA" ] || [ -z "$PYH5" ]; then
    record lamina7b skipped "SKIP_7B=1, or no lamina / h5py"
  elif ! "$PYH5" perf/bench_tokens.py "$WORK/tokens7b.h5" 32000 2048; then
    record lamina7b FAILED "perf/bench_tokens.py failed"
  else
    cat > "$WORK/llama7b.in" <<EOD
[model]
preset = llama2-7b
[parallel]
zero = 2
offload = optim
[train]
device = cuda
steps = 1000
seq_len = 2048
micro_batch = 1
global_batch = 4
lr = 1e-5
warmup_steps = 0
lr_schedule = constant
recompute = true
[data]
train = $WORK/tokens7b.h5
[checkpoint]
dir = $WORK/ck7b
every = 100000
restart = none
[log]
metrics = $WORK/lamina7b_metrics.jsonl
peak_tflops = $PEAK
EOD
    "$LAMINA" plan --deck "$WORK/llama7b.in" > "$OUTDIR/plan7b.log" 2>&1 || true
    OMP_NUM_THREADS=$NPROC run "$(limit 180 120)" "${LAUNCH[@]}" train "$WORK/llama7b.in" > "$OUTDIR/lamina7b.log" 2>&1
    grep -E "^(placement|memory|transfers|host AdamW)|^step +[0-9]|error" "$OUTDIR/lamina7b.log" | head -30
    n7=$(wc -l < "$WORK/lamina7b_metrics.jsonl" 2>/dev/null || echo 0)
    if [ "${n7:-0}" -ge 2 ]; then
      record lamina7b ok "$n7 step(s) in the time limit (stopped on purpose: $(why_rc $rc))"
      "$PYH5" - "$WORK/lamina7b_metrics.jsonl" "$OUTDIR/plan7b.log" "$RESULTS_MD" <<'PYEOF'
import datetime, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
body = rows[1:] or rows
m = lambda k: statistics.fmean(r[k] for r in body if r.get(k) is not None)
plan = [l.rstrip() for l in open(sys.argv[2]) if l.strip()][-12:]
txt = (f"\n## {datetime.date.today()}: LLaMA-2-7B shape on one GPU with optimizer offload (perf/gpu_session.sh)\n\n"
       f"Deck: preset llama2-7b, parallel.offload = optim, recompute, seq 2048, micro-batch 1, global batch 4; "
       f"{len(rows)} step(s), averages over steps 2+.\n\n"
       f"| tokens/s | TFLOP/s | MFU | step ms | device peak GiB | H2D GiB/step | D2H GiB/step |\n|---|---|---|---|---|---|---|\n"
       f"| {m('tokens_per_s'):.0f} | {m('tflops'):.1f} | {100*m('mfu'):.1f}% | {m('step_ms'):.0f} | "
       f"{max(r.get('mem_device_peak', 0) for r in rows)/2**30:.1f} | {m('h2d_bytes')/2**30:.2f} | {m('d2h_bytes')/2**30:.2f} |\n\n"
       "`lamina plan --deck` for the same deck said:\n\n```\n" + "\n".join(plan) + "\n```\n")
open(sys.argv[3], "a").write(txt)
print(txt)
PYEOF
    else
      record lamina7b FAILED "$(why_rc $rc): $(grep -m1 -i "error" "$OUTDIR/lamina7b.log")"
    fi
    rm -rf "$WORK/ck7b" "$WORK/tokens7b.h5"
  fi

  # ------------------------------------------------------------- PyTorch
  if [ "${SKIP_TORCH:-0}" = 1 ]; then
    record torch skipped "SKIP_TORCH=1"
  else
    modes=$TORCH_MODES
    left=$((BUDGET - $(elapsed)))
    if [ "$left" -lt 240 ] && [ "$modes" != eager ]; then
      modes=eager
      echo "torch: ${left} s left: eager only"
    fi
    smi_start "$WORK/mem_torch.txt"
    PYTHONUNBUFFERED=1 run "$(limit 360 10)" python3 perf/torch_gpu_bench.py --batch "$MICRO" --accum $((GLOBAL / MICRO)) \
      --dim "$DIM" --layers "$LAYERS" --heads "$HEADS" --kv-heads "$KV_HEADS" --ffn "$FFN" --vocab "$VOCAB" \
      --seq "$SEQ" --steps 10 --warmup 3 --peak "$PEAK" --modes "$modes" --json "$WORK/torch.json" > "$OUTDIR/torch.log" 2>&1
    smi_stop
    tail -25 "$OUTDIR/torch.log"
    if [ "$rc" = 0 ]; then record torch ok "modes $modes"
    elif grep -q '"status": "ok"' "$WORK/torch.json" 2>/dev/null; then
      record torch partial "$(why_rc $rc); modes $modes (see torch.log)"
    else record torch FAILED "$(why_rc $rc): $(grep -v '^ ' "$OUTDIR/torch.log" | tail -1)"; fi
  fi

  # ---------------------------------------------------------------- report
  python3 - "$WORK" "$OUTDIR" "$RESULTS_MD" "$MEM_IDLE" "$PEAK" "$STEPS" "$MICRO" "$GLOBAL" \
    "$DIM" "$LAYERS" "$HEADS" "$KV_HEADS" "$FFN" "$VOCAB" "$SEQ" <<'PYEOF'
import datetime, json, os, statistics, sys
work, outdir, results, mem_idle, peak, steps, micro, glob = sys.argv[1:9]
dim, layers, heads, kvh, ffn, vocab, seq = (int(x) for x in sys.argv[9:16])
peak = float(peak)
mem_idle = float(mem_idle) if mem_idle.replace(".", "").isdigit() else 0.0
def load(p):
    try:
        with open(p) as f: return json.load(f)
    except Exception: return None
def smi_peak(p):
    try:
        v = [float(x) for x in open(p).read().split() if x.replace(".", "").isdigit()]
        return max(v) - mem_idle if v else None
    except Exception: return None
status = {}
for l in open(f"{work}/status.txt"):
    parts = l.rstrip("\n").split("\t")
    if len(parts) == 3: status[parts[0]] = (parts[1], parts[2])
gpu = open(f"{work}/gpu_name").read().strip() or "unknown GPU"
bench = load(f"{work}/gpu_bench.json")
torch = load(f"{work}/torch.json")
# lamina: averages over the steps after the first two
lam = None
try:
    rows = [json.loads(l) for l in open(f"{work}/lamina_metrics.jsonl") if l.strip()]
    body = [r for r in rows if r["step"] > 2] or rows
    mean = lambda k: statistics.fmean(r[k] for r in body if r.get(k) is not None)
    devmem = [v for r in rows for k, v in r.items()
              if isinstance(v, (int, float)) and ("dev" in k or "gpu" in k) and ("mem" in k or "bytes" in k)]
    lam = dict(steps_logged=len(rows), steps_averaged=[r["step"] for r in body], tokens_per_s=mean("tokens_per_s"),
               tflops=mean("tflops"), mfu=mean("mfu"), step_ms=mean("step_ms"),
               loss_first=rows[0]["loss"], loss_last=rows[-1]["loss"],
               device_mem_field_max_bytes=max(devmem) if devmem else None,
               smi_peak_mib=smi_peak(f"{work}/mem_lamina.txt"),
               recompute=open(f"{work}/lamina_recompute").read().strip() if os.path.exists(f"{work}/lamina_recompute") else "?")
except Exception as e:
    lam = None if not os.path.exists(f"{work}/lamina_metrics.jsonl") else {"error": str(e)}
torch_smi = smi_peak(f"{work}/mem_torch.txt")
def f(x, fmt):
    return format(x, fmt) if isinstance(x, (int, float)) else "-"
def gib(b): return f(b / 2**30, ".1f") + " GiB" if isinstance(b, (int, float)) else "-"
def mib(m): return f(m / 1024, ".1f") + " GiB" if isinstance(m, (int, float)) else "-"
st = lambda k: status.get(k, ("not run", ""))
L = []
date = datetime.date.today().isoformat()
L.append(f"## GPU session {date}: {gpu} (`perf/gpu_session.sh`)\n")
shape = "LLaMA 1.3B" if (dim, layers, heads, kvh, ffn, vocab) == (2048, 24, 16, 16, 5504, 32000) else "LLaMA"
L.append(f"Shape: {shape} (dim {dim}, {layers} layers, {heads} heads / {kvh} kv, ffn {ffn}, vocab {vocab}), seq {seq}, "
         f"micro-batch {micro}, global batch {glob} sequences ({int(glob) * seq} tokens per step); bf16 compute. "
         f"MFU against {peak:g} TFLOP/s. lamina: {steps} steps, means over steps 3-{steps}; "
         f"PyTorch: 3 warm-up steps, mean of 10.\n")
L.append("| stage | result | note |\n| --- | --- | --- |")
for k in ("build", "check-gpu", "gpu_bench", "lamina", "torch"):
    r, n = st(k)
    L.append(f"| {k} | {r} | {n.replace('|', '/')} |")
L.append("")
L.append("| system | tokens/s | TFLOP/s | MFU | peak GPU memory (nvidia-smi, less idle) | allocator peak | notes |")
L.append("| --- | --- | --- | --- | --- | --- | --- |")
table = {}
if lam and "error" not in lam:
    table["lamina"] = lam["tokens_per_s"]
    L.append(f"| lamina (cuda, recompute {lam['recompute']}) | {lam['tokens_per_s']:.0f} | {lam['tflops']:.1f} | "
             f"{100*lam['mfu']:.1f}% | {mib(lam['smi_peak_mib'])} | {gib(lam['device_mem_field_max_bytes'])} | "
             f"step {lam['step_ms']:.0f} ms; loss {lam['loss_first']:.3f} -> {lam['loss_last']:.3f} |")
else:
    L.append(f"| lamina (cuda) | - | - | - | - | - | {st('lamina')[0]}: {st('lamina')[1]} {(lam or {}).get('error', '')} |")
for r in (torch or {}).get("runs", []):
    name = f"PyTorch {r.get('mode')} (HF Llama, sdpa, fused AdamW)"
    if r.get("status") == "ok":
        table[f"torch {r['mode']}"] = r["tokens_per_s"]
        note = (f"batch {r['batch']} x accum {r['accum']}, grad ckpt {'on' if r['grad_ckpt'] else 'off'}; "
                f"step {r['step_ms_mean']:.0f} ms; first step {r['first_step_s']:.1f} s")
        L.append(f"| {name} | {r['tokens_per_s']:.0f} | {r['tflops']:.1f} | {100*r['mfu']:.1f}% | {mib(torch_smi)} "
                 f"(whole run) | {gib(r['peak_mem_bytes'])} | {note} |")
    else:
        L.append(f"| {name} | - | - | - | - | - | FAILED: {str(r.get('error', '?')).replace('|', '/')[:200]} |")
if torch is None or (not torch.get("runs") and torch.get("error")):
    L.append(f"| PyTorch | - | - | - | - | - | {st('torch')[0]}: {(torch or {}).get('error', st('torch')[1])} |")
tb = [v for k, v in table.items() if k.startswith("torch")]
if "lamina" in table and tb:
    L.append(f"\nlamina / best PyTorch tokens/s: **{table['lamina'] / max(tb):.2f}x**")
if bench and "gemm" in bench:
    L.append(f"\nKernels (`build/gpu/gpu_bench`, medians of {bench.get('reps', '?')} after {bench.get('warmup', '?')} warm-ups):\n")
    L.append("| GEMM (bf16, fp32 acc.) | M | N | K | nt TFLOP/s | nn TFLOP/s | tn TFLOP/s |\n| --- | --- | --- | --- | --- | --- | --- |")
    for g in bench["gemm"]:
        L.append(f"| {g['name']} | {g['M']} | {g['N']} | {g['K']} | {g['nt_tflops']:.1f} | {g['nn_tflops']:.1f} | {g['tn_tflops']:.1f} |")
    L.append("\n| flash attention (causal) | B | T | H | KV | hd | fwd TFLOP/s | bwd TFLOP/s |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for a in bench.get("attention", []):
        L.append(f"| | {a['B']} | {a['T']} | {a['H']} | {a['KV']} | {a['hd']} | {a['fwd_tflops']:.1f} | {a['bwd_tflops']:.1f} |")
    sq = bench.get("gemm_square_tflops") or 0
    if sq:
        L.append(f"\nattention TFLOP/s vs cuBLAS GEMM TFLOP/s (8192^3, {sq:.0f}): forward "
                 f"{100*bench['attn_fwd_tflops']/sq:.0f}%, backward {100*bench['attn_bwd_tflops']/sq:.0f}%"
                 f"{'' if bench.get('checks_ok', True) else ' (a sampled GEMM check FAILED)'}")
elif bench:
    L.append(f"\ngpu_bench: {bench.get('error', '?')}")
md = "\n".join(L) + "\n"
open(f"{outdir}/gpu_session.md", "w").write(md)
json.dump({"date": date, "device": gpu, "peak_tflops": peak, "status": status, "lamina": lam, "torch": torch,
           "torch_smi_peak_mib": torch_smi, "gpu_bench": bench}, open(f"{outdir}/gpu_session.json", "w"), indent=1)
with open(results, "a") as fr:
    fr.write("\n" + md)
print("\n" + md)
PYEOF
  echo "gpu_session: done in $(elapsed) s; $OUTDIR/gpu_session.md (also appended to $RESULTS_MD), $OUTDIR/gpu_session.json"
}

main 2>&1 | tee "$OUTDIR/session.log"
exit "${PIPESTATUS[0]}"
