// k_common.cuh — device helpers shared by lamina's own CUDA kernels: bf16 <->
// float32 loads and stores (one element, or eight through one 16-byte
// vector), warp and block reductions with a fixed order (deterministic), the
// launch geometry of grid-stride loops and the launchers' error return.
#ifndef LAMINA_K_COMMON_CUH
#define LAMINA_K_COMMON_CUH
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

// Largest grid dimension used anywhere (the y/z limit); grid-stride loops
// with size_t indices cover any element count beyond it.
#define LMK_GRID_CAP 65535u

// Blocks for `work` items at `per_block` items a block, 1 .. LMK_GRID_CAP.
static inline unsigned lmk_blocks(size_t work, size_t per_block) {
    size_t b = (work + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return b > LMK_GRID_CAP ? LMK_GRID_CAP : (unsigned)b;
}

// Threads for a block that spreads `units` over its threads: a multiple of
// 32 in [32, cap] (cap a multiple of 32).
static inline unsigned lmk_threads(size_t units, unsigned cap) {
    size_t t = (units + 31) / 32 * 32;
    if (t < 32) t = 32;
    return t > cap ? cap : (unsigned)t;
}

static inline bool lmk_al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// What every launcher returns: 0, or the error of the launch (or an earlier
// asynchronous one).
static inline int lmk_status(void) { return (int)cudaGetLastError(); }

// ------------------------------------------------------- loads and stores

static __device__ __forceinline__ float ld1(const float *p) { return *p; }
static __device__ __forceinline__ float ld1(const bf16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void st1(float *p, float v) { *p = v; }
static __device__ __forceinline__ void st1(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

// A bf16 is the high half of a float32: widening is a 16-bit shift (exact).
// Word w holds element 0 in its low half (little endian).
static __device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
static __device__ __forceinline__ uint32_t bf_pack2(float a, float b) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}

// Eight consecutive elements; p must be 16-byte aligned (one 16-byte access
// for bf16, two for float32).
static __device__ __forceinline__ void ld8(const bf16 *p, float f[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    f[0] = bf_lo(u.x);
    f[1] = bf_hi(u.x);
    f[2] = bf_lo(u.y);
    f[3] = bf_hi(u.y);
    f[4] = bf_lo(u.z);
    f[5] = bf_hi(u.z);
    f[6] = bf_lo(u.w);
    f[7] = bf_hi(u.w);
}
static __device__ __forceinline__ void ld8(const float *p, float f[8]) {
    const float4 a = reinterpret_cast<const float4 *>(p)[0];
    const float4 b = reinterpret_cast<const float4 *>(p)[1];
    f[0] = a.x;
    f[1] = a.y;
    f[2] = a.z;
    f[3] = a.w;
    f[4] = b.x;
    f[5] = b.y;
    f[6] = b.z;
    f[7] = b.w;
}
static __device__ __forceinline__ void st8(bf16 *p, const float f[8]) {
    uint4 u;
    u.x = bf_pack2(f[0], f[1]);
    u.y = bf_pack2(f[2], f[3]);
    u.z = bf_pack2(f[4], f[5]);
    u.w = bf_pack2(f[6], f[7]);
    *reinterpret_cast<uint4 *>(p) = u;
}
static __device__ __forceinline__ void st8(float *p, const float f[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

// N = 8: the vector forms above; N = 1: one element. For kernels templated
// on their vector width.
template <int N, typename T> static __device__ __forceinline__ void ldn(const T *p, float *f) {
    if constexpr (N == 8) ld8(p, f);
    else {
#pragma unroll
        for (int i = 0; i < N; i++) f[i] = ld1(p + i);
    }
}
template <int N, typename T> static __device__ __forceinline__ void stn(T *p, const float *f) {
    if constexpr (N == 8) st8(p, f);
    else {
#pragma unroll
        for (int i = 0; i < N; i++) st1(p + i, f[i]);
    }
}

// ------------------------------------------------------------- reductions

// Butterfly (xor) sums: lanes i and i^o add the same two values, and x + y ==
// y + x exactly, so every lane ends with the bitwise same total.
template <typename T> static __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum of v over the block, returned to every thread, in a fixed order.
// blockDim.x must be a multiple of 32; every thread of the block must call
// it (it holds barriers); sh is 32 shared slots, reusable right after.
template <typename T> static __device__ __forceinline__ T block_sum(T v, T *sh) {
    v = warp_sum(v);
    const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // a previous call may still be reading sh
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : T(0);
    return warp_sum(v);
}

// Grid-stride index helpers (size_t: counts beyond 2^32 elements).
static __device__ __forceinline__ size_t gtid() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }
static __device__ __forceinline__ size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

#endif
