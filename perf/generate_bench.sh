#!/bin/bash
# generate_bench.sh — `lamina generate` tokens/s with the KV cache and with
# --no-cache (the forward pass over the whole context for every token), on
# one rank, for NEW new tokens (default 256), greedy.
#
# Models: the tiny preset (dim 64, 2 layers, window 64) and the demo shape
# (inputs/demo.in: dim 256, 4 layers, 8 heads, 4 kv heads, ffn 688, window
# 256), each trained for a few steps on Debian's fortunes (the weights only
# need to exist; throughput does not depend on them). The numbers are the
# summary line generate prints on stderr (the decoding loop, prompt
# included). Not part of `make check`.
#   perf/generate_bench.sh            # NEW=256 THREADS=1
#   NEW=512 THREADS=2 perf/generate_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NEW=${NEW:-256}
THREADS=${THREADS:-1}
OUT=out/generate_bench
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
L="mpirun -np 1 --bind-to none build/lamina"

sed -e 's/\x1b\[[0-9;]*m//g' /usr/share/games/fortunes/{wisdom,tao,linux} > "$OUT/corpus.txt"

# deck NAME SEQ MODEL_LINES: a deck training 3 small steps into $OUT/NAME.
deck() {
  $L prep --seq-len "$2" --doc-sep % -o "$OUT/data$2.h5" "$OUT/corpus.txt" > /dev/null
  cat > "$OUT/$1.in" <<EOD
[model]
$3
[train]
steps = 3
seq_len = $2
micro_batch = 2
global_batch = 2
lr = 3e-3
[data]
train = $OUT/data$2.h5
[checkpoint]
dir = $OUT/$1
restart = none
[log]
metrics = $OUT/$1.jsonl
EOD
  rm -rf "$OUT/$1" "$OUT/$1.jsonl"
  $L train "$OUT/$1.in" > "$OUT/$1.train.log" 2>&1 || { tail -5 "$OUT/$1.train.log"; exit 1; }
}

deck tiny 64 "preset = tiny"
deck demo 256 "dim = 256
n_layers = 4
n_heads = 8
n_kv_heads = 4
ffn_dim = 688
vocab_size = 258
max_seq_len = 256"

printf '%-6s %-8s %8s %10s %12s\n' model mode tokens seconds tokens/s
for m in tiny demo; do
  for mode in cache no-cache; do
    flag=; [ $mode = no-cache ] && flag=--no-cache
    $L generate "$OUT/$m.in" --prompt "The " --temperature 0 --max-new-tokens "$NEW" $flag \
      > "$OUT/$m.$mode.log" 2>&1 || { tail -5 "$OUT/$m.$mode.log"; exit 1; }
    line=$(grep "lamina: generate:" "$OUT/$m.$mode.log")
    tok=$(sed -E 's/.*generate: ([0-9]+) new tokens.*/\1/' <<< "$line")
    sec=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<< "$line")
    tps=$(sed -E 's/.*\(([0-9.]+) tokens\/s.*/\1/' <<< "$line")
    printf '%-6s %-8s %8s %10s %12s\n' $m $mode "$tok" "$sec" "$tps"
  done
  cmp -s <(grep -v "^lamina" "$OUT/$m.cache.log") <(grep -v "^lamina" "$OUT/$m.no-cache.log") &&
    echo "# $m: the same text with and without the cache" || echo "# $m: THE TEXTS DIFFER"
done
