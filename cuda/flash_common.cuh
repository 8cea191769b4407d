// flash_common.cuh — pieces shared by lamina's flash attention kernels
// (flash_fwd.cu, flash_bwd.cu): tile sizes, shared-memory layouts, bf16
// packing and the cp.async (global -> shared, zero-filling) wrappers.
//
// Tensor cores are used through the WMMA API (nvcuda::wmma, 16x16x16 bf16
// fragments, float32 accumulators; sm_80 and sm_90). WMMA fragments have no
// documented element layout, so every elementwise step (mask, softmax,
// rescaling, dS) goes through a float32 tile in shared memory whose indices
// are known: "stage" below.
//
// Layout rules WMMA imposes and every layout here keeps: each fragment
// pointer 32-byte aligned, ldm a multiple of 16 bytes. bf16 tiles use a row
// stride of (columns + 8) elements and float32 tiles (columns + 4): 16 bytes
// of padding, which shifts consecutive rows by 4 banks (fewer bank conflicts
// for the 16-row fragment loads) and keeps 16 rows a multiple of 32 bytes.
//
// LMFA_EMULATE (defined by a CPU test harness that is not part of the build)
// compiles the kernels as host C++ against an emulation of the CUDA
// primitives; the harness then provides the cp.async functions and the
// dynamic shared memory.
#ifndef LAMINA_FLASH_COMMON_CUH
#define LAMINA_FLASH_COMMON_CUH

#ifndef LMFA_EMULATE
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define LMFA_DYN_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif
#include <math.h>
#include <stddef.h>
#include <stdint.h>

