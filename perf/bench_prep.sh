#!/bin/bash
# bench_prep.sh — `make bench`: lamina prep's throughput (MB/s per core) for
# clean + near dedup + tokenize + pack on the demo corpora (Debian fortunes,
# English, and fortunes-zh, Chinese; entries separated by '%' lines), with
# the byte tokenizer and a SentencePiece model trained here, on 1 and 2
# ranks and threads; and the packing efficiency of first-fit decreasing
# against a plain concatenate-and-split, per category.
#
# MB/s per core = input MB / prep's own seconds (its last log line, from
# option parsing to the files written: without mpirun's start-up) / (ranks x
# threads), the best of three runs. The corpora are small (4.7 MB): fixed
# costs (the HDF5 writes, the collectives) weigh on the 2-core figures.
# Prints the per-category report of the full run and a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
L=build/lamina
OUT=out/bench_prep
F=/usr/share/games/fortunes
SEQ=${SEQ:-256}
mkdir -p "$OUT"
en=() zh=()
for f in "$F"/*; do
  case "$f" in *.dat|*.u8) continue;; esac
  [ -f "$f" ] || continue
  case "$(basename "$f")" in chinese|song100|tang300) zh+=("$f");; *) en+=("$f");; esac
done
for f in "${en[@]}"; do cat "$f"; echo "%"; done | sed -e 's/\x1b\[[0-9;]*m//g' > "$OUT/en.txt"
for f in "${zh[@]}"; do cat "$f"; echo "%"; done | sed -e 's/\x1b\[[0-9;]*m//g' > "$OUT/zh.txt"
MB=$(du -cb "$OUT/en.txt" "$OUT/zh.txt" | tail -1 | awk '{printf "%.3f", $1 / 1e6}')
# Fortunes are short: the built-in min_words 50 would drop most, so the
# rules lower it; zh documents must be mostly CJK.
# Chinese verse is dense in punctuation (，。：“”《》).
printf '[default]\nmin_words = 3\n[category.zh]\nmin_cjk_frac = 0.3\nmax_punct_frac = 0.45\nmin_alpha_frac = 0.5\n' > "$OUT/rules.ini"
IN=(--doc-sep % --category en "$OUT/en.txt" --category zh "$OUT/zh.txt")

# timed NAME NP THREADS ARGS...: prep three times, the log of the fastest in
# $OUT/NAME.log; SECS = prep's own total (its last log line: after start-up)
timed() {
  local name=$1 np=$2 th=$3; shift 3
  SECS=
  for rep in 1 2 3; do
    OMP_NUM_THREADS=$th mpirun --oversubscribe -np "$np" --bind-to none $L prep --seq-len "$SEQ" -o "$OUT/$name.h5" \
      "$@" "${IN[@]}" > "$OUT/$name.try" 2> "$OUT/$name.err" || { tail -5 "$OUT/$name.err"; exit 1; }
    local s
    s=$(sed -n 's/^prep: [0-9.]* MB in \([0-9.]*\) s on.*/\1/p' "$OUT/$name.try")
    if [ -z "$SECS" ] || [ "$(echo "$s < $SECS" | bc -l)" = 1 ]; then SECS=$s; cp "$OUT/$name.try" "$OUT/$name.log"; fi
  done
}
rows=()
row() { # NAME TOKENIZER NP THREADS WHAT
  local cores=$(($3 * $4))
  rows+=("| $5 | $2 | $3 x $4 | $SECS | $(echo "$MB / $SECS / $cores" | bc -l | xargs printf %.2f) | $(tail -1 "$OUT/$1.log" | sed 's/.* s on [0-9]* ranks: //') |")
}
FULL=(--clean "$OUT/rules.ini" --dedup near --bins 4 --valid-fraction 0.01)

echo "== corpora: $MB MB ($(grep -c '^%$' "$OUT/en.txt") en + $(grep -c '^%$' "$OUT/zh.txt") zh separators) =="
timed base 1 1 --dedup none; row base bytes 1 1 "tokenize + pack"
timed exact 1 1 --dedup exact; row exact bytes 1 1 "exact dedup + tokenize + pack"
timed full1 1 1 "${FULL[@]}" --stats "$OUT/full1.json" --rejected "$OUT/full1.rej"
row full1 bytes 1 1 "clean + near dedup + tokenize + pack"
timed full2r 2 1 "${FULL[@]}"; row full2r bytes 2 1 "clean + near dedup + tokenize + pack"
timed full2t 1 2 "${FULL[@]}"; row full2t bytes 1 2 "clean + near dedup + tokenize + pack"
cmp -s <(h5dump -d /tokens "$OUT/full1.h5" | tail -n +3) <(h5dump -d /tokens "$OUT/full2r.h5" | tail -n +3) ||
  { echo "bench_prep: 1 and 2 ranks wrote different tokens"; exit 1; }

echo "== SentencePiece: training an 8000-piece model on the corpora =="
OMP_NUM_THREADS=$(nproc) mpirun -np 1 --bind-to none $L vocab train --vocab-size 8000 -o "$OUT/sp.model" \
  "$OUT/en.txt" "$OUT/zh.txt" > "$OUT/vocab.log" 2>&1 || { tail -5 "$OUT/vocab.log"; exit 1; }
timed spbase 1 1 --tokenizer "$OUT/sp.model" --dedup none; row spbase sentencepiece 1 1 "tokenize + pack"
timed sp1 1 1 --tokenizer "$OUT/sp.model" "${FULL[@]}"; row sp1 sentencepiece 1 1 "clean + near dedup + tokenize + pack"
timed sp2 2 1 --tokenizer "$OUT/sp.model" "${FULL[@]}"; row sp2 sentencepiece 2 1 "clean + near dedup + tokenize + pack"

echo "== the full run's report (bytes tokenizer, 1 rank, seq_len $SEQ) =="
cat "$OUT/full1.log"
/usr/bin/python3 - "$OUT/full1.json" <<'EOP'
import json, sys
s = json.load(open(sys.argv[1]))
print("per rule (documents dropped / bytes dropped), per category:")
cats = list(s["categories"])
print("| rule | " + " | ".join(cats) + " |")
print("|---|" + "---|" * len(cats))
for r in s["stages"]:
    print(f"| {r} | " + " | ".join(f'{s["categories"][c]["rules"][r]["documents_dropped"]} / {s["categories"][c]["rules"][r]["bytes_dropped"]}' for c in cats) + " |")
print("| in -> out | " + " | ".join(f'{s["categories"][c]["documents_in"]} -> {s["categories"][c]["documents_out"]} docs' for c in cats) + " |")
EOP
echo "== packing: first-fit decreasing per (category, bin) against concatenate-and-split =="
for sl in 256 2048; do
  OMP_NUM_THREADS=$(nproc) mpirun -np 1 --bind-to none $L prep --seq-len $sl -o "$OUT/pack$sl.h5" --bins 4 "${IN[@]}" 2>/dev/null |
    grep 'training category' | sed "s/^/seq_len $sl: /"
done
echo "== throughput ($MB MB in; MB/s per core = MB / net seconds / (ranks x threads)) =="
echo "| stages | tokenizer | ranks x threads | seconds | MB/s per core | seconds per stage (rank 0) |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
