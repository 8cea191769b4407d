// k_embed.cu — the token embedding on bf16: the row gather of the forward
// pass and its deterministic scatter-add backward (runs of equal ids summed
// in a fixed order, no atomics).
//
// Rows go 8 columns at a time through 16-byte accesses when D % 8 == 0 and
// the buffers are 16-byte aligned (VEC = 8), else one column at a time.
#include "k_common.cuh"
#include "kernels.h"

#define EMB_T 128 // threads of both kernels

// out[r, c] = table[ids[r], c], or 0 where ids[r] < 0 (a row of another
// rank's vocab slice). Blocks stride over the rows r, the threads of a block
// over the row's column groups (N columns each, D / N groups).
template <int N>
__global__ void __launch_bounds__(EMB_T) emb_fwd_k(bf16 *__restrict__ out, const bf16 *__restrict__ table,
                                                   const int32_t *__restrict__ ids, int R, int D) {
    const size_t ng = (size_t)D / N;
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        const int32_t id = ids[r];
        bf16 *dst = out + r * (size_t)D;
        if (id < 0) { // bf16 zero is all-zero bits
            for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
                if constexpr (N == 8) reinterpret_cast<uint4 *>(dst)[c] = make_uint4(0u, 0u, 0u, 0u);
                else st1(dst + c, 0.0f);
            }
            continue;
        }
        const bf16 *src = table + (size_t)id * (size_t)D;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            if constexpr (N == 8) reinterpret_cast<uint4 *>(dst)[c] = reinterpret_cast<const uint4 *>(src)[c];
            else dst[c] = src[c];
        }
    }
}

extern "C" int lmk_embedding_fwd(void *out, const void *table, const int32_t *ids, int R, int D, void *stream) {
    if (R <= 0 || D <= 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = D % 8 == 0 && lmk_al16(out) && lmk_al16(table);
    const unsigned nt = lmk_threads(vec ? (size_t)D / 8 : (size_t)D, EMB_T);
    const unsigned nb = lmk_blocks((size_t)R, 1);
    if (vec) emb_fwd_k<8><<<nb, nt, 0, s>>>((bf16 *)out, (const bf16 *)table, ids, R, D);
    else emb_fwd_k<1><<<nb, nt, 0, s>>>((bf16 *)out, (const bf16 *)table, ids, R, D);
    return lmk_status();
}

// Run j holds the rows order[k] for starts[j] <= k < starts[j+1], all with
// the one id = ids[order[starts[j]]] >= 0 (the host leaves rows with a
// negative id out of order and starts). For each column c:
//   dtable[id, c] = bf16(float(dtable[id, c]) + sum_k float(dout[order[k], c]))
// the sum in float32 in the order of k (order is a stable sort, so rows
// ascend): the same bits on every run. blockIdx.x strides over runs,
// blockIdx.y * blockDim.x + threadIdx.x over column groups of N columns.
// Distinct runs have distinct ids, so no two threads write one element.
template <int N>
__global__ void __launch_bounds__(EMB_T) emb_bwd_k(bf16 *__restrict__ dtable, const bf16 *__restrict__ dout,
                                                   const int32_t *__restrict__ ids, const int32_t *__restrict__ order,
                                                   const int32_t *__restrict__ starts, int nruns, int D) {
    const size_t ng = (size_t)D / N;
    const size_t c0 = (size_t)blockIdx.y * blockDim.x + threadIdx.x, cstep = (size_t)gridDim.y * blockDim.x;
    for (size_t j = blockIdx.x; j < (size_t)nruns; j += gridDim.x) {
        const int k0 = starts[j], k1 = starts[j + 1];
        if (k1 <= k0) continue; // (runs are never empty; no read past order)
        bf16 *dst = dtable + (size_t)ids[order[k0]] * (size_t)D;
        for (size_t c = c0; c < ng; c += cstep) {
            float acc[N], f[N];
#pragma unroll
            for (int i = 0; i < N; i++) acc[i] = 0.0f;
            for (int k = k0; k < k1; k++) {
                ldn<N>(dout + (size_t)order[k] * (size_t)D + c * N, f);
#pragma unroll
                for (int i = 0; i < N; i++) acc[i] += f[i];
            }
            ldn<N>(dst + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) f[i] += acc[i];
            stn<N>(dst + c * N, f);
        }
    }
}

extern "C" int lmk_embedding_bwd(void *dtable, const void *dout, const int32_t *ids, const int32_t *order,
                                 const int32_t *starts, int nruns, int R, int D, void *stream) {
    if (R <= 0 || D <= 0 || nruns <= 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = D % 8 == 0 && lmk_al16(dtable) && lmk_al16(dout);
    const size_t ng = vec ? (size_t)D / 8 : (size_t)D;
    const unsigned nt = lmk_threads(ng, EMB_T);
    const dim3 grid(lmk_blocks((size_t)nruns, 1), lmk_blocks(ng, nt));
    if (vec)
        emb_bwd_k<8><<<grid, nt, 0, s>>>((bf16 *)dtable, (const bf16 *)dout, ids, order, starts, nruns, D);
    else
        emb_bwd_k<1><<<grid, nt, 0, s>>>((bf16 *)dtable, (const bf16 *)dout, ids, order, starts, nruns, D);
    return lmk_status();
}
