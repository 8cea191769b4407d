/* test_zero_mpi.c — the ZeRO manager (src/optim/zero.h) on 4 ranks, run by
 * tests/t/13-mpi-zero.t under `mpirun -np 4`.
 *
 * Eleven tensors (2-D and 1-D, sizes not multiples of 16, so chunk shards cut
 * them in the middle) are chunked with chunks_build(ps, 16 * dp). A fake
 * backward drives the gradient hooks for 2 micro-steps of 2 optimizer steps:
 * each rank ADDs a deterministic rank-dependent gradient into the buffer
 * hooks->grad returns, then calls hooks->done. The gradients are multiples of
 * 1/128 small enough that every sum of them is exact in float, so the
 * reference is exact whatever order the reduction adds in: the summed
 * gradient of the data-parallel group, set on a private copy of the params,
 * and the plain serial adamw_step (src/optim/optim.h).
 *
 * Checked for stages 0, 1, 2, overlap on and off, on dp = 4 (the world),
 * dp = 2 (topo_create's data-parallel groups {0,2},{1,3}) and dp = 1, for
 * several orders of the backward (reverse; a tied-style tensor whose gradient
 * is taken first and marked done last; shuffled; every gradient taken before
 * any is done): zero_reduced_grad_sumsq, the weights after each update and the
 * moments (through the checkpoint pieces) against the reference, replicas
 * identical, every configuration giving the same weights; the bytes each
 * (micro-)step communicates and when (overlap: a chunk goes out as soon as its
 * last tensor is done); zero_memory_bytes's formula and the bucket pool being
 * recycled; checkpoint pieces covering every element exactly once with the
 * right data; zero_gather_loaded; zero_poison_grad; no memory left behind;
 * chunks left undone at micro_end reduced in the same order on every rank.
 *
 * cmocka on every rank, TAP from rank 0 only; each test ends with agree(), so
 * every rank passes or fails it together (no rank is left in a collective). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "chunks.h"
#include "comm.h"
#include "common.h"
#include "deck.h"
#include "device.h"
#include "optim.h"
#include "topo.h"
#include "zero.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank, g_ok = 1;

static void check_(int c, const char *expr, int line) {
    if (c) return;
    fprintf(stderr, "rank %d: test_zero_mpi.c:%d: check failed: %s\n", g_rank, line, expr);
    g_ok = 0;
}
#define CHECK(c) check_((c) ? 1 : 0, #c, __LINE__)

static void agree(void) {
    int ok = g_ok;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    g_ok = 1;
    assert_true(ok);
}

/* ------------------------------------------------------------ the model */

typedef struct {
    const char *name;
    int ndim, rows, cols;
} tdef;
enum { NT = 11 };
static const tdef TENSORS[NT] = {
    {"embed", 2, 23, 13},   {"l0.norm", 1, 13, 1}, {"l0.q", 2, 13, 13}, {"l0.up", 2, 29, 13},
    {"l0.down", 2, 13, 29}, {"l1.norm", 1, 13, 1}, {"l1.q", 2, 13, 13}, {"l1.up", 2, 29, 13},
    {"l1.down", 2, 13, 29}, {"norm", 1, 13, 1},    {"head", 2, 23, 13},
};

static float w0_of(int i, size_t k) { return 0.01f * (float)((int)((i * 31 + k * 7) % 23) - 11); }

static void build(lm_params *ps, int dp) {
    memset(ps, 0, sizeof *ps);
    for (int i = 0; i < NT; i++) params_add(ps, TENSORS[i].name, TENSORS[i].ndim, TENSORS[i].rows, TENSORS[i].cols);
    chunks_build(ps, (size_t)16 * (size_t)dp);
    for (int i = 0; i < ps->n; i++)
        for (size_t k = 0; k < ps->p[i].numel; k++) ((float *)ps->p[i].w)[k] = w0_of(i, k);
}

/* The gradient world rank r adds in optimizer step s, micro-step u, to
 * element k of tensor i: a multiple of 1/64 in [-9/64, 9/64] (halved for the
 * tied-style tensor: 1/128), so all sums of them are exact in float. */
static float grad_of(int r, int s, int u, int i, size_t k) {
    return (float)((int)((r * 7 + s * 11 + u * 3 + i * 5 + k * 13) % 19) - 9) / 64.0f;
}

static const double LR[2] = {1e-2, 2e-2}, GSCALE[2] = {0.5, 0.8};
static lm_config g_cfg;
static lm_adamw_hp g_hp; /* g_cfg's, built once in main */
static lm_device *g_dev;

/* ------------------------------------------------------- group kinds */

