/* dedup.c — exact hashes, MinHash signatures, the banded LSH index and the
 * exact-hash set (dedup.h has the contract, the S-curve and the memory). */
#include "dedup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "hash.h"

uint64_t dedup_exact_hash(const char *text, size_t len) {
    return lm_mix64(lm_fnv1a(LM_FNV1A_INIT, text, len) ^ ((uint64_t)len * LM_PHI64));
}

lm_minhash_cfg minhash_default(uint64_t seed) {
    lm_minhash_cfg c = {.perm = 128, .bands = 16, .ngram = 5, .words = 0, .seed = seed};
    return c;
}

int minhash_cfg_check(const lm_minhash_cfg *c, char *err, size_t errlen) {
    if (c->perm < 1 || c->perm > MINHASH_MAX_PERM)
        return lm_err(err, errlen, -1, "minhash perm %d: must be in [1, %d]", c->perm, MINHASH_MAX_PERM);
    if (c->bands < 1 || c->bands > c->perm || c->perm % c->bands != 0)
        return lm_err(err, errlen, -1, "minhash bands %d: must divide perm %d", c->bands, c->perm);
    if (c->ngram < 1 || c->ngram > MINHASH_MAX_NGRAM)
        return lm_err(err, errlen, -1, "minhash ngram %d: must be in [1, %d]", c->ngram, MINHASH_MAX_NGRAM);
    if (c->words != 0 && c->words != 1)
        return lm_err(err, errlen, -1, "minhash words %d: must be 0 or 1", c->words);
    return 0;
}

static void cfg_or_abort(const lm_minhash_cfg *c) {
    char err[256];
    if (minhash_cfg_check(c, err, sizeof err)) lm_abort(LM_ERR_RUNTIME, "dedup: %s", err);
}

/* ------------------------------------------------------------- hashing */

/* Little-endian load of n <= 8 bytes (the rest zero): the same value on any
 * machine, so signatures are portable. Compilers turn the full case into
 * one load on little-endian targets. */
static inline uint64_t load_le(const unsigned char *p, size_t n) {
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* A 64-bit hash of a byte span: the length and the seed start the state,
 * then each 8-byte little-endian word w is absorbed as h = mix64(h ^ w)
 * (mix64 is a bijection, so for one length distinct one-word spans never
 * collide; longer spans collide like random 64-bit values). One mix for an
 * ASCII 5-gram, two for a CJK one (15 bytes). */
static inline uint64_t span_hash(const char *s, size_t n, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)s;
    uint64_t h = seed ^ ((uint64_t)n * LM_PHI64);
    for (; n >= 8; p += 8, n -= 8) h = lm_mix64(h ^ load_le(p, 8));
    if (n) h = lm_mix64(h ^ load_le(p, n));
    else h = lm_mix64(h);
    return h;
}

/* Length in bytes of the UTF-8 code point at p (n bytes left), with its
 * value in *cp; a byte that does not start a well-formed sequence (Unicode
 * table 3-7: no overlongs, no surrogates, nothing above U+10FFFF) is one
 * unit by itself, valued 0xDC00 + byte (never white space or CJK). */
static inline size_t utf8_unit(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t k = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    }
    if (k == 0 || k > n || p[1] < lo || p[1] > hi) goto bad;
    for (size_t i = 2; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) goto bad;
    uint32_t v = c & (0xFF >> (k + 1));
    for (size_t i = 1; i < k; i++) v = (v << 6) | (p[i] & 0x3F);
    *cp = v;
    return k;
bad:
    *cp = 0xDC00 + c;
    return 1;
}

/* Unicode White_Space. */
static inline int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* A CJK character that is a word by itself: CJK radicals and description
 * characters, CJK symbols and punctuation, kana, bopomofo, kanbun and
 * strokes, the unified ideographs with extension A, compatibility
 * ideographs and forms, and planes 2 and 3 (extensions B onwards). */
static inline int is_cjk(uint32_t c) {
    return (c >= 0x2E80 && c <= 0x2FFF) || (c >= 0x3001 && c <= 0x312F) || (c >= 0x3190 && c <= 0x31FF) ||
           (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0x20000 && c <= 0x3FFFF);
}

