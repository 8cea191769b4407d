#!/bin/bash
# The comm layer on 4 ranks (world and comm_split sub-groups: collectives,
# non-blocking operations, point to point, agreement, byte counters) and
# topo_create's communicators (tests/unit/test_comm_mpi.c). TAP from rank 0.
cd "$(dirname "$0")/../.." || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 CMOCKA_MESSAGE_OUTPUT=TAP
exec timeout -k 10 300 mpirun -np 4 --oversubscribe build/tests/test_comm_mpi
