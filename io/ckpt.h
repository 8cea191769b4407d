/* ckpt.h — checkpoint files (SPEC §5), written and read collectively with
 * parallel HDF5 (mpio driver, collective transfers).
 *
 * A checkpoint holds full logical tensors only: datasets /model/NAME,
 * /optim/exp_avg/NAME, /optim/exp_avg_sq/NAME of the full shape [rows, cols]
 * (1-D tensors: [rows]), however the writers were sharded. Each rank passes,
 * for each tensor, the piece it owns: the flat element range [off, off+count)
 * of the row-major tensor (element i is row i / cols, column i % cols; 1-D
 * tensors have cols = 1), or of a block of it (a row or column slice, for
 * tensor parallelism: see ckpt_tensor), and its `count` floats (in `data`,
 * or streamed block by block through pull/push: see ckpt_tensor). A piece may
 * start and end inside a row (a ZeRO shard does). Ranks that own nothing of
 * a tensor pass count = 0 and still take part in the collective calls. A
 * piece outside [0, rows*cols) (or outside its block), or a bad block, is an
 * error naming the tensor (1 on save, 2 on load).
 * In the file a piece is the union of at most three hyperslabs (the tail of
 * its first row, its whole rows, the head of its last row; in a column
 * slice, rows of the slice's columns only), transferred in blocks of at most
 * 64 Mi elements. On load, each rank asks for the range it needs, whatever
 * decomposition wrote the file.
 *
 * Integrity: each dataset carries an attribute `checksum` (uint64), the sum
 * mod 2^64 over elements of mix64(index, bits of the value):
 *     checksum = sum over i of mix64(i, b_i)   (all arithmetic uint64, wrapping)
 *     i   = the element's index in the full row-major tensor (row*cols + col)
 *     b_i = the uint32 bit pattern of the float32 value
 *     mix64(i, b): z = i * 0x9E3779B97F4A7C15 + b;
 *                  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *                  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *                  return z ^ (z >> 31);
 * The sum is over elements, so ranks add partial sums of their own pieces
 * (MPI_SUM on uint64) and the check works for any sharding. Pieces may
 * overlap (e.g. every data-parallel rank passes the whole tensor): each
 * element is written and summed once, by the lowest rank whose piece holds
 * it. On save the union of the pieces must cover every element (else error 1
 * naming the dataset). On load each rank reads its whole piece; the sum is
 * compared when the union of the pieces covers every element, and a load
 * whose pieces leave elements unread cannot verify that tensor and skips its
 * check. A dataset without the attribute (a file from another tool) is
 * accepted unchecked. A mismatch, a missing dataset, a shape that disagrees,
 * a wrong format/version or an unreadable file is an input error (2) naming
 * the file and dataset.
 *
 * Files: DIR/step_NNNNNNNN.h5, written first as DIR/step_NNNNNNNN.h5.tmp,
 * fsynced, renamed; then DIR/latest (text: the file name, newline) written as
 * latest.tmp, fsynced and renamed; then the directory fsynced. Older
 * step_*.h5 beyond `keep` are deleted after `latest` is published, never the
 * one `latest` names. A crash at any point leaves the previous checkpoint and
 * `latest` intact.
 *
 * Write failures (issue 14): right after the .tmp is created, rank 0
 * reserves the space the file will need (every dataset's floats plus a
 * metadata margin) with fallocate(KEEP_SIZE), or compares it with the free
 * space where fallocate is unsupported; a full disk or quota fails there,
 * before any collective write, with "no space left on device: the
 * checkpoint needs N bytes, M free". The unused tail is released after the
 * close. Every local failure is agreed on before the next collective call;
 * a rank that failed waits for the others with a deadline (60 s, or 4x the
 * longest save so far; env LAMINA_CKPT_DEADLINE_S overrides) and then, if
 * they are stuck inside an HDF5 collective, removes the .tmp, prints the
 * message and ends the job with MPI_Abort(1). The error path (close the
 * objects and the file, remove the .tmp) runs under the same deadline; a
 * failed H5Fclose also ends the job with exit 1 (HDF5 would otherwise crash
 * in MPI_Finalize). A failure before `latest` is renamed removes the .tmp,
 * the renamed file and latest.tmp, so `latest` and its file are unchanged;
 * a failure of the last directory sync leaves the new complete file named
 * by `latest`. Every rank exits 1 (train.c: lm_fail). */
