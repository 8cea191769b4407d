/* tokfile.h — the token data file (SPEC §4), HDF5.
 *
 *   /tokens            uint32 [n_tokens]      all token ids, samples back to back
 *   /samples/offsets   int64  [n_samples+1]   sample i = tokens[offsets[i]:offsets[i+1]]
 *   root attributes    format = "lamina-tokens", version = 1, vocab_size (int64)
 *   /tokenizer/model   uint8  [n]             optional: the SentencePiece model it was
 *                                             made with; attributes bos_id, eos_id (int64)
 *
 * Reading is read-only and per rank (the sec2 driver, independent reads), so
 * the loader needs no collective open. Every open validates the file fully
 * except token values, which are checked as samples are read. Only a
 * regular file is opened (a FIFO would block the open). */
#ifndef LAMINA_TOKFILE_H
#define LAMINA_TOKFILE_H
#include "tokrec.h"
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

#endif
