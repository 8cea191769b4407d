/* zero_fetch.c — ZeRO-3: each chunk's weights gathered around their use.
 *
 * Every rank keeps 1/dp of each chunk's compute-dtype weights, its home
 * shard (device memory, or host memory for a parameter-offloaded chunk).
 * Before the model reads a tensor (lm_param_hooks.fetch) its chunk is
 * gathered into a device slot as long as the chunk: the home shard is
 * copied (uploaded) to the rank's place in the slot and the slot
 * all-gathered in place over the data-parallel group. After the last
 * tensor of the chunk is released the slot goes, unless the chunk is used
 * again within the prefetch window, or, with a device budget
 * (train.device_memory), while there is room: then a chunk is evicted only
 * when room is needed, the one whose next use is furthest away (Belady's
 * choice, optimal for a known sequence).
 *
 * The sequence of uses is the same in every step (the model fetches in a
 * fixed order; micro-steps and the pipeline schedule are deterministic), so
 * the first step records it (the trace: one entry per distinct chunk of each
 * fetch) and the later steps follow it: at each fetch the next
 * parallel.prefetch distinct chunks of the trace are started — their home
 * shards uploaded and, one fetch later, their gathers launched — so that the
 * gathers and uploads overlap the compute in between. Collectives start
 * only at fetch calls, in trace order, the same on every rank (MPI and NCCL
 * match non-blocking collectives by the order they are started; starting a
 * gather when a copy happened to finish would differ between ranks).
 *
 * After the optimizer step the home shards hold new weights: every slot is
 * dropped (zero_fetch_invalidate). With dp = 1 and the home on the device,
 * the home is the whole chunk and is its own slot. */
#include "zero_impl.h"
#include "common.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *CX(const lm_zero *z, void *base, size_t i) { return (char *)base + i * z->esz; }

/* The tensors of chunk c read the slot (NULL: not resident). */
static void slot_views(lm_zero *z, int c, void *base) {
    for (int i = z->first[c]; i >= 0 && i < z->first[c] + z->count[c]; i++) {
        lm_param *p = &z->ps->p[i];
        p->w = base ? CX(z, base, p->offset - chunk_lo(z->ps, c)) : NULL;
    }
}

static void slot_free(lm_zero *z, int c) {
    if (z->slot_is_home[c] || !z->slot[c]) return;
    z->d->free(z->d, z->slot[c]);
    z->slot[c] = NULL;
    z->slot_bytes -= z->len[c] * z->esz;
    z->state[c] = S_ABSENT;
    slot_views(z, c, NULL);
}

int zero_victim(const zero_trace *t, const int *cand, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        int c = cand[i];
        if (best < 0 || t->nextuse[c] > t->nextuse[best] ||
            (t->nextuse[c] == t->nextuse[best] && t->lastuse[c] < t->lastuse[best]))
            best = c;
    }
    return best;
}

/* Evict unused gathered chunks whose next use is after `after` (furthest
 * first) until `bytes` more fit under the budget. A fetch (for_use) may
 * evict any unused chunk and complete prefetches in flight to do so. */
static int room_for(lm_zero *z, size_t bytes, long after, int for_use) {
    if (!z->budget) return 1;
    int *cand = lm_alloc(sizeof(int) * (size_t)(z->nc ? z->nc : 1));
    int ok = 0;
    for (;;) {
        size_t used = z->d->mem_info(z->d, NULL, 0);
        if (used + bytes <= z->budget) {
            ok = 1;
            break;
        }
        int n = 0;
        for (int c = 0; z->managed && c < z->nc; c++)
            if (z->state[c] == S_READY && !z->refcnt[c] && !z->slot_is_home[c] && z->tr.nextuse[c] > after)
                cand[n++] = c;
        int v = zero_victim(&z->tr, cand, n);
        if (v < 0) {
            /* a fetch may complete prefetches in flight that it does not
             * use, to evict them: waiting starts no collective, so every
             * rank stays in step */
            int waited = 0;
            for (int c = 0; for_use && c < z->nc; c++)
                if (!z->refcnt[c] && (z->state[c] == S_UPLOADING || z->state[c] == S_GATHERING)) {
                    if (z->state[c] == S_UPLOADING) { /* never gathered: dropped */
                        zero_wait_copy(z, z->tk_s[c], 0);
                        z->state[c] = S_READY;
                        slot_free(z, c);
                        z->evictions++;
                    } else {
                        comm_wait(&z->req3[c]);
                        z->state[c] = S_READY;
                    }
                    waited = 1;
                }
            if (!waited) break;
            continue;
        }
        slot_free(z, v);
        z->evictions++;
    }
    lm_free(cand);
    return ok;
}

int zero_make_room(lm_zero *z, size_t bytes) { return room_for(z, bytes, -1, 1); }

/* Test hook: LAMINA_FAIL_GATHER = "RANK:N" stops that world rank inside its
 * N-th gather (or upload) of a chunk, as a failing device or link would. */
