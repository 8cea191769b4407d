/* chunks.c — chunk layout search and placement of tensors into chunks. */
#include "chunks.h"
#include "common.h"
#include "hash.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16 /* elements: each tensor starts on a 64-byte boundary */

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* The search range above a largest regular tensor `largest` when the
 * regular tensors hold `total` elements (aligned): up to 16M elements (64 MiB
 * of float32), but no further than total/8, so that a model has at least
 * about eight chunks whenever its largest tensor allows: a chunk is the
 * bucket whose reduction overlaps the rest of backward, and one chunk
 * holding the whole model would leave nothing to overlap. When the largest
 * tensor is itself above total/8, the range is largest/4, which leaves room
 * to find a size with little padding at a small cost in chunk count. */
static size_t range_of(size_t largest, size_t total) {
    size_t cap = total / 8 > largest ? total / 8 - largest : 0;
    if (cap < largest / 4) cap = largest / 4;
    return cap < ((size_t)16 << 20) ? cap : (size_t)16 << 20;
}

size_t chunk_range(const size_t *sizes, int n) {
    size_t largest = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t s = round_up(sizes[i], ALIGN);
        if (s > largest) largest = s;
        total += s;
    }
    return range_of(largest, total);
}

/* The layout at regular chunk length c (a multiple of the granule G), over
 * aligned sizes a[]: in model order, a tensor longer than c closes the open
 * chunk and gets a chunk of its own of round_up(a, G); the others go next-fit
 * into chunks of c, a new one starting when the tensor does not fit, after
 * an outsized tensor, and where grp changes (frozen/trained). Next-fit is
 * optimal (fewest chunks) for packing in order without splitting. Returns
 * the chunk count; *arena gets the sum of chunk lengths, *cmax the longest;
 * chunk_of, off_of, coff (n_chunks + 1 entries: at most n + 1) when given.
 * The search passes limit, the best arena so far: a layout whose chunks
 * already pass it cannot win, and the pass stops there (returns -1). */
static int place(const size_t *a, const int *grp, int n, size_t G, size_t c, size_t limit, int *chunk_of,
                 size_t *off_of, size_t *coff, size_t *arena, size_t *cmax) {
    int nc = 0, open = 0;
    size_t lo = 0, fill = 0, mx = 0; /* lo: start of the open (or next) chunk */
    for (int i = 0; i < n; i++) {
        size_t s = a[i];
        if (s > c) { /* outsized: a chunk of its own */
            if (open) lo += c, open = 0;
            size_t len = round_up(s, G);
            if (coff) coff[nc] = lo;
            if (chunk_of) chunk_of[i] = nc;
            if (off_of) off_of[i] = lo;
            nc++;
            lo += len;
            if (len > mx) mx = len;
            if (lo > limit) return -1;
            continue;
        }
        if (!open || fill + s > c || (grp && grp[i] != grp[i - 1])) {
            if (open) lo += c;
            if (coff) coff[nc] = lo;
            nc++;
            open = 1;
            fill = 0;
            if (c > mx) mx = c;
            if (lo + c > limit) return -1;
        }
        if (chunk_of) chunk_of[i] = nc - 1;
        if (off_of) off_of[i] = lo + fill;
        fill += s;
    }
    if (open) lo += c;
    if (coff) coff[nc] = lo;
    *arena = lo;
    if (cmax) *cmax = mx;
    return nc;
}

