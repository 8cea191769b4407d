/* tokfile.h — the token data file (SPEC §4, §9), HDF5.
 *
 *   /tokens            uint32 [n_tokens]      all token ids, samples back to back
 *   /samples/offsets   int64  [n_samples+1]   sample i = tokens[offsets[i]:offsets[i+1]]
 *   root attributes    format = "lamina-tokens", version = 1, vocab_size (int64)
 *   /tokenizer/model   uint8  [n]             optional: the SentencePiece model it was
 *                                             made with; attributes bos_id, eos_id (int64)
 * Optional (SPEC §9; tokfile_opt.c):
 *   /buckets/offsets   int64  [n_buckets+1]   sample ranges of the buckets: 0 first,
 *                                             non-decreasing, n_samples last
 *   /samples/category  int32  [n_samples]     in [0, n_categories); with root attribute
 *                                             `categories` (string array, or one string
 *                                             with the names joined by "\n"), names in
 *                                             index order, unique; each needs the other
 *   /samples/bytes     int64  [n_samples]     >= 0: UTF-8 bytes of the text of the sample
 *   /loss_mask         uint8  [n_tokens]      1: predicting this token counts in the loss
 *   /docs/hash         uint64 [n_docs]        the kept documents' exact-dedup hashes
 *   /docs/minhash      uint32 [n_docs, perm]  their MinHash signatures, with root
 *                                             attributes minhash_perm (= perm),
 *                                             minhash_bands (divides perm), minhash_ngram,
 *                                             minhash_words (0/1), minhash_seed (uint64)
 *
 * Reading is read-only and per rank (the sec2 driver, independent reads), so
 * the loader needs no collective open. Every open validates the file fully
 * except token ids and loss-mask values, which are checked as samples are
 * read. Only a regular file is opened (a FIFO would block the open).
 * Writing (tokfile_write.c): serial, or collective over MPI-IO; the same
 * bytes for any number of writing ranks. */
#ifndef LAMINA_TOKFILE_H
#define LAMINA_TOKFILE_H
#include "tokrec.h"
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* Write a token file (serial, one process). Extra int64 root attributes
 * (name/value pairs, e.g. "seq_len") may be given. The file is written as
 * PATH.tmp.<pid> in the same directory, fsynced and renamed onto PATH only
 * when complete: on failure the temporary is removed and an existing PATH is
 * untouched. Returns 0, or 1 with err. */
int tokfile_write(const char *path, const uint32_t *tokens, int64_t n_tokens, const int64_t *offsets,
                  int64_t n_samples, int64_t vocab_size, int n_extra, const char *const *extra_names,
                  const int64_t *extra_values, char *err, size_t errlen);

/* The same, recording the tokenizer tok (NULL: none) as /tokenizer/model
 * with bos_id and eos_id (each -1 or below vocab_size; tok->vocab_size is
 * not used: the root attribute says it). */
int tokfile_write_tok(const char *path, const uint32_t *tokens, int64_t n_tokens, const int64_t *offsets,
                      int64_t n_samples, int64_t vocab_size, int n_extra, const char *const *extra_names,
                      const int64_t *extra_values, const lm_tokrec *tok, char *err, size_t errlen);

/* What a writer adds beyond tokens and offsets; all zero = none of it. */
typedef struct {
    int n_categories;                     /* > 0: /samples/category and attribute categories */
    const char *const *categories;        /* [n_categories] unique names, 1 .. 1024 bytes, no newline */
    int64_t n_buckets;                    /* > 0: /buckets/offsets */
    const int64_t *bucket_offsets;        /* [n_buckets+1], identical on all ranks */
    const int32_t *sample_category;       /* this rank's sample slice (needed when n_categories > 0) */
    const int64_t *sample_bytes;          /* this rank's sample slice; NULL on every rank = none */
    const uint8_t *loss_mask;             /* this rank's token slice; NULL on every rank = none */
    int64_t n_docs_local;                 /* this rank's kept documents: total > 0 writes /docs/hash */
    const uint64_t *doc_hash;             /* [n_docs_local] */
    const uint32_t *doc_minhash;          /* [n_docs_local][minhash_perm] when minhash_perm > 0 */
    int minhash_perm, minhash_bands, minhash_ngram, minhash_words; /* perm 0: no /docs/minhash */
    uint64_t minhash_seed;
} tokfile_extra;

/* Collective over comm: each rank gives a contiguous slice, rank order =
 * file order: tokens [ntok_local], and for its nsamp_local samples the
 * offsets of their starts RELATIVE TO ITS OWN token slice (non-decreasing,
 * in [0, ntok_local]; the writer makes them global and appends the end; the
 * first sample of all must start at token 0; tokens of a rank without
 * samples continue the previous rank's last sample). vocab_size, the extra
 * attributes, tok (NULL: none) and x's names, bucket offsets and minhash
 * settings must be identical on all ranks; x NULL: none of the extras.
 * Written as PATH.tmp.<pid of rank 0>, fsynced and renamed by rank 0, as
 * tokfile_write. Returns 0, or 1 with err, the same on all ranks. A file
 * written by one rank (comm MPI_COMM_SELF) or by tokfile_write_tok holds the
 * same bytes as one written by several (without a tokenizer: its record
 * carries HDF5 timestamps). */
