/* host_adamw.c — the fused host AdamW of host_adamw.h: a scalar path and
 * AVX2 / AVX-512F paths picked at run time, over the OpenMP threads.
 *
 * Bit-exactness with the CPU backend: every path evaluates the same float32
 * expression tree with the same constants (hk below), using only correctly
 * rounded IEEE operations (mul, add, sub, div, sqrt; never an FMA: the
 * vector code calls no fmadd intrinsic and the scalar code is built with FP
 * contraction off, as -std=c11 has it), so each element's result does not
 * depend on the lane, the vector width or the thread that computed it.
 * bf16 widening is the exact shift left by 16; narrowing is bf16.h's
 * lm_f32_to_bf16 done lane-wise: (u + 0x7fff + ((u >> 16) & 1)) >> 16, or
 * (u >> 16) | 0x40 (a quiet NaN of the same sign) when |u| > 0x7f800000. The
 * vector loops leave their last < width elements to the scalar code. */
#include "host_adamw.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HA_X86 1
#else
#define HA_X86 0
#endif

/* below this many elements one thread beats a fork/join */
#define HA_PAR_MIN 32768
/* a thread's range starts on a multiple of 16 floats (64 bytes) of p */
#define HA_ALIGN 16

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const char *const isa_names[] = {"scalar", "avx2", "avx512"};

/* what w receives: nothing (NULL, or w == p in fp32), fp32 or bf16 */
enum { W_NONE = 0, W_F32 = 1, W_BF16 = 2 };

/* The per-step constants, computed once as device_cpu.c adamw_seg does. */
typedef struct {
    float gscale, b1, b2, c1, c2, eps, decay, step_size, inv_bc2s;
} hk;

typedef struct {
    float *p, *m, *v;
    const void *g;
    void *w;
    int gbf, wmode; /* g is bf16; W_* */
} hargs;

/* ------------------------------------------------------------ scalar path */

/* Elements [lo, hi): the reference expression, written as in adamw_seg. */
static void k_scalar(const hk *k, const hargs *a, size_t lo, size_t hi) {
    float *p = a->p, *m = a->m, *v = a->v;
    const float *gf = a->g;
    const uint16_t *gb = a->g;
    for (size_t i = lo; i < hi; i++) {
        float gi = (a->gbf ? lm_bf16_to_f32(gb[i]) : gf[i]) * k->gscale;
        float mi = k->b1 * m[i] + k->c1 * gi;
        float vi = k->b2 * v[i] + k->c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] * k->decay - k->step_size * mi / (sqrtf(vi) * k->inv_bc2s + k->eps);
        p[i] = pi;
        if (a->wmode == W_BF16)
            ((uint16_t *)a->w)[i] = lm_f32_to_bf16(pi);
        else if (a->wmode == W_F32)
            ((float *)a->w)[i] = pi;
    }
}

#if HA_X86
/* ------------------------------------------------------------- AVX-512F */

/* 16 lanes: the same expression tree with _mm512 mul/add/sub/div/sqrt. */
__attribute__((target("avx512f"))) static void k_avx512(const hk *k, const hargs *a, size_t lo, size_t hi) {
    float *p = a->p, *m = a->m, *v = a->v;
    const float *gf = a->g;
    const uint16_t *gb = a->g;
    const __m512 gs = _mm512_set1_ps(k->gscale), b1 = _mm512_set1_ps(k->b1), b2 = _mm512_set1_ps(k->b2);
    const __m512 c1 = _mm512_set1_ps(k->c1), c2 = _mm512_set1_ps(k->c2), eps = _mm512_set1_ps(k->eps);
    const __m512 decay = _mm512_set1_ps(k->decay), ss = _mm512_set1_ps(k->step_size);
    const __m512 ibc = _mm512_set1_ps(k->inv_bc2s);
    const __m512i one = _mm512_set1_epi32(1), rnd = _mm512_set1_epi32(0x7fff), qbit = _mm512_set1_epi32(0x40);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    size_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 gi;
        if (a->gbf)
            gi = _mm512_castsi512_ps(
                _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(gb + i))), 16));
        else
            gi = _mm512_loadu_ps(gf + i);
        gi = _mm512_mul_ps(gi, gs);
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(c1, gi));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(c2, gi), gi));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), ibc), eps);
        __m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), decay), _mm512_div_ps(_mm512_mul_ps(ss, mi), den));
        _mm512_storeu_ps(p + i, pi);
        if (a->wmode == W_BF16) {
            __m512i u = _mm512_castps_si512(pi), hi16 = _mm512_srli_epi32(u, 16);
            __m512i rne = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, rnd), _mm512_and_si512(hi16, one)), 16);
            __mmask16 isn = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
            __m512i r = _mm512_mask_blend_epi32(isn, rne, _mm512_or_si512(hi16, qbit));
            _mm256_storeu_si256((__m256i *)((uint16_t *)a->w + i), _mm512_cvtepi32_epi16(r));
        } else if (a->wmode == W_F32) {
            _mm512_storeu_ps((float *)a->w + i, pi);
        }
    }
    k_scalar(k, a, i, hi);
}

/* ----------------------------------------------------------------- AVX2 */

/* 8 lanes; the bf16 pack is SSE4.1's packus of the two 128-bit halves (every
 * value is below 0x10000, so nothing saturates). */
