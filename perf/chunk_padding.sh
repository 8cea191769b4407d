#!/bin/bash
# chunk_padding.sh — the chunk-arena padding table of perf/chunk_padding.c
# (LLaMA-2 7B, 13B, 70B and 7B with a 69104-token vocabulary; tp 1, pp 1;
# dp 1 and 8, granule 16 x dp).
#   bash perf/chunk_padding.sh          this tree's chunks.c
#   bash perf/chunk_padding.sh REV      also REV's chunks.c (a revision with the
#                                       single chunk-size API: the "before")
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/liblamina.a
mkdir -p build/perf
INC="-Isrc/core -Isrc/device -Isrc/dist -Iio -Icuda $(pkg-config --cflags hdf5-openmpi)"
LIBS="$(pkg-config --libs hdf5-openmpi inih jansson openblas) -lsde -lpapi -lm"
FLAGS="-std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -fopenmp"
if [ $# -ge 1 ]; then
    old=build/perf/chunks_old
    mkdir -p "$old"
    git show "$1:src/dist/chunks.c" >"$old/chunks.c"
    git show "$1:src/dist/chunks.h" >"$old/chunks.h"
    # the old chunks.c (params_* included) comes before the library: its chunks.o is not linked
    mpicc $FLAGS -DCHUNKS_OLD -I"$old" $INC perf/chunk_padding.c "$old/chunks.c" build/liblamina.a $LIBS \
        -o build/perf/chunk_padding_old
    echo "# $1 ($(git rev-parse --short "$1"))"
    build/perf/chunk_padding_old
fi
mpicc $FLAGS $INC perf/chunk_padding.c build/liblamina.a $LIBS -o build/perf/chunk_padding
echo "# this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src/dist || echo ', chunks modified'))"
build/perf/chunk_padding
