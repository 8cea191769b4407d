/* ckpt_int.h — what the checkpoint files share (io/ckpt.c), private to
 * io/ckpt*.c: the file format's name and version, the three tensor sets,
 * the collective transfer of a rank's pieces, the error agreement, step
 * file names and the regular-file check. */
#ifndef LAMINA_CKPT_INT_H
#define LAMINA_CKPT_INT_H
#include "ckpt.h"
#include "ckpt_piece.h"
#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CKPT_FORMAT "lamina-ckpt"
#define CKPT_VERSION 1

/* HDF5 paths of the sets: model, exp_avg, exp_avg_sq. */
extern const char *const CK_SET_PATH[3];

/* Elements per H5Dwrite/H5Dread call (LAMINA_CKPT_PIECE_ELEMS lowers it). */
int64_t ck_piece_elems(void);

/* lm_agree without a deadline: the lowest failing rank's code and message. */
int ck_agree(MPI_Comm comm, int rc, char *err, size_t errlen);

/* What a transfer tallies block by block, on the values as they pass
 * through memory (the piece's data or the staging block of a streamed
 * piece), so that a streamed piece is checked exactly as one given whole:
 * the checksum terms of the elements in the v-intervals own[2j],
 * own[2j+1] (those this rank sums: the plan's pieces), and when `values`
 * is set (load) the NaN, Inf and, when `second` is set, negative values of
 * every element read. */
typedef struct {
    const int64_t *own;
    int nown;
    int values, second;
    uint64_t sum, nan, inf, neg;
} ck_tally;

/* Collective write (write=1) or read of the v-intervals `ranges` of this
 * rank's piece of t, tallied into tl (NULL: nothing tallied); 0 or -1.
 * A piece with data == NULL streams through a staging buffer of
 * min(ck_piece_elems(), the longest range) floats, calling t->pull before
 * each block is tallied and written, t->push after each block is read and
 * tallied (a block whose read failed is neither tallied nor pushed).
 * `inject`: fail the first write (fault hook). */
int ck_transfer(MPI_Comm comm, hid_t d, const ckpt_tensor *t, const ckpt_geom *g, hid_t dxpl, int write,
                const int64_t *ranges, int nranges, int inject, ck_tally *tl);

/* Step number of "step_<digits>" + suffix, else -1. */
long ck_parse_step(const char *name, const char *suffix);

/* A step file found in the directory; qsort order: newest step first. */
typedef struct { long step; char name[256]; } ck_entry;
int ck_by_step_desc(const void *a, const void *b);
/* Append `name` to the list *e (n used, cap allocated) if it names a step
 * file; 1 if it was added. */
int ck_entry_add(ck_entry **e, size_t *n, size_t *cap, const char *name);

/* What a non-regular file is ("a FIFO", "a directory"...), for messages. */
const char *ck_file_kind(mode_t m);

/* 0 when path is a regular file, else `code` with err naming it. */
int ck_regular_file(const char *path, int code, char *err, size_t errlen);

#endif
