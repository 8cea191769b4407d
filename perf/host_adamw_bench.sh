#!/bin/bash
# host_adamw_bench.sh — `make bench`: the fused host AdamW (src/optim/host_adamw.h)
# against the machine's memory bandwidth (perf/host_adamw_bench.c): a STREAM
# triad, then host_adamw with bf16 and fp32 gradients on every path the CPU
# has (scalar, avx2, avx512), on 1 thread and on THREADS threads, as
# parameters/s, GB/s moved (28 or 32 bytes per parameter) and the fraction of
# the triad's bandwidth.
#
#   N        parameters (default 64M; less when the memory available is short:
#            the run needs about 20 N bytes, and 768 MB for the triad first)
#   THREADS  the "all threads" count (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-$(nproc)}
N=${N:-$((64 << 20))}
avail=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) * 1024))
fit=$((avail / 2 / 20))
if [ "$N" -gt "$fit" ]; then
  echo "host_adamw_bench: $((avail >> 20)) MB available: N $N -> $fit"
  N=$fit
fi
[ -x "$BUILD/perf/host_adamw_bench" ] || make -s "$BUILD/perf/host_adamw_bench"
echo "== host_adamw: $(date -u +%F), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), THREADS=$THREADS, N=$N =="
OMP_NUM_THREADS=$THREADS "$BUILD/perf/host_adamw_bench" "$N"
