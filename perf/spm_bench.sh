#!/bin/bash
# Encode throughput of `lamina vocab encode` against python3-sentencepiece on
# the same text (about 4 MB of Debian text: English fortunes and copyright
# files, Chinese fortunes), one thread each, line by line, with the same
# model (a LLaMA-2-style BPE of 8000 pieces python trains here). Prints MB/s
# of both and their ratio. Not part of `make check`. Usage: perf/spm_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PY=/usr/bin/python3
L=$PWD/build/lamina
[ -x "$L" ] || { echo "spm_bench: build lamina first (make)" >&2; exit 1; }
T=$(mktemp -d /tmp/spm_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
F=/usr/share/games/fortunes
{ cat $F/wisdom $F/tao $F/linux /usr/share/doc/*/copyright $F/chinese 2>/dev/null || true; } | head -c 4000000 > "$T/text.txt" || true
$PY tests/ref/spm_parity.py train "$T/m.model" bpe "$T/text.txt" >/dev/null 2>&1
MB=$(stat -c %s "$T/text.txt" | awk '{ print $1 / 1e6 }')
t0=$(date +%s.%N)
"$L" vocab encode --tokenizer "$T/m.model" < "$T/text.txt" > "$T/lam.ids"
t1=$(date +%s.%N)
py=$($PY - "$T/m.model" "$T/text.txt" "$T/py.ids" <<'PYEOF'
import sys, time
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1], num_threads=1)
data = open(sys.argv[2], "rb").read().split(b"\n")
if data and data[-1] == b"":
    data.pop()
t = time.perf_counter()
out = [" ".join(map(str, sp.encode(l))) for l in data]
dt = time.perf_counter() - t
open(sys.argv[3], "w").write("\n".join(out) + "\n")
print(dt)
PYEOF
)
lam=$(echo "$t1 - $t0" | bc -l)
same=$(cmp -s "$T/lam.ids" "$T/py.ids" && echo "identical ids" || echo "IDS DIFFER")
awk -v mb="$MB" -v l="$lam" -v p="$py" -v s="$same" 'BEGIN {
  printf "text: %.2f MB (%s)\n", mb, s
  printf "lamina vocab encode: %.2f s, %.2f MB/s (process start and model load included)\n", l, mb / l
  printf "python3-sentencepiece encode: %.2f s, %.2f MB/s (encode loop only)\n", p, mb / p
  printf "ratio lamina/python: %.2f\n", (mb / l) / (mb / p) }'
