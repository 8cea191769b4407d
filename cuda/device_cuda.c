/* device_cuda.c — the CUDA backend of the device interface (host side).
 *
 * Compute dtype bf16: activations, the weights the ops read and gradients
 * are bf16 on the GPU; statistics, RoPE tables, master weights and moments
 * float32. Everything runs in order on one compute stream; the NCCL binding
 * (comm_nccl.c) orders its own stream against it with events.
 *   GEMMs      cuBLASLt, bf16 operands, float32 accumulation (compute type
 *              32F); the residual add of gemm_nt_add is the epilogue's
 *              C input (D = A.B + C), so the residual is never copied.
 *              Row-major C = A.B^T is column-major C^T = B.A^T: every call
 *              below is written in cuBLAS's column-major terms.
 *   the rest   lamina's kernels (kernels.h) and flash attention.
 * Host arrays (token ids, targets) go through pinned staging buffers.
 * Asynchronous copies (copy_async) run on a second, non-blocking stream,
 * ordered against the compute stream with events only (see "asynchronous
 * copies" below).
 * Every CUDA / cuBLASLt status is checked; a failure brings the job down
 * with exit 1 naming the call. */
#include "device.h"
#include "bf16.h"
#include "common.h"
#include "device_cuda.h"
#include "kernels.h"
#include "cublaslt_load.h"
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(lm_adamw_seg) == sizeof(lmk_adamw_seg), "AdamW segment layouts differ");

#define CL(call)                                                                                                  \
    do {                                                                                                         \
        cublasStatus_t s_ = (call);                                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS) lm_abort(LM_ERR_RUNTIME, "cublasLt: %s: status %d", #call, (int)s_);   \
    } while (0)
/* kernel launchers return a cudaError_t as int */
#define KL(call)                                                                                                  \
    do {                                                                                                         \
        int e_ = (call);                                                                                         \
        if (e_) lm_abort(LM_ERR_RUNTIME, "cuda kernel: %s: %s", #call, cudaGetErrorString((cudaError_t)e_));    \
    } while (0)

/* A cached cuBLASLt plan for one GEMM shape. */
typedef struct {
    int op, M, N, K, beta0, inplace;
    uint32_t align; /* bytes every operand pointer is aligned to (<= 256) */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

#define MAX_PLANS 128
#define LT_WS_BYTES ((size_t)32 << 20)
#define COPY_RING 1024 /* copy tickets whose own completion event is kept */

typedef struct {
    int gpu;
    cudaStream_t s;
    cublasLtHandle_t lt;
    void *lt_ws;
    gemm_plan plans[MAX_PLANS];
    int nplans;
    size_t used, peak; /* bytes allocated through cu_alloc now, and the most since the last reset */
    /* asynchronous copies: their stream, ticket events, the last ticket
     * issued and the newest ticket known complete */
    cudaStream_t cs;
    cudaEvent_t cev[COPY_RING]; /* ticket t's event is cev[t % COPY_RING] (created on first use) */
    cudaEvent_t comp_ev;        /* the compute stream's point a download waits for */
    uint64_t issued, done_upto;
    /* device scratch, grown on demand */
    void *ws;
    size_t ws_bytes;
    int32_t *ids, *order, *starts;
    size_t ids_cap;
    float *row_loss;
    size_t loss_cap; /* bytes */
    double *dsum;
    lmk_adamw_seg *segs;
    size_t *prefix;
    int seg_cap;
    /* pinned host staging */
    void *host;
    size_t host_cap;
} cuda_state;

static cuda_state *ST(lm_device *d) { return d->impl; }

/* ------------------------------------------------------------------ memory */

static void *grow(void *p, size_t *cap, size_t want) {
    if (want <= *cap) return p;
    if (p) CK(cudaFree(p));
    size_t n = want + want / 4;
    void *q = NULL;
    CK(cudaMalloc(&q, n));
    *cap = n;
    return q;
}

static void *host_stage(cuda_state *st, size_t bytes) {
    if (bytes > st->host_cap) {
        CK(cudaStreamSynchronize(st->s)); /* an async copy may still read the old one */
        if (st->host) CK(cudaFreeHost(st->host));
        st->host_cap = bytes + bytes / 4;
        CK(cudaMallocHost(&st->host, st->host_cap));
    }
    return st->host;
}

static void *workspace(cuda_state *st, size_t bytes) {
    if (bytes > st->ws_bytes) CK(cudaStreamSynchronize(st->s)); /* the old one may be in use */
    st->ws = grow(st->ws, &st->ws_bytes, bytes);
    return st->ws;
}

/* Each block carries a 256-byte header with its size (capacity accounting). */
static void *cu_alloc(lm_device *d, size_t bytes) {
    cuda_state *st = ST(d);
    if (d->capacity && st->used + bytes > d->capacity)
        lm_abort(LM_ERR_RUNTIME, "device cuda: out of memory (%zu bytes requested, %zu of %zu in use)", bytes,
                 st->used, d->capacity);
    char *raw = NULL;
    cudaError_t e = cudaMalloc((void **)&raw, bytes + 256);
    if (e != cudaSuccess)
        lm_abort(LM_ERR_RUNTIME, "device cuda: cudaMalloc of %zu bytes failed (%s; %zu bytes in use by lamina)",
                 bytes, cudaGetErrorString(e), st->used);
    CK(cudaMemsetAsync(raw + 256, 0, bytes, st->s));
    /* an upload into the new block (copy stream) must land after the zeroing */
    CK(cudaEventRecord(st->comp_ev, st->s));
    CK(cudaStreamWaitEvent(st->cs, st->comp_ev, 0));
    size_t hdr = bytes;
    CK(cudaMemcpy(raw, &hdr, sizeof hdr, cudaMemcpyHostToDevice));
    st->used += bytes;
    if (st->used > st->peak) st->peak = st->used;
    return raw + 256;
}

static void cu_free(lm_device *d, void *p) {
    if (!p) return;
    cuda_state *st = ST(d);
    char *raw = (char *)p - 256;
    size_t hdr = 0;
    CK(cudaStreamSynchronize(st->s));
    CK(cudaMemcpy(&hdr, raw, sizeof hdr, cudaMemcpyDeviceToHost));
    st->used -= hdr;
    CK(cudaFree(raw));
}

static void cu_sync(lm_device *d) { CK(cudaStreamSynchronize(ST(d)->s)); }

static void cu_to_device(lm_device *d, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ST(d)->s));
    cu_sync(d); /* src may be reused as soon as we return */
}

