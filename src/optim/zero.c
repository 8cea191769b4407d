/* zero.c — see zero.h. */
#include "zero.h"
#include "common.h"
#include "optim.h"
#include <math.h>
#include <string.h>

enum { B_FREE, B_LIVE, B_INFLIGHT };

/* Stage 2: a chunk-sized gradient buffer. */
typedef struct {
    void *buf;
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
    lm_dtype ct;          /* compute dtype: weights the model reads, gradients */
    size_t esz;           /* its bytes */
    size_t cs, shard;
    size_t os;            /* owned elements per chunk: cs (stage 0) or shard */
    int nc;
    int alias;            /* float32 compute: the master weights are the weights */
    int *first, *count;   /* params of chunk c: indices first[c] .. first[c]+count[c]-1 */
    int *done;            /* params of chunk c done this micro-step */
    int comm_now;         /* this micro-step reduces */
    int last;             /* this micro-step is the step's last */
    int *all_counted;     /* chunk c holds no tensor that another rank counts in the norm */
    /* train.trainable: a chunk is wholly trained or wholly frozen (chunks.h);
     * frozen chunks have no moments, are never reduced, updated or counted */
    int *trained;         /* [chunk]: 1 trained, 0 frozen */
    int *slot;            /* [chunk]: index of its moments (trained chunks, in order), -1 frozen */
    int ntr;              /* trained chunks */
    float *zeros;         /* host: shard zeros, the checkpoint moments of frozen tensors */
    /* stages 0, 1: one request per chunk */
    lm_req *req;
    int *launched;
    float *master;        /* nc * os float32 master weights (NULL when alias) */
    float *ms, *vs;       /* ntr * os moments (trained chunks only) */
    /* stage 2 */
    void *gs;             /* nc * shard reduced gradient shards */
    bucket *bk;
    int nbk;
    int *bucket_of;       /* chunk -> bucket index or -1 */
    long seq;
    size_t bucket_bytes_peak;
    lm_adamw_seg *segs;   /* the optimizer's segments (built once) */
    int nseg;
    float *hw, *hm, *hv;  /* checkpoint staging on the host (not host-visible float32):
                           * nc * shard master weights, ntr * shard moments */
    lm_grad_hooks hooks;
    /* the tied embedding's copy under pipeline parallelism (see sum_tied) */
    int tie;              /* its tensor index, -1 when none */
    const lm_group *tie_g;/* every rank holding a copy at this tensor-parallel rank */
    int *tie_side;        /* [group rank]: 0 first stage, 1 last stage */
    int *tie_dp;          /* [group rank]: its data-parallel rank */
    int64_t *tie_lo, *tie_hi; /* [group rank]: its owned tensor elements */
    void *tie_tmp;        /* the other stage's sums of this rank's elements */
};

/* Arena element where chunk c's owned range starts. */
static size_t owned_lo(const lm_zero *z, int c) {
    return (size_t)c * z->cs + (z->stage == 0 ? 0 : (size_t)z->dp->rank * z->shard);
}

static void *CX(const lm_zero *z, void *base, size_t i) { return (char *)base + i * z->esz; }

/* Master weights of chunk c's owned range. */
static float *master_of(const lm_zero *z, int c) {
    if (z->alias) return (float *)z->ps->w + owned_lo(z, c);
    return z->master + (size_t)c * z->os;
}

/* Moments of trained chunk c's owned range. */
static float *mom_of(const lm_zero *z, float *base, int c) { return base + (size_t)z->slot[c] * z->os; }

/* The reduced gradient of chunk c's owned range (stage 1: reduce-scatter
 * in place leaves the rank's sum in the chunk's first shard). */
static void *owned_grad(const lm_zero *z, int c) {
    if (z->stage == 2) return CX(z, z->gs, (size_t)c * z->shard);
    return CX(z, z->ps->g, (size_t)c * z->cs);
}

/* The reduced gradient of the rank's shard of chunk c (for the norm: every
 * element counted on exactly one rank). */
static void *shard_grad(const lm_zero *z, int c) {
    if (z->stage == 0) return CX(z, z->ps->g, (size_t)c * z->cs + (size_t)z->dp->rank * z->shard);
    return owned_grad(z, c);
}

