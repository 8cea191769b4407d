/* test_data.c — the data loader (src/data/data.h) over token files written into a
 * temporary directory: sample order with and without shuffle (permutation per
 * epoch, determinism, dependence on epoch and seed), the batch layout (inputs,
 * targets, padding, cutting), the global counts, independence of the
 * data-parallel layout, several files, and the errors (vocab_size too large,
 * a token id out of range, a missing file); SPEC §9: the order of a file of
 * 3 categories in 4 bins against a direct computation (buckets in order,
 * each shuffled within), several files' buckets merged and categories
 * united, weighted mixing (exact shares per block of 1024, each file's own
 * stream order), bad weights and colons in paths, loss masks, and exact
 * resume from any step. */
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

/* -------------------------------------------- buckets, categories, mixing */

/* Writes <dir>/<name> with tokfile_write_par on one rank: n samples of the
 * given lengths (tokens tok_of(fid, .)), and, where given, categories with
 * their names, bucket offsets, sample bytes and a loss mask. */
static void write_x(const char *name, int fid, const int64_t *lens, int64_t n, int ncat, const char *const *cats,
                    const int32_t *scat, int64_t nb, const int64_t *boff, const int64_t *bytes, const uint8_t *mask,
                    char *path, size_t pathlen) {
    snprintf(path, pathlen, "%s/%s", g_dir, name);
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(n + 1));
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) off[i + 1] = off[i] + lens[i];
    uint32_t *tok = malloc(sizeof(uint32_t) * (size_t)(off[n] + 1));
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < lens[i]; t++) tok[off[i] + t] = tok_of(fid, i, t);
    tokfile_extra x = {0};
    x.n_categories = ncat;
    x.categories = cats;
    x.sample_category = scat;
    x.n_buckets = nb;
    x.bucket_offsets = boff;
    x.sample_bytes = bytes;
    x.loss_mask = mask;
    int rc = tokfile_write_par(MPI_COMM_SELF, path, tok, off[n], off, n, 500, 0, NULL, NULL, NULL, &x, g_err, sizeof g_err);
    if (rc) fprintf(stderr, "# tokfile_write_par: %s\n", g_err);
    assert_int_equal(rc, 0);
    free(off);
    free(tok);
}

/* The shuffle of a bucket, computed here from its definition (data_order.c):
 * Fisher-Yates, swap i drawn as element i of the stream (seed, name). */
