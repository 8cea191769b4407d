/* data.h — the data loader (SPEC §4): samples from one or more token files,
 * shuffled per epoch from the seed, split across data-parallel ranks and
 * micro-steps. It holds no state beyond the files: what step s reads is a
 * pure function of (seed, s, global_batch), which makes resume exact and the
 * order independent of the parallel layout. */
#ifndef LAMINA_DATA_H
#define LAMINA_DATA_H
#include "deck.h"
#include "tokfile.h"
#include <stdint.h>

typedef struct lm_data lm_data;

/* Open every file of data.train (comma-separated) and check that its
 * vocab_size does not exceed the model's and that at least one of its
 * samples has 2 or more tokens (a target). NULL + err (input error) if not. */
lm_data *data_open(const lm_config *c, char *err, size_t errlen);
void data_close(lm_data *d);
int64_t data_n_samples(const lm_data *d);

/* Global sample index (position g in the stream of all epochs) to the
 * sample it names: identity without shuffle; else a per-epoch permutation. */
int64_t data_sample_at(lm_data *d, int64_t g);

typedef struct {
    int n_micro, B, T;
    int32_t *ids, *targets;   /* [n_micro][B*T]; padding: id 0, target -1 */
    int64_t targets_global;   /* target tokens in the whole global batch */
    int64_t targets_local;    /* in this rank's part */
    int n_cut_global;         /* samples of the global batch cut to seq_len+1 */
} lm_batch;

void batch_alloc(lm_batch *b, int n_micro, int B, int T);
void batch_free(lm_batch *b);

/* Fill b with this rank's part of the global batch that starts at global
 * sample `first` (step s of a run that never changed global_batch starts at
 * (s-1)*GB): samples first .. first+GB-1; rank r of dp takes the contiguous
 * block [r*GB/dp, (r+1)*GB/dp) in micro-batches of B. Returns 0, 2 with
 * err (a token id out of range), or 1 with err (runtime: a read failed, or a
 * token file changed - size, inode, mtime - since data_open, checked by one
 * stat per file before and after the reads). */
int data_fill(lm_data *d, int64_t first, int global_batch, int dp_rank, int dp_size, lm_batch *b, char *err,
              size_t errlen);

#endif