/* ---------------------------------------------------------------- buckets */

static void set_views(lm_zero *z, int c, void *base) {
    for (int i = z->first[c]; i < z->first[c] + z->count[c]; i++) {
        lm_param *p = &z->ps->p[i];
        p->g = base ? CX(z, base, p->offset - (size_t)c * z->cs) : NULL;
    }
}

/* A reduced bucket: add the rank's summed shard into its gradient shard. */
static void bucket_finish(lm_zero *z, int b) {
    bucket *k = &z->bk[b];
    z->d->add(z->d, owned_grad(z, k->chunk), k->buf, z->shard);
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
        z->bk[b].buf = z->d->alloc(z->d, z->cs * z->esz);
        z->bk[b].state = B_FREE;
        size_t bytes = (size_t)z->nbk * z->cs * z->esz;
        if (bytes > z->bucket_bytes_peak) z->bucket_bytes_peak = bytes;
    }
    bucket *k = &z->bk[b];
    z->d->zero(z->d, k->buf, z->cs * z->esz);
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
        comm_dev_ireduce_scatter_sum(z->dp, k->buf, z->shard, z->ct, &k->q);
        k->state = B_INFLIGHT;
        k->seq = z->seq++;
        return;
    }
    void *g = CX(z, z->ps->g, (size_t)c * z->cs);
    if (z->stage == 0)
        comm_dev_iallreduce_sum(z->dp, g, z->cs, z->ct, &z->req[c]);
    else
        comm_dev_ireduce_scatter_sum(z->dp, g, z->shard, z->ct, &z->req[c]);
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

static void *hook_grad(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    if (z->stage == 2 && z->bucket_of[p->chunk] < 0) bucket_acquire(z, p->chunk);
    return p->g;
}

static void hook_done(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    int c = p->chunk;
    if (++z->done[c] == z->count[c] && z->comm_now && z->overlap && z->trained[c]) launch(z, c);
    if (z->comm_now) poll(z);
}

/* ------------------------------------------------------------------ API */

static void tie_setup(lm_zero *z);

/* The optimizer's segments: each tensor's piece in each owned range. */
static void build_segments(lm_zero *z, const lm_adamw_hp *hp);

lm_zero *zero_create(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap) {
    if (!ps->dev && !(d->host_visible && d->dtype == LM_F32))
        lm_abort(LM_ERR_RUNTIME, "zero: a host float32 layout needs a host float32 device");
    if (ps->chunk_size % ((size_t)dp->size * 16))
        lm_abort(LM_ERR_RUNTIME, "zero: chunk size %zu is not a multiple of 16 x dp (%d)", ps->chunk_size, dp->size);
    if (!dp->dev) { /* no NCCL asked for: binding only names the device of the buffers */
        char why[8];
        comm_attach_device((lm_group *)dp, d, 0, why, sizeof why);
    }
    lm_zero *z = lm_alloc(sizeof *z);
    z->ps = ps;
    z->d = d;
    z->dp = dp;
    z->stage = stage;
    z->overlap = overlap;
    z->ct = d->dtype;
    z->esz = lm_dtype_size(d->dtype);
    z->cs = ps->chunk_size;
    z->shard = z->cs / (size_t)dp->size;
    z->os = stage == 0 ? z->cs : z->shard;
    z->nc = ps->n_chunks;
    z->alias = d->dtype == LM_F32;
    size_t nc = (size_t)z->nc;
    z->first = lm_alloc(sizeof(int) * nc);
    z->count = lm_alloc(sizeof(int) * nc);
    z->done = lm_alloc(sizeof(int) * nc);
    z->req = lm_alloc(sizeof(lm_req) * nc);
    z->launched = lm_alloc(sizeof(int) * nc);
    z->bucket_of = lm_alloc(sizeof(int) * nc);
    for (int c = 0; c < z->nc; c++) z->first[c] = -1, z->bucket_of[c] = -1;
    z->all_counted = lm_alloc(sizeof(int) * nc);
    for (int c = 0; c < z->nc; c++) z->all_counted[c] = 1;
    z->trained = lm_alloc(sizeof(int) * nc);
    z->slot = lm_alloc(sizeof(int) * nc);
    for (int c = 0; c < z->nc; c++) z->trained[c] = 1;
    for (int i = 0; i < ps->n; i++) {
        int c = ps->p[i].chunk;
        if (z->first[c] < 0) z->first[c] = i;
        z->count[c]++;
        if (!ps->p[i].norm_here) z->all_counted[c] = 0;
        if (ps->p[i].frozen) z->trained[c] = 0; /* chunks_build never mixes the two */
    }
    z->ntr = 0;
    for (int c = 0; c < z->nc; c++) z->slot[c] = z->trained[c] ? z->ntr++ : -1;
    size_t owned = nc * z->os * sizeof(float), mom = (size_t)z->ntr * z->os * sizeof(float);
    if (mom) {
        z->ms = d->alloc(d, mom);
        z->vs = d->alloc(d, mom);
    }
    if (z->ntr < z->nc) z->zeros = lm_calloc(z->shard ? z->shard : 1, sizeof(float));
    if (!z->alias) z->master = d->alloc(d, owned);
    if (stage == 2)
        z->gs = d->alloc(d, nc * z->shard * z->esz);
    else
        params_alloc_grads(ps);
    z->hooks = (lm_grad_hooks){z, hook_grad, hook_done};
    /* the tied embedding's copy on the first or last stage: the table with a
     * gradient group (model.c) */
    z->tie = -1;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].gsum && !strcmp(ps->p[i].name, "model.embed_tokens.weight")) z->tie = i;
    if (z->tie >= 0) {
        z->tie_g = ps->p[z->tie].gsum;
        tie_setup(z);
    }
    return z;
}

