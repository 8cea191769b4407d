/* data_int.h — the loader's state, shared by data.c (opening the files,
 * categories, filling batches) and data_order.c (which sample a stream
 * position names: buckets, per-epoch shuffles, weighted mixing). Not for
 * use outside src/data/data*.c. */
#ifndef LAMINA_DATA_INT_H
#define LAMINA_DATA_INT_H
#include "data.h"

/* Positions per mixing block: with weights, every block of this many
 * consecutive stream positions is dealt to the files by fixed shares. */
#define DATA_MIX_BLOCK 1024

typedef struct {
    tokfile *f;
    int64_t base;      /* first index of this file in the concatenation of all files */
    int *cat_map;      /* file category index -> data category (one entry for a file without categories) */
} dfile;

/* A cached shuffle: the permutation of bucket `bucket` in epoch `epoch`. */
typedef struct {
    int64_t epoch, bucket, n;
    int64_t *p;
    uint64_t used;     /* LRU tick */
} dperm;

/* A stream: files [f0, f0+nf) concatenated, bucket b = bucket b of every
 * file in file order (a file without buckets is one bucket). */
typedef struct {
    int f0, nf;
    int64_t n;          /* samples */
    int64_t nb;         /* buckets: the most of any of its files */
    int64_t *bstart;    /* [nb+1]: stream index where bucket b starts */
    int64_t *seg;       /* [nb][nf+1]: offset of file k's part within bucket b */
    double weight;      /* weighted lists only */
    int share;          /* positions per mixing block */
    dperm cache[4];
    uint64_t tick;
} dstream;

struct lm_data {
    char key[64];       /* the deck key the list came from, for messages */
    dfile *files;
    int n_files;
    dstream *st;        /* one stream, or one per file when weighted */
    int n_st, weighted;
    int64_t n_samples;  /* over all files */
    int shuffle;
    uint64_t seed;
    int model_vocab;
    int n_cat;          /* categories: union of the files' by name, first-seen order */
    char **cat;
    int64_t blk;        /* the mixing block cached below, -1 none */
    int slot[DATA_MIX_BLOCK], rank[DATA_MIX_BLOCK];
    uint32_t *buf;      /* seq_len + 1 tokens */
    uint8_t *mbuf;      /* seq_len + 1 mask values */
};

/* Build the streams once the files are open: weights NULL, one stream of
 * all files; else one stream per file with weights[i] (> 0), and their
 * shares of a block (LM_ERR_INPUT with err if a share rounds to none).
 * Returns 0 or LM_ERR_INPUT. */
int data_streams_build(lm_data *d, const double *weights, char *err, size_t errlen);
void data_streams_free(lm_data *d);

/* Stream position g (all epochs): the file (index into d->files), the
 * sample within it, and the bucket of the stream it came from. */
void data_locate(lm_data *d, int64_t g, int *file, int64_t *local, int64_t *bucket);

#endif
