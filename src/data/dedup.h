/* dedup.h — exact and near-duplicate detection of documents for `lamina prep`
 * (issue 18 item 2; SPEC §9). Text is hashed as given: callers pass the
 * normalised text (clean_doc / clean_normalise), so that NFKC variants of one
 * document meet.
 *
 * Exact: a 64-bit hash of the bytes, kept in an open-addressing set.
 *
 * Near: MinHash (Broder 1997). A document is the SET of its shingles: the
 * n-grams of its Unicode code points (default; CJK text shingles by
 * character, not by byte) or of its words (cfg.words). For `perm` hash
 * functions h_k, sig[k] = min over shingles s of h_k(s); for two sets A, B,
 * P(sig_A[k] == sig_B[k]) = J(A,B) = |A∩B| / |A∪B|, so the fraction of equal
 * minima estimates J with binomial standard deviation sqrt(J(1-J)/perm)
 * (<= 0.044 at perm 128, 0.027 at J 0.9).
 *
 * LSH banding: the signature is cut into `bands` bands of rows = perm/bands
 * values; two documents are candidates when all rows of some band agree,
 * which happens with probability 1 - (1 - J^rows)^bands (an S-curve with its
 * steepest point near (1/bands)^(1/rows)). lsh_offer then CONFIRMS each
 * candidate with the estimated Jaccard >= threshold, so banding's false
 * positives are dropped; what banding misses stays missed.
 *
 * Defaults (minhash_default): perm 128, bands 16, rows 8, 5-code-point
 * shingles. The S-curve's midpoint (1/16)^(1/8) = 0.707 sits below the usual
 * 0.8 target, so banding loses few true pairs. With every minimum equal with
 * probability J independently (ideal hash functions), exactly:
 *
 *      J      shares a band      est >= 0.8      caught (both)
 *     0.5        0.0607           1.0e-12          9.5e-13
 *     0.7        0.613            0.0051           0.0050
 *     0.75       0.815            0.090            0.089
 *     0.8        0.947            0.500            0.496
 *     0.85       0.9938           0.936            0.934
 *     0.9        0.99988          0.99964          0.99953
 *
 * i.e. a pair at J = 0.8 shares a band with probability
 * 1-(1-0.8^8)^16 = 0.947, and half of the pairs exactly at the threshold
 * are removed (the estimate is unbiased); pairs at J >= 0.9 are removed, and
 * pairs at J <= 0.7 are kept, with probability > 0.995 each. For a threshold
 * t far from 0.8, pick bands and rows with (1/bands)^(1/rows) below t.
 *
 * Memory (lsh_bytes_per_doc reports the actual figure): per kept document
 * the signature (4 perm bytes), its id (8), a visit stamp (4), and per band
 * one 8-byte table entry at a load factor in (0.35, 0.7]: about
 * 4 perm + 12 + 8 bands / load = 706..889 bytes at the defaults when the
 * index was sized by expect_docs, and up to 4 perm + 12 more (the per-doc
 * arrays grow by doubling) once it has grown past that. The exact set takes
 * 8 bytes / load (11..23 bytes) per document. perf/dedup_bench measures
 * both on the fortunes corpora.
 *
 * Determinism: signatures depend only on (cfg, text); the index's answers
 * only on the sequence of offers and inserts (no threads, no addresses), and
 * not on expect_docs. Hashes are computed byte by byte (endianness-free), so
 * signatures stored in a token file (/docs/minhash) are comparable on any
 * machine. */
#ifndef LAMINA_DEDUP_H
#define LAMINA_DEDUP_H
#include <stddef.h>
#include <stdint.h>

/* Exact: 64-bit hash of the normalised text (FNV-1a from core/hash.h mixed
 * with lm_mix64, the length folded in). */
uint64_t dedup_exact_hash(const char *text, size_t len);

/* perm hash functions (1..MINHASH_MAX_PERM), cut into `bands` bands
 * (perm % bands == 0, rows = perm/bands), shingles of `ngram` units
 * (1..MINHASH_MAX_NGRAM) that are code points (words 0) or words (words 1),
 * hash functions drawn from `seed`. */
typedef struct {
    int perm, bands, ngram;
    int words;
    uint64_t seed;
} lm_minhash_cfg; /* rows = perm/bands */
#define MINHASH_MAX_PERM 4096
#define MINHASH_MAX_NGRAM 64

/* perm 128, bands 16, ngram 5, code points. */
lm_minhash_cfg minhash_default(uint64_t seed);
/* 0 when cfg is usable, else -1 and a message naming the field in err
 * (callers turn it into an exit-2 error naming their flag or key). */
int minhash_cfg_check(const lm_minhash_cfg *cfg, char *err, size_t errlen);

/* Signature: perm uint32 minima over shingle hashes. Shingles: every window
 * of ngram consecutive units; a text with fewer units than ngram (but at
 * least one) is one shingle, the whole text; an empty text (or, for words,
 * one of whitespace only) has none, and its signature is all UINT32_MAX.
 * Units: code points of the UTF-8 text (an invalid byte counts as one unit
 * on its own); words are maximal runs of non-white-space code points,
 * except that each CJK character (Han, kana, bopomofo, CJK punctuation) is a
 * word by itself, as in cleaning's word counts. Thread-safe, allocation-free
 * (a text of any size; the stack holds O(ngram) words and 4 KB of
 * coefficients). */
void minhash_sig(const lm_minhash_cfg *cfg, const char *text, size_t len, uint32_t *sig);
/* Fraction of equal minima (two empty texts: 1). */
double minhash_jaccard(const uint32_t *a, const uint32_t *b, int perm);

/* LSH index over kept signatures, banded: a doc is a near-duplicate when
 * some kept doc shares a band AND the estimated Jaccard >= threshold.
 * Serial, deterministic: docs are offered in a fixed global order. Holds
 * up to 2^31 - 1 documents; expect_docs (>= 0) sizes it, and it grows past
 * that as needed. */
typedef struct lm_lsh lm_lsh;
lm_lsh *lsh_new(const lm_minhash_cfg *cfg, int64_t expect_docs);
void lsh_free(lm_lsh *);
/* Returns the id of a kept near-duplicate (>= 0) or -1 and then inserts the
 * doc as kept under `id` (>= 0). Candidates are visited band 0 first, within
 * a band in the order they were kept; the first that passes is returned. */
int64_t lsh_offer(lm_lsh *, const uint32_t *sig, int64_t id, double threshold);
/* Kept docs from earlier token files: inserted without a check. */
void lsh_insert(lm_lsh *, const uint32_t *sig, int64_t id);
/* Documents held. */
int64_t lsh_count(const lm_lsh *);
/* Bytes the index holds (signatures, ids, stamps, band tables) divided by
 * the documents it holds (the whole allocation when it holds none). */
size_t lsh_bytes_per_doc(const lm_lsh *);

/* Exact-duplicate set: insert returns 1 if the hash was new, 0 if it was
 * there already. Any 64-bit value (0 too). Grows as needed. */
typedef struct lm_hashset lm_hashset;
lm_hashset *hashset_new(int64_t expect);
void hashset_free(lm_hashset *);
int hashset_insert(lm_hashset *, uint64_t h);
int64_t hashset_count(const lm_hashset *);

#endif
