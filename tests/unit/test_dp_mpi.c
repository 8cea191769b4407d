/* test_dp_mpi.c — the data-parallel layer on 4 ranks: the comm layer
 * (in-place reduce-scatter and all-gather, non-blocking operations, point to
 * point, agreement, byte counters), the process grid, and the ZeRO manager
 * (stages 0, 1, 2, overlap on and off) against a serial AdamW on the summed
 * gradient. Prints TAP by hand from rank 0 (one plan; a test passes only if
 * it passed on every rank). */
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

static int g_rank, g_test;

static void report(int ok_local, const char *what) {
    int bad = !ok_local;
    comm_allreduce_max_i32(comm_world(), &bad, 1);
    int ok = !bad;
    g_test++;
    if (g_rank == 0) {
        printf("%sok %d - %s\n", ok ? "" : "not ", g_test, what);
        fflush(stdout);
    }
}

/* ------------------------------------------------------------------ comm */

static void test_comm(void) {
    lm_group *w = comm_world();
    int P = w->size, r = w->rank;
    enum { N = 37 }; /* block length: not a multiple of anything */
    float *x = malloc(sizeof(float) * N * (size_t)P);
    for (int b = 0; b < P; b++)
        for (int i = 0; i < N; i++) x[b * N + i] = (float)(1000 * r + 10 * b + i);
    lm_comm_stats s0, s1;
    comm_stats(&s0);
    comm_reduce_scatter_sum_f32(w, x, N);
    comm_stats(&s1);
    /* block 0 now holds sum over ranks q of (1000 q + 10 r + i) */
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= x[i] == (float)(1000 * (P * (P - 1) / 2) + P * (10 * r + i));
    report(ok, "reduce-scatter in place: block 0 holds the sum of block rank");
    report(s1.reduce_scatter_bytes - s0.reduce_scatter_bytes == (double)N * P * 4,
           "reduce-scatter counts n x size x 4 bytes");

    for (int b = 0; b < P; b++)
        for (int i = 0; i < N; i++) x[b * N + i] = b == r ? (float)(7 * r + i) : -1.0f;
    comm_allgather_f32(w, x, N);
    ok = 1;
    for (int b = 0; b < P; b++)
        for (int i = 0; i < N; i++) ok &= x[b * N + i] == (float)(7 * b + i);
    report(ok, "all-gather in place: block b from rank b");

    /* three non-blocking operations in flight at once, completed by polling */
    float a[N], c[N * 4], d[N * 4];
    for (int i = 0; i < N; i++) a[i] = (float)(r + i);
    for (int i = 0; i < N * P; i++) c[i] = (float)(r * i), d[i] = i / N == r ? (float)(r + 1) : 0.0f;
    lm_req q[3];
    comm_iallreduce_sum_f32(w, a, N, &q[0]);
    comm_ireduce_scatter_sum_f32(w, c, N, &q[1]);
    comm_iallgather_f32(w, d, N, &q[2]);
    int done = 0, spins = 0;
    while (done < 3 && spins < 10000000) {
        done = 0;
        for (int k = 0; k < 3; k++) done += comm_test(&q[k]);
        spins++;
    }
    ok = done == 3;
    for (int i = 0; i < N; i++) ok &= a[i] == (float)(P * (P - 1) / 2 + P * i);
    for (int i = 0; i < N; i++) ok &= c[i] == (float)((P * (P - 1) / 2) * (r * N + i));
    for (int i = 0; i < N * P; i++) ok &= d[i] == (float)(i / N + 1);
    report(ok, "non-blocking all-reduce, reduce-scatter, all-gather in flight together, completed by comm_test");

    /* ring: send to the right, receive from the left, both non-blocking */
    int out[3] = {r, 2 * r, 3 * r}, in[3] = {-1, -1, -1};
    lm_req sq, rq;
    comm_irecv(w, in, sizeof in, (r + P - 1) % P, 5, &rq);
    comm_isend(w, out, sizeof out, (r + 1) % P, 5, &sq);
    comm_wait(&rq);
    comm_wait(&sq);
    int left = (r + P - 1) % P;
    report(in[0] == left && in[1] == 2 * left && in[2] == 3 * left, "isend/irecv ring");
    int y = r;
    if (r % 2 == 0 && r + 1 < P) comm_send(w, &y, sizeof y, r + 1, 9);
    if (r % 2 == 1) comm_recv(w, &y, sizeof y, r - 1, 9);
    report(y == (r % 2 ? r - 1 : r), "blocking send/recv pairs");

    /* groups of 2 (ranks {0,1}, {2,3}): collectives stay inside the group */
    lm_group *g = comm_split(w, r / 2, r);
    double v = r;
    comm_allreduce_sum_f64(g, &v, 1);
    report(g->size == 2 && v == (double)(r / 2 * 4 + 1), "split groups: all-reduce inside the group");
    comm_free(g);

    char err[LM_ERRLEN] = "";
    if (r == 2) snprintf(err, sizeof err, "rank two failed");
    int rc = comm_agree(w, r == 2 ? 2 : 0, err, sizeof err);
    report(rc == 2 && !strcmp(err, "rank two failed"), "comm_agree: one rank fails, all get its code and message");
    free(x);
}

