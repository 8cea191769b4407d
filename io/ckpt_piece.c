/* ckpt_piece.c — the geometry of checkpoint pieces (see ckpt_piece.h):
 * validation, v-space plans (overlap and cover), file selections and
 * checksum terms. */
#include "ckpt_piece.h"
#include "common.h"
#include "hash.h"
#include <stdlib.h>
#include <string.h>

/* ---- validation ---- */

/* a + n for a message, saturating (a, n >= 0 may be absurdly large) */
static long long sat_end(int64_t a, int64_t n) { return n > INT64_MAX - a ? INT64_MAX : a + n; }

int ckpt_piece_check(const ckpt_tensor *t, const char *set, int write, char *err, size_t errlen) {
    if (t->ndim != 1 && t->ndim != 2)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s/%s: ndim %d (must be 1 or 2)", set, t->name, t->ndim);
    if (t->rows < 0 || t->cols < 1 || (t->ndim == 1 && t->cols != 1))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s/%s: bad shape [%lld,%lld]", set, t->name, (long long)t->rows,
                      (long long)t->cols);
    int64_t r0 = t->row0, c0 = t->col0, br = t->brows, bc = t->bcols, rows = t->rows, cols = t->cols;
    int block = br != 0 || bc != 0;
    if (r0 < 0 || c0 < 0 || br < 0 || bc < 0 || (!block && (r0 || c0)))
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s/%s: bad block row0 %lld, col0 %lld, brows %lld, bcols %lld (no negative values; "
                      "brows = bcols = 0 is the whole tensor, with row0 = col0 = 0)",
                      set, t->name, (long long)r0, (long long)c0, (long long)br, (long long)bc);
    /* a row slice: whole rows [r0, r0+br); a column slice: whole columns
     * [c0, c0+bc) of a 2-D tensor. Comparisons written so that huge values
     * cannot overflow. */
    int rowslice = bc == cols && c0 == 0 && r0 <= rows && br <= rows - r0;
    int colslice = t->ndim == 2 && br == rows && r0 == 0 && c0 <= cols && bc <= cols - c0;
    if (block && !rowslice && !colslice)
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s/%s: block rows [%lld,%lld) x columns [%lld,%lld) is outside the [%lld,%lld] tensor or "
                      "neither whole rows nor whole columns%s",
                      set, t->name, (long long)r0, sat_end(r0, br), (long long)c0, sat_end(c0, bc),
                      (long long)rows, (long long)cols, t->ndim == 1 ? " (a 1-D tensor takes row slices only)" : "");
    int64_t n = block ? br * bc : rows * cols;
    /* off + count <= n, written so that a huge off cannot overflow */
    if (t->off < 0 || t->count < 0 || t->off > n || t->count > n - t->off)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s/%s: piece of %lld elements at offset %lld outside the %lld elements [0,%lld)%s",
                      set, t->name, (long long)t->count, (long long)t->off, (long long)n, (long long)n,
                      block ? " of its block" : "");
    /* the values: data, or the callback that streams them this way */
    if (t->count > 0 && !t->data && !(write ? t->pull != NULL : t->push != NULL))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s/%s: piece of %lld elements has no data (data NULL) and no %s callback",
                      set, t->name, (long long)t->count, write ? "pull" : "push");
    return 0;
}

ckpt_geom ckpt_piece_geom(const ckpt_tensor *t) {
    if (t->brows == 0 && t->bcols == 0) return (ckpt_geom){0, 0, t->cols, 0, 0};
    if (t->bcols == t->cols) return (ckpt_geom){t->row0, 0, t->cols, t->row0 * t->cols, 0};
    return (ckpt_geom){0, t->col0, t->bcols, t->col0 * t->rows, 1};
}

/* ---- plans ---- */

/* An interval [b, e) and its order by start, then end (qsort). */
typedef struct { int64_t b, e; int rank; } ivl;
static int by_start(const void *x, const void *y) {
    const ivl *p = x, *q = y;
    if (p->b != q->b) return (p->b > q->b) - (p->b < q->b);
    return (p->e > q->e) - (p->e < q->e);
}

/* The elements of this rank's piece [a,b) that it writes and checksums:
 * those no lower rank's piece holds, so the union of all pieces is counted
 * exactly once (replicated reads: the lowest holder counts them). cover is
 * set when the union is all `total` elements [0, total) of the tensor.
 * all[2r], all[2r+1] = begin, count of rank r (in v). Sorting by start makes
 * both sweeps O(P log P) in the number of ranks P:
 *   cover: reach = max end over the sorted intervals while each starts at
 *          or before the reach so far; covered iff reach >= total;
 *   mine:  [a,b) minus the sorted, clipped pieces of ranks < rank, walking
 *          a cursor pos from a and emitting the gaps before each piece.
 * Writes at most nranks+1 ranges to out (pairs begin,end); returns the count. */
