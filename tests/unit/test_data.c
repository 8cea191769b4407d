/* test_data.c — the data loader (src/data/data.h) over token files written into a
 * temporary directory: sample order with and without shuffle (permutation per
 * epoch, determinism, dependence on epoch and seed), the batch layout (inputs,
 * targets, padding, cutting), the global counts, independence of the
 * data-parallel layout, several files, and the errors (vocab_size too large,
 * a token id out of range, a missing file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "data.h"
#include "deck.h"
#include "rng.h"
#include "tokfile.h"
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];
static char g_err[LM_ERRLEN];

/* Token at position t of sample s of file `fid`: a value the test can
 * recompute, below 500. */
static uint32_t tok_of(int fid, int64_t s, int64_t t) { return (uint32_t)((fid * 131 + s * 37 + t * 7 + 1) % 500); }

/* Writes <dir>/<name>: n samples of the given lengths, tokens tok_of(fid, .). */
static void write_file(const char *name, int fid, const int64_t *lens, int64_t n, int64_t vocab, char *path,
                       size_t pathlen) {
    snprintf(path, pathlen, "%s/%s", g_dir, name);
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(n + 1));
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) off[i + 1] = off[i] + lens[i];
    uint32_t *tok = malloc(sizeof(uint32_t) * (size_t)(off[n] + 1));
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < lens[i]; t++) tok[off[i] + t] = tok_of(fid, i, t) % (uint32_t)vocab;
    int rc = tokfile_write(path, tok, off[n], off, n, vocab, 0, NULL, NULL, g_err, sizeof g_err);
    if (rc) fprintf(stderr, "# tokfile_write: %s\n", g_err);
    assert_int_equal(rc, 0);
    free(off);
    free(tok);
}

static void config(lm_config *c, const char *files, int seq_len, int shuffle, uint64_t seed) {
    deck_defaults(c);
    c->vocab_size = 1000;
    c->seq_len = seq_len;
    c->shuffle = shuffle;
    c->seed = seed;
    snprintf(c->train_files, sizeof c->train_files, "%s", files);
}

static lm_data *open_ok(const lm_config *c) {
    lm_data *d = data_open(c, g_err, sizeof g_err);
    if (!d) fprintf(stderr, "# data_open: %s\n", g_err);
    assert_non_null(d);
    return d;
}

/* Checks row j of a batch against sample s of file fid (length len). */
static void check_row(const lm_batch *b, int j, int fid, int64_t s, int64_t len) {
    int T = b->T;
    int64_t L = len < T + 1 ? len : T + 1;
    const int32_t *ids = b->ids + (size_t)j * T, *tg = b->targets + (size_t)j * T;
    for (int t = 0; t < T; t++) {
        if (t < L - 1) {
            assert_int_equal(ids[t], (int32_t)tok_of(fid, s, t));
            assert_int_equal(tg[t], (int32_t)tok_of(fid, s, t + 1));
        } else {
            assert_int_equal(ids[t], 0);
            assert_int_equal(tg[t], -1);
        }
    }
}

static void poison(lm_batch *b) {
    size_t n = (size_t)b->n_micro * (size_t)b->B * (size_t)b->T;
    for (size_t i = 0; i < n; i++) b->ids[i] = b->targets[i] = 77;
}

/* ------------------------------------------------------------------ order */

static void test_no_shuffle(void **state) {
    (void)state;
    int64_t lens[10] = {3, 4, 5, 6, 7, 1, 2, 3, 4, 5};
    char path[512];
    write_file("order.h5", 0, lens, 10, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 0, 1234);
    lm_data *d = open_ok(&c);
    assert_int_equal(data_n_samples(d), 10);
    for (int64_t g = 0; g < 55; g++) assert_int_equal(data_sample_at(d, g), g % 10);
    data_close(d);
}

