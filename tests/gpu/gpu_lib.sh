# tests/gpu/gpu_lib.sh — what the GPU .t scripts share (sourced after
# tests/lib.sh).

# run_tap BIN: run a TAP test binary with the machine's cores for its CPU
# reference side; TAP to prove on stdout, the failures and the summary also
# to stderr (prove shows them without -v); with LAMINA_GPU_TAP_DIR (set by
# perf/gpu_session.sh) the full TAP is kept there.
run_tap() {
  local bin=$1
  if [ ! -x "$bin" ]; then
    echo "1..1"; echo "not ok 1 - $bin is missing (make check-gpu builds it)"; exit 1
  fi
  local out
  out=$(mktemp /tmp/lamina-gpu.XXXXXX)
  OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" "$bin" | tee "$out"
  local rc=${PIPESTATUS[0]}
  [ -n "${LAMINA_GPU_TAP_DIR:-}" ] && mkdir -p "$LAMINA_GPU_TAP_DIR" && cp "$out" "$LAMINA_GPU_TAP_DIR/$(basename "$bin").tap"
  grep -E '^not ok|^# .*(failed|SKIP)|^1\.\.0' "$out" >&2
  rm -f "$out"
  exit "$rc"
}

# gpu_data: $T/data.h5 from the fortunes corpus as tests/t/*.t make it, or,
# where the machine has no fortunes, from a generated word corpus.
gpu_data() {
  if [ -r /usr/share/games/fortunes/wisdom ]; then
    make_data 64
    return
  fi
  awk 'BEGIN { srand(7); n = split("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their been has would when if will more no out do so can who what its about time over", w, " ");
    for (d = 0; d < 1500; d++) { s = ""; L = 20 + int(rand() * 60);
      for (i = 0; i < L; i++) s = s w[1 + int(rand() * n)] (i % 9 == 8 ? ". " : " ");
      print s; print "%" } }' > "$T/corpus.txt"
  mpirun -np 1 "$LAMINA" prep --seq-len 64 --doc-sep % -o "$T/data.h5" "$T/corpus.txt" >/dev/null
}

# gpu_deck STEPS [CHECKPOINT_LINES]: $T/gpu.in, a small GQA model with
# head_dim 64 (what the flash kernels take) and the byte vocabulary.
gpu_deck() {
  cat > "$T/gpu.in" <<EOD
[model]
preset = tiny
dim = 256
n_heads = 4
n_kv_heads = 2
ffn_dim = 688
[train]
steps = $1
seq_len = 64
micro_batch = 4
global_batch = 8
lr = 3e-3
warmup_steps = 2
seed = 1234
[data]
train = $T/data.h5
[checkpoint]
${2:-}
dir = $T/ckpt
[log]
metrics = $T/metrics.jsonl
EOD
}

# skip_without_gpu: after the first `lam ... train.device=cuda`, a machine
# without a usable GPU skips the script (LAMINA_GPU_OPTIONAL=1) or goes on
# to fail.
skip_without_gpu() {
  if [ "$rc" != 0 ] && grep -q "train.device = cuda" "$T/out" && [ "${LAMINA_GPU_OPTIONAL:-0}" = 1 ]; then
    echo "1..0 # SKIP no usable GPU: $(grep -m1 "train.device = cuda" "$T/out")"; exit 0
  fi
}

why() { grep -m3 "lamina: error" "$T/out" || tail -5 "$T/out"; }

# verdicts N: turn $T/verdict ("ok<TAB>text" / "notok<TAB>text" lines written
# by a comparison script) into N TAP results; a script that wrote another
# number of lines fails once more.
verdicts() {
  local n=0 v text
  while IFS=$'\t' read -r v text; do
    n=$((n + 1))
    if [ "$v" = ok ]; then ok "$text"; else notok "$text"; fi
  done < "$T/verdict"
  [ "$n" = "$1" ] || notok "loss comparison script" "$(cat "$T/verdict")"
}
