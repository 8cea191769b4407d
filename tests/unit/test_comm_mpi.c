/* test_comm_mpi.c — the MPI comm layer (src/dist/comm.h) and the process grid's
 * communicators (topo_create), run by tests/t/13-mpi-comm.t under
 * `mpirun -np 4`. Every collective is checked on the world and on sub-groups
 * made with comm_split (pairs {0,1},{2,3}; strided {0,2},{1,3}; pairs with
 * the key reversed; singletons), with integer-valued data so that sums are
 * exact whatever order MPI adds in.
 *
 * cmocka on every rank, TAP printed by rank 0 only (stdout of the others goes
 * to /dev/null). Each test runs its collectives on all ranks, records local
 * failures (printed to stderr with the rank), and ends with agree(): the
 * verdicts are combined over the world, so every rank passes or fails the
 * same test and none is left waiting in a collective. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "agree.h"
#include "comm.h"
#include "common.h"
#include "topo.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank, g_ok = 1;

static void check_(int c, const char *expr, int line) {
    if (c) return;
    fprintf(stderr, "rank %d: test_comm_mpi.c:%d: check failed: %s\n", g_rank, line, expr);
    g_ok = 0;
}
#define CHECK(c) check_((c) ? 1 : 0, #c, __LINE__)

/* The test's verdict, the same on every rank (plain MPI: the comm layer's
 * counters stay untouched). */
static void agree(void) {
    int ok = g_ok;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    g_ok = 1;
    assert_true(ok);
}

/* ------------------------------------------------------------- groups */

/* A group and the world ranks of its members, in group-rank order. */
typedef struct {
    const char *name;
    lm_group *g;
    int n, member[4];
} grp;

enum { G_WORLD, G_PAIRS, G_STRIDED, G_PAIRS_REV, G_SINGLE, NG };
static grp G[NG];

static void groups_make(void) {
    lm_group *w = comm_world();
    int r = w->rank;
    G[G_WORLD] = (grp){"world", w, 4, {0, 1, 2, 3}};
    G[G_PAIRS] = (grp){"pairs", comm_split(w, r / 2, r), 2, {r / 2 * 2, r / 2 * 2 + 1, 0, 0}};
    G[G_STRIDED] = (grp){"strided", comm_split(w, r % 2, r), 2, {r % 2, r % 2 + 2, 0, 0}};
    G[G_PAIRS_REV] = (grp){"pairs, key reversed", comm_split(w, r / 2, -r), 2, {r / 2 * 2 + 1, r / 2 * 2, 0, 0}};
    G[G_SINGLE] = (grp){"single", comm_split(w, r, 0), 1, {r, 0, 0, 0}};
}

static void groups_free(void) {
    for (int k = 1; k < NG; k++) comm_free(G[k].g);
}

/* world size, rank, and each split: size, this rank's place, the MPI
 * communicator behind it */
static void test_world_and_split(void **state) {
    (void)state;
    lm_group *w = comm_world();
    int mr = -1, ms = -1, cmp = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mr);
    MPI_Comm_size(MPI_COMM_WORLD, &ms);
    CHECK(w->size == 4 && ms == 4);
    CHECK(w->rank == mr);
    MPI_Comm_compare(comm_mpi(w), MPI_COMM_WORLD, &cmp);
    CHECK(cmp == MPI_IDENT || cmp == MPI_CONGRUENT);
    for (int k = 1; k < NG; k++) {
        grp *q = &G[k];
        int me = -1, sz = -1;
        CHECK(q->g->size == q->n);
        for (int j = 0; j < q->n; j++)
            if (q->member[j] == g_rank) me = j;
        if (q->g->rank != me) fprintf(stderr, "rank %d: group %s: rank %d, want %d\n", g_rank, q->name, q->g->rank, me);
        CHECK(q->g->rank == me);
        MPI_Comm_size(comm_mpi(q->g), &sz);
        CHECK(sz == q->n);
    }
    agree();
}

