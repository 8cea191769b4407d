// k_rope_swiglu.cu — two elementwise ops of the LLaMA block on bf16: the
// rotary embedding (in place, forward or its transpose) and the SwiGLU gate
// silu(g) * u with its backward.
#include "k_common.cuh"
#include "kernels.h"

#define EW_T 256 // threads of every kernel here

// ---------------------------------------------------------------- RoPE

// x is [R, nh, hd], row r at position p = r % T, tables cos/sin [T, hd/2].
// For each (r, h) and i < half = hd/2 the pair (a, b) = (x[i], x[i+half])
// turns by the angle of (p, i), with s = sign * sin[p, i], c = cos[p, i]:
//   a' = a c - b s,   b' = b c + a s
// (sign -1 is the transpose: the backward). Work unit u covers N consecutive
// i of one (r, h): u = ((r * nh + h) * (half / N)) + i / N; threads stride
// over the units. N = 8 takes 16-byte accesses (hd % 16 == 0: every a and b
// then starts 16-byte aligned, as do the table rows; buffers aligned).
template <int N>
__global__ void __launch_bounds__(EW_T) rope_k(bf16 *__restrict__ x, const float *__restrict__ cs,
                                               const float *__restrict__ sn, size_t units, int T, int nh, int hd,
                                               float sign) {
    const size_t half = (size_t)hd / 2, upr = half / N; // units per (r, h)
    for (size_t u = gtid(); u < units; u += gstride()) {
        const size_t rh = u / upr, i = (u % upr) * N;
        const size_t p = (rh / (size_t)nh) % (size_t)T;
        bf16 *a = x + rh * (size_t)hd + i;
        bf16 *b = a + half;
        float fa[N], fb[N], fc[N], fs[N];
        ldn<N>(a, fa);
        ldn<N>(b, fb);
        ldn<N>(cs + p * half + i, fc);
        ldn<N>(sn + p * half + i, fs);
#pragma unroll
        for (int k = 0; k < N; k++) {
            const float ai = fa[k], bi = fb[k], si = sign * fs[k];
            fa[k] = ai * fc[k] - bi * si;
            fb[k] = bi * fc[k] + ai * si;
        }
        stn<N>(a, fa);
        stn<N>(b, fb);
    }
}

extern "C" int lmk_rope(void *x, const float *cos, const float *sin, int R, int T, int nh, int hd, int sign,
                        void *stream) {
    if (R <= 0 || nh <= 0 || hd < 2) return 0; // nothing to rotate
    if (T <= 0) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const size_t half = (size_t)hd / 2, rows = (size_t)R * (size_t)nh;
    const float sg = sign < 0 ? -1.0f : 1.0f;
    if (hd % 16 == 0 && lmk_al16(x) && lmk_al16(cos) && lmk_al16(sin)) {
        const size_t units = rows * (half / 8);
        rope_k<8><<<lmk_blocks(units, EW_T), EW_T, 0, s>>>((bf16 *)x, cos, sin, units, T, nh, hd, sg);
    } else {
        const size_t units = rows * half;
        rope_k<1><<<lmk_blocks(units, EW_T), EW_T, 0, s>>>((bf16 *)x, cos, sin, units, T, nh, hd, sg);
    }
    return lmk_status();
}

// -------------------------------------------------------------- SwiGLU
//
// Both kernels walk n elements: first nv groups of 8 (16-byte accesses; nv =
// n/8 when every pointer is 16-byte aligned, else 0), then the elements from
// 8*nv to n one by one.

static size_t vec_groups(size_t n, const void *const *p, int np) {
    for (int i = 0; i < np; i++)
        if (!lmk_al16(p[i])) return 0;
    return n / 8;
}

// sig = 1/(1+exp(-g));  out = g * sig * u
static __device__ __forceinline__ float swiglu1(float g, float u) {
    const float sig = 1.0f / (1.0f + expf(-g));
    return g * sig * u;
}

__global__ void __launch_bounds__(EW_T) swiglu_fwd_k(bf16 *__restrict__ out, const bf16 *__restrict__ g,
                                                     const bf16 *__restrict__ u, size_t n, size_t nv) {
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float a[8], b[8];
        ld8(g + 8 * i, a);
        ld8(u + 8 * i, b);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = swiglu1(a[k], b[k]);
        st8(out + 8 * i, a);
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) st1(out + i, swiglu1(ld1(g + i), ld1(u + i)));
}

extern "C" int lmk_swiglu_fwd(void *out, const void *g, const void *u, size_t n, void *stream) {
    if (n == 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const void *p[3] = {out, g, u};
    const size_t nv = vec_groups(n, p, 3);
    swiglu_fwd_k<<<lmk_blocks(nv + (n - 8 * nv), EW_T), EW_T, 0, s>>>((bf16 *)out, (const bf16 *)g,
                                                                      (const bf16 *)u, n, nv);
    return lmk_status();
}

// sig = 1/(1+exp(-g)), silu = g sig;  d silu/dg = sig (1 + g (1 - sig)):
//   dg = dout * u * sig * (1 + g (1 - sig)),   du = dout * silu
static __device__ __forceinline__ void swiglu1_bwd(float d, float g, float u, float *dg, float *du) {
    const float sig = 1.0f / (1.0f + expf(-g));
    const float silu = g * sig;
    *dg = d * u * sig * (1.0f + g * (1.0f - sig));
    *du = d * silu;
}

__global__ void __launch_bounds__(EW_T) swiglu_bwd_k(bf16 *__restrict__ dg, bf16 *__restrict__ du,
                                                     const bf16 *__restrict__ dout, const bf16 *__restrict__ g,
                                                     const bf16 *__restrict__ u, size_t n, size_t nv) {
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float d[8], a[8], b[8], rg[8], ru[8];
        ld8(dout + 8 * i, d);
        ld8(g + 8 * i, a);
        ld8(u + 8 * i, b);
#pragma unroll
        for (int k = 0; k < 8; k++) swiglu1_bwd(d[k], a[k], b[k], &rg[k], &ru[k]);
        st8(dg + 8 * i, rg);
        st8(du + 8 * i, ru);
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) {
        float rg, ru;
        swiglu1_bwd(ld1(dout + i), ld1(g + i), ld1(u + i), &rg, &ru);
        st1(dg + i, rg);
        st1(du + i, ru);
    }
}

extern "C" int lmk_swiglu_bwd(void *dg, void *du, const void *dout, const void *g, const void *u, size_t n,
                              void *stream) {
    if (n == 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const void *p[5] = {dg, du, dout, g, u};
    const size_t nv = vec_groups(n, p, 5);
    swiglu_bwd_k<<<lmk_blocks(nv + (n - 8 * nv), EW_T), EW_T, 0, s>>>(
        (bf16 *)dg, (bf16 *)du, (const bf16 *)dout, (const bf16 *)g, (const bf16 *)u, n, nv);
    return lmk_status();
}
