/* prep_assign.c — categories, the validation hold-out and the bins of
 * `lamina prep` (SPEC §9; see prep.h).
 *
 * Categories are numbered in the order of their first document in global
 * order. Per category c with n kept documents (numbered 0..n-1 in global
 * order): a seeded permutation of 0..n-1 (Fisher-Yates, counter-based
 * random numbers keyed by the seed and the category's name) picks its first
 * round(f n) as the validation documents; the m = n - round(f n) others, the
 * training documents (numbered 0..m-1 in global order), are shuffled by
 * another such permutation pi and dealt round-robin: the document at
 * position i of pi goes to bin i mod K, so every bin gets floor(m/K) or
 * ceil(m/K) documents. Every rank computes the same permutations (O(n) per
 * category), and applies them to its own documents. */
#include "common.h"
#include "prep.h"
#include "rng.h"
#include <math.h>
#include <string.h>

/* A string -> index table (open addressing) for category names. */
typedef struct {
    const char **key;
    int *val;
    size_t cap, n;
} strtab;

static void tab_put(strtab *t, const char *s, int v) {
    if (2 * (t->n + 1) > t->cap) {
        strtab u = {lm_calloc(t->cap ? 2 * t->cap : 64, sizeof(char *)), lm_calloc(t->cap ? 2 * t->cap : 64, sizeof(int)),
                    t->cap ? 2 * t->cap : 64, 0};
        for (size_t i = 0; i < t->cap; i++)
            if (t->key[i]) tab_put(&u, t->key[i], t->val[i]);
        lm_free(t->key);
        lm_free(t->val);
        *t = u;
    }
    size_t i = lm_fnv1a_str(s) & (t->cap - 1);
    while (t->key[i] && strcmp(t->key[i], s)) i = (i + 1) & (t->cap - 1);
    if (!t->key[i]) t->n++;
    t->key[i] = s;
    t->val[i] = v;
}

static int tab_find(const strtab *t, const char *s) {
    if (!t->cap) return -1;
    size_t i = lm_fnv1a_str(s) & (t->cap - 1);
    while (t->key[i]) {
        if (!strcmp(t->key[i], s)) return t->val[i];
        i = (i + 1) & (t->cap - 1);
    }
    return -1;
}

static void tab_free(strtab *t) {
    lm_free(t->key);
    lm_free(t->val);
}

static const char *doc_category(const prep_run *r, const prep_doc *d) {
    return d->catname ? d->catname : r->files[d->file].category;
}

int prep_categories(prep_run *r, char *err, size_t errlen) {
    int rc = 0, any = 0;
    for (int64_t i = 0; i < r->ndocs && !any; i++) any = doc_category(r, &r->docs[i]) != NULL;
    comm_allreduce_max_i32(r->g, &any, 1);
    if (!any) {
        r->ncats = 1;
        r->cats = lm_calloc(1, sizeof(char *));
        r->cats[0] = lm_strdup("default");
        for (int64_t i = 0; i < r->ndocs; i++) r->docs[i].cat = 0;
        return 0;
    }
    for (int64_t i = 0; i < r->ndocs && !rc; i++)
        if (!doc_category(r, &r->docs[i]))
            rc = lm_err(err, errlen, LM_ERR_INPUT,
                        "prep: %s:%lld: the document has no category (other documents have one): give --category "
                        "NAME before the file, or a \"category\" field",
                        r->files[r->docs[i].file].path, (long long)r->docs[i].line);
    rc = comm_agree(r->g, rc, err, errlen);
    if (rc) return rc;
    /* this rank's names in first-seen order, each with its first global document */
    strtab loc = {0};
    char *blob = NULL;
    size_t blen = 0, bcap = 0;
    const char *last = NULL;
    for (int64_t i = 0; i < r->ndocs; i++) {
        const char *c = doc_category(r, &r->docs[i]);
        if (c == last || tab_find(&loc, c) >= 0) {
            last = c;
            continue;
        }
        last = c;
        tab_put(&loc, c, 1);
        size_t n = strlen(c) + 1;
        int64_t gid = r->gdoc0 + i;
        if (blen + n + 8 > bcap) {
            bcap = 2 * (blen + n + 8);
            blob = lm_realloc(blob, bcap);
        }
        memcpy(blob + blen, &gid, 8);
        memcpy(blob + blen + 8, c, n);
        blen += 8 + n;
    }
    tab_free(&loc);
    size_t *sizes = lm_calloc((size_t)r->g->size, sizeof(size_t));
    char *all = prep_allgatherv(r->g, blob, blen, sizes);
    lm_free(blob);
    size_t tot = 0;
    for (int q = 0; q < r->g->size; q++) tot += sizes[q];
    /* ranks' lists are in global order already, rank after rank: the first
     * occurrence of a name is its first document */
    strtab glob = {0};
    for (size_t o = 0; o < tot;) {
        const char *c = all + o + 8;
        if (tab_find(&glob, c) < 0) {
            r->cats = lm_realloc(r->cats, sizeof(char *) * (size_t)(r->ncats + 1));
            r->cats[r->ncats] = lm_strdup(c);
            tab_put(&glob, r->cats[r->ncats], r->ncats);
            r->ncats++;
        }
        o += 8 + strlen(c) + 1;
    }
    last = NULL;
    int lastv = -1;
    for (int64_t i = 0; i < r->ndocs; i++) {
        const char *c = doc_category(r, &r->docs[i]);
        if (c != last) lastv = tab_find(&glob, c);
        last = c;
        r->docs[i].cat = lastv;
    }
    tab_free(&glob);
    lm_free(all);
    lm_free(sizes);
    return 0;
}

