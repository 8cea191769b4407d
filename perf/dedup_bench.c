/* dedup_bench.c — `make bench`: the deduplication of src/data/dedup.h on one
 * core, over the Debian fortunes corpora (English, Chinese and the rest).
 *
 *   dedup_bench [FILE|DIR ...]     (default /usr/share/games/fortunes)
 *
 * Documents are the texts between lines "%" of each fortune file (a
 * directory contributes its files with no '.' in their names: not the .dat
 * indexes, not the .u8 links); empty ones are left out. On one thread, each
 * figure the best of 3 timed runs, each run repeating the work until it
 * takes at least 0.3 s:
 *   - exact hashes (dedup_exact_hash) and their insertion into a hashset:
 *     documents/s and MB/s;
 *   - MinHash signatures at the defaults (perm 128, 5-code-point shingles)
 *     and over word 3-grams: documents/s, MB/s and shingles/s;
 *   - the LSH index: every document not an exact duplicate offered in file
 *     order at threshold 0.8 (offers/s, near-duplicates found) and the
 *     index's bytes per kept document (lsh_bytes_per_doc), with the index
 *     sized by the document count and grown from nothing;
 *   - for the pairs found over 5-code-point shingles, their true Jaccard
 *     similarity, from the shingle sets computed here (FNV-1a of each
 *     shingle's bytes, sorted), independently of dedup.c. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "dedup.h"

typedef struct {
    char *buf;       /* all files, concatenated */
    size_t *off;     /* document d = buf[off[d], off[d] + len[d]) */
    size_t *len;
    int64_t n, cap;
    size_t bytes;    /* sum of len */
    size_t buflen, bufcap;
} corpus;

static void add_doc(corpus *c, size_t off, size_t len) {
    if (len == 0) return;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        c->off = lm_realloc(c->off, (size_t)c->cap * sizeof(size_t));
        c->len = lm_realloc(c->len, (size_t)c->cap * sizeof(size_t));
    }
    c->off[c->n] = off;
    c->len[c->n] = len;
    c->n++;
    c->bytes += len;
}

/* Appends one fortune file and cuts it into documents at lines "%". */
static void add_file(corpus *c, const char *path) {
    char err[LM_ERRLEN];
    size_t n;
    char *t = lm_read_file(path, &n, err, sizeof err);
    if (!t) lm_abort(LM_ERR_INPUT, "%s", err);
    if (c->buflen + n + 1 > c->bufcap) {
        while (c->buflen + n + 1 > c->bufcap) c->bufcap = c->bufcap ? 2 * c->bufcap : (1u << 20);
        c->buf = lm_realloc(c->buf, c->bufcap);
    }
    size_t base = c->buflen;
    memcpy(c->buf + base, t, n);
    c->buf[base + n] = '\n';
    c->buflen += n + 1;
    lm_free(t);
    size_t start = base, i = base;
    while (i < base + n) {
        size_t e = i;
        while (e < base + n && c->buf[e] != '\n') e++;
        if (e - i == 1 && c->buf[i] == '%') { /* a separator line */
            add_doc(c, start, i - start);
            start = e + 1;
        }
        i = e + 1;
    }
    if (start < base + n) add_doc(c, start, base + n - start);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_path(corpus *c, const char *path, int *nfiles) {
    struct stat st;
    if (stat(path, &st)) lm_abort(LM_ERR_INPUT, "%s: cannot stat", path);
    if (!S_ISDIR(st.st_mode)) {
        add_file(c, path);
        (*nfiles)++;
        return;
    }
    DIR *d = opendir(path);
    if (!d) lm_abort(LM_ERR_INPUT, "%s: cannot open", path);
    char **names = NULL;
    int nn = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strchr(e->d_name, '.')) continue;
        names = lm_realloc(names, (size_t)(nn + 1) * sizeof(char *));
        names[nn++] = lm_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nn, sizeof(char *), cmp_str); /* a fixed order */
    for (int i = 0; i < nn; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (!stat(p, &st) && S_ISREG(st.st_mode)) {
            add_file(c, p);
            (*nfiles)++;
        }
        lm_free(names[i]);
    }
    lm_free(names);
}

/* Best seconds per pass of fn over the corpus (3 runs of >= 0.3 s). */
typedef void (*pass_fn)(const corpus *, void *);
static double best_pass(const corpus *c, pass_fn fn, void *arg) {
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        int reps = 0;
        double t0 = lm_now(), t;
        do {
            fn(c, arg);
            reps++;
        } while ((t = lm_now() - t0) < 0.3);
        if (t / reps < best) best = t / reps;
    }
    return best;
}

