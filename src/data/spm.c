/* spm.c — SentencePiece tokenizers (spm.h): our proto reader checks the
 * bytes, then SentencePiece (spm_lib.cc) loads them and does the encoding
 * and decoding; pieces come from our reader. */
#include "spm.h"
#include "common.h"
#include "spm_lib.h"
#include "spm_proto.h"
#include <string.h>

struct lm_spm {
    lm_tokenizer tok; /* first: the tokenizer view's callbacks find s from it */
    spm_lib *lib;
    void *bytes;
    size_t len;
    spm_model_info info;
};

lm_spm *spm_load(const char *path, char *err, size_t errlen) {
    size_t n;
    char *buf = lm_read_file(path, &n, err, errlen);
    if (!buf) return NULL; /* err: "PATH: cannot read (REASON)" */
    lm_spm *s = spm_load_bytes(buf, n, path, err, errlen);
    lm_free(buf);
    return s;
}

/* Ids an encoding of n bytes can produce at most: each input byte is at
 * most one character (a bad byte becomes U+FFFD), a normalization rule
 * writes at most max_norm_chars characters per character, the dummy
 * prefix adds one, and a character gives at most 4 ids (byte fallback of
 * its UTF-8 bytes). */
static size_t spm_max_tokens(const lm_tokenizer *t, size_t n) {
    const lm_spm *s = (const lm_spm *)t;
    return 4 * (n * (size_t)s->info.max_norm_chars + 1);
}

static size_t spm_tok_encode(const lm_tokenizer *t, const char *text, size_t n, uint32_t *out, size_t cap) {
    const lm_spm *s = (const lm_spm *)t;
    int32_t *ids = NULL;
    size_t k = 0;
    char err[LM_ERRLEN];
    if (spm_encode(s, text, n, &ids, &k, err, sizeof err)) lm_abort(LM_ERR_RUNTIME, "%s", err);
    if (k > cap) k = cap;
    for (size_t i = 0; i < k; i++) out[i] = (uint32_t)ids[i];
    lm_free(ids);
    return k;
}

/* Decoding skips ids outside the vocabulary; SentencePiece itself drops
 * control pieces (BOS, EOS) and writes " ⁇ " for UNK. */
static size_t spm_tok_decode(const lm_tokenizer *t, const uint32_t *ids, size_t n, char *out, size_t cap) {
    const lm_spm *s = (const lm_spm *)t;
    if (!cap) return 0;
    int32_t *v = lm_alloc(sizeof(int32_t) * (n ? n : 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < (uint32_t)s->info.n_pieces) v[k++] = (int32_t)ids[i];
    char *txt = NULL, err[LM_ERRLEN];
    size_t len = 0;
    if (spm_decode(s, v, k, &txt, &len, err, sizeof err)) lm_abort(LM_ERR_RUNTIME, "%s", err);
    if (len > cap - 1) len = cap - 1;
    memcpy(out, txt, len);
    out[len] = 0;
    lm_free(txt);
    lm_free(v);
    return len;
}

lm_spm *spm_load_bytes(const void *buf, size_t len, const char *what, char *err, size_t errlen) {
    lm_spm *s = lm_calloc(1, sizeof *s);
    if (spm_proto_read(buf, len, what, &s->info, err, errlen)) {
        lm_free(s);
        return NULL;
    }
    char why[LM_ERRLEN - 64];
    s->lib = spm_lib_load(buf, len, why, sizeof why);
    if (!s->lib) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s", what, why);
        spm_proto_free(&s->info);
        lm_free(s);
        return NULL;
    }
    if (spm_lib_piece_size(s->lib) != s->info.n_pieces) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: SentencePiece sees %d pieces, the model lists %d", what,
               spm_lib_piece_size(s->lib), s->info.n_pieces);
        spm_free(s);
        return NULL;
    }
    s->bytes = lm_alloc(len ? len : 1);
    memcpy(s->bytes, buf, len);
    s->len = len;
    s->tok.name = "sentencepiece";
    s->tok.vocab_size = s->info.n_pieces;
    s->tok.bos = spm_lib_bos_id(s->lib);
    s->tok.eos = spm_lib_eos_id(s->lib);
    s->tok.encode = spm_tok_encode;
    s->tok.max_tokens = spm_max_tokens;
    s->tok.decode = spm_tok_decode;
    return s;
}

void spm_free(lm_spm *s) {
    if (!s) return;
    spm_lib_free(s->lib);
    spm_proto_free(&s->info);
    lm_free(s->bytes);
    lm_free(s);
}

const void *spm_model_bytes(const lm_spm *s, size_t *len) {
    *len = s->len;
    return s->bytes;
}

int spm_vocab_size(const lm_spm *s) { return s->info.n_pieces; }
int spm_bos_id(const lm_spm *s) { return spm_lib_bos_id(s->lib); }
int spm_eos_id(const lm_spm *s) { return spm_lib_eos_id(s->lib); }
int spm_unk_id(const lm_spm *s) { return spm_lib_unk_id(s->lib); }
int spm_pad_id(const lm_spm *s) { return spm_lib_pad_id(s->lib); }

const char *spm_id_to_piece(const lm_spm *s, int id) {
    return id >= 0 && id < s->info.n_pieces ? s->info.pieces[id].piece : NULL;
}

/* SentencePiece answers unk_id for an absent piece: check the id's piece. */
int spm_piece_to_id(const lm_spm *s, const char *piece) {
    size_t n = strlen(piece);
    int id = spm_lib_piece_to_id(s->lib, piece, n);
    if (id < 0 || id >= s->info.n_pieces) return -1;
    const spm_piece *p = &s->info.pieces[id];
    return p->len == n && !memcmp(p->piece, piece, n) ? id : -1;
}

int spm_encode(const lm_spm *s, const char *text, size_t n, int32_t **ids, size_t *n_ids, char *err, size_t errlen) {
    return spm_lib_encode(s->lib, text, n, ids, n_ids, err, errlen) ? LM_ERR_RUNTIME : 0;
}

int spm_decode(const lm_spm *s, const int32_t *ids, size_t n, char **text, size_t *len, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->info.n_pieces)
            return lm_err(err, errlen, LM_ERR_INPUT, "id %d (at position %zu) is outside the vocabulary [0, %d)", ids[i], i,
                          s->info.n_pieces);
    return spm_lib_decode(s->lib, ids, n, text, len, err, errlen) ? LM_ERR_RUNTIME : 0;
}

const lm_tokenizer *spm_tokenizer(const lm_spm *s) { return &s->tok; }