static void cu_to_host(lm_device *d, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ST(d)->s));
    cu_sync(d);
}

static size_t cu_mem_info(lm_device *d, size_t *peak, int reset) {
    cuda_state *st = ST(d);
    if (peak) *peak = st->peak;
    if (reset) st->peak = st->used;
    return st->used;
}

/* Pinned host memory: copies from and to it are true DMA (asynchronous). */
static void *cu_host_alloc(lm_device *d, size_t bytes) {
    (void)d;
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess)
        lm_abort(LM_ERR_RUNTIME, "device cuda: cudaHostAlloc of %zu bytes of pinned host memory failed (%s)", bytes,
                 cudaGetErrorString(e));
    memset(p, 0, bytes);
    return p;
}
static void cu_host_free(lm_device *d, void *p) {
    (void)d;
    if (p) CK(cudaFreeHost(p));
}

/* ---------------------------------------------------- asynchronous copies */

/* Copies run in issue order on the copy stream st->cs, so ticket t being
 * complete implies every earlier one is. After each copy an event is
 * recorded into cev[t % COPY_RING]; a download first makes the copy stream
 * wait for an event recorded on the compute stream (its source is the
 * output of the compute issued before it). No host synchronisation here:
 * the host only blocks in copy_wait (and the device in compute_wait).
 *
 * A ticket more than COPY_RING behind the newest has had its slot re-used
 * by a later ticket; the oldest ticket still in the ring stands in for it
 * (it completes after t, so waiting for it is waiting for t, a little
 * conservatively). done_upto (the newest ticket seen complete) answers
 * most such questions without touching an event. */
static cudaEvent_t ticket_event(cuda_state *st, uint64_t t) {
    if (t > st->issued)
        lm_abort(LM_ERR_RUNTIME, "device cuda: copy ticket %llu was never issued (%llu so far)",
                 (unsigned long long)t, (unsigned long long)st->issued);
    if (st->issued - t >= COPY_RING) t = st->issued - COPY_RING + 1;
    return st->cev[t % COPY_RING];
}

static uint64_t cu_copy_async(lm_device *d, void *dst, const void *src, size_t bytes, int to_host) {
    cuda_state *st = ST(d);
    uint64_t t = st->issued + 1;
    cudaEvent_t *ev = &st->cev[t % COPY_RING];
    if (!*ev) CK(cudaEventCreateWithFlags(ev, cudaEventDisableTiming));
    if (to_host) {
        CK(cudaEventRecord(st->comp_ev, st->s));
        CK(cudaStreamWaitEvent(st->cs, st->comp_ev, 0));
    }
    if (bytes)
        CK(cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, st->cs));
    CK(cudaEventRecord(*ev, st->cs));
    st->issued = t;
    return t;
}

