/* comm.c — MPI implementation of the comm layer (host buffers).
 *
 * Every call that can block (collectives, the start of non-blocking ones,
 * point to point, wait, test, barrier, agree) calls the region hooks
 * (comm_set_region_hooks; the profiler's `comm` region, obs/prof.h) over
 * the same span whose seconds it adds to the statistics, so the region's
 * time is the comm layer's blocked time. */
#include "comm.h"
#include "agree.h"
#include "comm_dev.h"
#include "common.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static lm_group g_world;
static lm_comm_stats g_world_stats;
lm_comm_stats g_comm_stats; /* shared with comm_dev.c */
#define g_stats g_comm_stats

/* Add an operation of `kind` (LM_COLL_*, or -1 for point to point) with
 * `bytes` of payload (for reduce-scatter and all-gather: all blocks) to the
 * totals and to g's own counters. */
void comm_account(const lm_group *g, int kind, double bytes, double seconds) {
    lm_comm_stats *t[2] = {&g_stats, g->stats};
    double p = g->size;
    double sent = kind == LM_COLL_ALLREDUCE ? 2.0 * (p - 1.0) / p * bytes
                : kind < 0 ? bytes : (p - 1.0) / p * bytes;
    for (int i = 0; i < 2; i++) {
        if (!t[i]) continue;
        if (kind == LM_COLL_ALLREDUCE) t[i]->allreduce_bytes += bytes;
        if (kind == LM_COLL_REDUCE_SCATTER) t[i]->reduce_scatter_bytes += bytes;
        if (kind == LM_COLL_ALLGATHER) t[i]->allgather_bytes += bytes;
        if (kind == LM_COLL_BCAST) t[i]->bcast_bytes += bytes;
        if (kind < 0) t[i]->p2p_bytes += bytes;
        if (kind != LM_COLL_BCAST) t[i]->sent += sent;
        t[i]->calls++;
        t[i]->seconds += seconds;
    }
}

static comm_region_fn g_region_enter, g_region_leave;

void comm_set_region_hooks(comm_region_fn enter_fn, comm_region_fn leave_fn) {
    g_region_enter = enter_fn;
    g_region_leave = leave_fn;
}

/* Entering and leaving the comm region: the start time, the seconds. */
static inline double enter(void) {
    if (g_region_enter) g_region_enter();
    return lm_now();
}
static inline double leave(double t0) {
    double dt = lm_now() - t0;
    if (g_region_leave) g_region_leave();
    return dt;
}

/* Blocked time of an operation that moves no payload (barrier, agree). */
static void blocked(const lm_group *g, double seconds) {
    g_stats.seconds += seconds;
    if (g->stats && g->stats != &g_stats) g->stats->seconds += seconds;
}

/* Counting an operation inside the region, so that counters read at region
 * boundaries (the SDE byte counters) land in `comm`. */
static void account_leave(const lm_group *g, int kind, double bytes, double t0) {
    comm_account(g, kind, bytes, lm_now() - t0);
    if (g_region_leave) g_region_leave();
}

void comm_group_stats(const lm_group *g, lm_comm_stats *s) {
    if (g->stats) *s = *g->stats;
    else memset(s, 0, sizeof *s);
}

/* Open MPI's default MPI-IO component (OMPIO, 4.1) returns wrong data for
 * collective reads in which ranks ask for overlapping, row-cutting pieces of
 * a dataset (tests/unit/test_ckpt_mpi.c, "overlapping slabs"); ROMIO reads
 * them right. Unless the user chose a component, Open MPI is told to use
 * anything but OMPIO; other MPIs ignore the variable. */
static void io_component_default(void) { setenv("OMPI_MCA_io", "^ompio", 0); }

void comm_init(int *argc, char ***argv) {
    int provided = 0;
    io_component_default();
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_world.comm = MPI_COMM_WORLD;
    g_world.stats = &g_world_stats;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
}

void comm_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

lm_group *comm_world(void) { return &g_world; }

int comm_local_rank(void) {
    MPI_Comm node;
    int r = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_world.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
}

