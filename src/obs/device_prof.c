/* device_prof.c — the timing wrapper around a device (prof.h): every op
 * forwards to the inner device; copies between host and device memory are
 * the region `transfer` and count their bytes (SDE BYTES_H2D / BYTES_D2H);
 * with kernel timers, compute ops are the regions kernel.KIND. */
#include "common.h"
#include "prof.h"
#include "sde.h"

typedef struct {
    lm_device d;    /* first: a prof_dev * is an lm_device * */
    lm_device *in;
    int timers;     /* log.kernel_timers */
    int async;      /* inner ops may still run after they return (not host-visible) */
} prof_dev;

#define P(d) ((prof_dev *)(d))
#define IN(d) (P(d)->in)

/* A compute op: timed only with kernel timers on the recording thread. On
 * an asynchronous device the stream is drained before (earlier work is not
 * this op's) and after (the op's own time). */
static inline int k_begin(lm_device *d, lm_region r) {
    prof_dev *p = P(d);
    if (!p->timers || !prof_on()) return 0;
    if (p->async) p->in->sync(p->in);
    prof_enter(r);
    return 1;
}
static inline void k_end(lm_device *d, lm_region r, int on) {
    if (!on) return;
    prof_dev *p = P(d);
    if (p->async) p->in->sync(p->in);
    prof_exit(r);
}

/* A copy to or from host memory: the backends return when it is complete;
 * on an asynchronous device the kernels queued before it are drained first
 * so that their time stays in the enclosing region. */
static inline int t_begin(lm_device *d) {
    if (!prof_on()) return 0;
    if (P(d)->async) IN(d)->sync(IN(d));
    prof_enter(PROF_TRANSFER);
    return 1;
}
static inline void t_end(int on) {
    if (on) prof_exit(PROF_TRANSFER);
}

#define KOP(kind, call)                                                                                           \
    do {                                                                                                         \
        int on_ = k_begin(d, kind);                                                                              \
        call;                                                                                                    \
        k_end(d, kind, on_);                                                                                     \
    } while (0)

/* ---- memory ---- */

static void *w_alloc(lm_device *d, size_t bytes) { return IN(d)->alloc(IN(d), bytes); }
static void w_free(lm_device *d, void *p) { IN(d)->free(IN(d), p); }
static void w_sync(lm_device *d) { IN(d)->sync(IN(d)); }
static size_t w_mem_info(lm_device *d, size_t *peak, int reset) { return IN(d)->mem_info(IN(d), peak, reset); }
static void *w_host_alloc(lm_device *d, size_t bytes) { return IN(d)->host_alloc(IN(d), bytes); }
static void w_host_free(lm_device *d, void *p) { IN(d)->host_free(IN(d), p); }
/* Asynchronous copies count their bytes when issued; their time is hidden
 * (or not) behind compute, so they are not a region: the wait for them is
 * (copy_wait, compute_wait: `transfer`). */
static uint64_t w_copy_async(lm_device *d, void *dst, const void *src, size_t bytes, int to_host) {
    sde_add(to_host ? LM_SDE_BYTES_D2H : LM_SDE_BYTES_H2D, (long long)bytes);
    return IN(d)->copy_async(IN(d), dst, src, bytes, to_host);
}
static int w_copy_done(lm_device *d, uint64_t t) { return IN(d)->copy_done(IN(d), t); }
static double w_copy_busy(lm_device *d) { return IN(d)->copy_busy(IN(d)); }
static void w_copy_wait(lm_device *d, uint64_t t) {
    int on = prof_on();
    if (on) prof_enter(PROF_TRANSFER);
    IN(d)->copy_wait(IN(d), t);
    if (on) prof_exit(PROF_TRANSFER);
}
static void w_compute_wait(lm_device *d, uint64_t t) {
    int on = prof_on() && P(d)->in->host_visible;
    if (on) prof_enter(PROF_TRANSFER);
    IN(d)->compute_wait(IN(d), t);
    if (on) prof_exit(PROF_TRANSFER);
}

