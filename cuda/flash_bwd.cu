// flash_bwd.cu — causal grouped-query flash attention, backward
// (FlashAttention-2): probabilities recomputed from q, k and the forward's
// lse; dK and dV summed inside one block per key tile (deterministic), dQ
// accumulated in float32 with atomics and rounded to bf16 at the end.
// Layouts (src/device.h): q, o, dout, dq [B*T, H*hd]; k, v, dk, dv [B*T, KV*hd];
// lse [B, H, T]. Workspace: D [B, H, T] float, then dq_accum [B*T, H*hd] float.
#include "flash_common.cuh"
#include "kernels.h"

namespace {
using namespace lmfa;
namespace wmma = nvcuda::wmma;

constexpr int kPreWarps = 8; // (token, head) rows per block of the preprocess kernel

// Preprocess, one warp per (token, head) row:
//   D[b,h,t] = sum_c dout[row, c] * o[row, c]   (float32)
// and zeroes that row of dq_accum for the atomics of the main kernel.
template <int D>
__global__ void __launch_bounds__(kPreWarps * 32)
    flash_bwd_pre_kernel(float *__restrict__ Dvec, float *__restrict__ dqa, const bf16 *__restrict__ dout,
                         const bf16 *__restrict__ o, size_t rows, int T, int H) {
    const int lane = (int)(threadIdx.x & 31);
    const size_t row = (size_t)blockIdx.x * kPreWarps + threadIdx.x / 32; // = token*H + h
    if (row >= rows) return; // whole warps
    const size_t token = row / (size_t)H;
    const int h = (int)(row % (size_t)H);
    const size_t b = token / (size_t)T, t = token % (size_t)T;
    const bf16 *dr = dout + row * D, *orow = o + row * D; // row (token, h) starts at token*H*D + h*D
    float s = 0.0f;
#pragma unroll
    for (int c = lane * 2; c < D; c += 64) {
        const uint32_t a = *reinterpret_cast<const uint32_t *>(dr + c);
        const uint32_t w = *reinterpret_cast<const uint32_t *>(orow + c);
        s += bf_lo(a) * bf_lo(w) + bf_hi(a) * bf_hi(w);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) Dvec[(b * H + h) * (size_t)T + t] = s;
    float *z = dqa + row * D;
#pragma unroll
    for (int c = lane * 4; c < D; c += 128) *reinterpret_cast<float4 *>(z + c) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// Main kernel, one block per (key tile kt of kBc rows, kv head g, sequence b).
// K, V of the tile stay in shared memory; dK, dV [kBc][D] in float32 WMMA
// accumulators (warp w: key rows 16(w%4).., head dims (w/4)*D/2 ..). For every
// query head h of the group (h/(H/KV) = g) and every query tile qt >= kt (at
// or below the diagonal):
//   S^T = K Q^T;  P^T = exp2(S^T scale log2(e) - lse_i log2(e)), 0 where key
//       j > query i or i >= T                          (P^T -> smem, bf16)
//   dP^T = V dO^T;  dS^T = P^T (dP^T - D_i)           (dS^T -> smem, bf16)
//   dV += P^T dO;  dK += dS^T Q
//   dQ_accum[i, h] += dS K  (float32 atomicAdd; scaled by `scale` at the end)
// and finally dv = dV, dk = scale dK (bf16). Elementwise steps go through the
// warp's float stage: warp (w%4, w/4) takes key rows 16(w%4).. x query columns
// 32(w/4) + lane, so each lane has one query (one lse, one D) and 16 keys.
// Q(qt) and dO(qt) arrive by cp.async; dO lands during S^T = K Q^T.
template <int D>
__global__ void __launch_bounds__(Bwd<D>::kThreads)
    flash_bwd_kernel(bf16 *__restrict__ dk, bf16 *__restrict__ dv, float *__restrict__ dqa,
                     const bf16 *__restrict__ dout, const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                     const bf16 *__restrict__ v, const float *__restrict__ lse, const float *__restrict__ Dvec, int T,
                     int H, int KV, float scale, float scale_log2) {
    using C = Bwd<D>;
    using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
    using FragAt = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major>;
    using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
    using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
    using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
    constexpr int NF = D / 32; // 16-column fragments in half of D
    LMFA_DYN_SMEM(smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(smem + C::offK);
    bf16 *Vs = reinterpret_cast<bf16 *>(smem + C::offV);
    bf16 *Qs = reinterpret_cast<bf16 *>(smem + C::offQ);
    bf16 *dOs = reinterpret_cast<bf16 *>(smem + C::offdO);
    bf16 *PT = reinterpret_cast<bf16 *>(smem + C::offPT);
    bf16 *dST = reinterpret_cast<bf16 *>(smem + C::offdST);
    float *lse2s = reinterpret_cast<float *>(smem + C::offLse);
    float *Ds = reinterpret_cast<float *>(smem + C::offDd);
    const int g = (int)blockIdx.x, b = (int)blockIdx.y, kt = (int)blockIdx.z; // kt = 0 has the most work
    const int k0 = kt * kBc;
    const int grp = H / KV, nqt = (T + kBr - 1) / kBr;
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int kr = warp & 3, half = warp >> 2; // key rows 16kr.., column half
    float *stage = reinterpret_cast<float *>(smem + C::offStage) + warp * C::kStageFloats;
    const size_t qstride = (size_t)H * D, kstride = (size_t)KV * D;

    load_tile<D, kBc, C::kThreads>(Ks, C::LDK, k + (size_t)b * T * kstride + (size_t)g * D, kstride, k0, T, tid);
    load_tile<D, kBc, C::kThreads>(Vs, C::LDK, v + (size_t)b * T * kstride + (size_t)g * D, kstride, k0, T, tid);
    cp_async_commit();

    FragC dKf[NF], dVf[NF];
#pragma unroll
    for (int n = 0; n < NF; n++) {
        wmma::fill_fragment(dKf[n], 0.0f);
        wmma::fill_fragment(dVf[n], 0.0f);
    }

    for (int h = g * grp; h < (g + 1) * grp; h++) {
        const bf16 *qh = q + (size_t)b * T * qstride + (size_t)h * D;
        const bf16 *doh = dout + (size_t)b * T * qstride + (size_t)h * D;
        const float *lseh = lse + ((size_t)b * H + h) * T;
        const float *Dh = Dvec + ((size_t)b * H + h) * T;
        for (int qt = kt; qt < nqt; qt++) {
            const int q0 = qt * kBr;
            __syncthreads(); // the previous step is done with Q, dO, P^T, dS^T, lse2, D
            load_tile<D, kBr, C::kThreads>(Qs, C::LDK, qh, qstride, q0, T, tid);
            cp_async_commit();
            load_tile<D, kBr, C::kThreads>(dOs, C::LDK, doh, qstride, q0, T, tid);
            cp_async_commit();
            if (tid < kBr) {
                const int t = q0 + tid;
                lse2s[tid] = t < T ? lseh[t] * kLog2e : 0.0f;
                Ds[tid] = t < T ? Dh[t] : 0.0f;
            }
            cp_async_wait<1>(); // K, V and Q landed (dO may be in flight)
            __syncthreads();

            // S^T = K Q^T: key rows 16kr.., query columns 32half + 0..31.
#pragma unroll
            for (int n = 0; n < 2; n++) {
                FragC sf;
                wmma::fill_fragment(sf, 0.0f);
#pragma unroll
                for (int ks = 0; ks < D / 16; ks++) {
                    FragA kf;
                    FragBt qf; // Q^T
                    wmma::load_matrix_sync(kf, Ks + kr * 16 * C::LDK + ks * 16, C::LDK);
                    wmma::load_matrix_sync(qf, Qs + (half * 32 + n * 16) * C::LDK + ks * 16, C::LDK);
                    wmma::mma_sync(sf, kf, qf, sf);
                }
                wmma::store_matrix_sync(stage + n * 16, sf, C::LDST, wmma::mem_row_major);
            }
            __syncwarp();
            const int ic = half * 32 + lane, i = q0 + ic; // this lane's query
            const float l2 = lse2s[ic], Di = Ds[ic];
            float p[16];
#pragma unroll
            for (int rr = 0; rr < 16; rr++) {
                const int j = k0 + kr * 16 + rr;
                const bool ok = i < T && j <= i;
                p[rr] = ok ? exp2f(stage[rr * C::LDST + lane] * scale_log2 - l2) : 0.0f;
                PT[(kr * 16 + rr) * C::LDP + ic] = __float2bfloat16_rn(p[rr]);
            }
            cp_async_wait<0>(); // dO landed
            __syncthreads();    // ... for every thread; stage reads above are done

            // dP^T = V dO^T, then dS^T = P^T (dP^T - D).
#pragma unroll
            for (int n = 0; n < 2; n++) {
                FragC sf;
                wmma::fill_fragment(sf, 0.0f);
#pragma unroll
                for (int ks = 0; ks < D / 16; ks++) {
                    FragA vf;
                    FragBt gf; // dO^T
                    wmma::load_matrix_sync(vf, Vs + kr * 16 * C::LDK + ks * 16, C::LDK);
                    wmma::load_matrix_sync(gf, dOs + (half * 32 + n * 16) * C::LDK + ks * 16, C::LDK);
                    wmma::mma_sync(sf, vf, gf, sf);
                }
                wmma::store_matrix_sync(stage + n * 16, sf, C::LDST, wmma::mem_row_major);
            }
            __syncwarp();
#pragma unroll
            for (int rr = 0; rr < 16; rr++) {
                const float ds = p[rr] * (stage[rr * C::LDST + lane] - Di);
                dST[(kr * 16 + rr) * C::LDP + ic] = __float2bfloat16_rn(ds);
            }
            __syncthreads(); // P^T and dS^T complete

            // dV += P^T dO, dK += dS^T Q: key rows 16kr.., head dims half*D/2 + 16n.
#pragma unroll
            for (int n = 0; n < NF; n++) {
                const int col = half * (D / 2) + n * 16;
#pragma unroll
                for (int ks = 0; ks < kBr / 16; ks++) {
                    FragA af;
                    FragB bf;
                    wmma::load_matrix_sync(af, PT + kr * 16 * C::LDP + ks * 16, C::LDP);
                    wmma::load_matrix_sync(bf, dOs + ks * 16 * C::LDK + col, C::LDK);
                    wmma::mma_sync(dVf[n], af, bf, dVf[n]);
                    wmma::load_matrix_sync(af, dST + kr * 16 * C::LDP + ks * 16, C::LDP);
                    wmma::load_matrix_sync(bf, Qs + ks * 16 * C::LDK + col, C::LDK);
                    wmma::mma_sync(dKf[n], af, bf, dKf[n]);
                }
            }

            // dQ += dS K: query rows 16kr.., head dims half*D/2 + 16n, one
            // 16x16 piece at a time through the stage, then atomics.
#pragma unroll
            for (int n = 0; n < NF; n++) {
                const int col = half * (D / 2) + n * 16;
                FragC qf;
                wmma::fill_fragment(qf, 0.0f);
#pragma unroll
                for (int ks = 0; ks < kBc / 16; ks++) {
                    FragAt af; // dS = (dS^T)^T
                    FragB bf;
                    wmma::load_matrix_sync(af, dST + ks * 16 * C::LDP + kr * 16, C::LDP);
                    wmma::load_matrix_sync(bf, Ks + ks * 16 * C::LDK + col, C::LDK);
                    wmma::mma_sync(qf, af, bf, qf);
                }
                wmma::store_matrix_sync(stage, qf, C::LDQ, wmma::mem_row_major);
                __syncwarp();
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    const int e = u * 32 + lane, rr = e >> 4, cc = e & 15;
                    const int iq = q0 + kr * 16 + rr;
                    if (iq < T) atomicAdd(dqa + ((size_t)b * T + iq) * qstride + (size_t)h * D + col + cc,
                                          stage[rr * C::LDQ + cc]);
                }
                __syncwarp();
            }
        }
    }

    // dv = dV, dk = scale dK: fragments -> float tile (over Q and dO) -> bf16.
    float *fst = reinterpret_cast<float *>(smem + C::offQ);
#pragma unroll
    for (int pass = 0; pass < 2; pass++) {
        __syncthreads(); // Q, dO (or the previous pass's tile) no longer read
#pragma unroll
        for (int n = 0; n < NF; n++)
            wmma::store_matrix_sync(fst + kr * 16 * C::LDF + half * (D / 2) + n * 16, pass ? dKf[n] : dVf[n], C::LDF,
                                    wmma::mem_row_major);
        __syncthreads();
        bf16 *dst = (pass ? dk : dv) + (size_t)b * T * kstride + (size_t)g * D;
        const float s = pass ? scale : 1.0f;
        constexpr int CH = D / 8;
#pragma unroll
        for (int step = 0; step < kBc * CH / C::kThreads; step++) {
            const int idx = step * C::kThreads + tid, rr = idx / CH, ch = idx % CH;
            if (k0 + rr < T) {
                float f[8];
#pragma unroll
                for (int e = 0; e < 8; e++) f[e] = fst[rr * C::LDF + ch * 8 + e] * s;
                st_bf16x8(dst + (size_t)(k0 + rr) * kstride + ch * 8, f);
            }
        }
    }
}

// dq = bf16(scale * dq_accum), four elements a thread per step (n % 4 == 0).
__global__ void __launch_bounds__(256) flash_bwd_dq_kernel(bf16 *__restrict__ dq, const float *__restrict__ dqa,
                                                            size_t n4, float scale) {
    for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < n4; x += (size_t)gridDim.x * blockDim.x) {
        const float4 a = reinterpret_cast<const float4 *>(dqa)[x];
        uint2 u;
        u.x = bf_pack2(a.x * scale, a.y * scale);
        u.y = bf_pack2(a.z * scale, a.w * scale);
        reinterpret_cast<uint2 *>(dq)[x] = u;
    }
}

size_t al256(size_t n) { return (n + 255) & ~(size_t)255; }

#ifndef LMFA_EMULATE
template <int D>
int launch_bwd(bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *o, const float *lse, const bf16 *q,
               const bf16 *k, const bf16 *v, int B, int T, int H, int KV, float *Dvec, float *dqa, cudaStream_t st) {
    using C = Bwd<D>;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t rows = (size_t)B * T * H;
    flash_bwd_pre_kernel<D><<<(unsigned)((rows + kPreWarps - 1) / kPreWarps), kPreWarps * 32, 0, st>>>(
        Dvec, dqa, dout, o, rows, T, H);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    e = cudaFuncSetAttribute(flash_bwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::kSmem);
    if (e != cudaSuccess) return (int)e;
    const dim3 grid((unsigned)KV, (unsigned)B, (unsigned)((T + kBc - 1) / kBc));
    flash_bwd_kernel<D><<<grid, C::kThreads, C::kSmem, st>>>(dk, dv, dqa, dout, q, k, v, lse, Dvec, T, H, KV, scale,
                                                             scale * kLog2e);
    e = cudaGetLastError();
    if (e != cudaSuccess) return (int)e;
    const size_t n4 = rows * D / 4;
    const size_t blocks = (n4 + 255) / 256;
    flash_bwd_dq_kernel<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, st>>>(dq, dqa, n4, scale);
    return (int)cudaGetLastError();
}

// A usable buffer: not NULL and 16-byte aligned (16-byte vector accesses).
bool al16(const void *p) { return p && ((uintptr_t)p & 15u) == 0; }
#endif
} // namespace