static int is_perm(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_shuffle(void **state) {
    (void)state;
    const int64_t n = 37;
    int64_t lens[37];
    for (int i = 0; i < n; i++) lens[i] = 2 + i % 5;
    char path[512];
    write_file("shuffle.h5", 0, lens, n, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 1, 1234);
    lm_data *d1 = open_ok(&c), *d2 = open_ok(&c);
    const int E = 6;
    int64_t perm[6][37];
    for (int e = 0; e < E; e++) {
        for (int64_t i = 0; i < n; i++) perm[e][i] = data_sample_at(d1, e * n + i);
        assert_true(is_perm(perm[e], n));
        int ident = 1;
        for (int64_t i = 0; i < n; i++) ident &= perm[e][i] == i;
        assert_false(ident);
    }
    for (int e = 0; e + 1 < E; e++)
        for (int f = e + 1; f < E; f++) assert_memory_not_equal(perm[e], perm[f], sizeof perm[e]);
    /* an independent loader, read backwards and jumping between epochs (the
     * loader caches two epochs), names the same samples */
    for (int e = E - 1; e >= 0; e--)
        for (int64_t i = n - 1; i >= 0; i--) assert_int_equal(data_sample_at(d2, e * n + i), perm[e][i]);
    const int jumps[] = {0, 3, 0, 5, 3, 1, 5, 0};
    for (int k = 0; k < 8; k++)
        for (int64_t i = 0; i < n; i += 5) assert_int_equal(data_sample_at(d2, jumps[k] * n + i), perm[jumps[k]][i]);
    /* another seed, another order */
    lm_config c2;
    config(&c2, path, 8, 1, 1235);
    lm_data *d3 = open_ok(&c2);
    for (int e = 0; e < 2; e++) {
        int64_t q[37];
        for (int64_t i = 0; i < n; i++) q[i] = data_sample_at(d3, e * n + i);
        assert_true(is_perm(q, n));
        assert_memory_not_equal(q, perm[e], sizeof q);
    }
    data_close(d1);
    data_close(d2);
    data_close(d3);
}

/* The shuffle is a uniform permutation: over many epochs of 8 samples the
 * first slot takes every sample about equally often, and the mean number of
 * fixed points is 1 (Sattolo's variant, an off-by-one of Fisher-Yates,
 * never leaves a sample in place). */
static void test_shuffle_uniform(void **state) {
    (void)state;
    int64_t lens[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    char path[512];
    write_file("uniform.h5", 0, lens, 8, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 1, 99);
    lm_data *d = open_ok(&c);
    const int E = 8000;
    int first[8] = {0}, last[8] = {0};
    long fixed = 0;
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < 8; i++) fixed += data_sample_at(d, (int64_t)e * 8 + i) == i;
        first[data_sample_at(d, (int64_t)e * 8)]++;
        last[data_sample_at(d, (int64_t)e * 8 + 7)]++;
    }
    double chi_f = 0, chi_l = 0, ex = E / 8.0;
    for (int k = 0; k < 8; k++) {
        chi_f += (first[k] - ex) * (first[k] - ex) / ex;
        chi_l += (last[k] - ex) * (last[k] - ex) / ex;
    }
    fprintf(stderr, "# shuffle: fixed points per epoch %.3f, chi2 first %.1f last %.1f (7 dof)\n",
            (double)fixed / E, chi_f, chi_l);
    assert_true(fabs((double)fixed / E - 1.0) < 0.05);
    assert_true(chi_f < 24.3 && chi_l < 24.3); /* 0.999 quantile, 7 dof */
    data_close(d);
}

/* ----------------------------------------------------------------- layout */