static void w_to_device(lm_device *d, void *dst, const void *src, size_t bytes) {
    int on = t_begin(d);
    sde_add(LM_SDE_BYTES_H2D, (long long)bytes); /* inside the region */
    IN(d)->to_device(IN(d), dst, src, bytes);
    t_end(on);
}
static void w_to_host(lm_device *d, void *dst, const void *src, size_t bytes) {
    int on = t_begin(d);
    sde_add(LM_SDE_BYTES_D2H, (long long)bytes); /* inside the region */
    IN(d)->to_host(IN(d), dst, src, bytes);
    t_end(on);
}
static void w_upload_f32(lm_device *d, void *dst, const float *host, size_t n) {
    int on = t_begin(d);
    sde_add(LM_SDE_BYTES_H2D, (long long)(n * lm_dtype_size(d->dtype))); /* inside the region */
    IN(d)->upload_f32(IN(d), dst, host, n);
    t_end(on);
}
static void w_download_f32(lm_device *d, float *host, const void *src, size_t n) {
    int on = t_begin(d);
    sde_add(LM_SDE_BYTES_D2H, (long long)(n * lm_dtype_size(d->dtype))); /* inside the region */
    IN(d)->download_f32(IN(d), host, src, n);
    t_end(on);
}

static void w_copy(lm_device *d, void *dst, const void *src, size_t bytes) {
    KOP(PROF_K_ELEMENTWISE, IN(d)->copy(IN(d), dst, src, bytes));
}
static void w_zero(lm_device *d, void *p, size_t bytes) { KOP(PROF_K_ELEMENTWISE, IN(d)->zero(IN(d), p, bytes)); }
static void w_convert(lm_device *d, void *dst, lm_dtype dt, const void *src, lm_dtype st, size_t n) {
    KOP(PROF_K_ELEMENTWISE, IN(d)->convert(IN(d), dst, dt, src, st, n));
}

/* ---- compute ---- */

static void w_gemm_nt(lm_device *d, void *y, const void *x, const void *w, int M, int N, int K, float beta) {
    KOP(PROF_K_GEMM, IN(d)->gemm_nt(IN(d), y, x, w, M, N, K, beta));
}
static void w_gemm_nn(lm_device *d, void *dx, const void *dy, const void *w, int M, int N, int K, float beta) {
    KOP(PROF_K_GEMM, IN(d)->gemm_nn(IN(d), dx, dy, w, M, N, K, beta));
}
static void w_gemm_tn(lm_device *d, void *dw, const void *dy, const void *x, int M, int N, int K, float beta) {
    KOP(PROF_K_GEMM, IN(d)->gemm_tn(IN(d), dw, dy, x, M, N, K, beta));
}
static void w_gemm_nt_add(lm_device *d, void *y, const void *res, const void *x, const void *w, int M, int N, int K) {
    KOP(PROF_K_GEMM, IN(d)->gemm_nt_add(IN(d), y, res, x, w, M, N, K));
}
static void w_embedding_fwd(lm_device *d, void *out, const void *table, const int32_t *ids, int R, int D) {
    KOP(PROF_K_EMBEDDING, IN(d)->embedding_fwd(IN(d), out, table, ids, R, D));
}
static void w_embedding_bwd(lm_device *d, void *dtable, const void *dout, const int32_t *ids, int R, int D) {
    KOP(PROF_K_EMBEDDING, IN(d)->embedding_bwd(IN(d), dtable, dout, ids, R, D));
}
static void w_rmsnorm_fwd(lm_device *d, void *y, float *rstd, const void *x, const void *w, int R, int D, float eps) {
    KOP(PROF_K_NORM, IN(d)->rmsnorm_fwd(IN(d), y, rstd, x, w, R, D, eps));
}
static void w_rmsnorm_bwd(lm_device *d, void *dx, void *dw, const void *dy, const void *x, const void *w,
                          const float *rstd, int R, int D) {
    KOP(PROF_K_NORM, IN(d)->rmsnorm_bwd(IN(d), dx, dw, dy, x, w, rstd, R, D));
}
static void w_rope_fwd(lm_device *d, void *x, const float *cos, const float *sin, int R, int T, int nh, int hd) {
    KOP(PROF_K_ROPE, IN(d)->rope_fwd(IN(d), x, cos, sin, R, T, nh, hd));
}
static void w_rope_bwd(lm_device *d, void *dx, const float *cos, const float *sin, int R, int T, int nh, int hd) {
    KOP(PROF_K_ROPE, IN(d)->rope_bwd(IN(d), dx, cos, sin, R, T, nh, hd));
}
static void w_attention_fwd(lm_device *d, void *o, float *lse, const void *q, const void *k, const void *v, int B,
                            int T, int H, int KV, int hd) {
    KOP(PROF_K_ATTENTION, IN(d)->attention_fwd(IN(d), o, lse, q, k, v, B, T, H, KV, hd));
}
static void w_attention_decode(lm_device *d, void *o, const void *q, const void *kc, const void *vc, int n, int p0,
                               int H, int KV, int hd) {
    KOP(PROF_K_ATTENTION, IN(d)->attention_decode(IN(d), o, q, kc, vc, n, p0, H, KV, hd));
}
static void w_attention_bwd(lm_device *d, void *dq, void *dk, void *dv, const void *dout, const void *o,
                            const float *lse, const void *q, const void *k, const void *v, int B, int T, int H, int KV,
                            int hd) {
    KOP(PROF_K_ATTENTION, IN(d)->attention_bwd(IN(d), dq, dk, dv, dout, o, lse, q, k, v, B, T, H, KV, hd));
}
static void w_swiglu_fwd(lm_device *d, void *out, const void *g, const void *u, size_t n) {
    KOP(PROF_K_SWIGLU, IN(d)->swiglu_fwd(IN(d), out, g, u, n));
}
static void w_swiglu_bwd(lm_device *d, void *dg, void *du, const void *dout, const void *g, const void *u, size_t n) {
    KOP(PROF_K_SWIGLU, IN(d)->swiglu_bwd(IN(d), dg, du, dout, g, u, n));
}
static double w_xent_fwd_bwd(lm_device *d, void *logits, const int32_t *targets, int R, int V, float scale) {
    double r;
    KOP(PROF_K_XENT, r = IN(d)->xent_fwd_bwd(IN(d), logits, targets, R, V, scale));
    return r;
}
static void w_xent_part_stats(lm_device *d, const void *logits, const int32_t *tloc, int R, int V, int Vv,
                              float *stats) {
    KOP(PROF_K_XENT, IN(d)->xent_part_stats(IN(d), logits, tloc, R, V, Vv, stats));
}
static void w_xent_part_grad(lm_device *d, void *logits, const int32_t *tloc, const float *lse, int R, int V, int Vv,
                             float scale) {
    KOP(PROF_K_XENT, IN(d)->xent_part_grad(IN(d), logits, tloc, lse, R, V, Vv, scale));
}
static void w_add(lm_device *d, void *y, const void *x, size_t n) { KOP(PROF_K_ELEMENTWISE, IN(d)->add(IN(d), y, x, n)); }
static void w_scale(lm_device *d, void *x, size_t n, float s) {
    KOP(PROF_K_ELEMENTWISE, IN(d)->scale(IN(d), x, n, s));
}
static double w_sumsq(lm_device *d, const void *x, size_t n) {
    double r;
    KOP(PROF_K_ELEMENTWISE, r = IN(d)->sumsq(IN(d), x, n));
    return r;
}
static void w_adamw(lm_device *d, const lm_adamw_seg *segs, int nseg, float gscale, float lr, float b1, float b2,
                    float eps, long step) {
    KOP(PROF_K_ADAMW, IN(d)->adamw(IN(d), segs, nseg, gscale, lr, b1, b2, eps, step));
}