void zero_destroy(lm_zero *z) {
    if (!z) return;
    lm_device *d = z->d;
    for (int b = 0; b < z->nbk; b++) d->free(d, z->bk[b].buf);
    void *bufs[] = {z->ms, z->vs, z->master, z->gs};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) d->free(d, bufs[i]);
    lm_free(z->hw);
    lm_free(z->hm);
    lm_free(z->hv);
    lm_free(z->segs);
    lm_free(z->bk);
    lm_free(z->first);
    lm_free(z->count);
    lm_free(z->done);
    lm_free(z->req);
    lm_free(z->launched);
    lm_free(z->bucket_of);
    lm_free(z->all_counted);
    lm_free(z->trained);
    lm_free(z->slot);
    lm_free(z->zeros);
    if (z->tie_tmp) d->free(d, z->tie_tmp);
    lm_free(z->tie_side);
    lm_free(z->tie_dp);
    lm_free(z->tie_lo);
    lm_free(z->tie_hi);
    lm_free(z);
}

lm_grad_hooks *zero_hooks(lm_zero *z) { return &z->hooks; }

void zero_step_begin(lm_zero *z) {
    if (z->ntr == z->nc) {
        if (z->stage == 2)
            z->d->zero(z->d, z->gs, (size_t)z->nc * z->shard * z->esz);
        else
            z->d->zero(z->d, z->ps->g, z->ps->arena * z->esz);
        return;
    }
    /* frozen chunks: no gradient is ever written there */
    for (int c = 0; c < z->nc; c++)
        if (z->trained[c]) {
            if (z->stage == 2)
                z->d->zero(z->d, CX(z, z->gs, (size_t)c * z->shard), z->shard * z->esz);
            else
                z->d->zero(z->d, CX(z, z->ps->g, (size_t)c * z->cs), z->cs * z->esz);
        }
}

void zero_micro_begin(lm_zero *z, int last) {
    memset(z->done, 0, sizeof(int) * (size_t)z->nc);
    /* Stages 0 and 1 accumulate micro-steps locally and reduce once; stage 2
     * has no full gradient to accumulate into, so it reduces every time. */
    z->comm_now = z->stage == 2 || last;
    z->last = last;
}

static void piece(const lm_param *p, size_t lo, size_t len, size_t *a, size_t *b);