static void ref_perm(uint64_t seed, const char *name, int64_t m, int64_t *p) {
    uint64_t key = rng_stream(seed, name);
    for (int64_t i = 0; i < m; i++) p[i] = i;
    for (int64_t i = m - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

/* The 3-category, 4-bin file of SPEC §9: bucket b holds bin b of every
 * category, category by category; bin 3 of category 2 is empty. */
enum { CB_NCAT = 3, CB_NBIN = 4 };
static const int CB_COUNT[CB_NCAT][CB_NBIN] = {{5, 4, 6, 3}, {2, 7, 1, 4}, {6, 3, 5, 0}};
static const char *const CB_NAMES[CB_NCAT] = {"web", "books", "code"};

/* Fills the layout of that file: n samples, their categories, lengths,
 * bytes, bucket offsets [CB_NBIN+1]; returns n. */
static int64_t cb_layout(int32_t *cat, int64_t *lens, int64_t *bytes, int64_t *boff) {
    int64_t n = 0;
    for (int b = 0; b < CB_NBIN; b++) {
        boff[b] = n;
        for (int c = 0; c < CB_NCAT; c++)
            for (int k = 0; k < CB_COUNT[c][b]; k++) {
                cat[n] = c;
                lens[n] = 2 + (n * 5 + c) % 9;
                bytes[n] = 3 * lens[n] + c;
                n++;
            }
    }
    boff[CB_NBIN] = n;
    return n;
}

static void test_buckets_order(void **state) {
    (void)state;
    int32_t cat[64];
    int64_t lens[64], bytes[64], boff[CB_NBIN + 1];
    int64_t n = cb_layout(cat, lens, bytes, boff);
    char path[512];
    write_x("cb.h5", 5, lens, n, CB_NCAT, CB_NAMES, cat, CB_NBIN, boff, bytes, NULL, path, sizeof path);
    const uint64_t seed = 4242;
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        lm_config c;
        config(&c, path, 8, shuffle, seed);
        lm_data *d = open_ok(&c);
        assert_int_equal(data_n_samples(d), n);
        assert_int_equal(data_n_buckets(d), CB_NBIN);
        assert_int_equal(data_n_categories(d), CB_NCAT);
        for (int k = 0; k < CB_NCAT; k++) assert_string_equal(data_category(d, k), CB_NAMES[k]);
        assert_null(data_category(d, CB_NCAT));
        /* the direct computation: epoch e walks bucket 0 .. 3, each in the
         * order of its permutation (identity without shuffle) */
        for (int64_t e = 0; e < 3; e++)
            for (int b = 0; b < CB_NBIN; b++) {
                int64_t m = boff[b + 1] - boff[b], p[64];
                char name[64];
                if (b == 0) snprintf(name, sizeof name, "data.epoch.%lld", (long long)e);
                else snprintf(name, sizeof name, "data.epoch.%lld.bucket.%d", (long long)e, b);
                ref_perm(seed, name, m, p);
                int ident = 1;
                for (int64_t r = 0; r < m; r++) {
                    int64_t g = e * n + boff[b] + r;
                    int64_t want = boff[b] + (shuffle ? p[r] : r);
                    assert_int_equal(data_sample_at(d, g), want);
                    assert_int_equal(data_bucket_at(d, g), b);
                    ident &= data_sample_at(d, g) == boff[b] + r;
                }
                if (shuffle && m >= 8) assert_false(ident);
            }
        /* batches: rows carry the sample, its category and bytes; the same
         * rows for every data-parallel split */
        const int GB = 12, T = 8;
        for (int64_t first = 0; first < 3 * n; first += 7) {
            int32_t ids1[12 * 8], tg1[12 * 8], idsk[12 * 8], tgk[12 * 8];
            int64_t tgl1, tglk;
            int cut1, cutk;
            fill_layout(d, first, GB, 1, T, ids1, tg1, &tgl1, &cut1);
            lm_batch b;
            batch_alloc(&b, 1, GB, T);
            assert_int_equal(data_fill(d, first, GB, 0, 1, &b, g_err, sizeof g_err), 0);
            for (int j = 0; j < GB; j++) {
                int64_t s = data_sample_at(d, first + j);
                check_row(&b, j, 5, s, lens[s]);
                assert_int_equal(b.row_category[j], cat[s]);
                assert_int_equal(b.row_bytes[j], bytes[s]);
            }
            assert_int_equal(b.n_masked_global, 0);
            const int dps[] = {2, 3, 4, 6};
            for (int k = 0; k < 4; k++) {
                fill_layout(d, first, GB, dps[k], T, idsk, tgk, &tglk, &cutk);
                assert_memory_equal(ids1, idsk, sizeof ids1);
                assert_memory_equal(tg1, tgk, sizeof tg1);
                assert_int_equal(tglk, tgl1);
                assert_int_equal(cutk, cut1);
                /* and the rows' categories of rank r are those of its block */
                int per = GB / dps[k];
                for (int r = 0; r < dps[k]; r++) {
                    lm_batch br;
                    batch_alloc(&br, 1, per, T);
                    assert_int_equal(data_fill(d, first, GB, r, dps[k], &br, g_err, sizeof g_err), 0);
                    for (int j = 0; j < per; j++) {
                        assert_int_equal(br.row_category[j], b.row_category[r * per + j]);
                        assert_int_equal(br.row_bytes[j], b.row_bytes[r * per + j]);
                    }
                    batch_free(&br);
                }
            }
            batch_free(&b);
        }
        data_close(d);
    }
}

/* Several files: bucket b of the stream is bucket b of every file in file
 * order (a file without buckets is bucket 0); categories united by name. */
static void test_multi_buckets(void **state) {
    (void)state;
    /* A: 3 buckets {0,1}, {2,3,4}, {5}; categories web, books */
    int64_t la[6] = {3, 4, 5, 6, 7, 8}, ba[4] = {0, 2, 5, 6}, byte_a[6] = {1, 2, 3, 4, 5, 6};
    int32_t ca[6] = {0, 1, 1, 0, 1, 0};
    const char *na[2] = {"web", "books"};
    /* B: no buckets, no categories: category "multi_b" */
    int64_t lb[3] = {2, 3, 4};
    /* C: 2 buckets {0}, {1,2,3}; categories books, code */
    int64_t lc[4] = {5, 4, 3, 2}, bc[3] = {0, 1, 4};
    int32_t cc[4] = {1, 0, 1, 1};
    const char *nc[2] = {"books", "code"};
    char pa[512], pb[512], pc[512], list[2048];
    write_x("mb_a.h5", 20, la, 6, 2, na, ca, 3, ba, byte_a, NULL, pa, sizeof pa);
    write_file("multi_b.h5", 21, lb, 3, 500, pb, sizeof pb);
    write_x("mb_c.h5", 22, lc, 4, 2, nc, cc, 2, bc, NULL, NULL, pc, sizeof pc);
    snprintf(list, sizeof list, "%s,%s,%s", pa, pb, pc);
    /* concatenation indices: A 0..5, B 6..8, C 9..12 */
    const int64_t want[3][8] = {{0, 1, 6, 7, 8, 9, -1}, {2, 3, 4, 10, 11, 12, -1}, {5, -1}};
    const int fid[13] = {20, 20, 20, 20, 20, 20, 21, 21, 21, 22, 22, 22, 22};
    const int64_t sid[13] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2, 3};
    const int64_t len[13] = {3, 4, 5, 6, 7, 8, 2, 3, 4, 5, 4, 3, 2};
    /* data categories: web, books, multi_b, code */
    const int32_t dcat[13] = {0, 1, 1, 0, 1, 0, 2, 2, 2, 3, 1, 3, 3};
    const int64_t dbytes[13] = {1, 2, 3, 4, 5, 6, -1, -1, -1, -1, -1, -1, -1};
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        lm_config c;
        config(&c, list, 8, shuffle, 99);
        lm_data *d = open_ok(&c);
        assert_int_equal(data_n_samples(d), 13);
        assert_int_equal(data_n_buckets(d), 3);
        assert_int_equal(data_n_categories(d), 4);
        const char *names[4] = {"web", "books", "multi_b", "code"};
        for (int k = 0; k < 4; k++) assert_string_equal(data_category(d, k), names[k]);
        for (int64_t e = 0; e < 4; e++) {
            int64_t g = e * 13;
            for (int b = 0; b < 3; b++) {
                int m = 0;
                while (want[b][m] >= 0) m++;
                int64_t p[8];
                char name[64];
                if (b == 0) snprintf(name, sizeof name, "data.epoch.%lld", (long long)e);
                else snprintf(name, sizeof name, "data.epoch.%lld.bucket.%d", (long long)e, b);
                ref_perm(99, name, m, p);
                for (int r = 0; r < m; r++, g++) {
                    assert_int_equal(data_sample_at(d, g), want[b][shuffle ? p[r] : r]);
                    assert_int_equal(data_bucket_at(d, g), b);
                }
            }
        }
        lm_batch bt;
        batch_alloc(&bt, 1, 13, 8);
        assert_int_equal(data_fill(d, 26, 13, 0, 1, &bt, g_err, sizeof g_err), 0);
        for (int j = 0; j < 13; j++) {
            int64_t s = data_sample_at(d, 26 + j);
            check_row(&bt, j, fid[s], sid[s], len[s]);
            assert_int_equal(bt.row_category[j], dcat[s]);
            assert_int_equal(bt.row_bytes[j], dbytes[s]);
        }
        batch_free(&bt);
        data_close(d);
    }
}

