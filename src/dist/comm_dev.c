/* comm_dev.c — collectives on device buffers (see comm.h): NCCL where bound,
 * MPI directly on host float32, or staged through a float32 host copy. */
#include "comm_dev.h"
#include "common.h"
#include <stdint.h>
#include <string.h>

/* A staged operation: MPI works on `host` (float32); on completion elements
 * [off, off + n) of it go back into x, rounded to t. */
struct lm_stage {
    lm_device *d;
    void *x;
    lm_dtype t;
    size_t off, n;
    float *host;
    int p2p;   /* point to point: 1 a send (nothing comes back), 2 a receive of n raw bytes */
};

static void stage_down(lm_device *d, float *host, const void *x, size_t n, lm_dtype t) {
    if (t == LM_F32)
        d->to_host(d, host, x, n * sizeof(float));
    else
        d->download_f32(d, host, x, n);
}

static void stage_up(lm_device *d, void *x, const float *host, size_t n, lm_dtype t) {
    if (t == LM_F32)
        d->to_device(d, x, host, n * sizeof(float));
    else
        d->upload_f32(d, x, host, n);
}

/* The staged form of a collective: `total` elements go down, MPI runs on the
 * host copy, and [off, off + back) comes back at completion. */
static void staged(const lm_group *g, int kind, void *x, size_t n, lm_dtype t, lm_req *q) {
    lm_device *d = g->dev;
    size_t total = kind == LM_COLL_ALLREDUCE ? n : n * (size_t)g->size;
    struct lm_stage *s = lm_alloc(sizeof *s);
    s->d = d;
    s->x = x;
    s->t = t;
    s->host = lm_alloc(total * sizeof(float));
    s->off = 0;
    s->n = kind == LM_COLL_REDUCE_SCATTER ? n : total;
    d->sync(d);
    stage_down(d, s->host, x, total, t);
    lm_req r;
    if (kind == LM_COLL_ALLREDUCE)
        comm_iallreduce_sum_f32(g, s->host, n, &r);
    else if (kind == LM_COLL_REDUCE_SCATTER)
        comm_ireduce_scatter_sum_f32(g, s->host, n, &r);
    else
        comm_iallgather_f32(g, s->host, n, &r);
    *q = r;
    q->stage = s;
}

static void dev_coll(const lm_group *g, int kind, void *x, size_t n, lm_dtype t, lm_req *q) {
    *q = (lm_req){.n = 0};
    if (g->size == 1 || n == 0) return;
    if (!g->dev) lm_abort(LM_ERR_RUNTIME, "comm: device collective on a group with no device bound");
    if (g->nccl) {
        double bytes = (double)n * (double)lm_dtype_size(t) * (kind == LM_COLL_ALLREDUCE ? 1.0 : (double)g->size);
        double t0 = lm_now();
        lm_nccl_launch(g, kind, x, n, t, &q->event);
        comm_account(g, kind, bytes, lm_now() - t0);
        return;
    }
    if (t == LM_F32 && g->dev->host_visible) {
        if (kind == LM_COLL_ALLREDUCE) comm_iallreduce_sum_f32(g, x, n, q);
        if (kind == LM_COLL_REDUCE_SCATTER) comm_ireduce_scatter_sum_f32(g, x, n, q);
        if (kind == LM_COLL_ALLGATHER) comm_iallgather_f32(g, x, n, q);
        return;
    }
    staged(g, kind, x, n, t, q);
}

void comm_dev_iallreduce_sum(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q) {
    dev_coll(g, LM_COLL_ALLREDUCE, x, n, t, q);
}
void comm_dev_ireduce_scatter_sum(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q) {
    dev_coll(g, LM_COLL_REDUCE_SCATTER, x, n, t, q);
}
void comm_dev_iallgather(const lm_group *g, void *x, size_t n, lm_dtype t, lm_req *q) {
    dev_coll(g, LM_COLL_ALLGATHER, x, n, t, q);
}

int comm_dev_finish(lm_req *q, int wait) {
    if (q->event) {
        if (!wait && !lm_nccl_query(q->event)) return 0;
        lm_nccl_order(q->event);
        q->event = NULL;
        return 1;
    }
    struct lm_stage *s = q->stage;
    q->stage = NULL; /* comm_wait / comm_test below see a plain MPI request */
    int done;
    if (wait) {
        comm_wait(q);
        done = 1;
    } else {
        done = comm_test(q);
    }
    if (!done) {
        q->stage = s;
        return 0;
    }
    if (s->p2p == 2)
        s->d->to_device(s->d, s->x, s->host, s->n);
    else if (!s->p2p)
        stage_up(s->d, (char *)s->x + s->off * lm_dtype_size(s->t), s->host + s->off, s->n, s->t);
    lm_free(s->host);
    lm_free(s);
    return 1;
}

/* Point to point on device buffers: MPI directly on host-visible memory,
 * else through a host copy (sent from it; received into it and copied to
 * the device on completion). */
static void dev_p2p(const lm_group *g, void *x, size_t bytes, int peer, int tag, lm_req *q, int send) {
    *q = (lm_req){.n = 0};
    lm_device *d = g->dev;
    if (!d) lm_abort(LM_ERR_RUNTIME, "comm: device send/receive on a group with no device bound");
    if (d->host_visible) {
        if (send)
            comm_isend(g, x, bytes, peer, tag, q);
        else
            comm_irecv(g, x, bytes, peer, tag, q);
        return;
    }
    struct lm_stage *s = lm_alloc(sizeof *s);
    s->d = d;
    s->x = x;
    s->n = bytes;
    s->p2p = send ? 1 : 2;
    s->host = lm_alloc(bytes ? bytes : 1);
    lm_req r;
    if (send) {
        d->sync(d);
        d->to_host(d, s->host, x, bytes);
        comm_isend(g, s->host, bytes, peer, tag, &r);
    } else {
        comm_irecv(g, s->host, bytes, peer, tag, &r);
    }
    *q = r;
    q->stage = s;
}

void comm_dev_isend(const lm_group *g, const void *x, size_t bytes, int dst, int tag, lm_req *q) {
    dev_p2p(g, (void *)(uintptr_t)x, bytes, dst, tag, q, 1);
}
void comm_dev_irecv(const lm_group *g, void *x, size_t bytes, int src, int tag, lm_req *q) {
    dev_p2p(g, x, bytes, src, tag, q, 0);
}

int comm_attach_device(lm_group *g, lm_device *d, int use_nccl, char *why, size_t whylen) {
    g->dev = d;
    g->nccl = NULL;
    if (!use_nccl || strcmp(d->name, "cuda") || g->size == 1) return 0;
    return lm_nccl_attach(g, d, why, whylen);
}

void comm_detach_device(lm_group *g) {
    if (g->nccl) lm_nccl_detach(g);
    g->nccl = NULL;
    g->dev = NULL;
}

const char *comm_dev_backend(const lm_group *g) { return g->nccl ? "nccl" : "mpi"; }
