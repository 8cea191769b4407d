/* bf16.c — array conversions between float32 and bfloat16 (see bf16.h for
 * the rounding). Elementwise and branch-free, so the loops vectorise; long
 * arrays are split across OpenMP threads. */
#include "bf16.h"

/* below this many elements one thread is faster than a fork/join */
#define BF16_PAR_MIN 32768

void lm_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > BF16_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = lm_f32_to_bf16(src[i]);
}

void lm_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > BF16_PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = lm_bf16_to_f32(src[i]);
}
