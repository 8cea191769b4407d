/* test_topo.c — the process grid's pure functions (src/dist/topo.h), one process:
 * topo_sizes (auto dp, explicit dp, the errors and their messages) and
 * topo_coords (Megatron's order, tp innermost: world rank =
 * (pp_rank * dp + dp_rank) * tp + tp_rank; a bijection onto the grid; which
 * ranks share a tp / dp / pp group). The 4-rank check of topo_create's
 * communicators is in test_comm_mpi.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "common.h"
#include "topo.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_sizes_auto_dp(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    /* {world, tp, pp, expected dp} */
    static const int cases[][4] = {{1, 1, 1, 1}, {4, 1, 1, 4}, {4, 2, 1, 2}, {4, 1, 2, 2}, {4, 2, 2, 1},
                                   {8, 2, 2, 2}, {12, 3, 2, 2}, {12, 2, 3, 2}, {24, 4, 2, 3}, {6, 6, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int dp = -7;
        err[0] = 0;
        int rc = topo_sizes(cases[i][0], cases[i][1], cases[i][2], 0, &dp, err, sizeof err);
        if (rc != 0 || dp != cases[i][3])
            fail_msg("world %d tp %d pp %d: rc %d dp %d (%s)", cases[i][0], cases[i][1], cases[i][2], rc, dp, err);
    }
}

static void test_sizes_explicit_dp(void **state) {
    (void)state;
    char err[LM_ERRLEN] = "";
    int dp = -7;
    assert_int_equal(topo_sizes(8, 2, 2, 2, &dp, err, sizeof err), 0);
    assert_int_equal(dp, 2);
    assert_int_equal(topo_sizes(8, 1, 1, 8, &dp, err, sizeof err), 0);
    assert_int_equal(dp, 8);
    assert_int_equal(topo_sizes(6, 3, 1, 2, &dp, err, sizeof err), 0);
    assert_int_equal(dp, 2);
}

/* world not divisible by tp x pp: error 2, the message names the world and
 * the multiple to launch */
static void test_sizes_not_divisible(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    int dp = -7;
    err[0] = 0;
    assert_int_equal(topo_sizes(6, 4, 1, 0, &dp, err, sizeof err), 2);
    assert_non_null(strstr(err, "6 ranks"));
    assert_non_null(strstr(err, "multiple of 4"));
    err[0] = 0;
    assert_int_equal(topo_sizes(8, 3, 1, 0, &dp, err, sizeof err), 2);
    assert_non_null(strstr(err, "multiple of 3"));
    err[0] = 0;
    assert_int_equal(topo_sizes(4, 2, 4, 0, &dp, err, sizeof err), 2); /* tp x pp = 8 > world */
    assert_non_null(strstr(err, "multiple of 8"));
    err[0] = 0;
    assert_int_equal(topo_sizes(12, 2, 4, 0, &dp, err, sizeof err), 2); /* 12 % 8 */
    assert_non_null(strstr(err, "parallel.tp = 2"));
    assert_non_null(strstr(err, "parallel.pp = 4"));
    /* with an explicit dp too, the divisibility error comes first */
    err[0] = 0;
    assert_int_equal(topo_sizes(6, 4, 1, 1, &dp, err, sizeof err), 2);
    assert_non_null(strstr(err, "multiple of 4"));
}

/* explicit dp that does not match world / (tp x pp) */
static void test_sizes_dp_mismatch(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    int dp = -7;
    err[0] = 0;
    assert_int_equal(topo_sizes(8, 2, 1, 3, &dp, err, sizeof err), 2);
    assert_non_null(strstr(err, "does not match the 8 ranks"));
    assert_non_null(strstr(err, "dp = 3"));
    err[0] = 0;
    assert_int_equal(topo_sizes(8, 2, 2, 4, &dp, err, sizeof err), 2); /* 16 != 8 */
    assert_non_null(strstr(err, "= 16"));
    assert_non_null(strstr(err, "8 ranks"));
    err[0] = 0;
    assert_int_equal(topo_sizes(4, 1, 1, 2, &dp, err, sizeof err), 2); /* too few */
    assert_non_null(strstr(err, "4 ranks"));
}