/* --------------------------------------------------------- all-reduce */

static float f32_of(int m, size_t i) { return (float)(1000 * m) + (float)(i % 977) - 300.0f; }
static double f64_of(int m, size_t i) { return 0.5 * m + 1e6 * (double)(i % 31) - 12345.25; }
/* beyond 2^53 and of both signs: an exact integer sum, not a double one */
static int64_t i64_of(int m, size_t i) {
    return (int64_t)(m + 1) * ((int64_t)1 << 54) * (i % 3 ? 1 : -1) + (int64_t)i - 7 * m;
}
static int i32_of(int m, size_t i) { return (int)((i * 7 + (size_t)m * 13) % 11) * 10 - m - 50; }
static double maxf64_of(int m, size_t i) { return (double)((i * 5 + (size_t)m * 3) % 7) - 3.5 + 1e-3 * m; }

static void test_allreduce(void **state) {
    (void)state;
    enum { N = 1031 };
    float *a = malloc(N * sizeof *a);
    double *b = malloc(N * sizeof *b), *e = malloc(N * sizeof *e);
    int64_t *c = malloc(N * sizeof *c);
    int *d = malloc(N * sizeof *d);
    for (int k = 0; k < NG; k++) {
        grp *q = &G[k];
        for (size_t i = 0; i < N; i++) {
            a[i] = f32_of(g_rank, i);
            b[i] = f64_of(g_rank, i);
            c[i] = i64_of(g_rank, i);
            d[i] = i32_of(g_rank, i);
            e[i] = maxf64_of(g_rank, i);
        }
        comm_allreduce_sum_f32(q->g, a, N);
        comm_allreduce_sum_f64(q->g, b, N);
        comm_allreduce_sum_i64(q->g, c, N);
        comm_allreduce_max_i32(q->g, d, N);
        comm_allreduce_max_f64(q->g, e, N);
        int ok = 1;
        for (size_t i = 0; i < N; i++) {
            float sa = 0;
            double sb = 0, me = -INFINITY;
            int64_t sc = 0;
            int md = -1000000;
            for (int j = 0; j < q->n; j++) {
                int m = q->member[j];
                sa += f32_of(m, i);
                sb += f64_of(m, i);
                sc += i64_of(m, i);
                if (i32_of(m, i) > md) md = i32_of(m, i);
                if (maxf64_of(m, i) > me) me = maxf64_of(m, i);
            }
            ok &= a[i] == sa && b[i] == sb && c[i] == sc && d[i] == md && e[i] == me;
        }
        if (!ok) fprintf(stderr, "rank %d: all-reduce on group %s wrong\n", g_rank, q->name);
        CHECK(ok);
    }
    /* zero elements: nothing happens, nothing hangs */
    comm_allreduce_sum_f32(comm_world(), a, 0);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    agree();
}

/* ------------------------------------------ reduce-scatter, all-gather */

/* element i of block b on world rank m: integer-valued */
static float blk_of(int m, int b, size_t i) { return (float)(1000 * m + 100 * b) + (float)(i % 97); }

static void test_reduce_scatter(void **state) {
    (void)state;
    static const size_t ns[] = {1, 37, 1000};
    for (int k = 0; k < NG; k++)
        for (int t = 0; t < 3; t++) {
            grp *q = &G[k];
            size_t n = ns[t];
            float *x = malloc(n * (size_t)q->n * sizeof *x);
            for (int b = 0; b < q->n; b++)
                for (size_t i = 0; i < n; i++) x[(size_t)b * n + i] = blk_of(g_rank, b, i);
            comm_reduce_scatter_sum_f32(q->g, x, n);
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                float s = 0;
                for (int j = 0; j < q->n; j++) s += blk_of(q->member[j], q->g->rank, i);
                ok &= x[i] == s;
            }
            if (!ok) fprintf(stderr, "rank %d: reduce-scatter group %s n %zu wrong\n", g_rank, q->name, n);
            CHECK(ok);
            free(x);
        }
    agree();
}

