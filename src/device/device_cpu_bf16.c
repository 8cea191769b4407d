/* device_cpu_bf16.c — the CPU backend that computes like the CUDA one.
 *
 * Compute dtype bf16: activations, weights, gradients and logits are bf16;
 * rstd, lse, RoPE tables, master weights and moments stay float32. Every op
 * is defined as CUDA's are: widen the bf16 inputs to float32, run the op in
 * float32, round each output to bf16 once (nearest even). This backend does
 * exactly that around the float32 reference backend (device_cpu.c, the
 * `inner` device): inputs are widened into float32 scratch buffers, the inner
 * op runs on them, the outputs are rounded back. An op that accumulates into
 * its output (gemm with beta != 0, gemm_nt_add's residual, embedding_bwd,
 * rmsnorm_bwd's dx and dw, add) has that output widened first, so the sum
 * happens in float32 and is rounded once.
 *
 * The results are thus bit for bit "round(f32 reference op on the widened
 * inputs)"; against the CUDA backend they differ only by float32 summation
 * order inside an op (before the single rounding).
 *
 * Scratch: a few float32 buffers kept in the device state, grown on demand
 * and freed by the destroy hook. They are host memory outside `capacity`
 * (which counts the bytes the model allocates, as on CUDA, where the
 * float32 copies do not exist). One op runs at a time per device. */
#include "bf16.h"
#include "common.h"
#include "device.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define NSCR 8            /* attention_bwd: dout, o, q, k, v, dq, dk, dv */
#define PAR_MIN 32768     /* as in device_cpu.c */

typedef struct {
    lm_device *inner;     /* float32 reference backend */
    size_t used;          /* bytes allocated through this device */
    size_t peak;          /* the most used has been (mem_info) */
    float *scr[NSCR];     /* float32 scratch */
    size_t cap[NSCR];     /* their sizes, in floats */
    int32_t *ibuf;        /* embedding_bwd: id map, unique ids, compact ids */
    size_t icap;
} bf_state;

static bf_state *ST(lm_device *d) { return d->impl; }

/* Scratch buffer `slot` of at least n floats (contents undefined). */
static float *scratch(lm_device *d, int slot, size_t n) {
    bf_state *st = ST(d);
    if (st->cap[slot] < n) {
        lm_free(st->scr[slot]);
        size_t c = n + n / 4; /* some headroom for shapes that creep up */
        st->scr[slot] = lm_alloc(c * sizeof(float));
        st->cap[slot] = c;
    }
    return st->scr[slot];
}

/* Scratch slot filled with the bf16 array src widened. */
static float *widen(lm_device *d, int slot, const void *src, size_t n) {
    float *f = scratch(d, slot, n);
    lm_bf16_to_f32_n(f, src, n);
    return f;
}

static void narrow(void *dst, const float *src, size_t n) { lm_f32_to_bf16_n(dst, src, n); }

/* ------------------------------------------------------------------ memory */

/* As cpu_alloc: a 64-byte header holds the size (keeps the payload
 * 64-aligned), the total is checked against capacity. */
static void *bf_alloc(lm_device *d, size_t bytes) {
    bf_state *st = ST(d);
    if (d->capacity > 0 && st->used + bytes > d->capacity)
        lm_abort(LM_ERR_RUNTIME, "device cpu-bf16: out of memory (%zu bytes requested, %zu of %zu in use)",
                 bytes, st->used, d->capacity);
    char *raw = lm_alloc(bytes + 64);
    *(size_t *)raw = bytes;
    st->used += bytes;
    if (st->used > st->peak) st->peak = st->used;
    return raw + 64;
}

