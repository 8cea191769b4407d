/* sample.c — greedy, top-k, nucleus (top-p) and temperature sampling
 * (sample.h). */
#include "sample.h"
#include "common.h"
#include "rng.h"
#include <math.h>
#include <stdlib.h>

void sampler_init(lm_sampler *s, int V) {
    s->V = V;
    s->idx = lm_alloc(sizeof(int) * (size_t)V);
    s->prob = lm_alloc(sizeof(double) * (size_t)V);
    s->ord = lm_alloc(sizeof(lm_logit_id) * (size_t)V);
}

void sampler_free(lm_sampler *s) {
    lm_free(s->idx);
    lm_free(s->prob);
    lm_free(s->ord);
    s->idx = NULL;
    s->prob = NULL;
    s->ord = NULL;
}

/* The first maximum of logits[V]. */
static int argmax(const float *logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

/* The candidates' total order: larger logit first, then lower id. */
static int before(const lm_logit_id *a, const lm_logit_id *b) { return a->l > b->l || (a->l == b->l && a->id < b->id); }

static int cmp_logit_id(const void *a, const void *b) {
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* o[0..k) become the k first candidates in that order: a partial selection
 * sort, O(kV), when k is small; else a full sort, O(V log V). */
static void order_top_k(lm_logit_id *o, const float *logits, int V, int k) {
    for (int v = 0; v < V; v++) o[v] = (lm_logit_id){logits[v], v};
    if (k > 32) {
        qsort(o, (size_t)V, sizeof *o, cmp_logit_id);
        return;
    }
    for (int a = 0; a < k; a++) {
        int best = a;
        for (int b = a + 1; b < V; b++)
            if (before(&o[b], &o[best])) best = b;
        lm_logit_id t = o[a];
        o[a] = o[best];
        o[best] = t;
    }
}

int sample_filter(lm_sampler *s, const float *logits, double temperature, int top_k, double top_p) {
    int V = s->V, k = top_k > 0 && top_k < V ? top_k : V;
    order_top_k(s->ord, logits, V, k);
    double mx = s->ord[0].l, z = 0;
    for (int a = 0; a < k; a++) {
        s->idx[a] = s->ord[a].id;
        z += s->prob[a] = exp(((double)s->ord[a].l - mx) / temperature);
    }
    /* the nucleus: the shortest prefix reaching top_p of the mass */
    int n = k;
    if (top_p < 1.0) {
        double cum = 0, zn = 0;
        for (n = 0; n < k && (n == 0 || cum < top_p);) {
            cum += s->prob[n] / z;
            zn += s->prob[n];
            n++;
        }
        z = zn;
    }
    for (int a = 0; a < n; a++) s->prob[a] /= z;
    return n;
}

/* Inverse-CDF draw: u uniform in [0,1) walked down the filtered
 * probabilities; the last candidate takes any rounding remainder. */
int sample_token(lm_sampler *s, const float *logits, double temperature, int top_k, double top_p, uint64_t key,
                 uint64_t draw) {
    if (temperature == 0) return argmax(logits, s->V);
    int n = sample_filter(s, logits, temperature, top_k, top_p);
    double u = rng_uniform(key, draw);
    for (int a = 0; a < n; a++) {
        u -= s->prob[a];
        if (u < 0) return s->idx[a];
    }
    return s->idx[n - 1];
}
