/* test_pack.c — packing documents into samples (src/data/pack.h): every document
 * placed once, no sample over cap, longest-first order, first-fit within the
 * window (checked by replaying the placements), determinism, a bound on the
 * number of samples for typical length mixes, and edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pack.h"
#include "rng.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks every documented property of one pack_docs result; returns nbins. */
static int64_t check_pack(const int64_t *lens, int64_t n, int64_t cap, int window, const int64_t *bin_of,
                          const int64_t *order, int64_t nbins) {
    assert_true(nbins >= 0 && nbins <= n);
    /* order: a permutation of 0..n-1, longest first, ties by input index */
    char *seen = calloc((size_t)n + 1, 1);
    for (int64_t k = 0; k < n; k++) {
        assert_true(order[k] >= 0 && order[k] < n);
        assert_int_equal(seen[order[k]], 0);
        seen[order[k]] = 1;
        if (k > 0) {
            int64_t a = order[k - 1], b = order[k];
            assert_true(lens[a] > lens[b] || (lens[a] == lens[b] && a < b));
        }
    }
    free(seen);
    /* every document in a bin, no bin over cap, no bin empty */
    int64_t *load = calloc((size_t)nbins + 1, sizeof(int64_t));
    int64_t sum = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(bin_of[i] >= 0 && bin_of[i] < nbins);
        load[bin_of[i]] += lens[i];
        sum += lens[i];
    }
    for (int64_t b = 0; b < nbins; b++) {
        assert_true(load[b] > 0);
        assert_true(load[b] <= cap);
    }
    /* at least the volume bound */
    assert_true(nbins >= (sum + cap - 1) / cap);
    /* replay: in placement order, each document goes to the first bin among
     * the `window` most recently opened that has room, else to a new bin;
     * bins are numbered in the order they open */
    int64_t *room = calloc((size_t)nbins + 1, sizeof(int64_t));
    int64_t open = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = order[k], want = -1;
        for (int64_t c = open - window < 0 ? 0 : open - window; c < open; c++)
            if (room[c] >= lens[i]) {
                want = c;
                break;
            }
        if (want < 0) {
            want = open;
            room[open++] = cap;
        }
        assert_true(bin_of[i] == want);
        room[want] -= lens[i];
    }
    assert_true(open == nbins);
    free(room);
    free(load);
    return nbins;
}

/* Length mixes: 0 uniform [1,cap]; 1 short [1,cap/8]; 2 heavy-tailed
 * (log-normal, median cap/16, clipped to cap); 3 bimodal (1 in 5 long in
 * [cap/2,cap], the rest [1,cap/8]); 4 uniform [cap/4, cap/2]. */
static int64_t draw_len(int mix, int64_t cap, uint64_t key, uint64_t i) {
    int64_t L;
    switch (mix) {
    case 0: L = 1 + (int64_t)rng_below(key, i, (uint64_t)cap); break;
    case 1: L = 1 + (int64_t)rng_below(key, i, (uint64_t)(cap / 8)); break;
    case 2: L = (int64_t)llround((double)cap / 16 * exp(1.2 * rng_normal(key, i))); break;
    case 3:
        L = rng_below(key, 2 * i, 5) == 0 ? cap / 2 + (int64_t)rng_below(key, 2 * i + 1, (uint64_t)(cap - cap / 2 + 1))
                                          : 1 + (int64_t)rng_below(key, 2 * i + 1, (uint64_t)(cap / 8));
        break;
    default: L = cap / 4 + (int64_t)rng_below(key, i, (uint64_t)(cap / 4 + 1)); break;
    }
    if (L < 1) L = 1;
    if (L > cap) L = cap;
    return L;
}