static void maybe_fail(lm_zero *z) {
    static int armed = -1, rank_at, n_at;
    if (armed < 0) {
        const char *s = getenv("LAMINA_FAIL_GATHER");
        armed = s && sscanf(s, "%d:%d", &rank_at, &n_at) == 2;
    }
    if (armed && comm_world()->rank == rank_at && z->gathers + z->uploads + 1 == n_at)
        lm_abort(LM_ERR_RUNTIME, "zero: injected fault in a ZeRO-3 gather (LAMINA_FAIL_GATHER=%d:%d)", rank_at, n_at);
}

static void start_gather(lm_zero *z, int c) {
    maybe_fail(z);
    if (z->dp->size > 1) {
        comm_dev_iallgather(z->dp, z->slot[c], z->sh[c], z->ct, &z->req3[c]);
        z->state[c] = S_GATHERING;
        z->gathers++;
    } else {
        z->state[c] = S_READY;
    }
}

/* A slot for chunk c and its home shard in it: copied on the device and
 * gathered, or (par_host) uploaded now and gathered later. */
static int start_load(lm_zero *z, int c, long after, int for_use) {
    size_t bytes = z->len[c] * z->esz;
    if (!room_for(z, bytes, after, for_use)) return 0;
    z->slot[c] = z->d->alloc(z->d, bytes);
    z->slot_bytes += bytes;
    if (z->slot_bytes > z->slot_bytes_peak) z->slot_bytes_peak = z->slot_bytes;
    void *mine = CX(z, z->slot[c], (size_t)z->dp->rank * z->sh[c]);
    if (z->par_host[c]) {
        maybe_fail(z);
        z->tk_s[c] = z->d->copy_async(z->d, mine, z->home[c], z->sh[c] * z->esz, 0);
        z->state[c] = S_UPLOADING;
        z->uploads++;
        return 1;
    }
    z->d->copy(z->d, mine, z->home[c], z->sh[c] * z->esz);
    start_gather(z, c);
    return 1;
}

/* An upload in flight: compute (and the gather, which runs after it) waits
 * for it; then the gather starts. */
static void upload_to_gather(lm_zero *z, int c) {
    zero_wait_copy(z, z->tk_s[c], 1);
    start_gather(z, c);
}

static void finish(lm_zero *z, int c) {
    if (z->state[c] == S_UPLOADING) upload_to_gather(z, c);
    if (z->state[c] == S_GATHERING) {
        comm_wait(&z->req3[c]);
        z->state[c] = S_READY;
    }
}

/* ---------------------------------------------------------------- trace */

static void trace_access(lm_zero *z, int c) {
    zero_trace *t = &z->tr;
    t->lastuse[c] = ++t->clock;
    if (t->recording) {
        if (t->ntrace == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 256;
            int *nt = lm_alloc(sizeof(int) * (size_t)t->cap);
            if (t->ntrace) memcpy(nt, t->trace, sizeof(int) * (size_t)t->ntrace);
            lm_free(t->trace);
            t->trace = nt;
        }
        t->trace[t->ntrace++] = c;
        return;
    }
    if (!t->ready || t->lost) return;
    int p = t->pos + 1;
    if (p < t->ntrace && t->trace[p] == c) {
        t->pos = p;
        t->nextuse[c] = t->next[p] < t->ntrace ? t->next[p] : LONG_MAX;
        return;
    }
    t->lost = 1; /* not the traced order: no prefetch, nothing known of next uses */
    for (int k = 0; k < z->nc; k++) t->nextuse[k] = LONG_MAX;
}

/* The trace of the first step becomes the schedule: next[k], and each
 * chunk's first use. */
static void trace_finish(lm_zero *z) {
    zero_trace *t = &z->tr;
    t->next = lm_alloc(sizeof(int) * (size_t)(t->ntrace ? t->ntrace : 1));
    int *at = lm_alloc(sizeof(int) * (size_t)(z->nc ? z->nc : 1));
    for (int c = 0; c < z->nc; c++) at[c] = t->ntrace;
    for (int k = t->ntrace - 1; k >= 0; k--) {
        t->next[k] = at[t->trace[k]];
        at[t->trace[k]] = k;
    }
    lm_free(at);
    t->recording = 0;
    t->ready = 1;
}

void zero_fetch_step_begin(lm_zero *z) {
    zero_trace *t = &z->tr;
    if (t->recording && t->ntrace) trace_finish(z);
    else if (!t->ready) t->recording = 1;
    t->pos = -1;
    t->lost = 0;
    for (int c = 0; c < z->nc; c++) t->nextuse[c] = LONG_MAX;
    if (t->ready)
        for (int k = t->ntrace - 1; k >= 0; k--) t->nextuse[t->trace[k]] = k;
}

/* Start the next parallel.prefetch distinct chunks of the trace: absent
 * ones loaded (room permitting without evicting anything used sooner),
 * uploads issued at an earlier fetch gathered. */