/* Transfers: the float32 backend's (its host memory and copy tickets). */
static void *bf_host_alloc(lm_device *d, size_t bytes) { return ST(d)->inner->host_alloc(ST(d)->inner, bytes); }
static void bf_host_free(lm_device *d, void *p) { ST(d)->inner->host_free(ST(d)->inner, p); }
static uint64_t bf_copy_async(lm_device *d, void *dst, const void *src, size_t bytes, int to_host) {
    return ST(d)->inner->copy_async(ST(d)->inner, dst, src, bytes, to_host);
}
static int bf_copy_done(lm_device *d, uint64_t t) { return ST(d)->inner->copy_done(ST(d)->inner, t); }
static void bf_copy_wait(lm_device *d, uint64_t t) { ST(d)->inner->copy_wait(ST(d)->inner, t); }
static void bf_compute_wait(lm_device *d, uint64_t t) { ST(d)->inner->compute_wait(ST(d)->inner, t); }
static double bf_copy_busy(lm_device *d) { return ST(d)->inner->copy_busy(ST(d)->inner); }

static size_t bf_mem_info(lm_device *d, size_t *peak, int reset) {
    bf_state *st = ST(d);
    if (peak) *peak = st->peak;
    if (reset) st->peak = st->used;
    return st->used;
}

static void bf_free(lm_device *d, void *p) {
    if (!p) return;
    char *raw = (char *)p - 64;
    ST(d)->used -= *(size_t *)raw;
    lm_free(raw);
}