static void test_allgather(void **state) {
    (void)state;
    static const size_t ns[] = {1, 37, 1000};
    for (int k = 0; k < NG; k++)
        for (int t = 0; t < 3; t++) {
            grp *q = &G[k];
            size_t n = ns[t];
            float *x = malloc(n * (size_t)q->n * sizeof *x);
            for (int b = 0; b < q->n; b++)
                for (size_t i = 0; i < n; i++) x[(size_t)b * n + i] = b == q->g->rank ? blk_of(g_rank, 0, i) : -1.0f;
            comm_allgather_f32(q->g, x, n);
            int ok = 1;
            for (int b = 0; b < q->n; b++)
                for (size_t i = 0; i < n; i++) ok &= x[(size_t)b * n + i] == blk_of(q->member[b], 0, i);
            if (!ok) fprintf(stderr, "rank %d: all-gather group %s n %zu wrong\n", g_rank, q->name, n);
            CHECK(ok);
            free(x);
        }
    agree();
}

/* ------------------------------------------------------- non-blocking */

/* Five operations on four communicators in flight at once, completed by
 * polling comm_test round-robin; then again completed by comm_wait in the
 * reverse order of their start. */
static void test_nonblocking(void **state) {
    (void)state;
    enum { NA = 1 << 18, NB = 1000, NOPS = 5 };
    grp *w = &G[G_WORLD], *pr = &G[G_PAIRS], *st = &G[G_STRIDED];
    float *a = malloc(NA * sizeof *a), *c = malloc(NB * 4 * sizeof *c), *d = malloc(NB * 4 * sizeof *d);
    float *e = malloc(NB * sizeof *e), *h = malloc(NB * 2 * sizeof *h);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < NA; i++) a[i] = f32_of(g_rank, i);
        for (int b = 0; b < 4; b++)
            for (size_t i = 0; i < NB; i++) {
                c[b * NB + i] = blk_of(g_rank, b, i);
                d[b * NB + i] = b == g_rank ? blk_of(g_rank, 0, i) : -1.0f;
            }
        for (size_t i = 0; i < NB; i++) e[i] = f32_of(g_rank, i + 5);
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < NB; i++) h[b * NB + i] = blk_of(g_rank, b, i + 3);
        lm_req q[NOPS];
        memset(q, 0, sizeof q);
        comm_iallreduce_sum_f32(w->g, a, NA, &q[0]);
        comm_ireduce_scatter_sum_f32(w->g, c, NB, &q[1]);
        comm_iallgather_f32(w->g, d, NB, &q[2]);
        comm_iallreduce_sum_f32(pr->g, e, NB, &q[3]);
        comm_ireduce_scatter_sum_f32(st->g, h, NB, &q[4]);
        if (round == 0) {
            int done[NOPS] = {0}, ndone = 0;
            long spins = 0;
            double t0 = lm_now();
            while (ndone < NOPS && lm_now() - t0 < 30.0) {
                for (int k = 0; k < NOPS; k++)
                    if (!done[k] && comm_test(&q[k])) done[k] = 1, ndone++;
                spins++;
            }
            CHECK(ndone == NOPS);
            for (int k = 0; k < NOPS; k++) {
                CHECK(q[k].n == 0);     /* empty once complete */
                CHECK(comm_test(&q[k])); /* and an empty request tests complete */
            }
        } else {
            for (int k = NOPS - 1; k >= 0; k--) comm_wait(&q[k]);
            for (int k = 0; k < NOPS; k++) CHECK(q[k].n == 0);
            comm_wait(&q[0]); /* a no-op on an empty request */
        }
        int ok = 1;
        for (size_t i = 0; i < NA; i++) {
            float s = 0;
            for (int m = 0; m < 4; m++) s += f32_of(m, i);
            ok &= a[i] == s;
        }
        CHECK(ok);
        ok = 1;
        for (size_t i = 0; i < NB; i++) {
            float s = 0;
            for (int m = 0; m < 4; m++) s += blk_of(m, g_rank, i);
            ok &= c[i] == s;
        }
        CHECK(ok);
        ok = 1;
        for (int b = 0; b < 4; b++)
            for (size_t i = 0; i < NB; i++) ok &= d[b * NB + i] == blk_of(b, 0, i);
        CHECK(ok);
        ok = 1;
        for (size_t i = 0; i < NB; i++) ok &= e[i] == f32_of(pr->member[0], i + 5) + f32_of(pr->member[1], i + 5);
        CHECK(ok);
        ok = 1;
        for (size_t i = 0; i < NB; i++)
            ok &= h[i] == blk_of(st->member[0], st->g->rank, i + 3) + blk_of(st->member[1], st->g->rank, i + 3);
        CHECK(ok);
        if (!g_ok) fprintf(stderr, "rank %d: non-blocking round %d wrong\n", g_rank, round);
    }
    free(a);
    free(c);
    free(d);
    free(e);
    free(h);
    agree();
}