lm_group *comm_split(const lm_group *g, int color, int key) {
    lm_group *n = lm_alloc(sizeof *n); /* zeroed: no device bound */
    n->stats = lm_alloc(sizeof *n->stats);
    MPI_Comm_split(g->comm, color, key, &n->comm);
    MPI_Comm_rank(n->comm, &n->rank);
    MPI_Comm_size(n->comm, &n->size);
    return n;
}

void comm_free(lm_group *g) {
    if (!g) return;
    comm_detach_device(g);
    if (g == &g_world) return;
    MPI_Comm_free(&g->comm);
    lm_free(g->stats);
    lm_free(g);
}

void comm_stats(lm_comm_stats *s) { *s = g_stats; }

/* MPI counts are int: large buffers go in pieces of at most 2^30 elements. */
#define PIECE ((size_t)1 << 30)

static int pieces(size_t n) { return n ? (int)((n + PIECE - 1) / PIECE) : 0; }

static void allreduce(const lm_group *g, void *x, size_t n, size_t esize, MPI_Datatype t, MPI_Op op) {
    if (g->size == 1) return;
    double t0 = enter();
    for (size_t off = 0; off < n; off += PIECE) {
        size_t m = n - off < PIECE ? n - off : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + off * esize, (int)m, t, op, g->comm);
    }
    account_leave(g, LM_COLL_ALLREDUCE, (double)(n * esize), t0);
}

void comm_allreduce_sum_f32(const lm_group *g, float *x, size_t n) { allreduce(g, x, n, 4, MPI_FLOAT, MPI_SUM); }
void comm_allreduce_sum_f64(const lm_group *g, double *x, size_t n) { allreduce(g, x, n, 8, MPI_DOUBLE, MPI_SUM); }
void comm_allreduce_sum_i64(const lm_group *g, int64_t *x, size_t n) { allreduce(g, x, n, 8, MPI_INT64_T, MPI_SUM); }
void comm_allreduce_max_i32(const lm_group *g, int *x, size_t n) { allreduce(g, x, n, 4, MPI_INT, MPI_MAX); }
void comm_allreduce_max_f64(const lm_group *g, double *x, size_t n) { allreduce(g, x, n, 8, MPI_DOUBLE, MPI_MAX); }

void comm_bcast(const lm_group *g, void *buf, size_t bytes, int root) {
    if (g->size == 1) return;
    double t0 = enter();
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t m = bytes - off < PIECE ? bytes - off : PIECE;
        MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, g->comm);
    }
    account_leave(g, LM_COLL_BCAST, (double)bytes, t0);
}

void comm_barrier(const lm_group *g) {
    if (g->size == 1) return;
    double t0 = enter();
    MPI_Barrier(g->comm);
    blocked(g, leave(t0));
}

/* Reduce-scatter and all-gather take one block per rank; a block of more
 * than 2^30 floats would need a derived datatype, which lamina never needs
 * (blocks are chunk shards, far smaller). */
static int block_count(size_t n, const char *what) {
    if (n > PIECE) lm_abort(LM_ERR_RUNTIME, "%s: block of %zu elements exceeds 2^30", what, n);
    return (int)n;
}

void comm_reduce_scatter_sum_f32(const lm_group *g, float *x, size_t n) {
    lm_req q;
    comm_ireduce_scatter_sum_f32(g, x, n, &q);
    comm_wait(&q);
}

void comm_allgather_f32(const lm_group *g, float *x, size_t n) {
    lm_req q;
    comm_iallgather_f32(g, x, n, &q);
    comm_wait(&q);
}

void comm_iallreduce_sum_f32(const lm_group *g, float *x, size_t n, lm_req *q) {
    *q = (lm_req){.n = 0};
    if (g->size == 1) return;
    double t0 = enter();
    if (pieces(n) > LM_REQ_PIECES) lm_abort(LM_ERR_RUNTIME, "iallreduce: %zu elements is too large", n);
    for (size_t off = 0; off < n; off += PIECE) {
        size_t m = n - off < PIECE ? n - off : PIECE;
        MPI_Iallreduce(MPI_IN_PLACE, x + off, (int)m, MPI_FLOAT, MPI_SUM, g->comm, &q->r[q->n++]);
    }
    account_leave(g, LM_COLL_ALLREDUCE, (double)n * 4, t0);
}

