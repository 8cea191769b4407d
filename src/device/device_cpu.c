/* device_cpu.c — the CPU reference backend of the device interface.
 *
 * float32 throughout; the three GEMMs go to OpenBLAS (cblas_sgemm, row-major),
 * everything else is plain C loops parallelised with OpenMP over rows, heads
 * or columns. Every loop that matters keeps its innermost loop contiguous so
 * that the compiler vectorises it; reductions use `omp simd reduction` (lets
 * the compiler reorder the sum into vector lanes without -ffast-math).
 *
 * -std=c11 turns floating-point contraction off, so loops call FMA()
 * explicitly (one vfmadd where the target has FMA), and the attention tile
 * kernels (GCC vector types) turn contraction back on for themselves (HOT).
 *
 * Scratch (attention, rmsnorm's partial dw rows) is lm_alloc'ed per call.
 *
 * OpenBLAS here is the pthread build: device_cpu_create sets it to one
 * thread, and the GEMMs are cut into per-thread slices by OpenMP (see
 * sgemm_par), so OMP_NUM_THREADS alone sets the parallelism. */
#include "device.h"
#include "common.h"
#include "copy_engine.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef __FMA__
#define FMA(a, b, c) fmaf((a), (b), (c))
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Elementwise loops shorter than this run on one thread (fork cost ~µs). */
#define PAR_MIN 32768

typedef struct {
    size_t used; /* bytes currently allocated through this device */
    size_t peak; /* the most used has been (mem_info) */
    lm_copy_engine *copies; /* copy_async's background thread (started on the first copy) */
} cpu_state;

/* ------------------------------------------------------------------ memory */

/* Each block carries a 64-byte header with its size, so free can give the
 * bytes back to the capacity count; the 64 keeps the payload 64-aligned. */
static void *cpu_alloc(lm_device *d, size_t bytes) {
    cpu_state *st = d->impl;
    if (d->capacity > 0 && st->used + bytes > d->capacity)
        lm_abort(LM_ERR_RUNTIME, "device cpu: out of memory (%zu bytes requested, %zu of %zu in use)", bytes,
                 st->used, d->capacity);
    char *raw = lm_alloc(bytes + 64);
    *(size_t *)raw = bytes;
    st->used += bytes;
    if (st->used > st->peak) st->peak = st->used;
    return raw + 64;
}

static void cpu_free(lm_device *d, void *p) {
    if (!p) return;
    cpu_state *st = d->impl;
    char *raw = (char *)p - 64;
    st->used -= *(size_t *)raw;
    lm_free(raw);
}

static void cpu_copy(lm_device *d, void *dst, const void *src, size_t bytes) {
    (void)d;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_zero(lm_device *d, void *p, size_t bytes) {
    (void)d;
    memset(p, 0, bytes);
}

static void cpu_sync(lm_device *d) { (void)d; }

static size_t cpu_mem_info(lm_device *d, size_t *peak, int reset) {
    cpu_state *st = d->impl;
    if (peak) *peak = st->peak;
    if (reset) st->peak = st->used;
    return st->used;
}

/* Host memory for transfers: plain memory here (nothing to pin). */
static void *cpu_host_alloc(lm_device *d, size_t bytes) {
    (void)d;
    return lm_calloc(bytes ? bytes : 1, 1);
}
static void cpu_host_free(lm_device *d, void *p) {
    (void)d;
    lm_free(p);
}

/* Asynchronous copies: a background thread runs them in issue order
 * (copy_engine.c) while compute goes on on the calling thread. Compute is
 * synchronous here, so a download's source is ready when it is issued, and
 * "compute waits for a copy" is the host waiting for it. */
static uint64_t cpu_copy_async(lm_device *d, void *dst, const void *src, size_t bytes, int to_host) {
    (void)to_host;
    return copy_engine_issue(((cpu_state *)d->impl)->copies, dst, src, bytes);
}
static double cpu_copy_busy(lm_device *d) { return copy_engine_busy(((cpu_state *)d->impl)->copies); }
static int cpu_copy_done(lm_device *d, uint64_t t) { return copy_engine_done(((cpu_state *)d->impl)->copies, t); }
static void cpu_copy_wait(lm_device *d, uint64_t t) { copy_engine_wait(((cpu_state *)d->impl)->copies, t); }

/* ------------------------------------------------------------------- GEMMs */

/* One pool of threads: OpenBLAS is pinned to one thread (device_cpu_create)
 * and each OpenMP thread runs cblas_sgemm on its own slice of C. Letting
 * OpenBLAS's pthreads and OpenMP's threads take turns cost 20-40%: each pool
 * busy-waits after its work and steals the 2 cores from the other.
 * C[m,n] = op(A)[m,k] . op(B)[k,n] + beta*C (row-major); the larger of m, n
 * is cut into per-thread blocks (multiples of 16). */
static void sgemm_par(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    double flops = 2.0 * m * n * (k > 0 ? k : 1);
    int nth = flops < 4e6 ? 1 : omp_get_max_threads();
    int split_m = m >= n;
    int len = split_m ? m : n;
    int blk = (len + nth - 1) / nth;
    blk = (blk + 15) / 16 * 16;
    int nblk = (len + blk - 1) / blk;
    if (k <= 0) {
        /* C = beta*C, with beta = 0 meaning overwrite (no 0*NaN) */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    if (m == 1 && !ta && tb) {
        /* one row times B^T (a decode step): matrix-vector products on
         * slices of B's rows; GEMM would pack all of B for one row. C is
         * zeroed first for beta = 0 (no 0*NaN from the old contents). */
        nblk = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static, 1) num_threads(nblk < nth ? nblk : nth) if (nblk > 1)
        for (int bi = 0; bi < nblk; bi++) {
            int o = bi * blk, l = n - o < blk ? n - o : blk;
            if (beta == 0.0f) memset(C + o, 0, sizeof(float) * (size_t)l);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, l, k, 1.0f, B + (size_t)o * ldb, ldb, A, 1, beta, C + o, 1);
        }
        return;
    }
    const enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
#pragma omp parallel for schedule(static, 1) num_threads(nblk < nth ? nblk : nth) if (nblk > 1)
    for (int bi = 0; bi < nblk; bi++) {
        int o = bi * blk, l = len - o < blk ? len - o : blk;
        if (split_m) /* rows o..o+l of op(A) and of C */
            cblas_sgemm(CblasRowMajor, TA, TB, l, n, k, 1.0f, A + (ta ? (size_t)o : (size_t)o * lda), lda, B, ldb,
                        beta, C + (size_t)o * ldc, ldc);
        else /* columns o..o+l of op(B) and of C */
            cblas_sgemm(CblasRowMajor, TA, TB, m, l, k, 1.0f, A, lda, B + (tb ? (size_t)o * ldb : (size_t)o), ldb,
                        beta, C + o, ldc);
    }
}