static void test_fill_layout(void **state) {
    (void)state;
    /* T = 8, so T + 1 = 9: lengths below, at and above it, and empty */
    int64_t lens[8] = {1, 3, 9, 12, 0, 5, 2, 10};
    char path[512];
    write_file("layout.h5", 3, lens, 8, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 0, 1);
    lm_data *d = open_ok(&c);
    lm_batch b;
    batch_alloc(&b, 2, 4, 8);
    assert_true(b.n_micro == 2 && b.B == 4 && b.T == 8);
    poison(&b);
    assert_int_equal(data_fill(d, 0, 8, 0, 1, &b, g_err, sizeof g_err), 0);
    for (int j = 0; j < 8; j++) check_row(&b, j, 3, j, lens[j]);
    assert_int_equal(b.targets_global, 0 + 2 + 8 + 8 + 0 + 4 + 1 + 8);
    assert_int_equal(b.targets_local, b.targets_global);
    assert_int_equal(b.n_cut_global, 2);
    /* a batch that wraps past the end of the data: samples 6, 7, 0, 1 */
    lm_batch b4;
    batch_alloc(&b4, 1, 4, 8);
    poison(&b4);
    assert_int_equal(data_fill(d, 6, 4, 0, 1, &b4, g_err, sizeof g_err), 0);
    const int64_t want[4] = {6, 7, 0, 1};
    for (int j = 0; j < 4; j++) check_row(&b4, j, 3, want[j], lens[want[j]]);
    assert_int_equal(b4.targets_global, 1 + 8 + 0 + 2);
    assert_int_equal(b4.n_cut_global, 1);
    /* step s of a later epoch: first = (s-1)*GB past n_samples */
    poison(&b4);
    assert_int_equal(data_fill(d, 8 * 5 + 2, 4, 0, 1, &b4, g_err, sizeof g_err), 0);
    for (int j = 0; j < 4; j++) check_row(&b4, j, 3, 2 + j, lens[2 + j]);
    /* a longer seq_len: nothing is cut */
    lm_config c2;
    config(&c2, path, 16, 0, 1);
    lm_data *d2 = open_ok(&c2);
    lm_batch b16;
    batch_alloc(&b16, 1, 8, 16);
    assert_int_equal(data_fill(d2, 0, 8, 0, 1, &b16, g_err, sizeof g_err), 0);
    for (int j = 0; j < 8; j++) check_row(&b16, j, 3, j, lens[j]);
    assert_int_equal(b16.n_cut_global, 0);
    assert_int_equal(b16.targets_global, 0 + 2 + 8 + 11 + 0 + 4 + 1 + 9);
    batch_free(&b16);
    batch_free(&b4);
    batch_free(&b);
    assert_null(b.ids);
    data_close(d2);
    data_close(d);
}

/* Fills the global batch at `first` once per rank of a dp-way layout and
 * concatenates the rows (rank order); checks the per-rank counts. */
static void fill_layout(lm_data *d, int64_t first, int GB, int dp, int T, int32_t *ids, int32_t *tg, int64_t *tglobal,
                        int *ncut) {
    int per = GB / dp;
    int64_t local_sum = 0;
    for (int r = 0; r < dp; r++) {
        lm_batch b;
        /* micro-batches of B = 1 when per is odd, else 2 */
        int B = per % 2 ? 1 : 2;
        batch_alloc(&b, per / B, B, T);
        poison(&b);
        int rc = data_fill(d, first, GB, r, dp, &b, g_err, sizeof g_err);
        if (rc) fprintf(stderr, "# data_fill: %s\n", g_err);
        assert_int_equal(rc, 0);
        memcpy(ids + (size_t)r * per * T, b.ids, sizeof(int32_t) * (size_t)per * T);
        memcpy(tg + (size_t)r * per * T, b.targets, sizeof(int32_t) * (size_t)per * T);
        if (r == 0) {
            *tglobal = b.targets_global;
            *ncut = b.n_cut_global;
        } else {
            assert_int_equal(b.targets_global, *tglobal);
            assert_int_equal(b.n_cut_global, *ncut);
        }
        local_sum += b.targets_local;
        batch_free(&b);
    }
    assert_int_equal(local_sum, *tglobal);
}

