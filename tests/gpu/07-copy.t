#!/bin/bash
# The CUDA backend's memory accounting (mem_info) and its asynchronous
# copies on the copy stream (copy_async, tickets, copy_wait, compute_wait)
# against compute on the compute stream (tests/gpu/test_gpu_copy.c): TAP
# from the binary itself. Without a usable GPU this fails, unless
# LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
run_tap build/gpu/test_gpu_copy
