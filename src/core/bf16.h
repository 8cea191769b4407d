/* bf16.h — bfloat16 <-> float32 conversions on the host.
 *
 * bf16 is the upper half of an IEEE float32: sign, the same 8 exponent bits,
 * 7 mantissa bits. Widening is exact (append 16 zero bits). Narrowing rounds
 * to nearest, ties to even, in integer arithmetic: adding 0x7fff plus the
 * lowest kept bit to the float's bits carries into the kept half exactly when
 * the dropped half is above one half, or exactly one half with an odd kept
 * half. The carry can run into the exponent, which is right: 1.11111111b x 2^e
 * rounds up to 1.0 x 2^(e+1), and past the largest finite bf16 it gives the
 * exponent 0xff with a zero mantissa, i.e. infinity (IEEE overflow under
 * round-to-nearest); infinities stay infinities. Subnormals need nothing
 * special (the integer add rounds them the same way). NaN is the one
 * exception, since the add could carry a NaN's payload into infinity: a NaN
 * keeps its sign and top payload bits and gets the quiet bit set. */
#ifndef LAMINA_BF16_H
#define LAMINA_BF16_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t lm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t nan = (u >> 16) | 0x0040u;                 /* quiet NaN, same sign */
    uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* round to nearest even */
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rne);
}

static inline float lm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n elements at a time (OpenMP threads above a few tens of thousands). */
void lm_f32_to_bf16_n(uint16_t *dst, const float *src, size_t n);
void lm_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