void comm_ireduce_scatter_sum_f32(const lm_group *g, float *x, size_t n, lm_req *q) {
    *q = (lm_req){.n = 0};
    if (g->size == 1) return;
    double t0 = enter();
    MPI_Ireduce_scatter_block(MPI_IN_PLACE, x, block_count(n, "reduce-scatter"), MPI_FLOAT, MPI_SUM, g->comm,
                              &q->r[q->n++]);
    account_leave(g, LM_COLL_REDUCE_SCATTER, (double)n * (double)g->size * 4, t0);
}

void comm_iallgather_f32(const lm_group *g, float *x, size_t n, lm_req *q) {
    *q = (lm_req){.n = 0};
    if (g->size == 1) return;
    double t0 = enter();
    MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, block_count(n, "all-gather"), MPI_FLOAT, g->comm,
                   &q->r[q->n++]);
    account_leave(g, LM_COLL_ALLGATHER, (double)n * (double)g->size * 4, t0);
}

static void p2p(const lm_group *g, void *buf, size_t bytes, int peer, int tag, lm_req *q, int send) {
    *q = (lm_req){.n = 0};
    if (pieces(bytes) > LM_REQ_PIECES) lm_abort(LM_ERR_RUNTIME, "send/recv: %zu bytes is too large", bytes);
    double t0 = enter();
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t m = bytes - off < PIECE ? bytes - off : PIECE;
        if (send)
            MPI_Isend((char *)buf + off, (int)m, MPI_BYTE, peer, tag, g->comm, &q->r[q->n++]);
        else
            MPI_Irecv((char *)buf + off, (int)m, MPI_BYTE, peer, tag, g->comm, &q->r[q->n++]);
    }
    account_leave(g, -1, (double)bytes, t0);
}

void comm_isend(const lm_group *g, const void *buf, size_t bytes, int dst, int tag, lm_req *q) {
    p2p(g, (void *)buf, bytes, dst, tag, q, 1);
}
void comm_irecv(const lm_group *g, void *buf, size_t bytes, int src, int tag, lm_req *q) {
    p2p(g, buf, bytes, src, tag, q, 0);
}
void comm_send(const lm_group *g, const void *buf, size_t bytes, int dst, int tag) {
    lm_req q;
    comm_isend(g, buf, bytes, dst, tag, &q);
    comm_wait(&q);
}
void comm_recv(const lm_group *g, void *buf, size_t bytes, int src, int tag) {
    lm_req q;
    comm_irecv(g, buf, bytes, src, tag, &q);
    comm_wait(&q);
}

void comm_wait(lm_req *q) {
    if (q->event || q->stage) {
        comm_dev_finish(q, 1);
        return;
    }
    if (!q->n) return;
    double t0 = enter();
    MPI_Waitall(q->n, q->r, MPI_STATUSES_IGNORE);
    q->n = 0;
    g_stats.seconds += leave(t0);
}

int comm_test(lm_req *q) {
    if (q->event || q->stage) return comm_dev_finish(q, 0);
    if (!q->n) return 1;
    double t0 = enter();
    int done = 0;
    MPI_Testall(q->n, q->r, &done, MPI_STATUSES_IGNORE);
    if (done) q->n = 0;
    g_stats.seconds += leave(t0);
    return done;
}

/* lm_agree (src/core/agree.c) on the group, timed like every collective;
 * comm_agree's verdict is the largest status. */
int comm_agree(const lm_group *g, int status, char *err, size_t errlen) {
    if (g->size == 1) return status;
    double t0 = enter();
    int worst = 0;
    lm_agree(g->comm, status, err, errlen, NULL, &worst);
    blocked(g, leave(t0));
    return worst;
}

MPI_Comm comm_mpi(const lm_group *g) { return g->comm; }
