/* zero.c — see zero.h (ZeRO-3's gathers: zero_fetch.c). */
#include "zero_impl.h"
#include "bf16.h"
#include "common.h"
#include "host_adamw.h"
#include "optim.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Buffers kept before an acquire waits for the oldest in-flight one: the one
 * backward writes and one being reduced. (MPI may hold a temporary of the
 * same size per in-flight reduce-scatter, so each one in flight costs about
 * two chunks.) A tied embedding keeps its buffer all through backward; the
 * pool then grows by one rather than wait on itself. */
#define MAX_BUCKETS_SOFT 2

static void *CX(const lm_zero *z, void *base, size_t i) { return (char *)base + i * z->esz; }

int zero_offload_of(const char *name) {
    static const char *const N[] = {"none", "optim", "param", "auto"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, N[i])) return i;
    return -1;
}

/* The compute-dtype weights of chunk c's owned range: in the arena, or
 * (stage 3) the home shard, on the device or the host (par_host). */
static void *wown(const lm_zero *z, int c) {
    if (z->managed) return z->home[c];
    return CX(z, z->ps->w, zero_owned_lo(z, c));
}

/* The reduced gradient of chunk c's owned range (stage 1: reduce-scatter
 * in place leaves the rank's sum in the chunk's first shard). */
static void *owned_grad(const lm_zero *z, int c) {
    if (z->stage >= 2) return z->gsh[c];
    return CX(z, z->ps->g, chunk_lo(z->ps, c));
}

/* The reduced gradient of the rank's shard of chunk c (for the norm: every
 * element counted on exactly one rank). */
static void *shard_grad(const lm_zero *z, int c) {
    if (z->stage == 0) return CX(z, z->ps->g, chunk_lo(z->ps, c) + (size_t)z->dp->rank * z->sh[c]);
    return owned_grad(z, c);
}

/* Device or host memory of the side the state of chunk c lives on. */
static void *side_alloc(lm_zero *z, int host, size_t bytes) {
    return host ? z->d->host_alloc(z->d, bytes) : z->d->alloc(z->d, bytes);
}
static void side_free(lm_zero *z, int host, void *p) {
    if (!p) return;
    if (host)
        z->d->host_free(z->d, p);
    else
        z->d->free(z->d, p);
}

/* ---------------------------------------------------------------- buckets */

static void set_views(lm_zero *z, int c, void *base) {
    for (int i = z->first[c]; i < z->first[c] + z->count[c]; i++) {
        lm_param *p = &z->ps->p[i];
        p->g = base ? CX(z, base, p->offset - chunk_lo(z->ps, c)) : NULL;
    }
}

static void grad_download(lm_zero *z, int c);
static void early_poll(lm_zero *z);

/* A reduced bucket: add the rank's summed shard into its gradient shard. */
static void bucket_finish(lm_zero *z, int b) {
    zero_bucket *k = &z->bk[b];
    int c = k->chunk;
    z->d->add(z->d, owned_grad(z, c), k->buf, z->sh[c]);
    set_views(z, c, NULL);
    z->bucket_of[c] = -1;
    k->chunk = -1;
    k->state = B_FREE;
    if (z->last && !z->post[c]) grad_download(z, c);
}

static int oldest_inflight(lm_zero *z) {
    int best = -1;
    for (int b = 0; b < z->nbk; b++)
        if (z->bk[b].state == B_INFLIGHT && (best < 0 || z->bk[b].seq < z->bk[best].seq)) best = b;
    return best;
}

static int bucket_new(lm_zero *z) {
    zero_bucket *nb = lm_alloc(sizeof(zero_bucket) * (size_t)(z->nbk + 1));
    if (z->bk) memcpy(nb, z->bk, sizeof(zero_bucket) * (size_t)z->nbk);
    lm_free(z->bk);
    z->bk = nb;
    int b = z->nbk++;
    size_t bytes = z->maxlen * z->esz;
    if (z->budget && !zero_make_room(z, bytes))
        lm_abort(LM_ERR_RUNTIME, "zero: no room for a gradient bucket of %zu bytes under train.device_memory = %zu",
                 bytes, z->budget);
    z->bk[b].buf = z->d->alloc(z->d, bytes);
    z->bk[b].state = B_FREE;
    z->bk[b].chunk = -1;
    size_t all = (size_t)z->nbk * bytes;
    if (all > z->bucket_bytes_peak) z->bucket_bytes_peak = all;
    return b;
}

static int bucket_acquire(lm_zero *z, int c) {
    int b = -1;
    for (int i = 0; i < z->nbk && b < 0; i++)
        if (z->bk[i].state == B_FREE) b = i;
    if (b < 0 && z->nbk >= MAX_BUCKETS_SOFT && (b = oldest_inflight(z)) >= 0) {
        comm_wait(&z->bk[b].q);
        bucket_finish(z, b);
    }
    if (b < 0) b = bucket_new(z); /* every buffer is being written: one more */
    zero_bucket *k = &z->bk[b];
    z->d->zero(z->d, k->buf, z->len[c] * z->esz);
    k->chunk = c;
    k->state = B_LIVE;
    z->bucket_of[c] = b;
    set_views(z, c, k->buf);
    return b;
}

/* ------------------------------------------------------------- reductions */

static void launch(lm_zero *z, int c) {
    if (z->stage >= 2) {
        zero_bucket *k = &z->bk[z->bucket_of[c]];
        comm_dev_ireduce_scatter_sum(z->dp, k->buf, z->sh[c], z->ct, &k->q);
        k->state = B_INFLIGHT;
        k->seq = z->seq++;
        return;
    }
    void *g = CX(z, z->ps->g, chunk_lo(z->ps, c));
    if (z->stage == 0)
        comm_dev_iallreduce_sum(z->dp, g, z->len[c], z->ct, &z->req[c]);
    else
        comm_dev_ireduce_scatter_sum(z->dp, g, z->sh[c], z->ct, &z->req[c]);
    z->launched[c] = 1;
}

/* Drive MPI's progress engine and retire what completed. */
static void poll(lm_zero *z) {
    if (z->stage >= 2) {
        for (int b = 0; b < z->nbk; b++)
            if (z->bk[b].state == B_INFLIGHT && comm_test(&z->bk[b].q)) bucket_finish(z, b);
    } else {
        for (int c = 0; c < z->nc; c++)
            if (z->launched[c] && comm_test(&z->req[c])) {
                z->launched[c] = 0;
                if (!z->post[c]) grad_download(z, c);
            }
    }
}