/* Largest-remainder shares of 1024, computed here. */
static void ref_shares(const double *w, int n, int *c) {
    double W = 0, rem[8];
    for (int i = 0; i < n; i++) W += w[i];
    int left = 1024;
    for (int i = 0; i < n; i++) {
        c[i] = (int)floor(1024 * w[i] / W);
        rem[i] = 1024 * w[i] / W - c[i];
        left -= c[i];
    }
    for (; left > 0; left--) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best]) best = i;
        c[best]++;
        rem[best] = -1;
    }
}

static void test_weighted(void **state) {
    (void)state;
    int64_t la[50], lb[30], lc[7];
    for (int i = 0; i < 50; i++) la[i] = 2 + i % 4;
    for (int i = 0; i < 30; i++) lb[i] = 3 + i % 5;
    for (int i = 0; i < 7; i++) lc[i] = 4 + i % 2;
    char pa[512], pb[512], pc[512], list[2048];
    write_file("w_a.h5", 30, la, 50, 500, pa, sizeof pa);
    write_file("w_b.h5", 31, lb, 30, 500, pb, sizeof pb);
    /* C in two buckets: its own shuffle stays within each */
    int64_t bc[3] = {0, 3, 7};
    write_x("w_c.h5", 32, lc, 7, 0, NULL, NULL, 2, bc, NULL, NULL, pc, sizeof pc);
    const int64_t nfile[3] = {50, 30, 7};
    const double ws[3][3] = {{1, 1, 1}, {3, 1.5, 0.25}, {0.7, 0.2, 0.1}};
    for (int wi = 0; wi < 3; wi++)
        for (int shuffle = 0; shuffle <= 1; shuffle++) {
            snprintf(list, sizeof list, "%s:%g, %s:%g ,%s:%g", pa, ws[wi][0], pb, ws[wi][1], pc, ws[wi][2]);
            int share[3];
            ref_shares(ws[wi], 3, share);
            assert_int_equal(share[0] + share[1] + share[2], 1024);
            lm_config c;
            config(&c, list, 8, shuffle, 7 + wi);
            lm_data *d = open_ok(&c);
            assert_int_equal(data_n_samples(d), 87);
            assert_int_equal(data_n_buckets(d), 1); /* the first file's stream */
            /* every block of 1024 holds each file's share exactly; each
             * file's positions come in its own stream order */
            int64_t next[3] = {0, 0, 0};
            int64_t *seen[3];
            for (int k = 0; k < 3; k++) seen[k] = calloc((size_t)(4 * nfile[k] + 1024 * 4), sizeof(int64_t));
            int64_t firstblk[1024];
            for (int64_t q = 0; q < 4; q++) {
                int cnt[3] = {0, 0, 0}, differs = 0;
                for (int o = 0; o < 1024; o++) {
                    int64_t s = data_sample_at(d, q * 1024 + o);
                    int k = s < 50 ? 0 : s < 80 ? 1 : 2;
                    int64_t local = s - (k == 0 ? 0 : k == 1 ? 50 : 80);
                    cnt[k]++;
                    seen[k][next[k]++] = local;
                    if (q == 0) firstblk[o] = k;
                    else differs |= firstblk[o] != k;
                }
                for (int k = 0; k < 3; k++) assert_int_equal(cnt[k], share[k]);
                if (q > 0) assert_true(differs); /* a new seeded order per block */
            }
            /* file k's sequence: without shuffle 0, 1, ..., n-1, 0, ...; with
             * it each epoch a permutation (of each bucket for C) */
            for (int k = 0; k < 3; k++) {
                int64_t n = nfile[k];
                for (int64_t e = 0; (e + 1) * n <= next[k]; e++) {
                    int64_t *ep = seen[k] + e * n;
                    if (!shuffle)
                        for (int64_t i = 0; i < n; i++) assert_int_equal(ep[i], i);
                    assert_true(is_perm(ep, n));
                    if (k == 2)
                        for (int64_t i = 0; i < n; i++) assert_true(i < 3 ? ep[i] < 3 : ep[i] >= 3);
                }
                free(seen[k]);
            }
            /* layout independence and exact resume */
            const int GB = 20, T = 8;
            int32_t ids1[20 * 8], tg1[20 * 8], idsk[20 * 8], tgk[20 * 8];
            int64_t tgl1, tglk;
            int cut1, cutk;
            for (int64_t first = 1000; first < 1100; first += 20) {
                fill_layout(d, first, GB, 1, T, ids1, tg1, &tgl1, &cut1);
                fill_layout(d, first, GB, 4, T, idsk, tgk, &tglk, &cutk);
                assert_memory_equal(ids1, idsk, sizeof ids1);
                assert_memory_equal(tg1, tgk, sizeof tg1);
                lm_data *fresh = open_ok(&c);
                fill_layout(fresh, first, GB, 5, T, idsk, tgk, &tglk, &cutk);
                assert_memory_equal(ids1, idsk, sizeof ids1);
                assert_int_equal(tglk, tgl1);
                data_close(fresh);
            }
            data_close(d);
        }
}

