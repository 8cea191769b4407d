# perf/bench_lib.sh — what the CPU benchmark scripts share (sourced).
#
# bench_deck FILE STEPS MICRO GLOBAL [TRAIN_LINES]: a deck for the shape in
# DIM LAYERS HEADS KV (default HEADS) FFN VOCAB SEQ, on $OUT/tokens.h5
# (random tokens, every sample full length: see bench_tokens.py), with a
# constant lr, no checkpoint until the end and metrics in $OUT; extra
# [train] lines (e.g. "weight_decay = 0.1") in TRAIN_LINES.
bench_deck() {
  cat > "$1" <<EOD
[model]
dim = $DIM
n_layers = $LAYERS
n_heads = $HEADS
n_kv_heads = ${KV:-$HEADS}
ffn_dim = $FFN
vocab_size = $VOCAB
max_seq_len = $SEQ
[train]
steps = $2
seq_len = $SEQ
micro_batch = $3
global_batch = $4
lr = 1e-4
lr_schedule = constant
${5:-}
[data]
train = $OUT/tokens.h5
[checkpoint]
dir = $OUT/ckpt
restart = none
every = 0
[log]
metrics = $OUT/metrics.jsonl
EOD
}

# bench_mpirun LOG NP ARGS...: lamina under mpirun (oversubscribed) into
# $OUT/LOG, the checkpoint folder cleared first; on failure the log's tail
# and exit 1.
bench_mpirun() {
  local log=$1 np=$2; shift 2
  rm -rf "$OUT/ckpt"
  mpirun --oversubscribe --bind-to none -np "$np" build/lamina "$@" >"$OUT/$log" 2>&1 \
    || { tail -20 "$OUT/$log"; exit 1; }
}