static void test_layout_independence(void **state) {
    (void)state;
    const int64_t n = 13;
    int64_t lens[13];
    uint64_t k = rng_stream(5, "test.data.lens");
    for (int i = 0; i < n; i++) lens[i] = (int64_t)rng_below(k, (uint64_t)i, 21); /* 0 .. 20, T = 8 */
    char path[512];
    write_file("dp.h5", 1, lens, n, 500, path, sizeof path);
    const int T = 8;
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        lm_config c;
        config(&c, path, T, shuffle, 777);
        lm_data *d = open_ok(&c);
        const int64_t firsts[] = {0, 5, 11, 26, 50};
        const int GBs[] = {6, 12, 30}; /* 30 > n: one batch spans three epochs */
        for (int fi = 0; fi < 5; fi++)
            for (int gi = 0; gi < 3; gi++) {
                int GB = GBs[gi];
                size_t sz = (size_t)GB * T;
                int32_t *ids1 = malloc(sizeof(int32_t) * sz), *tg1 = malloc(sizeof(int32_t) * sz);
                int32_t *idsk = malloc(sizeof(int32_t) * sz), *tgk = malloc(sizeof(int32_t) * sz);
                int64_t tgl1, tglk;
                int cut1, cutk;
                fill_layout(d, firsts[fi], GB, 1, T, ids1, tg1, &tgl1, &cut1);
                /* the reference: row j is sample data_sample_at(first + j) */
                int64_t want_tg = 0;
                int want_cut = 0;
                for (int j = 0; j < GB; j++) {
                    int64_t s = data_sample_at(d, firsts[fi] + j);
                    if (!shuffle) assert_int_equal(s, (firsts[fi] + j) % n);
                    lm_batch one = {.n_micro = 1, .B = GB, .T = T, .ids = ids1, .targets = tg1};
                    check_row(&one, j, 1, s, lens[s]);
                    int64_t L = lens[s] < T + 1 ? lens[s] : T + 1;
                    want_tg += L > 1 ? L - 1 : 0;
                    want_cut += lens[s] > T + 1;
                }
                assert_int_equal(tgl1, want_tg);
                assert_int_equal(cut1, want_cut);
                const int dps[] = {2, 3, 6};
                for (int di = 0; di < 3; di++) {
                    if (GB % dps[di]) continue;
                    fill_layout(d, firsts[fi], GB, dps[di], T, idsk, tgk, &tglk, &cutk);
                    assert_memory_equal(ids1, idsk, sizeof(int32_t) * sz);
                    assert_memory_equal(tg1, tgk, sizeof(int32_t) * sz);
                    assert_int_equal(tglk, tgl1);
                    assert_int_equal(cutk, cut1);
                }
                free(ids1);
                free(tg1);
                free(idsk);
                free(tgk);
            }
        data_close(d);
    }
}

/* Ranks 0 and 1 of dp = 2, filled in one process one after the other, give
 * the two halves of the dp = 1 batch. */
static void test_two_ranks(void **state) {
    (void)state;
    int64_t lens[9] = {4, 9, 2, 11, 1, 6, 3, 8, 5};
    char path[512];
    write_file("ranks.h5", 2, lens, 9, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 1, 31337);
    lm_data *d = open_ok(&c);
    lm_batch all, r0, r1;
    batch_alloc(&all, 2, 2, 8);
    batch_alloc(&r0, 1, 2, 8);
    batch_alloc(&r1, 2, 1, 8);
    for (int64_t first = 0; first < 40; first += 4) {
        poison(&all);
        poison(&r0);
        poison(&r1);
        assert_int_equal(data_fill(d, first, 4, 0, 1, &all, g_err, sizeof g_err), 0);
        assert_int_equal(data_fill(d, first, 4, 0, 2, &r0, g_err, sizeof g_err), 0);
        assert_int_equal(data_fill(d, first, 4, 1, 2, &r1, g_err, sizeof g_err), 0);
        assert_memory_equal(all.ids, r0.ids, sizeof(int32_t) * 2 * 8);
        assert_memory_equal(all.ids + 16, r1.ids, sizeof(int32_t) * 2 * 8);
        assert_memory_equal(all.targets, r0.targets, sizeof(int32_t) * 2 * 8);
        assert_memory_equal(all.targets + 16, r1.targets, sizeof(int32_t) * 2 * 8);
        assert_int_equal(r0.targets_global, all.targets_global);
        assert_int_equal(r1.targets_global, all.targets_global);
        assert_int_equal(r0.targets_local + r1.targets_local, all.targets_global);
        assert_int_equal(r0.n_cut_global, all.n_cut_global);
        assert_int_equal(r1.n_cut_global, all.n_cut_global);
        for (int j = 0; j < 4; j++) {
            int64_t s = data_sample_at(d, first + j);
            check_row(&all, j, 2, s, lens[s]);
        }
    }
    batch_free(&all);
    batch_free(&r0);
    batch_free(&r1);
    data_close(d);
}

