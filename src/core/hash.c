/* hash.c — see hash.h. */
#include "hash.h"

#define FNV1A_PRIME 0x100000001b3ull

/* Byte-at-a-time FNV-1a: xor the byte in, then multiply by the prime. */
uint64_t lm_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV1A_PRIME;
    return h;
}

/* Same as lm_fnv1a over the string's bytes, without a strlen pass. */
uint64_t lm_fnv1a_str(const char *s) {
    uint64_t h = LM_FNV1A_INIT;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * FNV1A_PRIME;
    return h;
}
