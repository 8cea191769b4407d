/* rng.h — counter-based random numbers: every value is a pure function of
 * (seed, stream, index), so any rank can compute any element of a tensor or of
 * a permutation without communicating, and the result never depends on the
 * parallel layout. */
#ifndef LAMINA_RNG_H
#define LAMINA_RNG_H
#include <stdint.h>

/* splitmix64 finaliser: a bijective 64-bit mixer with good avalanche. */
static inline uint64_t rng_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a of a string, to name a stream (e.g. a parameter's name). */
uint64_t rng_hash_str(const char *s);

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
