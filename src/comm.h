/* comm.h — the communication layer. Every collective lamina does goes through
 * here; no other module calls MPI for communication (HDF5's mpio driver is
 * handed the communicator by comm_mpi()). A group is a communicator over a
 * subset of the world: the whole world, or one data/tensor/pipeline group of
 * the process grid. */
#ifndef LAMINA_COMM_H
#define LAMINA_COMM_H
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lm_group {
    MPI_Comm comm;
    int rank, size;
} lm_group;

/* MPI_Init_thread (funneled) and the world group. */
void comm_init(int *argc, char ***argv);
void comm_finalize(void);
lm_group *comm_world(void);

/* Split `parent` into groups of equal `color`, ordered by `key`. */
lm_group *comm_split(const lm_group *g, int color, int key);
void comm_free(lm_group *g);

/* In-place sums. */
void comm_allreduce_sum_f32(const lm_group *g, float *x, size_t n);
void comm_allreduce_sum_f64(const lm_group *g, double *x, size_t n);
void comm_allreduce_sum_i64(const lm_group *g, int64_t *x, size_t n);
void comm_allreduce_max_i32(const lm_group *g, int *x, size_t n);
void comm_bcast(const lm_group *g, void *buf, size_t bytes, int root);
void comm_barrier(const lm_group *g);

/* Collective verdict: every rank passes its own status (0 = ok) and gets the
 * largest one back; with a non-zero result, the message of the lowest rank
 * that failed is copied into err on every rank. Use it after any step where
 * one rank alone may fail (a file read), so that all exit together. */
int comm_agree(const lm_group *g, int status, char *err, size_t errlen);

MPI_Comm comm_mpi(const lm_group *g);

#endif