/* The perm hash functions. One 64-bit hash x per shingle (span_hash), then
 * h_k(x) = bits 32..63 of (a_k x + b_k) mod 2^64, a_k odd: Dietzfelbinger's
 * multiply-add-shift, a universal family, with a_k and b_k the outputs
 * 2k+1 and 2k+2 of the splitmix64 stream of the seed. Why this family: it
 * costs one 64-bit multiply, an add, a shift and a min per function, and the
 * loop over k vectorises (8 lanes with AVX-512DQ's vpmullq), where
 * h_k = mix64(x ^ seed_k) costs two multiplies and six shifts and xors
 * (perf/dedup_bench on one AMD EPYC core: 84-86 MB/s with this family,
 * 28-36 MB/s with mix64), and (a x + b) mod 2^61-1 a 128-bit product. Min-wise behaviour comes from x
 * already being a well-mixed 64-bit hash; the unit test checks the estimates
 * against exact Jaccard values. The coefficients are made on the stack for
 * each call, COEF_BLOCK functions at a time (one pass over the text per
 * block; one pass for perm <= 256). */
#define COEF_BLOCK 256

static void coef_block(uint64_t seed, int k0, int kb, uint64_t *a, uint64_t *b) {
#pragma omp simd
    for (int i = 0; i < kb; i++) {
        uint64_t k = (uint64_t)(k0 + i);
        a[i] = lm_mix64(seed + (2 * k + 1) * LM_PHI64) | 1;
        b[i] = lm_mix64(seed + (2 * k + 2) * LM_PHI64);
    }
}

/* sig[k] = min(sig[k], h_k(x)) for every k of the block. */
static inline void sig_update(uint32_t *restrict sig, const uint64_t *restrict a, const uint64_t *restrict b,
                              int kb, uint64_t x) {
#pragma omp simd
    for (int k = 0; k < kb; k++) {
        uint32_t v = (uint32_t)((a[k] * x + b[k]) >> 32);
        sig[k] = v < sig[k] ? v : sig[k];
    }
}

/* Seeds of the shingle hash and of the word-shingle chain, apart from the
 * coefficients' stream. */
#define SEED_SHINGLE 0x5348494E474C4531ull
#define SEED_WORDS 0x574F52444E47524Dull

/* Char n-grams: the shingle of units i-n+1..i is the byte span from the
 * start of unit i-n+1 to the end of unit i. Hashing the bytes is hashing
 * the code points: a span that starts at a unit boundary decodes into the
 * same units. ring holds the starts of the last n units. */
static void pass_chars(const lm_minhash_cfg *cfg, const char *text, size_t len, const uint64_t *a,
                       const uint64_t *b, int kb, uint32_t *sig) {
    const unsigned char *p = (const unsigned char *)text;
    const int n = cfg->ngram;
    const uint64_t hseed = lm_mix64(cfg->seed ^ SEED_SHINGLE);
    size_t ring[MINHASH_MAX_NGRAM];
    int64_t count = 0;
    for (size_t off = 0; off < len;) {
        uint32_t cp;
        size_t k = utf8_unit(p + off, len - off, &cp);
        ring[count % n] = off;
        off += k;
        count++;
        if (count >= n) {
            size_t start = ring[count % n];
            sig_update(sig, a, b, kb, span_hash(text + start, off - start, hseed));
        }
    }
    if (count > 0 && count < n) sig_update(sig, a, b, kb, span_hash(text, len, hseed));
}

/* Word n-grams: a word's hash is its span's; a shingle's is the chain
 * h = mix64(h ^ w_j) over its words, oldest first, from a start that folds
 * in how many words it has (only a short text's one shingle has fewer than
 * n). */
typedef struct {
    const uint64_t *a, *b;
    int kb, n;
    uint32_t *sig;
    uint64_t wseed;
    int64_t count;
    uint64_t ring[MINHASH_MAX_NGRAM];
} word_state;

static inline void word_emit(word_state *w, uint64_t wh) {
    w->ring[w->count % w->n] = wh;
    w->count++;
    if (w->count < w->n) return;
    uint64_t h = w->wseed ^ ((uint64_t)w->n * LM_PHI64);
    for (int j = 0; j < w->n; j++) h = lm_mix64(h ^ w->ring[(w->count + j) % w->n]);
    sig_update(w->sig, w->a, w->b, w->kb, h);
}