/* y[M,N] = x[M,K] . w[N,K]^T + beta*y */
static void cpu_gemm_nt(lm_device *d, void *y_, const void *x_, const void *w_, int M, int N, int K, float beta) {
    float *y = y_;
    const float *x = x_;
    const float *w = w_;
    (void)d;
    sgemm_par(0, 1, M, N, K, x, K, w, K, beta, y, N);
}

/* dx[M,K] = dy[M,N] . w[N,K] + beta*dx */
static void cpu_gemm_nn(lm_device *d, void *dx_, const void *dy_, const void *w_, int M, int N, int K, float beta) {
    float *dx = dx_;
    const float *dy = dy_;
    const float *w = w_;
    (void)d;
    sgemm_par(0, 0, M, K, N, dy, N, w, K, beta, dx, K);
}

/* dw[N,K] = dy[M,N]^T . x[M,K] + beta*dw */
static void cpu_gemm_tn(lm_device *d, void *dw_, const void *dy_, const void *x_, int M, int N, int K, float beta) {
    float *dw = dw_;
    const float *dy = dy_;
    const float *x = x_;
    (void)d;
    sgemm_par(1, 0, N, K, M, dy, N, x, K, beta, dw, K);
}

/* y[M,N] = res + x[M,K] . w[N,K]^T */
static void cpu_gemm_nt_add(lm_device *d, void *y, const void *res, const void *x, const void *w, int M, int N,
                            int K) {
    if (y != res) cpu_copy(d, y, res, sizeof(float) * (size_t)M * (size_t)N);
    cpu_gemm_nt(d, y, x, w, M, N, K, 1.0f);
}

/* --------------------------------------------------------------- embedding */

/* out[r,:] = table[ids[r],:]; a negative id (a row of another rank's vocab
 * slice, under vocab parallelism) gives zeros. */
static void cpu_embedding_fwd(lm_device *d, void *out_, const void *table_, const int32_t *ids, int R, int D) {
    float *out = out_;
    const float *table = table_;
    (void)d;
#pragma omp parallel for schedule(static) if ((size_t)R * D > PAR_MIN)
    for (int r = 0; r < R; r++) {
        if (ids[r] < 0) memset(out + (size_t)r * D, 0, (size_t)D * sizeof(float));
        else memcpy(out + (size_t)r * D, table + (size_t)ids[r] * D, (size_t)D * sizeof(float));
    }
}

/* dtable[ids[r],:] += dout[r,:], rows with a negative id skipped. Repeated
 * ids would race if rows were split across threads, so each thread owns a
 * range of columns instead and walks all rows in order (deterministic, no
 * atomics). */