static void w_destroy(lm_device *d) {
    device_destroy(IN(d));
    lm_free(d);
}

lm_device *device_prof_inner(lm_device *d) { return d && d->destroy == w_destroy ? IN(d) : d; }

lm_device *device_prof_wrap(lm_device *in, int kernel_timers) {
    if (!in) return NULL;
    prof_dev *p = lm_alloc(sizeof *p);
    lm_device *d = &p->d;
    p->in = in;
    p->timers = kernel_timers;
    p->async = !in->host_visible;
    d->name = in->name;
    d->dtype = in->dtype;
    d->host_visible = in->host_visible;
    d->capacity = in->capacity;
    d->impl = in->impl;
    d->destroy = w_destroy;
/* the wrapper's op where the inner device has one, NULL where it has none */
#define W(op) d->op = in->op ? w_##op : NULL
    W(alloc); W(free); W(to_device); W(to_host); W(copy); W(sync); W(zero); W(mem_info);
    W(host_alloc); W(host_free); W(copy_async); W(copy_done); W(copy_wait); W(compute_wait); W(copy_busy);
    W(convert); W(upload_f32); W(download_f32);
    W(gemm_nt); W(gemm_nn); W(gemm_tn); W(gemm_nt_add);
    W(embedding_fwd); W(embedding_bwd); W(rmsnorm_fwd); W(rmsnorm_bwd); W(rope_fwd); W(rope_bwd);
    W(attention_fwd); W(attention_bwd); W(attention_decode); W(swiglu_fwd); W(swiglu_bwd);
    W(xent_fwd_bwd); W(xent_part_stats); W(xent_part_grad);
    W(add); W(scale); W(sumsq); W(adamw);
#undef W
    return d;
}
