/* pipeline.c — see pipeline.h. */
#include "pipeline.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cost added to chunk c beyond its layers. */
static double extra(int c, int C, double embed_cost, double head_cost) {
    return (c == 0 ? embed_cost : 0.0) + (c == C - 1 ? head_cost : 0.0);
}

/* Most layers chunk c may hold when no chunk may cost more than M. */
static int cap(int c, int C, double M, double e, double h) {
    double k = M - extra(c, C, e, h) + 1e-9;
    return k < 0 ? 0 : (int)k;
}

/* Can layers be cut into chunks c0 .. C-1, each of 1 .. cap layers? Each
 * chunk's cost is its layer count plus a constant, so the counts only have
 * to fit between the sums of the minima (1 each) and of the caps. */
static int feasible(int layers, int c0, int C, double M, double e, double h, int least) {
    long most = 0;
    for (int c = c0; c < C; c++) {
        int k = cap(c, C, M, e, h);
        if (k < least) return 0;
        most += k;
    }
    return layers >= (long)least * (C - c0) && layers <= most;
}

/* Cut n layers into C parts of at least `least` layers, part 0 costing e
 * more and part C-1 h more, minimising the largest part cost; among the
 * optimal cuts the lexicographically smallest (earliest parts fewest). */
static void balance(int n, int C, int least, double e, double h, int *parts) {
    /* feasible() only gains chunks' room as M grows, so for each c the
     * least feasible k is found by bisection: O(C^2 log n), not O(n C^2)
     * (minutes for a billion layers) */
    double best = -1.0;
    for (int c = 0; c < C; c++) {
        int lo = least, hi = n;
        if (!feasible(n, 0, C, hi + extra(c, C, e, h), e, h, least)) continue;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (feasible(n, 0, C, mid + extra(c, C, e, h), e, h, least)) hi = mid;
            else lo = mid + 1;
        }
        double M = lo + extra(c, C, e, h);
        if (best < 0 || M < best) best = M;
    }
    int left = n;
    for (int c = 0; c < C; c++) {
        long rest = 0;
        for (int j = c + 1; j < C; j++) rest += cap(j, C, best, e, h);
        int k = left - rest > least ? (int)(left - rest) : least;
        if (c == C - 1) k = left;
        parts[c] = k;
        left -= k;
    }
}

/* The least largest-chunk cost M* is one of the values k + extra(c) (a
 * chunk's cost); the smallest feasible candidate is it. Then the counts
 * are chosen from the front, each chunk the fewest layers that leave a
 * feasible rest: the lexicographically smallest optimal split. */
int pp_split_layers(int n_layers, int pp, int v, const int *counts, int n_counts, double embed_cost, double head_cost,
             lm_pp_split *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int C = pp * v;
    if (pp < 1 || v < 1 || C > LM_PP_MAX_CHUNKS)
        return lm_err(err, errlen, LM_ERR_INPUT, "parallel.pp = %d x parallel.virtual_stages = %d: must be >= 1 and at most %d chunks",
                      pp, v, LM_PP_MAX_CHUNKS);
    if (n_layers < C)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.n_layers = %d is less than parallel.pp x parallel.virtual_stages = %d: every model chunk "
                      "needs at least one layer", n_layers, C);
    out->pp = pp;
    out->v = v;
    out->n_chunks = C;
    if (counts) {
        if (n_counts != C)
            return lm_err(err, errlen, LM_ERR_INPUT, "parallel.stage_layers: %d entries, but pp x virtual_stages = %d chunks",
                          n_counts, C);
        long sum = 0;
        for (int c = 0; c < C; c++) {
            if (counts[c] < 1)
                return lm_err(err, errlen, LM_ERR_INPUT, "parallel.stage_layers: entry %d is %d: every chunk needs >= 1 layer", c + 1,
                              counts[c]);
            sum += counts[c];
        }
        if (sum != n_layers)
            return lm_err(err, errlen, LM_ERR_INPUT, "parallel.stage_layers: the counts sum to %ld, model.n_layers is %d", sum,
                          n_layers);
        for (int c = 0, at = 0; c < C; at += counts[c++]) {
            out->first[c] = at;
            out->count[c] = counts[c];
        }
        return 0;
    }
    /* v = 1: the chunks are the stages. v > 1: first the stages' layer
     * counts (the stage holding the head is the last, the embedding the
     * first), so that the stages' sums are balanced, then each stage's
     * layers over its v chunks as evenly as possible (earlier fewer);
     * chunk c is stage c mod pp's chunk c / pp. */
    int stage[LM_PP_MAX_CHUNKS], part[LM_PP_MAX_CHUNKS];
    balance(n_layers, pp, v, embed_cost, head_cost, stage);
    for (int st = 0; st < pp; st++) {
        balance(stage[st], v, 1, 0.0, 0.0, part);
        for (int j = 0; j < v; j++) out->count[j * pp + st] = part[j];
    }
    for (int c = 0, at = 0; c < C; at += out->count[c++]) out->first[c] = at;
    return 0;
}

double pp_chunk_cost(const lm_pp_split *s, int c, double embed_cost, double head_cost) {
    return s->count[c] + extra(c, s->n_chunks, embed_cost, head_cost);
}