/* Per category: documents of this rank that pass `want` (0: kept, 1: kept
 * training), the totals over ranks and this rank's offset. */
static void count(const prep_run *r, int want, int64_t *total, int64_t *offset) {
    int p = r->g->size, me = r->g->rank, C = r->ncats;
    int64_t *m = lm_calloc((size_t)p * (size_t)C, sizeof(int64_t));
    for (int64_t i = 0; i < r->ndocs; i++) {
        const prep_doc *d = &r->docs[i];
        if (d->status == PREP_KEPT && (want == 0 || d->bin >= 0)) m[(size_t)me * (size_t)C + (size_t)d->cat]++;
    }
    comm_allreduce_sum_i64(r->g, m, (size_t)p * (size_t)C);
    for (int c = 0; c < C; c++) {
        total[c] = offset[c] = 0;
        for (int q = 0; q < p; q++) {
            if (q < me) offset[c] += m[(size_t)q * (size_t)C + (size_t)c];
            total[c] += m[(size_t)q * (size_t)C + (size_t)c];
        }
    }
    lm_free(m);
}

/* perm[0..n) = a seeded permutation of 0..n-1 (Fisher-Yates). */
static void shuffle(int64_t *perm, int64_t n, uint64_t key) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static uint64_t cat_key(const prep_run *r, const char *what, int c) {
    return rng_mix64(rng_stream(r->seed, what) ^ lm_fnv1a_str(r->cats[c]));
}

void prep_assign(prep_run *r) {
    int C = r->ncats;
    int64_t *tot = lm_calloc((size_t)C, sizeof(int64_t)), *off = lm_calloc((size_t)C, sizeof(int64_t));
    int64_t **map = lm_calloc((size_t)C, sizeof(int64_t *));
    for (int64_t i = 0; i < r->ndocs; i++) r->docs[i].bin = 0;
    /* the validation documents: bin -1 (map[c][j] = 1 for the held-out j) */
    if (r->valid_fraction > 0) {
        count(r, 0, tot, off);
        for (int c = 0; c < C; c++) {
            int64_t n = tot[c], v = llround(r->valid_fraction * (double)n);
            int64_t *perm = lm_alloc(sizeof(int64_t) * (size_t)(n ? n : 1));
            map[c] = lm_calloc((size_t)(n ? n : 1), sizeof(int64_t));
            shuffle(perm, n, cat_key(r, "prep.valid", c));
            for (int64_t k = 0; k < v; k++) map[c][perm[k]] = 1;
            lm_free(perm);
        }
        for (int64_t i = 0; i < r->ndocs; i++) {
            prep_doc *d = &r->docs[i];
            if (d->status == PREP_KEPT) d->bin = map[d->cat][off[d->cat]++] ? -1 : 0;
        }
        for (int c = 0; c < C; c++) lm_free(map[c]);
    }
    /* the bins of the training documents (map[c][j] = bin of the j-th) */
    count(r, 1, tot, off);
    for (int c = 0; c < C; c++) {
        int64_t m = tot[c];
        int64_t *perm = lm_alloc(sizeof(int64_t) * (size_t)(m ? m : 1));
        map[c] = lm_alloc(sizeof(int64_t) * (size_t)(m ? m : 1));
        shuffle(perm, m, cat_key(r, "prep.bins", c));
        for (int64_t i = 0; i < m; i++) map[c][perm[i]] = i % r->bins;
        lm_free(perm);
    }
    for (int64_t i = 0; i < r->ndocs; i++) {
        prep_doc *d = &r->docs[i];
        if (d->status == PREP_KEPT && d->bin >= 0) d->bin = (int32_t)map[d->cat][off[d->cat]++];
    }
    for (int c = 0; c < C; c++) lm_free(map[c]);
    lm_free(map);
    lm_free(tot);
    lm_free(off);
}

void prep_counts(const prep_run *r, int64_t *train, int64_t *valid) {
    int64_t *off = lm_calloc((size_t)r->ncats, sizeof(int64_t));
    count(r, 0, valid, off);
    count(r, 1, train, off);
    for (int c = 0; c < r->ncats; c++) valid[c] -= train[c];
    lm_free(off);
}