static int by_size_desc(const void *x, const void *y) {
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* The search passes over the tensor list once per candidate; the candidates
 * of all caps together (every 1024 elements of each range) times the
 * tensors are kept under SEARCH_WORK, so that its cost stays linear in the
 * tensor count: a long model gets a coarser step. At most MAX_CAPS caps (the
 * largest sizes) are tried. */
#define SEARCH_WORK ((size_t)1 << 26)
#define MAX_CAPS 64

chunk_layout chunk_layout_of(const size_t *sizes, const int *grp, int n, size_t granule, size_t step,
                             int *chunk_of, size_t *off_of, size_t *coff) {
    chunk_layout L = {0, 0, 0, 0, 0};
    size_t G = round_up(granule < ALIGN ? ALIGN : granule, ALIGN);
    if (n <= 0) {
        if (coff) coff[0] = 0;
        L.chunk_size = G;
        return L;
    }
    size_t *a = lm_alloc(sizeof(size_t) * (size_t)n), *d = lm_alloc(sizeof(size_t) * (size_t)n);
    size_t all = 0;
    for (int i = 0; i < n; i++) {
        a[i] = d[i] = round_up(sizes[i], ALIGN);
        all += a[i];
    }
    /* the caps: distinct aligned sizes from the largest down to half the
     * mean tensor size */
    size_t floor = all / (size_t)n / 2;
    qsort(d, (size_t)n, sizeof *d, by_size_desc);
    int K = 0;
    for (int i = 0; i < n && K < MAX_CAPS; i++)
        if ((i == 0 || d[i] != d[i - 1]) && (d[i] >= floor || i == 0)) d[K++] = d[i];
    size_t per = SEARCH_WORK / ((size_t)n * (size_t)K); /* candidates per cap */
    if (per < 1) per = 1;
    size_t best_c = 0, best_arena = 0;
    int best_nc = 0;
    for (int k = 0; k < K; k++) {
        size_t s = d[k], total = 0;
        for (int i = 0; i < n; i++)
            if (a[i] <= s) total += a[i];
        size_t range = range_of(s, total), st = step;
        if (!st) {
            st = 1024;
            if (range / st + 1 > per) st = round_up(range / per + 1, 1024);
        }
        st = round_up(st < ALIGN ? ALIGN : st, ALIGN);
        size_t prev = 0;
        for (size_t j = 0; j <= range; j += st) {
            size_t c = round_up(s + j, G), ar;
            if (c < G) c = G;
            if (c == prev) continue; /* a granule above the step: the same length again */
            prev = c;
            int nc = place(a, grp, n, G, c, best_c ? best_arena : (size_t)-1, NULL, NULL, NULL, &ar, NULL);
            if (nc < 0) continue;
            if (!best_c || ar < best_arena || (ar == best_arena && (nc < best_nc || (nc == best_nc && c < best_c)))) {
                best_c = c;
                best_arena = ar;
                best_nc = nc;
            }
        }
    }
    L.chunk_size = best_c;
    L.n_chunks = place(a, grp, n, G, best_c, (size_t)-1, chunk_of, off_of, coff, &L.arena, &L.chunk_max);
    for (int i = 0; i < n; i++) L.n_alone += a[i] > best_c;
    lm_free(a);
    lm_free(d);
    return L;
}

lm_param *params_add(lm_params *ps, const char *name, int ndim, int64_t rows, int64_t cols) {
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap : 16;
        if (cap > INT_MAX / 2) lm_abort(LM_ERR_RUNTIME, "params_add: more than %d tensors", INT_MAX / 2);
        cap *= 2;
        lm_param *np = lm_alloc(sizeof(lm_param) * (size_t)cap);
        if (ps->p) {
            memcpy(np, ps->p, sizeof(lm_param) * (size_t)ps->n);
            lm_free(ps->p);
        }
        ps->p = np;
        ps->cap = cap;
    }
    lm_param *p = &ps->p[ps->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->rows = rows;
    p->cols = ndim == 2 ? cols : 1;
    p->numel = (size_t)rows * (size_t)p->cols;
    p->decay = ndim == 2;
    p->full_rows = p->valid_rows = rows;
    p->full_cols = p->cols;
    p->norm_here = 1;
    return p;
}

static void layout(lm_params *ps, size_t granule, lm_device *d) {
    size_t n = (size_t)ps->n, *sizes = lm_alloc(sizeof(size_t) * (n ? n : 1)), *offs = lm_alloc(sizeof(size_t) * (n ? n : 1));
    int *chunk_of = lm_alloc(sizeof(int) * (n ? n : 1));
    /* frozen and trained tensors in separate chunks (chunks.h) */
    int *grp = lm_alloc(sizeof(int) * (n ? n : 1)), any_frozen = 0;
    ps->numel = 0;
    for (int i = 0; i < ps->n; i++) {
        sizes[i] = ps->p[i].numel;
        ps->numel += sizes[i];
        grp[i] = ps->p[i].frozen;
        any_frozen |= grp[i];
    }
    lm_free(ps->coff);
    ps->coff = lm_alloc(sizeof(size_t) * (n + 1)); /* at most one chunk per tensor */
    chunk_layout L = chunk_layout_of(sizes, any_frozen ? grp : NULL, ps->n, granule, 0, chunk_of, offs, ps->coff);
    lm_free(grp);
    ps->chunk_size = L.chunk_size;
    ps->n_chunks = L.n_chunks;
    ps->chunk_max = L.chunk_max;
    ps->arena = L.arena;
    ps->dev = d;
    if (ps->managed && !d) lm_abort(LM_ERR_RUNTIME, "chunks: a managed layout needs a device");
    ps->w = ps->managed ? NULL : d ? d->alloc(d, ps->arena * lm_dtype_size(d->dtype)) : lm_alloc(ps->arena * sizeof(float));
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        p->chunk = chunk_of[i];
        p->offset = offs[i];
        p->w = ps->managed ? NULL : d ? lm_at(d, ps->w, offs[i]) : (float *)ps->w + offs[i];
    }
    lm_free(sizes);
    lm_free(offs);
    lm_free(chunk_of);
}

