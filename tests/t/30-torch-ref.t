#!/bin/bash
# lamina's CPU backend against the independent float64 PyTorch reference
# (tests/ref/check_train.py): losses, grad norms, gradients, weights, moments.
cd "$(dirname "$0")/../.." || exit 1
exec flock -s build/.check.lock env OMP_NUM_THREADS=1 timeout -k 10 900 /usr/bin/python3 tests/ref/check_train.py