static void test_all_padding(void **state) {
    (void)state;
    /* a file of nothing but 0/1-token samples is refused at open ... */
    int64_t lens[7] = {1, 1, 0, 1, 1, 1, 5};
    char path[512];
    write_file("pad_only.h5", 0, lens, 6, 500, path, sizeof path);
    lm_config c;
    config(&c, path, 4, 0, 3);
    assert_null(data_open(&c, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "pad_only.h5"));
    assert_non_null(strstr(g_err, "no sample has a target"));
    /* ... but such samples among real ones are padding: a batch of only
     * them (samples 0-5, no shuffle) has no targets */
    write_file("pad.h5", 0, lens, 7, 500, path, sizeof path);
    config(&c, path, 4, 0, 3);
    lm_data *d = open_ok(&c);
    lm_batch b;
    batch_alloc(&b, 3, 2, 4);
    poison(&b);
    assert_int_equal(data_fill(d, 0, 6, 0, 1, &b, g_err, sizeof g_err), 0);
    assert_int_equal(b.targets_global, 0);
    assert_int_equal(b.targets_local, 0);
    assert_int_equal(b.n_cut_global, 0);
    for (int i = 0; i < 6 * 4; i++) {
        assert_int_equal(b.ids[i], 0);
        assert_int_equal(b.targets[i], -1);
    }
    batch_free(&b);
    data_close(d);
}

/* ------------------------------------------------------------ many files */

static void test_multi_files(void **state) {
    (void)state;
    int64_t la[3] = {3, 5, 2}, lb[1] = {7}, lc[5] = {2, 4, 6, 8, 10};
    char pa[512], pb[512], pc[512];
    write_file("multi_a.h5", 10, la, 3, 500, pa, sizeof pa);
    write_file("multi_b.h5", 11, lb, 1, 500, pb, sizeof pb);
    write_file("multi_c.h5", 12, lc, 5, 500, pc, sizeof pc);
    char list[2048];
    /* spaces and tabs around names, an empty entry and a trailing comma */
    snprintf(list, sizeof list, " %s ,\t%s,,%s ,", pa, pb, pc);
    lm_config c;
    config(&c, list, 8, 0, 1);
    lm_data *d = open_ok(&c);
    assert_int_equal(data_n_samples(d), 9);
    const int fid[9] = {10, 10, 10, 11, 12, 12, 12, 12, 12};
    const int64_t sid[9] = {0, 1, 2, 0, 0, 1, 2, 3, 4};
    const int64_t len[9] = {3, 5, 2, 7, 2, 4, 6, 8, 10};
    lm_batch b;
    batch_alloc(&b, 1, 1, 8);
    for (int g = 0; g < 18; g++) {
        poison(&b);
        assert_int_equal(data_fill(d, g, 1, 0, 1, &b, g_err, sizeof g_err), 0);
        check_row(&b, 0, fid[g % 9], sid[g % 9], len[g % 9]);
        assert_int_equal(b.n_cut_global, len[g % 9] > 9);
    }
    /* the whole stream as one batch */
    lm_batch all;
    batch_alloc(&all, 3, 3, 8);
    assert_int_equal(data_fill(d, 0, 9, 0, 1, &all, g_err, sizeof g_err), 0);
    for (int j = 0; j < 9; j++) check_row(&all, j, fid[j], sid[j], len[j]);
    assert_int_equal(all.targets_global, 2 + 4 + 1 + 6 + 1 + 3 + 5 + 7 + 8);
    assert_int_equal(all.n_cut_global, 1);
    data_close(d);
    /* the order of the list is the order of the stream */
    snprintf(list, sizeof list, "%s,%s", pc, pa);
    config(&c, list, 8, 0, 1);
    d = open_ok(&c);
    assert_int_equal(data_n_samples(d), 8);
    for (int g = 0; g < 8; g++) {
        assert_int_equal(data_fill(d, g, 1, 0, 1, &b, g_err, sizeof g_err), 0);
        if (g < 5) check_row(&b, 0, 12, g, lc[g]);
        else check_row(&b, 0, 10, g - 5, la[g - 5]);
    }
    data_close(d);
    /* the same file twice is two copies of it */
    snprintf(list, sizeof list, "%s,%s", pb, pb);
    config(&c, list, 8, 0, 1);
    d = open_ok(&c);
    assert_int_equal(data_n_samples(d), 2);
    data_close(d);
    batch_free(&b);
    batch_free(&all);
}

