/* pipe_run.c — see pipe_run.h.
 *
 * Messages: the forward output of model chunk c goes to the stage of chunk
 * c + 1 with tag 2(c + 1), the input gradient of chunk c to the stage of
 * chunk c - 1 with tag 2(c - 1) + 1. Between two stages the messages of one
 * tag are sent and received in the same micro-batch order (every stage runs
 * a chunk's forwards, and its backwards, in micro-batch order), so MPI's
 * in-order matching pairs them without a per-micro-batch tag. Sends are
 * non-blocking from a pool of buffers that grows when every buffer is still
 * in flight; a receive is posted when the operation that needs it starts.
 * The schedules never wait in a cycle (pp_simulate checks them), and no
 * send blocks, so stages cannot deadlock. */
#include "pipe_run.h"
#include "common.h"
#include <string.h>

typedef struct {
    void *buf;
    lm_req q;
    int busy;
} sendbuf;

struct lm_pipe {
    lm_session *s;
    lm_pp_op *ops;
    int nops, C, pp, stage, v;
    int *slot_of;          /* [mb * v + j]: activation slot, -1 */
    int *slot_used;
    sendbuf *sb;
    int nsb;
    size_t bytes;          /* one message: Rx x D compute-dtype elements */
    double span, busy;
};

lm_pipe *pipe_create(lm_session *s) {
    lm_pipe *p = lm_alloc(sizeof *p);
    p->s = s;
    p->pp = s->cfg.pp;
    p->stage = s->topo.pp_rank;
    p->v = s->model->pp.v;
    p->C = p->pp * p->v;
    p->nops = 2 * s->n_micro * p->v;
    p->ops = lm_alloc(sizeof(lm_pp_op) * (size_t)p->nops);
    pp_schedule(s->pp_kind, p->pp, p->v, s->n_micro, p->stage, p->ops);
    p->slot_of = lm_alloc(sizeof(int) * (size_t)s->n_micro * (size_t)p->v);
    p->slot_used = lm_alloc(sizeof(int) * (size_t)s->model->pp.n_slots);
    p->bytes = (size_t)s->model->Rx * (size_t)s->model->s.dim * lm_dtype_size(s->dev->dtype);
    return p;
}

void pipe_destroy(lm_pipe *p) {
    if (!p) return;
    for (int i = 0; i < p->nsb; i++) {
        comm_wait(&p->sb[i].q);
        p->s->dev->free(p->s->dev, p->sb[i].buf);
    }
    lm_free(p->sb);
    lm_free(p->ops);
    lm_free(p->slot_of);
    lm_free(p->slot_used);
    lm_free(p);
}

/* A send buffer whose last message has gone (or a new one). */
static sendbuf *free_sendbuf(lm_pipe *p) {
    for (int i = 0; i < p->nsb; i++)
        if (!p->sb[i].busy || comm_test(&p->sb[i].q)) {
            p->sb[i].busy = 0;
            return &p->sb[i];
        }
    sendbuf *n = lm_alloc(sizeof(sendbuf) * (size_t)(p->nsb + 1));
    if (p->sb) memcpy(n, p->sb, sizeof(sendbuf) * (size_t)p->nsb);
    lm_free(p->sb);
    p->sb = n;
    p->sb[p->nsb].buf = p->s->dev->alloc(p->s->dev, p->bytes);
    return &p->sb[p->nsb++];
}

static void send_on(lm_pipe *p, sendbuf *b, int chunk_to, int tag) {
    comm_dev_isend(p->s->topo.pp_group, b->buf, p->bytes, chunk_to % p->pp, tag, &b->q);
    b->busy = 1;
}

static void recv_from(lm_pipe *p, void *x, int chunk_from, int tag) {
    lm_req q;
    comm_dev_irecv(p->s->topo.pp_group, x, p->bytes, chunk_from % p->pp, tag, &q);
    comm_wait(&q);
}

double pipe_step(lm_pipe *p, const int32_t *ids, const int32_t *targets, float scale) {
    lm_session *s = p->s;
    lm_model *m = s->model;
    lm_device *d = s->dev;
    size_t R = (size_t)m->R;
    /* The stages start together and the span ends when the last one is
     * done, so that a stage's idle time is its share of the step's bubble
     * (Megatron's definition), not only the gaps before its own last op. */
    comm_barrier(s->topo.pp_group);
    double t_start = lm_now(), loss = 0.0;
    p->busy = 0.0;
    int last_bwd = -1;
    for (int i = 0; i < p->nops; i++)
        if (p->ops[i].kind == LM_PP_BWD) last_bwd = i;
    for (int i = 0; i < s->n_micro * p->v; i++) p->slot_of[i] = -1;
    for (int i = 0; i < p->nops; i++) {
        const lm_pp_op *o = &p->ops[i];
        int c = o->chunk * p->pp + p->stage, key = o->mb * p->v + o->chunk;
        const int32_t *mids = ids + (size_t)o->mb * R, *mtg = targets + (size_t)o->mb * R;
        if (o->kind == LM_PP_FWD) {
            int k = 0;
            while (p->slot_used[k]) k++; /* the schedule never has more in flight than slots */
            p->slot_used[k] = 1;
            p->slot_of[key] = k;
            if (c > 0) recv_from(p, model_chunk_input(m, o->chunk, k), c - 1, 2 * c);
            sendbuf *b = c < p->C - 1 ? free_sendbuf(p) : NULL;
            double t0 = lm_now();
            model_chunk_forward(m, o->chunk, k, mids, b ? b->buf : NULL);
            d->sync(d);
            p->busy += lm_now() - t0;
            if (b) send_on(p, b, c + 1, 2 * (c + 1));
        } else {
            int k = p->slot_of[key];
            if (c < p->C - 1) recv_from(p, model_chunk_grad(m), c + 1, 2 * c + 1);
            zero_micro_begin(s->zero, i == last_bwd);
            double t0 = lm_now();
            loss += model_chunk_backward(m, o->chunk, k, mids, mtg, scale);
            d->sync(d);
            p->busy += lm_now() - t0;
            /* the gradient goes on before this stage's reductions, which on
             * its last backward wait for the other stages (tied embeddings) */
            if (c > 0) {
                sendbuf *b = free_sendbuf(p);
                d->copy(d, b->buf, model_chunk_grad(m), p->bytes);
                send_on(p, b, c - 1, 2 * (c - 1) + 1);
            }
            zero_micro_end(s->zero);
            p->slot_used[k] = 0;
        }
    }
    for (int i = 0; i < p->nsb; i++)
        if (p->sb[i].busy) {
            comm_wait(&p->sb[i].q);
            p->sb[i].busy = 0;
        }
    comm_barrier(s->topo.pp_group);
    p->span = lm_now() - t_start;
    return loss;
}

void pipe_times(const lm_pipe *p, double *span, double *busy) {
    *span = p->span;
    *busy = p->busy;
}