/* ------------------------------------------------------ point to point */

static void fill_msg(unsigned char *b, size_t n, int from, int tag) {
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 31 + (size_t)from * 7 + (size_t)tag * 3);
}
static int msg_ok(const unsigned char *b, size_t n, int from, int tag) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(i * 31 + (size_t)from * 7 + (size_t)tag * 3)) return 0;
    return 1;
}

static void test_p2p(void **state) {
    (void)state;
    lm_group *w = comm_world();
    int r = w->rank, right = (r + 1) % 4, left = (r + 3) % 4;
    enum { BIG = 200000 }; /* past the eager limit: the blocking calls really meet */
    unsigned char *out = malloc(BIG), *in = malloc(BIG), *in2 = malloc(BIG), *out2 = malloc(BIG);

    /* blocking ring to the right: even ranks send first, odd ones receive first */
    fill_msg(out, BIG, r, 1);
    memset(in, 0, BIG);
    if (r % 2 == 0) {
        comm_send(w, out, BIG, right, 1);
        comm_recv(w, in, BIG, left, 1);
    } else {
        comm_recv(w, in, BIG, left, 1);
        comm_send(w, out, BIG, right, 1);
    }
    CHECK(msg_ok(in, BIG, left, 1));

    /* non-blocking ring in both directions at once, tags telling them apart */
    fill_msg(out, BIG, r, 2);
    fill_msg(out2, 1000, r, 3);
    memset(in, 0, BIG);
    memset(in2, 0, 1000);
    lm_req q[4];
    comm_irecv(w, in, BIG, left, 2, &q[0]);
    comm_irecv(w, in2, 1000, right, 3, &q[1]);
    comm_isend(w, out, BIG, right, 2, &q[2]);
    comm_isend(w, out2, 1000, left, 3, &q[3]);
    int ndone = 0;
    double t0 = lm_now();
    while (ndone < 4 && lm_now() - t0 < 30.0) { /* completed by polling */
        ndone = 0;
        for (int k = 0; k < 4; k++) ndone += comm_test(&q[k]);
    }
    CHECK(ndone == 4);
    CHECK(msg_ok(in, BIG, left, 2));
    CHECK(msg_ok(in2, 1000, right, 3));

    /* tags match messages, not arrival order: the partner sends tag 8 first */
    int partner = r ^ 1;
    fill_msg(out, 600, r, 7); /* same sizes: a mismatch shows in the data */
    fill_msg(out2, 600, r, 8);
    comm_irecv(w, in, 600, partner, 7, &q[0]);
    comm_irecv(w, in2, 600, partner, 8, &q[1]);
    comm_isend(w, out2, 600, partner, 8, &q[2]);
    comm_isend(w, out, 600, partner, 7, &q[3]);
    for (int k = 3; k >= 0; k--) comm_wait(&q[k]);
    CHECK(msg_ok(in, 600, partner, 7));
    CHECK(msg_ok(in2, 600, partner, 8));

    /* within a strided group, peers are group ranks */
    grp *st = &G[G_STRIDED];
    int peer = 1 - st->g->rank;
    fill_msg(out, 333, r, 4);
    memset(in, 0, 333);
    comm_isend(st->g, out, 333, peer, 4, &q[0]);
    comm_recv(st->g, in, 333, peer, 4);
    comm_wait(&q[0]);
    CHECK(msg_ok(in, 333, st->member[peer], 4));
    free(out);
    free(in);
    free(in2);
    free(out2);
    agree();
}

