/* comm_dev.h — internals shared by the comm layer's MPI part (comm.c), its
 * device-buffer collectives (comm_dev.c) and the NCCL binding
 * (cuda/comm_nccl.c). Not for other modules. */
#ifndef LAMINA_COMM_DEV_H
#define LAMINA_COMM_DEV_H
#include "comm.h"

extern lm_comm_stats g_comm_stats;

/* Complete (wait = 1) or test (wait = 0) a device-buffer request: 1 when
 * complete (q is then empty). */
int comm_dev_finish(lm_req *q, int wait);

enum { LM_COLL_ALLREDUCE, LM_COLL_REDUCE_SCATTER, LM_COLL_ALLGATHER, LM_COLL_BCAST };

/* Count an operation (see comm.c). */
void comm_account(const lm_group *g, int kind, double bytes, double seconds);

/* NCCL binding (cuda/comm_nccl.c; without CUDA, attach fails with a reason
 * and the rest is never called). */
int lm_nccl_attach(lm_group *g, lm_device *d, char *why, size_t whylen);
void lm_nccl_detach(lm_group *g);
/* Launch collective `kind` on x (n = elements per block for reduce-scatter
 * and all-gather, as in comm.h); *event receives the completion event. */
void lm_nccl_launch(const lm_group *g, int kind, void *x, size_t n, lm_dtype t, void **event);
int lm_nccl_query(void *event); /* 1 when complete */
void lm_nccl_order(void *event); /* the compute stream waits for it; the event is released */

#endif
