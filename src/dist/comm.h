/* comm.h — the communication layer. Every collective and point-to-point
 * transfer lamina does goes through here; no other module calls MPI for
 * communication (HDF5's mpio driver is handed the communicator by
 * comm_mpi()). A group is a communicator over a subset of the world: the
 * whole world, or one data/tensor/pipeline group of the process grid.
 *
 * This is the MPI implementation, on host buffers. Non-blocking operations
 * return an lm_req that comm_wait / comm_test complete; MPI makes progress
 * on them only inside MPI calls, so a caller that overlaps communication with
 * compute calls comm_test between its kernels (see zero.c). Every call adds
 * its bytes to per-kind counters and the time spent inside it (the time the
 * calling thread was blocked in communication) to comm_stats. */
#ifndef LAMINA_COMM_H
#define LAMINA_COMM_H
#include "device.h"
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lm_comm_stats lm_comm_stats;

typedef struct lm_group {
    MPI_Comm comm;
    int rank, size;
    lm_comm_stats *stats; /* this group's share of the counters (comm_group_stats) */
    lm_device *dev;   /* device of the comm_dev_* buffers (comm_attach_device) */
    void *nccl;       /* ncclComm_t when the group's device collectives run on NCCL */
} lm_group;

/* A non-blocking operation: up to LM_REQ_PIECES MPI requests (buffers of
 * more than 2^30 elements go in pieces, MPI counts being int). */
#define LM_REQ_PIECES 8
typedef struct {
    MPI_Request r[LM_REQ_PIECES];
    int n;
    struct lm_stage *stage;   /* comm_dev_*: host copy to put back on completion */
    void *event;              /* comm_dev_* on NCCL: cudaEvent_t recorded after the operation */
} lm_req;

/* Called on entering and leaving every call that can block (NULL: none).
 * The profiler (obs/prof.c) installs its `comm` region here while it
 * records, so the comm layer depends on no instrumentation. */
typedef void (*comm_region_fn)(void);
void comm_set_region_hooks(comm_region_fn enter, comm_region_fn leave);

/* MPI_Init_thread (funneled) and the world group. */
void comm_init(int *argc, char ***argv);
void comm_finalize(void);
lm_group *comm_world(void);
/* Rank among the processes on this node (for choosing a GPU). */
int comm_local_rank(void);

/* Split `parent` into groups of equal `color`, ordered by `key`. */
lm_group *comm_split(const lm_group *g, int color, int key);
void comm_free(lm_group *g);

/* Blocking collectives, in place. */
void comm_allreduce_sum_f32(const lm_group *g, float *x, size_t n);
void comm_allreduce_sum_f64(const lm_group *g, double *x, size_t n);
void comm_allreduce_sum_i64(const lm_group *g, int64_t *x, size_t n);
void comm_allreduce_max_i32(const lm_group *g, int *x, size_t n);
void comm_allreduce_max_f64(const lm_group *g, double *x, size_t n);
void comm_bcast(const lm_group *g, void *buf, size_t bytes, int root);
void comm_barrier(const lm_group *g);

/* Reduce-scatter (sum) in place: x holds g->size blocks of n floats; on
 * return block 0 of x (x[0..n)) holds the sum over ranks of block g->rank. */
void comm_reduce_scatter_sum_f32(const lm_group *g, float *x, size_t n);
/* All-gather in place: x holds g->size blocks of n floats; block r of every
 * rank receives block r of rank r. */
void comm_allgather_f32(const lm_group *g, float *x, size_t n);

/* Non-blocking variants of the above (same semantics once complete). */
void comm_iallreduce_sum_f32(const lm_group *g, float *x, size_t n, lm_req *q);
void comm_ireduce_scatter_sum_f32(const lm_group *g, float *x, size_t n, lm_req *q);
void comm_iallgather_f32(const lm_group *g, float *x, size_t n, lm_req *q);

/* Collectives on device buffers of the compute dtype t (or LM_F32), in place,
 * with the semantics of the float32 ones above. Where they run:
 *   NCCL      the group's device is CUDA and comm_attach_device set up an
 *             NCCL communicator: on a communication stream that waits for
 *             the compute stream's work so far; comm_wait makes the compute
 *             stream wait for the operation (the host does not block);
 *   MPI       float32 buffers of a host-visible device: directly;
 *   staged    otherwise: widened to a float32 host copy, reduced by MPI,
 *             put back (rounded) on completion. For debugging the NCCL path
 *             against MPI, and for the CPU bf16 emulation.
 * Sums of bf16 on NCCL accumulate in bf16 per hop; the staged path sums in
 * float32. */
void comm_dev_iallreduce_sum(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q);
void comm_dev_ireduce_scatter_sum(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q);
void comm_dev_iallgather(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q);

/* Point to point of `bytes` raw bytes of device buffers within group g
 * (bound to a device): MPI directly where the device is host-visible, else
 * staged through a host copy. Complete with comm_wait / comm_test. */
void comm_dev_isend(const lm_group *g, const void *x, size_t bytes, int dst, int tag, lm_req *q);
void comm_dev_irecv(const lm_group *g, void *x, size_t bytes, int src, int tag, lm_req *q);

/* Bind group g to device d (collective over g). With use_nccl on a CUDA
 * device, an NCCL communicator is bootstrapped from g (rank 0's unique id
 * broadcast over MPI); returns 0, or -1 with the reason in why (the group
 * then stays on MPI). */
int comm_attach_device(lm_group *g, lm_device *d, int use_nccl, char *why, size_t whylen);
void comm_detach_device(lm_group *g);
/* "nccl" or "mpi": where g's device collectives run. */
const char *comm_dev_backend(const lm_group *g);

/* Point to point (bytes) within a group, blocking and non-blocking. */
void comm_send(const lm_group *g, const void *buf, size_t bytes, int dst, int tag);
void comm_recv(const lm_group *g, void *buf, size_t bytes, int src, int tag);
void comm_isend(const lm_group *g, const void *buf, size_t bytes, int dst, int tag, lm_req *q);
void comm_irecv(const lm_group *g, void *buf, size_t bytes, int src, int tag, lm_req *q);

/* Complete q (no-op on an empty request). comm_test: 1 if complete (q is
 * then empty), 0 if not; it also drives MPI's progress engine. */
void comm_wait(lm_req *q);
int comm_test(lm_req *q);

/* Collective verdict: every rank passes its own status (0 = ok) and gets the
 * largest one back; with a non-zero result, the message of the lowest rank
 * that failed is copied into err on every rank. Use it after any step where
 * one rank alone may fail (a file read), so that all exit together. */
int comm_agree(const lm_group *g, int status, char *err, size_t errlen);

MPI_Comm comm_mpi(const lm_group *g);

/* Counters since start (bytes this rank passed to each kind of operation,
 * and seconds its thread spent inside comm calls). `sent` is what this rank
 * sends (and, the operations being symmetric, receives) under the
 * bandwidth-optimal ring algorithms, from the payloads: all-reduce of n
 * bytes over p ranks 2 (p-1)/p n, reduce-scatter and all-gather of blocks
 * of n bytes (p-1) n, point to point its bytes. MPI may choose another
 * algorithm; NCCL uses rings at these sizes. */
struct lm_comm_stats {
    double allreduce_bytes, reduce_scatter_bytes, allgather_bytes, bcast_bytes, p2p_bytes;
    double sent;
    long calls;
    double seconds;
};
void comm_stats(lm_comm_stats *s);
/* The same counters for the operations of group g only. */
void comm_group_stats(const lm_group *g, lm_comm_stats *s);

#endif