/* ---------------------------------------------------------------- bcast */

static void test_bcast(void **state) {
    (void)state;
    enum { N = 300000 };
    unsigned char *b = malloc(N);
    /* world, root 2; pairs root group-rank 1; strided root 0; reversed pairs root 0 */
    static const int kinds[4][2] = {{G_WORLD, 2}, {G_PAIRS, 1}, {G_STRIDED, 0}, {G_PAIRS_REV, 0}};
    static const size_t sizes[2] = {1, N};
    for (int k = 0; k < 4; k++)
        for (int s = 0; s < 2; s++) {
            grp *q = &G[kinds[k][0]];
            int root = kinds[k][1];
            fill_msg(b, sizes[s], g_rank, 9);
            comm_bcast(q->g, b, sizes[s], root);
            int ok = msg_ok(b, sizes[s], q->member[root], 9);
            if (!ok) fprintf(stderr, "rank %d: bcast on %s from %d (%zu bytes) wrong\n", g_rank, q->name, root, sizes[s]);
            CHECK(ok);
        }
    free(b);
    agree();
}

/* ---------------------------------------------------------------- agree */

static void test_agree(void **state) {
    (void)state;
    lm_group *w = comm_world();
    int r = w->rank;
    char err[LM_ERRLEN];

    /* all fine: 0, and each rank's err left as it was */
    snprintf(err, sizeof err, "untouched %d", r);
    int rc = comm_agree(w, 0, err, sizeof err);
    char want[64];
    snprintf(want, sizeof want, "untouched %d", r);
    CHECK(rc == 0 && !strcmp(err, want));

    /* one rank fails: every rank gets its code and message */
    snprintf(err, sizeof err, "%s", r == 2 ? "rank two failed" : "");
    rc = comm_agree(w, r == 2 ? 2 : 0, err, sizeof err);
    CHECK(rc == 2);
    CHECK(!strcmp(err, "rank two failed"));

    /* two fail: the largest code, the message of the lowest failing rank */
    snprintf(err, sizeof err, "%s", r == 1 ? "one" : r == 3 ? "three" : "");
    rc = comm_agree(w, r == 1 ? 1 : r == 3 ? 3 : 0, err, sizeof err);
    CHECK(rc == 3);
    CHECK(!strcmp(err, "one"));

    /* inside groups: only the failing rank's pair hears of it */
    grp *pr = &G[G_PAIRS];
    snprintf(err, sizeof err, "%s", r == 3 ? "pair failure" : "mine");
    rc = comm_agree(pr->g, r == 3 ? 2 : 0, err, sizeof err);
    if (r >= 2)
        CHECK(rc == 2 && !strcmp(err, "pair failure"));
    else
        CHECK(rc == 0 && !strcmp(err, "mine"));

    /* no message buffer: the code alone */
    rc = comm_agree(w, r == 1 ? 5 : 0, NULL, 0);
    CHECK(rc == 5);

    /* lm_agree itself (what the checkpoint code uses): the lowest failing
     * rank's code, negative ones too, and the largest code on the side; a
     * deadline given to healthy ranks is never used */
    snprintf(err, sizeof err, "%s", r == 1 ? "minus one" : r == 2 ? "two" : "");
    int big = 0;
    lm_agree_wait never = {0.001, NULL, NULL};
    rc = lm_agree(MPI_COMM_WORLD, r == 1 ? -1 : r == 2 ? 2 : 0, err, sizeof err, r == 1 || r == 2 ? NULL : &never, &big);
    CHECK(rc == -1 && big == 2 && !strcmp(err, "minus one"));
    snprintf(err, sizeof err, "kept %d", r);
    rc = lm_agree(MPI_COMM_WORLD, 0, err, sizeof err, &never, &big);
    snprintf(want, sizeof want, "kept %d", r);
    CHECK(rc == 0 && big == 0 && !strcmp(err, want));
    agree();
}

