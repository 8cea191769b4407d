// flash_fwd.cu — causal grouped-query flash attention, forward
// (FlashAttention-2), bf16 in and out, float32 softmax statistics.
// Layouts (src/device.h): q, o [B*T, H*hd]; k, v [B*T, KV*hd]; lse [B, H, T].
#include "flash_common.cuh"
#include "kernels.h"

namespace {
using namespace lmfa;
namespace wmma = nvcuda::wmma;

// One block per (query tile of kBr rows, query head h, sequence b); warp w
// owns query rows q0+16w .. q0+16w+15 and kv head g = h / (H/KV).
//   Q tile -> bf16 fragments (registers), once.
//   for each key tile kt = 0 .. qt (tiles above the diagonal skipped):
//     S = Q K^T (tensor cores, float32)            -> stage
//     x = S * scale * log2(e), x = -inf where key j > query i or j >= T
//     m' = max(m, rowmax x);  a = 2^(m - m');  p = 2^(x - m')  -> P (bf16)
//     l = a l + rowsum p;  m = m'
//     O = a O + P V (tensor cores; P V -> stage, O in float32 registers)
//   o = O / l (bf16);  lse = (m + log2 l) ln 2 = ln sum_j exp(scale S_ij).
// Scores are kept in base 2 (exp2 is one instruction). Tile 0 always has key 0
// unmasked, so m is finite from the first tile on. Each lane owns one row
// r = lane % 16 and half lane / 16 of it: the odd/even score columns
// 2c + half, and the 8-column chunks 2c + half of O.
// K and V of a tile are fetched with cp.async while the previous step
// computes: V(kt) during S = Q K(kt)^T, K(kt+1) during P V(kt).
template <int D>
__global__ void __launch_bounds__(Fwd<D>::kThreads)
    flash_fwd_kernel(bf16 *__restrict__ o, float *__restrict__ lse, const bf16 *__restrict__ q,
                     const bf16 *__restrict__ k, const bf16 *__restrict__ v, int T, int H, int KV, float scale_log2) {
    using C = Fwd<D>;
    LMFA_DYN_SMEM(smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(smem + C::offK);
    bf16 *Vs = reinterpret_cast<bf16 *>(smem + C::offV);
    const int h = (int)blockIdx.x, b = (int)blockIdx.y;
    const int qt = (int)(gridDim.z - 1 - blockIdx.z); // heaviest tiles first
    const int q0 = qt * kBr;
    const int g = h / (H / KV);
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const size_t qstride = (size_t)H * D, kstride = (size_t)KV * D;
    const bf16 *qh = q + (size_t)b * T * qstride + (size_t)h * D; // row t at qh + t*qstride
    const bf16 *kh = k + (size_t)b * T * kstride + (size_t)g * D;
    const bf16 *vh = v + (size_t)b * T * kstride + (size_t)g * D;

    // Q tile (into the stage region, free until the loop) and K tile 0.
    bf16 *Qs = reinterpret_cast<bf16 *>(smem + C::offStage);
    load_tile<D, kBr, C::kThreads>(Qs, C::LDK, qh, qstride, q0, T, tid);
    cp_async_commit();
    load_tile<D, kBc, C::kThreads>(Ks, C::LDK, kh, kstride, 0, T, tid);
    cp_async_commit();
    cp_async_wait<1>(); // Q landed (K may be in flight)
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qf[D / 16];
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) wmma::load_matrix_sync(qf[ks], Qs + warp * 16 * C::LDK + ks * 16, C::LDK);
    __syncthreads(); // the region is the warps' stage from here on

    float *stage = reinterpret_cast<float *>(smem + C::offStage) + warp * C::kStageFloats;
    bf16 *Pw = reinterpret_cast<bf16 *>(smem + C::offP) + warp * 16 * C::LDP;
    const int r = lane & 15, half = lane >> 4;
    const int i = q0 + warp * 16 + r; // this lane's query row
    float m = -INFINITY, l = 0.0f;
    float acc[D / 2]; // O[i][(2c + half)*8 + e] at acc[c*8 + e]
#pragma unroll
    for (int c = 0; c < D / 2; c++) acc[c] = 0.0f;

    const int nkt = qt + 1; // key tiles 0 .. qt reach the diagonal
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * kBc;
        load_tile<D, kBc, C::kThreads>(Vs, C::LDK, vh, kstride, k0, T, tid);
        cp_async_commit();
        cp_async_wait<1>(); // K(kt) landed (V(kt) may be in flight)
        __syncthreads();

        // S = Q K^T: 16 rows x kBc keys for this warp.
#pragma unroll
        for (int n = 0; n < kBc / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
            wmma::fill_fragment(sf, 0.0f);
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kf; // K^T
                wmma::load_matrix_sync(kf, Ks + n * 16 * C::LDK + ks * 16, C::LDK);
                wmma::mma_sync(sf, qf[ks], kf, sf);
            }
            wmma::store_matrix_sync(stage + n * 16, sf, C::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax of row i over this tile (two lanes per row).
        float x[kBc / 2];
        float tmax = -INFINITY;
#pragma unroll
        for (int c = 0; c < kBc / 2; c++) {
            const int col = 2 * c + half, j = k0 + col;
            const float s = stage[r * C::LDS + col] * scale_log2;
            x[c] = (j > i || j >= T) ? -INFINITY : s;
            tmax = fmaxf(tmax, x[c]);
        }
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 16));
        const float mnew = fmaxf(m, tmax);
        const float mref = mnew == -INFINITY ? 0.0f : mnew; // (a fully masked row: p = 0, no NaN)
        const float alpha = exp2f(m - mref);
        float rs = 0.0f;
#pragma unroll
        for (int c = 0; c < kBc / 2; c++) {
            const float p = exp2f(x[c] - mref);
            Pw[r * C::LDP + 2 * c + half] = __float2bfloat16_rn(p);
            rs += p;
        }
        rs += __shfl_xor_sync(0xffffffffu, rs, 16);
        l = l * alpha + rs;
        m = mnew;

