/* zero.c — see zero.h. */
#include "zero.h"
#include "common.h"
#include "optim.h"
#include <math.h>
#include <string.h>

enum { B_FREE, B_LIVE, B_INFLIGHT };

/* Stage 2: a chunk-sized gradient buffer. */
typedef struct {
    float *buf;
    int chunk;     /* -1 when free */
    int state;
    lm_req q;
    long seq;      /* launch order, to wait for the oldest first */
} bucket;

/* Buffers kept before an acquire waits for the oldest in-flight one: the one
 * backward writes and one being reduced. (MPI may hold a temporary of the
 * same size per in-flight reduce-scatter, so each one in flight costs about
 * two chunks.) A tied embedding keeps its buffer all through backward; the
 * pool then grows by one rather than wait on itself. */
#define MAX_BUCKETS_SOFT 2

struct lm_zero {
    lm_params *ps;
    lm_device *d;
    const lm_group *dp;
    int stage, overlap;
    size_t cs, shard;
    int nc;
    int *first, *count;   /* params of chunk c: indices first[c] .. first[c]+count[c]-1 */
    int *done;            /* params of chunk c done this micro-step */
    int comm_now;         /* this micro-step reduces */
    /* stages 0, 1: one request per chunk */
    lm_req *req;
    int *launched;
    /* stage >= 1 */
    float *ms, *vs;       /* nc * shard */
    /* stage 2 */
    float *gs;            /* nc * shard */
    bucket *bk;
    int nbk;
    int *bucket_of;       /* chunk -> bucket index or -1 */
    long seq;
    size_t bucket_bytes_peak;
    lm_grad_hooks hooks;
};

static float *gshard(lm_zero *z, int c) {
    if (z->stage == 2) return z->gs + (size_t)c * z->shard;
    return z->ps->g + (size_t)c * z->cs; /* stage 1: reduce-scatter in place */
}

/* The reduced gradient of the rank's shard of chunk c, at any stage. */
static float *owned_grad(lm_zero *z, int c) {
    if (z->stage == 0) return z->ps->g + (size_t)c * z->cs + (size_t)z->dp->rank * z->shard;
    return gshard(z, c);
}

/* ---------------------------------------------------------------- buckets */

static void set_views(lm_zero *z, int c, float *base) {
    for (int i = z->first[c]; i < z->first[c] + z->count[c]; i++) {
        lm_param *p = &z->ps->p[i];
        p->g = base ? base + (p->offset - (size_t)c * z->cs) : NULL;
    }
}

/* A reduced bucket: add the rank's summed shard into its gradient shard. */
static void bucket_finish(lm_zero *z, int b) {
    bucket *k = &z->bk[b];
    z->d->add(z->d, gshard(z, k->chunk), k->buf, z->shard);
    set_views(z, k->chunk, NULL);
    z->bucket_of[k->chunk] = -1;
    k->chunk = -1;
    k->state = B_FREE;
}

static int oldest_inflight(lm_zero *z) {
    int best = -1;
    for (int b = 0; b < z->nbk; b++)
        if (z->bk[b].state == B_INFLIGHT && (best < 0 || z->bk[b].seq < z->bk[best].seq)) best = b;
    return best;
}

static int bucket_acquire(lm_zero *z, int c) {
    int b = -1;
    for (int i = 0; i < z->nbk && b < 0; i++)
        if (z->bk[i].state == B_FREE) b = i;
    if (b < 0 && z->nbk >= MAX_BUCKETS_SOFT && (b = oldest_inflight(z)) >= 0) {
        comm_wait(&z->bk[b].q);
        bucket_finish(z, b);
    }
    if (b < 0) { /* every buffer is being written: one more */
        bucket *nb = lm_alloc(sizeof(bucket) * (size_t)(z->nbk + 1));
        if (z->bk) memcpy(nb, z->bk, sizeof(bucket) * (size_t)z->nbk);
        lm_free(z->bk);
        z->bk = nb;
        b = z->nbk++;
        z->bk[b].buf = z->d->alloc(z->d, z->cs * sizeof(float));
        z->bk[b].state = B_FREE;
        size_t bytes = (size_t)z->nbk * z->cs * sizeof(float);
        if (bytes > z->bucket_bytes_peak) z->bucket_bytes_peak = bytes;
    }
    bucket *k = &z->bk[b];
    z->d->zero(z->d, k->buf, z->cs * sizeof(float));
    k->chunk = c;
    k->state = B_LIVE;
    z->bucket_of[c] = b;
    set_views(z, c, k->buf);
    return b;
}

/* ------------------------------------------------------------- reductions */