/* ---------------------------------------------------------------- stats */

static void test_stats(void **state) {
    (void)state;
    lm_group *w = comm_world();
    grp *pr = &G[G_PAIRS];
    lm_comm_stats s0, s1;
    float *x = calloc(4 * 100, sizeof *x);
    double y[10] = {0};
    int64_t z[3] = {0};
    int iv[5] = {0};
    unsigned char buf[1000];

#define DELTA(field) (s1.field - s0.field)
#define OTHERS_SAME(f1)                                                                                      \
    (((s1.allreduce_bytes == s0.allreduce_bytes) + (s1.reduce_scatter_bytes == s0.reduce_scatter_bytes) + \
      (s1.allgather_bytes == s0.allgather_bytes) + (s1.bcast_bytes == s0.bcast_bytes) +                   \
      (s1.p2p_bytes == s0.p2p_bytes)) == 4 && DELTA(f1) != 0)

    comm_stats(&s0);
    comm_allreduce_sum_f32(w, x, 100);
    comm_stats(&s1);
    CHECK(DELTA(allreduce_bytes) == 400.0 && OTHERS_SAME(allreduce_bytes));

    comm_stats(&s0);
    comm_allreduce_sum_f64(w, y, 10);
    comm_allreduce_sum_i64(w, z, 3);
    comm_allreduce_max_i32(w, iv, 5);
    comm_allreduce_max_f64(w, y, 2);
    comm_stats(&s1);
    CHECK(DELTA(allreduce_bytes) == 80.0 + 24.0 + 20.0 + 16.0 && OTHERS_SAME(allreduce_bytes));

    comm_stats(&s0);
    comm_reduce_scatter_sum_f32(w, x, 37);
    comm_stats(&s1);
    CHECK(DELTA(reduce_scatter_bytes) == 37.0 * 4 * 4 && OTHERS_SAME(reduce_scatter_bytes));

    comm_stats(&s0);
    comm_reduce_scatter_sum_f32(pr->g, x, 37);
    comm_stats(&s1);
    CHECK(DELTA(reduce_scatter_bytes) == 37.0 * 2 * 4 && OTHERS_SAME(reduce_scatter_bytes));

    comm_stats(&s0);
    comm_allgather_f32(w, x, 25);
    comm_allgather_f32(pr->g, x, 50);
    comm_stats(&s1);
    CHECK(DELTA(allgather_bytes) == 25.0 * 4 * 4 + 50.0 * 2 * 4 && OTHERS_SAME(allgather_bytes));

    /* non-blocking ones count the same */
    lm_req q[3];
    comm_stats(&s0);
    comm_iallreduce_sum_f32(w, x, 50, &q[0]);
    comm_wait(&q[0]);
    comm_stats(&s1);
    CHECK(DELTA(allreduce_bytes) == 200.0 && OTHERS_SAME(allreduce_bytes));
    comm_stats(&s0);
    comm_ireduce_scatter_sum_f32(w, x, 10, &q[1]);
    comm_wait(&q[1]);
    comm_stats(&s1);
    CHECK(DELTA(reduce_scatter_bytes) == 10.0 * 4 * 4 && OTHERS_SAME(reduce_scatter_bytes));
    comm_stats(&s0);
    comm_iallgather_f32(pr->g, x, 10, &q[2]);
    comm_wait(&q[2]);
    comm_stats(&s1);
    CHECK(DELTA(allgather_bytes) == 10.0 * 2 * 4 && OTHERS_SAME(allgather_bytes));

    comm_stats(&s0);
    comm_bcast(w, buf, 123, 0);
    comm_stats(&s1);
    CHECK(DELTA(bcast_bytes) == 123.0 && OTHERS_SAME(bcast_bytes));

    /* point to point: bytes sent plus bytes received */
    int partner = g_rank ^ 1;
    unsigned char in[1000];
    comm_stats(&s0);
    comm_irecv(w, in, 1000, partner, 11, &q[0]);
    comm_isend(w, buf, 1000, partner, 11, &q[1]);
    comm_wait(&q[0]);
    comm_wait(&q[1]);
    if (g_rank % 2 == 0) {
        comm_send(w, buf, 300, partner, 12);
    } else {
        comm_recv(w, in, 300, partner, 12);
    }
    comm_stats(&s1);
    CHECK(DELTA(p2p_bytes) == 2000.0 + 300.0 && OTHERS_SAME(p2p_bytes));

    /* seconds: the time blocked inside comm calls. Rank 0 sleeps before
     * joining an all-reduce: the others wait for it inside the call, rank 0
     * itself hardly waits. */
    MPI_Barrier(MPI_COMM_WORLD);
    comm_stats(&s0);
    if (g_rank == 0) nanosleep(&(struct timespec){0, 500000000L}, NULL);
    comm_allreduce_sum_f32(w, x, 1);
    comm_stats(&s1);
    double dt = DELTA(seconds);
    if (g_rank == 0)
        CHECK(dt >= 0.0 && dt < 0.4);
    else
        CHECK(dt >= 0.4 && dt < 30.0);
    if (!g_ok) fprintf(stderr, "rank %d: seconds went up by %.3f\n", g_rank, dt);
    CHECK(s1.seconds >= s0.seconds);
    /* the same through a non-blocking all-reduce: the wait is counted */
    MPI_Barrier(MPI_COMM_WORLD);
    comm_stats(&s0);
    if (g_rank == 0) nanosleep(&(struct timespec){0, 500000000L}, NULL);
    comm_iallreduce_sum_f32(w, x, 1, &q[0]);
    comm_wait(&q[0]);
    comm_stats(&s1);
    dt = DELTA(seconds);
    if (g_rank != 0) CHECK(dt >= 0.4 && dt < 30.0);
    if (!g_ok) fprintf(stderr, "rank %d: seconds went up by %.3f (non-blocking)\n", g_rank, dt);
#undef DELTA
#undef OTHERS_SAME
    free(x);
    agree();
}

