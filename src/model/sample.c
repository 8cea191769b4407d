/* sample.c — greedy and top-k/temperature sampling (sample.h). */
#include "sample.h"
#include "common.h"
#include "rng.h"
#include <math.h>

void sampler_init(lm_sampler *s, int V) {
    s->V = V;
    s->idx = lm_alloc(sizeof(int) * (size_t)V);
    s->prob = lm_alloc(sizeof(double) * (size_t)V);
}

void sampler_free(lm_sampler *s) {
    lm_free(s->idx);
    lm_free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

/* The first maximum of logits[V]. */
static int argmax(const float *logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

/* Partial selection sort: idx[0..k) become the ids of the k largest logits,
 * largest first (O(kV), k is small; ties keep the lower id first). */
static void select_top_k(int *idx, const float *logits, int V, int k) {
    for (int v = 0; v < V; v++) idx[v] = v;
    for (int a = 0; a < k; a++) {
        int best = a;
        for (int b = a + 1; b < V; b++)
            if (logits[idx[b]] > logits[idx[best]]) best = b;
        int t = idx[a];
        idx[a] = idx[best];
        idx[best] = t;
    }
}

/* Inverse-CDF draw: u uniform in [0,1) times the sum of the top k's
 * exp((logit - max)/temperature), walked down the list. */
int sample_token(lm_sampler *s, const float *logits, double temperature, int top_k, uint64_t key, uint64_t draw) {
    int V = s->V;
    if (temperature == 0) return argmax(logits, V);
    int k = top_k > 0 && top_k < V ? top_k : V;
    int *idx = s->idx;
    double *prob = s->prob;
    select_top_k(idx, logits, V, k);
    double mx = logits[idx[0]], z = 0;
    for (int a = 0; a < k; a++) z += prob[a] = exp((logits[idx[a]] - mx) / temperature);
    double u = rng_uniform(key, draw) * z;
    for (int a = 0; a < k; a++) {
        u -= prob[a];
        if (u <= 0) return idx[a];
    }
    return idx[k - 1];
}
