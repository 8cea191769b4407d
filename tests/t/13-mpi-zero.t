#!/bin/bash
# The ZeRO manager on 4 ranks: stages 0-2, overlap on/off, dp 4 / 2 / 1,
# several backward orders, against a serial AdamW on the summed gradient;
# communication volume and timing, memory formula, bucket reuse, checkpoint
# pieces, gather after load, NaN poisoning (tests/unit/test_zero_mpi.c).
cd "$(dirname "$0")/../.." || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 CMOCKA_MESSAGE_OUTPUT=TAP
exec timeout -k 10 300 mpirun -np 4 --oversubscribe build/tests/test_zero_mpi
