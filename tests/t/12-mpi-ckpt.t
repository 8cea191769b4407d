#!/bin/bash
# Checkpoints across 4 ranks: write from element ranges that cut rows, read
# back in other decompositions, corruption and error agreement
# (tests/unit/test_ckpt_mpi.c).
cd "$(dirname "$0")/../.." || exit 1
exec env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    mpirun -np 4 --oversubscribe build/tests/test_ckpt_mpi
