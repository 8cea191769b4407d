/* pack.c — see pack.h. */
#include "pack.h"
#include "common.h"
#include <stdlib.h>

/* Longest first; equal lengths keep input order (deterministic output). */
static int by_len_desc(const void *a, const void *b, void *ctx) {
    const int64_t *lens = ctx;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (lens[i] != lens[j]) return lens[i] > lens[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Exact first-fit decreasing: all n possible samples start with room cap; a
 * max-tree over their room finds the leftmost one with room >= len in
 * O(log n). Samples never opened have full room, so the leftmost fit is an
 * open sample when one fits, else the next new one: first fit, exactly. */
static int64_t first_fit_tree(const int64_t *lens, const int64_t *order, int64_t n, int64_t cap, int64_t *bin_of) {
    int64_t size = 1;
    while (size < n) size *= 2;
    int64_t *t = lm_alloc(sizeof(int64_t) * (size_t)(2 * size));
    for (int64_t i = 0; i < size; i++) t[size + i] = i < n ? cap : -1;
    for (int64_t i = size - 1; i >= 1; i--) t[i] = t[2 * i] > t[2 * i + 1] ? t[2 * i] : t[2 * i + 1];
    int64_t nbins = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k], node = 1;
        while (node < size) node = t[2 * node] >= lens[i] ? 2 * node : 2 * node + 1;
        int64_t b = node - size;
        bin_of[i] = b;
        if (b + 1 > nbins) nbins = b + 1;
        t[node] -= lens[i];
        for (node /= 2; node >= 1; node /= 2) t[node] = t[2 * node] > t[2 * node + 1] ? t[2 * node] : t[2 * node + 1];
    }
    lm_free(t);
    return nbins;
}

int64_t pack_docs(const int64_t *lens, int64_t n, int64_t cap, int window, int64_t *bin_of, int64_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int64_t), by_len_desc, (void *)lens);
    if (window <= 0) return n > 0 ? first_fit_tree(lens, order, n, cap, bin_of) : 0;
    int64_t nbins = 0;
    int64_t *room = lm_alloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k], b = -1;
        int64_t lo = nbins - window > 0 ? nbins - window : 0;
        for (int64_t c = lo; c < nbins; c++)
            if (room[c] >= lens[i]) {
                b = c;
                break;
            }
        if (b < 0) {
            b = nbins++;
            room[b] = cap;
        }
        room[b] -= lens[i];
        bin_of[i] = b;
    }
    lm_free(room);
    return nbins;
}