static int own_pieces(const long long *all, int nranks, int rank, int64_t total, int64_t *out, int *cover) {
    ivl *iv = lm_alloc(sizeof(ivl) * (size_t)(nranks + 1));
    int m = 0;
    for (int r = 0; r < nranks; r++)
        if (all[2 * r + 1] > 0) iv[m++] = (ivl){all[2 * r], all[2 * r] + all[2 * r + 1], r};
    qsort(iv, (size_t)m, sizeof *iv, by_start);
    int64_t reach = 0;
    for (int i = 0; i < m && iv[i].b <= reach; i++)
        if (iv[i].e > reach) reach = iv[i].e;
    *cover = reach >= total;

    int64_t a = all[2 * rank], b = a + all[2 * rank + 1];
    int k = 0;
    if (b > a) {
        m = 0;
        for (int r = 0; r < rank; r++)
            if (all[2 * r + 1] > 0) {
                int64_t s = all[2 * r], e = s + all[2 * r + 1];
                if (s < a) s = a;
                if (e > b) e = b;
                if (s < e) iv[m++] = (ivl){s, e, r};
            }
        qsort(iv, (size_t)m, sizeof *iv, by_start);
        int64_t pos = a;
        for (int i = 0; i < m; i++) {
            if (iv[i].b > pos) {
                out[2 * k] = pos;
                out[2 * k + 1] = iv[i].b;
                k++;
            }
            if (iv[i].e > pos) pos = iv[i].e;
        }
        if (pos < b) {
            out[2 * k] = pos;
            out[2 * k + 1] = b;
            k++;
        }
    }
    lm_free(iv);
    return k;
}

/* What v-space needs of the ranks that hold elements (count > 0): all pass
 * column slices, or none does; and column slices [col0, col0+width) are
 * equal or disjoint. Sorted by (col0, end), the slices pass iff each one is
 * equal to its predecessor or starts at or after its end (then the distinct
 * slices form increasing disjoint intervals). info[5r..5r+4] = v begin,
 * count, colslice, col0, width of rank r. O(P log P). */
static int slices_ok(const long long *info, int nranks, char *why, size_t whylen) {
    ivl *s = lm_alloc(sizeof(ivl) * (size_t)(nranks + 1));
    int m = 0, first = -1, rc = 0;
    for (int r = 0; r < nranks && !rc; r++) {
        const long long *x = info + 5 * r;
        if (x[1] <= 0) continue;
        if (first < 0) first = r;
        if (x[2] != info[5 * first + 2]) {
            int c = x[2] ? r : first, o = x[2] ? first : r;
            rc = lm_err(why, whylen, -1,
                        "rank %d passes columns [%lld,%lld) while rank %d passes a flat piece or row slice "
                        "(one tensor takes column slices on every rank or on none)",
                        c, info[5 * c + 3], info[5 * c + 3] + info[5 * c + 4], o);
        }
        if (x[2]) s[m++] = (ivl){x[3], x[3] + x[4], r};
    }
    if (!rc) {
        qsort(s, (size_t)m, sizeof *s, by_start);
        for (int i = 1; i < m && !rc; i++)
            if (!(s[i].b == s[i - 1].b && s[i].e == s[i - 1].e) && s[i].b < s[i - 1].e)
                rc = lm_err(why, whylen, -1,
                            "the column slices [%lld,%lld) of rank %d and [%lld,%lld) of rank %d overlap without "
                            "being equal",
                            (long long)s[i - 1].b, (long long)s[i - 1].e, s[i - 1].rank, (long long)s[i].b,
                            (long long)s[i].e, s[i].rank);
    }
    lm_free(s);
    return rc;
}

int ckpt_plan_make(MPI_Comm comm, const ckpt_tensor *t, ckpt_plan *pl, char *why, size_t whylen) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    pl->g = ckpt_piece_geom(t);
    pl->pieces = NULL;
    pl->npieces = pl->cover = 0;
    long long mine[5] = {pl->g.vbase + t->off, t->count, pl->g.colslice, pl->g.col0, pl->g.width};
    long long *info = lm_alloc(sizeof(long long) * 5 * (size_t)size);
    MPI_Allgather(mine, 5, MPI_LONG_LONG, info, 5, MPI_LONG_LONG, comm);
    if (slices_ok(info, size, why, whylen)) {
        lm_free(info);
        return -1;
    }
    long long *all = lm_alloc(sizeof(long long) * 2 * (size_t)size);
    for (int r = 0; r < size; r++) {
        all[2 * r] = info[5 * r];
        all[2 * r + 1] = info[5 * r + 1];
    }
    lm_free(info);
    pl->pieces = lm_alloc(sizeof(int64_t) * 2 * (size_t)(size + 1));
    pl->npieces = own_pieces(all, size, rank, t->rows * t->cols, pl->pieces, &pl->cover);
    lm_free(all);
    return 0;
}

void ckpt_plan_free(ckpt_plan *pl) {
    lm_free(pl->pieces);
    pl->pieces = NULL;
    pl->npieces = 0;
}

/* ---- file selection ---- */