/* The tied embedding under pipeline parallelism: the first stage's table
 * and the last stage's copy (its lm_head) each get the gradient of their own
 * stage, and both must end with the sum. The two stages pack different
 * tensor lists, so their chunk sizes and the tensor's offset in its chunk
 * differ, and so do the tensor elements that each data-parallel rank owns
 * (ZeRO-1/2 shard the chunk, not the tensor). Summing "this rank's owned
 * piece" over the two stages, as for tensor-parallel replicas, added
 * different elements (and, with pieces of different lengths, ran collectives
 * of different sizes: MPI_ERR_TRUNCATE, or a hang when one side's piece was
 * empty). Here every rank holding a copy (both stages, all data-parallel
 * ranks, at one tensor-parallel rank: the group tie_g) knows every other's
 * owned range of tensor elements, and exchanges with each rank of the other
 * stage exactly the overlap of their ranges: at ZeRO-0, where every rank
 * owns the whole tensor, only with the rank of the same data-parallel rank.
 * Each element is then a + b on one stage and b + a on the other: the same
 * bits, so the copies stay identical. */
static void tie_range(const lm_zero *z, size_t off_in_chunk, size_t cs, int dprank, int64_t *lo, int64_t *hi) {
    const lm_param *p = &z->ps->p[z->tie];
    int64_t n = (int64_t)p->numel;
    if (z->stage == 0) {
        *lo = 0, *hi = n;
        return;
    }
    int64_t sh = (int64_t)(cs / (size_t)z->dp->size), a = (int64_t)dprank * sh - (int64_t)off_in_chunk;
    *lo = a < 0 ? 0 : a > n ? n : a;
    *hi = a + sh < 0 ? 0 : a + sh > n ? n : a + sh;
}

/* Learn every copy holder's stage and owned range (collective over tie_g,
 * from zero_create). */
static void tie_setup(lm_zero *z) {
    const lm_param *p = &z->ps->p[z->tie];
    int G = z->tie_g->size, me = z->tie_g->rank;
    double *v = lm_alloc(sizeof(double) * 4 * (size_t)G);
    memset(v, 0, sizeof(double) * 4 * (size_t)G);
    /* the first stage counts the table in the gradient norm (model.c) */
    v[4 * me] = p->norm_here ? 0 : 1;
    v[4 * me + 1] = z->dp->rank;
    v[4 * me + 2] = (double)(p->offset - (size_t)p->chunk * z->cs);
    v[4 * me + 3] = (double)z->cs;
    comm_allreduce_sum_f64(z->tie_g, v, 4 * (size_t)G);
    z->tie_side = lm_alloc(sizeof(int) * (size_t)G);
    z->tie_dp = lm_alloc(sizeof(int) * (size_t)G);
    z->tie_lo = lm_alloc(sizeof(int64_t) * (size_t)G);
    z->tie_hi = lm_alloc(sizeof(int64_t) * (size_t)G);
    int on[2] = {0, 0};
    for (int j = 0; j < G; j++) {
        z->tie_side[j] = (int)v[4 * j];
        z->tie_dp[j] = (int)v[4 * j + 1];
        on[z->tie_side[j] & 1]++;
        tie_range(z, (size_t)v[4 * j + 2], (size_t)v[4 * j + 3], (int)v[4 * j + 1], &z->tie_lo[j], &z->tie_hi[j]);
    }
    lm_free(v);
    if (on[0] != z->dp->size || on[1] != z->dp->size)
        lm_abort(LM_ERR_RUNTIME, "zero: the tied embedding's group holds %d first-stage and %d last-stage ranks, "
                 "want parallel.dp = %d of each", on[0], on[1], z->dp->size);
    int64_t n = z->tie_hi[me] - z->tie_lo[me];
    if (n > 0) z->tie_tmp = z->d->alloc(z->d, (size_t)n * z->esz);
}

#define TIE_TAG 7301

/* Add the other stage's reduced gradient into this rank's owned elements of
 * the tied embedding (after the data-parallel reduction; see above). */
