/* rng.h — counter-based random numbers: every value is a pure function of
 * (seed, stream, index), so any rank can compute any element of a tensor or of
 * a permutation without communicating, and the result never depends on the
 * parallel layout. */
#ifndef LAMINA_RNG_H
#define LAMINA_RNG_H
#include <stdint.h>
#include "hash.h"

/* splitmix64: step the counter by phi, then the finaliser (src/core/hash.h). */
static inline uint64_t rng_mix64(uint64_t z) { return lm_mix64(z + LM_PHI64); }

/* FNV-1a of a string, to name a stream (e.g. a parameter's name). */
static inline uint64_t rng_hash_str(const char *s) { return lm_fnv1a_str(s); }

/* Stream key from a seed and a name. */
static inline uint64_t rng_stream(uint64_t seed, const char *name) {
    return rng_mix64(seed ^ rng_mix64(rng_hash_str(name)));
}

/* Uniform in [0, 1) with 53 bits, element `i` of stream `key`. */
static inline double rng_uniform(uint64_t key, uint64_t i) {
    return (double)(rng_mix64(key ^ rng_mix64(i)) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal, element `i` of stream `key` (Box-Muller on two uniforms
 * drawn from sub-indices 2i and 2i+1). */
double rng_normal(uint64_t key, uint64_t i);

/* Uniform integer in [0, n), element i (n > 0); rejection-free via 128-bit
 * multiply (bias below 2^-64 * n, negligible). */
static inline uint64_t rng_below(uint64_t key, uint64_t i, uint64_t n) {
    unsigned __int128 p = (unsigned __int128)rng_mix64(key ^ rng_mix64(i)) * n;
    return (uint64_t)(p >> 64);
}

#endif
