/* clean_bench.c — throughput of clean_doc (src/data/clean.h) on one core.
 *
 *   clean_bench [-r RULES] [-n REPS] [-w] FILE...
 *
 * Each FILE is split into documents at lines holding only "%" (the fortune
 * format; a file without such lines is one document), or with -w each whole
 * file is one document. Every document goes through clean_doc with the
 * built-in rules (or RULES) REPS times (default 5); the best pass is reported
 * as documents/s and MB/s of input text, with the documents kept and
 * rejected per rule, and the same for clean_normalise alone. Single thread:
 * the per-core figure that prep's OpenMP loop multiplies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clean.h"
#include "common.h"

typedef struct {
    const char *p;
    size_t n;
} doc;

int main(int argc, char **argv) {
    const char *rules = NULL;
    int reps = 5, whole = 0, opt;
    while ((opt = getopt(argc, argv, "r:n:w")) != -1) {
        if (opt == 'r') rules = optarg;
        else if (opt == 'n') reps = atoi(optarg);
        else if (opt == 'w') whole = 1;
        else {
            fprintf(stderr, "usage: clean_bench [-r RULES] [-n REPS] [-w] FILE...\n");
            return 2;
        }
    }
    if (optind >= argc || reps < 1) {
        fprintf(stderr, "usage: clean_bench [-r RULES] [-n REPS] [-w] FILE...\n");
        return 2;
    }
    char err[LM_ERRLEN];
    lm_clean *cl = clean_load(rules, err, sizeof err);
    if (!cl) {
        fprintf(stderr, "clean_bench: %s\n", err);
        return 2;
    }
    size_t ndoc = 0, cap = 1024, bytes = 0;
    doc *docs = lm_alloc(cap * sizeof *docs);
    for (int f = optind; f < argc; f++) {
        size_t len;
        char *t = lm_read_file(argv[f], &len, err, sizeof err);
        if (!t) {
            fprintf(stderr, "clean_bench: %s\n", err);
            return 2;
        }
        size_t a = 0; /* start of the current document */
        for (size_t i = 0; i <= len;) {
            const char *nl = i < len ? memchr(t + i, '\n', len - i) : NULL;
            size_t e = nl ? (size_t)(nl - t) : len; /* line [i, e) */
            int sep = !whole && e == i + 1 && t[i] == '%';
            if (sep || i >= len) {
                size_t b = i;
                if (b > a) {
                    if (ndoc == cap) docs = lm_realloc(docs, (cap *= 2) * sizeof *docs);
                    docs[ndoc++] = (doc){t + a, b - a};
                    bytes += b - a;
                }
                a = e + 1;
            }
            if (i >= len) break;
            i = e + 1;
            if (i > len) i = len;
        }
    }
    int nr = clean_n_rules();
    size_t *rej = lm_calloc((size_t)nr + 1, sizeof *rej);
    double best = 1e30, best_norm = 1e30;
    for (int r = 0; r < reps; r++) {
        memset(rej, 0, ((size_t)nr + 1) * sizeof *rej);
        double t0 = lm_now();
        for (size_t i = 0; i < ndoc; i++) {
            char *out;
            size_t on;
            int k = clean_doc(cl, NULL, docs[i].p, docs[i].n, &out, &on);
            rej[k + 1]++;
            lm_free(out);
        }
        double t = lm_now() - t0;
        if (t < best) best = t;
        t0 = lm_now();
        for (size_t i = 0; i < ndoc; i++) {
            char *out;
            size_t on;
            clean_normalise(docs[i].p, docs[i].n, &out, &on);
            lm_free(out);
        }
        t = lm_now() - t0;
        if (t < best_norm) best_norm = t;
    }
    printf("clean_bench: %zu documents, %.2f MB (%s), best of %d, 1 thread\n", ndoc, bytes / 1e6,
           whole ? "whole files" : "split at % lines", reps);
    printf("  clean_doc:       %8.3f s  %10.0f docs/s  %8.1f MB/s\n", best, ndoc / best, bytes / 1e6 / best);
    printf("  clean_normalise: %8.3f s  %10.0f docs/s  %8.1f MB/s\n", best_norm, ndoc / best_norm,
           bytes / 1e6 / best_norm);
    printf("  kept %zu; rejected by:", rej[0]);
    for (int r = 0; r < nr; r++)
        if (rej[r + 1]) printf(" %s %zu", clean_rule_name(r), rej[r + 1]);
    printf("\n");
    clean_free(cl);
    return 0;
}
