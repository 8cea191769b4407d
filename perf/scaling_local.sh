#!/bin/bash
# scaling_local.sh — the local scaling study (part of `make bench`): a strong
# and a weak data-parallel sweep over RANKS (default 1,2,4) with
# perf/scaling.py's default deck (3.1M parameters, seq 128, 20 steps), then
# the plots. Run folders and tables go to $OUT (default out/scaling); the
# figures are copied to perf/plots/{strong,weak}.png. Extra arguments go to
# `scaling.py run-local` (e.g. --steps 40, or section.key=value overrides).
# On a shared machine each point waits up to 2 minutes for other processes
# to settle and is run once more if they kept more than 0.3 cores busy
# (--wait-idle 120 --retries 1; the arguments given here win). More ranks
# than cores run oversubscribed: see perf/SCALING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
OUT=${OUT:-out/scaling}
RANKS=${RANKS:-1,2,4}
rm -rf "$OUT/strong" "$OUT/weak" "$OUT/plots"
$PY perf/scaling.py run-local --sweep both --ranks "$RANKS" --out "$OUT" --wait-idle 120 --retries 1 "$@"
$PY perf/scaling.py plot "$OUT" --out "$OUT/plots"
mkdir -p perf/plots
cp "$OUT/plots/strong.png" "$OUT/plots/weak.png" perf/plots/
echo "figures: perf/plots/strong.png perf/plots/weak.png; table: $OUT/plots/scaling.md"