static void sum_tied(lm_zero *z) {
    if (z->tie < 0) return;
    const lm_param *p = &z->ps->p[z->tie];
    int G = z->tie_g->size, me = z->tie_g->rank;
    int64_t a = z->tie_lo[me], b = z->tie_hi[me];
    if (a >= b) return; /* nothing owned here: no range overlaps it */
    void *mine = CX(z, owned_grad(z, p->chunk), p->offset + (size_t)a - owned_lo(z, p->chunk));
    lm_req *q = lm_alloc(sizeof(lm_req) * 2 * (size_t)G);
    int nq = 0;
    for (int j = 0; j < G; j++) {
        if (z->tie_side[j] == z->tie_side[me] || (z->stage == 0 && z->tie_dp[j] != z->dp->rank)) continue;
        int64_t lo = a > z->tie_lo[j] ? a : z->tie_lo[j], hi = b < z->tie_hi[j] ? b : z->tie_hi[j];
        if (lo >= hi) continue;
        size_t bytes = (size_t)(hi - lo) * z->esz;
        comm_dev_irecv(z->tie_g, CX(z, z->tie_tmp, (size_t)(lo - a)), bytes, j, TIE_TAG, &q[nq++]);
        comm_dev_isend(z->tie_g, CX(z, mine, (size_t)(lo - a)), bytes, j, TIE_TAG, &q[nq++]);
    }
    for (int k = 0; k < nq; k++) comm_wait(&q[k]);
    lm_free(q);
    z->d->add(z->d, mine, z->tie_tmp, (size_t)(b - a));
}

/* Tensor-parallel replicas that each hold part of a gradient (p->gsum:
 * sequence-parallel norm weights, kv heads shared by several ranks) sum
 * their owned pieces over that group once the data-parallel reduction is
 * done. The pieces line up: every rank of a tensor-parallel group has the
 * same chunk layout and, at the same data-parallel rank, the same shards. */
static void sum_replicated(lm_zero *z) {
    for (int i = 0; i < z->ps->n; i++) {
        lm_param *p = &z->ps->p[i];
        if (!p->gsum || i == z->tie || p->frozen) continue;
        size_t lo = owned_lo(z, p->chunk), a, b;
        piece(p, lo, z->os, &a, &b);
        if (a >= b) continue;
        lm_req q;
        comm_dev_iallreduce_sum(p->gsum, CX(z, owned_grad(z, p->chunk), a - lo), b - a, z->ct, &q);
        comm_wait(&q);
    }
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
        if (z->last) {
            sum_replicated(z);
            sum_tied(z);
        }
        return;
    }
    if (!z->comm_now) return;
    for (int c = z->nc - 1; c >= 0; c--)
        if (z->trained[c] && (!z->overlap || z->done[c] < z->count[c])) launch(z, c);
    for (int c = 0; c < z->nc; c++)
        if (z->launched[c]) {
            comm_wait(&z->req[c]);
            z->launched[c] = 0;
        }
    sum_replicated(z);
    sum_tied(z);
}

/* Each rank sums the squares of its own shard (at stage 0, its shard of the
 * replicated gradient) and the partial sums are all-reduced: every rank gets
 * the same norm, so every rank takes the same decision on a non-finite one,
 * whichever rank's gradient holds it. */
double zero_reduced_grad_sumsq(lm_zero *z) {
    double s = 0.0;
    for (int c = 0; c < z->nc; c++) {
        if (!z->trained[c]) continue; /* frozen: no gradient (as torch's clip over params with grads) */
        if (z->all_counted[c]) {
            s += z->d->sumsq(z->d, shard_grad(z, c), z->shard);
            continue;
        }
        /* tensor by tensor, leaving out the replicas another rank counts */
        size_t lo = (size_t)c * z->cs + (size_t)z->dp->rank * z->shard, a, b;
        for (int i = z->first[c]; i < z->first[c] + z->count[c]; i++) {
            piece(&z->ps->p[i], lo, z->shard, &a, &b);
            if (a < b && z->ps->p[i].norm_here) s += z->d->sumsq(z->d, CX(z, shard_grad(z, c), a - lo), b - a);
        }
    }
    comm_allreduce_sum_f64(z->dp, &s, 1);
    return s;
}

/* The piece of tensor p in the arena range [lo, lo + len): elements
 * [*a, *b) (empty when *a >= *b). */
static void piece(const lm_param *p, size_t lo, size_t len, size_t *a, size_t *b) {
    *a = p->offset > lo ? p->offset : lo;
    *b = p->offset + p->numel < lo + len ? p->offset + p->numel : lo + len;
}

