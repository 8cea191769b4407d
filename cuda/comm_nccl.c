/* comm_nccl.c — the comm layer's device collectives on NCCL (comm_dev.h).
 *
 * Bootstrap: rank 0 of the group draws an ncclUniqueId and broadcasts it over
 * the group's MPI communicator; every rank then joins with ncclCommInitRank
 * on its own GPU. Each group has its own communication stream, so gradient
 * reductions run beside backward's kernels: a collective first waits (event)
 * for the compute stream's work so far, runs on the communication stream and
 * records a completion event; completing the request makes the compute
 * stream wait for that event, so the host never blocks on NCCL.
 * In-place reduce-scatter in NCCL leaves rank r's block at block r; the comm
 * layer's contract puts it in block 0, hence one device copy on the
 * communication stream. */
#include "comm_dev.h"
#include "common.h"
#include "device_cuda.h"
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <string.h>

typedef struct {
    ncclComm_t comm;
    cudaStream_t cs;      /* communication stream */
    cudaStream_t compute; /* the device's compute stream */
} nccl_group;

typedef struct {
    cudaEvent_t done;
    cudaStream_t compute;
} nccl_event;

#define NC(call)                                                                                                  \
    do {                                                                                                         \
        ncclResult_t r_ = (call);                                                                                \
        if (r_ != ncclSuccess) lm_abort(LM_ERR_RUNTIME, "nccl: %s: %s", #call, ncclGetErrorString(r_));        \
    } while (0)

int lm_nccl_attach(lm_group *g, lm_device *d, char *why, size_t whylen) {
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rc = 0;
    if (g->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) {
            snprintf(why, whylen, "ncclGetUniqueId: %s", ncclGetErrorString(r));
            rc = 1;
        }
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, g->comm);
    if (rc) {
        if (g->rank) snprintf(why, whylen, "rank 0 of the group could not create an NCCL id");
        return -1;
    }
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, g->comm);
    nccl_group *ng = lm_alloc(sizeof *ng);
    ng->compute = device_cuda_stream(d);
    cudaError_t e = cudaStreamCreateWithFlags(&ng->cs, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        snprintf(why, whylen, "cudaStreamCreate: %s", cudaGetErrorString(e));
        lm_free(ng);
        return -1;
    }
    ncclResult_t r = ncclCommInitRank(&ng->comm, g->size, id, g->rank);
    if (r != ncclSuccess) {
        snprintf(why, whylen, "ncclCommInitRank: %s", ncclGetErrorString(r));
        cudaStreamDestroy(ng->cs);
        lm_free(ng);
        return -1;
    }
    g->nccl = ng;
    return 0;
}

void lm_nccl_detach(lm_group *g) {
    nccl_group *ng = g->nccl;
    if (!ng) return;
    cudaStreamSynchronize(ng->cs);
    ncclCommDestroy(ng->comm);
    cudaStreamDestroy(ng->cs);
    lm_free(ng);
    g->nccl = NULL;
}

static ncclDataType_t nccl_type(lm_dtype t) { return t == LM_BF16 ? ncclBfloat16 : ncclFloat32; }

void lm_nccl_launch(const lm_group *g, int kind, void *x, size_t n, lm_dtype t, void **event) {
    nccl_group *ng = g->nccl;
    size_t es = lm_dtype_size(t);
    char *base = x;
    cudaEvent_t ready;
    CK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CK(cudaEventRecord(ready, ng->compute));
    CK(cudaStreamWaitEvent(ng->cs, ready, 0));
    CK(cudaEventDestroy(ready));
    if (kind == LM_COLL_ALLREDUCE) {
        NC(ncclAllReduce(base, base, n, nccl_type(t), ncclSum, ng->comm, ng->cs));
    } else if (kind == LM_COLL_REDUCE_SCATTER) {
        char *mine = base + (size_t)g->rank * n * es;
        NC(ncclReduceScatter(base, mine, n, nccl_type(t), ncclSum, ng->comm, ng->cs));
        if (g->rank) CK(cudaMemcpyAsync(base, mine, n * es, cudaMemcpyDeviceToDevice, ng->cs));
    } else {
        NC(ncclAllGather(base + (size_t)g->rank * n * es, base, n, nccl_type(t), ng->comm, ng->cs));
    }
    nccl_event *ev = lm_alloc(sizeof *ev);
    ev->compute = ng->compute;
    CK(cudaEventCreateWithFlags(&ev->done, cudaEventDisableTiming));
    CK(cudaEventRecord(ev->done, ng->cs));
    *event = ev;
}

int lm_nccl_query(void *event) {
    nccl_event *ev = event;
    cudaError_t e = cudaEventQuery(ev->done);
    if (e == cudaErrorNotReady) return 0;
    CK(e);
    return 1;
}

void lm_nccl_order(void *event) {
    nccl_event *ev = event;
    CK(cudaStreamWaitEvent(ev->compute, ev->done, 0));
    CK(cudaEventDestroy(ev->done));
    lm_free(ev);
}