static void pass_words(const lm_minhash_cfg *cfg, const char *text, size_t len, const uint64_t *a,
                       const uint64_t *b, int kb, uint32_t *sig) {
    const unsigned char *p = (const unsigned char *)text;
    const uint64_t hseed = lm_mix64(cfg->seed ^ SEED_SHINGLE);
    word_state w = {.a = a, .b = b, .kb = kb, .n = cfg->ngram, .sig = sig, .wseed = lm_mix64(cfg->seed ^ SEED_WORDS)};
    size_t wstart = 0;
    int inword = 0;
    for (size_t off = 0; off < len;) {
        uint32_t cp;
        size_t k = utf8_unit(p + off, len - off, &cp);
        int sp = is_space(cp), cjk = !sp && is_cjk(cp);
        if ((sp || cjk) && inword) {
            word_emit(&w, span_hash(text + wstart, off - wstart, hseed));
            inword = 0;
        }
        if (cjk) word_emit(&w, span_hash(text + off, k, hseed));
        else if (!sp && !inword) {
            inword = 1;
            wstart = off;
        }
        off += k;
    }
    if (inword) word_emit(&w, span_hash(text + wstart, len - wstart, hseed));
    if (w.count > 0 && w.count < w.n) {
        uint64_t h = w.wseed ^ ((uint64_t)w.count * LM_PHI64);
        for (int j = 0; j < w.count; j++) h = lm_mix64(h ^ w.ring[j]);
        sig_update(sig, a, b, kb, h);
    }
}

void minhash_sig(const lm_minhash_cfg *cfg, const char *text, size_t len, uint32_t *sig) {
    cfg_or_abort(cfg);
    uint64_t a[COEF_BLOCK], b[COEF_BLOCK];
    for (int k0 = 0; k0 < cfg->perm; k0 += COEF_BLOCK) {
        int kb = cfg->perm - k0 < COEF_BLOCK ? cfg->perm - k0 : COEF_BLOCK;
        coef_block(cfg->seed, k0, kb, a, b);
        for (int k = 0; k < kb; k++) sig[k0 + k] = UINT32_MAX;
        if (cfg->words) pass_words(cfg, text, len, a, b, kb, sig + k0);
        else pass_chars(cfg, text, len, a, b, kb, sig + k0);
    }
}

double minhash_jaccard(const uint32_t *a, const uint32_t *b, int perm) {
    int eq = 0;
    for (int k = 0; k < perm; k++) eq += a[k] == b[k];
    return perm > 0 ? (double)eq / perm : 0.0;
}

/* ------------------------------------------------------------ LSH index */

/* Documents live in slots 0..n-1 in the order they were kept: signature,
 * id and a visit stamp (so one offer confirms a candidate that shares
 * several bands once). Each band has an open-addressing table (linear
 * probing) of 8-byte entries: the low 32 bits of the band key above the
 * slot + 1 (0 = empty); the key's high bits give the home position. A
 * probe visits the entries of one key in the order they were kept; a
 * fingerprint match is confirmed by comparing the band's rows (so what is a
 * candidate never depends on the table size), then by the Jaccard estimate. */
struct lm_lsh {
    lm_minhash_cfg cfg;
    int rows;
    int64_t n, cap;
    uint32_t *sigs;
    int64_t *ids;
    uint32_t *stamp;
    uint32_t cur;
    uint64_t tcap; /* entries per band table, a power of two */
    int tbits;
    uint64_t *tab; /* bands * tcap */
};

#define LSH_LOAD 0.7
#define LSH_MAX_DOCS 0x7FFFFFFFll

/* Band key of band j: the chain of its rows, two per 64-bit word. */
static inline uint64_t band_key(const lm_lsh *L, const uint32_t *sig, int j) {
    const uint32_t *r = sig + (size_t)j * L->rows;
    uint64_t h = lm_mix64(L->cfg.seed ^ ((uint64_t)(j + 1) * LM_PHI64));
    int i = 0;
    for (; i + 1 < L->rows; i += 2) h = lm_mix64(h ^ ((uint64_t)r[i] | (uint64_t)r[i + 1] << 32));
    if (i < L->rows) h = lm_mix64(h ^ r[i]);
    return h;
}