/* ------------------------------------------------------------------ topo */

static void test_topo(void) {
    char err[LM_ERRLEN];
    int dp = 0, ok = 1;
    ok &= topo_sizes(8, 2, 2, 0, &dp, err, sizeof err) == 0 && dp == 2;
    ok &= topo_sizes(6, 4, 1, 0, &dp, err, sizeof err) == 2 && strstr(err, "multiple of 4");
    ok &= topo_sizes(8, 2, 1, 3, &dp, err, sizeof err) == 2 && strstr(err, "does not match the 8 ranks");
    report(ok, "topo_sizes: auto dp, errors for sizes that do not factor the world");
    ok = 1;
    for (int rk = 0; rk < 8; rk++) {
        int d, t, p;
        topo_coords(rk, 2, 2, 2, &d, &t, &p);
        ok &= rk == (p * 2 + d) * 2 + t;
    }
    report(ok, "topo_coords: rank = (pp_rank x dp + dp_rank) x tp + tp_rank");
    lm_topo T;
    topo_create(&T, 2, 2, 1); /* 4 ranks: tp groups {0,1},{2,3}; dp groups {0,2},{1,3} */
    int tr = T.tp_group->rank, dr = T.dp_group->rank;
    int sum_tp = g_rank, sum_dp = g_rank;
    comm_allreduce_max_i32(T.tp_group, &sum_tp, 1);
    comm_allreduce_max_i32(T.dp_group, &sum_dp, 1);
    report(tr == g_rank % 2 && dr == g_rank / 2 && sum_tp == (g_rank | 1) && sum_dp == 2 + g_rank % 2 &&
               T.pp_group->size == 1,
           "topo_create: tp groups are consecutive ranks, dp groups stride by tp");
    topo_destroy(&T);
}

/* ------------------------------------------------------------------ zero */

/* Tensors whose sizes are not multiples of 16, so shards cut them. */
static void build(lm_params *ps, int dp) {
    memset(ps, 0, sizeof *ps);
    params_add(ps, "embed", 2, 37, 13);
    params_add(ps, "ln", 1, 13, 0);
    params_add(ps, "wq", 2, 29, 13);
    params_add(ps, "w_big", 2, 41, 23);
    params_add(ps, "ln2", 1, 13, 0);
    params_add(ps, "head", 2, 19, 13);
    chunks_build(ps, (size_t)16 * (size_t)dp);
    for (int i = 0; i < ps->n; i++)
        for (size_t k = 0; k < ps->p[i].numel; k++) ((float *)ps->p[i].w)[k] = 0.01f * (float)((int)((i * 31 + k * 7) % 23) - 11);
}

/* The gradient rank r adds to element k of tensor i in micro-step u. */
static float grad_of(int r, int u, int i, size_t k) {
    return 0.001f * (float)((int)((r * 13 + u * 5 + i * 3 + k) % 17) - 8);
}

/* One step through the manager: 2 micro-steps of a fake backward in
 * reverse tensor order; with `tied`, tensor 0's gradient is taken first
 * and marked done last (as a tied embedding's is). */
static void run_step(lm_zero *z, lm_params *ps, int r, int tied, const lm_config *c, double *sumsq) {
    lm_grad_hooks *h = zero_hooks(z);
    zero_step_begin(z);
    for (int u = 0; u < 2; u++) {
        zero_micro_begin(z, u == 1);
        if (tied) {
            float *g0 = h->grad(h->ctx, &ps->p[0]);
            for (size_t k = 0; k < ps->p[0].numel; k++) g0[k] += 0.5f * grad_of(r, u, 0, k);
        }
        for (int i = ps->n - 1; i >= 0; i--) {
            lm_param *p = &ps->p[i];
            float *g = h->grad(h->ctx, p);
            float f = tied && i == 0 ? 0.5f : 1.0f;
            for (size_t k = 0; k < p->numel; k++) g[k] += f * grad_of(r, u, i, k);
            h->done(h->ctx, p);
        }
        zero_micro_end(z);
    }
    *sumsq = zero_reduced_grad_sumsq(z);
    lm_adamw_hp hp = adamw_hp_of(c);
    zero_update(z, &hp, 1e-2, 0.5, 1);
}

