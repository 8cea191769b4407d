/* kvcache.h — incremental inference with a key/value cache (generation).
 *
 * The model's forward pass over a window of T tokens recomputes every
 * earlier position for each new token. With a cache, the keys and values of
 * positions 0 .. len-1 (after RoPE) are kept per layer, and a step runs only
 * the n new tokens at positions len .. len+n-1 through the layers: their
 * queries attend over the cached rows plus their own (device op
 * attention_decode), and their keys and values are appended. A prompt goes
 * in as one step of n tokens (prefill); then one token per step.
 *
 * The cache holds up to the model's T positions (its RoPE tables); one
 * sequence; tensor parallelism as in the full forward (this rank's heads,
 * the row-parallel sums all-reduced), without sequence parallelism and on
 * one pipeline stage holding the whole model. */
#ifndef LAMINA_KVCACHE_H
#define LAMINA_KVCACHE_H
#include "model.h"

typedef struct lm_kv_cache lm_kv_cache;

/* 1 when m can run with a cache; else 0 with the reason in why (no
 * attention_decode on the device, sequence parallelism, a pipeline stage). */
int kv_supported(const lm_model *m, char *why, size_t whylen);

/* An empty cache for m (capacity m->T positions) and the work buffers of a
 * step of up to m->T tokens, on m's device. kv_supported must hold. */
lm_kv_cache *kv_create(lm_model *m);
void kv_destroy(lm_kv_cache *c);

/* Positions held, and the capacity. */
int kv_len(const lm_kv_cache *c);
int kv_capacity(const lm_kv_cache *c);

/* Forget every position (a new sequence or a shifted window). */
void kv_reset(lm_kv_cache *c);

/* Runs tokens ids[0..n) at positions len .. len+n-1 (len + n <= capacity)
 * and appends their keys and values; then kv_logits gives the logits of the
 * last of them. Collective over the tensor-parallel group. */
void kv_forward(lm_kv_cache *c, const int32_t *ids, int n);

/* out[vocab_size]: the logits of the last token kv_forward ran (under
 * tensor parallelism each rank's vocabulary slice, all-gathered: the same
 * on every rank of the group). */
void kv_logits(lm_kv_cache *c, float *out);

#endif
