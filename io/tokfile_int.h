/* tokfile_int.h — the open token file, shared by tokfile.c (open, core
 * datasets, sample reads) and tokfile_opt.c (the optional datasets of
 * SPEC §9: buckets, categories, bytes, loss mask, dedup keys). Not for
 * use outside io/tokfile*.c. */
#ifndef LAMINA_TOKFILE_INT_H
#define LAMINA_TOKFILE_INT_H
#include "tokfile.h"
#include <hdf5.h>
#include <sys/stat.h>
#include <time.h>

struct tokfile {
    char *path;
    hid_t file, tokens, tspace; /* /tokens stays open: each read is a hyperslab of it */
    int tok_wide;               /* file type signed or wider than 32 bits: read as int64, range-check */
    int64_t n_samples, n_tokens, vocab_size;
    int has_tok;                /* /tokenizer/model present (validated at open) */
    int64_t *offsets;           /* n_samples + 1 entries, validated at open */
    int64_t *wide;              /* scratch for tok_wide and wide mask reads */
    int64_t wide_cap;
    /* What was validated at open (fstat of HDF5's own descriptor): a change
     * of any of these under the run means the data is no longer what was
     * checked, and HDF5 would zero-fill a read past a shrunken end. */
    dev_t dev;
    ino_t ino;
    off_t size, cur_size;      /* at open; at the last tokfile_check */
    struct timespec mtime;
    haddr_t tok_addr;          /* file offset of /tokens' raw data, HADDR_UNDEF if chunked */
    size_t tok_esz;            /* bytes per token in the file */

    /* ---- optional datasets (tokfile_opt.c), validated at open ---- */
    int n_cat;                 /* root attribute categories: names in index order */
    char **cat;
    int32_t *category;         /* /samples/category [n_samples], NULL when absent */
    int64_t *bytes;            /* /samples/bytes [n_samples], NULL when absent */
    int64_t n_buckets;         /* /buckets/offsets: n_buckets + 1 entries; NULL: one bucket */
    int64_t *bucket_off;
    hid_t mask, mspace;        /* /loss_mask [n_tokens], -1 when absent; values checked on read */
    int mask_u8;               /* file type is unsigned 8-bit: read straight into the caller's buffer */
    haddr_t mask_addr;
    size_t mask_esz;
    int64_t n_docs;            /* /docs/hash [n_docs] (0: none) */
    hid_t dhash, dmin;         /* /docs/hash, /docs/minhash [n_docs, perm] (-1: none) */
    int mh_perm, mh_bands, mh_ngram, mh_words;
    uint64_t mh_seed;
};

/* Open a 1-D integer dataset; returns its length or -1 with err (exit 2
 * class: missing, damaged, not 1-D, not integer, longer than the file). */
int64_t tokfile_open_int_1d(hid_t f, const char *path, const char *dpath, hid_t *d, hid_t *type, char *err,
                            size_t errlen);

/* Validate and load the optional datasets of an open file whose core
 * (tokens, offsets, attributes) is valid. 0, or LM_ERR_INPUT with err
 * naming the file and the dataset or attribute. */
int tokfile_open_opt(tokfile *f, char *err, size_t errlen);
void tokfile_close_opt(tokfile *f);

/* A read of elements [lo, lo+n) of esz bytes of a contiguous dataset at
 * file address addr would cross the file's end as last seen (cur_size):
 * HDF5 would zero-fill it and report success. */
int tokfile_past_end(const tokfile *f, haddr_t addr, int64_t lo, int64_t n, size_t esz);

#endif