namespace lmfa {

typedef __nv_bfloat16 bf16;

constexpr int kBr = 64; // query rows of a tile
constexpr int kBc = 64; // key rows of a tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

constexpr size_t cmax(size_t a, size_t b) { return a > b ? a : b; }

// Forward, per block: 4 warps, each owning 16 of the kBr query rows.
//   K, V      [kBc][LDK] bf16, the current key/value tile
//   stage     per warp [16][max(LDS, LDO)] float: S (ldm LDS), then P V (ldm
//             LDO); before the loop the whole region holds the Q tile
//             [kBr][LDK] bf16, read once into fragments
//   P         per warp [16][LDP] bf16, the probabilities fed to P V
template <int D> struct Fwd {
    static constexpr int kWarps = kBr / 16, kThreads = kWarps * 32;
    static constexpr int LDK = D + 8, LDS = kBc + 4, LDO = D + 4, LDP = kBc + 8;
    static constexpr size_t kStageFloats = 16 * cmax(LDS, LDO);
    static constexpr size_t offK = 0;
    static constexpr size_t offV = offK + (size_t)kBc * LDK * 2;
    static constexpr size_t offStage = offV + (size_t)kBc * LDK * 2;
    static constexpr size_t offP = offStage + kWarps * kStageFloats * 4;
    static constexpr size_t kSmem = offP + (size_t)kWarps * 16 * LDP * 2;
    static_assert((size_t)kBr * LDK * 2 <= kWarps * kStageFloats * 4, "Q tile must fit the stage region");
    static_assert(offV % 128 == 0 && offStage % 128 == 0 && offP % 128 == 0, "aligned regions");
    static_assert((kStageFloats * 4) % 32 == 0 && (16 * LDP * 2) % 32 == 0, "aligned per-warp pieces");
};

// Backward, per block: 8 warps; warp w owns key rows 16*(w%4).. and half
// w/4 of the columns (queries for S^T, dP^T; head dims for dK, dV, dQ).
//   K, V      [kBc][LDK] bf16, this block's key/value tile (loaded once)
//   Q, dO     [kBr][LDK] bf16, the current query tile; Q and dO are adjacent
//             and at the end hold the float dK/dV tile [kBc][LDF]
//   PT, dST   [kBc][LDP] bf16: P^T and dS^T (rows keys, columns queries)
//   stage     per warp [16][LDST] float: S^T, then dP^T (ldm LDST), then
//             one 16x16 piece of dQ at a time (ldm LDQ)
//   lse2, Dd  [kBr] float: lse*log2(e) and D of the query tile's rows
template <int D> struct Bwd {
    static constexpr int kWarps = 8, kThreads = kWarps * 32;
    static constexpr int LDK = D + 8, LDP = kBr + 8, LDST = 32 + 4, LDQ = 16 + 4, LDF = D + 4;
    static constexpr size_t kStageFloats = 16 * LDST;
    static constexpr size_t offK = 0;
    static constexpr size_t offV = offK + (size_t)kBc * LDK * 2;
    static constexpr size_t offQ = offV + (size_t)kBc * LDK * 2;
    static constexpr size_t offdO = offQ + (size_t)kBr * LDK * 2;
    static constexpr size_t offPT = offdO + (size_t)kBr * LDK * 2;
    static constexpr size_t offdST = offPT + (size_t)kBc * LDP * 2;
    static constexpr size_t offStage = offdST + (size_t)kBc * LDP * 2;
    static constexpr size_t offLse = offStage + kWarps * kStageFloats * 4;
    static constexpr size_t offDd = offLse + kBr * 4;
    static constexpr size_t kSmem = offDd + kBr * 4;
    static_assert(kBc == 64 && kBr == 64, "warp roles assume 4 key blocks x 2 halves of 32 query columns");
    static_assert((size_t)kBc * LDF * 4 <= 2 * (size_t)kBr * LDK * 2, "dK/dV tile must fit the Q+dO region");
    static_assert(16 * LDQ <= 16 * LDST, "dQ piece must fit the stage");
    static_assert(offV % 128 == 0 && offQ % 128 == 0 && offdO % 128 == 0 && offPT % 128 == 0 &&
                      offdST % 128 == 0 && offStage % 128 == 0 && offLse % 128 == 0,
                  "aligned regions");
    static_assert((kStageFloats * 4) % 32 == 0, "aligned per-warp stage");
};

// bf16 <-> float32 on 32-bit words holding two bf16 (element 0 in the low
// half). Widening is exact; narrowing rounds to nearest even.
__device__ __forceinline__ float bf_lo(uint32_t w) {
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)(w & 0xffffu)));
}
__device__ __forceinline__ float bf_hi(uint32_t w) { return __bfloat162float(__ushort_as_bfloat16((unsigned short)(w >> 16))); }
__device__ __forceinline__ uint32_t bf_pack2(float a, float b) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}
// Eight floats -> eight bf16 at p (16-byte aligned), one 16-byte store.
__device__ __forceinline__ void st_bf16x8(bf16 *p, const float f[8]) {
    uint4 u;
    u.x = bf_pack2(f[0], f[1]);
    u.y = bf_pack2(f[2], f[3]);
    u.z = bf_pack2(f[4], f[5]);
    u.w = bf_pack2(f[6], f[7]);
    *reinterpret_cast<uint4 *>(p) = u;
}

#ifndef LMFA_EMULATE
// cp.async: 16 bytes global -> shared without a register round trip; with
// full == false nothing is read and the 16 bytes are zero-filled (src-size 0).
// Copies are grouped by commit; wait<N> returns once at most N of this
// thread's groups are pending. Other threads' copies are visible only after a
// barrier that follows their wait.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool full) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    const int n = full ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

// Copy rows row0 .. row0+ROWS-1 of a [T][.] bf16 matrix (row t at
// g + t*gstride, D contiguous elements) into s [ROWS][lds]; rows at or past T
// become zeros. All NT threads of the block take part, 16 bytes each per step
// (consecutive threads read consecutive 16 bytes of a row: coalesced).
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_tile(bf16 *s, int lds, const bf16 *g, size_t gstride, int row0, int T, int tid) {
    constexpr int CH = D / 8; // 16-byte chunks per row
    static_assert((ROWS * CH) % NT == 0, "whole steps");
#pragma unroll
    for (int step = 0; step < ROWS * CH / NT; step++) {
        const int idx = step * NT + tid;
        const int r = idx / CH, ch = idx % CH;
        const int t = row0 + r;
        const bool in = t < T;
        cp_async16(s + r * lds + ch * 8, in ? g + (size_t)t * gstride + ch * 8 : g, in);
    }
}

} // namespace lmfa
#endif