static void cpu_embedding_bwd(lm_device *d, void *dtable_, const void *dout_, const int32_t *ids, int R, int D) {
    float *dtable = dtable_;
    const float *dout = dout_;
    (void)d;
#pragma omp parallel if ((size_t)R * D > PAR_MIN)
    {
        int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        int c0 = (int)((long)D * tid / nth), c1 = (int)((long)D * (tid + 1) / nth);
        for (int r = 0; r < R; r++) {
            if (ids[r] < 0) continue;
            float *restrict dst = dtable + (size_t)ids[r] * D;
            const float *restrict src = dout + (size_t)r * D;
#pragma omp simd
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

/* ----------------------------------------------------------------- RMSNorm */

/* y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps); sum of squares in double. */
static void cpu_rmsnorm_fwd(lm_device *d, void *y_, float *rstd, const void *x_, const void *w_, int R, int D,
                            float eps) {
    float *y = y_;
    const float *x = x_;
    const float *w = w_;
    (void)d;
#pragma omp parallel for schedule(static) if ((size_t)R * D > PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *restrict xr = x + (size_t)r * D;
        float *restrict yr = y + (size_t)r * D;
        double ss = 0.0;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < D; c++) ss += (double)xr[c] * xr[c];
        float rs = (float)(1.0 / sqrt(ss / D + (double)eps));
        rstd[r] = rs;
        for (int c = 0; c < D; c++) yr[c] = xr[c] * rs * w[c];
    }
}

/* With g = dy*w (per element) and r = rstd:
 *   dx = r*g - x * r^3 * mean(g*x)      (d rstd/dx = -r^3 x / D)
 *   dw = sum over rows of dy * x * r
 * dw is reduced through one partial row per thread, summed in thread order. */
static void cpu_rmsnorm_bwd(lm_device *d, void *dx_, void *dw_, const void *dy_, const void *x_, const void *w_,
                            const float *rstd, int R, int D) {
    float *dx = dx_;
    float *dw = dw_;
    const float *dy = dy_;
    const float *x = x_;
    const float *w = w_;
    (void)d;
    int nmax = omp_get_max_threads();
    float *part = lm_alloc((size_t)nmax * D * sizeof(float));
    int nused = 1;
#pragma omp parallel if ((size_t)R * D > PAR_MIN)
    {
        int tid = omp_get_thread_num();
#pragma omp single
        nused = omp_get_num_threads();
        float *restrict pw = part + (size_t)tid * D;
#pragma omp for schedule(static)
        for (int r = 0; r < R; r++) {
            const float *restrict xr = x + (size_t)r * D;
            const float *restrict gr = dy + (size_t)r * D;
            float *restrict dxr = dx + (size_t)r * D;
            float rs = rstd[r];
            double gx = 0.0;
#pragma omp simd reduction(+ : gx)
            for (int c = 0; c < D; c++) gx += (double)(gr[c] * w[c]) * xr[c];
            float k = (float)(gx / D) * rs * rs * rs;
#pragma omp simd
            for (int c = 0; c < D; c++) {
                dxr[c] += rs * (gr[c] * w[c]) - xr[c] * k;
                pw[c] += gr[c] * xr[c] * rs;
            }
        }
    }
    for (int t = 0; t < nused; t++) {
        const float *restrict pw = part + (size_t)t * D;
        for (int c = 0; c < D; c++) dw[c] += pw[c];
    }
    lm_free(part);
}

/* -------------------------------------------------------------------- RoPE */

/* Rotate-half: for i < hd/2 the pair (x[i], x[i+hd/2]) turns by the angle of
 * (position, i): fwd by +angle, bwd by -angle (the transpose of a rotation). */
static void rope_apply(float *x, const float *cs, const float *sn, int R, int T, int nh, int hd, float sign) {
    int half = hd / 2;
#pragma omp parallel for schedule(static) if ((size_t)R * nh * hd > PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *restrict c = cs + (size_t)(r % T) * half;
        const float *restrict s = sn + (size_t)(r % T) * half;
        for (int h = 0; h < nh; h++) {
            float *restrict a = x + ((size_t)r * nh + h) * hd;
            float *restrict b = a + half;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float ai = a[i], bi = b[i], si = sign * s[i];
                a[i] = ai * c[i] - bi * si;
                b[i] = bi * c[i] + ai * si;
            }
        }
    }
}

static void cpu_rope_fwd(lm_device *d, void *x_, const float *cs, const float *sn, int R, int T, int nh, int hd) {
    float *x = x_;
    (void)d;
    rope_apply(x, cs, sn, R, T, nh, hd, 1.0f);
}

static void cpu_rope_bwd(lm_device *d, void *dx_, const float *cs, const float *sn, int R, int T, int nh, int hd) {
    float *dx = dx_;
    (void)d;
    rope_apply(dx, cs, sn, R, T, nh, hd, -1.0f);
}

/* --------------------------------------------------------------------- exp */

/* Vectorisable exp: e^x = 2^n e^r with n = round(x/ln2) and
 * r = x - n*ln2 in [-ln2/2, ln2/2] (ln2 split hi+lo so n*hi is exact);
 * e^r by its Taylor series to degree 7 (truncation < 2e-9 relative), 2^n
 * written into the exponent bits. Rounding uses the 1.5*2^23 trick (exact for
 * |x/ln2| < 2^22). x < -87 gives 0 (e^-87 is near FLT_MIN); x is capped at 88. */
static inline float vexpf(float x) {
    float xc = x > 88.0f ? 88.0f : x;
    xc = xc < -87.0f ? -87.0f : xc;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = FMA(n, -0.693145751953125f, xc);
    r = FMA(n, -1.42860682030941723e-6f, r);
    float p = 1.0f / 5040.0f;
    p = FMA(p, r, 1.0f / 720.0f);
    p = FMA(p, r, 1.0f / 120.0f);
    p = FMA(p, r, 1.0f / 24.0f);
    p = FMA(p, r, 1.0f / 6.0f);
    p = FMA(p, r, 0.5f);
    p = FMA(p, r, 1.0f);
    p = FMA(p, r, 1.0f);
    uint32_t e = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return x < -87.0f ? 0.0f : p * s;
}

/* --------------------------------------------------------------- attention */

/* Tiled kernels on packed, zero-padded copies of one sequence's K and V.
 * QB query rows are processed together so each K/V element loaded is used QB
 * times; a tile is W = 16 floats, held as NV native vectors (GCC vector types
 * of VW floats: one AVX-512 register, two AVX2 ones), and padding T and hd up
 * to multiples of W removes every tail loop. Written with vector types
 * because GCC vectorised the plain loops across the QB rows (shuffles)
 * instead of along the tile; vectors wider than the target's registers
 * compiled to spills, hence VW. HOT turns on FMA contraction for these
 * kernels only (-std=c11 turns it off). */