static void bf_copy(lm_device *d, void *dst, const void *src, size_t bytes) {
    (void)d;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

static void bf_zero(lm_device *d, void *p, size_t bytes) {
    (void)d;
    if (bytes) memset(p, 0, bytes);
}

static void bf_sync(lm_device *d) { (void)d; }

/* ------------------------------------------------------------- conversions */

/* Equal dtypes: a copy; otherwise widen or round (bf16.h). */
static void bf_convert(lm_device *d, void *dst, lm_dtype dt, const void *src, lm_dtype st, size_t n) {
    if (dt == st)
        bf_copy(d, dst, src, n * lm_dtype_size(dt));
    else if (dt == LM_BF16)
        lm_f32_to_bf16_n(dst, src, n);
    else
        lm_bf16_to_f32_n(dst, src, n);
}

static void bf_upload_f32(lm_device *d, void *dst, const float *host, size_t n) {
    (void)d;
    lm_f32_to_bf16_n(dst, host, n);
}

static void bf_download_f32(lm_device *d, float *host, const void *src, size_t n) {
    (void)d;
    lm_bf16_to_f32_n(host, src, n);
}

/* ------------------------------------------------------------------- GEMMs */

/* One GEMM of the inner device on widened operands: out (n_out elements)
 * = A (n_a) . B (n_b) in the form `fn` computes. beta = 0 overwrites: out is
 * not read (BLAS does not read C when beta = 0), so it is not widened. */
typedef void (*gemm_fn)(lm_device *, void *, const void *, const void *, int, int, int, float);
static void gemm3(lm_device *d, gemm_fn fn, void *out, size_t n_out, const void *a, size_t n_a, const void *b,
                  size_t n_b, int M, int N, int K, float beta) {
    float *as = widen(d, 0, a, n_a), *bs = widen(d, 1, b, n_b);
    float *os = beta != 0.0f ? widen(d, 2, out, n_out) : scratch(d, 2, n_out);
    fn(ST(d)->inner, os, as, bs, M, N, K, beta);
    narrow(out, os, n_out);
}

static void bf_gemm_nt(lm_device *d, void *y, const void *x, const void *w, int M, int N, int K, float beta) {
    gemm3(d, ST(d)->inner->gemm_nt, y, (size_t)M * N, x, (size_t)M * K, w, (size_t)N * K, M, N, K, beta);
}

static void bf_gemm_nn(lm_device *d, void *dx, const void *dy, const void *w, int M, int N, int K, float beta) {
    gemm3(d, ST(d)->inner->gemm_nn, dx, (size_t)M * K, dy, (size_t)M * N, w, (size_t)N * K, M, N, K, beta);
}

static void bf_gemm_tn(lm_device *d, void *dw, const void *dy, const void *x, int M, int N, int K, float beta) {
    gemm3(d, ST(d)->inner->gemm_tn, dw, (size_t)N * K, dy, (size_t)M * N, x, (size_t)M * K, M, N, K, beta);
}

/* y = res + x w^T: res widened into y's scratch, the residual add happens in
 * float32 inside the inner GEMM (beta = 1), one rounding. */
static void bf_gemm_nt_add(lm_device *d, void *y, const void *res, const void *x, const void *w, int M, int N,
                           int K) {
    size_t my = (size_t)M * N;
    float *xs = widen(d, 0, x, (size_t)M * K), *ws = widen(d, 1, w, (size_t)N * K);
    float *ys = widen(d, 2, res, my);
    lm_device *in = ST(d)->inner;
    in->gemm_nt_add(in, ys, ys, xs, ws, M, N, K);
    narrow(y, ys, my);
}

/* --------------------------------------------------------------- embedding */

/* A gather: widening a bf16 value and rounding it back is the identity, so
 * the rows are copied as they are (the table's row count is not known here,
 * and widening the whole table for R rows would be wasteful). A negative id
 * gives a row of zeros (bf16 0 is all-zero bits), as on the float32 device. */
static void bf_embedding_fwd(lm_device *d, void *out, const void *table, const int32_t *ids, int R, int D) {
    (void)d;
    const size_t row = (size_t)D * sizeof(uint16_t);
#pragma omp parallel for schedule(static) if ((size_t)R * D > PAR_MIN)
    for (int r = 0; r < R; r++) {
        if (ids[r] < 0) memset((char *)out + (size_t)r * row, 0, row);
        else memcpy((char *)out + (size_t)r * row, (const char *)table + (size_t)ids[r] * row, row);
    }
}

/* dtable[ids[r],:] += dout[r,:], rows with a negative id skipped. Only the
 * rows that ids touch are widened: the U distinct ids >= 0 get compact
 * numbers 0..U-1 (through a map indexed by id, set only at the touched ids),
 * their rows are gathered into a [U, D] float32 table, the inner op
 * accumulates onto it with the compact ids (-1 where the id is negative: the
 * inner op skips that row too), and the U rows are rounded back to their
 * places. */
static void bf_embedding_bwd(lm_device *d, void *dtable, const void *dout, const int32_t *ids, int R, int D) {
    if (R <= 0 || D <= 0) return;
    bf_state *st = ST(d);
    int32_t maxid = -1;
    for (int r = 0; r < R; r++)
        if (ids[r] > maxid) maxid = ids[r];
    if (maxid < 0) return; /* no row of this table */
    size_t need = (size_t)maxid + 1 + 2 * (size_t)R;
    if (st->icap < need) {
        lm_free(st->ibuf);
        st->ibuf = lm_alloc(need * sizeof(int32_t));
        st->icap = need;
    }
    int32_t *map = st->ibuf, *uniq = map + maxid + 1, *cid = uniq + R;
    for (int r = 0; r < R; r++)
        if (ids[r] >= 0) map[ids[r]] = -1;
    int U = 0;
    for (int r = 0; r < R; r++) {
        if (ids[r] < 0) {
            cid[r] = -1;
            continue;
        }
        if (map[ids[r]] < 0) {
            map[ids[r]] = U;
            uniq[U++] = ids[r];
        }
        cid[r] = map[ids[r]];
    }
    const uint16_t *tab = dtable;
    float *ts = scratch(d, 0, (size_t)U * D);
    for (int u = 0; u < U; u++) lm_bf16_to_f32_n(ts + (size_t)u * D, tab + (size_t)uniq[u] * D, (size_t)D);
    float *dos = widen(d, 1, dout, (size_t)R * D);
    st->inner->embedding_bwd(st->inner, ts, dos, cid, R, D);
    uint16_t *out = dtable;
    for (int u = 0; u < U; u++) narrow(out + (size_t)uniq[u] * D, ts + (size_t)u * D, (size_t)D);
}

/* ----------------------------------------------------------------- RMSNorm */

static void bf_rmsnorm_fwd(lm_device *d, void *y, float *rstd, const void *x, const void *w, int R, int D,
                           float eps) {
    size_t n = (size_t)R * D;
    float *xs = widen(d, 0, x, n), *ws = widen(d, 1, w, (size_t)D), *ys = scratch(d, 2, n);
    lm_device *in = ST(d)->inner;
    in->rmsnorm_fwd(in, ys, rstd, xs, ws, R, D, eps);
    narrow(y, ys, n);
}

/* dx and dw accumulate: both widened first. */
static void bf_rmsnorm_bwd(lm_device *d, void *dx, void *dw, const void *dy, const void *x, const void *w,
                           const float *rstd, int R, int D) {
    size_t n = (size_t)R * D;
    float *dys = widen(d, 0, dy, n), *xs = widen(d, 1, x, n), *ws = widen(d, 2, w, (size_t)D);
    float *dxs = widen(d, 3, dx, n), *dws = widen(d, 4, dw, (size_t)D);
    lm_device *in = ST(d)->inner;
    in->rmsnorm_bwd(in, dxs, dws, dys, xs, ws, rstd, R, D);
    narrow(dx, dxs, n);
    narrow(dw, dws, (size_t)D);
}

/* -------------------------------------------------------------------- RoPE */

static void bf_rope_fwd(lm_device *d, void *x, const float *cs, const float *sn, int R, int T, int nh, int hd) {
    size_t n = (size_t)R * nh * hd;
    float *xs = widen(d, 0, x, n);
    lm_device *in = ST(d)->inner;
    in->rope_fwd(in, xs, cs, sn, R, T, nh, hd);
    narrow(x, xs, n);
}

static void bf_rope_bwd(lm_device *d, void *dx, const float *cs, const float *sn, int R, int T, int nh, int hd) {
    size_t n = (size_t)R * nh * hd;
    float *xs = widen(d, 0, dx, n);
    lm_device *in = ST(d)->inner;
    in->rope_bwd(in, xs, cs, sn, R, T, nh, hd);
    narrow(dx, xs, n);
}

/* --------------------------------------------------------------- attention */

static void bf_attention_fwd(lm_device *d, void *o, float *lse, const void *q, const void *k, const void *v,
                             int B, int T, int H, int KV, int hd) {
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *qs = widen(d, 0, q, nq), *ks = widen(d, 1, k, nk), *vs = widen(d, 2, v, nk);
    float *os = scratch(d, 3, nq);
    lm_device *in = ST(d)->inner;
    in->attention_fwd(in, os, lse, qs, ks, vs, B, T, H, KV, hd);
    narrow(o, os, nq);
}

static void bf_attention_bwd(lm_device *d, void *dq, void *dk, void *dv, const void *dout, const void *o,
                             const float *lse, const void *q, const void *k, const void *v, int B, int T, int H,
                             int KV, int hd) {
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *dos = widen(d, 0, dout, nq), *os = widen(d, 1, o, nq), *qs = widen(d, 2, q, nq);
    float *ks = widen(d, 3, k, nk), *vs = widen(d, 4, v, nk);
    float *dqs = scratch(d, 5, nq), *dks = scratch(d, 6, nk), *dvs = scratch(d, 7, nk);
    lm_device *in = ST(d)->inner;
    in->attention_bwd(in, dqs, dks, dvs, dos, os, lse, qs, ks, vs, B, T, H, KV, hd);
    narrow(dq, dqs, nq);
    narrow(dk, dks, nk);
    narrow(dv, dvs, nk);
}

/* Decode attention: q and the cache rows widened, the float32 op, o
 * rounded once. */
static void bf_attention_decode(lm_device *d, void *o, const void *q, const void *kc, const void *vc, int n, int p0,
                                int H, int KV, int hd) {
    size_t nq = (size_t)n * H * hd, nk = (size_t)(p0 + n) * KV * hd;
    float *qs = widen(d, 0, q, nq), *ks = widen(d, 1, kc, nk), *vs = widen(d, 2, vc, nk);
    float *os = scratch(d, 3, nq);
    lm_device *in = ST(d)->inner;
    in->attention_decode(in, os, qs, ks, vs, n, p0, H, KV, hd);
    narrow(o, os, nq);
}

/* ------------------------------------------------------------------ SwiGLU */

static void bf_swiglu_fwd(lm_device *d, void *out, const void *g, const void *u, size_t n) {
    float *gs = widen(d, 0, g, n), *us = widen(d, 1, u, n), *os = scratch(d, 2, n);
    lm_device *in = ST(d)->inner;
    in->swiglu_fwd(in, os, gs, us, n);
    narrow(out, os, n);
}

static void bf_swiglu_bwd(lm_device *d, void *dg, void *du, const void *dout, const void *g, const void *u,
                          size_t n) {
    float *dos = widen(d, 0, dout, n), *gs = widen(d, 1, g, n), *us = widen(d, 2, u, n);
    float *dgs = scratch(d, 3, n), *dus = scratch(d, 4, n);
    lm_device *in = ST(d)->inner;
    in->swiglu_bwd(in, dgs, dus, dos, gs, us, n);
    narrow(dg, dgs, n);
    narrow(du, dus, n);
}

/* ----------------------------------------------------------- cross-entropy */

/* The loss comes from the widened logits (float32 softmax, double sum). */
static double bf_xent_fwd_bwd(lm_device *d, void *logits, const int32_t *targets, int R, int V, float scale) {
    size_t n = (size_t)R * V;
    float *ls = widen(d, 0, logits, n);
    lm_device *in = ST(d)->inner;
    double loss = in->xent_fwd_bwd(in, ls, targets, R, V, scale);
    narrow(logits, ls, n);
    return loss;
}

/* Vocab-parallel cross-entropy: the whole slice (padding columns too, which
 * the inner op never reads into a result) widened; the statistics are
 * float32 outputs of the inner op, written straight into the host array. */
static void bf_xent_part_stats(lm_device *d, const void *logits, const int32_t *tloc, int R, int V, int Vv,
                               float *stats) {
    float *ls = widen(d, 0, logits, (size_t)R * V);
    lm_device *in = ST(d)->inner;
    in->xent_part_stats(in, ls, tloc, R, V, Vv, stats);
}

static void bf_xent_part_grad(lm_device *d, void *logits, const int32_t *tloc, const float *lse, int R, int V,
                              int Vv, float scale) {
    size_t n = (size_t)R * V;
    float *ls = widen(d, 0, logits, n);
    lm_device *in = ST(d)->inner;
    in->xent_part_grad(in, ls, tloc, lse, R, V, Vv, scale);
    narrow(logits, ls, n);
}

/* ------------------------------------------------------------- elementwise */

static void bf_add(lm_device *d, void *y, const void *x, size_t n) {
    float *ys = widen(d, 0, y, n), *xs = widen(d, 1, x, n);
    lm_device *in = ST(d)->inner;
    in->add(in, ys, xs, n);
    narrow(y, ys, n);
}

static void bf_scale(lm_device *d, void *x, size_t n, float s) {
    float *xs = widen(d, 0, x, n);
    lm_device *in = ST(d)->inner;
    in->scale(in, xs, n, s);
    narrow(x, xs, n);
}

/* sum of x^2 over the widened values, in double (each square is exact in
 * double: 8-bit mantissas) */
static double bf_sumsq(lm_device *d, const void *x_, size_t n) {
    (void)d;
    const uint16_t *x = x_;
    double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        double v = lm_bf16_to_f32(x[i]);
        s += v * v;
    }
    return s;
}