/* ------------------------------------------------------ group of size 1 */

static void test_single(void **state) {
    (void)state;
    lm_group *g = G[G_SINGLE].g;
    CHECK(g->size == 1 && g->rank == 0);
    float x[20], x0[20];
    double y[3] = {1.5, -2.0, 3.25};
    int64_t z[2] = {(int64_t)1 << 50, -3};
    int iv[2] = {-4, 9};
    for (int i = 0; i < 20; i++) x[i] = x0[i] = f32_of(g_rank, (size_t)i);
    comm_allreduce_sum_f32(g, x, 20);
    comm_allreduce_sum_f64(g, y, 3);
    comm_allreduce_sum_i64(g, z, 2);
    comm_allreduce_max_i32(g, iv, 2);
    comm_allreduce_max_f64(g, y, 3);
    comm_reduce_scatter_sum_f32(g, x, 20);
    comm_allgather_f32(g, x, 20);
    CHECK(!memcmp(x, x0, sizeof x));
    CHECK(y[0] == 1.5 && y[1] == -2.0 && y[2] == 3.25 && z[0] == (int64_t)1 << 50 && z[1] == -3 && iv[0] == -4 &&
          iv[1] == 9);
    lm_req q[3];
    comm_iallreduce_sum_f32(g, x, 20, &q[0]);
    comm_ireduce_scatter_sum_f32(g, x, 10, &q[1]);
    comm_iallgather_f32(g, x, 20, &q[2]);
    for (int k = 0; k < 3; k++) CHECK(q[k].n == 0 && comm_test(&q[k]));
    CHECK(!memcmp(x, x0, sizeof x));
    unsigned char b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    comm_bcast(g, b, 8, 0);
    CHECK(b[0] == 1 && b[7] == 8);
    char err[LM_ERRLEN] = "solo";
    CHECK(comm_agree(g, 3, err, sizeof err) == 3 && !strcmp(err, "solo"));
    CHECK(comm_agree(g, 0, err, sizeof err) == 0);
    comm_barrier(g);
    agree();
}

