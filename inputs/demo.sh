#!/bin/bash
# demo.sh — the `make run` job: prep a corpus from Debian's fortunes and
# fortunes-zh, train the demo model on it with 2 data-parallel ranks (ZeRO-1),
# and print a sample from it. LAMINA_NP sets the number of training ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NP=${LAMINA_NP:-2}
# one OpenMP thread per core, shared between the ranks
: "${OMP_NUM_THREADS:=$(( $(nproc) / NP > 0 ? $(nproc) / NP : 1 ))}"
export OMP_NUM_THREADS
FORTUNES=/usr/share/games/fortunes
RUN=out/demo
LAMINA=build/lamina
MPIRUN=(mpirun --oversubscribe -np 1 --bind-to none)
mkdir -p "$RUN"
rm -rf "$RUN/ckpt" "$RUN/metrics.jsonl"

echo "== 1. corpus: Debian fortunes (English) and fortunes-zh (Tang/Song poems) =="
# Fortune files hold entries separated by lines of '%'; the Chinese ones carry
# ANSI colour escapes, which are stripped.
files=()
for f in "$FORTUNES"/*; do
  case "$f" in *.dat|*.u8) continue;; esac
  [ -f "$f" ] && files+=("$f")
done
for f in "${files[@]}"; do cat "$f"; echo "%"; done | sed -e 's/\x1b\[[0-9;]*m//g' > "$RUN/corpus.txt"
echo "$(du -h "$RUN/corpus.txt" | cut -f1) of text from ${#files[@]} files"
"${MPIRUN[@]}" "$LAMINA" prep --seq-len 256 --doc-sep % -o "$RUN/corpus.h5" "$RUN/corpus.txt"

echo "== 2. train (inputs/demo.in) on $NP ranks =="
mpirun --oversubscribe -np "$NP" --bind-to none "$LAMINA" train inputs/demo.in "$@"

echo "== 3. sample from the trained model =="
for prompt in "The meaning of life is" "床前明月光，"; do
  echo "--- prompt: $prompt"
  OMP_NUM_THREADS=$(nproc) "${MPIRUN[@]}" "$LAMINA" generate inputs/demo.in --prompt "$prompt" --tokens 160 --temperature 0.7 "$@"
done
