/* ckpt_piece.h — internal to io/ckpt.c: the geometry of the pieces ranks
 * pass for a tensor (flat ranges, row slices, column slices; see ckpt.h),
 * which rank writes and checksums which element, the file selection of a
 * piece, and the checksum terms.
 *
 * v-space. Every piece is mapped to an interval of a per-tensor index v in
 * [0, rows*cols), in which the usual interval logic (overlap: the lowest
 * rank holding an element owns it; cover: the union is everything) works:
 *   flat piece:   v = off + i                  (the full row-major index)
 *   row slice:    v = row0*cols + off + i      (again the full index)
 *   column slice: v = col0*rows + off + i      (block-local, shifted)
 * for element i of the rank's buffer. Column slices of one tensor must be
 * equal or disjoint (so equal v means the same element, and disjoint
 * slices occupy disjoint v-intervals [col0*rows, (col0+bcols)*rows)), and
 * cannot be mixed with flat pieces or row slices of the same tensor (their
 * v is not the full index); ckpt_plan checks both. */
#ifndef LAMINA_CKPT_PIECE_H
#define LAMINA_CKPT_PIECE_H
#include "ckpt.h"
#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* Block-local element l (row-major in the block) is full-tensor element
 * (row0 + l / width, col0 + l % width); v = vbase + l. */
typedef struct {
    int64_t row0, col0; /* the block's first row and column */
    int64_t width;      /* its columns: cols, or bcols for a column slice */
    int64_t vbase;      /* v of the block's element 0 */
    int colslice;       /* 1: a column slice narrower than the tensor */
} ckpt_geom;

/* Shape, block and piece of one rank's tensor valid (ckpt.h's rules), and
 * its values reachable: data, or pull (write = 1, a save) or push (write =
 * 0, a load) when count > 0? Returns 0, or 1 with err naming "set/name".
 * Rank-local. */
int ckpt_piece_check(const ckpt_tensor *t, const char *set, int write, char *err, size_t errlen);

/* The geometry of a tensor that passed ckpt_piece_check. */
ckpt_geom ckpt_piece_geom(const ckpt_tensor *t);

/* Every rank's piece of a tensor (allgather) and the v-intervals of this
 * rank's piece that it writes and checksums: those no lower rank holds. */
typedef struct {
    ckpt_geom g;     /* this rank's geometry */
    int64_t *pieces; /* pairs begin,end of v */
    int npieces;
    int cover; /* the union of all pieces is the whole tensor */
} ckpt_plan;

/* Collective over comm. Returns 0, or -1 with why (the same text on every
 * rank; no pieces allocated) when column slices are mixed with other
 * pieces or two column slices overlap without being equal. */
int ckpt_plan_make(MPI_Comm comm, const ckpt_tensor *t, ckpt_plan *pl, char *why, size_t whylen);
void ckpt_plan_free(ckpt_plan *pl);

/* Select in the file dataspace fs the elements of v-interval [v, v+n)
 * (n > 0) of this rank's piece. Returns 0 or -1. */
int ckpt_piece_select(hid_t fs, const ckpt_tensor *t, const ckpt_geom *g, int64_t v, int64_t n);

/* Partial checksum (ckpt.h's formula, full-tensor indices) of the elements
 * of v-interval [v0, v1) of this rank's piece, x[j] holding the value of
 * v0 + j (for data: x = t->data + (v0 - g->vbase - t->off)). */
uint64_t ckpt_piece_sum(const ckpt_tensor *t, const ckpt_geom *g, int64_t v0, int64_t v1, const float *x);

#endif