int pp_schedule_check(int kind, int pp, int v, int m, char *err, size_t errlen) {
    if (m < 1) return lm_err(err, errlen, LM_ERR_INPUT, "pipeline: %d micro-batches per step: need at least 1", m);
    if (kind == LM_PP_1F1B && v != 1)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "parallel.schedule = 1f1b runs one model chunk per stage: parallel.virtual_stages = %d must be "
                      "1 (or use interleaved)", v);
    if (kind == LM_PP_INTERLEAVED) {
        if (v < 2)
            return lm_err(err, errlen, LM_ERR_INPUT,
                          "parallel.schedule = interleaved needs parallel.virtual_stages >= 2 (it is %d)", v);
        if (m % pp)
            return lm_err(err, errlen, LM_ERR_INPUT,
                          "parallel.schedule = interleaved: the %d micro-batches per step (global_batch / (dp x "
                          "micro_batch)) must be a multiple of parallel.pp = %d", m, pp);
    }
    return 0;
}

/* Virtual micro-batch k of the interleaved schedule: its micro-batch and,
 * for a forward, its local chunk (backwards walk the chunks in reverse). */
static void virtual_mb(int k, int pp, int v, int fwd, int *mb, int *chunk) {
    int in_group = k % (pp * v);
    *chunk = in_group / pp;
    if (!fwd) *chunk = v - 1 - *chunk;
    *mb = k / (pp * v) * pp + k % pp;
}

void pp_schedule(int kind, int pp, int v, int m, int stage, lm_pp_op *ops) {
    int total = m * v, w;
    if (kind == LM_PP_1F1B)
        w = pp - stage - 1;
    else
        w = 2 * (pp - stage - 1) + (v - 1) * pp;
    if (w > total) w = total;
    int n = 0, f = 0, b = 0;
    /* op k of each direction: (micro-batch, chunk) */
#define EMIT(kind_, k_)                                                              \
    do {                                                                             \
        lm_pp_op *o = &ops[n++];                                                     \
        o->kind = kind_;                                                             \
        if (v == 1) {                                                                \
            o->mb = k_;                                                              \
            o->chunk = 0;                                                            \
        } else {                                                                     \
            virtual_mb(k_, pp, v, kind_ == LM_PP_FWD, &o->mb, &o->chunk);            \
        }                                                                            \
    } while (0)
    for (; f < w; f++) EMIT(LM_PP_FWD, f);
    for (; f < total; f++, b++) {
        EMIT(LM_PP_FWD, f);
        EMIT(LM_PP_BWD, b);
    }
    for (; b < total; b++) EMIT(LM_PP_BWD, b);
#undef EMIT
}

int pp_max_inflight(int kind, int pp, int v, int m, int stage) {
    int n = 2 * m * v, now = 0, most = 0;
    lm_pp_op *ops = lm_alloc(sizeof(lm_pp_op) * (size_t)n);
    pp_schedule(kind, pp, v, m, stage, ops);
    for (int i = 0; i < n; i++) {
        now += ops[i].kind == LM_PP_FWD ? 1 : -1;
        if (now > most) most = now;
    }
    lm_free(ops);
    return most;
}

double pp_simulate(int kind, int pp, int v, int m, double tf, double tb, double *idle) {
    int C = pp * v, per = 2 * m * v;
    lm_pp_op *ops = lm_alloc(sizeof(lm_pp_op) * (size_t)per * (size_t)pp);
    int *next = lm_calloc((size_t)pp, sizeof(int));
    double *free_at = lm_calloc((size_t)pp, sizeof(double));
    double *done = lm_alloc(sizeof(double) * 2 * (size_t)m * (size_t)C); /* [kind][mb][chunk], < 0: not yet */
    for (size_t i = 0; i < 2 * (size_t)m * (size_t)C; i++) done[i] = -1.0;
    for (int s = 0; s < pp; s++) pp_schedule(kind, pp, v, m, s, ops + (size_t)s * (size_t)per);
#define DONE(k, mb, c) done[((size_t)(k) * (size_t)m + (size_t)(mb)) * (size_t)C + (size_t)(c)]
    int left = per * pp, progress = 1;
    while (left && progress) {
        progress = 0;
        for (int s = 0; s < pp; s++)
            while (next[s] < per) {
                const lm_pp_op *o = &ops[(size_t)s * (size_t)per + (size_t)next[s]];
                int c = o->chunk * pp + s;
                double dep = 0.0;
                if (o->kind == LM_PP_FWD && c > 0) dep = DONE(LM_PP_FWD, o->mb, c - 1);
                if (o->kind == LM_PP_BWD) dep = c == C - 1 ? DONE(LM_PP_FWD, o->mb, c) : DONE(LM_PP_BWD, o->mb, c + 1);
                if (dep < 0.0) break; /* its input does not exist yet */
                double start = free_at[s] > dep ? free_at[s] : dep;
                free_at[s] = start + (o->kind == LM_PP_FWD ? tf : tb);
                DONE(o->kind, o->mb, c) = free_at[s];
                next[s]++;
                left--;
                progress = 1;
            }
    }
#undef DONE
    double span = -1.0;
    if (!left) {
        span = 0.0;
        for (int s = 0; s < pp; s++)
            if (free_at[s] > span) span = free_at[s];
        double busy = (double)m * (double)v * (tf + tb);
        for (int s = 0; s < pp && idle; s++) idle[s] = (span - busy) / busy;
    }
    lm_free(ops);
    lm_free(next);
    lm_free(free_at);
    lm_free(done);
    return span;
}