void chunks_build(lm_params *ps, size_t granule) { layout(ps, granule, NULL); }
void chunks_build_on(lm_params *ps, size_t granule, lm_device *d) { layout(ps, granule, d); }

void params_alloc_grads(lm_params *ps) {
    lm_device *d = ps->dev;
    if (!d) { /* host float32 layout */
        ps->g = lm_alloc(ps->arena * sizeof(float));
        for (int i = 0; i < ps->n; i++) ps->p[i].g = (float *)ps->g + ps->p[i].offset;
        return;
    }
    ps->g = d->alloc(d, ps->arena * lm_dtype_size(d->dtype));
    for (int i = 0; i < ps->n; i++) ps->p[i].g = lm_at(d, ps->g, ps->p[i].offset);
}

void params_set_tensor(lm_params *ps, int i, const float *host) {
    lm_param *p = &ps->p[i];
    if (ps->dev)
        ps->dev->upload_f32(ps->dev, p->w, host, p->numel);
    else
        memcpy(p->w, host, p->numel * sizeof(float));
}

void params_alloc_state(lm_params *ps) {
    if (ps->dev) lm_abort(LM_ERR_RUNTIME, "params_alloc_state: host layouts only");
    ps->g = lm_alloc(ps->arena * sizeof(float));
    ps->m = lm_alloc(ps->arena * sizeof(float));
    ps->v = lm_alloc(ps->arena * sizeof(float));
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        p->g = (float *)ps->g + p->offset;
        p->m = ps->m + p->offset;
        p->v = ps->v + p->offset;
    }
}

void params_free(lm_params *ps) {
    if (ps->dev) {
        ps->dev->free(ps->dev, ps->w);
        ps->dev->free(ps->dev, ps->g);
    } else {
        lm_free(ps->w);
        lm_free(ps->g);
    }
    lm_free(ps->m);
    lm_free(ps->v);
    lm_free(ps->p);
    lm_free(ps->index);
    lm_free(ps->coff);
    memset(ps, 0, sizeof *ps);
}

/* FNV-1a of a tensor name, its low 32 bits (the table slot is its low bits). */
static uint32_t name_hash(const char *s) { return (uint32_t)lm_fnv1a_str(s); }

/* The name table over all ps->n tensors, at most half full; a later
 * duplicate name is left out so that lookups find the first one. */
static void index_build(lm_params *ps) {
    lm_free(ps->index);
    int cap = 16;
    while (cap < 2 * ps->n) cap *= 2;
    ps->index = lm_alloc(sizeof(int) * (size_t)cap);
    ps->index_cap = cap;
    for (int i = 0; i < ps->n; i++) {
        uint32_t h = name_hash(ps->p[i].name) & (uint32_t)(cap - 1);
        for (;; h = (h + 1) & (uint32_t)(cap - 1)) {
            int j = ps->index[h];
            if (!j) {
                ps->index[h] = i + 1;
                break;
            }
            if (!strcmp(ps->p[j - 1].name, ps->p[i].name)) break;
        }
    }
    ps->index_n = ps->n;
}

lm_param *params_find(lm_params *ps, const char *name) {
    if (!ps->n) return NULL;
    if (!ps->index || ps->index_n != ps->n) index_build(ps);
    uint32_t mask = (uint32_t)(ps->index_cap - 1);
    for (uint32_t h = name_hash(name) & mask;; h = (h + 1) & mask) {
        int j = ps->index[h];
        if (!j) return NULL;
        if (!strcmp(ps->p[j - 1].name, name)) return &ps->p[j - 1];
    }
}

int64_t params_full_index(const lm_param *p, size_t i) {
    int64_t r = (int64_t)i / p->cols, c = (int64_t)i % p->cols;
    if (r >= p->valid_rows) return -1;
    return (p->row0 + r) * p->full_cols + p->col0 + c;
}

/* Padding rows sit at the end of a row block, so the real part of [a, b) is
 * its prefix below valid_rows * cols. */
ckpt_tensor params_piece(const lm_param *p, size_t a, size_t b, float *data) {
    ckpt_tensor t = {p->name, p->ndim, p->full_rows, p->full_cols, 0, 0, NULL, 0, 0, 0, 0, NULL, NULL, NULL};
    if (p->tp_split != LM_TP_NONE) {
        t.row0 = p->row0;
        t.col0 = p->col0;
        t.brows = p->valid_rows;
        t.bcols = p->cols;
    }
    size_t real = (size_t)p->valid_rows * (size_t)p->cols;
    if (b > real) b = real;
    if (b <= a) return t;
    t.off = (int64_t)a;
    t.count = (int64_t)(b - a);
    t.data = data;
    return t;
}