static void *hook_grad(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    if (z->stage >= 2 && z->bucket_of[p->chunk] < 0) bucket_acquire(z, p->chunk);
    return p->g;
}

static void hook_done(void *ctx, lm_param *p) {
    lm_zero *z = ctx;
    int c = p->chunk;
    if (++z->done[c] == z->count[c] && z->comm_now && z->overlap && z->trained[c]) launch(z, c);
    if (z->comm_now) poll(z);
    early_poll(z);
}

/* --------------------------------------------------------- host transfers */

/* The reduced owned gradient of an offloaded chunk goes to the host as soon
 * as it is final (the step's last micro-step, after the reduction and any
 * replica sums), overlapping the rest of backward. */
static void grad_download(lm_zero *z, int c) {
    if (!z->opt_host[c] || !z->trained[c] || z->got_g[c]) return;
    z->tk_g[c] = z->d->copy_async(z->d, z->hgrad[c], owned_grad(z, c), z->os[c] * z->esz, 1);
    z->got_g[c] = 1;
}

/* ------------------------------------------------------------------ API */

static void tie_setup(lm_zero *z);
static void build_segments(lm_zero *z, const lm_adamw_hp *hp);
static void piece(const lm_param *p, size_t lo, size_t len, size_t *a, size_t *b);

/* Device bytes of a placement (what zero_create_opts allocates on the
 * device, buckets and the fewest gathered chunks included), for the fit
 * check and the auto plan. */
static size_t device_bytes(const lm_zero *z, const int *oh, const int *ph) {
    size_t e = z->esz, f = sizeof(float), b = 0;
    for (int c = 0; c < z->nc; c++) {
        size_t w = z->stage == 3 ? z->sh[c] : z->len[c];
        if (!ph[c]) b += w * e; /* weights (stage 3: home shard; dp 1: the slot is the home) */
        if (!oh[c]) {
            if (!z->f32) b += z->os[c] * f; /* master */
            if (z->trained[c]) b += 2 * z->os[c] * f;
        }
        b += (z->stage >= 2 ? z->sh[c] : z->len[c]) * e; /* gradients */
    }
    if (z->stage >= 2) b += MAX_BUCKETS_SOFT * z->maxlen * e;
    if (z->stage == 3) b += z->min_slots_bytes; /* the largest fetch's chunks gathered at once */
    return b;
}

/* Chunks offloaded, from the last in forward order, until their bytes
 * reach frac of all chunk bytes. */
static void place_frac(lm_zero *z, double frac, int *flag) {
    size_t total = 0, got = 0;
    for (int c = 0; c < z->nc; c++) total += z->len[c];
    for (int c = z->nc - 1; c >= 0; c--) {
        if ((double)got >= frac * (double)total - 0.5) break;
        flag[c] = 1;
        got += z->len[c];
    }
}

static void count_placement(lm_zero *z) {
    z->n_opt_host = z->n_par_host = 0;
    for (int c = 0; c < z->nc; c++) {
        z->n_opt_host += z->opt_host[c];
        z->n_par_host += z->par_host[c];
    }
}

/* The slot bytes one fetch needs at most: the model's fetch groups (a
 * layer's nine tensors, the embedding, the final norm with lm_head), the
 * chunks each touches that are not their own home. Without a model yet:
 * the two longest chunks. */
/* Fetch group gi of the model (model.c's FETCH calls): layer gi's nine
 * tensors (gi < n_layers, on this stage), the embedding (gi = n_layers, on
 * the first model chunk), the final norm with lm_head (gi = n_layers + 1,
 * on the last). Returns its tensors in grp, 0 when this stage has none. */
static int fetch_group(const lm_model *m, int gi, lm_param **grp) {
    int n = 0;
    if (gi < m->s.n_layers) {
        if (!m->layer || !m->layer[gi].q) return 0;
        memcpy(grp, &m->layer[gi], sizeof(lm_layer_params));
        return 9;
    }
    if (gi == m->s.n_layers) {
        if (m->first_chunk && m->embed) grp[n++] = m->embed;
    } else if (m->last_chunk) {
        if (m->norm) grp[n++] = m->norm;
        if (m->lm_head) grp[n++] = m->lm_head;
    }
    return n;
}

static size_t min_slots_at(const lm_zero *z, const int *ph, int stage);
static size_t min_slots(const lm_zero *z, const int *ph) { return min_slots_at(z, ph, z->stage); }
static size_t min_slots_at(const lm_zero *z, const int *ph, int stage) {
    if (stage != 3) return 0;
    size_t best = 0;
    const lm_model *m = z->model;
    int ng = m ? m->s.n_layers + 2 : 0;
    int *seen = lm_calloc((size_t)z->nc, sizeof(int));
    for (int gi = 0; gi < ng; gi++) {
        lm_param *grp[9];
        int n = fetch_group(m, gi, grp);
        size_t s = 0;
        for (int i = 0; i < n; i++) {
            int c = grp[i]->chunk;
            if (seen[c] == gi + 1) continue;
            seen[c] = gi + 1;
            if (z->dp->size > 1 || ph[c]) s += z->len[c] * z->esz;
        }
        if (s > best) best = s;
    }
    lm_free(seen);
    if (!m) {
        size_t a = 0, b = 0;
        for (int c = 0; c < z->nc; c++) {
            size_t x = z->len[c] * z->esz;
            if (x > a) b = a, a = x;
            else if (x > b) b = x;
        }
        best = a + b;
    }
    return best;
}

static void fmt_bytes(char *buf, size_t len, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024.0 && i < 4) b /= 1024.0, i++;
    snprintf(buf, len, "%.2f %s", b, u[i]);
}

/* Does the placement fit the budget? With a budget, auto chooses the
 * fewest offloaded chunks that fit (optimizer state first, then, at stage
 * 3, parameters); the other modes stop every rank (exit 2) when they do
 * not fit, with the smallest setting that would. Collective over the
 * world (ranks of different pipeline stages need different amounts). */