// D [B,H,T] float, then dq_accum [B*T, H*hd] float, each 256-byte aligned.
extern "C" size_t lmk_flash_bwd_ws(int B, int T, int H, int KV, int hd) {
    (void)KV;
    if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return 0;
    const size_t rows = (size_t)B * T * H;
    return al256(rows * sizeof(float)) + al256(rows * (size_t)hd * sizeof(float));
}

#ifndef LMFA_EMULATE
// Checks as lmk_flash_fwd (cudaErrorInvalidValue), ws included.
extern "C" int lmk_flash_bwd(void *dq, void *dk, void *dv, const void *dout, const void *o, const float *lse,
                             const void *q, const void *k, const void *v, int B, int T, int H, int KV, int hd,
                             void *ws, void *stream) {
    if ((hd != 64 && hd != 128) || B < 0 || T < 0 || H <= 0 || KV <= 0 || H % KV != 0)
        return (int)cudaErrorInvalidValue;
    if (B == 0 || T == 0) return 0;
    if (B > 65535 || (T + kBc - 1) / kBc > 65535 || !lse || !al16(dq) || !al16(dk) || !al16(dv) || !al16(dout) ||
        !al16(o) || !al16(q) || !al16(k) || !al16(v) || !al16(ws))
        return (int)cudaErrorInvalidValue;
    float *Dvec = (float *)ws;
    float *dqa = (float *)((char *)ws + al256((size_t)B * T * H * sizeof(float)));
    cudaStream_t st = (cudaStream_t)stream;
    bf16 *dq_ = (bf16 *)dq, *dk_ = (bf16 *)dk, *dv_ = (bf16 *)dv;
    const bf16 *do_ = (const bf16 *)dout, *o_ = (const bf16 *)o, *q_ = (const bf16 *)q, *k_ = (const bf16 *)k,
               *v_ = (const bf16 *)v;
    return hd == 64 ? launch_bwd<64>(dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, T, H, KV, Dvec, dqa, st)
                    : launch_bwd<128>(dq_, dk_, dv_, do_, o_, lse, q_, k_, v_, B, T, H, KV, Dvec, dqa, st);
}
#endif