static void table_put(lm_lsh *L, int j, uint64_t key, int64_t slot) {
    uint64_t mask = L->tcap - 1, *t = L->tab + (uint64_t)j * L->tcap;
    uint64_t i = key >> (64 - L->tbits);
    while (t[i]) i = (i + 1) & mask;
    t[i] = (key << 32) | (uint64_t)(slot + 1);
}

static int log2_ceil(uint64_t x) {
    int b = 0;
    while (((uint64_t)1 << b) < x) b++;
    return b;
}

/* Tables with room for `docs` documents at load <= LSH_LOAD, every held
 * document entered again in slot order (so each key's entries keep the
 * order in which they were kept). */
static void tables_build(lm_lsh *L, int64_t docs) {
    int bits = log2_ceil((uint64_t)ceil((double)(docs < 1 ? 1 : docs) / LSH_LOAD));
    if (bits < 4) bits = 4;
    lm_free(L->tab);
    L->tbits = bits;
    L->tcap = (uint64_t)1 << bits;
    L->tab = lm_calloc(L->tcap * (uint64_t)L->cfg.bands, sizeof(uint64_t));
    for (int64_t s = 0; s < L->n; s++)
        for (int j = 0; j < L->cfg.bands; j++)
            table_put(L, j, band_key(L, L->sigs + (size_t)s * L->cfg.perm, j), s);
}

lm_lsh *lsh_new(const lm_minhash_cfg *cfg, int64_t expect_docs) {
    cfg_or_abort(cfg);
    lm_lsh *L = lm_calloc(1, sizeof *L);
    L->cfg = *cfg;
    L->rows = cfg->perm / cfg->bands;
    if (expect_docs > LSH_MAX_DOCS) expect_docs = LSH_MAX_DOCS;
    L->cap = expect_docs < 16 ? 16 : expect_docs;
    L->sigs = lm_calloc((size_t)L->cap * cfg->perm, sizeof(uint32_t));
    L->ids = lm_calloc((size_t)L->cap, sizeof(int64_t));
    L->stamp = lm_calloc((size_t)L->cap, sizeof(uint32_t));
    tables_build(L, L->cap);
    return L;
}

void lsh_free(lm_lsh *L) {
    if (!L) return;
    lm_free(L->sigs);
    lm_free(L->ids);
    lm_free(L->stamp);
    lm_free(L->tab);
    lm_free(L);
}

static void lsh_add(lm_lsh *L, const uint32_t *sig, int64_t id) {
    if (L->n >= LSH_MAX_DOCS) lm_abort(LM_ERR_RUNTIME, "dedup: the LSH index holds at most %lld documents", LSH_MAX_DOCS);
    if (L->n == L->cap) {
        int64_t nc = L->cap > LSH_MAX_DOCS / 2 ? LSH_MAX_DOCS : 2 * L->cap;
        L->sigs = lm_realloc(L->sigs, (size_t)nc * L->cfg.perm * sizeof(uint32_t));
        L->ids = lm_realloc(L->ids, (size_t)nc * sizeof(int64_t));
        L->stamp = lm_realloc(L->stamp, (size_t)nc * sizeof(uint32_t));
        L->cap = nc;
    }
    if ((double)(L->n + 1) > LSH_LOAD * (double)L->tcap) tables_build(L, L->n + 1); /* doubles */
    int64_t s = L->n++;
    memcpy(L->sigs + (size_t)s * L->cfg.perm, sig, (size_t)L->cfg.perm * sizeof(uint32_t));
    L->ids[s] = id;
    L->stamp[s] = 0;
    for (int j = 0; j < L->cfg.bands; j++) table_put(L, j, band_key(L, sig, j), s);
}

void lsh_insert(lm_lsh *L, const uint32_t *sig, int64_t id) { lsh_add(L, sig, id); }

