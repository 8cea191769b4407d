/* sample.h — the next token from a row of logits: greedy (temperature 0),
 * or a draw from the softmax of logits/temperature restricted to the top-k
 * logits, with the counter-based RNG (rng.h) so that a seed and a draw
 * index give the same token on every rank and every run. */
#ifndef LAMINA_SAMPLE_H
#define LAMINA_SAMPLE_H
#include <stdint.h>

/* Scratch for a vocabulary of V tokens (reused across draws). */
typedef struct {
    int V;
    int *idx;     /* token ids, the top k first */
    double *prob; /* unnormalised probabilities of the top k */
} lm_sampler;

void sampler_init(lm_sampler *s, int V);
void sampler_free(lm_sampler *s);

/* The token for logits[V]: temperature 0 is the argmax (the lowest id among
 * equal maxima); else the draw number `draw` of the stream `key`
 * (rng_uniform) from softmax(logits/temperature) over the top_k largest
 * logits (top_k <= 0 or >= V: all of them). Depends on its arguments only. */
int sample_token(lm_sampler *s, const float *logits, double temperature, int top_k, uint64_t key, uint64_t draw);

#endif
