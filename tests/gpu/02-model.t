#!/bin/bash
# The whole model (forward, backward, gradients of every tensor, logits) on
# the CUDA backend against the CPU float32 reference
# (tests/gpu/test_gpu_model.c). Without a usable GPU this fails, unless
# LAMINA_GPU_OPTIONAL=1 (then it skips).
cd "$(dirname "$0")/../.." || exit 1
bin=build/gpu/test_gpu_model
if [ ! -x "$bin" ]; then
  echo "1..1"; echo "not ok 1 - $bin is missing (make check-gpu builds it)"; exit 1
fi
# The CPU reference side uses OpenMP: give it the machine's cores. TAP goes
# to prove on stdout; the failures and the summary also go to stderr, which
# prove shows without -v.
out=$(mktemp /tmp/lamina-gpu.XXXXXX)
trap 'rm -f "$out"' EXIT
OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" "$bin" | tee "$out"
rc=${PIPESTATUS[0]}
# LAMINA_GPU_TAP_DIR (perf/gpu_session.sh sets it): keep the full TAP there
[ -n "${LAMINA_GPU_TAP_DIR:-}" ] && mkdir -p "$LAMINA_GPU_TAP_DIR" && cp "$out" "$LAMINA_GPU_TAP_DIR/$(basename "$bin").tap"
grep -E '^not ok|^# .*(failed|SKIP)|^1\.\.0' "$out" >&2
exit "$rc"
