#!/bin/bash
# The whole model (forward, backward, gradients of every tensor, logits) on
# the CUDA backend against the CPU float32 reference
# (tests/gpu/test_gpu_model.c). Without a usable GPU this fails, unless
# LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
source tests/gpu/gpu_lib.sh
run_tap build/gpu/test_gpu_model