/* Select block-local elements [l, l+n) (n > 0) of a block of `w` columns
 * whose element (r, c) is full-tensor element (row0 + r, col0 + c). A 1-D
 * dataspace takes the full range [row0 + l, row0 + l + n). In the 2-D
 * [rows, cols] one, with r0 = l / w, c0 = l % w, r1 = e / w, c1 = e % w
 * (e = l + n), the range is the union of at most three hyperslabs of the
 * block, at full rows row0 + r and columns col0 + c:
 *     the tail of row r0:   [r0, c0 .. w)            (when c0 > 0)
 *     the whole rows:       [r0' .. r1, 0 .. w)      (r0' = r0, or r0+1 after a tail)
 *     the head of row r1:   [r1, 0 .. c1)            (when c1 > 0)
 * or the single run [r0, c0 .. c1) when the range lies inside one row.
 * No hyperslab leaves the block's columns [col0, col0+w). HDF5 walks a
 * selection in row-major order of the file dataspace whatever order it was
 * built in; inside one block that order, (row, col0 + c) by row then
 * column, is the block's own row-major order (r, c), so the selection maps
 * onto a 1-D memory space of n floats element by element. */
static int select_block(hid_t fs, int ndim, int64_t row0, int64_t col0, int64_t w, int64_t l, int64_t n) {
    if (ndim == 1) {
        hsize_t st = (hsize_t)(row0 + l), ct = (hsize_t)n;
        return H5Sselect_hyperslab(fs, H5S_SELECT_SET, &st, NULL, &ct, NULL) < 0 ? -1 : 0;
    }
    int64_t e = l + n, r0 = l / w, c0 = l % w, r1 = e / w, c1 = e % w;
    H5S_seloper_t op = H5S_SELECT_SET;
    int rc = 0;
#define SEL(R, C, NR, NC)                                                                   \
    do {                                                                                    \
        hsize_t st_[2] = {(hsize_t)(row0 + (R)), (hsize_t)(col0 + (C))};                    \
        hsize_t ct_[2] = {(hsize_t)(NR), (hsize_t)(NC)};                                    \
        if (H5Sselect_hyperslab(fs, op, st_, NULL, ct_, NULL) < 0) rc = -1;                \
        op = H5S_SELECT_OR;                                                                 \
    } while (0)
    if (r0 == r1) { /* inside one row (c1 > c0 since n > 0) */
        SEL(r0, c0, 1, c1 - c0);
        return rc;
    }
    if (c0) {
        SEL(r0, c0, 1, w - c0);
        r0++;
    }
    if (r1 > r0) SEL(r0, 0, r1 - r0, w);
    if (c1) SEL(r1, 0, 1, c1);
#undef SEL
    return rc;
}

int ckpt_piece_select(hid_t fs, const ckpt_tensor *t, const ckpt_geom *g, int64_t v, int64_t n) {
    return select_block(fs, t->ndim, g->row0, g->col0, g->width, v - g->vbase, n);
}

/* ---- checksum terms ---- */

/* Checksum term of element i (row-major index in the full tensor) holding the
 * float with bit pattern b: splitmix64's finaliser of i*phi + b. The sum of
 * terms mod 2^64 is order-free, so ranks add partial sums of their pieces. */
static inline uint64_t mix64(uint64_t i, uint32_t b) {
    return lm_mix64(i * LM_PHI64 + b);
}

/* Sum of terms of n consecutive buffer values x[0..n) at full indices
 * i0, i0+1, ... */
static uint64_t run_sum(const float *x, int64_t i0, int64_t n) {
    uint64_t s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > (1 << 16))
    for (int64_t j = 0; j < n; j++) {
        uint32_t b;
        memcpy(&b, &x[j], sizeof b);
        s += mix64((uint64_t)(i0 + j), b);
    }
    return s;
}

/* For flat pieces and row slices v is the full index, so [v0, v1) is one
 * run. For a column slice, block-local l = v - vbase lies in block row
 * r = l / w, and the run of row r inside [l0, l1) holds full indices
 * r*cols + col0 + (l - r*w) (row0 = 0): one run per block row, the rows
 * summed in parallel when there are many elements. x[j] is the value of
 * v0 + j (the piece's data or a staging block: the sum depends only on the
 * values and their v, never on where they are held). */
uint64_t ckpt_piece_sum(const ckpt_tensor *t, const ckpt_geom *g, int64_t v0, int64_t v1, const float *x) {
    int64_t l0 = v0 - g->vbase, l1 = v1 - g->vbase, w = g->width;
    if (l1 <= l0) return 0;
    if (!g->colslice) return run_sum(x, v0, l1 - l0);
    uint64_t s = 0;
    int64_t ra = l0 / w, rb = (l1 - 1) / w;
#pragma omp parallel for reduction(+ : s) schedule(static) if (l1 - l0 > (1 << 16))
    for (int64_t r = ra; r <= rb; r++) {
        int64_t a = r * w > l0 ? r * w : l0, e = (r + 1) * w < l1 ? (r + 1) * w : l1;
        const float *xr = x + (a - l0);
        int64_t i0 = r * t->cols + g->col0 + (a - r * w);
        for (int64_t j = 0; j < e - a; j++) {
            uint32_t b;
            memcpy(&b, &xr[j], sizeof b);
            s += mix64((uint64_t)(i0 + j), b);
        }
    }
    return s;
}
