/* tokenizer.c — the byte tokenizer. */
#include "tokenizer.h"

static size_t enc(const lm_tokenizer *t, const char *text, size_t n, uint32_t *out, size_t cap) {
    (void)t;
    size_t k = n < cap ? n : cap;
    for (size_t i = 0; i < k; i++) out[i] = (unsigned char)text[i];
    return k;
}

static size_t maxt(const lm_tokenizer *t, size_t n) {
    (void)t;
    return n;
}

static size_t dec(const lm_tokenizer *t, const uint32_t *ids, size_t n, char *out, size_t cap) {
    (void)t;
    size_t k = 0;
    if (!cap) return 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        if (ids[i] < 256) out[k++] = (char)ids[i];
    out[k] = 0;
    return k;
}

static const lm_tokenizer bytes_tok = {"bytes", 258, 256, 257, enc, maxt, dec};

const lm_tokenizer *tokenizer_bytes(void) { return &bytes_tok; }