static void build_segments(lm_zero *z, const lm_adamw_hp *hp) {
    lm_params *ps = z->ps;
    z->segs = lm_alloc(sizeof(lm_adamw_seg) * (size_t)ps->n);
    z->nseg = 0;
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        size_t lo = owned_lo(z, p->chunk), a, b;
        if (p->frozen) continue; /* no update, no decay */
        piece(p, lo, z->os, &a, &b);
        if (a >= b) continue;
        z->segs[z->nseg++] = (lm_adamw_seg){
            .master = master_of(z, p->chunk) + (a - lo),
            .w = CX(z, ps->w, a),
            .g = CX(z, owned_grad(z, p->chunk), a - lo),
            .m = mom_of(z, z->ms, p->chunk) + (a - lo),
            .v = mom_of(z, z->vs, p->chunk) + (a - lo),
            .n = b - a,
            .wd = p->decay ? (float)hp->weight_decay : 0.0f,
        };
    }
}

static void gather(lm_zero *z, void *arena, lm_dtype t, int trained_only);

/* The compute-dtype weights of the owned ranges from the master weights. */
static void weights_from_master(lm_zero *z) {
    if (z->alias) return;
    for (int c = 0; c < z->nc; c++)
        z->d->convert(z->d, CX(z, z->ps->w, owned_lo(z, c)), z->ct, master_of(z, c), LM_F32, z->os);
}

void zero_update(lm_zero *z, const lm_adamw_hp *hp, double lr, double gscale, long step) {
    if (!z->segs) build_segments(z, hp);
    z->d->adamw(z->d, z->segs, z->nseg, (float)gscale, (float)lr, (float)hp->beta1, (float)hp->beta2, (float)hp->eps,
                step);
    if (z->stage) gather(z, z->ps->w, z->ct, 1); /* frozen chunks did not change */
}

/* In-place all-gather of every chunk's shards of an arena of dtype t (with
 * trained_only, of the trained chunks). */
static void gather(lm_zero *z, void *arena, lm_dtype t, int trained_only) {
    if (z->dp->size == 1) return;
    size_t es = lm_dtype_size(t);
    for (int c = 0; c < z->nc; c++)
        if (!trained_only || z->trained[c])
            comm_dev_iallgather(z->dp, (char *)arena + (size_t)c * z->cs * es, z->shard, t, &z->req[c]);
    for (int c = 0; c < z->nc; c++)
        if (!trained_only || z->trained[c]) comm_wait(&z->req[c]);
}

/* The same for moment arrays (ntr chunks of cs, stage 0). */
static void gather_moments(lm_zero *z, float *mom) {
    if (z->dp->size == 1) return;
    for (int k = 0; k < z->ntr; k++)
        comm_dev_iallgather(z->dp, mom + (size_t)k * z->cs, z->shard, LM_F32, &z->req[k]);
    for (int k = 0; k < z->ntr; k++) comm_wait(&z->req[k]);
}

void zero_master_from_weights(lm_zero *z) {
    if (z->alias) return;
    for (int c = 0; c < z->nc; c++)
        z->d->convert(z->d, master_of(z, c), LM_F32, CX(z, z->ps->w, owned_lo(z, c)), z->ct, z->os);
}

/* Host staging of checkpoint pieces: the rank's shard of every chunk, in
 * the owned arrays' order. */
static int staged(const lm_zero *z) { return !(z->d->host_visible && z->alias); }

/* Element of the owned arrays where the rank's shard of chunk c starts. */
static size_t shard_in_owned(const lm_zero *z, int c) {
    return (size_t)c * z->os + (z->stage == 0 ? (size_t)z->dp->rank * z->shard : 0);
}

static void stage_move(lm_zero *z, int up, int with_moments) {
    lm_device *d = z->d;
    size_t bytes = z->shard * sizeof(float);
    for (int c = 0; c < z->nc; c++) {
        size_t h = (size_t)c * z->shard, in = shard_in_owned(z, c) - (size_t)c * z->os; /* in the chunk's owned range */
        size_t hs = (size_t)(z->trained[c] ? z->slot[c] : 0) * z->shard;
        float *dev[3] = {master_of(z, c) + in, z->trained[c] ? mom_of(z, z->ms, c) + in : NULL,
                         z->trained[c] ? mom_of(z, z->vs, c) + in : NULL};
        float *host[3] = {z->hw + h, z->hm + hs, z->hv + hs};
        for (int k = 0; k < (with_moments && z->trained[c] ? 3 : 1); k++) {
            if (up)
                d->to_device(d, dev[k], host[k], bytes);
            else
                d->to_host(d, host[k], dev[k], bytes);
        }
    }
}

