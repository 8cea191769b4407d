// k_xent.cu — softmax cross-entropy over bf16 logits [R, V], in place: each
// row becomes its gradient scale * (softmax - onehot(target)), and its loss
// goes to row_loss (float32). One block per row, any V (odd too).
#include "k_common.cuh"
#include "kernels.h"
#include <math.h>

#define XT 512 // threads of the kernel

// Running (max m, sum s of exp(x - m)) of a stream of logits: a new x above
// m rescales s. -inf logits add nothing; a NaN logit makes s NaN (the loss
// shows it, as on the CPU backend).
static __device__ __forceinline__ void ms_push(float &m, float &s, float x) {
    if (x > m) {
        s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
        m = x;
    } else if (x != -INFINITY) {
        s += expf(x - m);
    }
}

// Merge of two (m, s): symmetric in its two arguments, bit for bit (the max
// is, and t1 + t2 == t2 + t1), so butterfly lanes agree exactly.
static __device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    const float t1 = m == -INFINITY ? 0.0f : s * expf(m - M);
    const float t2 = m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M);
    m = M;
    s = t1 + t2;
}

// (m, s) of the whole block, returned to every thread (blockDim.x a multiple
// of 32, every thread calls it; shm/shs 32 shared slots each).
static __device__ __forceinline__ void block_ms(float &m, float &s, float *shm, float *shs) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ms_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // a previous row may still be reading the slots
    if (lane == 0) {
        shm[wid] = m;
        shs[wid] = s;
    }
    __syncthreads();
    m = lane < nw ? shm[lane] : -INFINITY;
    s = lane < nw ? shs[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ms_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// Row r (blocks stride over rows) with target t, logits x[0..V):
//   M = max x,  S = sum exp(x - M)   (one pass, running (m, s), float32)
//   x[c] = bf16(exp(x[c] - M) * (scale / S) - (c == t ? scale : 0))
//   row_loss[r] = M + log S - x[t]   (in double, stored as float32)
// t < 0 (padding): zeros, loss 0. t >= V (the caller checks; never read out
// of bounds): zeros, loss NaN. N = 8: 16-byte accesses (V % 8 == 0, aligned).
template <int N>
__global__ void __launch_bounds__(XT) xent_k(bf16 *__restrict__ logits, const int32_t *__restrict__ targets,
                                             float *__restrict__ row_loss, int R, int V, float scale) {
    __shared__ float shm[32], shs[32];
    const size_t ng = (size_t)V / N;
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        bf16 *x = logits + r * (size_t)V;
        const int t = targets[r];
        if (t < 0 || t >= V) { // the same t for the whole block: no barrier skipped by some threads only
            const float z[N] = {};
            for (size_t c = threadIdx.x; c < ng; c += blockDim.x) stn<N>(x + c * N, z);
            if (threadIdx.x == 0) row_loss[r] = t < 0 ? 0.0f : NAN;
            continue;
        }
        const float xt = ld1(x + t); // read before the barriers of block_ms; written only after them
        float m = -INFINITY, s = 0.0f;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N];
            ldn<N>(x + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) ms_push(m, s, f[i]);
        }
        block_ms(m, s, shm, shs);
        const float k = scale / s;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N];
            ldn<N>(x + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) {
                f[i] = expf(f[i] - m) * k;
                if (c * N + i == (size_t)t) f[i] -= scale;
            }
            stn<N>(x + c * N, f);
        }
        if (threadIdx.x == 0) row_loss[r] = (float)((double)m + log((double)s) - (double)xt);
    }
}

extern "C" int lmk_xent(void *logits, const int32_t *targets, float *row_loss, int R, int V, float scale,
                        void *stream) {
    if (R <= 0) return 0;
    if (V <= 0) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = V % 8 == 0 && lmk_al16(logits);
    const unsigned nt = lmk_threads(vec ? (size_t)V / 8 : (size_t)V, XT);
    const unsigned nb = lmk_blocks((size_t)R, 1);
    if (vec) xent_k<8><<<nb, nt, 0, s>>>((bf16 *)logits, targets, row_loss, R, V, scale);
    else xent_k<1><<<nb, nt, 0, s>>>((bf16 *)logits, targets, row_loss, R, V, scale);
    return lmk_status();
}