static volatile uint64_t sink;

static void pass_exact(const corpus *c, void *arg) {
    (void)arg;
    lm_hashset *S = hashset_new(c->n);
    uint64_t x = 0;
    for (int64_t d = 0; d < c->n; d++) x += (uint64_t)hashset_insert(S, dedup_exact_hash(c->buf + c->off[d], c->len[d]));
    sink = x;
    hashset_free(S);
}

typedef struct {
    lm_minhash_cfg cfg;
    uint32_t *sigs; /* n * perm */
} sig_arg;

static void pass_sigs(const corpus *c, void *arg) {
    sig_arg *a = arg;
    for (int64_t d = 0; d < c->n; d++)
        minhash_sig(&a->cfg, c->buf + c->off[d], c->len[d], a->sigs + (size_t)d * a->cfg.perm);
}

typedef struct {
    const sig_arg *s;
    const char *dup; /* exact duplicates: not offered */
    int64_t expect;
    int64_t near, offers;
    size_t bpd;
    int64_t *match; /* [n]: the kept near-duplicate of each document, or -1 */
} lsh_arg;

static void pass_lsh(const corpus *c, void *arg) {
    lsh_arg *a = arg;
    lm_lsh *L = lsh_new(&a->s->cfg, a->expect);
    a->near = a->offers = 0;
    for (int64_t d = 0; d < c->n; d++) {
        if (a->dup[d]) continue;
        a->offers++;
        int64_t r = lsh_offer(L, a->s->sigs + (size_t)d * a->s->cfg.perm, d, 0.8);
        a->match[d] = r;
        if (r >= 0) a->near++;
    }
    a->bpd = lsh_bytes_per_doc(L);
    lsh_free(L);
}

/* Shingles of one document: units - ngram + 1, or 1 for a short one. */
static int64_t count_units(const char *t, size_t n, int words) {
    int64_t u = 0;
    int inword = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)t[i];
        if ((b & 0xC0) == 0x80) continue; /* continuation byte */
        if (!words) {
            u++;
            continue;
        }
        /* ASCII white space and CJK lead bytes (E2..E9: U+2000..U+9FFF, a
         * close enough count for the rate) */
        int sp = b == ' ' || (b >= 9 && b <= 13), cjk = b >= 0xE3 && b <= 0xE9;
        if (sp || cjk) inword = 0;
        if (cjk) u++;
        else if (!sp && !inword) {
            inword = 1;
            u++;
        }
    }
    return u;
}

/* The set of n-code-point shingles of a text (one for a shorter text), as
 * sorted unique 64-bit FNV-1a hashes of their bytes; returns the count. */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static int64_t shingle_set(const char *t, size_t n, int ng, uint64_t **out) {
    size_t *start = lm_calloc(n + 1, sizeof(size_t));
    int64_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)t[i] & 0xC0) != 0x80) start[u++] = i;
    start[u] = n;
    int64_t m = u >= ng ? u - ng + 1 : (u > 0);
    uint64_t *h = lm_calloc((size_t)m + 1, sizeof(uint64_t));
    for (int64_t i = 0; i < m; i++) {
        size_t e = u >= ng ? start[i + ng] : n;
        uint64_t x = 0xcbf29ce484222325ull;
        for (size_t k = start[i]; k < e; k++) x = (x ^ (unsigned char)t[k]) * 0x100000001b3ull;
        h[i] = x;
    }
    qsort(h, (size_t)m, sizeof(uint64_t), cmp_u64);
    int64_t k = 0;
    for (int64_t i = 0; i < m; i++)
        if (k == 0 || h[k - 1] != h[i]) h[k++] = h[i];
    lm_free(start);
    *out = h;
    return k;
}
static double true_jaccard(const corpus *c, int64_t a, int64_t b, int ng) {
    uint64_t *x, *y;
    int64_t nx = shingle_set(c->buf + c->off[a], c->len[a], ng, &x), ny = shingle_set(c->buf + c->off[b], c->len[b], ng, &y);
    int64_t i = 0, j = 0, in = 0;
    while (i < nx && j < ny) {
        if (x[i] == y[j]) in++, i++, j++;
        else if (x[i] < y[j]) i++;
        else j++;
    }
    lm_free(x);
    lm_free(y);
    return nx + ny - in > 0 ? (double)in / (double)(nx + ny - in) : 1.0;
}

