#!/bin/bash
# lamina generate: the KV-cache decode gives the same tokens as recomputing
# the context (--no-cache), greedy and sampled, on 1 rank and tp = 2, across
# context shifts (100 new tokens in a 32-token window); a seed fixes the
# text and another seed changes it; top-k 1 is greedy; generation stops at
# EOS (a model trained on documents "ab\n" writes "ab\n" and stops); the
# prompt from stdin; pp > 1 and bad options are exit 2.
. tests/lib.sh
plan 16
make_data
make_deck
lam 1 train "$T/tiny.in" train.steps=80 train.lr=1e-2
[ "$rc" = 0 ] || { notok "train the tiny model" "$(tail -3 "$T/out")"; finish; }

# gen NAME NP ARGS...: generate into $T/NAME.txt (the text: stdout's lines
# after the weights line) and $T/NAME.log (everything).
gen() {
  local name=$1 np=$2; shift 2
  lam "$np" generate "$T/tiny.in" --prompt "The " "$@"
  cp "$T/out" "$T/$name.log"
  sed -e '/^model weights from/d' -e '/^lamina: /d' "$T/out" > "$T/$name.txt"
}
# same DESCRIPTION A B: runs A and B both succeeded and wrote the same text.
same() {
  if grep -q "new tokens" "$T/$2.log" && grep -q "new tokens" "$T/$3.log" && cmp -s "$T/$2.txt" "$T/$3.txt"
  then ok "$1"; else notok "$1" "$(tail -2 "$T/$2.log")" "$(tail -2 "$T/$3.log")"; fi
}

gen g1 1 --temperature 0 --max-new-tokens 100
gen g1n 1 --temperature 0 --max-new-tokens 100 --no-cache
same "greedy: KV cache and --no-cache give the same text (1 rank)" g1 g1n
if grep -q "KV cache" "$T/g1.log" && grep -q "no cache" "$T/g1n.log" && grep -q "context shifts" "$T/g1.log" &&
   ! grep -q " 0 context shifts" "$T/g1.log"
then ok "the cached run used the cache and shifted its context"; else notok "cache / shift summary" "$(tail -2 "$T/g1.log")"; fi
gen g2 2 parallel.tp=2 --temperature 0 --max-new-tokens 100
gen g2n 2 parallel.tp=2 --temperature 0 --max-new-tokens 100 --no-cache
same "greedy: KV cache and --no-cache give the same text (tp 2)" g2 g2n
same "greedy: tp 2 gives the single-rank text" g2 g1

gen s1 1 --temperature 1 --top-k 0 --seed 5 --max-new-tokens 100
gen s1n 1 --temperature 1 --top-k 0 --seed 5 --max-new-tokens 100 --no-cache
same "sampled (T = 1, seed 5): KV cache and --no-cache give the same text" s1 s1n
gen s1b 1 --temperature 1 --top-k 0 --seed 5 --max-new-tokens 100
same "the same seed gives the same text" s1 s1b
gen s2 2 parallel.tp=2 --temperature 1 --top-k 0 --seed 5 --max-new-tokens 100
same "sampled: tp 2 with the cache gives the single-rank text" s2 s1
gen s6 1 --temperature 1 --top-k 0 --seed 6 --max-new-tokens 100
if [ "$rc" = 0 ] && [ "$(wc -c < "$T/s1.txt")" -gt 12 ] && ! cmp -s "$T/s1.txt" "$T/s6.txt"
then ok "another seed gives another text"; else notok "seed 6 vs seed 5" "$(cat "$T/s1.txt")" "$(cat "$T/s6.txt")"; fi
gen p1 1 --temperature 1 --top-p 0.9 --seed 5 --max-new-tokens 60
gen p1n 1 --temperature 1 --top-p 0.9 --seed 5 --max-new-tokens 60 --no-cache
same "top-p 0.9: KV cache and --no-cache give the same text" p1 p1n
gen k1 1 --temperature 1 --top-k 1 --seed 9 --max-new-tokens 100
same "top-k 1 at temperature 1 is greedy" k1 g1

# EOS: documents "ab\n" (prep ends each with EOS); the trained model writes
# them and stops, long before --max-new-tokens.
for i in $(seq 400); do printf 'ab\n%%\n'; done > "$T/ab.txt"
mpirun -np 1 "$LAMINA" prep --seq-len 32 --doc-sep % --dedup none -o "$T/ab.h5" "$T/ab.txt" >/dev/null  # 400 copies: keep them
lam 1 train "$T/tiny.in" data.train="$T/ab.h5" checkpoint.dir="$T/ab" train.steps=30
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/ab" --temperature 0 --max-new-tokens 50
if [ "$rc" = 0 ] && grep -q "^ab$" "$T/out" && grep -q "3 new tokens .*stopped at EOS" "$T/out"
then ok "generation stops at EOS"; else notok "EOS" "exit $rc" "$(tail -4 "$T/out")"; fi
lam 2 generate "$T/tiny.in" checkpoint.dir="$T/ab" parallel.tp=2 --temperature 0 --max-new-tokens 50 --no-cache
if [ "$rc" = 0 ] && grep -q "^ab$" "$T/out" && grep -q "3 new tokens .*stopped at EOS" "$T/out"
then ok "generation stops at EOS (tp 2, --no-cache)"; else notok "EOS tp 2" "exit $rc" "$(tail -4 "$T/out")"; fi
lam 1 generate "$T/tiny.in" checkpoint.dir="$T/ab" --temperature 0 --max-new-tokens 2
if [ "$rc" = 0 ] && grep -q "^ab$" "$T/out" && grep -q "2 new tokens .*stopped at --max-new-tokens" "$T/out"
then ok "--max-new-tokens stops it first"; else notok "max-new-tokens" "exit $rc" "$(tail -4 "$T/out")"; fi

# the prompt from stdin (rank 0 reads it, every rank gets it)
rc=0
printf 'The ' | timeout 300 mpirun -np 2 "$LAMINA" generate "$T/tiny.in" parallel.tp=2 --prompt - --temperature 0 \
  --max-new-tokens 100 >"$T/out" 2>&1 || rc=$?
sed -e '/^model weights from/d' -e '/^lamina: /d' "$T/out" > "$T/stdin.txt"
if [ "$rc" = 0 ] && cmp -s "$T/stdin.txt" "$T/g1.txt"; then ok "--prompt - reads the prompt from stdin"
else notok "--prompt -" "exit $rc" "$(tail -3 "$T/out")"; fi

lam 2 generate "$T/tiny.in" parallel.pp=2 --max-new-tokens 5
expect_fail 2 "parallel.pp = 2" "pp 2: exit 2 naming parallel.pp"
bad=0
for o in "--temperature -1" "--top-p 0" "--top-p 1.5" "--top-k -1" "--max-new-tokens 0" "--seed x" "--top-p nan"; do
  lam 1 generate "$T/tiny.in" $o
  if [ "$rc" != 2 ] || ! grep -q -- "${o%% *}" "$T/out"; then bad=1; echo "# $o: exit $rc: $(tail -1 "$T/out")"; fi
done
[ $bad = 0 ] && ok "bad options (negative temperature, top-p outside (0,1], top-k < 0, ...) exit 2 naming the option" ||
  notok "bad options"
finish