static void test_zero(void) {
    lm_group *w = comm_world();
    int P = w->size;
    lm_device *d = device_cpu_create(0);
    lm_config c;
    deck_defaults(&c);
    c.weight_decay = 0.1;
    /* serial reference: the summed gradient, one AdamW step */
    lm_params ref;
    build(&ref, P);
    params_alloc_state(&ref);
    double want = 0.0;
    for (int i = 0; i < ref.n; i++)
        for (size_t k = 0; k < ref.p[i].numel; k++) {
            float s = 0.0f;
            for (int r = 0; r < P; r++)
                for (int u = 0; u < 2; u++) s += grad_of(r, u, i, k);
            ((float *)ref.p[i].g)[k] = s;
            want += (double)s * s;
        }
    lm_adamw_hp hp = adamw_hp_of(&c);
    adamw_step(d, &ref, &hp, 1e-2, 0.5, 1);

    for (int stage = 0; stage <= 2; stage++)
        for (int ov = 0; ov <= 1; ov++)
            for (int tied = 0; tied <= (stage == 2 && ov); tied++) {
                lm_params ps;
                build(&ps, P);
                lm_zero *z = zero_create(&ps, d, w, stage, ov);
                double ss = 0;
                run_step(z, &ps, g_rank, tied, &c, &ss);
                double maxd = 0.0;
                for (int i = 0; i < ps.n; i++)
                    for (size_t k = 0; k < ps.p[i].numel; k++) {
                        double e = fabs((double)((float *)ps.p[i].w)[k] - (double)((float *)ref.p[i].w)[k]);
                        if (e > maxd) maxd = e;
                    }
                /* every rank holds the same weights: compare a checksum of them */
                double cs = 0.0;
                for (size_t k = 0; k < ps.arena; k++) cs += (double)((float *)ps.w)[k] * (double)(k % 97 + 1);
                double lo = cs, hi = cs;
                comm_allreduce_max_f64(w, &hi, 1);
                lo = -lo;
                comm_allreduce_max_f64(w, &lo, 1);
                char what[160];
                snprintf(what, sizeof what,
                         "ZeRO-%d overlap %d%s: grad norm^2 and weights after AdamW match the serial step "
                         "(max |dw| %.1e), replicas identical",
                         stage, ov, tied ? " tied-style" : "", maxd);
                report(fabs(ss - want) <= 1e-5 * want && maxd < 1e-6 && hi == -lo, what);

                lm_zero_mem mem;
                zero_memory_bytes(z, &mem);
                size_t psi = ps.arena;
                report(mem.weights == 4 * psi && mem.grads == (stage == 2 ? 4 * psi / P : 4 * psi) &&
                           mem.optim == (stage == 0 ? 8 * psi : 8 * psi / P),
                       "zero_memory_bytes: the ZeRO formula of the stage");

                /* checkpoint pieces: every element of every tensor in exactly one
                 * rank's piece; the piece's data are the weights there */
                ckpt_tensor *tw = calloc((size_t)ps.n, sizeof *tw), *tm = calloc((size_t)ps.n, sizeof *tm);
                zero_ckpt_tensors(z, tw, tm, NULL);
                int ok = 1;
                for (int i = 0; i < ps.n; i++) {
                    int n = (int)ps.p[i].numel;
                    int *cover = calloc((size_t)n, sizeof(int));
                    for (int64_t k = 0; k < tw[i].count; k++) {
                        cover[tw[i].off + k] = 1;
                        ok &= tw[i].data[k] == ((float *)ps.p[i].w)[tw[i].off + k];
                    }
                    ok &= tm[i].off == tw[i].off && tm[i].count == tw[i].count;
                    int64_t *c64 = calloc((size_t)n, sizeof(int64_t));
                    for (int k = 0; k < n; k++) c64[k] = cover[k];
                    comm_allreduce_sum_i64(w, c64, (size_t)n);
                    for (int k = 0; k < n; k++) ok &= c64[k] == 1;
                    free(c64);
                    free(cover);
                }
                report(ok, "checkpoint pieces cover every element once, data = the weights");
                free(tw);
                free(tm);
                zero_destroy(z);
                params_free(&ps);
            }
    params_free(&ref);
    device_destroy(d);
}

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    g_rank = comm_world()->rank;
    if (comm_world()->size != 4) {
        if (g_rank == 0) printf("1..0 # SKIP needs exactly 4 ranks (mpirun -np 4)\n");
        comm_finalize();
        return 0;
    }
    if (g_rank == 0) printf("1..32\n");
    test_comm();
    test_topo();
    test_zero();
    comm_finalize();
    return 0;
}