/* ----------------------------------------------------------------- errors */

static void test_vocab_too_large(void **state) {
    (void)state;
    int64_t lens[2] = {3, 4};
    char small[512], big[512], eq[512];
    write_file("vocab_small.h5", 0, lens, 2, 500, small, sizeof small);
    write_file("vocab_big.h5", 0, lens, 2, 1001, big, sizeof big);
    write_file("vocab_eq.h5", 0, lens, 2, 1000, eq, sizeof eq);
    lm_config c;
    config(&c, eq, 8, 0, 1); /* model vocab 1000: equal is fine */
    data_close(open_ok(&c));
    config(&c, big, 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    fprintf(stderr, "# %s\n", g_err);
    assert_non_null(strstr(g_err, big));
    assert_non_null(strstr(g_err, "vocab_size"));
    assert_non_null(strstr(g_err, "1001"));
    /* the second file of a list: the message names it, not the first */
    char list[2048];
    snprintf(list, sizeof list, "%s, %s", small, big);
    config(&c, list, 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "vocab_big.h5"));
    assert_null(strstr(g_err, "vocab_small.h5"));
}

/* A file whose /tokens hold an id >= its vocab_size attribute cannot be
 * written by tokfile_write; written here with HDF5 directly. (An id that is
 * below the file's vocab_size but >= the model's cannot reach data_fill:
 * data_open refuses a file whose vocab_size exceeds the model's.) */
static void write_raw(const char *path, const uint32_t *tok, int64_t ntok, const int64_t *off, int64_t nsamp,
                      int64_t vocab) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t dt[1] = {(hsize_t)ntok}, doff[1] = {(hsize_t)nsamp + 1};
    hid_t st = H5Screate_simple(1, dt, NULL);
    hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_U32LE, st, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) >= 0);
    H5Dclose(ds);
    H5Sclose(st);
    hid_t g = H5Gcreate2(f, "samples", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t so = H5Screate_simple(1, doff, NULL);
    hid_t dof = H5Dcreate2(g, "offsets", H5T_STD_I64LE, so, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(dof, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off) >= 0);
    H5Dclose(dof);
    H5Sclose(so);
    H5Gclose(g);
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t ts = H5Tcopy(H5T_C_S1);
    H5Tset_size(ts, strlen("lamina-tokens") + 1);
    hid_t a = H5Acreate2(f, "format", ts, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, ts, "lamina-tokens");
    H5Aclose(a);
    H5Tclose(ts);
    int64_t one = 1;
    a = H5Acreate2(f, "version", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &one);
    H5Aclose(a);
    a = H5Acreate2(f, "vocab_size", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &vocab);
    H5Aclose(a);
    H5Sclose(sc);
    assert_true(H5Fclose(f) >= 0);
}