#define QB 4
#define W 16
#define RUP(n) (((n) + W - 1) / W * W)
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
#define NV (W / VW)
#define HOT __attribute__((optimize("fp-contract=fast")))
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

/* unaligned load/store of one vector (macros: passing vectors by value draws
 * ABI warnings when the target lacks the registers, e.g. the sanitizer build) */
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(vf))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(vf))

/* s[r][j] = sum_k a[r][k] * bt[k][j] for r < QB, j < jn (jn a multiple of W).
 * a is [QB][lda], bt is [hd][ldb] (the transposed K or V). */
HOT static void tile_abt(float *restrict s, int lds, const float *restrict a, int lda, const float *restrict bt,
                         int ldb, int hd, int jn) {
    for (int j0 = 0; j0 < jn; j0 += W) {
        vf acc[QB][NV];
        for (int r = 0; r < QB; r++)
            for (int u = 0; u < NV; u++) acc[r][u] = (vf){0};
        for (int k = 0; k < hd; k++) {
            vf b[NV];
            for (int u = 0; u < NV; u++) VLOAD(b[u], bt + (size_t)k * ldb + j0 + u * VW);
            for (int r = 0; r < QB; r++) {
                float ar = a[r * lda + k];
                for (int u = 0; u < NV; u++) acc[r][u] += ar * b[u];
            }
        }
        for (int r = 0; r < QB; r++)
            for (int u = 0; u < NV; u++) VSTORE(s + (size_t)r * lds + j0 + u * VW, acc[r][u]);
    }
}

/* o[r][c] = sum_{j<jn} p[r][j] * b[j][c] for r < QB, c < ldb (multiple of W).
 * p is [QB][ldp], b is [jn][ldb]. */
HOT static void tile_pb(float *restrict o, const float *restrict p, int ldp, const float *restrict b, int ldb,
                        int jn) {
    for (int c0 = 0; c0 < ldb; c0 += W) {
        vf acc[QB][NV];
        for (int r = 0; r < QB; r++)
            for (int u = 0; u < NV; u++) acc[r][u] = (vf){0};
        for (int j = 0; j < jn; j++) {
            vf bv[NV];
            for (int u = 0; u < NV; u++) VLOAD(bv[u], b + (size_t)j * ldb + c0 + u * VW);
            for (int r = 0; r < QB; r++) {
                float pr = p[r * ldp + j];
                for (int u = 0; u < NV; u++) acc[r][u] += pr * bv[u];
            }
        }
        for (int r = 0; r < QB; r++)
            for (int u = 0; u < NV; u++) VSTORE(o + (size_t)r * ldb + c0 + u * VW, acc[r][u]);
    }
}

/* acc[j][c] += sum_r p[r][j] * b[r][c] for j < jn, c < ldb: the rank-QB update
 * behind dK += dS^T Q and dV += P^T dO. b's tile stays in registers. */
HOT static void tile_ptb(float *restrict acc, const float *restrict p, int ldp, const float *restrict b, int ldb,
                         int jn) {
    for (int c0 = 0; c0 < ldb; c0 += W) {
        vf bt[QB][NV];
        for (int r = 0; r < QB; r++)
            for (int u = 0; u < NV; u++) VLOAD(bt[r][u], b + (size_t)r * ldb + c0 + u * VW);
        for (int j = 0; j < jn; j++) {
            float *ar = acc + (size_t)j * ldb + c0;
            vf t[NV];
            for (int u = 0; u < NV; u++) VLOAD(t[u], ar + u * VW);
            for (int r = 0; r < QB; r++) {
                float pr = p[r * ldp + j];
                for (int u = 0; u < NV; u++) t[u] += pr * bt[r][u];
            }
            for (int u = 0; u < NV; u++) VSTORE(ar + u * VW, t[u]);
        }
    }
}

/* dst[c][j] = src row j (stride lds), c < hd, j < T; padding stays zero. */
static void pack_t(float *restrict dst, int ldd, const float *restrict src, size_t lds, int T, int hd) {
    for (int j = 0; j < T; j++)
        for (int c = 0; c < hd; c++) dst[(size_t)c * ldd + j] = src[(size_t)j * lds + c];
}

/* dst[j][c] = src row j (stride lds) * s, c < hd, j < n; padding stays zero. */
static void pack_n(float *restrict dst, int ldd, const float *restrict src, size_t lds, int n, int hd, float s) {
    for (int j = 0; j < n; j++)
        for (int c = 0; c < hd; c++) dst[(size_t)j * ldd + c] = src[(size_t)j * lds + c] * s;
}

/* Forward, one task per (sequence b, query head h), QB query rows at a time:
 *   s = (scale q) K^T over keys j <= i;  m = max s;  p = exp(s - m);
 *   l = sum p;  o = (p V) / l;  lse = m + log l.
 * A whole row of scores (T floats) fits in scratch, so no online rescaling. */