#ifndef LAMINA_CKPT_H
#define LAMINA_CKPT_H
#include "tokrec.h"
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;   /* Hugging Face name, e.g. "model.layers.0.mlp.up_proj.weight" */
    int ndim;           /* 1 or 2 */
    int64_t rows, cols; /* full logical shape (cols = 1 when ndim == 1) */
    int64_t off, count; /* this rank's piece: elements [off, off+count), row-major */
    float *data;        /* count floats */
    /* The block of the full tensor the piece indexes (tensor parallelism):
     * rows [row0, row0 + brows) x columns [col0, col0 + bcols); off and
     * count are then row-major in the block [brows, bcols] rather than in
     * the full tensor: element (r, c) of the block is element
     * (row0 + r, col0 + c) of the tensor, and [off, off+count) must lie in
     * [0, brows*bcols). brows = bcols = 0 (the default, with row0 = col0 =
     * 0): the whole tensor. A block is whole rows (a row slice: bcols =
     * cols, col0 = 0, row0 + brows <= rows; Megatron's column-parallel
     * weights) or whole columns (a column slice: brows = rows, row0 = 0,
     * col0 + bcols <= cols; row-parallel weights); 1-D tensors take row
     * slices only. Empty slices (brows or bcols 0) are allowed with count 0.
     * No value may be negative. Among the ranks whose count > 0, column
     * slices narrower than the tensor cannot be mixed with flat pieces or
     * row slices of the same tensor (flat pieces and row slices mix
     * freely), and two ranks' column slices must be equal (replicas, which
     * may overlap like any pieces) or disjoint; both are checked, an error
     * naming the tensor (1 on save, 2 on load) on every rank. */
    int64_t row0, col0, brows, bcols;
    /* Streaming, for state that is not in host memory (e.g. on a GPU):
     * with data == NULL and count > 0 the piece moves in blocks through
     * ckpt_save's / ckpt_load's own staging buffer. ckpt_save needs pull,
     * ckpt_load needs push (else an error naming the tensor, 1 on save, 2
     * on load, on every rank); the other may be NULL. With data != NULL
     * the callbacks are ignored and nothing changes.
     *   pull(ctx, dst, off, n): fill dst[0..n) with elements [off, off+n)
     *     of the piece (off counts from the piece start, like data[off]:
     *     0 <= off, off + n <= count); they are then checksummed and
     *     written. Only the elements this rank writes are pulled (those
     *     no lower rank's piece holds: with replicated or overlapping
     *     pieces a higher rank pulls less, maybe nothing), each once.
     *   push(ctx, src, off, n): elements [off, off+n) of the piece as read
     *     from the file, after they were added to the checksum and checked
     *     (finite; >= 0 in exp_avg_sq). Every element of the piece is
     *     pushed once. The verdict on the tensor (checksum, values) comes
     *     after its last push: a failed load may have pushed values, as it
     *     leaves partial data in `data`; the caller must not use them.
     * Blocks come in increasing off, n >= 1 and n <= the transfer block
     * (64 Mi elements; LAMINA_CKPT_PIECE_ELEMS lowers it). Staging memory
     * bound: one buffer of min(transfer block, the longest run this rank
     * moves) floats, held only while its tensor is transferred; nothing
     * else grows with the piece, and no rank allocates a whole tensor or
     * piece. The callbacks run on the calling thread between the
     * collective HDF5 calls of one tensor (so they must not call MPI on
     * comm or wait for other ranks); a slow callback stalls the other
     * ranks at the next collective call. Checksums and value checks see
     * exactly the values pulled or read, so a streamed piece gives the
     * same file bytes, checksum and verdict as the same values in data.
     * A failed write (fault point dwrite included) stops the pulls. */
    void (*pull)(void *ctx, float *dst, int64_t off, int64_t count);
    void (*push)(void *ctx, const float *src, int64_t off, int64_t count);
    void *ctx; /* passed to pull and push */
} ckpt_tensor;

typedef struct {
    long step;                /* optimizer steps done */
    long tokens_seen;         /* input tokens consumed, padding excluded */
    long consumed_samples;    /* global samples consumed (data loader position) */
    /* multi-stage runs (SPEC §9), lamina's own root attributes `stage` and
     * `stage_data_start`: the 1-based stage that wrote the checkpoint and
     * consumed_samples when that stage's data stream started (write: stage
     * 0 writes neither; read: 0 and -1 when absent) */
    long stage, stage_data_start;
    uint64_t seed;            /* train.seed of the run that wrote it */
    /* model shape, stored under /config as attributes */
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size, max_seq_len, tie_embeddings;
    double norm_eps, rope_theta;
    const char *deck_text;    /* resolved deck (write); on read, a malloc'd copy the caller frees */
    const lm_tokrec *tok;     /* write: the tokenizer to record as /tokenizer/model (NULL: none);
                               * the same on every rank. ckpt_read_meta leaves it NULL */
} ckpt_meta;

/* Write checkpoint `meta->step` into dir. model/exp_avg/exp_avg_sq are arrays
 * of n tensors with the same names and pieces (exp_avg* may be NULL: no
 * /optim group). Collective over comm. Returns 0, or 1 with err (I/O). */
int ckpt_save(MPI_Comm comm, const char *dir, const ckpt_meta *meta, const ckpt_tensor *model,
              const ckpt_tensor *exp_avg, const ckpt_tensor *exp_avg_sq, int n, int keep,
              char *err, size_t errlen);

