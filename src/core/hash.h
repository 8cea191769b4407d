/* hash.h — the two hashes lamina uses, written once: the splitmix64 finaliser
 * (counter-based random numbers, checkpoint checksums) and FNV-1a 64 (stream
 * names, hash tables, piece fingerprints). Checkpoint checksums are built on
 * them, so their values must never change. */
#ifndef LAMINA_HASH_H
#define LAMINA_HASH_H
#include <stddef.h>
#include <stdint.h>

/* The splitmix64 increment (2^64 / golden ratio). */
#define LM_PHI64 0x9E3779B97F4A7C15ull

/* splitmix64's output finaliser: a bijective 64-bit mixer with good
 * avalanche. Inline: it sits in the inner loops of rng and the checksums. */
static inline uint64_t lm_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a 64 offset basis: the starting value of lm_fnv1a. */
#define LM_FNV1A_INIT 0xcbf29ce484222325ull

/* FNV-1a 64 of n bytes, continuing from h (LM_FNV1A_INIT to start), so a
 * hash over several pieces is a chain of calls. */
uint64_t lm_fnv1a(uint64_t h, const void *data, size_t n);

/* FNV-1a 64 of a NUL-terminated string. */
uint64_t lm_fnv1a_str(const char *s);

#endif
