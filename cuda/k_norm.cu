// k_norm.cu — RMSNorm on bf16 rows [R, D] with a bf16 weight w [D]: the
// forward (saving rstd in float32) and the backward, whose dx and dw both
// accumulate. dw is reduced deterministically: partial column sums of row
// groups into a float32 workspace, then summed in group order (no atomics).
//
// Rows go 8 columns at a time through 16-byte accesses when D % 8 == 0 and
// every row buffer is 16-byte aligned (N = 8), else one column at a time.
#include "k_common.cuh"
#include "kernels.h"

#define RMS_T 256 // most threads of the row kernels
#define DW_T 128  // threads of the dw kernels
#define DW_G 256  // most row groups of the dw partial sums
#define DW_ROWS 32 // rows a group holds at least (when R allows more than one group)

// ------------------------------------------------------------- forward

// One block per row r (blocks stride over rows), threads over its columns:
//   ss = sum_c x[r,c]^2 (float32);  rstd[r] = 1/sqrt(ss/D + eps) (in double,
//   rounded to float32 as the CPU backend does);  y[r,c] = x[r,c] * rstd * w[c]
template <int N>
__global__ void __launch_bounds__(RMS_T) rms_fwd_k(bf16 *__restrict__ y, float *__restrict__ rstd,
                                                   const bf16 *__restrict__ x, const bf16 *__restrict__ w, int R,
                                                   int D, float eps) {
    __shared__ float sh[32];
    const size_t ng = (size_t)D / N;
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        const bf16 *xr = x + r * (size_t)D;
        bf16 *yr = y + r * (size_t)D;
        float ss = 0.0f;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N];
            ldn<N>(xr + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) ss += f[i] * f[i];
        }
        ss = block_sum(ss, sh);
        const float rs = (float)(1.0 / sqrt((double)ss / (double)D + (double)eps));
        if (threadIdx.x == 0) rstd[r] = rs;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float f[N], g[N];
            ldn<N>(xr + c * N, f);
            ldn<N>(w + c * N, g);
#pragma unroll
            for (int i = 0; i < N; i++) f[i] = f[i] * rs * g[i];
            stn<N>(yr + c * N, f);
        }
    }
}

extern "C" int lmk_rmsnorm_fwd(void *y, float *rstd, const void *x, const void *w, int R, int D, float eps,
                               void *stream) {
    if (R <= 0 || D <= 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    const bool vec = D % 8 == 0 && lmk_al16(y) && lmk_al16(x) && lmk_al16(w);
    const unsigned nt = lmk_threads(vec ? (size_t)D / 8 : (size_t)D, RMS_T);
    const unsigned nb = lmk_blocks((size_t)R, 1);
    if (vec) rms_fwd_k<8><<<nb, nt, 0, s>>>((bf16 *)y, rstd, (const bf16 *)x, (const bf16 *)w, R, D, eps);
    else rms_fwd_k<1><<<nb, nt, 0, s>>>((bf16 *)y, rstd, (const bf16 *)x, (const bf16 *)w, R, D, eps);
    return lmk_status();
}

// ------------------------------------------------------------ backward

// Row groups of the dw partial sums: about one per DW_ROWS rows, 1..DW_G.
// Group g holds rows [g*R/G, (g+1)*R/G).
static unsigned dw_groups(int R) {
    size_t g = ((size_t)(R > 0 ? R : 0) + DW_ROWS - 1) / DW_ROWS;
    if (g < 1) g = 1;
    return g > DW_G ? DW_G : (unsigned)g;
}

extern "C" size_t lmk_rmsnorm_bwd_ws(int R, int D) {
    return (size_t)dw_groups(R) * (size_t)(D > 0 ? D : 0) * sizeof(float);
}

// dx, one block per row r (blocks stride over rows). With g = dy*w and
// rs = rstd[r]:
//   k = (sum_c g[c]*x[c] / D) * rs^3   (the sum in float32)
//   dx[r,c] = bf16(float(dx[r,c]) + (rs*g[c] - x[c]*k))
template <int N>
__global__ void __launch_bounds__(RMS_T) rms_bwd_dx_k(bf16 *__restrict__ dx, const bf16 *__restrict__ dy,
                                                      const bf16 *__restrict__ x, const bf16 *__restrict__ w,
                                                      const float *__restrict__ rstd, int R, int D) {
    __shared__ float sh[32];
    const size_t ng = (size_t)D / N;
    for (size_t r = blockIdx.x; r < (size_t)R; r += gridDim.x) {
        const size_t off = r * (size_t)D;
        float gx = 0.0f;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float a[N], b[N], f[N];
            ldn<N>(dy + off + c * N, a);
            ldn<N>(w + c * N, b);
            ldn<N>(x + off + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) gx += a[i] * b[i] * f[i];
        }
        gx = block_sum(gx, sh);
        const float rs = rstd[r];
        const float k = gx / (float)D * rs * rs * rs;
        for (size_t c = threadIdx.x; c < ng; c += blockDim.x) {
            float a[N], b[N], f[N], d[N];
            ldn<N>(dy + off + c * N, a);
            ldn<N>(w + c * N, b);
            ldn<N>(x + off + c * N, f);
            ldn<N>(dx + off + c * N, d);
#pragma unroll
            for (int i = 0; i < N; i++) d[i] += rs * (a[i] * b[i]) - f[i] * k;
            stn<N>(dx + off + c * N, d);
        }
    }
}