static void launch(lm_zero *z, int c) {
    if (z->stage == 2) {
        bucket *k = &z->bk[z->bucket_of[c]];
        comm_ireduce_scatter_sum_f32(z->dp, k->buf, z->shard, &k->q);
        k->state = B_INFLIGHT;
        k->seq = z->seq++;
        return;
    }
    float *g = z->ps->g + (size_t)c * z->cs;
    if (z->stage == 0)
        comm_iallreduce_sum_f32(z->dp, g, z->cs, &z->req[c]);
    else
        comm_ireduce_scatter_sum_f32(z->dp, g, z->shard, &z->req[c]);
    z->launched[c] = 1;
}

/* Drive MPI's progress engine and retire what completed. */
static void poll(lm_zero *z) {
    if (z->stage == 2) {
        for (int b = 0; b < z->nbk; b++)
            if (z->bk[b].state == B_INFLIGHT && comm_test(&z->bk[b].q)) bucket_finish(z, b);
    } else {
        for (int c = 0; c < z->nc; c++)
            if (z->launched[c] && comm_test(&z->req[c])) z->launched[c] = 0;
    }
}

static float *hook_grad(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    if (z->stage == 2 && z->bucket_of[p->chunk] < 0) bucket_acquire(z, p->chunk);
    return p->g;
}

static void hook_done(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    int c = p->chunk;
    if (++z->done[c] == z->count[c] && z->comm_now && z->overlap) launch(z, c);
    if (z->comm_now) poll(z);
}

/* ------------------------------------------------------------------ API */

lm_zero *zero_create(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap) {
    if (ps->chunk_size % ((size_t)dp->size * 16))
        lm_abort(LM_ERR_RUNTIME, "zero: chunk size %zu is not a multiple of 16 x dp (%d)", ps->chunk_size, dp->size);
    lm_zero *z = lm_alloc(sizeof *z);
    z->ps = ps;
    z->d = d;
    z->dp = dp;
    z->stage = stage;
    z->overlap = overlap;
    z->cs = ps->chunk_size;
    z->shard = z->cs / (size_t)dp->size;
    z->nc = ps->n_chunks;
    size_t nc = (size_t)z->nc;
    z->first = lm_alloc(sizeof(int) * nc);
    z->count = lm_alloc(sizeof(int) * nc);
    z->done = lm_alloc(sizeof(int) * nc);
    z->req = lm_alloc(sizeof(lm_req) * nc);
    z->launched = lm_alloc(sizeof(int) * nc);
    z->bucket_of = lm_alloc(sizeof(int) * nc);
    for (int c = 0; c < z->nc; c++) z->first[c] = -1, z->bucket_of[c] = -1;
    for (int i = 0; i < ps->n; i++) {
        int c = ps->p[i].chunk;
        if (z->first[c] < 0) z->first[c] = i;
        z->count[c]++;
    }
    if (stage == 0) {
        params_alloc_state(ps);
    } else {
        size_t sh = nc * z->shard * sizeof(float);
        z->ms = d->alloc(d, sh);
        z->vs = d->alloc(d, sh);
        if (stage == 1) {
            ps->g = lm_alloc(ps->arena * sizeof(float)); /* params_free frees it, like the weights */
            for (int i = 0; i < ps->n; i++) ps->p[i].g = ps->g + ps->p[i].offset;
        } else {
            z->gs = d->alloc(d, sh);
        }
    }
    z->hooks = (lm_grad_hooks){z, hook_grad, hook_done};
    return z;
}

void zero_destroy(lm_zero *z) {
    if (!z) return;
    for (int b = 0; b < z->nbk; b++) z->d->free(z->d, z->bk[b].buf);
    if (z->ms) z->d->free(z->d, z->ms);
    if (z->vs) z->d->free(z->d, z->vs);
    if (z->gs) z->d->free(z->d, z->gs);
    lm_free(z->bk);
    lm_free(z->first);
    lm_free(z->count);
    lm_free(z->done);
    lm_free(z->req);
    lm_free(z->launched);
    lm_free(z->bucket_of);
    lm_free(z);
}

lm_grad_hooks *zero_hooks(lm_zero *z) { return &z->hooks; }

void zero_step_begin(lm_zero *z) {
    if (z->stage == 2)
        z->d->zero(z->d, z->gs, (size_t)z->nc * z->shard * sizeof(float));
    else
        z->d->zero(z->d, z->ps->g, z->ps->arena * sizeof(float));
}

void zero_micro_begin(lm_zero *z, int last) {
    memset(z->done, 0, sizeof(int) * (size_t)z->nc);
    /* Stages 0 and 1 accumulate micro-steps locally and reduce once; stage 2
     * has no full gradient to accumulate into, so it reduces every time. */
    z->comm_now = z->stage == 2 || last;
}

