/* test_zero_evict.c — ZeRO-3's eviction choice, zero_victim()
 * (src/optim/zero_impl.h): among the resident unused chunks, the one whose
 * next use is furthest away (none: the best victim), ties to the least
 * recently used.
 *
 * A tiny cache simulator drives it the way zero_fetch.c does: a cache of k
 * chunks follows a trace of chunk uses; at position i a chunk's nextuse is
 * the position of its next use after its latest one (LONG_MAX: none),
 * lastuse the clock of its latest use. A use hits, or misses: when the cache
 * is full, zero_victim over the resident chunks picks the one to evict.
 *
 * Hand-checked case, trace 0 1 2 0 3 0 4 2 3 1 with k = 3:
 *   pos 0-2  0, 1, 2 miss (cache fills)        {0 1 2}
 *   pos 3    0 hit
 *   pos 4    3 misses; next uses 0@5 1@9 2@7 -> evict 1   {0 2 3}
 *   pos 5    0 hit
 *   pos 6    4 misses; next uses 0 none, 2@7 3@8 -> evict 0 {2 3 4}
 *   pos 7-8  2, 3 hit
 *   pos 9    1 misses; no next use for 2, 3, 4 (a tie): least recently
 *            used is 4 (last used at pos 6; 2 at 7, 3 at 8) -> evict 4
 *   evictions 1 0 4, misses 6.
 * And for random short traces the total misses equal Belady's optimum,
 * found by trying every eviction choice at every miss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "zero_impl.h"
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { MAXC = 8, MAXT = 16 };

/* Simulate a cache of k chunks over trace tr[0..n) with zero_victim;
 * evictions into ev (count in *nev); returns the misses. */
static int simulate(const int *tr, int n, int k, int *ev, int *nev) {
    long nextuse[MAXC], lastuse[MAXC], clock = 0;
    int res[MAXC], nres = 0, misses = 0;
    for (int c = 0; c < MAXC; c++) {
        nextuse[c] = LONG_MAX;
        lastuse[c] = 0;
    }
    zero_trace t;
    memset(&t, 0, sizeof t);
    t.nextuse = nextuse;
    t.lastuse = lastuse;
    *nev = 0;
    for (int i = 0; i < n; i++) {
        int c = tr[i], hit = 0;
        for (int j = 0; j < nres; j++) hit |= res[j] == c;
        if (!hit) {
            misses++;
            if (nres == k) {
                int v = zero_victim(&t, res, nres);
                assert_true(v >= 0);
                int at = -1;
                for (int j = 0; j < nres; j++)
                    if (res[j] == v) at = j;
                assert_true(at >= 0); /* the victim is one of the candidates */
                res[at] = res[--nres];
                ev[(*nev)++] = v;
            }
            res[nres++] = c;
        }
        lastuse[c] = ++clock;
        nextuse[c] = LONG_MAX;
        for (int j = i + 1; j < n; j++)
            if (tr[j] == c) {
                nextuse[c] = j;
                break;
            }
    }
    return misses;
}

static const int empty[1] = {0}; /* an empty cache (memcpy wants a non-null source) */

/* The fewest misses over every eviction choice (brute force). */
static int belady_min(const int *tr, int n, int k, int i, const int *res, int nres) {
    for (; i < n; i++) {
        int hit = 0;
        for (int j = 0; j < nres; j++) hit |= res[j] == tr[i];
        if (hit) continue;
        int r[MAXC];
        memcpy(r, res, sizeof(int) * (size_t)nres);
        if (nres < k) { /* no choice: fill */
            r[nres] = tr[i];
            return 1 + belady_min(tr, n, k, i + 1, r, nres + 1);
        }
        int best = INT_MAX;
        for (int e = 0; e < nres; e++) {
            memcpy(r, res, sizeof(int) * (size_t)nres);
            r[e] = tr[i];
            int m = belady_min(tr, n, k, i + 1, r, nres);
            if (m < best) best = m;
        }
        return 1 + best;
    }
    return 0;
}

static void test_hand_checked(void **state) {
    (void)state;
    const int tr[] = {0, 1, 2, 0, 3, 0, 4, 2, 3, 1};
    int ev[MAXT], nev;
    int misses = simulate(tr, 10, 3, ev, &nev);
    assert_int_equal(misses, 6);
    assert_int_equal(nev, 3);
    assert_int_equal(ev[0], 1);
    assert_int_equal(ev[1], 0);
    assert_int_equal(ev[2], 4);
    assert_int_equal(belady_min(tr, 10, 3, 0, empty, 0), 6);
}

/* Ties on "no next use" go to the least recently used; a chunk with a next
 * use loses to any without one; no candidate: -1. */
static void test_ties_and_empty(void **state) {
    (void)state;
    long nextuse[4] = {LONG_MAX, 7, LONG_MAX, LONG_MAX};
    long lastuse[4] = {5, 1, 3, 9};
    zero_trace t;
    memset(&t, 0, sizeof t);
    t.nextuse = nextuse;
    t.lastuse = lastuse;
    int all[4] = {0, 1, 2, 3};
    assert_int_equal(zero_victim(&t, all, 4), 2);          /* LONG_MAX, least recent (3) */
    int two[2] = {1, 3};
    assert_int_equal(zero_victim(&t, two, 2), 3);          /* no next use beats a next use at 7 */
    int fin[2] = {1, 1};
    assert_int_equal(zero_victim(&t, fin, 1), 1);
    nextuse[0] = 4;
    nextuse[2] = 6;
    nextuse[3] = 5;
    assert_int_equal(zero_victim(&t, all, 4), 1);          /* furthest finite next use (7) */
    assert_int_equal(zero_victim(&t, all, 0), -1);
}

/* Random short traces: zero_victim's misses equal the brute-force optimum. */
static void test_belady_random(void **state) {
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 40; trial++) {
        int n = 8 + trial % 5, nch = 3 + trial % 3, k = 2 + trial % 2, tr[MAXT];
        for (int i = 0; i < n; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            tr[i] = (int)(s % (uint64_t)nch);
        }
        int ev[MAXT], nev;
        int m = simulate(tr, n, k, ev, &nev);
        int opt = belady_min(tr, n, k, 0, empty, 0);
        if (m != opt) {
            char b[128] = "";
            for (int i = 0; i < n; i++) snprintf(b + strlen(b), sizeof b - strlen(b), "%d ", tr[i]);
            print_message("trace %s k %d: zero_victim %d misses, optimum %d\n", b, k, m, opt);
        }
        assert_int_equal(m, opt);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_checked),
        cmocka_unit_test(test_ties_and_empty),
        cmocka_unit_test(test_belady_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