static void prefetch(lm_zero *z, long event) {
    zero_trace *t = &z->tr;
    if (!t->ready || t->lost || z->prefetch <= 0) return;
    int got = 0, seen[16], ns = 0;
    for (int j = t->pos + 1; j < t->ntrace && got < z->prefetch; j++) {
        int c = t->trace[j], dup = 0;
        for (int i = 0; i < ns; i++) dup |= seen[i] == c;
        if (dup) continue;
        if (ns < 16) seen[ns++] = c;
        got++;
        if (z->state[c] == S_ABSENT) {
            if (!start_load(z, c, j, 0)) return;
            z->up_event[c] = event;
        } else if (z->state[c] == S_UPLOADING && z->up_event[c] < event) {
            upload_to_gather(z, c);
        }
    }
}

/* The distinct chunks of n tensors, at most 16 (a fetch group is at most
 * nine tensors). */
static int distinct(lm_param *const *ps, int n, int *cs) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!ps[i]) continue;
        int c = ps[i]->chunk, dup = 0;
        for (int j = 0; j < k; j++) dup |= cs[j] == c;
        if (!dup && k < 16) cs[k++] = c;
    }
    return k;
}

static void fetch(void *ctx, lm_param *const *ps, int n) {
    lm_zero *z = ctx;
    int cs[16], k = distinct(ps, n, cs);
    long event = ++z->events;
    for (int i = 0; i < k; i++) {
        trace_access(z, cs[i]);
        z->refcnt[cs[i]]++;
    }
    for (int i = 0; i < k; i++) {
        int c = cs[i];
        if (z->state[c] == S_ABSENT && !start_load(z, c, -1, 1)) {
            char b[32];
            snprintf(b, sizeof b, "%zu", z->budget);
            lm_abort(LM_ERR_RUNTIME, "zero: no room to gather chunk %d (%zu bytes) under train.device_memory = %s: "
                     "%zu bytes in use, of which gathered chunks %zu", c, z->len[c] * z->esz, b,
                     z->d->mem_info(z->d, NULL, 0), z->slot_bytes);
        }
    }
    prefetch(z, event);
    for (int i = 0; i < k; i++) {
        finish(z, cs[i]);
        slot_views(z, cs[i], z->slot[cs[i]]);
    }
}

static void release(void *ctx, lm_param *const *ps, int n) {
    lm_zero *z = ctx;
    int cs[16], k = distinct(ps, n, cs);
    const zero_trace *t = &z->tr;
    for (int i = 0; i < k; i++) {
        int c = cs[i];
        if (--z->refcnt[c] > 0 || z->slot_is_home[c]) continue;
        if (z->budget) continue; /* cached while there is room; evicted by furthest next use */
        int soon = t->ready && !t->lost && t->nextuse[c] != LONG_MAX && t->nextuse[c] <= t->pos + z->prefetch;
        if (!soon) slot_free(z, c);
    }
}

void zero_fetch_invalidate(lm_zero *z) {
    for (int c = 0; c < z->nc; c++) {
        if (z->slot_is_home[c]) continue;
        if (z->refcnt[c]) lm_abort(LM_ERR_RUNTIME, "zero: chunk %d still in use at the optimizer step", c);
        finish(z, c);
        slot_free(z, c);
    }
}

void zero_fetch_init(lm_zero *z) {
    size_t nz = (size_t)(z->nc ? z->nc : 1);
    z->slot = lm_calloc(nz, sizeof(void *));
    z->state = lm_calloc(nz, sizeof(int));
    z->refcnt = lm_calloc(nz, sizeof(int));
    z->slot_is_home = lm_calloc(nz, sizeof(int));
    z->up_event = lm_calloc(nz, sizeof(long));
    z->req3 = lm_calloc(nz, sizeof(lm_req));
    z->tk_s = lm_calloc(nz, sizeof(uint64_t));
    z->tr.nextuse = lm_calloc(nz, sizeof(long));
    z->tr.lastuse = lm_calloc(nz, sizeof(long));
    for (int c = 0; c < z->nc; c++) {
        z->tr.nextuse[c] = LONG_MAX;
        if (z->dp->size == 1 && !z->par_host[c]) { /* the home is the whole chunk */
            z->slot_is_home[c] = 1;
            z->slot[c] = z->home[c];
            z->state[c] = S_READY;
            slot_views(z, c, z->slot[c]);
        }
    }
    z->phooks = (lm_param_hooks){z, fetch, release};
}

void zero_fetch_free(lm_zero *z) {
    for (int c = 0; c < z->nc; c++) {
        if (z->state[c] == S_GATHERING) comm_wait(&z->req3[c]);
        if (z->state[c] == S_UPLOADING) zero_wait_copy(z, z->tk_s[c], 0);
        slot_free(z, c);
    }
    void *a[] = {z->slot, z->state, z->refcnt, z->slot_is_home, z->up_event, z->req3, z->tk_s, z->tr.trace,
                 z->tr.next, z->tr.nextuse, z->tr.lastuse};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) lm_free(a[i]);
}