static void test_bad_token(void **state) {
    (void)state;
    /* 4 samples of 3 tokens; sample 2 holds 150 with vocab_size 100 */
    uint32_t tok[12] = {1, 2, 3, 4, 5, 6, 7, 150, 9, 10, 11, 12};
    int64_t off[5] = {0, 3, 6, 9, 12};
    char path[512];
    snprintf(path, sizeof path, "%s/badtok.h5", g_dir);
    write_raw(path, tok, 12, off, 4, 100);
    lm_config c;
    config(&c, path, 8, 0, 1);
    lm_data *d = open_ok(&c); /* token values are checked as samples are read */
    lm_batch b;
    batch_alloc(&b, 1, 2, 8);
    /* samples 0, 1: fine */
    assert_int_equal(data_fill(d, 0, 2, 0, 1, &b, g_err, sizeof g_err), 0);
    assert_int_equal(b.ids[0], 1);
    assert_int_equal(b.targets[8 + 1], 6);
    /* samples 2, 3: the error names the file and the value */
    g_err[0] = 0;
    assert_int_equal(data_fill(d, 2, 2, 0, 1, &b, g_err, sizeof g_err), 2);
    fprintf(stderr, "# %s\n", g_err);
    assert_non_null(strstr(g_err, path));
    assert_non_null(strstr(g_err, "150"));
    /* dp = 2 over samples 0..3: rank 0 (samples 0, 1) reads fine, rank 1 fails */
    lm_batch h;
    batch_alloc(&h, 1, 2, 8);
    assert_int_equal(data_fill(d, 0, 4, 0, 2, &h, g_err, sizeof g_err), 0);
    assert_int_equal(data_fill(d, 0, 4, 1, 2, &h, g_err, sizeof g_err), 2);
    batch_free(&h);
    batch_free(&b);
    data_close(d);
}

static void test_missing_file(void **state) {
    (void)state;
    int64_t lens[2] = {3, 4};
    char ok[512], missing[512], list[2048];
    write_file("present.h5", 0, lens, 2, 500, ok, sizeof ok);
    snprintf(missing, sizeof missing, "%s/no_such_file.h5", g_dir);
    lm_config c;
    config(&c, missing, 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    fprintf(stderr, "# %s\n", g_err);
    assert_non_null(strstr(g_err, missing));
    /* after a good file: the good one is closed again, the message names the missing one */
    snprintf(list, sizeof list, "%s,%s", ok, missing);
    config(&c, list, 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "no_such_file.h5"));
    assert_null(strstr(g_err, "present.h5"));
    /* a file that is not a token file */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk.h5", g_dir);
    FILE *fp = fopen(junk, "w");
    assert_non_null(fp);
    fputs("not hdf5\n", fp);
    fclose(fp);
    config(&c, junk, 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, junk));
    /* no file at all */
    config(&c, " , ,", 8, 0, 1);
    g_err[0] = 0;
    assert_null(data_open(&c, g_err, sizeof g_err));
    assert_non_null(strstr(g_err, "data.train"));
    config(&c, "", 8, 0, 1);
    assert_null(data_open(&c, g_err, sizeof g_err));
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina_test_data_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

/* Removes the files of the temporary directory and the directory (no
 * subdirectories are made; no fork after MPI_Init). */
static int teardown(void **state) {
    (void)state;
    DIR *dir = opendir(g_dir);
    if (!dir) return -1;
    struct dirent *e;
    char path[600];
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
            unlink(path);
        }
    closedir(dir);
    return rmdir(g_dir) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_shuffle),   cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_shuffle_uniform), cmocka_unit_test(test_fill_layout),
        cmocka_unit_test(test_layout_independence), cmocka_unit_test(test_two_ranks),
        cmocka_unit_test(test_all_padding),  cmocka_unit_test(test_multi_files),
        cmocka_unit_test(test_vocab_too_large), cmocka_unit_test(test_bad_token),
        cmocka_unit_test(test_missing_file),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return rc;
}
