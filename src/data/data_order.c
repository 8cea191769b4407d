/* data_order.c — which sample a position of the data stream names
 * (SPEC §4, §9). Everything here is a pure function of (seed, position) and
 * the files: no state survives but caches, so any rank computes any
 * position alone, the order never depends on the parallel layout, and a
 * restart at position p continues exactly.
 *
 * One stream (a plain list of files): the files concatenated, bucket b =
 * bucket b of every file in file order. An epoch walks bucket 0, 1, ... in
 * order; with data.shuffle each bucket is permuted by Fisher-Yates, swap i
 * drawn as element i of the stream (seed, "data.epoch.E") for bucket 0 and
 * (seed, "data.epoch.E.bucket.B") for bucket B > 0. One bucket of all
 * samples therefore gives exactly the shuffle of the loader before buckets.
 *
 * Weighted lists (`path:w`): each file its own stream with its own epochs
 * and shuffle (keys "data.stream.I.epoch.E.bucket.B"). Positions are dealt
 * to the streams in blocks of 1024: stream i gets c_i positions of every
 * block, c_i = the largest-remainder rounding of 1024 w_i / sum(w) (ties to
 * the lower index), in an order drawn per block q (Fisher-Yates of the
 * multiset of stream indices, key (seed, "data.mix.Q")). Position g is
 * then slot o = g mod 1024 of block q = g / 1024, and it is position
 * q c_i + (slots of stream i before o in block q) of stream i: O(1024) per
 * new block, O(1) after. */
#include "data_int.h"
#include "common.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building the streams ---- */

static void build_stream(lm_data *d, dstream *s) {
    s->nb = 1;
    for (int k = 0; k < s->nf; k++) {
        int64_t nb = tokfile_n_buckets(d->files[s->f0 + k].f);
        if (nb > s->nb) s->nb = nb;
    }
    int W = s->nf + 1;
    s->bstart = lm_alloc(sizeof(int64_t) * (size_t)(s->nb + 1));
    s->seg = lm_alloc(sizeof(int64_t) * (size_t)s->nb * (size_t)W);
    s->n = 0;
    for (int64_t b = 0; b < s->nb; b++) {
        s->bstart[b] = s->n;
        int64_t *sg = s->seg + b * W, at = 0;
        for (int k = 0; k < s->nf; k++) {
            tokfile *f = d->files[s->f0 + k].f;
            sg[k] = at;
            at += b < tokfile_n_buckets(f) ? tokfile_bucket_start(f, b + 1) - tokfile_bucket_start(f, b) : 0;
        }
        sg[s->nf] = at;
        s->n += at;
    }
    s->bstart[s->nb] = s->n;
}

/* Largest-remainder shares of DATA_MIX_BLOCK: floors first, then one more
 * to the largest remainders (ties to the lower index). */
static void mix_shares(lm_data *d) {
    double W = 0;
    for (int i = 0; i < d->n_st; i++) W += d->st[i].weight;
    int left = DATA_MIX_BLOCK;
    double *rem = lm_alloc(sizeof(double) * (size_t)d->n_st);
    for (int i = 0; i < d->n_st; i++) {
        double q = DATA_MIX_BLOCK * d->st[i].weight / W;
        d->st[i].share = (int)q;
        rem[i] = q - (double)d->st[i].share;
        left -= d->st[i].share;
    }
    while (left-- > 0) {
        int best = 0;
        for (int i = 1; i < d->n_st; i++)
            if (rem[i] > rem[best]) best = i;
        d->st[best].share++;
        rem[best] = -1;
    }
    lm_free(rem);
}

int data_streams_build(lm_data *d, const double *weights, char *err, size_t errlen) {
    d->blk = -1;
    d->weighted = weights != NULL;
    d->n_st = d->weighted ? d->n_files : 1;
    d->st = lm_calloc((size_t)d->n_st, sizeof(dstream));
    for (int i = 0; i < d->n_st; i++) {
        d->st[i].f0 = d->weighted ? i : 0;
        d->st[i].nf = d->weighted ? 1 : d->n_files;
        d->st[i].weight = weights ? weights[i] : 1.0;
        build_stream(d, &d->st[i]);
    }
    if (!d->weighted) return 0;
    if (d->n_st > DATA_MIX_BLOCK)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %d weighted files: at most %d", d->key, d->n_st, DATA_MIX_BLOCK);
    mix_shares(d);
    for (int i = 0; i < d->n_st; i++)
        if (d->st[i].share == 0)
            return lm_err(err, errlen, LM_ERR_INPUT,
                          "%s: %s: weight %g is too small: it rounds to none of every %d samples", d->key,
                          tokfile_path(d->files[i].f), d->st[i].weight, DATA_MIX_BLOCK);
    return 0;
}

void data_streams_free(lm_data *d) {
    for (int i = 0; d->st && i < d->n_st; i++) {
        lm_free(d->st[i].bstart);
        lm_free(d->st[i].seg);
        for (int k = 0; k < 4; k++) lm_free(d->st[i].cache[k].p);
    }
    lm_free(d->st);
    d->st = NULL;
}

/* ---- the shuffles ---- */

/* The permutation of bucket b (m samples) in epoch e of stream si: cached
 * (least recently used out; the cache holds at most 2 x the stream's
 * samples, as the loader before buckets held two epochs). */