static void test_random_mixes(void **state) {
    (void)state;
    const int64_t NMAX = 4000;
    int64_t *lens = malloc(sizeof(int64_t) * NMAX), *bin = malloc(sizeof(int64_t) * NMAX);
    int64_t *order = malloc(sizeof(int64_t) * NMAX);
    uint64_t key = rng_stream(77, "test.pack");
    const int64_t caps[] = {257, 1025, 2049};
    const int windows[] = {64, 1, 8, 100000};
    double worst[4] = {0};
    for (int mix = 0; mix < 5; mix++)
        for (int ci = 0; ci < 3; ci++)
            for (int wi = 0; wi < 4; wi++) {
                int64_t cap = caps[ci];
                int64_t n = 1 + (int64_t)rng_below(key, (uint64_t)(mix * 100 + ci * 10 + wi), (uint64_t)NMAX);
                int64_t sum = 0;
                for (int64_t i = 0; i < n; i++) {
                    lens[i] = draw_len(mix, cap, rng_stream((uint64_t)(mix * 100 + ci * 10 + wi), "lens"), (uint64_t)i);
                    sum += lens[i];
                }
                int64_t nb = pack_docs(lens, n, cap, windows[wi], bin, order);
                check_pack(lens, n, cap, windows[wi], bin, order, nb);
                double ratio = (double)nb / ((double)sum / (double)cap);
                if (ratio > worst[wi]) worst[wi] = ratio;
                /* first-fit decreasing (a window holding every sample) meets
                 * 11/9 OPT + 6/9, and within 1.25 x volume + 1 on every mix here.
                 * The window of 64 that prep uses degrades towards next-fit
                 * decreasing as n grows (measured: 1.29 x volume on mix 0 and
                 * 1.26 on mix 3 at n = 2e5), so for it the bound is asserted on
                 * the mixes of mostly short documents (1 and 2) only. */
                if (windows[wi] >= n || (windows[wi] >= 64 && (mix == 1 || mix == 2))) {
                    int64_t bound = (int64_t)ceil(1.25 * (double)sum / (double)cap) + 1;
                    if (nb > bound)
                        fprintf(stderr, "# mix %d cap %lld window %d n %lld: %lld samples > bound %lld\n", mix,
                                (long long)cap, windows[wi], (long long)n, (long long)nb, (long long)bound);
                    assert_true(nb <= bound);
                }
            }
    fprintf(stderr, "# worst samples / (tokens/cap): window 64 %.4f, 1 %.4f, 8 %.4f, unlimited %.4f\n", worst[0],
            worst[1], worst[2], worst[3]);
    free(lens);
    free(bin);
    free(order);
}

/* Same input, same output, also after another call in between. */
static void test_deterministic(void **state) {
    (void)state;
    const int64_t n = 3000, cap = 513;
    int64_t *lens = malloc(sizeof(int64_t) * n), *other = malloc(sizeof(int64_t) * n);
    int64_t *b1 = malloc(sizeof(int64_t) * n), *o1 = malloc(sizeof(int64_t) * n);
    int64_t *b2 = malloc(sizeof(int64_t) * n), *o2 = malloc(sizeof(int64_t) * n);
    uint64_t key = rng_stream(3, "test.pack.det");
    for (int64_t i = 0; i < n; i++) {
        lens[i] = 1 + (int64_t)(rng_below(key, (uint64_t)i, 40)) * 12; /* many equal lengths */
        other[i] = 1 + (int64_t)rng_below(key, (uint64_t)(i + n), (uint64_t)cap);
    }
    int64_t nb1 = pack_docs(lens, n, cap, 64, b1, o1);
    int64_t nb_other = pack_docs(other, n, cap, 64, b2, o2);
    check_pack(other, n, cap, 64, b2, o2, nb_other);
    int64_t nb2 = pack_docs(lens, n, cap, 64, b2, o2);
    assert_true(nb1 == nb2);
    assert_memory_equal(b1, b2, sizeof(int64_t) * (size_t)n);
    assert_memory_equal(o1, o2, sizeof(int64_t) * (size_t)n);
    check_pack(lens, n, cap, 64, b1, o1, nb1);
    free(lens);
    free(other);
    free(b1);
    free(o1);
    free(b2);
    free(o2);
}

/* Small cases worked by hand. */
static void test_hand_cases(void **state) {
    (void)state;
    int64_t bin[8], order[8];
    /* first-fit decreasing: 6,5,4,3,2 into 10 -> [6,4] [5,3,2] */
    int64_t a[] = {3, 6, 2, 5, 4};
    assert_true(pack_docs(a, 5, 10, 64, bin, order) == 2);
    int64_t a_bin[] = {1, 0, 1, 1, 0}, a_order[] = {1, 3, 4, 0, 2};
    assert_memory_equal(bin, a_bin, sizeof a_bin);
    assert_memory_equal(order, a_order, sizeof a_order);
    /* the window: 9, 8, 1, 1 into 10. With window 1 only the newest bin is
     * open: [9] [8,1,1]. With window 2 the first 1 goes back to [9]. */
    int64_t b[] = {1, 9, 1, 8};
    assert_true(pack_docs(b, 4, 10, 1, bin, order) == 2);
    int64_t b1_bin[] = {1, 0, 1, 1};
    assert_memory_equal(bin, b1_bin, sizeof b1_bin);
    assert_true(pack_docs(b, 4, 10, 2, bin, order) == 2);
    int64_t b2_bin[] = {0, 0, 1, 1};
    assert_memory_equal(bin, b2_bin, sizeof b2_bin);
    /* window 1 is next-fit decreasing: 5,5,4,4,2 into 9 -> [5] [5,4] [4,2] */
    int64_t c[] = {2, 4, 5, 4, 5};
    assert_true(pack_docs(c, 5, 9, 1, bin, order) == 3);
    int64_t c_bin[] = {2, 1, 0, 2, 1};
    assert_memory_equal(bin, c_bin, sizeof c_bin);
    /* ... and first fit with a window that holds all bins: [5,4] [5,4] [2] */
    assert_true(pack_docs(c, 5, 9, 64, bin, order) == 3);
    int64_t c64_bin[] = {2, 0, 0, 1, 1};
    assert_memory_equal(bin, c64_bin, sizeof c64_bin);
}

