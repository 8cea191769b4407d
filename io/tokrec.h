/* tokrec.h — the tokenizer a token file or a checkpoint records (SPEC §4,
 * §5): a SentencePiece model's bytes in dataset /tokenizer/model (uint8 [n])
 * with int64 attributes bos_id and eos_id (-1: none). lamina treats the
 * model as opaque bytes here; checkpoints also give the dataset an int64
 * attribute vocab_size (the vocabulary of the token file it came from), so
 * later commands know it without parsing the model.
 *
 * Shared by io/tokfile.c and io/ckpt*.c; HDF5 calls, no MPI. */
#ifndef LAMINA_TOKREC_H
#define LAMINA_TOKREC_H
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* The largest model accepted: LLaMA-2's tokenizer.model is 0.5 MB, a 256k
 * SentencePiece vocabulary about 5 MB. */
#define LM_TOKREC_MAX ((size_t)64 << 20)

typedef struct {
    unsigned char *model;   /* lm_alloc'ed bytes; NULL when there is no tokenizer */
    size_t len;
    int64_t bos_id, eos_id; /* -1: none */
    int64_t vocab_size;     /* the dataset's vocab_size attribute, 0 when absent */
} lm_tokrec;

/* Validate /tokenizer in open file f (path and kind, "token file" or
 * "checkpoint", name it in messages): absent -> 0 with rec->model NULL;
 * present -> the dataset must be 1-D unsigned 8-bit integers of 1 ..
 * LM_TOKREC_MAX bytes, bos_id and eos_id int64 scalars in [-1, 2^31), a
 * vocab_size attribute (when present) >= 1. With `bytes` the model is read
 * into rec->model (else rec->len is set, rec->model stays NULL). Returns
 * 0, or 2 (LM_ERR_INPUT) with err naming the file and the dataset or
 * attribute, or 1 when a read of a valid-looking dataset fails. */
int tokrec_read(hid_t f, const char *path, const char *kind, int bytes, lm_tokrec *rec, char *err, size_t errlen);

/* Write /tokenizer/model and its attributes (vocab_size only when > 0)
 * into f. `writer`: this process writes the bytes (parallel HDF5: every
 * rank calls, the group, dataset and attributes are created collectively,
 * rank 0 alone passes writer = 1 and the others select nothing; serial:
 * writer = 1, dxpl H5P_DEFAULT). Returns 0, or -1. */
int tokrec_write(hid_t f, const lm_tokrec *rec, int writer, hid_t dxpl);

/* Same bytes, bos_id and eos_id. */
int tokrec_equal(const lm_tokrec *a, const lm_tokrec *b);

void tokrec_free(lm_tokrec *rec);

#endif