/* Path of the checkpoint `dir/latest` names, if latest exists (returns 1);
 * 0 if there is none; -1 with err if latest is unusable: a dangling
 * symbolic link, not a regular file (a FIFO, a directory: never opened, so
 * nothing blocks), empty, or naming a file that is missing or not a regular
 * file. `latest` is the text file ckpt_save writes, or a symbolic link to a
 * step_*.h5 file. Rank-local (call on every rank; same answer). */
int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen);

/* The files checkpoint.restart = auto may resume from, best first: the one
 * `latest` names (when usable), then every DIR/step_NNNNNNNN.h5 by step,
 * newest first (whatever their file type: the caller's load rejects a
 * non-regular or damaged one and goes on to the next). Returns their number
 * (0: none, a fresh start unless note is set) with *paths a malloc'd
 * NULL-terminated array (one free(*paths) releases it); note receives why
 * an existing `latest` was not used ("" otherwise). -1 with note if the
 * directory exists but cannot be listed. Collective: rank 0 looks, every
 * rank gets the same list. */
int ckpt_candidates(MPI_Comm comm, const char *dir, char ***paths, char *note, size_t notelen);

/* Read the root and /config attributes only (collective). Returns 0 or 2.
 * Checked here, each an error 2 naming the file and attribute: every
 * attribute's type (strings, integers, numbers) and scalar shape; format
 * and version; 0 <= step <= 10^15; tokens_seen, consumed_samples >= 0;
 * step <= consumed_samples <= step x INT32_MAX (each step consumes
 * train.global_batch samples, 1..INT32_MAX, which may change between
 * restarts); tokens_seen <= consumed_samples x INT32_MAX (at most
 * train.seq_len targets per sample); /config shape keys >= 1,
 * tie_embeddings 0 or 1, norm_eps and rope_theta finite and > 0.
 * Absent attributes (files from other tools hold only what SPEC §5
 * requires): tokens_seen and consumed_samples read as -1, stage as 0 and
 * stage_data_start as -1 (else 1 <= stage, 0 <= stage_data_start <=
 * consumed_samples), seed and /config
 * keys as 0, deck_text NULL; the caller decides what it needs. Only a
 * regular file is opened (a FIFO would block). */
int ckpt_read_meta(MPI_Comm comm, const char *path, ckpt_meta *meta, char *err, size_t errlen);

/* The tokenizer a checkpoint records (/tokenizer/model with bos_id, eos_id
 * and vocab_size; tokrec.h): rec->model NULL when there is none, else its
 * bytes (free with tokrec_free). Serial: any one process opens the file
 * read-only by itself (no MPI): call it on every rank, or on one and
 * broadcast. Returns 0, or 2 with err naming the file and dataset (not a
 * regular file, not HDF5, a malformed /tokenizer), 1 when a read fails. */
int ckpt_tokenizer(const char *path, lm_tokrec *rec, char *err, size_t errlen);

/* Load the pieces named in model (and the moments if not NULL) from path
 * into their data (or through their push callbacks), checking each dataset's type (float32: "is float16,
 * must be float32"), shape against rows/cols, checksum, and values: every
 * element read must be finite, and exp_avg_sq >= 0. Collective.
 * Returns 0, or 2 with err naming the file and dataset. On failure the
 * pieces hold partial data (the caller loads another file or stops). */
int ckpt_load(MPI_Comm comm, const char *path, ckpt_tensor *model, ckpt_tensor *exp_avg,
              ckpt_tensor *exp_avg_sq, int n, char *err, size_t errlen);

/* Test hooks: if the environment sets LAMINA_CKPT_PAUSE_MS, ckpt_save sleeps
 * that long after each dataset (so a test can kill a run mid-write);
 * LAMINA_CKPT_PIECE_ELEMS lowers the 64 Mi elements per transfer block (so
 * small tensors take the multi-block path; it bounds streamed blocks too).
 * LAMINA_CKPT_FAIL=POINT[.SET.INDEX][:RANK][@STEP] makes ckpt_save fail at
 * POINT as a real failure there would, on rank RANK only (default: every
 * rank that reaches the point), at the checkpoint of step STEP only
 * (default: every one). POINTs of the collective phase: create (the .tmp,
 * H5Fcreate skipped), reserve (rank 0, as ENOSPC), attrs (root attributes),
 * config (/config), group, dcreate / dwrite / dsum (a dataset's create,
 * data write — the rank does not enter the collective H5Dwrite — and
 * checksum attribute; SET = model, exp_avg or exp_avg_sq, INDEX = first,
 * mid, last or a number; both optional), flush, close (H5Fclose skipped).
 * POINTs of rank 0's publish: fsync (the file), rename, dirsync, latest
 * (latest.tmp write), latest_fsync, latest_rename, latest_dirsync.
 * Example: LAMINA_CKPT_FAIL=dwrite.exp_avg.mid:1@4. */

#endif