static void cpu_attention_fwd(lm_device *d, void *o_, float *lse, const void *q_, const void *k_, const void *v_,
                              int B, int T, int H, int KV, int hd) {
    float *o = o_;
    const float *q = q_;
    const float *k = k_;
    const float *v = v_;
    (void)d;
    if (B <= 0 || T <= 0) return;
    if (KV <= 0 || H % KV != 0)
        lm_abort(LM_ERR_RUNTIME, "device cpu: %d query heads not a multiple of %d kv heads", H, KV);
    const int Tp = RUP(T), hp = RUP(hd), grp = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per = (size_t)hd * Tp + (size_t)Tp * hp + (size_t)QB * hp * 2 + (size_t)QB * Tp;
    float *scratch = lm_alloc((size_t)omp_get_max_threads() * per * sizeof(float));
#pragma omp parallel
    {
        float *kt = scratch + (size_t)omp_get_thread_num() * per; /* K^T [hd][Tp] */
        float *vp = kt + (size_t)hd * Tp;                         /* V [Tp][hp] */
        float *qb = vp + (size_t)Tp * hp;                         /* scale*q [QB][hp] */
        float *ob = qb + (size_t)QB * hp;                         /* p V [QB][hp] */
        float *s = ob + (size_t)QB * hp;                          /* scores [QB][Tp] */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, g = h / grp;
            const size_t qs = (size_t)H * hd, ks = (size_t)KV * hd;
            pack_t(kt, Tp, k + (size_t)b * T * ks + (size_t)g * hd, ks, T, hd);
            pack_n(vp, hp, v + (size_t)b * T * ks + (size_t)g * hd, ks, T, hd, 1.0f);
            for (int i0 = 0; i0 < T; i0 += QB) {
                int nr = T - i0 < QB ? T - i0 : QB;
                memset(qb, 0, (size_t)QB * hp * sizeof(float));
                pack_n(qb, hp, q + ((size_t)b * T + i0) * qs + (size_t)h * hd, qs, nr, hd, scale);
                int jn = RUP(i0 + nr);
                tile_abt(s, Tp, qb, hp, kt, Tp, hd, jn);
                float linv[QB];
                for (int r = 0; r < QB; r++) {
                    float *restrict sr = s + (size_t)r * Tp;
                    int nk = r < nr ? i0 + r + 1 : 0; /* keys this row sees */
                    float m = -INFINITY, l = 0.0f;
#pragma omp simd reduction(max : m)
                    for (int j = 0; j < nk; j++) m = sr[j] > m ? sr[j] : m;
#pragma omp simd reduction(+ : l)
                    for (int j = 0; j < jn; j++) {
                        float e = j < nk ? vexpf(sr[j] - m) : 0.0f;
                        sr[j] = e;
                        l += e;
                    }
                    linv[r] = r < nr ? 1.0f / l : 0.0f;
                    if (r < nr) lse[((size_t)b * H + h) * T + i0 + r] = m + logf(l);
                }
                tile_pb(ob, s, Tp, vp, hp, jn);
                for (int r = 0; r < nr; r++) {
                    float *restrict orow = o + ((size_t)b * T + i0 + r) * qs + (size_t)h * hd;
                    for (int c = 0; c < hd; c++) orow[c] = ob[r * hp + c] * linv[r];
                }
            }
        }
    }
    lm_free(scratch);
}

/* Backward (FlashAttention-2 recomputation), one task per (sequence b, kv
 * head g) so that dK and dV of that head belong to one thread:
 *   p = exp(scale q.k - lse);  dp = dO V^T;  D = dO . O (per row);
 *   dS = p (dp - D);  dQ = scale dS K;  dK += scale dS^T Q;  dV += P^T dO,
 * summed over the query heads of the group. */
