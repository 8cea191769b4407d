#!/bin/bash
# Every device op of the CUDA backend against the CPU float32 reference
# (tests/gpu/test_gpu_ops.c): TAP from the binary itself. Without a usable
# GPU this fails, unless LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
run_tap build/gpu/test_gpu_ops