__attribute__((target("avx2"))) static void k_avx2(const hk *k, const hargs *a, size_t lo, size_t hi) {
    float *p = a->p, *m = a->m, *v = a->v;
    const float *gf = a->g;
    const uint16_t *gb = a->g;
    const __m256 gs = _mm256_set1_ps(k->gscale), b1 = _mm256_set1_ps(k->b1), b2 = _mm256_set1_ps(k->b2);
    const __m256 c1 = _mm256_set1_ps(k->c1), c2 = _mm256_set1_ps(k->c2), eps = _mm256_set1_ps(k->eps);
    const __m256 decay = _mm256_set1_ps(k->decay), ss = _mm256_set1_ps(k->step_size);
    const __m256 ibc = _mm256_set1_ps(k->inv_bc2s);
    const __m256i one = _mm256_set1_epi32(1), rnd = _mm256_set1_epi32(0x7fff), qbit = _mm256_set1_epi32(0x40);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 gi;
        if (a->gbf)
            gi = _mm256_castsi256_ps(
                _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(gb + i))), 16));
        else
            gi = _mm256_loadu_ps(gf + i);
        gi = _mm256_mul_ps(gi, gs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(c2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), ibc), eps);
        __m256 pi = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), decay), _mm256_div_ps(_mm256_mul_ps(ss, mi), den));
        _mm256_storeu_ps(p + i, pi);
        if (a->wmode == W_BF16) {
            __m256i u = _mm256_castps_si256(pi), hi16 = _mm256_srli_epi32(u, 16);
            __m256i rne = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, rnd), _mm256_and_si256(hi16, one)), 16);
            __m256i isn = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            __m256i r = _mm256_blendv_epi8(rne, _mm256_or_si256(hi16, qbit), isn);
            __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            _mm_storeu_si128((__m128i *)((uint16_t *)a->w + i), h);
        } else if (a->wmode == W_F32) {
            _mm256_storeu_ps((float *)a->w + i, pi);
        }
    }
    k_scalar(k, a, i, hi);
}
#endif

/* ------------------------------------------------------------ dispatch */

typedef void (*kern_fn)(const hk *, const hargs *, size_t, size_t);

/* The best path this CPU has (0 scalar, 1 AVX2, 2 AVX-512F); GCC's cpu
 * check includes the OS's support for the wide registers (XCR0). */
static int isa_best(void) {
#if HA_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
    return ISA_SCALAR;
}

/* The path now: LAMINA_HOST_ADAMW_ISA if set, else the best (computed once;
 * a race only computes the same value twice). */
static int isa_now(void) {
    static int best = -1;
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = isa_best();
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    const char *e = getenv("LAMINA_HOST_ADAMW_ISA");
    if (!e || !*e) return b;
    for (int i = 0; i < 3; i++)
        if (!strcmp(e, isa_names[i])) {
            if (i > b)
                lm_fail(LM_ERR_INPUT, "LAMINA_HOST_ADAMW_ISA=%s: this CPU lacks %s (the best it has is %s)", e,
                        i == ISA_AVX512 ? "AVX-512F" : "AVX2", isa_names[b]);
            return i;
        }
    lm_fail(LM_ERR_INPUT, "LAMINA_HOST_ADAMW_ISA=%s: not one of scalar, avx2, avx512", e);
}

const char *host_adamw_isa(void) { return isa_names[isa_now()]; }

/* Threads split the whole 64-byte blocks of p statically (contiguous ranges
 * of blocks, as schedule(static) would); thread 0 also takes the elements
 * before p's first 64-byte boundary, the last thread the partial block at
 * the end. */
void host_adamw(float *p, float *m, float *v, const void *g, void *w, lm_dtype t, size_t n, float gscale, float lr,
                float b1, float b2, float eps, float wd, long step) {
    if (t != LM_F32 && t != LM_BF16) lm_abort(LM_ERR_RUNTIME, "host_adamw: unknown dtype %d", (int)t);
    if (t == LM_BF16 && w == (void *)p)
        lm_abort(LM_ERR_RUNTIME, "host_adamw: bf16 w aliases the float32 master (w must be a bf16 buffer)");
    int isa = isa_now();
    if (n == 0) return;
    double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    const hk k = {
        .gscale = gscale,
        .b1 = b1,
        .b2 = b2,
        .c1 = 1.0f - b1,
        .c2 = 1.0f - b2,
        .eps = eps,
        .decay = (float)(1.0 - (double)lr * wd),
        .step_size = (float)((double)lr / bc1),
        .inv_bc2s = (float)(1.0 / sqrt(bc2)),
    };
    const hargs a = {p, m, v, g, w, t == LM_BF16, !w || w == (void *)p ? W_NONE : t == LM_BF16 ? W_BF16 : W_F32};
    kern_fn f = k_scalar;
#if HA_X86
    if (isa == ISA_AVX512) f = k_avx512;
    if (isa == ISA_AVX2) f = k_avx2;
#else
    (void)isa;
#endif
    uintptr_t pa = (uintptr_t)p;
    size_t head = pa % sizeof(float) ? 0 : (64 - pa % 64) % 64 / sizeof(float);
    if (head > n) head = n;
    size_t nblk = (n - head) / HA_ALIGN;
#pragma omp parallel if (n >= HA_PAR_MIN)
    {
        size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t lo = id == 0 ? 0 : head + nblk * id / nt * HA_ALIGN;
        size_t hi = id == nt - 1 ? n : head + nblk * (id + 1) / nt * HA_ALIGN;
        if (lo < hi) f(&k, &a, lo, hi);
    }
}