static void cpu_attention_bwd(lm_device *d, void *dq_, void *dk_, void *dv_, const void *dout_, const void *o_,
                              const float *lse, const void *q_, const void *k_, const void *v_, int B, int T, int H,
                              int KV, int hd) {
    float *dq = dq_;
    float *dk = dk_;
    float *dv = dv_;
    const float *dout = dout_;
    const float *o = o_;
    const float *q = q_;
    const float *k = k_;
    const float *v = v_;
    (void)d;
    if (B <= 0 || T <= 0) return;
    if (KV <= 0 || H % KV != 0)
        lm_abort(LM_ERR_RUNTIME, "device cpu: %d query heads not a multiple of %d kv heads", H, KV);
    const int Tp = RUP(T), hp = RUP(hd), grp = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t per = (size_t)hd * Tp * 2 + (size_t)Tp * hp * 3 + (size_t)QB * hp * 3 + (size_t)QB * Tp * 2;
    float *scratch = lm_alloc((size_t)omp_get_max_threads() * per * sizeof(float));
#pragma omp parallel
    {
        float *kt = scratch + (size_t)omp_get_thread_num() * per; /* K^T [hd][Tp] */
        float *vt = kt + (size_t)hd * Tp;                         /* V^T [hd][Tp] */
        float *kp = vt + (size_t)hd * Tp;                         /* K [Tp][hp] */
        float *dkp = kp + (size_t)Tp * hp;                        /* dK [Tp][hp] */
        float *dvp = dkp + (size_t)Tp * hp;                       /* dV [Tp][hp] */
        float *qb = dvp + (size_t)Tp * hp;                        /* scale*q [QB][hp] */
        float *gb = qb + (size_t)QB * hp;                         /* dO [QB][hp] */
        float *dqb = gb + (size_t)QB * hp;                        /* dS K [QB][hp] */
        float *p = dqb + (size_t)QB * hp;                         /* P [QB][Tp] */
        float *ds = p + (size_t)QB * Tp;                          /* dP, then dS [QB][Tp] */
#pragma omp for schedule(static)
        for (int bg = 0; bg < B * KV; bg++) {
            int b = bg / KV, g = bg % KV;
            const size_t qs = (size_t)H * hd, ks = (size_t)KV * hd;
            const float *kb = k + (size_t)b * T * ks + (size_t)g * hd;
            pack_t(kt, Tp, kb, ks, T, hd);
            pack_t(vt, Tp, v + (size_t)b * T * ks + (size_t)g * hd, ks, T, hd);
            pack_n(kp, hp, kb, ks, T, hd, 1.0f);
            memset(dkp, 0, (size_t)Tp * hp * 2 * sizeof(float));
            for (int h = g * grp; h < (g + 1) * grp; h++) {
                for (int i0 = 0; i0 < T; i0 += QB) {
                    int nr = T - i0 < QB ? T - i0 : QB;
                    int jn = RUP(i0 + nr);
                    size_t row0 = ((size_t)b * T + i0) * qs + (size_t)h * hd;
                    memset(qb, 0, (size_t)QB * hp * 2 * sizeof(float));
                    pack_n(qb, hp, q + row0, qs, nr, hd, scale);
                    pack_n(gb, hp, dout + row0, qs, nr, hd, 1.0f);
                    tile_abt(p, Tp, qb, hp, kt, Tp, hd, jn);
                    tile_abt(ds, Tp, gb, hp, vt, Tp, hd, jn);
                    for (int r = 0; r < QB; r++) {
                        float *restrict pr = p + (size_t)r * Tp;
                        float *restrict dr = ds + (size_t)r * Tp;
                        int nk = r < nr ? i0 + r + 1 : 0;
                        float L = 0.0f, Di = 0.0f;
                        if (r < nr) {
                            L = lse[((size_t)b * H + h) * T + i0 + r];
                            const float *restrict orow = o + row0 + (size_t)r * qs;
                            const float *restrict grow = gb + (size_t)r * hp;
#pragma omp simd reduction(+ : Di)
                            for (int c = 0; c < hd; c++) Di += orow[c] * grow[c];
                        }
#pragma omp simd
                        for (int j = 0; j < jn; j++) {
                            float e = j < nk ? vexpf(pr[j] - L) : 0.0f;
                            pr[j] = e;
                            dr[j] = e * (dr[j] - Di);
                        }
                    }
                    tile_pb(dqb, ds, Tp, kp, hp, jn);
                    for (int r = 0; r < nr; r++) {
                        float *restrict dqr = dq + row0 + (size_t)r * qs;
                        for (int c = 0; c < hd; c++) dqr[c] = dqb[r * hp + c] * scale;
                    }
                    tile_ptb(dkp, ds, Tp, qb, hp, jn);
                    tile_ptb(dvp, p, Tp, gb, hp, jn);
                }
            }
            for (int j = 0; j < T; j++) {
                size_t off = ((size_t)b * T + j) * ks + (size_t)g * hd;
                memcpy(dk + off, dkp + (size_t)j * hp, (size_t)hd * sizeof(float));
                memcpy(dv + off, dvp + (size_t)j * hp, (size_t)hd * sizeof(float));
            }
        }
    }
    lm_free(scratch);
}

/* Decode attention over a KV cache (device.h), one task per (query row i,
 * head h), the scores of its L = p0 + i + 1 keys in a per-thread row:
 *   s_j = scale q.k_j;  m = max s;  p_j = exp(s_j - m);  o = (sum p_j v_j) / sum p_j.
 * Plain loops: one query row per head at a decode step, and the cost is the
 * cache's size either way. */
static void cpu_attention_decode(lm_device *d, void *o_, const void *q_, const void *kc_, const void *vc_, int n,
                                 int p0, int H, int KV, int hd) {
    float *o = o_;
    const float *q = q_, *kc = kc_, *vc = vc_;
    (void)d;
    if (n <= 0) return;
    if (KV <= 0 || H % KV != 0)
        lm_abort(LM_ERR_RUNTIME, "device cpu: %d query heads not a multiple of %d kv heads", H, KV);
    const int grp = H / KV, L = p0 + n;
    const size_t qs = (size_t)H * hd, ks = (size_t)KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scratch = lm_alloc((size_t)omp_get_max_threads() * (size_t)L * sizeof(float));
#pragma omp parallel if ((size_t)n * H * L * hd > PAR_MIN)
    {
        float *s = scratch + (size_t)omp_get_thread_num() * L;
#pragma omp for schedule(static)
        for (int ih = 0; ih < n * H; ih++) {
            int i = ih / H, h = ih % H, nk = p0 + i + 1;
            const float *restrict qr = q + (size_t)i * qs + (size_t)h * hd;
            const float *restrict kb = kc + (size_t)(h / grp) * hd, *restrict vb = vc + (size_t)(h / grp) * hd;
            float m = -INFINITY, l = 0.0f;
            for (int j = 0; j < nk; j++) {
                const float *restrict kr = kb + (size_t)j * ks;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < hd; c++) dot += qr[c] * kr[c];
                s[j] = dot * scale;
                m = s[j] > m ? s[j] : m;
            }
            for (int j = 0; j < nk; j++) {
                s[j] = expf(s[j] - m);
                l += s[j];
            }
            float *restrict orow = o + (size_t)i * qs + (size_t)h * hd;
            for (int c = 0; c < hd; c++) orow[c] = 0.0f;
            for (int j = 0; j < nk; j++) {
                const float *restrict vr = vb + (size_t)j * ks;
                float pj = s[j];
#pragma omp simd
                for (int c = 0; c < hd; c++) orow[c] = FMA(pj, vr[c], orow[c]);
            }
            float linv = 1.0f / l;
            for (int c = 0; c < hd; c++) orow[c] *= linv;
        }
    }
    lm_free(scratch);
}