static void report_sigs(const corpus *c, const char *name, sig_arg *a) {
    double t = best_pass(c, pass_sigs, a);
    int64_t sh = 0;
    for (int64_t d = 0; d < c->n; d++) {
        int64_t u = count_units(c->buf + c->off[d], c->len[d], a->cfg.words);
        sh += u >= a->cfg.ngram ? u - a->cfg.ngram + 1 : (u > 0);
    }
    printf("minhash %-22s %10.0f docs/s %8.2f MB/s %8.2f M shingles/s (%lld shingles%s)\n", name,
           (double)c->n / t, (double)c->bytes / t / 1e6, (double)sh / t / 1e6, (long long)sh,
           a->cfg.words ? ", approx." : "");
}

int main(int argc, char **argv) {
    corpus c = {0};
    int nfiles = 0;
    if (argc < 2) add_path(&c, "/usr/share/games/fortunes", &nfiles);
    for (int i = 1; i < argc; i++) add_path(&c, argv[i], &nfiles);
    if (c.n == 0) lm_abort(LM_ERR_INPUT, "dedup_bench: no documents");
    printf("== dedup_bench: %d files, %lld documents, %.2f MB (mean %.0f bytes), 1 thread ==\n", nfiles,
           (long long)c.n, (double)c.bytes / 1e6, (double)c.bytes / (double)c.n);

    /* exact */
    double t = best_pass(&c, pass_exact, NULL);
    lm_hashset *S = hashset_new(c.n);
    char *dup = lm_calloc((size_t)c.n, 1);
    int64_t nexact = 0;
    for (int64_t d = 0; d < c.n; d++)
        if (!hashset_insert(S, dedup_exact_hash(c.buf + c.off[d], c.len[d]))) {
            dup[d] = 1;
            nexact++;
        }
    printf("exact   hash + hashset_insert      %10.0f docs/s %8.2f MB/s; %lld exact duplicates\n",
           (double)c.n / t, (double)c.bytes / t / 1e6, (long long)nexact);
    hashset_free(S);

    sig_arg ch = {.cfg = minhash_default(1234)};
    ch.sigs = lm_calloc((size_t)c.n * ch.cfg.perm, sizeof(uint32_t));
    report_sigs(&c, "chars n=5 perm=128", &ch);
    sig_arg wd = {.cfg = minhash_default(1234)};
    wd.cfg.words = 1;
    wd.cfg.ngram = 3;
    wd.sigs = lm_calloc((size_t)c.n * wd.cfg.perm, sizeof(uint32_t));
    report_sigs(&c, "words n=3 perm=128", &wd);

    const sig_arg *which[2] = {&ch, &wd};
    const char *wname[2] = {"chars n=5", "words n=3"};
    int64_t *match = lm_calloc((size_t)c.n, sizeof(int64_t));
    for (int w = 0; w < 2; w++)
        for (int grow = 0; grow < 2; grow++) {
            lsh_arg la = {.s = which[w], .dup = dup, .expect = grow ? 0 : c.n, .match = match};
            t = best_pass(&c, pass_lsh, &la);
            printf("lsh     %s bands 16 x rows 8, %s: %10.0f offers/s; %lld near-duplicates at J >= 0.8 "
                   "of %lld offered; %zu bytes per kept doc\n",
                   wname[w], grow ? "grown from 0  " : "sized to docs", (double)la.offers / t, (long long)la.near,
                   (long long)la.offers, la.bpd);
            if (w == 0 && grow == 0) { /* the found pairs' true similarity */
                int64_t np = 0, below[3] = {0};
                double jmin = 1, jsum = 0;
                for (int64_t d = 0; d < c.n; d++) {
                    if (dup[d] || match[d] < 0) continue;
                    double j = true_jaccard(&c, d, match[d], ch.cfg.ngram);
                    np++;
                    jsum += j;
                    if (j < jmin) jmin = j;
                    below[0] += j < 0.8;
                    below[1] += j < 0.7;
                    below[2] += j < 0.6;
                }
                printf("        chars n=5 pairs found: true Jaccard mean %.3f, min %.3f; %lld below 0.8, %lld below "
                       "0.7, %lld below 0.6 (of %lld)\n",
                       np ? jsum / (double)np : 0.0, np ? jmin : 0.0, (long long)below[0], (long long)below[1],
                       (long long)below[2], (long long)np);
            }
        }
    lm_free(match);
    lm_free(ch.sigs);
    lm_free(wd.sigs);
    lm_free(dup);
    lm_free(c.buf);
    lm_free(c.off);
    lm_free(c.len);
    return 0;
}
