/* sample.h — the next token from a row of logits: greedy (temperature 0),
 * or a draw from softmax(logits / temperature) restricted to the top-k
 * logits and then to the nucleus (top-p), with the counter-based RNG
 * (rng.h) so that a seed and a draw index give the same token on every
 * rank and every run. */
#ifndef LAMINA_SAMPLE_H
#define LAMINA_SAMPLE_H
#include <stdint.h>

/* A logit and its token id (the sort key of the candidates). */
typedef struct {
    float l;
    int id;
} lm_logit_id;

/* Scratch for a vocabulary of V tokens (reused across draws). */
typedef struct {
    int V;
    int *idx;          /* candidate token ids, largest logit first */
    double *prob;      /* their probabilities (sample_filter: summing to 1) */
    lm_logit_id *ord;  /* sort scratch */
} lm_sampler;

void sampler_init(lm_sampler *s, int V);
void sampler_free(lm_sampler *s);

/* The distribution a draw comes from, for temperature > 0: the candidates
 * ordered by decreasing logit (equal logits: lower id first), cut to the
 * first k (top_k <= 0 or >= V: all V), their probabilities
 * p_a = exp((l_a - l_max) / temperature) / sum over the k; then cut to the
 * nucleus, the shortest prefix whose probabilities sum to at least top_p
 * (top_p in (0, 1]; at least one token), and renormalised. Fills
 * s->idx[0..n) and s->prob[0..n) and returns n. */
int sample_filter(lm_sampler *s, const float *logits, double temperature, int top_k, double top_p);

/* The token for logits[V]: temperature 0 is the argmax (the lowest id among
 * equal maxima; top_k and top_p do not matter); else the draw number `draw`
 * of the stream `key` (rng_uniform) from sample_filter's distribution
 * (inverse CDF). top_k = 1 is the argmax too. Depends on its arguments only. */
int sample_token(lm_sampler *s, const float *logits, double temperature, int top_k, double top_p, uint64_t key,
                 uint64_t draw);

#endif
