/* pack.c — see pack.h. */
#include "pack.h"
#include "common.h"
#include <stdlib.h>

static const int64_t *g_lens;

/* Longest first; equal lengths keep input order (deterministic output). */
static int by_len_desc(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (g_lens[i] != g_lens[j]) return g_lens[i] > g_lens[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

int64_t pack_docs(const int64_t *lens, int64_t n, int64_t cap, int window, int64_t *bin_of, int64_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    g_lens = lens;
    qsort(order, (size_t)n, sizeof(int64_t), by_len_desc);
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
