/* tokenizer.h — text <-> token ids behind a small interface, so that a
 * subword tokenizer can replace the byte one without touching prep or
 * generate. The byte tokenizer: ids 0-255 are the bytes of the UTF-8 text,
 * 256 is BOS, 257 is EOS; vocab 258. */
#ifndef LAMINA_TOKENIZER_H
#define LAMINA_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct lm_tokenizer lm_tokenizer;
struct lm_tokenizer {
    const char *name;
    int vocab_size, bos, eos;
    /* Encode n bytes of text; returns the ids written (at most cap; the
     * caller sizes cap by max_tokens). */
    size_t (*encode)(const lm_tokenizer *t, const char *text, size_t n, uint32_t *out, size_t cap);
    /* Upper bound on ids for n bytes. */
    size_t (*max_tokens)(const lm_tokenizer *t, size_t n);
    /* Decode ids to text, skipping special ids; returns bytes written
     * (at most cap-1, NUL-terminated). */
    size_t (*decode)(const lm_tokenizer *t, const uint32_t *ids, size_t n, char *out, size_t cap);
};

const lm_tokenizer *tokenizer_bytes(void);

#endif