// dw pass 1: ws[g, c] = sum over the rows r of group g (ascending) of
// dy[r,c] * x[r,c] * rstd[r], in float32. Grid (column groups of N columns
// striding in x, one row group per blockIdx.y).
template <int N>
__global__ void __launch_bounds__(DW_T) rms_bwd_dw_part_k(float *__restrict__ ws, const bf16 *__restrict__ dy,
                                                          const bf16 *__restrict__ x, const float *__restrict__ rstd,
                                                          int R, int D) {
    const size_t ng = (size_t)D / N, G = gridDim.y, g = blockIdx.y;
    const size_t r0 = g * (size_t)R / G, r1 = (g + 1) * (size_t)R / G;
    for (size_t c = gtid(); c < ng; c += gstride()) {
        float acc[N];
#pragma unroll
        for (int i = 0; i < N; i++) acc[i] = 0.0f;
        for (size_t r = r0; r < r1; r++) {
            float a[N], f[N];
            const float rs = rstd[r];
            ldn<N>(dy + r * (size_t)D + c * N, a);
            ldn<N>(x + r * (size_t)D + c * N, f);
#pragma unroll
            for (int i = 0; i < N; i++) acc[i] += a[i] * f[i] * rs;
        }
        stn<N>(ws + g * (size_t)D + c * N, acc);
    }
}

// dw pass 2: dw[c] = bf16(float(dw[c]) + sum_{g < G} ws[g, c]), the groups in
// order. Threads stride over columns (coalesced along each ws row).
__global__ void __launch_bounds__(DW_T) rms_bwd_dw_sum_k(bf16 *__restrict__ dw, const float *__restrict__ ws,
                                                         unsigned G, int D) {
    for (size_t c = gtid(); c < (size_t)D; c += gstride()) {
        float acc = 0.0f;
        for (size_t g = 0; g < G; g++) acc += ws[g * (size_t)D + c];
        st1(dw + c, ld1(dw + c) + acc);
    }
}

extern "C" int lmk_rmsnorm_bwd(void *dx, void *dw, const void *dy, const void *x, const void *w, const float *rstd,
                               int R, int D, void *ws, void *stream) {
    if (R <= 0 || D <= 0) return 0;
    cudaStream_t s = (cudaStream_t)stream;
    bf16 *dxp = (bf16 *)dx, *dwp = (bf16 *)dw;
    const bf16 *dyp = (const bf16 *)dy, *xp = (const bf16 *)x, *wp = (const bf16 *)w;
    float *part = (float *)ws;
    const bool vec = D % 8 == 0 && lmk_al16(dx) && lmk_al16(dy) && lmk_al16(x) && lmk_al16(w) && lmk_al16(ws);
    const size_t ng = vec ? (size_t)D / 8 : (size_t)D;
    const unsigned nt = lmk_threads(ng, RMS_T), G = dw_groups(R);
    const dim3 pgrid(lmk_blocks(ng, DW_T), G);
    if (vec) {
        rms_bwd_dx_k<8><<<lmk_blocks((size_t)R, 1), nt, 0, s>>>(dxp, dyp, xp, wp, rstd, R, D);
        rms_bwd_dw_part_k<8><<<pgrid, DW_T, 0, s>>>(part, dyp, xp, rstd, R, D);
    } else {
        rms_bwd_dx_k<1><<<lmk_blocks((size_t)R, 1), nt, 0, s>>>(dxp, dyp, xp, wp, rstd, R, D);
        rms_bwd_dw_part_k<1><<<pgrid, DW_T, 0, s>>>(part, dyp, xp, rstd, R, D);
    }
    rms_bwd_dw_sum_k<<<lmk_blocks((size_t)D, DW_T), DW_T, 0, s>>>(dwp, part, G, D);
    return lmk_status();
}