/* ------------------------------------------------------------------ SwiGLU */

/* out = silu(g) u with silu(g) = g sigmoid(g);
 * d silu/dg = sig (1 + g (1 - sig)). */
static void cpu_swiglu_fwd(lm_device *d, void *out_, const void *g_, const void *u_, size_t n) {
    float *out = out_;
    const float *g = g_;
    const float *u = u_;
    (void)d;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + vexpf(-g[i]));
        out[i] = g[i] * sig * u[i];
    }
}

static void cpu_swiglu_bwd(lm_device *d, void *dg_, void *du_, const void *dout_, const void *g_, const void *u_,
                           size_t n) {
    float *dg = dg_;
    float *du = du_;
    const float *dout = dout_;
    const float *g = g_;
    const float *u = u_;
    (void)d;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i], sig = 1.0f / (1.0f + vexpf(-gi));
        float silu = gi * sig;
        dg[i] = dout[i] * u[i] * sig * (1.0f + gi * (1.0f - sig));
        du[i] = dout[i] * silu;
    }
}

/* ----------------------------------------------------------- cross-entropy */

/* Per row with target t: m = max, e = exp(x - m), S = sum e;
 * loss = m + log S - x[t];  grad = scale (e/S - onehot(t)). */
static double cpu_xent_fwd_bwd(lm_device *d, void *logits_, const int32_t *targets, int R, int V, float scale) {
    float *logits = logits_;
    (void)d;
    for (int r = 0; r < R; r++)
        if (targets[r] >= V) lm_abort(LM_ERR_RUNTIME, "device cpu: xent target %d >= vocab %d", targets[r], V);
    double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss) if ((size_t)R * V > PAR_MIN)
    for (int r = 0; r < R; r++) {
        float *restrict x = logits + (size_t)r * V;
        int t = targets[r];
        if (t < 0) {
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int c = 0; c < V; c++) m = x[c] > m ? x[c] : m;
        float xt = x[t], S = 0.0f;
#pragma omp simd reduction(+ : S)
        for (int c = 0; c < V; c++) {
            float e = vexpf(x[c] - m);
            x[c] = e;
            S += e;
        }
        loss += (double)m + log((double)S) - (double)xt;
        float k = scale / S;
#pragma omp simd
        for (int c = 0; c < V; c++) x[c] *= k;
        x[t] -= scale;
    }
    return loss;
}

/* Vocab-parallel cross-entropy (Megatron-LM): this rank holds columns
 * [0, Vv) of a slice of width V (the rest padding). Per row, over the real
 * columns only:
 *   m = max x,  s = sum exp(x - m)  (as cpu_xent_fwd_bwd: float32, vexpf),
 *   zt = x[tloc] when this rank holds the target, else 0.
 * The ranks' (m, s, zt) combine into lse = M + log sum_k s_k exp(m_k - M)
 * and loss = lse - sum_k zt_k (the caller's work); then
 *   grad = scale (exp(x - lse) - onehot(tloc))
 * is the slice of the full softmax gradient. */
void device_check_xent_part(const lm_device *d, const char *op, const int32_t *tloc, int R, int V, int Vv) {
    if (Vv < 0 || Vv > V) lm_abort(LM_ERR_RUNTIME, "device %s: %s: %d real columns of %d", d->name, op, Vv, V);
    for (int r = 0; r < R; r++)
        if (tloc[r] >= Vv) lm_abort(LM_ERR_RUNTIME, "device %s: %s: target column %d >= %d", d->name, op, tloc[r], Vv);
}

static void cpu_xent_part_stats(lm_device *d, const void *logits_, const int32_t *tloc, int R, int V, int Vv,
                                float *stats) {
    const float *logits = logits_;
    (void)d;
    device_check_xent_part(d, "xent_part_stats", tloc, R, V, Vv);
#pragma omp parallel for schedule(static) if ((size_t)R * Vv > PAR_MIN)
    for (int r = 0; r < R; r++) {
        const float *restrict x = logits + (size_t)r * V;
        float m = -INFINITY, S = 0.0f;
#pragma omp simd reduction(max : m)
        for (int c = 0; c < Vv; c++) m = x[c] > m ? x[c] : m;
#pragma omp simd reduction(+ : S)
        for (int c = 0; c < Vv; c++) S += vexpf(x[c] - m);
        int t = tloc[r];
        stats[3 * (size_t)r] = m;
        stats[3 * (size_t)r + 1] = S;
        stats[3 * (size_t)r + 2] = t >= 0 ? x[t] : 0.0f;
    }
}