static void test_sizes_non_positive(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    int dp = -7;
    static const int cases[][3] = {{0, 1, 0}, {1, 0, 0}, {-2, 1, 0}, {1, 1, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        assert_int_equal(topo_sizes(4, cases[i][0], cases[i][1], cases[i][2], &dp, err, sizeof err), 2);
        assert_non_null(strstr(err, "must be positive"));
    }
}

/* The documented formula, for the grid dp 2 x tp 2 x pp 2 spelled out. */
static void test_coords_dp2_tp2_pp2(void **state) {
    (void)state;
    /* rank -> {dp_rank, tp_rank, pp_rank} */
    static const int want[8][3] = {{0, 0, 0}, {0, 1, 0}, {1, 0, 0}, {1, 1, 0},
                                   {0, 0, 1}, {0, 1, 1}, {1, 0, 1}, {1, 1, 1}};
    for (int r = 0; r < 8; r++) {
        int d = -1, t = -1, p = -1;
        topo_coords(r, 2, 2, 2, &d, &t, &p);
        if (d != want[r][0] || t != want[r][1] || p != want[r][2])
            fail_msg("rank %d: dp %d tp %d pp %d, want %d %d %d", r, d, t, p, want[r][0], want[r][1], want[r][2]);
        assert_int_equal(r, (p * 2 + d) * 2 + t);
    }
}

/* Every grid up to 4 x 4 x 4: coordinates in range, the formula inverts them,
 * and each grid point is hit exactly once. */
static void test_coords_all_grids(void **state) {
    (void)state;
    for (int dp = 1; dp <= 4; dp++)
        for (int tp = 1; tp <= 4; tp++)
            for (int pp = 1; pp <= 4; pp++) {
                int world = dp * tp * pp;
                char *seen = calloc((size_t)world, 1);
                for (int r = 0; r < world; r++) {
                    int d = -1, t = -1, p = -1;
                    topo_coords(r, dp, tp, pp, &d, &t, &p);
                    if (d < 0 || d >= dp || t < 0 || t >= tp || p < 0 || p >= pp)
                        fail_msg("grid dp %d tp %d pp %d rank %d: coords %d %d %d out of range", dp, tp, pp, r, d, t, p);
                    if ((p * dp + d) * tp + t != r)
                        fail_msg("grid dp %d tp %d pp %d rank %d: coords %d %d %d", dp, tp, pp, r, d, t, p);
                    int cell = (p * dp + d) * tp + t;
                    assert_int_equal(seen[cell], 0);
                    seen[cell] = 1;
                }
                free(seen);
            }
}

/* Group membership implied by the coordinates: with 4 ranks and tp = 2 the
 * tp groups are consecutive ranks {0,1},{2,3}; the dp groups stride by tp
 * {0,2},{1,3}. With pp = 2, tp = 2 (dp 1) the pp groups are {0,2},{1,3};
 * with pp 2, dp 2 (tp 1) pp groups {0,2},{1,3}, dp groups {0,1},{2,3}. */
static void group_ids(int r, int dp, int tp, int pp, int *tp_id, int *dp_id, int *pp_id) {
    int d, t, p;
    topo_coords(r, dp, tp, pp, &d, &t, &p);
    *tp_id = p * dp + d; /* shared coordinates */
    *dp_id = p * tp + t;
    *pp_id = d * tp + t;
}

static void test_coords_groups_4_ranks(void **state) {
    (void)state;
    int a, b, c, a2, b2, c2;
    /* dp 2 x tp 2 */
    for (int r = 0; r < 4; r++)
        for (int s = 0; s < 4; s++) {
            group_ids(r, 2, 2, 1, &a, &b, &c);
            group_ids(s, 2, 2, 1, &a2, &b2, &c2);
            assert_int_equal(a == a2, r / 2 == s / 2); /* tp: consecutive */
            assert_int_equal(b == b2, r % 2 == s % 2); /* dp: stride tp */
            assert_int_equal(c == c2, r == s);         /* pp = 1: alone */
        }
    int d, t, p;
    topo_coords(3, 2, 2, 1, &d, &t, &p);
    assert_int_equal(t, 1);
    assert_int_equal(d, 1);
    topo_coords(2, 2, 2, 1, &d, &t, &p);
    assert_int_equal(t, 0);
    assert_int_equal(d, 1);
    /* tp 2 x pp 2 (dp 1): pp groups stride by tp */
    for (int r = 0; r < 4; r++)
        for (int s = 0; s < 4; s++) {
            group_ids(r, 1, 2, 2, &a, &b, &c);
            group_ids(s, 1, 2, 2, &a2, &b2, &c2);
            assert_int_equal(a == a2, r / 2 == s / 2);
            assert_int_equal(c == c2, r % 2 == s % 2);
        }
    /* dp 2 x pp 2 (tp 1): dp groups consecutive, pp groups stride dp */
    for (int r = 0; r < 4; r++)
        for (int s = 0; s < 4; s++) {
            group_ids(r, 2, 1, 2, &a, &b, &c);
            group_ids(s, 2, 1, 2, &a2, &b2, &c2);
            assert_int_equal(b == b2, r / 2 == s / 2);
            assert_int_equal(c == c2, r % 2 == s % 2);
        }
    /* 8 ranks dp 2 x tp 2 x pp 2: rank 5 = pp 1, dp 0, tp 1 */
    topo_coords(5, 2, 2, 2, &d, &t, &p);
    assert_int_equal(p, 1);
    assert_int_equal(d, 0);
    assert_int_equal(t, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_auto_dp),        cmocka_unit_test(test_sizes_explicit_dp),
        cmocka_unit_test(test_sizes_not_divisible),  cmocka_unit_test(test_sizes_dp_mismatch),
        cmocka_unit_test(test_sizes_non_positive),   cmocka_unit_test(test_coords_dp2_tp2_pp2),
        cmocka_unit_test(test_coords_all_grids),     cmocka_unit_test(test_coords_groups_4_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