enum { GK_WORLD, GK_TOPO, GK_SINGLE, NGK };
static const char *GK_NAME[NGK] = {"dp 4 (world)", "dp 2 (topo dp groups)", "dp 1"};
typedef struct {
    const lm_group *g;
    int dp, member[4];
    /* the serial reference for this group's summed gradient */
    size_t arena;
    float *w1, *w2, *m2, *v2; /* weights after steps 1, 2; moments after step 2 */
    double ss[2];             /* gradient sum of squares of steps 1, 2 */
    float *final[64];         /* weights each configuration ended with */
} gkind;
static gkind GK[NGK];
static lm_topo g_topo;
static lm_group *g_single;

static float *arena_copy(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

static void reference(gkind *k) {
    lm_params ref;
    build(&ref, k->dp);
    params_alloc_state(&ref);
    k->arena = ref.arena;
    for (int s = 0; s < 2; s++) {
        double ss = 0.0;
        for (int i = 0; i < ref.n; i++)
            for (size_t e = 0; e < ref.p[i].numel; e++) {
                float g = 0.0f;
                for (int j = 0; j < k->dp; j++)
                    for (int u = 0; u < 2; u++) g += grad_of(k->member[j], s, u, i, e);
                ((float *)ref.p[i].g)[e] = g;
                ss += (double)g * (double)g;
            }
        k->ss[s] = ss;
        adamw_step(g_dev, &ref, &g_hp, LR[s], GSCALE[s], s + 1);
        if (s == 0) k->w1 = arena_copy(ref.w, ref.arena);
    }
    k->w2 = arena_copy(ref.w, ref.arena);
    k->m2 = arena_copy(ref.m, ref.arena);
    k->v2 = arena_copy(ref.v, ref.arena);
    params_free(&ref);
}

static void kinds_make(void) {
    lm_group *w = comm_world();
    int r = w->rank;
    topo_create(&g_topo, 2, 2, 1); /* dp groups stride by tp: {0,2}, {1,3} */
    g_single = comm_split(w, r, 0);
    GK[GK_WORLD] = (gkind){.g = w, .dp = 4, .member = {0, 1, 2, 3}};
    GK[GK_TOPO] = (gkind){.g = g_topo.dp_group, .dp = 2, .member = {r % 2, r % 2 + 2}};
    GK[GK_SINGLE] = (gkind){.g = g_single, .dp = 1, .member = {r}};
    for (int k = 0; k < NGK; k++) reference(&GK[k]);
}

static void kinds_free(void) {
    for (int k = 0; k < NGK; k++) {
        free(GK[k].w1);
        free(GK[k].w2);
        free(GK[k].m2);
        free(GK[k].v2);
        for (int c = 0; c < 64; c++) free(GK[k].final[c]);
    }
    comm_free(g_single);
    topo_destroy(&g_topo);
}

/* ------------------------------------------------------------ checks */

static int close_to(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-12; }

/* max |a - b| over the tensors' elements; *bad = elements off by more than
 * 1e-6 relative */
static double arena_diff(const lm_params *ps, const float *a, const float *b, long *bad) {
    double mx = 0.0;
    *bad = 0;
    for (int i = 0; i < ps->n; i++)
        for (size_t e = 0; e < ps->p[i].numel; e++) {
            size_t o = ps->p[i].offset + e;
            double d = fabs((double)a[o] - (double)b[o]);
            if (d > mx) mx = d;
            if (!close_to(a[o], b[o], 1e-6)) (*bad)++;
        }
    return mx;
}

/* every rank of the group holds the same bytes as the group's rank 0 */
static int replicas_identical(const lm_group *g, const float *x, size_t n) {
    float *y = arena_copy(x, n);
    comm_bcast(g, y, n * sizeof *y, 0);
    int same = memcmp(x, y, n * sizeof *y) == 0;
    free(y);
    return same;
}

static double comm_bytes(void) {
    lm_comm_stats s;
    comm_stats(&s);
    return s.allreduce_bytes + s.reduce_scatter_bytes + s.allgather_bytes + s.bcast_bytes + s.p2p_bytes;
}

/* --------------------------------------------------------- fake backward */

enum { ORD_REVERSE, ORD_TIED, ORD_SHUFFLE, ORD_ALL_LIVE, ORD_NO_DONE };

typedef struct {
    const char *name;
    int gk, stage, overlap, order;
    int idx; /* slot in gkind.final */
} zcfg;

static void add_grad(float *g, const lm_param *p, int i, int s, int u, float f) {
    for (size_t e = 0; e < p->numel; e++) g[e] += f * grad_of(g_rank, s, u, i, e);
}

/* One micro-step's backward through the hooks. In the reverse order it
 * returns in *mid the bytes communicated between micro_begin and the moment
 * the highest chunk's last tensor was done (the reverse order completes that
 * chunk first). */
static void backward(lm_zero *z, lm_params *ps, int order, int s, int u, double b0, double *mid) {
    lm_grad_hooks *h = zero_hooks(z);
    int n = ps->n, top = ps->n_chunks - 1;
    *mid = -1.0;
    if (order == ORD_REVERSE) {
        for (int i = n - 1; i >= 0; i--) {
            lm_param *p = &ps->p[i];
            float *g = h->grad(h->ctx, p);
            add_grad(g, p, i, s, u, 1.0f);
            h->done(h->ctx, p);
            if (p->chunk == top && (i == 0 || ps->p[i - 1].chunk != top)) *mid = comm_bytes() - b0;
        }
    } else if (order == ORD_TIED) {
        /* tensor 0 as a tied embedding: its gradient is taken first (the
         * output head's backward) and again last (the embedding's), then done */
        float *g0 = h->grad(h->ctx, &ps->p[0]);
        add_grad(g0, &ps->p[0], 0, s, u, 0.5f);
        for (int i = n - 1; i >= 1; i--) {
            lm_param *p = &ps->p[i];
            float *g = h->grad(h->ctx, p);
            add_grad(g, p, i, s, u, 1.0f);
            h->done(h->ctx, p);
        }
        float *g0b = h->grad(h->ctx, &ps->p[0]);
        CHECK(g0b == g0); /* the same buffer while the tensor is not done */
        add_grad(g0b, &ps->p[0], 0, s, u, 0.5f);
        h->done(h->ctx, &ps->p[0]);
    } else if (order == ORD_SHUFFLE) {
        /* tensors of different chunks interleaved, chunks completing out of order */
        for (int j = 0; j < n; j++) {
            int i = (j * 7 + 3) % n; /* 7 and 11 coprime: a permutation */
            lm_param *p = &ps->p[i];
            float *g = h->grad(h->ctx, p);
            add_grad(g, p, i, s, u, 1.0f);
            h->done(h->ctx, p);
        }
    } else if (order == ORD_NO_DONE) {
        /* reverse, but one tensor's done never comes (a tensor backward left
         * out): micro_end must still reduce its chunk */
        for (int i = n - 1; i >= 0; i--) {
            lm_param *p = &ps->p[i];
            float *g = h->grad(h->ctx, p);
            add_grad(g, p, i, s, u, 1.0f);
            if (i != 5) h->done(h->ctx, p);
        }
    } else { /* ORD_ALL_LIVE: every gradient buffer taken before any is done */
        float *g[NT];
        for (int i = n - 1; i >= 0; i--) g[i] = h->grad(h->ctx, &ps->p[i]);
        for (int i = 0; i < n; i++) add_grad(g[i], &ps->p[i], i, s, u, 1.0f);
        for (int i = 0; i < n; i++) h->done(h->ctx, &ps->p[i]);
    }
}

/* ---------------------------------------------------------- one run */

static void test_run(void **state) {
    const zcfg *c = *state;
    gkind *k = &GK[c->gk];
    int dp = k->dp;
    size_t held0 = lm_alloc_bytes();
    lm_params ps;
    build(&ps, dp);
    /* chunks of several lengths (an outsized tensor gets its own): chunk_len;
     * a bucket buffer holds the longest, chunk_max */
    size_t cs = ps.chunk_max, chunk_bytes = cs * 4, arena_bytes = ps.arena * 4;
    int nc = ps.n_chunks;
    CHECK(ps.arena == k->arena);
    lm_zero *z = zero_create(&ps, g_dev, k->g, c->stage, c->overlap);
    for (int s = 0; s < 2; s++) {
        zero_step_begin(z);
        for (int u = 0; u < 2; u++) {
            int last = u == 1;
            double b0 = comm_bytes(), mid = -1.0;
            zero_micro_begin(z, last);
            backward(z, &ps, c->order, s, u, b0, &mid);
            zero_micro_end(z);
            double sent = comm_bytes() - b0;
            /* gradient views: NULL while sharded (stage 2), else the full arena */
            int views = 1;
            for (int i = 0; i < ps.n; i++)
                views &= c->stage == 2 ? ps.p[i].g == NULL : ps.p[i].g == (float *)ps.g + ps.p[i].offset;
            CHECK(views);
            /* what this micro-step communicated: each chunk reduced once (its
             * bytes: all chunks, the arena x 4), at stage 2 on every
             * micro-step, at stages 0, 1 only on the last */
            double want = dp == 1 || (c->stage < 2 && !last) ? 0.0 : (double)arena_bytes;
            if (sent != want)
                fprintf(stderr, "rank %d: %s: step %d micro %d sent %.0f bytes, want %.0f\n", g_rank, c->name, s, u,
                        sent, want);
            CHECK(sent == want);
            /* overlap: the highest chunk went out when its last tensor was done */
            if (c->order == ORD_REVERSE && want > 0) {
                double wmid = c->overlap ? (double)chunk_len(&ps, nc - 1) * 4.0 : 0.0;
                if (mid != wmid)
                    fprintf(stderr, "rank %d: %s: micro %d: %.0f bytes out when the first chunk was done, want %.0f\n",
                            g_rank, c->name, u, mid, wmid);
                CHECK(mid == wmid);
            }
        }
        double b0 = comm_bytes();
        double ss = zero_reduced_grad_sumsq(z);
        double b1 = comm_bytes();
        if (!close_to(ss, k->ss[s], 1e-9))
            fprintf(stderr, "rank %d: %s: step %d grad sumsq %.17g, want %.17g\n", g_rank, c->name, s, ss, k->ss[s]);
        CHECK(close_to(ss, k->ss[s], 1e-9));
        zero_update(z, &g_hp, LR[s], GSCALE[s], s + 1);
        /* stages 1, 2 all-gather every chunk's weights; stage 0 sends nothing */
        double upd = comm_bytes() - b1, wupd = c->stage == 0 || dp == 1 ? 0.0 : (double)arena_bytes;
        CHECK(upd == wupd);
        CHECK(b1 - b0 == (dp == 1 ? 0.0 : 8.0)); /* the norm: one double all-reduced */
        long bad = 0;
        double mx = arena_diff(&ps, ps.w, s == 0 ? k->w1 : k->w2, &bad);
        if (bad)
            fprintf(stderr, "rank %d: %s: step %d: %ld weights differ from the serial AdamW (max %.3g)\n", g_rank,
                    c->name, s, bad, mx);
        CHECK(bad == 0);
    }
    CHECK(replicas_identical(k->g, ps.w, ps.arena));

    /* the moments, through this rank's checkpoint pieces */
    ckpt_tensor tw[NT], tm[NT], tv[NT];
    zero_ckpt_tensors(z, tw, tm, tv);
    long bad = 0;
    for (int i = 0; i < NT; i++) {
        const lm_param *p = &ps.p[i];
        for (int64_t e = 0; e < tm[i].count; e++) {
            size_t o = p->offset + (size_t)tm[i].off + (size_t)e;
            bad += !close_to(tm[i].data[e], k->m2[o], 1e-6) || !close_to(tv[i].data[e], k->v2[o], 1e-6);
        }
    }
    if (bad) fprintf(stderr, "rank %d: %s: %ld moments differ from the serial AdamW\n", g_rank, c->name, bad);
    CHECK(bad == 0);

    /* zero_memory_bytes: the ZeRO formula of the stage; buckets only at stage 2 */
    lm_zero_mem m;
    zero_memory_bytes(z, &m);
    size_t psi = ps.arena;
    CHECK(m.psi == psi && m.stage == c->stage && m.dp == dp);
    CHECK(m.weights == 4 * psi);
    CHECK(m.grads == (c->stage == 2 ? 4 * psi / (size_t)dp : 4 * psi));
    CHECK(m.optim == (c->stage == 0 ? 8 * psi : 8 * psi / (size_t)dp));
    if (c->stage < 2) {
        CHECK(m.buckets_peak == 0);
    } else {
        CHECK(m.buckets_peak >= chunk_bytes && m.buckets_peak % chunk_bytes == 0);
        CHECK(m.buckets_peak <= (size_t)nc * chunk_bytes);
        /* chunk after chunk (reverse order, overlap): buffers are reused,
         * not one per chunk */
        if (c->order == ORD_REVERSE && c->overlap) CHECK(m.buckets_peak < (size_t)nc * chunk_bytes);
        /* every chunk written at once: one buffer each */
        if (c->order == ORD_ALL_LIVE) CHECK(m.buckets_peak == (size_t)nc * chunk_bytes);
    }
    if (!g_ok)
        fprintf(stderr, "rank %d: %s: memory w %zu g %zu o %zu buckets %zu psi %zu cs %zu nc %d\n", g_rank, c->name,
                m.weights, m.grads, m.optim, m.buckets_peak, psi, cs, nc);

    free(k->final[c->idx]);
    k->final[c->idx] = arena_copy(ps.w, ps.arena);
    zero_destroy(z);
    params_free(&ps);
    CHECK(lm_alloc_bytes() == held0); /* manager and buckets freed */
    agree();
}

/* Every configuration of a group kind ended with the same weights. */
static void test_same_weights(void **state) {
    (void)state;
    for (int gk = 0; gk < NGK; gk++) {
        gkind *k = &GK[gk];
        lm_params ps;
        build(&ps, k->dp);
        const float *first = NULL;
        int n = 0;
        for (int c = 0; c < 64; c++) {
            if (!k->final[c]) continue;
            n++;
            if (!first) {
                first = k->final[c];
                continue;
            }
            long bad = 0;
            double mx = arena_diff(&ps, k->final[c], first, &bad);
            if (bad) fprintf(stderr, "rank %d: %s: configuration %d differs (max %.3g)\n", g_rank, GK_NAME[gk], c, mx);
            CHECK(bad == 0);
        }
        CHECK(n >= 3);
        params_free(&ps);
    }
    agree();
}

/* The test model cuts the way the tests need: several chunks (of several
 * lengths: the up and down projections are outsized), every chunk a
 * multiple of 16 x dp, tensors cut by shard boundaries. */
static void test_layout(void **state) {
    (void)state;
    for (int gk = 0; gk < NGK; gk++) {
        int dp = GK[gk].dp;
        lm_params ps;
        build(&ps, dp);
        size_t cs = ps.chunk_size;
        for (int ch = 0; ch < ps.n_chunks; ch++) CHECK(chunk_len(&ps, ch) % (16 * (size_t)dp) == 0);
        CHECK(ps.n_chunks >= 5);
        CHECK(ps.chunk_max > cs); /* chunks of several lengths */
        int cut = 0, shared = 0;
        for (int i = 0; i < ps.n; i++) {
            const lm_param *p = &ps.p[i];
            size_t sh = chunk_len(&ps, p->chunk) / (size_t)dp;
            size_t a = p->offset - chunk_lo(&ps, p->chunk), b = a + p->numel;
            if (dp > 1 && a / sh != (b - 1) / sh) cut++;
            if (i > 0 && ps.p[i - 1].chunk == p->chunk) shared++;
            CHECK(i == 0 || p->chunk >= ps.p[i - 1].chunk); /* model order */
        }
        CHECK(dp == 1 || cut >= 3);
        /* some chunk holds several tensors (at dp 1, which communicates
         * nothing, the least padding gives each tensor its own chunk) */
        CHECK(dp == 1 || shared >= 1);
        if (!g_ok)
            fprintf(stderr, "rank %d: dp %d: cs %zu chunks %d cut %d shared %d\n", g_rank, dp, cs, ps.n_chunks, cut,
                    shared);
        params_free(&ps);
    }
    agree();
}

/* ------------------------------------------------- checkpoint pieces */

/* a manager after one full step (the reverse backward, overlap on) */
static lm_zero *stepped(lm_params *ps, const gkind *k, int stage) {
    build(ps, k->dp);
    lm_zero *z = zero_create(ps, g_dev, k->g, stage, 1);
    zero_step_begin(z);
    for (int u = 0; u < 2; u++) {
        double mid;
        zero_micro_begin(z, u == 1);
        backward(z, ps, ORD_REVERSE, 0, u, 0.0, &mid);
        zero_micro_end(z);
    }
    zero_update(z, &g_hp, LR[0], GSCALE[0], 1);
    return z;
}

/* Over the ranks of the data-parallel group, every element of every tensor
 * is in exactly one rank's piece; the piece lies in the rank's shard of the
 * tensor's chunk; w, m, v pieces agree; the data are the weights at those
 * elements (and the reference moments); w, m, v may be NULL. */
static void test_ckpt_pieces(void **state) {
    (void)state;
    for (int gk = 0; gk < NGK; gk++)
        for (int stage = 0; stage <= 2; stage++) {
            const gkind *k = &GK[gk];
            lm_params ps;
            lm_zero *z = stepped(&ps, k, stage);
            int rk = k->g->rank;
            ckpt_tensor tw[NT], tm[NT], tv[NT], tw2[NT], tv2[NT];
            memset(tw2, 0x5a, sizeof tw2);
            zero_ckpt_tensors(z, tw, tm, tv);
            zero_ckpt_tensors(z, NULL, NULL, tv2);
            zero_ckpt_tensors(z, tw2, NULL, NULL);
            int ok = 1;
            int64_t owned = 0;
            for (int i = 0; i < NT; i++) {
                const lm_param *p = &ps.p[i];
                ok &= !strcmp(tw[i].name, p->name) && tw[i].ndim == p->ndim && tw[i].rows == p->rows &&
                      tw[i].cols == p->cols;
                ok &= tm[i].off == tw[i].off && tm[i].count == tw[i].count && tv[i].off == tw[i].off &&
                      tv[i].count == tw[i].count && !strcmp(tm[i].name, p->name) && !strcmp(tv[i].name, p->name);
                ok &= tw2[i].off == tw[i].off && tw2[i].count == tw[i].count && tw2[i].data == tw[i].data &&
                      tv2[i].data == tv[i].data;
                ok &= tw[i].off >= 0 && tw[i].count >= 0 && tw[i].off + tw[i].count <= (int64_t)p->numel;
                owned += tw[i].count;
                if (tw[i].count > 0) { /* inside this rank's shard of the chunk */
                    size_t sh = chunk_len(&ps, p->chunk) / (size_t)k->dp;
                    size_t a = p->offset + (size_t)tw[i].off, lo = chunk_lo(&ps, p->chunk) + (size_t)rk * sh;
                    ok &= a >= lo && a + (size_t)tw[i].count <= lo + sh;
                }
                for (int64_t e = 0; e < tw[i].count; e++) {
                    size_t o = p->offset + (size_t)tw[i].off + (size_t)e;
                    ok &= tw[i].data[e] == ((float *)ps.w)[o];
                    ok &= tw[i].data == (float *)ps.w + p->offset + tw[i].off; /* a view of the weights */
                }
                /* coverage over the group */
                int64_t *cover = calloc(p->numel, sizeof *cover);
                for (int64_t e = 0; e < tw[i].count; e++) cover[tw[i].off + e]++;
                comm_allreduce_sum_i64(k->g, cover, p->numel);
                for (size_t e = 0; e < p->numel; e++) ok &= cover[e] == 1;
                free(cover);
            }
            /* the shard of a rank holds about 1/dp of the elements */
            ok &= owned <= (int64_t)(ps.arena / (size_t)k->dp);
            if (!ok) fprintf(stderr, "rank %d: pieces wrong: %s stage %d\n", g_rank, GK_NAME[gk], stage);
            CHECK(ok);
            zero_destroy(z);
            params_free(&ps);
        }
    agree();
}

/* After a load that filled only this rank's pieces: zero_gather_loaded
 * rebuilds every replica's weights (and at stage 0 the moments). */
static void test_gather_loaded(void **state) {
    (void)state;
    for (int gk = 0; gk < NGK; gk += 1)
        for (int stage = 0; stage <= 2; stage++) {
            const gkind *k = &GK[gk];
            lm_params ps;
            lm_zero *z = stepped(&ps, k, stage);
            float *w = arena_copy(ps.w, ps.arena);
            float *zm = NULL, *zv = NULL; /* stage 0: the replicated moments, arena-sized */
            zero_moment_arrays(z, &zm, &zv);
            float *m = stage == 0 ? arena_copy(zm, ps.arena) : NULL, *v = stage == 0 ? arena_copy(zv, ps.arena) : NULL;
            ckpt_tensor tw[NT], tm[NT], tv[NT];
            zero_ckpt_tensors(z, tw, tm, tv);
            float *msave[NT], *vsave[NT];
            for (int i = 0; i < NT; i++) {
                msave[i] = arena_copy(tm[i].data ? tm[i].data : w, (size_t)tm[i].count);
                vsave[i] = arena_copy(tv[i].data ? tv[i].data : w, (size_t)tv[i].count);
            }
            memset(ps.w, 0, ps.arena * sizeof(float));
            if (stage == 0) {
                memset(zm, 0, ps.arena * sizeof(float));
                memset(zv, 0, ps.arena * sizeof(float));
            }
            for (int i = 0; i < NT; i++) /* the "load" of this rank's pieces */
                for (int64_t e = 0; e < tw[i].count; e++) {
                    size_t o = ps.p[i].offset + (size_t)tw[i].off + (size_t)e;
                    ((float *)ps.w)[o] = w[o];
                    if (stage == 0) zm[o] = m[o], zv[o] = v[o];
                }
            zero_gather_loaded(z, 1);
            long bad = 0, badm = 0;
            arena_diff(&ps, ps.w, w, &bad);
            int ok = bad == 0;
            for (int i = 0; i < NT; i++)
                for (size_t e = 0; e < ps.p[i].numel; e++) {
                    size_t o = ps.p[i].offset + e;
                    ok &= ((float *)ps.w)[o] == w[o];
                    if (stage == 0) badm += zm[o] != m[o] || zv[o] != v[o];
                }
            ok &= badm == 0;
            /* sharded moments are left as they are */
            for (int i = 0; i < NT; i++)
                ok &= !memcmp(msave[i], tm[i].data ? tm[i].data : w, (size_t)tm[i].count * 4) &&
                      !memcmp(vsave[i], tv[i].data ? tv[i].data : w, (size_t)tv[i].count * 4);
            ok &= replicas_identical(k->g, ps.w, ps.arena);
            if (!ok) fprintf(stderr, "rank %d: gather_loaded wrong: %s stage %d\n", g_rank, GK_NAME[gk], stage);
            CHECK(ok);
            for (int i = 0; i < NT; i++) free(msave[i]), free(vsave[i]);
            free(w);
            free(m);
            free(v);
            zero_destroy(z);
            params_free(&ps);
        }
    agree();
}

/* zero_poison_grad on one rank: every rank of the group sees a NaN norm. */
static void test_poison(void **state) {
    (void)state;
    for (int stage = 0; stage <= 2; stage++) {
        const gkind *k = &GK[GK_WORLD];
        lm_params ps;
        build(&ps, k->dp);
        lm_zero *z = zero_create(&ps, g_dev, k->g, stage, 1);
        zero_step_begin(z);
        for (int u = 0; u < 2; u++) {
            double mid;
            zero_micro_begin(z, u == 1);
            backward(z, &ps, ORD_REVERSE, 0, u, 0.0, &mid);
            zero_micro_end(z);
        }
        double clean = zero_reduced_grad_sumsq(z);
        CHECK(close_to(clean, k->ss[0], 1e-9));
        if (g_rank == 1) zero_poison_grad(z, 5 + chunk_len(&ps, 0) / 4 * 3);
        double ss = zero_reduced_grad_sumsq(z);
        if (!isnan(ss)) fprintf(stderr, "rank %d: stage %d: poisoned norm^2 %g\n", g_rank, stage, ss);
        CHECK(isnan(ss));
        zero_destroy(z);
        params_free(&ps);
    }
    agree();
}

/* Stage 2, overlap on: two chunks whose gradients were written but not all
 * marked done go out at micro_end. Non-blocking collectives on one
 * communicator must be started in the same order on every rank (MPI matches
 * them by order, not by buffer), yet which bucket buffer a chunk lands in
 * depends on which in-flight reductions the rank has seen complete, i.e. on
 * timing. Here the timing is made deterministic: ranks 2-3 launch chunks 6
 * and 7 before ranks 0-1 do (so their polls cannot see them complete), every
 * rank then drives MPI until they are complete, and only ranks 0-1 poll
 * (one done earlier than on ranks 2-3) before chunks 5 and 4 take buffers:
 * ranks 0-1 find both buffers free, ranks 2-3 wait for the oldest in flight
 * (chunk 6's, the higher buffer). The result must not depend on it.
 * Layout (test_layout, dp 4): chunk 0 = {embed}, 1 = {l0.norm, l0.q},
 * 4 = {l1.norm, l1.q}, 5 = {l1.up}, 6 = {l1.down}, 7 = {norm}, 8 = {head}
 * (the last three written first take three buffers; chunk 1 is not
 * complete when l0.norm is marked done, so that done only polls). */
static void test_undone_chunks_order(void **state) {
    (void)state;
    const gkind *k = &GK[GK_WORLD];
    lm_params ps;
    build(&ps, k->dp);
    CHECK(ps.p[0].chunk == 0 && ps.p[1].chunk == 1 && ps.p[2].chunk == 1 && ps.p[5].chunk == 4 &&
          ps.p[6].chunk == 4 && ps.p[7].chunk == 5 && ps.p[8].chunk == 6 && ps.p[9].chunk == 7 &&
          ps.p[10].chunk == 8 && ps.n_chunks == 9);
    lm_zero *z = zero_create(&ps, g_dev, k->g, 2, 1);
    lm_grad_hooks *h = zero_hooks(z);
    int early = g_rank < 2;
    float *g[NT];
    zero_step_begin(z);
    for (int u = 0; u < 2; u++) {
        zero_micro_begin(z, u == 1);
        g[0] = h->grad(h->ctx, &ps.p[0]); /* chunk 0 live throughout */
        add_grad(g[0], &ps.p[0], 0, 0, u, 1.0f);
        int token = 0;
        if (early) MPI_Recv(&token, 1, MPI_INT, g_rank + 2, 77, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (int i = 10; i >= 8; i--) { /* chunks 8, 7 and 6 written ... */
            g[i] = h->grad(h->ctx, &ps.p[i]);
            add_grad(g[i], &ps.p[i], i, 0, u, 1.0f);
        }
        for (int i = 8; i <= 10; i++) h->done(h->ctx, &ps.p[i]); /* ... and go out: 6, 7, then 8 */
        if (!early) MPI_Send(&token, 1, MPI_INT, g_rank - 2, 77, MPI_COMM_WORLD);
        for (int b = 0; b < 100; b++) MPI_Barrier(MPI_COMM_WORLD); /* their reductions complete in MPI */
        g[1] = h->grad(h->ctx, &ps.p[1]);
        add_grad(g[1], &ps.p[1], 1, 0, u, 1.0f);
        if (early) h->done(h->ctx, &ps.p[1]); /* polls: chunks 6-8's buffers free again */
        for (int i = 7; i >= 6; i--) { /* chunks 5 and 4: written, never marked done */
            g[i] = h->grad(h->ctx, &ps.p[i]);
            add_grad(g[i], &ps.p[i], i, 0, u, 1.0f);
        }
        if (!early) h->done(h->ctx, &ps.p[1]);
        for (int i = 5; i >= 2; i--) {
            g[i] = h->grad(h->ctx, &ps.p[i]);
            add_grad(g[i], &ps.p[i], i, 0, u, 1.0f);
            h->done(h->ctx, &ps.p[i]);
        }
        h->done(h->ctx, &ps.p[0]);
        zero_micro_end(z);
    }
    double ss = zero_reduced_grad_sumsq(z);
    if (!close_to(ss, k->ss[0], 1e-9)) fprintf(stderr, "rank %d: grad sumsq %.17g, want %.17g\n", g_rank, ss, k->ss[0]);
    CHECK(close_to(ss, k->ss[0], 1e-9));
    zero_update(z, &g_hp, LR[0], GSCALE[0], 1);
    long bad = 0;
    double mx = arena_diff(&ps, ps.w, k->w1, &bad);
    if (bad) fprintf(stderr, "rank %d: %ld weights differ from the serial AdamW (max %.3g)\n", g_rank, bad, mx);
    CHECK(bad == 0);
    zero_destroy(z);
    params_free(&ps);
    agree();
}

/* ------------------------------------------------------------------ main */

#define RUN(label, gk, st, ov, ord) \
    {label, test_run, NULL, NULL, &(zcfg){label, gk, st, ov, ord, __COUNTER__}}

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    g_rank = comm_world()->rank;
    if (comm_world()->size != 4) {
        if (g_rank == 0) printf("1..0 # SKIP needs exactly 4 ranks (mpirun -np 4)\n");
        comm_finalize();
        return 0;
    }
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout)) return 1; /* TAP from rank 0 only */
    g_dev = device_cpu_create(0);
    deck_defaults(&g_cfg);
    g_cfg.weight_decay = 0.1;
    g_cfg.eps = 0.05; /* comparable to the gradients: the update depends on their scale */
    g_hp = adamw_hp_of(&g_cfg);
    kinds_make();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        RUN("dp 4: ZeRO-0, overlap off", GK_WORLD, 0, 0, ORD_REVERSE),
        RUN("dp 4: ZeRO-0, overlap on", GK_WORLD, 0, 1, ORD_REVERSE),
        RUN("dp 4: ZeRO-1, overlap off", GK_WORLD, 1, 0, ORD_REVERSE),
        RUN("dp 4: ZeRO-1, overlap on", GK_WORLD, 1, 1, ORD_REVERSE),
        RUN("dp 4: ZeRO-2, overlap off", GK_WORLD, 2, 0, ORD_REVERSE),
        RUN("dp 4: ZeRO-2, overlap on", GK_WORLD, 2, 1, ORD_REVERSE),
        RUN("dp 4: ZeRO-0, overlap on, tied-style tensor", GK_WORLD, 0, 1, ORD_TIED),
        RUN("dp 4: ZeRO-1, overlap on, tied-style tensor", GK_WORLD, 1, 1, ORD_TIED),
        RUN("dp 4: ZeRO-2, overlap on, tied-style tensor", GK_WORLD, 2, 1, ORD_TIED),
        RUN("dp 4: ZeRO-2, overlap off, tied-style tensor", GK_WORLD, 2, 0, ORD_TIED),
        RUN("dp 4: ZeRO-0, overlap on, shuffled backward", GK_WORLD, 0, 1, ORD_SHUFFLE),
        RUN("dp 4: ZeRO-1, overlap on, shuffled backward", GK_WORLD, 1, 1, ORD_SHUFFLE),
        RUN("dp 4: ZeRO-2, overlap on, shuffled backward", GK_WORLD, 2, 1, ORD_SHUFFLE),
        RUN("dp 4: ZeRO-2, overlap on, every gradient live at once", GK_WORLD, 2, 1, ORD_ALL_LIVE),
        RUN("dp 4: ZeRO-1, overlap on, every gradient live at once", GK_WORLD, 1, 1, ORD_ALL_LIVE),
        RUN("dp 4: ZeRO-0, overlap on, one done missing", GK_WORLD, 0, 1, ORD_NO_DONE),
        RUN("dp 4: ZeRO-1, overlap on, one done missing", GK_WORLD, 1, 1, ORD_NO_DONE),
        RUN("dp 4: ZeRO-2, overlap on, one done missing", GK_WORLD, 2, 1, ORD_NO_DONE),
        RUN("dp 2 (topo): ZeRO-0, overlap on", GK_TOPO, 0, 1, ORD_REVERSE),
        RUN("dp 2 (topo): ZeRO-1, overlap on", GK_TOPO, 1, 1, ORD_REVERSE),
        RUN("dp 2 (topo): ZeRO-2, overlap on", GK_TOPO, 2, 1, ORD_REVERSE),
        RUN("dp 2 (topo): ZeRO-2, overlap off", GK_TOPO, 2, 0, ORD_REVERSE),
        RUN("dp 2 (topo): ZeRO-2, overlap on, tied-style tensor", GK_TOPO, 2, 1, ORD_TIED),
        RUN("dp 2 (topo): ZeRO-2, overlap on, shuffled backward", GK_TOPO, 2, 1, ORD_SHUFFLE),
        RUN("dp 1: ZeRO-0, overlap on", GK_SINGLE, 0, 1, ORD_REVERSE),
        RUN("dp 1: ZeRO-1, overlap on", GK_SINGLE, 1, 1, ORD_REVERSE),
        RUN("dp 1: ZeRO-2, overlap on", GK_SINGLE, 2, 1, ORD_REVERSE),
        cmocka_unit_test(test_same_weights),
        cmocka_unit_test(test_ckpt_pieces),
        cmocka_unit_test(test_gather_loaded),
        cmocka_unit_test(test_poison),
        cmocka_unit_test(test_undone_chunks_order),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    kinds_free();
    device_destroy(g_dev);
    comm_finalize();
    return failed;
}
