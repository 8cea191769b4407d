/* host_adamw.h — one fused AdamW pass over optimizer state in host memory
 * (the chunks that CPU offload keeps on the host).
 *
 * Exactly the CPU backend's AdamW (device_cpu.c adamw_seg; torch.optim.AdamW
 * with decoupled weight decay), bias corrections in double:
 *   bc1 = 1 - b1^step, bc2 = 1 - b2^step (double);
 *   decay = (float)(1 - lr wd), step_size = (float)(lr / bc1),
 *   inv_bc2s = (float)(1 / sqrt(bc2)), c1 = 1 - b1, c2 = 1 - b2 (float);
 * then per element, in float32 and in this order (no fused multiply-add):
 *   gi = g gscale;  mi = b1 m + c1 gi;  vi = b2 v + (c2 gi) gi;  m = mi; v = vi;
 *   p = p decay - (step_size mi) / (sqrt(vi) inv_bc2s + eps);
 * and w = p in the compute dtype (bf16: rounded to nearest even as bf16.h
 * does, NaN included). So the result is bit-identical to the float32 backend
 * (fp32 gradients) and to the cpu-bf16 backend (bf16 gradients widened
 * exactly), whatever path and thread count computed it.
 *
 * One read and one write of p, m, v, one read of g and one write of w: 28
 * bytes per parameter with bf16 g and w, 32 with fp32 g and a separate fp32
 * w, 28 with w NULL or w == p in fp32. The loop is memory bound; it is
 * vectorised with AVX-512F or AVX2 (chosen at run time by what the CPU has)
 * and split over the OpenMP threads. */
#ifndef LAMINA_HOST_ADAMW_H
#define LAMINA_HOST_ADAMW_H
#include <stddef.h>

#include "device.h"

/* One fused pass over n elements: fp32 master p, moments m and v (host), the
 * gradient g in the compute dtype t (LM_F32 or LM_BF16, host), writing the
 * updated parameter in the compute dtype to w (host; may be NULL; may alias p
 * when t is LM_F32, never otherwise). wd is this segment's weight decay;
 * `step` counts the updates including this one (>= 1). Serial below 32768
 * elements, else over the OpenMP threads, each thread's range starting on a
 * 64-byte boundary of p. */
void host_adamw(float *p, float *m, float *v, const void *g, void *w, lm_dtype t, size_t n, float gscale, float lr,
                float b1, float b2, float eps, float wd, long step);

/* The path host_adamw takes now: "avx512", "avx2" or "scalar". The best the
 * CPU has (__builtin_cpu_supports), unless the environment variable
 * LAMINA_HOST_ADAMW_ISA=scalar|avx2|avx512 forces one (read at every call, so
 * tests can switch); a name that is not one of these, or a path the CPU
 * lacks, is an input error (exit 2 naming the variable). */
const char *host_adamw_isa(void);

#endif