void zero_micro_end(lm_zero *z) {
    if (z->stage == 2) {
        /* every chunk whose gradient was written goes out now if it has not */
        /* in chunk order, the same on every rank: MPI matches non-blocking
         * collectives by the order they are started */
        for (int c = z->nc - 1; c >= 0; c--)
            if (z->bucket_of[c] >= 0 && z->bk[z->bucket_of[c]].state == B_LIVE) launch(z, c);
        for (int b; (b = oldest_inflight(z)) >= 0;) {
            comm_wait(&z->bk[b].q);
            bucket_finish(z, b);
        }
        return;
    }
    if (!z->comm_now) return;
    for (int c = z->nc - 1; c >= 0; c--)
        if (!z->overlap || z->done[c] < z->count[c]) launch(z, c);
    for (int c = 0; c < z->nc; c++)
        if (z->launched[c]) {
            comm_wait(&z->req[c]);
            z->launched[c] = 0;
        }
}

/* Each rank sums the squares of its own shard (at stage 0, its shard of the
 * replicated gradient) and the partial sums are all-reduced: every rank gets
 * the same norm, so every rank takes the same decision on a non-finite one,
 * whichever rank's gradient holds it. */
double zero_grad_sumsq(lm_zero *z) {
    double s = 0.0;
    for (int c = 0; c < z->nc; c++) s += z->d->sumsq(z->d, owned_grad(z, c), z->shard);
    comm_allreduce_sum_f64(z->dp, &s, 1);
    return s;
}

/* The piece of tensor i in this rank's shard of its chunk: arena elements
 * [*a, *b) (empty when *a >= *b); lo = the shard's first arena element. */
static void owned_piece(const lm_zero *z, const lm_param *p, size_t *a, size_t *b, size_t *lo) {
    *lo = (size_t)p->chunk * z->cs + (size_t)z->dp->rank * z->shard;
    size_t hi = *lo + z->shard;
    *a = p->offset > *lo ? p->offset : *lo;
    *b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
}

static void gather(lm_zero *z, float *arena);

void zero_update(lm_zero *z, const lm_config *c, double lr, double gscale, long step) {
    lm_params *ps = z->ps;
    if (z->stage == 0) {
        adamw_step(z->d, ps, c, lr, gscale, step);
        return;
    }
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        size_t a, b, lo;
        owned_piece(z, p, &a, &b, &lo);
        if (a >= b) continue;
        size_t k = (size_t)p->chunk * z->shard + (a - lo); /* index in the shard arenas */
        z->d->adamw(z->d, ps->w + a, gshard(z, p->chunk) + (a - lo), z->ms + k, z->vs + k, b - a, (float)gscale,
                    (float)lr, (float)c->beta1, (float)c->beta2, (float)c->eps,
                    p->decay ? (float)c->weight_decay : 0.0f, step);
    }
    gather(z, z->ps->w);
}

/* In-place all-gather of every chunk's shards of an arena. */
static void gather(lm_zero *z, float *arena) {
    if (z->dp->size == 1) return;
    for (int c = 0; c < z->nc; c++) comm_iallgather_f32(z->dp, arena + (size_t)c * z->cs, z->shard, &z->req[c]);
    for (int c = 0; c < z->nc; c++) comm_wait(&z->req[c]);
}

void zero_gather_loaded(lm_zero *z, int with_moments) {
    gather(z, z->ps->w);
    if (with_moments && z->stage == 0) {
        gather(z, z->ps->m);
        gather(z, z->ps->v);
    }
}

void zero_ckpt_tensors(lm_zero *z, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
    lm_params *ps = z->ps;
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        size_t a, b, lo;
        owned_piece(z, p, &a, &b, &lo);
        ckpt_tensor t = {p->name, p->ndim, p->rows, p->cols, 0, 0, NULL}; /* nothing of it here */
        if (w) w[i] = t;
        if (m) m[i] = t;
        if (v) v[i] = t;
        if (b <= a) continue;
        t.off = (int64_t)(a - p->offset);
        t.count = (int64_t)(b - a);
        size_t k = (size_t)p->chunk * z->shard + (a - lo);
        t.data = ps->w + a;
        if (w) w[i] = t;
        t.data = z->stage ? z->ms + k : ps->m + a;
        if (m) m[i] = t;
        t.data = z->stage ? z->vs + k : ps->v + a;
        if (v) v[i] = t;
    }
}

void zero_memory(const lm_zero *z, lm_zero_mem *m) {
    size_t psi = z->ps->arena, f = sizeof(float);
    m->psi = psi;
    m->stage = z->stage;
    m->dp = z->dp->size;
    m->weights = psi * f;
    m->grads = z->stage == 2 ? (size_t)z->nc * z->shard * f : psi * f;
    m->optim = z->stage == 0 ? 2 * psi * f : 2 * (size_t)z->nc * z->shard * f;
    m->buckets_peak = z->bucket_bytes_peak;
}

void zero_poison_grad(lm_zero *z, size_t i) {
    float nan = NAN;
    z->d->to_device(z->d, owned_grad(z, (int)(i / z->shard % (size_t)z->nc)) + i % z->shard, &nan, sizeof nan);
}