static int cu_copy_done(lm_device *d, uint64_t t) {
    cuda_state *st = ST(d);
    if (t <= st->done_upto) return 1;
    cudaError_t e = cudaEventQuery(ticket_event(st, t));
    if (e == cudaErrorNotReady) return 0;
    CK(e);
    st->done_upto = t;
    return 1;
}

static void cu_copy_wait(lm_device *d, uint64_t t) {
    cuda_state *st = ST(d);
    if (t <= st->done_upto) return;
    CK(cudaEventSynchronize(ticket_event(st, t)));
    st->done_upto = t;
}

static void cu_compute_wait(lm_device *d, uint64_t t) {
    cuda_state *st = ST(d);
    if (t <= st->done_upto) return;
    CK(cudaStreamWaitEvent(st->s, ticket_event(st, t), 0));
}

static void cu_copy(lm_device *d, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ST(d)->s));
}

static void cu_zero(lm_device *d, void *p, size_t bytes) {
    if (bytes) CK(cudaMemsetAsync(p, 0, bytes, ST(d)->s));
}

static void cu_convert(lm_device *d, void *dst, lm_dtype dt, const void *src, lm_dtype st, size_t n) {
    KL(lmk_convert(dst, (int)dt, src, (int)st, n, ST(d)->s));
}

/* Host float32 -> bf16 on the host (lamina's rounding, src/core/bf16.h), then one copy. */
static void cu_upload_f32(lm_device *d, void *dst, const float *host, size_t n) {
    cuda_state *st = ST(d);
    for (size_t off = 0; off < n;) {
        size_t m = n - off < ((size_t)64 << 20) ? n - off : ((size_t)64 << 20);
        uint16_t *h = host_stage(st, m * 2);
        CK(cudaStreamSynchronize(st->s)); /* an earlier op's async copy may still read the staging buffer */
        lm_f32_to_bf16_n(h, host + off, m);
        CK(cudaMemcpyAsync((uint16_t *)dst + off, h, m * 2, cudaMemcpyHostToDevice, st->s));
        cu_sync(d);
        off += m;
    }
}

static void cu_download_f32(lm_device *d, float *host, const void *src, size_t n) {
    cuda_state *st = ST(d);
    for (size_t off = 0; off < n;) {
        size_t m = n - off < ((size_t)64 << 20) ? n - off : ((size_t)64 << 20);
        uint16_t *h = host_stage(st, m * 2);
        CK(cudaMemcpyAsync(h, (const uint16_t *)src + off, m * 2, cudaMemcpyDeviceToHost, st->s));
        cu_sync(d);
        lm_bf16_to_f32_n(host + off, h, m);
        off += m;
    }
}

/* ------------------------------------------------------------------- GEMMs */

enum { OP_NT, OP_NN, OP_TN };

static cublasLtMatrixLayout_t layout(uint64_t rows, uint64_t cols, int64_t ld) {
    cublasLtMatrixLayout_t l;
    CL(lm_lt.cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, rows, cols, ld));
    return l;
}

/* Column-major problem D[m,n] = op(A)[m,k] op(B)[k,n] (+ C) for each op:
 *   NT  y[M,N]  = x w^T   ->  y^T[N,M]  = w^T(T)[N,K] . x^T[K,M]
 *   NN  dx[M,K] = dy w    ->  dx^T[K,M] = w^T[K,N] . dy^T[N,M]
 *   TN  dw[N,K] = dy^T x  ->  dw^T[K,N] = x^T[K,M] . dy(T)[M,N]
 * (a row-major [r,c] buffer is the column-major [c,r] matrix, ld c). */