/* Per segment: g widened, the inner float32 AdamW updates master, m, v (its
 * w = master, so it writes nothing else), then w = bf16(master). */
static void bf_adamw(lm_device *d, const lm_adamw_seg *segs, int nseg, float gscale, float lr, float b1, float b2,
                     float eps, long step) {
    lm_device *in = ST(d)->inner;
    for (int i = 0; i < nseg; i++) {
        const lm_adamw_seg *s = &segs[i];
        if (s->w == (void *)s->master)
            lm_abort(LM_ERR_RUNTIME, "device cpu-bf16: adamw segment %d has w == master (w must be bf16)", i);
        lm_adamw_seg f = *s;
        f.g = widen(d, 0, s->g, s->n);
        f.w = f.master;
        in->adamw(in, &f, 1, gscale, lr, b1, b2, eps, step);
        if (s->w) narrow(s->w, s->master, s->n);
    }
}

/* ------------------------------------------------------------------ create */

/* device_destroy calls this (d->destroy): scratch, the inner device, the
 * state and the device itself. */
static void bf_destroy(lm_device *d) {
    bf_state *st = ST(d);
    for (int i = 0; i < NSCR; i++) lm_free(st->scr[i]);
    lm_free(st->ibuf);
    device_destroy(st->inner);
    lm_free(st);
    lm_free(d);
}

