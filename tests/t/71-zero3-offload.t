#!/bin/bash
# ZeRO-3 and offload against the float64 PyTorch reference
# (tests/ref/check_zero3.py ref): ZeRO-3 at dp 2, dp 4, tp 2 + sp x dp 2,
# pp 2 (tied embeddings, 2 and 4 ranks); offload optim (ZeRO-2), param and
# auto (ZeRO-3) under a train.device_memory smaller than the model state,
# their checkpoints bit-identical to offload = none (fp32 and bf16), and
# offload = none under that budget exiting 2.
cd "$(dirname "$0")/../.." || exit 1
exec flock -s build/.check.lock env OMP_NUM_THREADS=1 timeout -k 10 600 /usr/bin/python3 tests/ref/check_zero3.py ref