void zero_ckpt_pull(lm_zero *z) {
    if (z->zeros) memset(z->zeros, 0, z->shard * sizeof(float)); /* a load may have read into it */
    if (staged(z)) stage_move(z, 0, 1);
}

void zero_gather_loaded(lm_zero *z, int with_moments) {
    if (staged(z)) stage_move(z, 1, with_moments);
    if (z->stage == 0) {
        /* each rank read its shard of the replicated state */
        gather(z, z->alias ? z->ps->w : (void *)z->master, LM_F32, 0);
        if (with_moments) {
            gather_moments(z, z->ms);
            gather_moments(z, z->vs);
        }
        weights_from_master(z);
        return;
    }
    weights_from_master(z);
    gather(z, z->ps->w, z->ct, 0);
}

void zero_ckpt_tensors(lm_zero *z, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
    lm_params *ps = z->ps;
    if (staged(z) && !z->hw) {
        size_t bytes = (size_t)z->nc * z->shard * sizeof(float), mb = (size_t)(z->ntr ? z->ntr : 1) * z->shard * sizeof(float);
        z->hw = lm_alloc(bytes);
        z->hm = lm_alloc(mb);
        z->hv = lm_alloc(mb);
    }
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        size_t lo = (size_t)p->chunk * z->cs + (size_t)z->dp->rank * z->shard, a, b;
        piece(p, lo, z->shard, &a, &b);
        ckpt_tensor t = params_piece(p, 0, 0, NULL); /* nothing of it here */
        if (w) w[i] = t;
        if (m) m[i] = t;
        if (v) v[i] = t;
        if (b <= a) continue;
        t = params_piece(p, a - p->offset, b - p->offset, NULL);
        if (!t.count) continue; /* only padding rows */
        int c = p->chunk, st = staged(z);
        size_t in = shard_in_owned(z, c) - (size_t)c * z->os + (a - lo); /* in the chunk's owned range */
        size_t h = (size_t)c * z->shard + (a - lo);                      /* in the host staging */
        t.data = st ? z->hw + h : master_of(z, c) + in;
        if (w) w[i] = t;
        if (!z->trained[c]) {
            /* a frozen tensor's moments are stored as zeros (a later
             * trainable = all run starts them fresh); what a load reads
             * there is dropped */
            t.data = z->zeros;
            if (m) m[i] = t;
            if (v) v[i] = t;
            continue;
        }
        size_t hs = (size_t)z->slot[c] * z->shard + (a - lo);
        t.data = st ? z->hm + hs : mom_of(z, z->ms, c) + in;
        if (m) m[i] = t;
        t.data = st ? z->hv + hs : mom_of(z, z->vs, c) + in;
        if (v) v[i] = t;
    }
}

void zero_memory_bytes(const lm_zero *z, lm_zero_mem *m) {
    size_t psi = z->ps->arena, f = sizeof(float), nos = (size_t)z->nc * z->os;
    m->psi = psi;
    m->stage = z->stage;
    m->dp = z->dp->size;
    m->esz = z->esz;
    m->weights = psi * z->esz;
    m->master = z->alias ? 0 : nos * f;
    m->grads = z->stage == 2 ? (size_t)z->nc * z->shard * z->esz : psi * z->esz;
    m->optim = 2 * (size_t)z->ntr * z->os * f;
    m->psi_trained = (size_t)z->ntr * z->cs;
    m->buckets_peak = z->bucket_bytes_peak;
}

void zero_poison_grad(lm_zero *z, size_t i) {
    float nan = NAN;
    int c = (int)(i / z->shard % (size_t)z->nc);
    z->d->upload_f32(z->d, CX(z, shard_grad(z, c), i % z->shard), &nan, 1);
}

void zero_moment_arrays(lm_zero *z, float **m, float **v) {
    *m = z->ms;
    *v = z->vs;
}