static void plan_placement(lm_zero *z, const lm_zero_opts *o) {
    int nc = z->nc;
    /* what the device already holds (activations, workspace; the weight
     * arena of an unmanaged layout, which device_bytes counts itself) */
    size_t budget = z->budget, used = z->d->mem_info(z->d, NULL, 0);
    if (!z->managed) used -= z->ps->arena * z->esz;
    char err[LM_ERRLEN] = {0};
    int rc = 0;
    if (z->offload == LM_OFFLOAD_AUTO) {
        memset(z->opt_host, 0, sizeof(int) * (size_t)nc);
        memset(z->par_host, 0, sizeof(int) * (size_t)nc);
        if (budget) {
            z->min_slots_bytes = min_slots(z, z->par_host);
            for (int c = nc - 1; c >= 0 && used + device_bytes(z, z->opt_host, z->par_host) > budget; c--)
                z->opt_host[c] = 1;
            for (int c = nc - 1; z->stage == 3 && c >= 0; c--) {
                z->min_slots_bytes = min_slots(z, z->par_host);
                if (used + device_bytes(z, z->opt_host, z->par_host) <= budget) break;
                z->par_host[c] = 1;
            }
            z->min_slots_bytes = min_slots(z, z->par_host);
        }
    }
    z->min_slots_bytes = min_slots(z, z->par_host);
    size_t need = used + device_bytes(z, z->opt_host, z->par_host);
    if (budget && need > budget) {
        /* the smallest setting that fits: more offload at this stage, ZeRO-3, or more memory */
        int *oh = lm_calloc((size_t)nc, sizeof(int)), *ph = lm_calloc((size_t)nc, sizeof(int));
        char hint[512] = "", nb[32], bb[32], sb[32];
        size_t total = 0, got = 0;
        for (int c = 0; c < nc; c++) total += z->len[c];
        for (int c = nc - 1; c >= 0; c--) {
            oh[c] = 1;
            got += z->len[c];
            if (used + device_bytes(z, oh, ph) <= budget) {
                snprintf(hint, sizeof hint, "parallel.offload = optim with parallel.offload_frac >= %.3f",
                         (double)got / (double)total);
                break;
            }
        }
        if (!hint[0] && z->stage == 3) {
            got = 0;
            for (int c = nc - 1; c >= 0; c--) {
                ph[c] = 1;
                got += z->len[c];
                size_t ms = z->min_slots_bytes;
                z->min_slots_bytes = min_slots(z, ph);
                size_t nd = used + device_bytes(z, oh, ph);
                z->min_slots_bytes = ms;
                if (nd <= budget) {
                    snprintf(hint, sizeof hint, "parallel.offload = param with parallel.offload_frac >= %.3f",
                             (double)got / (double)total);
                    break;
                }
            }
        }
        if (!hint[0] && z->stage < 3) {
            /* ZeRO-3 with every chunk's state and parameters on the host: the
             * gradient shards, the buckets and the largest fetch's chunks */
            for (int c = 0; c < nc; c++) ph[c] = 1;
            size_t h3 = used + MAX_BUCKETS_SOFT * z->maxlen * z->esz + min_slots_at(z, ph, 3);
            for (int c = 0; c < nc; c++) h3 += z->sh[c] * z->esz;
            if (h3 <= budget)
                snprintf(hint, sizeof hint, "parallel.zero = 3 with parallel.offload = param (%zu bytes) or auto", h3);
        }
        fmt_bytes(nb, sizeof nb, (double)need);
        fmt_bytes(bb, sizeof bb, (double)budget);
        fmt_bytes(sb, sizeof sb, (double)need * 1.0001 + 1);
        rc = lm_err(err, sizeof err, LM_ERR_INPUT,
                    "train.device_memory = %zu (%s) is too small for parallel.zero = %d with parallel.offload = %s "
                    "(offload_frac %g): rank %d needs %zu bytes (%s) on the device (activations and workspace %zu, "
                    "model state %zu); %s%s, or train.device_memory >= %zu (%s)",
                    budget, bb, z->stage, (const char *[]){"none", "optim", "param", "auto"}[z->offload],
                    o->offload_frac, comm_world()->rank, need, nb, used, need - used, hint[0] ? hint : "",
                    hint[0] ? " would fit" : "nothing at this ZeRO stage fits", need, sb);
        lm_free(oh);
        lm_free(ph);
    }
    if (comm_agree(comm_world(), rc, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    count_placement(z);
}

lm_zero *zero_create(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap) {
    return zero_create_opts(ps, d, dp, stage, overlap, NULL);
}

lm_zero *zero_create_opts(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap,
                          const lm_zero_opts *opts) {
    lm_zero_opts o0 = {.offload = LM_OFFLOAD_NONE, .offload_frac = 1.0, .prefetch = 2};
    const lm_zero_opts *o = opts ? opts : &o0;
    if (!ps->dev && !(d->host_visible && d->dtype == LM_F32))
        lm_abort(LM_ERR_RUNTIME, "zero: a host float32 layout needs a host float32 device");
    if (stage == 3 && !ps->managed) lm_abort(LM_ERR_RUNTIME, "zero: stage 3 needs a managed layout (no weight arena)");
    if (stage < 3 && ps->managed) lm_abort(LM_ERR_RUNTIME, "zero: a managed layout needs stage 3");
    if (o->offload == LM_OFFLOAD_PARAM && stage != 3)
        lm_abort(LM_ERR_RUNTIME, "zero: parameter offload needs stage 3");
    for (int c = 0; c < ps->n_chunks; c++)
        if (chunk_len(ps, c) % ((size_t)dp->size * 16))
            lm_abort(LM_ERR_RUNTIME, "zero: chunk %d of %zu elements is not a multiple of 16 x dp (%d)", c,
                     chunk_len(ps, c), dp->size);
    if (!dp->dev) { /* no NCCL asked for: binding only names the device of the buffers */
        char why[8];
        comm_attach_device((lm_group *)dp, d, 0, why, sizeof why);
    }
    lm_zero *z = lm_calloc(1, sizeof *z);
    z->ps = ps;
    z->d = d;
    z->dp = dp;
    z->stage = stage;
    z->overlap = overlap;
    z->ct = d->dtype;
    z->esz = lm_dtype_size(d->dtype);
    z->nc = ps->n_chunks;
    z->f32 = d->dtype == LM_F32;
    z->managed = stage == 3;
    z->offload = o->offload;
    z->prefetch = o->prefetch;
    z->budget = o->device_memory;
    z->model = o->model;
    size_t nc = (size_t)z->nc, nz = nc ? nc : 1;
    z->len = lm_calloc(nz, sizeof(size_t));
    z->sh = lm_calloc(nz, sizeof(size_t));
    z->os = lm_calloc(nz, sizeof(size_t));
    for (int c = 0; c < z->nc; c++) {
        z->len[c] = chunk_len(ps, c);
        z->sh[c] = z->len[c] / (size_t)dp->size;
        z->os[c] = stage == 0 ? z->len[c] : z->sh[c];
        if (z->len[c] > z->maxlen) z->maxlen = z->len[c];
    }
#define NEWI(f) z->f = lm_calloc(nz, sizeof(int))
    NEWI(first); NEWI(count); NEWI(done); NEWI(launched); NEWI(bucket_of); NEWI(all_counted); NEWI(post);
    NEWI(trained); NEWI(opt_host); NEWI(par_host); NEWI(master_alias); NEWI(got_g); NEWI(done_h);
#undef NEWI
    z->req = lm_calloc(nz, sizeof(lm_req));
    z->tk_g = lm_calloc(nz, sizeof(uint64_t));
    z->tk_u = lm_calloc(nz, sizeof(uint64_t));
    for (int c = 0; c < z->nc; c++) z->first[c] = -1, z->bucket_of[c] = -1, z->all_counted[c] = 1, z->trained[c] = 1;
    for (int i = 0; i < ps->n; i++) {
        int c = ps->p[i].chunk;
        if (z->first[c] < 0) z->first[c] = i;
        z->count[c]++;
        if (!ps->p[i].norm_here) z->all_counted[c] = 0;
        if (ps->p[i].gsum) z->post[c] = 1;
        if (ps->p[i].frozen) z->trained[c] = 0; /* chunks_build never mixes the two */
    }
    for (int c = 0; c < z->nc; c++) z->ntr += z->trained[c];
    z->zeros = lm_calloc(z->maxlen ? z->maxlen : 1, sizeof(float));

    /* placement */
    if (o->offload == LM_OFFLOAD_OPTIM || o->offload == LM_OFFLOAD_PARAM) place_frac(z, o->offload_frac, z->opt_host);
    if (o->offload == LM_OFFLOAD_PARAM) memcpy(z->par_host, z->opt_host, sizeof(int) * nc);
    count_placement(z);
    if (z->budget || o->offload == LM_OFFLOAD_AUTO) plan_placement(z, o);

    /* weights: stage 3's home shards (the arena otherwise, chunks_build) */
    if (z->managed) {
        z->home = lm_calloc(nz, sizeof(void *));
        for (int c = 0; c < z->nc; c++) z->home[c] = side_alloc(z, z->par_host[c], z->sh[c] * z->esz);
    }
    /* optimizer state of each owned range */
    z->master = lm_calloc(nz, sizeof(float *));
    z->mm = lm_calloc(nz, sizeof(float *));
    z->mv = lm_calloc(nz, sizeof(float *));
    z->hgrad = lm_calloc(nz, sizeof(void *));
    z->hparam = lm_calloc(nz, sizeof(void *));
    /* one block per side for the masters and for each moment, chunk c's
     * owned range at the prefix of the chunks before it on that side (at
     * stage 0 on one side: arena order) */
    size_t nmast[2] = {0, 0}, nmom[2] = {0, 0};
    for (int c = 0; c < z->nc; c++) {
        int h = z->opt_host[c];
        /* float32: a master on the weights' side is the weights */
        z->master_alias[c] = z->f32 && h == z->par_host[c];
        if (!z->master_alias[c]) nmast[h] += z->os[c];
        if (z->trained[c]) nmom[h] += z->os[c];
    }
    for (int h = 0; h < 2; h++) {
        if (nmast[h]) z->blk_master[h] = side_alloc(z, h, nmast[h] * sizeof(float));
        if (nmom[h]) {
            z->blk_m[h] = side_alloc(z, h, nmom[h] * sizeof(float));
            z->blk_v[h] = side_alloc(z, h, nmom[h] * sizeof(float));
        }
        nmast[h] = nmom[h] = 0;
    }
    for (int c = 0; c < z->nc; c++) {
        int h = z->opt_host[c];
        if (z->master_alias[c]) {
            z->master[c] = wown(z, c);
        } else {
            z->master[c] = z->blk_master[h] + nmast[h];
            nmast[h] += z->os[c];
        }
        if (z->trained[c]) {
            z->mm[c] = z->blk_m[h] + nmom[h];
            z->mv[c] = z->blk_v[h] + nmom[h];
            nmom[h] += z->os[c];
        }
        if (h && z->trained[c]) z->hgrad[c] = z->d->host_alloc(z->d, z->os[c] * z->esz);
        if (h && !z->f32 && !z->par_host[c]) z->hparam[c] = z->d->host_alloc(z->d, z->os[c] * z->esz);
    }
    if (stage >= 2) {
        z->gsh = lm_calloc(nz, sizeof(void *));
        for (int c = 0; c < z->nc; c++) z->gsh[c] = d->alloc(d, z->sh[c] * z->esz);
        /* the buckets up front, so that the budget sees them */
        for (int b = 0; b < MAX_BUCKETS_SOFT && z->nc; b++) bucket_new(z);
    } else {
        params_alloc_grads(ps);
    }
    z->hooks = (lm_grad_hooks){z, hook_grad, hook_done};
    if (z->managed) zero_fetch_init(z);
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

void zero_attach(lm_zero *z, lm_model *m) {
    z->model = m;
    m->hooks = &z->hooks;
    if (z->managed) {
        z->min_slots_bytes = min_slots(z, z->par_host);
        m->phooks = &z->phooks;
    }
}

void zero_destroy(lm_zero *z) {
    if (!z) return;
    lm_device *d = z->d;
    if (z->managed) zero_fetch_free(z);
    for (int b = 0; b < z->nbk; b++) d->free(d, z->bk[b].buf);
    for (int c = 0; c < z->nc; c++) {
        side_free(z, 1, z->hgrad[c]);
        side_free(z, 1, z->hparam[c]);
        if (z->gsh) d->free(d, z->gsh[c]);
        if (z->home) side_free(z, z->par_host[c], z->home[c]);
    }
    void *arrs[] = {z->len, z->sh, z->os, z->first, z->count, z->done, z->launched, z->bucket_of, z->all_counted,
                    z->post, z->trained, z->opt_host, z->par_host, z->master_alias, z->got_g, z->done_h, z->req, z->tk_g,
                    z->tk_u, z->zeros, z->home, z->master, z->mm, z->mv, z->hgrad, z->hparam, z->gsh, z->ck, z->segs, z->hsegs, z->bk, z->tie_side, z->tie_dp, z->tie_lo, z->tie_hi};
    for (size_t i = 0; i < sizeof arrs / sizeof *arrs; i++) lm_free(arrs[i]);
    for (int h = 0; h < 2; h++) {
        side_free(z, h, z->blk_master[h]);
        side_free(z, h, z->blk_m[h]);
        side_free(z, h, z->blk_v[h]);
    }
    if (z->tie_tmp) d->free(d, z->tie_tmp);
    lm_free(z);
}

lm_grad_hooks *zero_hooks(lm_zero *z) { return &z->hooks; }

void zero_step_begin(lm_zero *z) {
    for (int c = 0; c < z->nc; c++) {
        z->got_g[c] = z->done_h[c] = 0;
        if (!z->trained[c]) continue; /* frozen chunks: no gradient is ever written there */
        if (z->stage >= 2)
            z->d->zero(z->d, z->gsh[c], z->sh[c] * z->esz);
        else
            z->d->zero(z->d, CX(z, z->ps->g, chunk_lo(z->ps, c)), z->len[c] * z->esz);
    }
    if (z->managed) zero_fetch_step_begin(z);
}

void zero_micro_begin(lm_zero *z, int last) {
    memset(z->done, 0, sizeof(int) * (size_t)z->nc);
    /* Stages 0 and 1 accumulate micro-steps locally and reduce once; stages
     * 2 and 3 have no full gradient to accumulate into, so they reduce
     * every time. */
    z->comm_now = z->stage >= 2 || last;
    z->last = last;
}

/* The tied embedding under pipeline parallelism: the first stage's table
 * and the last stage's copy (its lm_head) each get the gradient of their own
 * stage, and both must end with the sum. The two stages pack different
 * tensor lists, so their chunk sizes and the tensor's offset in its chunk
 * differ, and so do the tensor elements that each data-parallel rank owns
 * (ZeRO-1/2/3 shard the chunk, not the tensor). Summing "this rank's owned
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
static void tie_range(const lm_zero *z, size_t off_in_chunk, size_t clen, int dprank, int64_t *lo, int64_t *hi) {
    const lm_param *p = &z->ps->p[z->tie];
    int64_t n = (int64_t)p->numel;
    if (z->stage == 0) {
        *lo = 0, *hi = n;
        return;
    }
    int64_t sh = (int64_t)(clen / (size_t)z->dp->size), a = (int64_t)dprank * sh - (int64_t)off_in_chunk;
    *lo = a < 0 ? 0 : a > n ? n : a;
    *hi = a + sh < 0 ? 0 : a + sh > n ? n : a + sh;
}

/* Learn every copy holder's stage and owned range (collective over tie_g,
 * from zero_create). */
static void tie_setup(lm_zero *z) {
    const lm_param *p = &z->ps->p[z->tie];
    int G = z->tie_g->size, me = z->tie_g->rank;
    double *v = lm_calloc(4 * (size_t)G, sizeof(double));
    /* the first stage counts the table in the gradient norm (model.c) */
    v[4 * me] = p->norm_here ? 0 : 1;
    v[4 * me + 1] = z->dp->rank;
    v[4 * me + 2] = (double)(p->offset - chunk_lo(z->ps, p->chunk));
    v[4 * me + 3] = (double)z->len[p->chunk];
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
    void *mine = CX(z, owned_grad(z, p->chunk), p->offset + (size_t)a - zero_owned_lo(z, p->chunk));
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
        size_t lo = zero_owned_lo(z, p->chunk), a, b;
        piece(p, lo, z->os[p->chunk], &a, &b);
        if (a >= b) continue;
        lm_req q;
        comm_dev_iallreduce_sum(p->gsum, CX(z, owned_grad(z, p->chunk), a - lo), b - a, z->ct, &q);
        comm_wait(&q);
    }
}

/* After the last micro-step's reductions and replica sums: every
 * offloaded gradient not yet on its way goes down. */
static void download_rest(lm_zero *z) {
    for (int c = z->nc - 1; c >= 0; c--) grad_download(z, c);
}

void zero_micro_end(lm_zero *z) {
    if (z->stage >= 2) {
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
            download_rest(z);
            early_poll(z);
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
    download_rest(z);
    early_poll(z);
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
            s += z->d->sumsq(z->d, shard_grad(z, c), z->sh[c]);
            continue;
        }
        /* tensor by tensor, leaving out the replicas another rank counts */
        size_t lo = chunk_lo(z->ps, c) + (size_t)z->dp->rank * z->sh[c], a, b;
        for (int i = z->first[c]; i < z->first[c] + z->count[c]; i++) {
            piece(&z->ps->p[i], lo, z->sh[c], &a, &b);
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
    z->segs = lm_alloc(sizeof(lm_adamw_seg) * (size_t)(ps->n ? ps->n : 1));
    z->hsegs = lm_alloc(sizeof(zero_hseg) * (size_t)(ps->n ? ps->n : 1));
    z->nseg = z->nhseg = 0;
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        int c = p->chunk;
        size_t lo = zero_owned_lo(z, c), a, b;
        if (p->frozen) continue; /* no update, no decay */
        piece(p, lo, z->os[c], &a, &b);
        if (a >= b) continue;
        float wd = p->decay ? (float)hp->weight_decay : 0.0f;
        if (z->opt_host[c]) {
            z->hsegs[z->nhseg++] = (zero_hseg){.chunk = c, .off = a - lo, .n = b - a, .wd = wd};
            continue;
        }
        z->segs[z->nseg++] = (lm_adamw_seg){
            .master = z->master[c] + (a - lo),
            .w = CX(z, wown(z, c), a - lo),
            .g = CX(z, owned_grad(z, c), a - lo),
            .m = z->mm[c] + (a - lo),
            .v = z->mv[c] + (a - lo),
            .n = b - a,
            .wd = wd,
        };
    }
}

static void gather_weights(lm_zero *z, int trained_only, const uint64_t *wait_for);

/* The host optimizer step of the offloaded chunks, chunk by chunk in the
 * order their gradients were downloaded (last chunk first): wait for the
 * chunk's gradient, one fused pass (host_adamw) per tensor piece, then the
 * updated compute-dtype weights go up (or, par_host, are the home shard
 * already) while the next chunk's step runs. */
static void host_chunk(lm_zero *z, int c, const lm_adamw_hp *hp, double lr, double gscale, long step) {
    if (z->done_h[c]) return;
    zero_wait_copy(z, z->tk_g[c], 0);
    void *wout = z->par_host[c] ? wown(z, c) : z->f32 ? NULL : z->hparam[c];
    for (int j = 0; j < z->nhseg; j++) {
        const zero_hseg *s = &z->hsegs[j];
        if (s->chunk != c) continue;
        host_adamw(z->master[c] + s->off, z->mm[c] + s->off, z->mv[c] + s->off,
                   (const char *)z->hgrad[c] + s->off * z->esz, wout ? (char *)wout + s->off * z->esz : NULL, z->ct,
                   s->n, (float)gscale, (float)lr, (float)hp->beta1, (float)hp->beta2, (float)hp->eps, s->wd, step);
    }
    z->done_h[c] = 1;
    z->host_steps++;
}

static void host_update(lm_zero *z, const lm_adamw_hp *hp, double lr, double gscale, long step) {
    for (int c = z->nc - 1; c >= 0; c--) {
        if (!z->opt_host[c] || !z->trained[c]) continue;
        host_chunk(z, c, hp, lr, gscale, step);
        if (!z->par_host[c]) /* up: the float32 master itself, or the rounded copy */
            z->tk_u[c] = z->d->copy_async(z->d, wown(z, c), z->f32 ? (void *)z->master[c] : z->hparam[c],
                                          z->os[c] * z->esz, 0);
    }
}

/* Without clipping (the coefficient is 1) the host step of an offloaded
 * chunk needs only its gradient: on the step's last micro-step it runs as
 * soon as the download has landed, while backward goes on. The device
 * weights are not touched (the upload waits for zero_update: backward may
 * still read them, and a later fetch in this step must gather the old
 * ones); a parameter-offloaded chunk, whose host home the step writes,
 * only once the trace says nothing fetches it again in this step. */
void zero_early_step(lm_zero *z, const lm_adamw_hp *hp, double lr, long step) {
    if (!z->n_opt_host) return;
    if (!z->segs) build_segments(z, hp);
    z->early = 1;
    z->early_hp = *hp;
    z->early_lr = lr;
    z->early_t = step;
}

static void early_poll(lm_zero *z) {
    if (!z->early || !z->last) return;
    const zero_trace *t = &z->tr;
    for (int c = z->nc - 1; c >= 0; c--) {
        if (!z->opt_host[c] || !z->trained[c] || !z->got_g[c] || z->done_h[c]) continue;
        if (z->par_host[c] && !(z->managed && t->ready && !t->lost && t->nextuse[c] == LONG_MAX)) continue;
        if (!z->d->copy_done(z->d, z->tk_g[c])) continue;
        host_chunk(z, c, &z->early_hp, z->early_lr, 1.0, z->early_t);
        z->host_early++;
    }
}

void zero_update(lm_zero *z, const lm_adamw_hp *hp, double lr, double gscale, long step) {
    if (!z->segs) build_segments(z, hp);
    if (z->nseg)
        z->d->adamw(z->d, z->segs, z->nseg, (float)gscale, (float)lr, (float)hp->beta1, (float)hp->beta2,
                    (float)hp->eps, step);
    memset(z->tk_u, 0, sizeof(uint64_t) * (size_t)z->nc);
    if (z->early && (gscale != 1.0 || lr != z->early_lr || step != z->early_t))
        lm_abort(LM_ERR_RUNTIME, "zero: the early host step was given lr %g, step %ld; the update has lr %g, step %ld, "
                 "gscale %g", z->early_lr, z->early_t, lr, step, gscale);
    if (z->n_opt_host) host_update(z, hp, lr, gscale, step);
    z->early = 0;
    if (z->stage == 3) {
        /* the home shards are the weights; what was gathered is stale */
        for (int c = 0; c < z->nc; c++)
            if (z->tk_u[c]) zero_wait_copy(z, z->tk_u[c], 1);
        zero_fetch_invalidate(z);
        return;
    }
    if (z->stage) {
        gather_weights(z, 1, z->tk_u); /* frozen chunks did not change */
        return;
    }
    for (int c = 0; c < z->nc; c++)
        if (z->tk_u[c]) zero_wait_copy(z, z->tk_u[c], 1);
}

/* In-place all-gather of every chunk's shards of the weight arena (with
 * trained_only, of the trained chunks), each once its owned range is in
 * place (its upload ticket, when offloaded). */
static void gather_weights(lm_zero *z, int trained_only, const uint64_t *wait_for) {
    if (z->dp->size == 1) {
        for (int c = 0; wait_for && c < z->nc; c++)
            if (wait_for[c]) zero_wait_copy(z, wait_for[c], 1);
        return;
    }
    for (int c = z->nc - 1; c >= 0; c--)
        if (!trained_only || z->trained[c]) {
            if (wait_for && wait_for[c]) zero_wait_copy(z, wait_for[c], 1);
            comm_dev_iallgather(z->dp, CX(z, z->ps->w, chunk_lo(z->ps, c)), z->sh[c], z->ct, &z->req[c]);
        }
    for (int c = z->nc - 1; c >= 0; c--)
        if (!trained_only || z->trained[c]) comm_wait(&z->req[c]);
}

/* Stage 0: every rank read its shard of the replicated fp32 state x of
 * chunk c (device or host); all-gather it in place. */
static void gather_state(lm_zero *z, int c, float *x) {
    if (z->dp->size == 1 || !x) return;
    if (z->opt_host[c]) {
        comm_allgather_f32(z->dp, x, z->sh[c]);
        return;
    }
    lm_req q;
    comm_dev_iallgather(z->dp, x, z->sh[c], LM_F32, &q);
    comm_wait(&q);
}

/* The compute-dtype weights of chunk c's owned range from its master. */
static uint64_t weights_from_master(lm_zero *z, int c) {
    if (z->master_alias[c]) return 0;
    lm_device *d = z->d;
    if (!z->opt_host[c]) {
        d->convert(d, wown(z, c), z->ct, z->master[c], LM_F32, z->os[c]);
        return 0;
    }
    if (z->f32) /* host master, device weights */
        return d->copy_async(d, wown(z, c), z->master[c], z->os[c] * sizeof(float), 0);
    void *dst = z->par_host[c] ? wown(z, c) : z->hparam[c];
    lm_f32_to_bf16_n(dst, z->master[c], z->os[c]);
    return z->par_host[c] ? 0 : d->copy_async(d, wown(z, c), dst, z->os[c] * z->esz, 0);
}

/* The master of chunk c's owned range from its compute-dtype weights. */
static void master_from_weights(lm_zero *z, int c) {
    if (z->master_alias[c]) return;
    lm_device *d = z->d;
    if (!z->opt_host[c]) {
        d->convert(d, z->master[c], LM_F32, wown(z, c), z->ct, z->os[c]);
        return;
    }
    d->download_f32(d, z->master[c], wown(z, c), z->os[c]);
}

void zero_master_from_weights(lm_zero *z) {
    for (int c = 0; c < z->nc; c++) master_from_weights(z, c);
}

void zero_init_random(lm_zero *z, uint64_t seed, double std) {
    lm_params *ps = z->ps;
    float *h = lm_alloc(sizeof(float) * (z->maxlen ? z->maxlen : 1));
    uint64_t *tk = lm_calloc((size_t)(z->nc ? z->nc : 1), sizeof(uint64_t));
    for (int c = 0; c < z->nc; c++) {
        size_t lo = zero_owned_lo(z, c), a, b;
        memset(h, 0, sizeof(float) * z->os[c]); /* padding */
        for (int i = z->first[c]; i >= 0 && i < z->first[c] + z->count[c]; i++) {
            lm_param *p = &ps->p[i];
            piece(p, lo, z->os[c], &a, &b);
            if (a < b) model_init_values(p, seed, std, a - p->offset, b - p->offset, h + (a - lo));
        }
        /* as an unmanaged layout starts (model_init_random writes the
         * compute-dtype weights, the master is taken from them): the
         * master holds the init rounded to the compute dtype */
        if (!z->f32)
            for (size_t i = 0; i < z->os[c]; i++) h[i] = lm_bf16_to_f32(lm_f32_to_bf16(h[i]));
        /* the master (host or device), then the weights from it */
        if (z->opt_host[c] || (z->master_alias[c] && z->par_host[c]))
            memcpy(z->master[c], h, sizeof(float) * z->os[c]);
        else
            z->d->to_device(z->d, z->master[c], h, sizeof(float) * z->os[c]);
        tk[c] = weights_from_master(z, c);
    }
    for (int c = 0; c < z->nc; c++)
        if (tk[c]) zero_wait_copy(z, tk[c], 0);
    lm_free(tk);
    lm_free(h);
    if (z->stage >= 1 && z->stage < 3) gather_weights(z, 0, NULL);
}

/* Checkpoint pieces of state the host cannot read directly (device
 * memory of a GPU) are streamed (io/ckpt.h: pull/push): the writer and the
 * reader copy them block by block through their own bounded buffer, so no
 * host copy of the rank's shard is ever made. LAMINA_CKPT_STREAM=1 streams
 * on the host-visible CPU backends too (tests). */
static int staged(const lm_zero *z, int c) {
    static int force = -1;
    if (force < 0) {
        const char *e = getenv("LAMINA_CKPT_STREAM");
        force = e && !strcmp(e, "1");
    }
    return !z->opt_host[c] && (!z->d->host_visible || force);
}

/* Element of the owned range where the rank's shard of chunk c starts. */
static size_t shard_in_owned(const lm_zero *z, int c) {
    return z->stage == 0 ? (size_t)z->dp->rank * z->sh[c] : 0;
}

static void ck_pull(void *ctx, float *dst, int64_t off, int64_t n) {
    zero_ckpt_src *k = ctx;
    k->d->to_host(k->d, dst, k->dev + off, (size_t)n * sizeof(float));
}
static void ck_push(void *ctx, const float *src, int64_t off, int64_t n) {
    zero_ckpt_src *k = ctx;
    k->d->to_device(k->d, k->dev + off, src, (size_t)n * sizeof(float));
}

void zero_ckpt_pull(lm_zero *z) {
    memset(z->zeros, 0, z->maxlen * sizeof(float)); /* a load may have read into it */
}

void zero_gather_loaded(lm_zero *z, int with_moments) {
    uint64_t *tk = lm_calloc((size_t)(z->nc ? z->nc : 1), sizeof(uint64_t));
    for (int c = 0; c < z->nc; c++) {
        if (z->stage == 0) {
            /* each rank read its shard of the replicated state */
            gather_state(z, c, z->master[c]);
            if (with_moments) {
                gather_state(z, c, z->mm[c]);
                gather_state(z, c, z->mv[c]);
            }
        }
        tk[c] = weights_from_master(z, c);
    }
    if (z->stage >= 1 && z->stage < 3)
        gather_weights(z, 0, tk);
    else
        for (int c = 0; c < z->nc; c++)
            if (tk[c]) zero_wait_copy(z, tk[c], 1);
    lm_free(tk);
    if (z->managed) zero_fetch_invalidate(z);
}

void zero_ckpt_tensors(lm_zero *z, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
    lm_params *ps = z->ps;
    if (!z->ck) z->ck = lm_calloc(3 * (size_t)(ps->n ? ps->n : 1), sizeof(zero_ckpt_src));
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        int c = p->chunk, st = staged(z, c);
        size_t lo = chunk_lo(ps, c) + (size_t)z->dp->rank * z->sh[c], a, b;
        piece(p, lo, z->sh[c], &a, &b);
        ckpt_tensor t = params_piece(p, 0, 0, NULL); /* nothing of it here */
        if (w) w[i] = t;
        if (m) m[i] = t;
        if (v) v[i] = t;
        if (b <= a) continue;
        t = params_piece(p, a - p->offset, b - p->offset, NULL);
        if (!t.count) continue; /* only padding rows */
        size_t in = shard_in_owned(z, c) + (a - lo); /* in the chunk's owned range */
        float *src[3] = {z->master[c] + in, z->trained[c] ? z->mm[c] + in : NULL, z->trained[c] ? z->mv[c] + in : NULL};
        ckpt_tensor *out[3] = {w, m, v};
        for (int k = 0; k < 3; k++) {
            if (!out[k]) continue;
            ckpt_tensor u = t;
            if (k && !z->trained[c]) {
                /* a frozen tensor's moments are stored as zeros (a later
                 * trainable = all run starts them fresh); what a load reads
                 * there is dropped */
                u.data = z->zeros;
            } else if (st) {
                zero_ckpt_src *ck = &z->ck[3 * i + k];
                *ck = (zero_ckpt_src){z->d, src[k]};
                u.data = NULL;
                u.pull = ck_pull;
                u.push = ck_push;
                u.ctx = ck;
            } else {
                u.data = src[k];
            }
            out[k][i] = u;
        }
    }
}

void zero_memory_bytes(const lm_zero *z, lm_zero_mem *m) {
    memset(m, 0, sizeof *m);
    size_t f = sizeof(float), e = z->esz;
    m->psi = z->ps->arena;
    m->stage = z->stage;
    m->dp = z->dp->size;
    m->esz = e;
    m->nc = z->nc;
    m->n_opt_host = z->n_opt_host;
    m->n_par_host = z->n_par_host;
    m->weights = z->managed ? 0 : m->psi * e;
    for (int c = 0; c < z->nc; c++) {
        int h = z->opt_host[c];
        if (z->managed && !z->par_host[c]) m->weights += z->sh[c] * e;
        if (z->managed && z->par_host[c]) m->h_params += z->sh[c] * e;
        if (z->hparam[c]) m->h_grads += z->os[c] * e; /* parameter upload staging */
        if (!z->master_alias[c]) *(h ? &m->h_master : &m->master) += z->os[c] * f; /* else: the weights */
        if (z->trained[c]) {
            *(h ? &m->h_optim : &m->optim) += 2 * z->os[c] * f;
            m->psi_trained += z->len[c];
        }
        if (z->hgrad[c]) m->h_grads += z->os[c] * e;
        m->grads += (z->stage >= 2 ? z->sh[c] : z->len[c]) * e;
    }
    m->buckets_peak = z->bucket_bytes_peak;
    m->slots_peak = z->slot_bytes_peak;
    m->slots_min = z->min_slots_bytes;
    m->gathers = z->gathers;
    m->uploads = z->uploads;
    m->evictions = z->evictions;
    m->host_steps = z->host_steps;
    m->host_early = z->host_early;
}

void zero_describe(const lm_zero *z, char *buf, size_t len) {
    size_t tot = 0, oh = 0, ph = 0;
    int fo = -1, fp = -1;
    for (int c = 0; c < z->nc; c++) {
        tot += z->len[c];
        if (z->opt_host[c]) oh += z->len[c], fo = fo < 0 ? c : fo;
        if (z->par_host[c]) ph += z->len[c], fp = fp < 0 ? c : fp;
    }
    double P = tot ? 100.0 / (double)tot : 0.0;
    int n = snprintf(buf, len, "placement (ZeRO-%d, parallel.offload = %s): optimizer state of %d of %d chunks on the "
                     "host (%.1f%% of the chunk bytes", z->stage,
                     (const char *[]){"none", "optim", "param", "auto"}[z->offload], z->n_opt_host, z->nc, P * (double)oh);
    if (fo >= 0 && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ": chunks %d..%d), AdamW there (host_adamw, %s)", fo, z->nc - 1,
                      host_adamw_isa());
    else if (n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ")");
    if (fp >= 0 && n > 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, "; compute-dtype parameters of %d chunks on the host (%.1f%%: chunks "
                      "%d..%d)", z->n_par_host, P * (double)ph, fp, z->nc - 1);
    if (z->stage == 3 && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "; each chunk gathered around its uses, prefetching %d chunk(s) ahead "
                 "along the order traced in the first step", z->prefetch);
}

void zero_poison_grad(lm_zero *z, size_t i) {
    float nan = NAN;
    int c = (int)(i / (z->maxlen / (size_t)z->dp->size) % (size_t)z->nc);
    z->d->upload_f32(z->d, CX(z, shard_grad(z, c), i % z->sh[c]), &nan, 1);
}

void zero_moment_arrays(lm_zero *z, float **m, float **v) {
    *m = z->blk_m[0];
    *v = z->blk_v[0];
}

double zero_wait_seconds(const lm_zero *z) { return z->wait_s; }

void zero_transfer_formula(const lm_zero *z, int n_micro, double *h2d, double *d2h) {
    double e = (double)z->esz, up = 0, down = 0;
    for (int c = 0; c < z->nc; c++)
        if (z->opt_host[c] && z->trained[c]) {
            down += e * (double)z->os[c];
            if (!z->par_host[c]) up += e * (double)z->os[c];
        }
    const lm_model *m = z->model;
    if (z->n_par_host && m) {
        /* the fetch groups: the embedding (forward), the head (backward), each layer (both) */
        int ng = m->s.n_layers + 2, *seen = lm_calloc((size_t)z->nc, sizeof(int));
        for (int gi = 0; gi < ng; gi++) {
            lm_param *grp[9];
            int n = fetch_group(m, gi, grp);
            int uses = gi < m->s.n_layers ? 2 : 1;
            for (int i = 0; i < n; i++) {
                int c = grp[i]->chunk;
                if (seen[c] == gi + 1) continue;
                seen[c] = gi + 1;
                if (z->par_host[c]) up += (double)n_micro * uses * e * (double)z->sh[c];
            }
        }
        lm_free(seen);
    }
    *h2d = up;
    *d2h = down;
}