static const int64_t *bucket_perm(lm_data *d, int si, int64_t e, int64_t b, int64_t m) {
    dstream *s = &d->st[si];
    for (int k = 0; k < 4; k++)
        if (s->cache[k].p && s->cache[k].epoch == e && s->cache[k].bucket == b) {
            s->cache[k].used = ++s->tick;
            return s->cache[k].p;
        }
    int64_t held = 0;
    for (int k = 0; k < 4; k++) held += s->cache[k].p ? s->cache[k].n : 0;
    int slot = -1;
    for (;;) {
        int lru = -1, any_free = -1;
        for (int k = 0; k < 4; k++) {
            if (!s->cache[k].p) any_free = k;
            else if (lru < 0 || s->cache[k].used < s->cache[lru].used) lru = k;
        }
        if (any_free >= 0 && held + m <= 2 * s->n) {
            slot = any_free;
            break;
        }
        if (lru < 0) { /* nothing cached: the one needed always fits */
            slot = 0;
            break;
        }
        held -= s->cache[lru].n;
        lm_free(s->cache[lru].p);
        s->cache[lru].p = NULL;
    }
    dperm *c = &s->cache[slot];
    c->p = lm_alloc(sizeof(int64_t) * (size_t)(m > 0 ? m : 1));
    c->n = m;
    c->epoch = e;
    c->bucket = b;
    c->used = ++s->tick;
    char name[96];
    if (d->weighted)
        snprintf(name, sizeof name, "data.stream.%d.epoch.%lld.bucket.%lld", si, (long long)e, (long long)b);
    else if (b == 0)
        snprintf(name, sizeof name, "data.epoch.%lld", (long long)e);
    else
        snprintf(name, sizeof name, "data.epoch.%lld.bucket.%lld", (long long)e, (long long)b);
    uint64_t key = rng_stream(d->seed, name);
    int64_t *p = c->p;
    for (int64_t i = 0; i < m; i++) p[i] = i;
    for (int64_t i = m - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* Largest index k in [0, n) with a[k] <= x (a non-decreasing, a[0] <= x):
 * skips the empty ranges before a non-empty one. */
static int64_t last_le(const int64_t *a, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (a[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Position p of stream si: bucket b, file, sample in the file. */
static void stream_locate(lm_data *d, int si, int64_t p, int *file, int64_t *local, int64_t *bucket) {
    dstream *s = &d->st[si];
    int64_t e = p / s->n, pos = p % s->n;
    int64_t b = last_le(s->bstart, s->nb, pos);
    int64_t r = pos - s->bstart[b];
    if (d->shuffle) r = bucket_perm(d, si, e, b, s->bstart[b + 1] - s->bstart[b])[r];
    const int64_t *sg = s->seg + b * (s->nf + 1);
    int k = (int)last_le(sg, s->nf, r);
    *file = s->f0 + k;
    *local = tokfile_bucket_start(d->files[*file].f, b) + r - sg[k];
    *bucket = b;
}

/* ---- weighted mixing ---- */

/* Block q: which stream each slot holds, and its rank among that stream's
 * slots of the block. */
static void build_block(lm_data *d, int64_t q) {
    int at = 0;
    for (int i = 0; i < d->n_st; i++)
        for (int k = 0; k < d->st[i].share; k++) d->slot[at++] = i;
    char name[48];
    snprintf(name, sizeof name, "data.mix.%lld", (long long)q);
    uint64_t key = rng_stream(d->seed, name);
    for (int i = DATA_MIX_BLOCK - 1; i > 0; i--) {
        int j = (int)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int t = d->slot[i];
        d->slot[i] = d->slot[j];
        d->slot[j] = t;
    }
    int seen[DATA_MIX_BLOCK] = {0};
    for (int o = 0; o < DATA_MIX_BLOCK; o++) d->rank[o] = seen[d->slot[o]]++;
    d->blk = q;
}

static void mix_locate(lm_data *d, int64_t g, int *si, int64_t *p) {
    if (!d->weighted) {
        *si = 0;
        *p = g;
        return;
    }
    int64_t q = g / DATA_MIX_BLOCK;
    int o = (int)(g % DATA_MIX_BLOCK);
    if (q != d->blk) build_block(d, q);
    *si = d->slot[o];
    *p = q * d->st[*si].share + d->rank[o];
}

void data_locate(lm_data *d, int64_t g, int *file, int64_t *local, int64_t *bucket) {
    int si;
    int64_t p;
    mix_locate(d, g, &si, &p);
    stream_locate(d, si, p, file, local, bucket);
}

int64_t data_sample_at(lm_data *d, int64_t g) {
    int file;
    int64_t local, b;
    data_locate(d, g, &file, &local, &b);
    return d->files[file].base + local;
}

int data_n_buckets(const lm_data *d) { return (int)d->st[0].nb; }

/* The bucket of stream 0 at position g: with weights, the bucket the first
 * file's stream has reached by slot g (its own position there). */
int data_bucket_at(lm_data *d, int64_t g) {
    int64_t p = g;
    if (d->weighted) {
        int64_t q = g / DATA_MIX_BLOCK;
        int o = (int)(g % DATA_MIX_BLOCK);
        if (q != d->blk) build_block(d, q);
        int before = 0;
        for (int k = 0; k < o; k++) before += d->slot[k] == 0;
        p = q * d->st[0].share + before;
    }
    const dstream *s = &d->st[0];
    return (int)last_le(s->bstart, s->nb, p % s->n);
}
