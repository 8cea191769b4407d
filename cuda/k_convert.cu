// k_convert.cu — elementwise kernels over flat buffers of float32 or bf16:
// dtype conversion (lmk_convert), y += x (lmk_add), x *= s (lmk_scale) and
// the sum of squares reduced to one double (lmk_sumsq, two passes through a
// workspace, deterministic).
//
// Every kernel here walks n elements with a grid-stride loop: first nv
// groups of 8 elements through 16-byte accesses (nv = n/8 when every pointer
// is 16-byte aligned, else 0), then the elements from 8*nv to n one by one.
#include "k_common.cuh"
#include "kernels.h"

#define EW_T 256     // threads of the elementwise kernels
#define SS_T 256     // threads of the sum-of-squares kernels
#define SS_MAXB 1024 // most partial sums (blocks of the first pass)

// Groups of 8 to use: n/8 when all of a, b, c are 16-byte aligned.
static size_t vec_groups(size_t n, const void *a, const void *b, const void *c) {
    return (lmk_al16(a) && lmk_al16(b) && lmk_al16(c)) ? n / 8 : 0;
}

// Blocks for nv vector groups plus the n - 8 nv single elements.
static unsigned ew_blocks(size_t n, size_t nv) { return lmk_blocks(nv + (n - 8 * nv), EW_T); }

// ------------------------------------------------------------- convert

// dst[i] = src[i] converted: widening bf16 -> float32 is exact, narrowing
// rounds to nearest even.
template <typename TD, typename TS>
__global__ void __launch_bounds__(EW_T) convert_k(TD *__restrict__ dst, const TS *__restrict__ src, size_t n,
                                                  size_t nv) {
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float f[8];
        ld8(src + 8 * i, f);
        st8(dst + 8 * i, f);
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) st1(dst + i, ld1(src + i));
}

template <typename TD, typename TS> static void launch_convert(void *dst, const void *src, size_t n, cudaStream_t s) {
    const size_t nv = vec_groups(n, dst, src, src);
    convert_k<TD, TS><<<ew_blocks(n, nv), EW_T, 0, s>>>((TD *)dst, (const TS *)src, n, nv);
}

extern "C" int lmk_convert(void *dst, int dt, const void *src, int st, size_t n, void *stream) {
    if (n == 0) return 0;
    if ((dt != 0 && dt != 1) || (st != 0 && st != 1)) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    if (dt == st) { // same dtype: a copy (nothing when in place)
        if (dst == src) return 0;
        cudaError_t e = cudaMemcpyAsync(dst, src, n * (dt == 1 ? 2 : 4), cudaMemcpyDeviceToDevice, s);
        return e != cudaSuccess ? (int)e : lmk_status();
    }
    if (dt == 1) launch_convert<bf16, float>(dst, src, n, s);
    else launch_convert<float, bf16>(dst, src, n, s);
    return lmk_status();
}

// ------------------------------------------------------------ add, scale

// y[i] = y[i] + x[i] in float32, rounded once to T.
template <typename T>
__global__ void __launch_bounds__(EW_T) add_k(T *__restrict__ y, const T *__restrict__ x, size_t n, size_t nv) {
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float a[8], b[8];
        ld8(y + 8 * i, a);
        ld8(x + 8 * i, b);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] += b[k];
        st8(y + 8 * i, a);
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) st1(y + i, ld1(y + i) + ld1(x + i));
}

extern "C" int lmk_add(void *y, const void *x, size_t n, int dtype, void *stream) {
    if (n == 0) return 0;
    if (dtype != 0 && dtype != 1) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const size_t nv = vec_groups(n, y, x, x);
    if (dtype == 1) add_k<bf16><<<ew_blocks(n, nv), EW_T, 0, s>>>((bf16 *)y, (const bf16 *)x, n, nv);
    else add_k<float><<<ew_blocks(n, nv), EW_T, 0, s>>>((float *)y, (const float *)x, n, nv);
    return lmk_status();
}

// x[i] = x[i] * s in float32, rounded once to T.
template <typename T> __global__ void __launch_bounds__(EW_T) scale_k(T *__restrict__ x, size_t n, size_t nv, float s) {
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float a[8];
        ld8(x + 8 * i, a);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] *= s;
        st8(x + 8 * i, a);
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) st1(x + i, ld1(x + i) * s);
}

extern "C" int lmk_scale(void *x, size_t n, float s, int dtype, void *stream) {
    if (n == 0) return 0;
    if (dtype != 0 && dtype != 1) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    const size_t nv = vec_groups(n, x, x, x);
    if (dtype == 1) scale_k<bf16><<<ew_blocks(n, nv), EW_T, 0, st>>>((bf16 *)x, n, nv, s);
    else scale_k<float><<<ew_blocks(n, nv), EW_T, 0, st>>>((float *)x, n, nv, s);
    return lmk_status();
}

// --------------------------------------------------------------- sumsq

// Blocks of the first pass: one per 8*SS_T elements, at most SS_MAXB. It
// depends on n only, so the summation order (and the result) is fixed.
static unsigned sumsq_blocks(size_t n) {
    size_t b = (n + 8 * SS_T - 1) / (8 * SS_T);
    if (b < 1) b = 1;
    return b > SS_MAXB ? SS_MAXB : (unsigned)b;
}

extern "C" size_t lmk_sumsq_ws(size_t n) { return (size_t)sumsq_blocks(n) * sizeof(double); }

// Pass 1: part[b] = sum of x^2 over the elements of block b's threads. Each
// group of 8 squares is summed in float32 and added to a per-thread double;
// single elements add their float32 square; the block sums in double.
template <typename T>
__global__ void __launch_bounds__(SS_T) sumsq_part_k(const T *__restrict__ x, size_t n, size_t nv,
                                                     double *__restrict__ part) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (size_t i = gtid(); i < nv; i += gstride()) {
        float f[8];
        ld8(x + 8 * i, f);
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) s += f[k] * f[k];
        acc += (double)s;
    }
    for (size_t i = 8 * nv + gtid(); i < n; i += gstride()) {
        const float f = ld1(x + i);
        acc += (double)(f * f);
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// Pass 2 (one block): *out = sum of the nb partial sums, in double.
__global__ void __launch_bounds__(SS_T) sumsq_final_k(const double *__restrict__ part, unsigned nb,
                                                      double *__restrict__ out) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (unsigned i = threadIdx.x; i < nb; i += blockDim.x) acc += part[i];
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) *out = acc;
}

extern "C" int lmk_sumsq(double *out, const void *x, size_t n, int dtype, void *ws, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (n == 0) { // the sum of nothing: write the 0 without a kernel
        cudaError_t e = cudaMemsetAsync(out, 0, sizeof(double), s);
        return e != cudaSuccess ? (int)e : lmk_status();
    }
    if (dtype != 0 && dtype != 1) return (int)cudaErrorInvalidValue;
    const unsigned nb = sumsq_blocks(n);
    const size_t nv = vec_groups(n, x, x, x);
    double *part = (double *)ws;
    if (dtype == 1) sumsq_part_k<bf16><<<nb, SS_T, 0, s>>>((const bf16 *)x, n, nv, part);
    else sumsq_part_k<float><<<nb, SS_T, 0, s>>>((const float *)x, n, nv, part);
    sumsq_final_k<<<1, SS_T, 0, s>>>(part, nb, out);
    return lmk_status();
}