/* ------------------------------------------------------------ topo_create */

/* For grids of 4 ranks: coordinates, group sizes, each group's rank = the
 * coordinate it spans, and its members (gathered through the group) = the
 * world ranks the formula gives. */
static void test_topo_create(void **state) {
    (void)state;
    static const int grids[][3] = {{4, 1, 1}, {2, 2, 1}, {1, 2, 2}, {2, 1, 2}, {1, 4, 1}, {1, 1, 4}};
    for (size_t k = 0; k < sizeof grids / sizeof grids[0]; k++) {
        int dp = grids[k][0], tp = grids[k][1], pp = grids[k][2];
        lm_topo T;
        topo_create(&T, dp, tp, pp);
        int d, t, p;
        topo_coords(g_rank, dp, tp, pp, &d, &t, &p);
        int ok = T.world == 4 && T.rank == g_rank && T.dp == dp && T.tp == tp && T.pp == pp && T.dp_rank == d &&
                 T.tp_rank == t && T.pp_rank == p;
        ok &= T.dp_group->size == dp && T.tp_group->size == tp && T.pp_group->size == pp;
        ok &= T.dp_group->rank == d && T.tp_group->rank == t && T.pp_group->rank == p;
        lm_group *gs[3] = {T.dp_group, T.tp_group, T.pp_group};
        for (int which = 0; which < 3; which++) { /* unconditional: every member takes part */
            int n = gs[which]->size;
            float mem[4] = {-1, -1, -1, -1};
            mem[gs[which]->rank] = (float)g_rank;
            comm_allgather_f32(gs[which], mem, 1);
            for (int j = 0; j < n; j++) {
                int want = which == 0 ? (p * dp + j) * tp + t : which == 1 ? (p * dp + d) * tp + j : (j * dp + d) * tp + t;
                ok &= mem[j] == (float)want;
            }
        }
        if (!ok) fprintf(stderr, "rank %d: topo_create dp %d tp %d pp %d wrong\n", g_rank, dp, tp, pp);
        CHECK(ok);
        topo_destroy(&T);
        CHECK(T.dp_group == NULL && T.tp_group == NULL && T.pp_group == NULL);
    }
    agree();
}

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    g_rank = comm_world()->rank;
    if (comm_world()->size != 4) {
        if (g_rank == 0) printf("1..0 # SKIP needs exactly 4 ranks (mpirun -np 4)\n");
        comm_finalize();
        return 0;
    }
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout)) return 1; /* TAP from rank 0 only */
    groups_make();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_and_split), cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_reduce_scatter),  cmocka_unit_test(test_allgather),
        cmocka_unit_test(test_nonblocking),     cmocka_unit_test(test_p2p),
        cmocka_unit_test(test_bcast),           cmocka_unit_test(test_agree),
        cmocka_unit_test(test_stats),           cmocka_unit_test(test_single),
        cmocka_unit_test(test_topo_create),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    groups_free();
    comm_finalize();
    return failed;
}