        cp_async_wait<0>(); // V(kt) landed
        __syncthreads();    // ... for every thread; and every warp is done with K(kt)
        if (kt + 1 < nkt) load_tile<D, kBc, C::kThreads>(Ks, C::LDK, kh, kstride, k0 + kBc, T, tid);
        cp_async_commit(); // (possibly empty: keeps the group count uniform)

        // P V: 16 rows x D for this warp -> stage.
#pragma unroll
        for (int n = 0; n < D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
            wmma::fill_fragment(of, 0.0f);
#pragma unroll
            for (int ks = 0; ks < kBc / 16; ks++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, Pw + ks * 16, C::LDP);
                wmma::load_matrix_sync(vf, Vs + ks * 16 * C::LDK + n * 16, C::LDK);
                wmma::mma_sync(of, pf, vf, of);
            }
            wmma::store_matrix_sync(stage + n * 16, of, C::LDO, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll
        for (int c = 0; c < D / 16; c++) {
            const float *src = stage + r * C::LDO + (2 * c + half) * 8;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[c * 8 + e] = acc[c * 8 + e] * alpha + src[e];
        }
        __syncthreads(); // every warp is done with V(kt) (and its stage) before the next tile
    }

    if (i < T) {
        const float inv = 1.0f / l;
        bf16 *orow = o + ((size_t)b * T + i) * qstride + (size_t)h * D;
#pragma unroll
        for (int c = 0; c < D / 16; c++) {
            float f[8];
#pragma unroll
            for (int e = 0; e < 8; e++) f[e] = acc[c * 8 + e] * inv;
            st_bf16x8(orow + (2 * c + half) * 8, f);
        }
        if (half == 0) lse[((size_t)b * H + h) * T + i] = (m + log2f(l)) * kLn2;
    }
}

#ifndef LMFA_EMULATE
template <int D>
int launch_fwd(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int H, int KV,
               cudaStream_t st) {
    using C = Fwd<D>;
    cudaError_t e =
        cudaFuncSetAttribute(flash_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::kSmem);
    if (e != cudaSuccess) return (int)e;
    const float scale_log2 = kLog2e / sqrtf((float)D);
    const dim3 grid((unsigned)H, (unsigned)B, (unsigned)((T + kBr - 1) / kBr));
    flash_fwd_kernel<D><<<grid, C::kThreads, C::kSmem, st>>>(o, lse, q, k, v, T, H, KV, scale_log2);
    return (int)cudaGetLastError();
}

// A usable buffer: not NULL and 16-byte aligned (16-byte vector accesses).
bool al16(const void *p) { return p && ((uintptr_t)p & 15u) == 0; }
#endif
} // namespace

#ifndef LMFA_EMULATE
// Checks (cudaErrorInvalidValue): hd 64 or 128, H % KV == 0, B and the number
// of query tiles within a grid dimension (65535), 16-byte aligned, non-NULL buffers.
extern "C" int lmk_flash_fwd(void *o, float *lse, const void *q, const void *k, const void *v, int B, int T, int H,
                             int KV, int hd, void *stream) {
    if ((hd != 64 && hd != 128) || B < 0 || T < 0 || H <= 0 || KV <= 0 || H % KV != 0)
        return (int)cudaErrorInvalidValue;
    if (B == 0 || T == 0) return 0;
    if (B > 65535 || (T + kBr - 1) / kBr > 65535 || !al16(o) || !al16(q) || !al16(k) || !al16(v) || !lse)
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    bf16 *o_ = (bf16 *)o;
    const bf16 *q_ = (const bf16 *)q, *k_ = (const bf16 *)k, *v_ = (const bf16 *)v;
    return hd == 64 ? launch_fwd<64>(o_, lse, q_, k_, v_, B, T, H, KV, st)
                    : launch_fwd<128>(o_, lse, q_, k_, v_, B, T, H, KV, st);
}
#endif
