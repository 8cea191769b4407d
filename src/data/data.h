/* data.h — the data loader (SPEC §4, §9): samples from one or more token
 * files, walked bucket by bucket and shuffled within each bucket per epoch
 * from the seed, optionally mixed by weights, split across data-parallel
 * ranks and micro-steps. It holds no state beyond the files and caches:
 * what step s reads is a pure function of (seed, s, global_batch), which
 * makes resume exact and the order independent of the parallel layout.
 * The order itself: data_order.c. */
#ifndef LAMINA_DATA_H
#define LAMINA_DATA_H
#include "deck.h"
#include "tokfile.h"
#include <stdint.h>

typedef struct lm_data lm_data;

/* Open the token files of `files`, a comma-separated list whose entries are
 * `path` or `path:weight` (weight a number > 0; a trailing ":<number>" is a
 * weight, anything else after a colon is part of the path). Either every
 * entry has a weight or none does.
 *   No weights: the files concatenated into one stream; bucket b of the
 *     stream = bucket b of every file in file order (a file without buckets
 *     is one bucket); n_buckets = the most of any file.
 *   Weights: each file its own stream (own epochs and shuffle); of every
 *     1024 consecutive positions file i gets its largest-remainder share of
 *     1024 w_i / sum(w), in a seeded order per block.
 * Categories: the union of the files' names, first-seen order; a file
 * without categories is one category named after its file name without
 * the directory and a ".h5" suffix.
 * Checks that each file's vocab_size does not exceed the model's and that
 * at least one of its samples has 2 or more tokens (a target). NULL + err
 * (LM_ERR_INPUT) naming the key and the file otherwise (e.g. "data.valid:
 * f.h5: ..."), also for a bad weight or a list without any file. */
lm_data *data_open_list(const char *files, const char *key, const lm_config *c, char *err, size_t errlen);
/* The entries of such a list in order, as data_open_list reads them: fn
 * gets each path and its weight (-1: none) and returns 0 to go on. Returns
 * 0, fn's nonzero code, or LM_ERR_INPUT with err naming the key (a bad
 * weight, weights on some entries only). */
int data_list_each(const char *files, const char *key, int (*fn)(const char *path, double weight, void *ctx), void *ctx,
                   char *err, size_t errlen);
/* = data_open_list(c->train_files, "data.train", c, ...) */
lm_data *data_open(const lm_config *c, char *err, size_t errlen);
void data_close(lm_data *d);
int64_t data_n_samples(const lm_data *d); /* over all files */

/* Stream position g (all epochs) to the sample it names, as an index into
 * the concatenation of all the files in list order. */
int64_t data_sample_at(lm_data *d, int64_t g);

/* Buckets of the stream (of the first file's stream when weighted), and the
 * bucket stream position g lies in (weighted: the bucket the first file's
 * stream has reached at g). */
int data_n_buckets(const lm_data *d);
int data_bucket_at(lm_data *d, int64_t g);

int data_n_categories(const lm_data *d);
const char *data_category(const lm_data *d, int k); /* NULL out of range */

typedef struct {
    int n_micro, B, T;
    int32_t *ids, *targets;   /* [n_micro][B*T]; padding: id 0, target -1; a target whose
                                 token has loss mask 0: -1 */
    int32_t *row_category;    /* [n_micro*B]: the data category of each row's sample */
    int64_t *row_bytes;       /* [n_micro*B]: its /samples/bytes, -1 when the file has none */
    int64_t targets_global;   /* target tokens (unmasked) in the whole global batch */
    int64_t targets_local;    /* in this rank's part */
    int n_cut_global;         /* samples of the global batch cut to seq_len+1 */
    int64_t n_masked_global;  /* samples of the global batch that had targets and have none
                                 left after the loss mask */
} lm_batch;

void batch_alloc(lm_batch *b, int n_micro, int B, int T);
void batch_free(lm_batch *b);

/* Fill b with this rank's part of the global batch that starts at stream
 * position `first` (step s of a run that never changed global_batch starts
 * at (s-1)*GB): positions first .. first+GB-1; rank r of dp takes the
 * contiguous block [r*GB/dp, (r+1)*GB/dp) in micro-batches of B. Returns 0,
 * 2 with err (a token id or a loss-mask value out of range), or 1 with err
 * (runtime: a read failed, or a token file changed - size, inode, mtime -
 * since it was opened, checked by one stat per file before and after the
 * reads). */
int data_fill(lm_data *d, int64_t first, int global_batch, int dp_rank, int dp_size, lm_batch *b, char *err,
              size_t errlen);

#endif