// Vocab-parallel cross-entropy (Megatron-LM), two kernels over the rows of a
// vocab slice [R, V] whose columns [0, Vv) are real (the rest padding, never
// read into a result). tloc[r]: the target's column in the slice, -1 when
// another rank holds it, < -1 (LM_XENT_PAD) on a padding row.
//
// Statistics (one block per row, like xent_k's first pass), over c < Vv:
//   stats[3r] = m = max x,  stats[3r+1] = s = sum exp(x - m),
//   stats[3r+2] = x[tloc] when 0 <= tloc < Vv, else 0.
// Vv = 0: m = -inf, s = 0 (ms_push never called, the merges keep that).
template <int N>
__global__ void __launch_bounds__(XT) xent_part_stats_k(const bf16 *__restrict__ logits,
                                                        const int32_t *__restrict__ tloc,
                                                        float *__restrict__ stats, int R, int V, int Vv) {
    __shared__ float shm[32], shs[32];
    const size_t ng = ((size_t)Vv + N - 1) / N; // groups holding real columns
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        const bf16 *x = logits + r * (size_t)V;
        float m = -INFINITY, s = 0.0f;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N];
            ldn<N>(x + c * N, f); // within the row: V % N == 0 and Vv <= V
#pragma unroll
            for (int i = 0; i < N; i++)
                if (c * N + i < (size_t)Vv) ms_push(m, s, f[i]);
        }
        block_ms(m, s, shm, shs);
        if (threadIdx.x == 0) {
            const int t = tloc[r];
            stats[3 * r] = m;
            stats[3 * r + 1] = s;
            stats[3 * r + 2] = t >= 0 && t < Vv ? ld1(x + t) : 0.0f;
        }
    }
}

// Gradient in place with the combined lse[r] (no reduction: the threads of
// a block stride over the row's column groups):
//   x[c] = bf16(scale * exp(x[c] - lse[r]) - (c == tloc ? scale : 0))  c < Vv
//   x[c] = 0                                                           c >= Vv
// and the whole row 0 when tloc < -1 (padding row).
template <int N>
__global__ void __launch_bounds__(XT) xent_part_grad_k(bf16 *__restrict__ logits, const int32_t *__restrict__ tloc,
                                                       const float *__restrict__ lse, int R, int V, int Vv,
                                                       float scale) {
    const size_t ng = (size_t)V / N;
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        bf16 *x = logits + r * (size_t)V;
        const int t = tloc[r];
        const size_t nreal = t < -1 ? 0 : (size_t)Vv; // a padding row: every column zero
        const float L = lse[r];
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N];
            ldn<N>(x + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) {
                const size_t col = c * N + i;
                if (col < nreal) {
                    f[i] = scale * expf(f[i] - L);
                    if (t >= 0 && col == (size_t)t) f[i] -= scale;
                } else {
                    f[i] = 0.0f;
                }
            }
            stn<N>(x + c * N, f);
        }
    }
}

extern "C" int lmk_xent_part_stats(const void *logits, const int32_t *tloc, float *stats, int R, int V, int Vv,
                                   void *stream) {
    if (R <= 0) return 0;
    if (V < 0 || Vv < 0 || Vv > V) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = V % 8 == 0 && lmk_al16(logits);
    const unsigned nt = lmk_threads(vec ? ((size_t)Vv + 7) / 8 : (size_t)Vv, XT);
    const unsigned nb = lmk_blocks((size_t)R, 1);
    if (vec) xent_part_stats_k<8><<<nb, nt, 0, s>>>((const bf16 *)logits, tloc, stats, R, V, Vv);
    else xent_part_stats_k<1><<<nb, nt, 0, s>>>((const bf16 *)logits, tloc, stats, R, V, Vv);
    return lmk_status();
}

extern "C" int lmk_xent_part_grad(void *logits, const int32_t *tloc, const float *lse, int R, int V, int Vv,
                                  float scale, void *stream) {
    if (R <= 0 || V == 0) return 0;
    if (V < 0 || Vv < 0 || Vv > V) return (int)cudaErrorInvalidValue;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = V % 8 == 0 && lmk_al16(logits);
    const unsigned nt = lmk_threads(vec ? (size_t)V / 8 : (size_t)V, XT);
    const unsigned nb = lmk_blocks((size_t)R, 1);
    if (vec) xent_part_grad_k<8><<<nb, nt, 0, s>>>((bf16 *)logits, tloc, lse, R, V, Vv, scale);
    else xent_part_grad_k<1><<<nb, nt, 0, s>>>((bf16 *)logits, tloc, lse, R, V, Vv, scale);
    return lmk_status();
}
