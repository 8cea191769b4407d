#!/bin/bash
# tests/unit/test_dp_mpi.c under ASan + UBSan, 4 ranks.
cd "$(dirname "$0")/../.." || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0
exec mpirun -np 4 --oversubscribe build/san/tests/test_dp_mpi
