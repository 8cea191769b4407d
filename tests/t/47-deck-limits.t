#!/bin/bash
# Impossible decks and memory rejected up front (exit 2 naming the key, in
# seconds, before allocating), a FIFO deck, an over-long checkpoint.dir, and
# error lines written whole. lamina issue 14, items 6, 7 and 10.
. tests/lib.sh
plan 10
make_data 32
make_deck
export OMP_NUM_THREADS=1

# one DESC CODE PATTERN ARGS...: a singleton run ends within 30 s with CODE
# and prints PATTERN.
one() {
  local d=$1 code=$2 pat=$3; shift 3
  rc=0; local t0=$(date +%s.%N)
  timeout 30 "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?
  local dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" = "$code" ] && grep -q -- "$pat" "$T/out"; then ok "$d (exit $rc in $dt s)"
  else notok "$d" "exit $rc (want $code) after $dt s:" "$(tail -3 "$T/out" | cut -c1-300)"; fi
}

one "model.n_layers=2147483647 is exit 2 at validation, naming the key" 2 "model.n_layers = 2147483647" \
  train "$T/tiny.in" model.n_layers=2147483647
one "global_batch 2147483646 x micro_batch 1073741823 is exit 2 naming train.micro_batch" 2 "train.micro_batch = 1073741823" \
  train "$T/tiny.in" train.global_batch=2147483646 train.micro_batch=1073741823
# The reported 1M-vocabulary deck needs about 50 GiB (49.8 with the chunk layout of outsized tensors) on one rank: exit 2
# before allocating on a machine with less (the test skips where more is
# available).
avail=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo) # kB
big="model.dim=1024 model.n_heads=16 model.ffn_dim=4096 model.n_layers=64 model.vocab_size=1000000"
if [ "$avail" -lt 48000000 ]; then
  one "the 1M-vocabulary deck is exit 2 (not enough memory) before allocating" 2 "not enough memory: each rank needs [45][0-9]\.[0-9]* GiB" \
    train "$T/tiny.in" $big train.seq_len=64
else ok "# skip: this machine has $avail kB available, the 1M-vocabulary deck fits"; fi
# The override: too little is exit 2 with the numbers and the keys; enough runs.
LAMINA_MEM_AVAILABLE=20M one "LAMINA_MEM_AVAILABLE=20M: exit 2 with needed and available bytes and the keys" 2 \
  "needs .* MiB .*but 20.0 MiB is available there (LAMINA_MEM_AVAILABLE=20M).*train.micro_batch.*parallel.zero" \
  train "$T/tiny.in" train.steps=1
LAMINA_MEM_AVAILABLE=1G one "LAMINA_MEM_AVAILABLE=1G: the same deck runs" 0 "memory check: .* per node of 1.00 GiB available" \
  train "$T/tiny.in" train.steps=1
# 2 ranks on the node: the check sums their needs
LAMINA_MEM_AVAILABLE=60M lam 2 train "$T/tiny.in" train.steps=1
expect_fail 2 "the 2 rank(s) on the node" "2 ranks: the node's need is the sum over its ranks (exit 2 on all ranks)"

# A FIFO as the deck: exit 2 at once, not a hang.
mkfifo "$T/fifo.in"
one "a FIFO deck is exit 2 naming it" 2 "cannot read deck $T/fifo.in: it is a FIFO" train "$T/fifo.in"
# checkpoint.dir longer than the checkpoint writer takes: exit 2 at deck time.
long="$T/$(printf 'd%.0s' $(seq 1 4001))"
one "a 4000+-byte checkpoint.dir is exit 2 naming the key and the limit" 2 "checkpoint.dir = .*the longest usable is 4000 bytes" \
  train "$T/tiny.in" checkpoint.dir="$long"
# An error line is one write(2) (lines of several ranks cannot interleave).
if command -v strace >/dev/null; then
  strace -f -e trace=write -o "$T/st" "$LAMINA" train "$T/fifo.in" >/dev/null 2>&1
  n=$(grep -c 'write(2,' "$T/st")
  if [ "$n" = 1 ] && grep -q 'write(2, "lamina: error: cannot read deck' "$T/st"; then ok "the error line is written with one write(2)"
  else notok "the error line is written with one write(2)" "$(grep 'write(2,' "$T/st")"; fi
else ok "# skip: no strace"; fi
# With 2 ranks every stderr line lamina writes starts with "lamina:".
lam 2 train "$T/tiny.in" train.lr=-1
if [ "$rc" = 2 ] && ! grep -v "^lamina:" "$T/out" | grep -q "lamina"; then ok "2 ranks: every line naming lamina starts with lamina:"
else notok "2 ranks: whole lines" "$(cat "$T/out" | head -5)"; fi
finish
