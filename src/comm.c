/* comm.c — MPI implementation of the comm layer (host buffers). */
#include "comm.h"
#include "common.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static lm_group g_world;

void comm_init(int *argc, char ***argv) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_world.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
}

void comm_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

lm_group *comm_world(void) { return &g_world; }

lm_group *comm_split(const lm_group *g, int color, int key) {
    lm_group *n = lm_alloc(sizeof *n);
    MPI_Comm_split(g->comm, color, key, &n->comm);
    MPI_Comm_rank(n->comm, &n->rank);
    MPI_Comm_size(n->comm, &n->size);
    return n;
}

void comm_free(lm_group *g) {
    if (!g || g == &g_world) return;
    MPI_Comm_free(&g->comm);
    lm_free(g);
}

/* MPI counts are int: large buffers go in pieces of at most INT_MAX/2. */
#define PIECE ((size_t)1 << 30)

static void allreduce(const lm_group *g, void *x, size_t n, size_t esize, MPI_Datatype t, MPI_Op op) {
    if (g->size == 1) return;
    for (size_t off = 0; off < n; off += PIECE) {
        size_t m = n - off < PIECE ? n - off : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + off * esize, (int)m, t, op, g->comm);
    }
}

void comm_allreduce_sum_f32(const lm_group *g, float *x, size_t n) { allreduce(g, x, n, 4, MPI_FLOAT, MPI_SUM); }
void comm_allreduce_sum_f64(const lm_group *g, double *x, size_t n) { allreduce(g, x, n, 8, MPI_DOUBLE, MPI_SUM); }
void comm_allreduce_sum_i64(const lm_group *g, int64_t *x, size_t n) { allreduce(g, x, n, 8, MPI_INT64_T, MPI_SUM); }
void comm_allreduce_max_i32(const lm_group *g, int *x, size_t n) { allreduce(g, x, n, 4, MPI_INT, MPI_MAX); }

void comm_bcast(const lm_group *g, void *buf, size_t bytes, int root) {
    if (g->size == 1) return;
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t m = bytes - off < PIECE ? bytes - off : PIECE;
        MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, g->comm);
    }
}

void comm_barrier(const lm_group *g) {
    if (g->size > 1) MPI_Barrier(g->comm);
}

int comm_agree(const lm_group *g, int status, char *err, size_t errlen) {
    if (g->size == 1) return status;
    int pair[2] = {status, status ? g->rank : INT_MAX}, worst = 0, first = INT_MAX;
    MPI_Allreduce(&pair[0], &worst, 1, MPI_INT, MPI_MAX, g->comm);
    MPI_Allreduce(&pair[1], &first, 1, MPI_INT, MPI_MIN, g->comm);
    if (worst && err && errlen) {
        char buf[LM_ERRLEN] = {0};
        if (g->rank == first) snprintf(buf, sizeof buf, "%s", err);
        MPI_Bcast(buf, LM_ERRLEN, MPI_CHAR, first, g->comm);
        snprintf(err, errlen, "%s", buf);
    }
    return worst;
}

MPI_Comm comm_mpi(const lm_group *g) { return g->comm; }