static void test_edges(void **state) {
    (void)state;
    int64_t bin[1024], order[1024], lens[1024];
    /* one document of exactly cap */
    lens[0] = 100;
    assert_true(pack_docs(lens, 1, 100, 64, bin, order) == 1);
    assert_true(bin[0] == 0 && order[0] == 0);
    /* every document of length cap: one sample each, in input order */
    for (int i = 0; i < 50; i++) lens[i] = 100;
    assert_true(pack_docs(lens, 50, 100, 64, bin, order) == 50);
    for (int i = 0; i < 50; i++) assert_true(bin[i] == i && order[i] == i);
    /* all documents of length 1: ceil(n/cap) samples, filled in order */
    for (int i = 0; i < 1000; i++) lens[i] = 1;
    assert_true(pack_docs(lens, 1000, 64, 64, bin, order) == 16); /* ceil(1000/64) */
    for (int i = 0; i < 1000; i++) assert_true(bin[i] == i / 64);
    check_pack(lens, 1000, 64, 64, bin, order, 16);
    /* cap 1: every document alone */
    assert_true(pack_docs(lens, 10, 1, 64, bin, order) == 10);
    /* two that exactly fill a sample */
    lens[0] = 30;
    lens[1] = 70;
    assert_true(pack_docs(lens, 2, 100, 64, bin, order) == 1);
    assert_true(bin[0] == 0 && bin[1] == 0 && order[0] == 1 && order[1] == 0);
    /* one over: two samples */
    lens[0] = 31;
    assert_true(pack_docs(lens, 2, 100, 64, bin, order) == 2);
    /* n = 0: no samples (bin_of and order are not touched) */
    bin[0] = order[0] = -7;
    assert_true(pack_docs(lens, 0, 100, 64, bin, order) == 0);
    assert_true(bin[0] == -7 && order[0] == -7);
}

/* A larger run at prep's setting (window 64): 200k documents stay fast. */
static void test_large(void **state) {
    (void)state;
    const int64_t n = 200000, cap = 2049;
    int64_t *lens = malloc(sizeof(int64_t) * n), *bin = malloc(sizeof(int64_t) * n);
    int64_t *order = malloc(sizeof(int64_t) * n);
    uint64_t key = rng_stream(11, "test.pack.large");
    int64_t sum = 0;
    for (int64_t i = 0; i < n; i++) {
        lens[i] = draw_len(2, cap, key, (uint64_t)i);
        sum += lens[i];
    }
    int64_t nb = pack_docs(lens, n, cap, 64, bin, order);
    check_pack(lens, n, cap, 64, bin, order, nb);
    fprintf(stderr, "# 200k log-normal docs: %lld samples, volume bound %lld\n", (long long)nb,
            (long long)((sum + cap - 1) / cap));
    assert_true(nb <= (int64_t)ceil(1.25 * (double)sum / (double)cap) + 1);
    free(lens);
    free(bin);
    free(order);
}

/* prep's setting, window 0: exact first-fit decreasing through the max-tree.
 * It must place every document exactly where the unbounded window does, and
 * pack 200k log-normal documents to within 1% of the volume bound. */
static void test_exact_tree(void **state) {
    (void)state;
    const int64_t n = 200000, cap = 1025;
    int64_t *lens = malloc(sizeof(int64_t) * n), *b0 = malloc(sizeof(int64_t) * n), *b1 = malloc(sizeof(int64_t) * n);
    int64_t *order = malloc(sizeof(int64_t) * n);
    for (int mix = 0; mix < 3; mix++) {
        uint64_t key = rng_stream(13 + (uint64_t)mix, "test.pack.tree");
        int64_t m = mix == 2 ? n : 3000, sum = 0;
        for (int64_t i = 0; i < m; i++) {
            lens[i] = draw_len(mix, cap, key, (uint64_t)i);
            sum += lens[i];
        }
        int64_t nb0 = pack_docs(lens, m, cap, 0, b0, order);
        check_pack(lens, m, cap, (int)m, b0, order, nb0);
        if (mix < 2) {
            int64_t nb1 = pack_docs(lens, m, cap, (int)m, b1, order);
            assert_true(nb0 == nb1);
            assert_memory_equal(b0, b1, sizeof(int64_t) * (size_t)m);
        } else {
            fprintf(stderr, "# window 0, 200k docs: %lld samples, volume bound %lld\n", (long long)nb0,
                    (long long)((sum + cap - 1) / cap));
            assert_true((double)nb0 <= 1.01 * (double)sum / (double)cap + 1);
        }
    }
    free(lens);
    free(b0);
    free(b1);
    free(order);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_tree),
        cmocka_unit_test(test_random_mixes), cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_hand_cases),   cmocka_unit_test(test_edges),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