int64_t lsh_offer(lm_lsh *L, const uint32_t *sig, int64_t id, double threshold) {
    const int perm = L->cfg.perm, rows = L->rows;
    if (++L->cur == 0) { /* 2^32 offers: start the stamps again */
        memset(L->stamp, 0, (size_t)L->n * sizeof(uint32_t));
        L->cur = 1;
    }
    const uint64_t mask = L->tcap - 1;
    for (int j = 0; j < L->cfg.bands; j++) {
        uint64_t key = band_key(L, sig, j);
        const uint64_t *t = L->tab + (uint64_t)j * L->tcap;
        uint32_t fp = (uint32_t)key;
        for (uint64_t i = key >> (64 - L->tbits); t[i]; i = (i + 1) & mask) {
            if ((uint32_t)(t[i] >> 32) != fp) continue;
            int64_t s = (int64_t)(uint32_t)t[i] - 1;
            if (L->stamp[s] == L->cur) continue;
            const uint32_t *other = L->sigs + (size_t)s * perm;
            if (memcmp(other + (size_t)j * rows, sig + (size_t)j * rows, (size_t)rows * sizeof(uint32_t)))
                continue; /* a fingerprint collision: not this band */
            L->stamp[s] = L->cur;
            if (minhash_jaccard(sig, other, perm) >= threshold) return L->ids[s];
        }
    }
    lsh_add(L, sig, id);
    return -1;
}

int64_t lsh_count(const lm_lsh *L) { return L->n; }

size_t lsh_bytes_per_doc(const lm_lsh *L) {
    size_t bytes = sizeof *L + (size_t)L->cap * ((size_t)L->cfg.perm * sizeof(uint32_t) + sizeof(int64_t) + sizeof(uint32_t)) +
                   (size_t)L->tcap * (size_t)L->cfg.bands * sizeof(uint64_t);
    return L->n > 0 ? (bytes + (size_t)L->n - 1) / (size_t)L->n : bytes;
}

/* -------------------------------------------------------- exact-hash set */

/* Open addressing, linear probing, 0 marks an empty entry (the value 0 is
 * a flag of its own); home position = high bits of mix64(h); grows at load
 * 0.7. */
struct lm_hashset {
    uint64_t *t;
    uint64_t cap;
    int bits;
    int64_t n;
    int has_zero;
};

static void hs_put(uint64_t *t, int bits, uint64_t h) {
    uint64_t mask = ((uint64_t)1 << bits) - 1, i = lm_mix64(h) >> (64 - bits);
    while (t[i]) i = (i + 1) & mask;
    t[i] = h;
}

lm_hashset *hashset_new(int64_t expect) {
    lm_hashset *S = lm_calloc(1, sizeof *S);
    int bits = log2_ceil((uint64_t)ceil((double)(expect < 1 ? 1 : expect) / LSH_LOAD));
    S->bits = bits < 4 ? 4 : bits;
    S->cap = (uint64_t)1 << S->bits;
    S->t = lm_calloc(S->cap, sizeof(uint64_t));
    return S;
}

void hashset_free(lm_hashset *S) {
    if (!S) return;
    lm_free(S->t);
    lm_free(S);
}

int hashset_insert(lm_hashset *S, uint64_t h) {
    if (h == 0) {
        if (S->has_zero) return 0;
        S->has_zero = 1;
        S->n++;
        return 1;
    }
    uint64_t mask = S->cap - 1;
    for (uint64_t i = lm_mix64(h) >> (64 - S->bits); S->t[i]; i = (i + 1) & mask)
        if (S->t[i] == h) return 0;
    if ((double)(S->n - S->has_zero + 1) > LSH_LOAD * (double)S->cap) {
        int nb = S->bits + 1;
        uint64_t *nt = lm_calloc((uint64_t)1 << nb, sizeof(uint64_t));
        for (uint64_t i = 0; i < S->cap; i++)
            if (S->t[i]) hs_put(nt, nb, S->t[i]);
        lm_free(S->t);
        S->t = nt;
        S->bits = nb;
        S->cap = (uint64_t)1 << nb;
    }
    hs_put(S->t, S->bits, h);
    S->n++;
    return 1;
}

int64_t hashset_count(const lm_hashset *S) { return S->n; }