lm_device *device_cpu_bf16_create(size_t capacity) {
    lm_device *inner = device_cpu_create(0);
    if (!inner) return NULL;
    lm_device *d = lm_alloc(sizeof *d);
    bf_state *st = lm_alloc(sizeof *st);
    st->inner = inner;
    d->impl = st;
    d->destroy = bf_destroy;
    d->name = "cpu-bf16";
    d->dtype = LM_BF16;
    d->host_visible = 1;
    d->capacity = capacity;
    d->alloc = bf_alloc;
    d->free = bf_free;
    d->to_device = bf_copy;
    d->to_host = bf_copy;
    d->copy = bf_copy;
    d->sync = bf_sync;
    d->mem_info = bf_mem_info;
    d->host_alloc = bf_host_alloc;
    d->host_free = bf_host_free;
    d->copy_async = bf_copy_async;
    d->copy_done = bf_copy_done;
    d->copy_wait = bf_copy_wait;
    d->compute_wait = bf_compute_wait;
    d->copy_busy = bf_copy_busy;
    d->zero = bf_zero;
    d->convert = bf_convert;
    d->upload_f32 = bf_upload_f32;
    d->download_f32 = bf_download_f32;
    d->gemm_nt = bf_gemm_nt;
    d->gemm_nn = bf_gemm_nn;
    d->gemm_tn = bf_gemm_tn;
    d->gemm_nt_add = bf_gemm_nt_add;
    d->embedding_fwd = bf_embedding_fwd;
    d->embedding_bwd = bf_embedding_bwd;
    d->rmsnorm_fwd = bf_rmsnorm_fwd;
    d->rmsnorm_bwd = bf_rmsnorm_bwd;
    d->rope_fwd = bf_rope_fwd;
    d->rope_bwd = bf_rope_bwd;
    d->attention_fwd = bf_attention_fwd;
    d->attention_bwd = bf_attention_bwd;
    d->attention_decode = bf_attention_decode;
    d->swiglu_fwd = bf_swiglu_fwd;
    d->swiglu_bwd = bf_swiglu_bwd;
    d->xent_fwd_bwd = bf_xent_fwd_bwd;
    d->xent_part_stats = bf_xent_part_stats;
    d->xent_part_grad = bf_xent_part_grad;
    d->add = bf_add;
    d->scale = bf_scale;
    d->sumsq = bf_sumsq;
    d->adamw = bf_adamw;
    return d;
}