static void cpu_xent_part_grad(lm_device *d, void *logits_, const int32_t *tloc, const float *lse, int R, int V,
                               int Vv, float scale) {
    float *logits = logits_;
    (void)d;
    device_check_xent_part(d, "xent_part_grad", tloc, R, V, Vv);
#pragma omp parallel for schedule(static) if ((size_t)R * V > PAR_MIN)
    for (int r = 0; r < R; r++) {
        float *restrict x = logits + (size_t)r * V;
        int t = tloc[r];
        if (t < -1) { /* LM_XENT_PAD: a padding row */
            memset(x, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float L = lse[r];
#pragma omp simd
        for (int c = 0; c < Vv; c++) x[c] = scale * vexpf(x[c] - L);
        if (t >= 0) x[t] -= scale;
        if (V > Vv) memset(x + Vv, 0, (size_t)(V - Vv) * sizeof(float));
    }
}

/* ------------------------------------------------------------- elementwise */

static void cpu_add(lm_device *d, void *y_, const void *x_, size_t n) {
    float *y = y_;
    const float *x = x_;
    (void)d;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_scale(lm_device *d, void *x_, size_t n, float s) {
    float *x = x_;
    (void)d;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static double cpu_sumsq(lm_device *d, const void *x_, size_t n) {
    const float *x = x_;
    (void)d;
    double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* torch.optim.AdamW (decoupled weight decay), bias corrections in double:
 *   p *= 1 - lr wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps),  g = gscale * grad. */
static void adamw_seg(const lm_adamw_seg *s, float gscale, float lr, float b1, float b2, float eps, long step) {
    double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    const float decay = (float)(1.0 - (double)lr * s->wd);
    const float step_size = (float)((double)lr / bc1);
    const float inv_bc2s = (float)(1.0 / sqrt(bc2));
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    float *restrict p = s->master, *restrict m = s->m, *restrict v = s->v;
    const float *restrict g = s->g;
    size_t n = s->n;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_bc2s + eps);
    }
    if (s->w && s->w != (void *)s->master) memcpy(s->w, s->master, n * sizeof(float));
}

/* torch.optim.AdamW (decoupled weight decay), bias corrections in double:
 *   p *= 1 - lr wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1-b1^t)) m / (sqrt(v) / sqrt(1-b2^t) + eps),  g = gscale * grad. */
static void cpu_adamw(lm_device *d, const lm_adamw_seg *segs, int nseg, float gscale, float lr, float b1, float b2,
                      float eps, long step) {
    (void)d;
    for (int i = 0; i < nseg; i++) adamw_seg(&segs[i], gscale, lr, b1, b2, eps, step);
}

/* ------------------------------------------------------------- conversions */

/* float32 backend: only float32 exists, so conversions are copies. */
static void cpu_convert(lm_device *d, void *dst, lm_dtype dt, const void *src, lm_dtype st, size_t n) {
    if (dt != LM_F32 || st != LM_F32) lm_abort(LM_ERR_RUNTIME, "device cpu: bf16 buffer on the float32 backend");
    cpu_copy(d, dst, src, n * sizeof(float));
}

static void cpu_upload_f32(lm_device *d, void *dst, const float *host, size_t n) {
    cpu_copy(d, dst, host, n * sizeof(float));
}

static void cpu_download_f32(lm_device *d, float *host, const void *src, size_t n) {
    cpu_copy(d, host, src, n * sizeof(float));
}

/* ------------------------------------------------------------------ create */

/* device_destroy calls this: pending copies finish first (the engine drains
 * its queue before its thread is joined). */
static void cpu_destroy(lm_device *d) {
    cpu_state *st = d->impl;
    copy_engine_destroy(st->copies);
    lm_free(st);
    lm_free(d);
}

lm_device *device_cpu_create(size_t capacity) {
    lm_device *d = lm_alloc(sizeof *d);
    openblas_set_num_threads(1);
    cpu_state *st = lm_alloc(sizeof *st);
    st->copies = copy_engine_create();
    d->impl = st;
    d->destroy = cpu_destroy;
    d->name = "cpu";
    d->dtype = LM_F32;
    d->host_visible = 1;
    d->capacity = capacity;
    d->convert = cpu_convert;
    d->upload_f32 = cpu_upload_f32;
    d->download_f32 = cpu_download_f32;
    d->gemm_nt_add = cpu_gemm_nt_add;
    d->alloc = cpu_alloc;
    d->free = cpu_free;
    d->to_device = cpu_copy;
    d->to_host = cpu_copy;
    d->sync = cpu_sync;
    d->mem_info = cpu_mem_info;
    d->host_alloc = cpu_host_alloc;
    d->host_free = cpu_host_free;
    d->copy_async = cpu_copy_async;
    d->copy_done = cpu_copy_done;
    d->copy_wait = cpu_copy_wait;
    d->compute_wait = cpu_copy_wait;
    d->copy_busy = cpu_copy_busy;
    d->copy = cpu_copy;
    d->zero = cpu_zero;
    d->gemm_nt = cpu_gemm_nt;
    d->gemm_nn = cpu_gemm_nn;
    d->gemm_tn = cpu_gemm_tn;
    d->embedding_fwd = cpu_embedding_fwd;
    d->embedding_bwd = cpu_embedding_bwd;
    d->rmsnorm_fwd = cpu_rmsnorm_fwd;
    d->rmsnorm_bwd = cpu_rmsnorm_bwd;
    d->rope_fwd = cpu_rope_fwd;
    d->rope_bwd = cpu_rope_bwd;
    d->attention_fwd = cpu_attention_fwd;
    d->attention_bwd = cpu_attention_bwd;
    d->attention_decode = cpu_attention_decode;
    d->swiglu_fwd = cpu_swiglu_fwd;
    d->swiglu_bwd = cpu_swiglu_bwd;
    d->xent_fwd_bwd = cpu_xent_fwd_bwd;
    d->xent_part_stats = cpu_xent_part_stats;
    d->xent_part_grad = cpu_xent_part_grad;
    d->add = cpu_add;
    d->scale = cpu_scale;
    d->sumsq = cpu_sumsq;
    d->adamw = cpu_adamw;
    return d;
}

void device_destroy(lm_device *d) {
    if (!d) return;
    if (d->destroy) {
        d->destroy(d);
        return;
    }
    lm_free(d->impl);
    lm_free(d);
}