static void test_bad_weights(void **state) {
    (void)state;
    int64_t lens[3] = {3, 4, 5};
    char pa[512], pb[512], list[2048];
    write_file("bw_a.h5", 0, lens, 3, 500, pa, sizeof pa);
    write_file("bw_b.h5", 1, lens, 3, 500, pb, sizeof pb);
    lm_config c;
    config(&c, "", 8, 1, 1);
    struct {
        const char *fmt;
        const char *want;
    } cases[] = {
        {"%s:abc,%s:1", "weight \"abc\" is not a number"},
        {"%s:,%s:1", "weight \"\" is not a number"},
        {"%s:0,%s:1", "weight 0 must be a number > 0"},
        {"%s:-2,%s:1", "weight -2 must be a number > 0"},
        {"%s:1,%s", "either every file has a weight"},
        {"%s,%s:1", "either every file has a weight"},
        {"%s:1,%s:0.0001", "too small"},
        {"%s:1e,%s:1", "is not a number"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snprintf(list, sizeof list, cases[k].fmt, pa, pb);
        g_err[0] = 0;
        assert_null(data_open_list(list, "data.valid", &c, g_err, sizeof g_err));
        if (strncmp(g_err, "data.valid: ", 12) || !strstr(g_err, cases[k].want) || !strstr(g_err, "bw_"))
            fail_msg("case %zu (%s): message \"%s\"", k, list, g_err);
    }
    /* the key names every open error */
    snprintf(list, sizeof list, "%s/absent.h5", g_dir);
    assert_null(data_open_list(list, "stage.2.valid", &c, g_err, sizeof g_err));
    if (strncmp(g_err, "stage.2.valid: ", 15) || !strstr(g_err, "absent.h5")) fail_msg("message \"%s\"", g_err);
    /* colons in paths: a trailing ":<not a number>" is part of the name, a
     * name that exists as a whole wins over a weight */
    char odd[512], odd2[512];
    write_file("we:ird.h5", 0, lens, 3, 500, odd, sizeof odd);
    write_file("tail.h5:3", 1, lens, 2, 500, odd2, sizeof odd2);
    snprintf(list, sizeof list, "%s,%s", odd, odd2);
    lm_data *d = data_open_list(list, "data.train", &c, g_err, sizeof g_err);
    if (!d) fail_msg("%s", g_err);
    assert_int_equal(data_n_samples(d), 5);
    data_close(d);
    snprintf(list, sizeof list, "%s:2,%s:1", odd, pa);
    d = data_open_list(list, "data.train", &c, g_err, sizeof g_err);
    if (!d) fail_msg("%s", g_err);
    assert_int_equal(data_n_samples(d), 6);
    data_close(d);
}

/* The loss mask: targets -1 where the mask is 0, counts of unmasked
 * targets only, and samples left without a target counted. */
static void test_masks(void **state) {
    (void)state;
    /* 6 samples: lengths 5, 4, 12 (cut at T+1 = 9), 1 (padding), 3, 6 */
    int64_t lens[6] = {5, 4, 12, 1, 3, 6};
    uint8_t mask[31];
    int64_t at = 0;
    for (int s = 0; s < 6; s++)
        for (int64_t t = 0; t < lens[s]; t++, at++) {
            int m = 1;
            if (s == 0) m = t >= 2;          /* a source of 2 tokens, then the target */
            if (s == 1) m = 0;               /* every target masked */
            if (s == 2) m = t % 2 || t >= 9; /* odd positions; the masked ones past the cut do not count */
            if (s == 4) m = t == 0;          /* only the first token (never a target): all masked */
            mask[at] = (uint8_t)m;
        }
    char path[512];
    write_x("mask.h5", 40, lens, 6, 0, NULL, NULL, 0, NULL, NULL, mask, path, sizeof path);
    lm_config c;
    config(&c, path, 8, 0, 1);
    lm_data *d = open_ok(&c);
    assert_int_equal(data_n_categories(d), 1);
    assert_string_equal(data_category(d, 0), "mask");
    lm_batch b;
    batch_alloc(&b, 2, 3, 8);
    poison(&b);
    assert_int_equal(data_fill(d, 0, 6, 0, 1, &b, g_err, sizeof g_err), 0);
    int64_t want_total = 0;
    at = 0;
    for (int s = 0; s < 6; s++) {
        int64_t L = lens[s] < 9 ? lens[s] : 9;
        const int32_t *ids = b.ids + s * 8, *tg = b.targets + s * 8;
        for (int t = 0; t < 8; t++) {
            int in = t < L - 1;
            assert_int_equal(ids[t], in ? (int32_t)tok_of(40, s, t) : 0);
            int32_t want = in && mask[at + t + 1] ? (int32_t)tok_of(40, s, t + 1) : -1;
            assert_int_equal(tg[t], want);
            want_total += want >= 0;
        }
        at += lens[s];
        assert_int_equal(b.row_bytes[s], -1);
        assert_int_equal(b.row_category[s], 0);
    }
    /* 0: 3 targets (positions 2..4); 1: 0; 2: positions 1,3,5,7 of 1..8 = 4; 3: none; 4: 0; 5: 5 */
    assert_int_equal(want_total, 3 + 0 + 4 + 0 + 0 + 5);
    assert_int_equal(b.targets_global, want_total);
    assert_int_equal(b.targets_local, want_total);
    assert_int_equal(b.n_masked_global, 2); /* samples 1 and 4; 3 is padding */
    assert_int_equal(b.n_cut_global, 1);
    /* every split has the same global counts and its share of the targets */
    lm_batch r0, r1;
    batch_alloc(&r0, 1, 3, 8);
    batch_alloc(&r1, 3, 1, 8);
    assert_int_equal(data_fill(d, 0, 6, 0, 2, &r0, g_err, sizeof g_err), 0);
    assert_int_equal(data_fill(d, 0, 6, 1, 2, &r1, g_err, sizeof g_err), 0);
    assert_int_equal(r0.targets_global, want_total);
    assert_int_equal(r1.targets_global, want_total);
    assert_int_equal(r0.n_masked_global, 2);
    assert_int_equal(r1.n_masked_global, 2);
    assert_int_equal(r0.targets_local, 3 + 0 + 4);
    assert_int_equal(r1.targets_local, 0 + 0 + 5);
    assert_memory_equal(r0.targets, b.targets, sizeof(int32_t) * 24);
    assert_memory_equal(r1.targets, b.targets + 24, sizeof(int32_t) * 24);
    batch_free(&r0);
    batch_free(&r1);
    batch_free(&b);
    data_close(d);

    /* a bad mask value is exit 2 naming the file; a file without a mask
     * mixed in keeps all its targets */
    mask[7] = 3;
    char bad[512];
    write_x("mask_ok.h5", 40, lens, 6, 0, NULL, NULL, 0, NULL, NULL, NULL, bad, sizeof bad);
    snprintf(bad, sizeof bad, "%s/mask_bad.h5", g_dir);
    {
        /* the writer refuses 3: patch the stored value with HDF5 instead */
        mask[7] = 1;
        char tmp[512];
        write_x("mask_bad.h5", 40, lens, 6, 0, NULL, NULL, 0, NULL, NULL, mask, tmp, sizeof tmp);
        hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t ds = H5Dopen2(f, "/loss_mask", H5P_DEFAULT), fs = H5Dget_space(ds);
        hsize_t start[1] = {7}, one[1] = {1};
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL);
        hid_t ms = H5Screate_simple(1, one, NULL);
        uint8_t three = 3;
        assert_true(H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, &three) >= 0);
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(ds);
        H5Fclose(f);
    }
    config(&c, bad, 8, 0, 1);
    d = open_ok(&c);
    batch_alloc(&b, 1, 1, 8);
    assert_int_equal(data_fill(d, 0, 1, 0, 1, &b, g_err, sizeof g_err), 0);
    g_err[0] = 0;
    assert_int_equal(data_fill(d, 1, 1, 0, 1, &b, g_err, sizeof g_err), 2);
    if (!strstr(g_err, bad) || !strstr(g_err, "/loss_mask") || !strstr(g_err, "value 3")) fail_msg("message: %s", g_err);
    batch_free(&b);
    data_close(d);
}

