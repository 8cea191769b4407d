#!/bin/bash
# ZeRO-3 and offload, operations (tests/ref/check_zero3.py ops): restarts
# across layouts bit for bit (ZeRO-3 + param offload, dp 2 -> zero 0, dp 1;
# zero 1, dp 2 -> ZeRO-3 + optim offload under train.device_memory), the
# per-step h2d_bytes / d2h_bytes against the start-up formula line, and an
# injected fault in a ZeRO-3 gather (LAMINA_FAIL_GATHER): the job ends, the
# checkpoint written before it resumes.
cd "$(dirname "$0")/../.." || exit 1
exec flock -s build/.check.lock env OMP_NUM_THREADS=1 timeout -k 10 600 /usr/bin/python3 tests/ref/check_zero3.py ops
