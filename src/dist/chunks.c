/* chunks.c — chunk-size search and placement of tensors into chunks. */
#include "chunks.h"
#include "common.h"
#include "hash.h"
#include <limits.h>
#include <string.h>

#define ALIGN 16 /* elements: each tensor starts on a 64-byte boundary */

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Next-fit in model order: tensors keep the order in which backward produces
 * their gradients (reversed), so a chunk's gradients complete together.
 * grp (NULL: none): a new chunk also starts where grp[i] != grp[i-1]. */
static size_t pack_grp(const size_t *sizes, const int *grp, int n, size_t align, size_t chunk, int *chunk_of,
                       size_t *off_of) {
    size_t nchunks = 0, fill = chunk;
    for (int i = 0; i < n; i++) {
        size_t s = round_up(sizes[i], align);
        if (fill + s > chunk || (grp && i > 0 && grp[i] != grp[i - 1])) {
            nchunks++;
            fill = 0;
        }
        if (chunk_of) chunk_of[i] = (int)nchunks - 1;
        if (off_of) off_of[i] = (nchunks - 1) * chunk + fill;
        fill += s;
    }
    return nchunks;
}

static size_t pack(const size_t *sizes, int n, size_t align, size_t chunk, int *chunk_of, size_t *off_of) {
    return pack_grp(sizes, NULL, n, align, chunk, chunk_of, off_of);
}

/* Search over candidate sizes for the least padding. The padding of a
 * layout is n_chunks*size - sum(sizes); the search is exhaustive over the
 * range, which is cheap (a pass over the tensor list per candidate). */
static size_t search_grp(const size_t *sizes, const int *grp, int n, size_t align, size_t range, size_t step) {
    size_t largest = 0, used = 0;
    for (int i = 0; i < n; i++) {
        size_t s = round_up(sizes[i], align);
        if (s > largest) largest = s;
        used += s;
    }
    if (step < align) step = align;
    step = round_up(step, align);
    size_t best = largest, best_waste = (size_t)-1;
    for (size_t c = largest; c <= largest + range; c += step) {
        size_t waste = pack_grp(sizes, grp, n, align, c, NULL, NULL) * c - used;
        if (waste < best_waste) {
            best_waste = waste;
            best = c;
        }
        if (waste == 0) break;
    }
    return best;
}

size_t chunk_search(const size_t *sizes, int n, size_t align, size_t range, size_t step) {
    return search_grp(sizes, NULL, n, align, range, step);
}

/* The search range above the largest tensor: up to 16M elements (64 MiB of
 * float32), but no further than total/8, so that a model has at least about
 * eight chunks whenever its largest tensor allows: a chunk is the bucket
 * whose reduction overlaps the rest of backward, and one chunk holding the
 * whole model would leave nothing to overlap. When the largest tensor is
 * itself above total/8, the range is largest/4, which leaves room to find a
 * size with little padding at a small cost in chunk count. */
size_t chunk_range(const size_t *sizes, int n) {
    size_t largest = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t s = round_up(sizes[i], ALIGN);
        if (s > largest) largest = s;
        total += s;
    }
    size_t cap = total / 8 > largest ? total / 8 - largest : 0;
    if (cap < largest / 4) cap = largest / 4;
    return cap < ((size_t)16 << 20) ? cap : (size_t)16 << 20;
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

/* The chunk-size search passes over the tensor list once per candidate
 * size; its candidates (every 1024 elements of the range, up to 16384 of
 * them) times the tensors is kept under SEARCH_WORK, so that its cost stays
 * linear in the tensor count: a model with more than SEARCH_WORK / 16384
 * tensors (about 450 layers) gets a coarser step. Smaller models search
 * exactly as before. */
#define SEARCH_WORK ((size_t)1 << 26)
static size_t searched_grp(const size_t *sizes, const int *grp, int n) {
    size_t range = chunk_range(sizes, n), step = 1024;
    size_t per = n > 0 ? SEARCH_WORK / (size_t)n : SEARCH_WORK; /* candidates allowed */
    if (per < 1) per = 1;
    if (range / step + 1 > per) step = round_up(range / per + 1, 1024);
    return search_grp(sizes, grp, n, ALIGN, range, step);
}

size_t chunk_searched(const size_t *sizes, int n) { return searched_grp(sizes, NULL, n); }


size_t chunk_round(size_t searched, size_t granule) {
    if (granule < ALIGN) granule = ALIGN;
    return round_up(searched, round_up(granule, ALIGN));
}

size_t chunk_pack(const size_t *sizes, int n, size_t chunk, int *chunk_of, size_t *off_of) {
    return pack(sizes, n, ALIGN, chunk, chunk_of, off_of);
}

static void layout(lm_params *ps, size_t granule, lm_device *d) {
    size_t *sizes = lm_alloc(sizeof(size_t) * (size_t)ps->n);
    size_t *offs = lm_alloc(sizeof(size_t) * (size_t)ps->n);
    int *chunk_of = lm_alloc(sizeof(int) * (size_t)ps->n);
    /* frozen and trained tensors in separate chunks (chunks.h) */
    int *grp = lm_alloc(sizeof(int) * (size_t)(ps->n ? ps->n : 1)), any_frozen = 0;
    ps->numel = 0;
    for (int i = 0; i < ps->n; i++) {
        sizes[i] = ps->p[i].numel;
        ps->numel += sizes[i];
        grp[i] = ps->p[i].frozen;
        any_frozen |= grp[i];
    }
    const int *g = any_frozen ? grp : NULL;
    ps->chunk_size = chunk_round(searched_grp(sizes, g, ps->n), granule);
    ps->n_chunks = (int)pack_grp(sizes, g, ps->n, ALIGN, ps->chunk_size, chunk_of, offs);
    lm_free(grp);
    ps->arena = (size_t)ps->n_chunks * ps->chunk_size;
    lm_free(ps->coff);
    ps->coff = lm_alloc(sizeof(size_t) * (size_t)(ps->n_chunks + 1));
    for (int c = 0; c <= ps->n_chunks; c++) ps->coff[c] = (size_t)c * ps->chunk_size;
    ps->chunk_max = ps->chunk_size;
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