int tokfile_write_par(MPI_Comm comm, const char *path, const uint32_t *tokens, int64_t ntok_local,
                      const int64_t *starts_local, int64_t nsamp_local, int64_t vocab_size, int n_extra,
                      const char *const *extra_names, const int64_t *extra_values, const lm_tokrec *tok,
                      const tokfile_extra *x, char *err, size_t errlen);

typedef struct tokfile tokfile;

/* Open and validate: format, version, vocab_size > 0, datasets present with the
 * right rank and type, offsets[0] == 0, non-decreasing, offsets[n] == n_tokens;
 * a /tokenizer group as tokrec_read checks it, bos_id and eos_id below vocab_size.
 * Returns NULL with a message naming the file and dataset/attribute (exit 2 class). */
tokfile *tokfile_open(const char *path, char *err, size_t errlen);
void tokfile_close(tokfile *f);

/* One stat of the path: it must still name the very file that was opened
 * (device and inode), with the size and modification time seen at open.
 * Returns 0, or 1 (runtime failure class) with err naming the file. Call it
 * before (and after) reading: HDF5 reports success for a read past the end
 * of a file that shrank, returning zeros. */
int tokfile_check(tokfile *f, char *err, size_t errlen);

int64_t tokfile_n_samples(const tokfile *f);
int64_t tokfile_n_tokens(const tokfile *f);
int64_t tokfile_vocab_size(const tokfile *f);
int64_t tokfile_sample_len(const tokfile *f, int64_t i);

/* The recorded tokenizer: rec->model NULL (len 0) when the file has none,
 * else its bytes (the caller frees them with tokrec_free), bos_id, eos_id,
 * and vocab_size = the file's. Returns 0, or 2 / 1 with err naming the file
 * and dataset. */
int tokfile_tokenizer(tokfile *f, lm_tokrec *rec, char *err, size_t errlen);
const char *tokfile_path(const tokfile *f);

/* Read up to maxlen tokens of sample i into buf; returns the number read
 * (min(len, maxlen)), or -1 with err for bad data (exit 2 class: a sample
 * index out of range, a token id >= vocab_size of the file; the message names
 * file, sample and value), or -2 with err for a runtime failure (exit 1
 * class: the read failed, or would cross the end of the file as of the last
 * tokfile_check). */
int64_t tokfile_read_sample(tokfile *f, int64_t i, uint32_t *buf, int64_t maxlen, char *err, size_t errlen);

/* ---- the optional datasets (validated at open) ---- */
int tokfile_n_categories(const tokfile *f);                   /* 0 when none */
const char *tokfile_category(const tokfile *f, int k);        /* name of category k; NULL out of range */
int32_t tokfile_sample_category(const tokfile *f, int64_t i); /* 0 when none */
int64_t tokfile_sample_bytes(const tokfile *f, int64_t i);    /* -1 when the file has none */
int64_t tokfile_n_buckets(const tokfile *f);                  /* 1 when the file has none */
/* First sample of bucket b; b in [0, n_buckets], n_buckets -> n_samples. */
int64_t tokfile_bucket_start(const tokfile *f, int64_t b);
int tokfile_has_loss_mask(const tokfile *f);

/* Like tokfile_read_sample, and the sample's first n mask values into mask
 * (all 1 when the file has none; mask NULL: not read). A value other than
 * 0/1 is -1 (exit 2 class) naming file, /loss_mask, sample and value. */
int64_t tokfile_read_sample_mask(tokfile *f, int64_t i, uint32_t *buf, uint8_t *mask, int64_t maxlen, char *err,
                                 size_t errlen);
/* The mask alone (the loader counts a global batch's targets with it):
 * returns as tokfile_read_sample, mask values checked the same way. */
int64_t tokfile_read_mask(tokfile *f, int64_t i, uint8_t *mask, int64_t maxlen, char *err, size_t errlen);

int64_t tokfile_n_docs(const tokfile *f);                     /* 0 when none */
/* 1 and the settings when the file has /docs/minhash, else 0. */
int tokfile_minhash_cfg(const tokfile *f, int *perm, int *bands, int *ngram, int *words, uint64_t *seed);
/* Documents [lo, lo+n): hash [n] and/or (when not NULL) minhash [n][perm].
 * 0; 2 with err (a range outside [0, n_docs), minhash asked of a file
 * without it); 1 with err (the read failed). */
int tokfile_read_docs(tokfile *f, int64_t lo, int64_t n, uint64_t *hash, uint32_t *minhash, char *err, size_t errlen);

#endif