/* Exact resume: step k read by a fresh loader equals step k of a loader
 * that read steps 0 .. k-1 before (its caches in another state). */
static void test_resume(void **state) {
    (void)state;
    int32_t cat[64];
    int64_t lens[64], bytes[64], boff[CB_NBIN + 1];
    int64_t n = cb_layout(cat, lens, bytes, boff);
    char path[512], other[512], list[2048];
    write_x("rs.h5", 6, lens, n, CB_NCAT, CB_NAMES, cat, CB_NBIN, boff, bytes, NULL, path, sizeof path);
    int64_t l2[9] = {2, 3, 4, 5, 6, 7, 8, 9, 10};
    write_file("rs2.h5", 7, l2, 9, 500, other, sizeof other);
    const char *lists[3] = {path, NULL, NULL};
    char l1[1100], l3[1100];
    snprintf(l1, sizeof l1, "%s,%s", path, other);
    snprintf(l3, sizeof l3, "%s:2,%s:1", path, other);
    lists[1] = l1;
    lists[2] = l3;
    const int GB = 10, T = 8, STEPS = 40; /* 400 positions: several epochs and mixing blocks */
    for (int li = 0; li < 3; li++) {
        snprintf(list, sizeof list, "%s", lists[li]);
        lm_config c;
        config(&c, list, T, 1, 2024);
        lm_data *run = open_ok(&c);
        lm_batch a, b;
        batch_alloc(&a, 1, GB, T);
        batch_alloc(&b, 1, GB, T);
        for (int s = 0; s < STEPS; s++) {
            assert_int_equal(data_fill(run, (int64_t)s * GB, GB, 0, 1, &a, g_err, sizeof g_err), 0);
            if (s % 7 != 3) continue;
            lm_data *fresh = open_ok(&c);
            assert_int_equal(data_fill(fresh, (int64_t)s * GB, GB, 0, 1, &b, g_err, sizeof g_err), 0);
            assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * GB * T);
            assert_memory_equal(a.targets, b.targets, sizeof(int32_t) * GB * T);
            assert_memory_equal(a.row_category, b.row_category, sizeof(int32_t) * GB);
            assert_memory_equal(a.row_bytes, b.row_bytes, sizeof(int64_t) * GB);
            assert_int_equal(a.targets_global, b.targets_global);
            for (int64_t g = (int64_t)s * GB; g < (int64_t)(s + 1) * GB; g++) {
                assert_int_equal(data_sample_at(fresh, g), data_sample_at(run, g));
                assert_int_equal(data_bucket_at(fresh, g), data_bucket_at(run, g));
            }
            data_close(fresh);
        }
        batch_free(&a);
        batch_free(&b);
        data_close(run);
    }
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
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_buckets_order),
        cmocka_unit_test(test_multi_buckets), cmocka_unit_test(test_weighted),
        cmocka_unit_test(test_bad_weights),  cmocka_unit_test(test_masks),
        cmocka_unit_test(test_resume),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return rc;
}
