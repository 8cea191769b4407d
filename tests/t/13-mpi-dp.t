#!/bin/bash
# The data-parallel layer on 4 ranks: comm layer, process grid, ZeRO manager
# against a serial AdamW (tests/unit/test_dp_mpi.c); again under ASan/UBSan.
cd "$(dirname "$0")/../.." || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
exec mpirun -np 4 --oversubscribe build/tests/test_dp_mpi