static gemm_plan *plan(cuda_state *st, int op, int M, int N, int K, int beta0, int inplace, uint32_t align) {
    for (int i = 0; i < st->nplans; i++) {
        gemm_plan *p = &st->plans[i];
        if (p->op == op && p->M == M && p->N == N && p->K == K && p->beta0 == beta0 && p->inplace == inplace &&
            p->align == align)
            return p;
    }
    if (st->nplans == MAX_PLANS) { /* forget the oldest half */
        for (int i = 0; i < MAX_PLANS / 2; i++) {
            gemm_plan *p = &st->plans[i];
            lm_lt.cublasLtMatmulDescDestroy(p->desc);
            lm_lt.cublasLtMatrixLayoutDestroy(p->a);
            lm_lt.cublasLtMatrixLayoutDestroy(p->b);
            lm_lt.cublasLtMatrixLayoutDestroy(p->c);
        }
        memmove(st->plans, st->plans + MAX_PLANS / 2, sizeof(gemm_plan) * (MAX_PLANS / 2));
        st->nplans = MAX_PLANS / 2;
    }
    gemm_plan *p = &st->plans[st->nplans];
    *p = (gemm_plan){.op = op, .M = M, .N = N, .K = K, .beta0 = beta0, .inplace = inplace, .align = align};
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    if (op == OP_NT) {
        ta = CUBLAS_OP_T;
        p->a = layout((uint64_t)K, (uint64_t)N, K); /* w */
        p->b = layout((uint64_t)K, (uint64_t)M, K); /* x */
        p->c = layout((uint64_t)N, (uint64_t)M, N);
    } else if (op == OP_NN) {
        p->a = layout((uint64_t)K, (uint64_t)N, K); /* w */
        p->b = layout((uint64_t)N, (uint64_t)M, N); /* dy */
        p->c = layout((uint64_t)K, (uint64_t)M, K);
    } else {
        tb = CUBLAS_OP_T;
        p->a = layout((uint64_t)K, (uint64_t)M, K); /* x */
        p->b = layout((uint64_t)N, (uint64_t)M, N); /* dy */
        p->c = layout((uint64_t)K, (uint64_t)N, K);
    }
    CL(lm_lt.cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CL(lm_lt.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CL(lm_lt.cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatmulPreference_t pref;
    CL(lm_lt.cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = LT_WS_BYTES;
    CL(lm_lt.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    /* the heuristic assumes 256-byte operands unless told: row blocks of an
     * odd-width matrix (the lm_head's) are less aligned */
    cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) CL(lm_lt.cublasLtMatmulPreferenceSetAttribute(pref, al[i], &align, sizeof align));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    CL(lm_lt.cublasLtMatmulAlgoGetHeuristic(st->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &nres));
    lm_lt.cublasLtMatmulPreferenceDestroy(pref);
    if (nres < 1) lm_abort(LM_ERR_RUNTIME, "cublasLt: no algorithm for a %d x %d x %d bf16 GEMM", M, N, K);
    p->algo = res.algo;
    st->nplans++;
    return p;
}

static void gemm(lm_device *d, int op, void *out, const void *res, const void *A, const void *B, int M, int N, int K,
                 float beta) {
    if (M <= 0 || N <= 0) return;
    cuda_state *st = ST(d);
    if (K <= 0) { /* empty sum: out = beta * out (+ res) */
        if (res && res != out) cu_copy(d, out, res, (size_t)M * (size_t)N * 2);
        else if (beta == 0.0f) cu_zero(d, out, (size_t)M * (size_t)N * 2);
        else if (beta != 1.0f) KL(lmk_scale(out, (size_t)M * (size_t)N, beta, 1, st->s));
        return;
    }
    const void *C = res ? res : out;
    uintptr_t bits = (uintptr_t)A | (uintptr_t)B | (uintptr_t)C | (uintptr_t)out | 256;
    uint32_t align = (uint32_t)(bits & (~bits + 1)); /* lowest set bit */
    gemm_plan *p = plan(st, op, M, N, K, beta == 0.0f, res != NULL && res != out, align);
    const float alpha = 1.0f;
    CL(lm_lt.cublasLtMatmul(st->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, C, p->c, out, p->c, &p->algo, st->lt_ws,
                      LT_WS_BYTES, st->s));
}

static void cu_gemm_nt(lm_device *d, void *y, const void *x, const void *w, int M, int N, int K, float beta) {
    gemm(d, OP_NT, y, NULL, w, x, M, N, K, beta);
}
static void cu_gemm_nn(lm_device *d, void *dx, const void *dy, const void *w, int M, int N, int K, float beta) {
    gemm(d, OP_NN, dx, NULL, w, dy, M, N, K, beta);
}
static void cu_gemm_tn(lm_device *d, void *dw, const void *dy, const void *x, int M, int N, int K, float beta) {
    gemm(d, OP_TN, dw, NULL, x, dy, M, N, K, beta);
}
static void cu_gemm_nt_add(lm_device *d, void *y, const void *res, const void *x, const void *w, int M, int N,
                           int K) {
    gemm(d, OP_NT, y, res, w, x, M, N, K, 1.0f);
}

/* --------------------------------------------------------------- host ids */

/* Copy R host ids to the device buffer (and, for the embedding backward,
 * the stable sort by id of the rows with an id >= 0 and the start of each
 * run: rows with a negative id, another rank's vocab slice, are left out). */
static void put_ids(cuda_state *st, const int32_t *ids, int R, int sorted, int *nruns) {
    size_t need = (size_t)R + 1;
    if (need > st->ids_cap) {
        CK(cudaStreamSynchronize(st->s));
        if (st->ids) {
            CK(cudaFree(st->ids));
            CK(cudaFree(st->order));
            CK(cudaFree(st->starts));
        }
        st->ids_cap = need + need / 4;
        CK(cudaMalloc((void **)&st->ids, st->ids_cap * 4));
        CK(cudaMalloc((void **)&st->order, st->ids_cap * 4));
        CK(cudaMalloc((void **)&st->starts, st->ids_cap * 4));
    }
    int32_t *h = host_stage(st, (size_t)3 * need * 4);
    CK(cudaStreamSynchronize(st->s)); /* the staging buffer may still feed a copy */
    memcpy(h, ids, (size_t)R * 4);
    CK(cudaMemcpyAsync(st->ids, h, (size_t)R * 4, cudaMemcpyHostToDevice, st->s));
    if (!sorted) return;
    /* counting sort would need the vocab size; R is small, a bottom-up
     * merge sort of the kept rows (stable) keeps rows of one id in order */
    int32_t *order = h + need, *starts = h + 2 * need;
    int Rk = 0; /* rows kept: id >= 0 */
    for (int r = 0; r < R; r++)
        if (ids[r] >= 0) order[Rk++] = r;
    int32_t *tmp = lm_alloc(sizeof(int32_t) * (size_t)(Rk > 0 ? Rk : 1));
    for (int w = 1; w < Rk; w *= 2)
        for (int lo = 0; lo < Rk; lo += 2 * w) {
            int mid = lo + w < Rk ? lo + w : Rk, hi = lo + 2 * w < Rk ? lo + 2 * w : Rk, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = ids[order[j]] < ids[order[i]] ? order[j++] : order[i++];
            while (i < mid) tmp[k++] = order[i++];
            while (j < hi) tmp[k++] = order[j++];
            memcpy(order + lo, tmp + lo, sizeof(int32_t) * (size_t)(hi - lo));
        }
    lm_free(tmp);
    int n = 0;
    for (int k = 0; k < Rk; k++)
        if (k == 0 || ids[order[k]] != ids[order[k - 1]]) starts[n++] = k;
    starts[n] = Rk;
    *nruns = n;
    if (Rk > 0) CK(cudaMemcpyAsync(st->order, order, (size_t)Rk * 4, cudaMemcpyHostToDevice, st->s));
    CK(cudaMemcpyAsync(st->starts, starts, (size_t)(n + 1) * 4, cudaMemcpyHostToDevice, st->s));
}

/* The device float32 row buffer st->row_loss, grown to at least n floats. */
static float *row_floats(cuda_state *st, size_t n) {
    if (n * 4 > st->loss_cap) {
        CK(cudaStreamSynchronize(st->s));
        st->row_loss = grow(st->row_loss, &st->loss_cap, n * 4);
    }
    return st->row_loss;
}

/* --------------------------------------------------------------- the ops */

static void cu_embedding_fwd(lm_device *d, void *out, const void *table, const int32_t *ids, int R, int D) {
    cuda_state *st = ST(d);
    put_ids(st, ids, R, 0, NULL);
    KL(lmk_embedding_fwd(out, table, st->ids, R, D, st->s));
}

static void cu_embedding_bwd(lm_device *d, void *dtable, const void *dout, const int32_t *ids, int R, int D) {
    cuda_state *st = ST(d);
    int nruns = 0;
    put_ids(st, ids, R, 1, &nruns);
    KL(lmk_embedding_bwd(dtable, dout, st->ids, st->order, st->starts, nruns, R, D, st->s));
}

static void cu_rmsnorm_fwd(lm_device *d, void *y, float *rstd, const void *x, const void *w, int R, int D, float eps) {
    KL(lmk_rmsnorm_fwd(y, rstd, x, w, R, D, eps, ST(d)->s));
}

static void cu_rmsnorm_bwd(lm_device *d, void *dx, void *dw, const void *dy, const void *x, const void *w,
                           const float *rstd, int R, int D) {
    cuda_state *st = ST(d);
    void *ws = workspace(st, lmk_rmsnorm_bwd_ws(R, D));
    KL(lmk_rmsnorm_bwd(dx, dw, dy, x, w, rstd, R, D, ws, st->s));
}

static void cu_rope_fwd(lm_device *d, void *x, const float *c, const float *s, int R, int T, int nh, int hd) {
    KL(lmk_rope(x, c, s, R, T, nh, hd, 1, ST(d)->s));
}
static void cu_rope_bwd(lm_device *d, void *x, const float *c, const float *s, int R, int T, int nh, int hd) {
    KL(lmk_rope(x, c, s, R, T, nh, hd, -1, ST(d)->s));
}

static void check_heads(int H, int KV, int hd) {
    if (KV <= 0 || H % KV)
        lm_abort(LM_ERR_RUNTIME, "device cuda: %d query heads not a multiple of %d kv heads", H, KV);
    if (hd != 64 && hd != 128)
        lm_abort(LM_ERR_RUNTIME, "device cuda: flash attention has head_dim 64 and 128, not %d (model.dim / "
                                 "model.n_heads)", hd);
}

static void cu_attention_fwd(lm_device *d, void *o, float *lse, const void *q, const void *k, const void *v, int B,
                             int T, int H, int KV, int hd) {
    check_heads(H, KV, hd);
    KL(lmk_flash_fwd(o, lse, q, k, v, B, T, H, KV, hd, ST(d)->s));
}

static void cu_attention_bwd(lm_device *d, void *dq, void *dk, void *dv, const void *dout, const void *o,
                             const float *lse, const void *q, const void *k, const void *v, int B, int T, int H,
                             int KV, int hd) {
    check_heads(H, KV, hd);
    cuda_state *st = ST(d);
    void *ws = workspace(st, lmk_flash_bwd_ws(B, T, H, KV, hd));
    KL(lmk_flash_bwd(dq, dk, dv, dout, o, lse, q, k, v, B, T, H, KV, hd, ws, st->s));
}

static void cu_swiglu_fwd(lm_device *d, void *out, const void *g, const void *u, size_t n) {
    KL(lmk_swiglu_fwd(out, g, u, n, ST(d)->s));
}
static void cu_swiglu_bwd(lm_device *d, void *dg, void *du, const void *dout, const void *g, const void *u,
                          size_t n) {
    KL(lmk_swiglu_bwd(dg, du, dout, g, u, n, ST(d)->s));
}

/* Per-row losses come back to the host and are summed there in double. */
static double cu_xent(lm_device *d, void *logits, const int32_t *targets, int R, int V, float scale) {
    cuda_state *st = ST(d);
    for (int r = 0; r < R; r++)
        if (targets[r] >= V) lm_abort(LM_ERR_RUNTIME, "device cuda: xent target %d >= vocab %d", targets[r], V);
    row_floats(st, (size_t)R);
    put_ids(st, targets, R, 0, NULL);
    KL(lmk_xent(logits, st->ids, st->row_loss, R, V, scale, st->s));
    float *h = host_stage(st, (size_t)R * 4);
    CK(cudaMemcpyAsync(h, st->row_loss, (size_t)R * 4, cudaMemcpyDeviceToHost, st->s));
    cu_sync(d);
    double loss = 0.0;
    for (int r = 0; r < R; r++) loss += h[r];
    return loss;
}

/* Vocab-parallel cross-entropy (src/device/device.h). tloc goes over through the
 * ids buffer; the statistics [3R] come back through the staging buffer (as
 * cu_xent's row losses), lse [R] goes over through it. */
static void cu_xent_part_stats(lm_device *d, const void *logits, const int32_t *tloc, int R, int V, int Vv,
                               float *stats) {
    cuda_state *st = ST(d);
    device_check_xent_part(d, "xent_part_stats", tloc, R, V, Vv);
    if (R <= 0) return;
    const size_t nb = (size_t)R * 3 * 4;
    float *ds = row_floats(st, (size_t)R * 3);
    put_ids(st, tloc, R, 0, NULL);
    KL(lmk_xent_part_stats(logits, st->ids, ds, R, V, Vv, st->s));
    float *h = host_stage(st, nb); /* put_ids staged more: no reallocation; the copy below is stream-ordered */
    CK(cudaMemcpyAsync(h, ds, nb, cudaMemcpyDeviceToHost, st->s));
    cu_sync(d);
    memcpy(stats, h, nb);
}

static void cu_xent_part_grad(lm_device *d, void *logits, const int32_t *tloc, const float *lse, int R, int V, int Vv,
                              float scale) {
    cuda_state *st = ST(d);
    device_check_xent_part(d, "xent_part_grad", tloc, R, V, Vv);
    if (R <= 0) return;
    float *dl = row_floats(st, (size_t)R);
    put_ids(st, tloc, R, 0, NULL);
    float *h = host_stage(st, (size_t)R * 4);
    CK(cudaStreamSynchronize(st->s)); /* the ids copy may still read the staging buffer */
    memcpy(h, lse, (size_t)R * 4);
    CK(cudaMemcpyAsync(dl, h, (size_t)R * 4, cudaMemcpyHostToDevice, st->s));
    KL(lmk_xent_part_grad(logits, st->ids, dl, R, V, Vv, scale, st->s));
}

static void cu_add(lm_device *d, void *y, const void *x, size_t n) { KL(lmk_add(y, x, n, 1, ST(d)->s)); }
static void cu_scale(lm_device *d, void *x, size_t n, float s) { KL(lmk_scale(x, n, s, 1, ST(d)->s)); }

static double cu_sumsq(lm_device *d, const void *x, size_t n) {
    cuda_state *st = ST(d);
    if (!n) return 0.0;
    void *ws = workspace(st, lmk_sumsq_ws(n));
    KL(lmk_sumsq(st->dsum, x, n, 1, ws, st->s));
    double s = 0.0;
    CK(cudaMemcpyAsync(&s, st->dsum, sizeof s, cudaMemcpyDeviceToHost, st->s));
    cu_sync(d);
    return s;
}

/* All segments in one launch: the table and its running counts go over
 * first (a few KiB). */
static void cu_adamw(lm_device *d, const lm_adamw_seg *segs, int nseg, float gscale, float lr, float b1, float b2,
                     float eps, long step) {
    cuda_state *st = ST(d);
    if (nseg <= 0) return;
    if (nseg > st->seg_cap) {
        CK(cudaStreamSynchronize(st->s));
        if (st->segs) {
            CK(cudaFree(st->segs));
            CK(cudaFree(st->prefix));
        }
        st->seg_cap = nseg;
        CK(cudaMalloc((void **)&st->segs, sizeof(lmk_adamw_seg) * (size_t)nseg));
        CK(cudaMalloc((void **)&st->prefix, sizeof(size_t) * (size_t)(nseg + 1)));
    }
    size_t tb = sizeof(lmk_adamw_seg) * (size_t)nseg, pb = sizeof(size_t) * (size_t)(nseg + 1);
    CK(cudaStreamSynchronize(st->s));
    char *h = host_stage(st, tb + pb);
    memcpy(h, segs, tb);
    size_t *pre = (size_t *)(h + tb);
    pre[0] = 0;
    for (int i = 0; i < nseg; i++) {
        if (segs[i].w == (void *)segs[i].master)
            lm_abort(LM_ERR_RUNTIME, "device cuda: AdamW segment whose bf16 weights are its float32 master");
        pre[i + 1] = pre[i] + segs[i].n;
    }
    CK(cudaMemcpyAsync(st->segs, h, tb, cudaMemcpyHostToDevice, st->s));
    CK(cudaMemcpyAsync(st->prefix, pre, pb, cudaMemcpyHostToDevice, st->s));
    KL(lmk_adamw(st->segs, st->prefix, nseg, pre[nseg], 1, gscale, lr, b1, b2, eps, step, st->s));
}

/* ----------------------------------------------------------------- create */

static void cu_destroy(lm_device *d) {
    cuda_state *st = ST(d);
    cudaStreamSynchronize(st->s);
    cudaStreamSynchronize(st->cs); /* pending copies finish before their buffers may go */
    for (int i = 0; i < COPY_RING; i++)
        if (st->cev[i]) cudaEventDestroy(st->cev[i]);
    cudaEventDestroy(st->comp_ev);
    cudaStreamDestroy(st->cs);
    for (int i = 0; i < st->nplans; i++) {
        lm_lt.cublasLtMatmulDescDestroy(st->plans[i].desc);
        lm_lt.cublasLtMatrixLayoutDestroy(st->plans[i].a);
        lm_lt.cublasLtMatrixLayoutDestroy(st->plans[i].b);
        lm_lt.cublasLtMatrixLayoutDestroy(st->plans[i].c);
    }
    void *dev[] = {st->lt_ws, st->ws, st->ids, st->order, st->starts, st->row_loss, st->dsum, st->segs, st->prefix};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        if (dev[i]) cudaFree(dev[i]);
    if (st->host) cudaFreeHost(st->host);
    lm_lt.cublasLtDestroy(st->lt);
    cudaStreamDestroy(st->s);
    lm_free(st);
    lm_free(d);
}

void *device_cuda_stream(lm_device *d) { return ST(d)->s; }
int device_cuda_gpu(lm_device *d) { return ST(d)->gpu; }

lm_device *device_cuda_create(int local_rank, char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why, whylen, "no usable GPU (CUDA runtime: %s)", cudaGetErrorString(e));
        return NULL;
    }
    if (n < 1) {
        snprintf(why, whylen, "no GPU visible (CUDA_VISIBLE_DEVICES?)");
        return NULL;
    }
    int gpu = local_rank % n;
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(gpu)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, gpu)) != cudaSuccess) {
        snprintf(why, whylen, "GPU %d: %s", gpu, cudaGetErrorString(e));
        return NULL;
    }
    if (prop.major < 8) {
        snprintf(why, whylen, "GPU %d (%s) is sm_%d%d: the CUDA backend needs sm_80 or newer (bf16 tensor cores)",
                 gpu, prop.name, prop.major, prop.minor);
        return NULL;
    }
    if (cublaslt_load(why, whylen)) return NULL;
    cuda_state *st = lm_alloc(sizeof *st);
    st->gpu = gpu;
    if ((e = cudaStreamCreateWithFlags(&st->s, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(why, whylen, "GPU %d: cudaStreamCreate: %s", gpu, cudaGetErrorString(e));
        lm_free(st);
        return NULL;
    }
    if ((e = cudaStreamCreateWithFlags(&st->cs, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&st->comp_ev, cudaEventDisableTiming)) != cudaSuccess) {
        snprintf(why, whylen, "GPU %d: the copy stream: %s", gpu, cudaGetErrorString(e));
        if (st->cs) cudaStreamDestroy(st->cs);
        cudaStreamDestroy(st->s);
        lm_free(st);
        return NULL;
    }
    if (lm_lt.cublasLtCreate(&st->lt) != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, whylen, "GPU %d: cublasLtCreate failed", gpu);
        cudaEventDestroy(st->comp_ev);
        cudaStreamDestroy(st->cs);
        cudaStreamDestroy(st->s);
        lm_free(st);
        return NULL;
    }
    CK(cudaMalloc(&st->lt_ws, LT_WS_BYTES));
    CK(cudaMalloc((void **)&st->dsum, sizeof(double)));
    lm_device *d = lm_alloc(sizeof *d);
    d->impl = st;
    d->name = "cuda";
    d->dtype = LM_BF16;
    d->host_visible = 0;
    d->capacity = 0;
    d->alloc = cu_alloc;
    d->free = cu_free;
    d->to_device = cu_to_device;
    d->to_host = cu_to_host;
    d->copy = cu_copy;
    d->sync = cu_sync;
    d->mem_info = cu_mem_info;
    d->host_alloc = cu_host_alloc;
    d->host_free = cu_host_free;
    d->copy_async = cu_copy_async;
    d->copy_done = cu_copy_done;
    d->copy_wait = cu_copy_wait;
    d->compute_wait = cu_compute_wait;
    d->zero = cu_zero;
    d->convert = cu_convert;
    d->upload_f32 = cu_upload_f32;
    d->download_f32 = cu_download_f32;
    d->gemm_nt = cu_gemm_nt;
    d->gemm_nn = cu_gemm_nn;
    d->gemm_tn = cu_gemm_tn;
    d->gemm_nt_add = cu_gemm_nt_add;
    d->embedding_fwd = cu_embedding_fwd;
    d->embedding_bwd = cu_embedding_bwd;
    d->rmsnorm_fwd = cu_rmsnorm_fwd;
    d->rmsnorm_bwd = cu_rmsnorm_bwd;
    d->rope_fwd = cu_rope_fwd;
    d->rope_bwd = cu_rope_bwd;
    d->attention_fwd = cu_attention_fwd;
    d->attention_bwd = cu_attention_bwd;
    d->attention_decode = NULL; /* no decode-attention kernel yet: generate recomputes the context, as --no-cache */
    d->swiglu_fwd = cu_swiglu_fwd;
    d->swiglu_bwd = cu_swiglu_bwd;
    d->xent_fwd_bwd = cu_xent;
    d->xent_part_stats = cu_xent_part_stats;
    d->xent_part_grad = cu_xent_part_grad;
    d->add = cu_add;
    d->scale = cu_scale;
    d->sumsq = cu_sumsq;
    d->adamw = cu_adamw;
    d->destroy = cu_destroy;
    return d;
}
