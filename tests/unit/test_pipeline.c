/* test_pipeline.c — the pipeline plan (src/model/pipeline.h): layer splits
 * against a brute force over every composition, the 1F1B and interleaved
 * schedules (every operation once, in dependency order, no deadlock, at
 * most pp - stage micro-batches in flight for 1F1B) and their bubble
 * against Megatron's analytic (p - 1)/m and (p - 1)/(v m). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "pipeline.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Brute force: the least largest-chunk cost over every composition of L
 * into C positive parts, and the lexicographically smallest composition
 * reaching it. */
static double bf_best;
static int bf_arg[64], bf_cur[64];
static void bf(int L, int C, int c, int left, double e, double h) {
    if (c == C - 1) {
        bf_cur[c] = left;
        double worst = 0;
        for (int j = 0; j < C; j++) {
            double x = bf_cur[j] + (j == 0 ? e : 0) + (j == C - 1 ? h : 0);
            if (x > worst) worst = x;
        }
        if (bf_best < 0 || worst < bf_best - 1e-12) { /* first (smallest) composition wins ties */
            bf_best = worst;
            memcpy(bf_arg, bf_cur, sizeof(int) * (size_t)C);
        }
        return;
    }
    for (int n = 1; n <= left - (C - 1 - c); n++) {
        bf_cur[c] = n;
        bf(L, C, c + 1, left - n, e, h);
    }
}

/* The largest stage cost of a cut into C = pp * v chunks (chunk c on stage
 * c mod pp), and its least value over every composition (brute force). */
static double stage_worst(const int *counts, int pp, int C, double e, double h) {
    double worst = 0;
    for (int st = 0; st < pp; st++) {
        double x = 0;
        for (int c = st; c < C; c += pp) x += counts[c] + (c == 0 ? e : 0) + (c == C - 1 ? h : 0);
        if (x > worst) worst = x;
    }
    return worst;
}
static double bs_best;
static int bs_cur[64];
static void bs(int L, int pp, int C, int c, int left, double e, double h) {
    if (c == C - 1) {
        bs_cur[c] = left;
        double w = stage_worst(bs_cur, pp, C, e, h);
        if (bs_best < 0 || w < bs_best) bs_best = w;
        return;
    }
    for (int n = 1; n <= left - (C - 1 - c); n++) {
        bs_cur[c] = n;
        bs(L, pp, C, c + 1, left - n, e, h);
    }
}

static void test_split_brute_force(void **state) {
    (void)state;
    const double costs[][2] = {{0, 0}, {0.3, 1.7}, {0, 3.2}, {2.5, 0}, {0.1, 0.1}};
    char err[LM_ERRLEN];
    for (int L = 1; L <= 12; L++)
        for (int C = 1; C <= 6 && C <= L; C++)
            for (size_t k = 0; k < sizeof costs / sizeof *costs; k++) {
                lm_pp_split s;
                assert_int_equal(pp_split_layers(L, C, 1, NULL, 0, costs[k][0], costs[k][1], &s, err, sizeof err), 0);
                bf_best = -1;
                bf(L, C, 0, L, costs[k][0], costs[k][1]);
                double worst = 0;
                int sum = 0;
                for (int c = 0; c < C; c++) {
                    assert_int_equal(s.first[c], sum);
                    assert_true(s.count[c] >= 1);
                    sum += s.count[c];
                    double x = pp_chunk_cost(&s, c, costs[k][0], costs[k][1]);
                    if (x > worst) worst = x;
                }
                assert_int_equal(sum, L);
                if (fabs(worst - bf_best) > 1e-9) fail_msg("L %d C %d: max cost %g, best %g", L, C, worst, bf_best);
                for (int c = 0; c < C; c++)
                    if (s.count[c] != bf_arg[c]) fail_msg("L %d C %d: chunk %d has %d layers, want %d", L, C, c, s.count[c], bf_arg[c]);
            }
    /* v = 2: the largest stage cost (its chunks summed) is the least over
     * every composition, and a stage's chunks differ by at most one layer */
    for (int L = 4; L <= 11; L++)
        for (int pp = 2; pp <= 3 && 2 * pp <= L; pp++)
            for (size_t k = 0; k < sizeof costs / sizeof *costs; k++) {
                int C = 2 * pp;
                lm_pp_split sp;
                assert_int_equal(pp_split_layers(L, pp, 2, NULL, 0, costs[k][0], costs[k][1], &sp, err, sizeof err), 0);
                double got = stage_worst(sp.count, pp, C, costs[k][0], costs[k][1]);
                bs_best = -1;
                bs(L, pp, C, 0, L, costs[k][0], costs[k][1]);
                if (fabs(got - bs_best) > 1e-9) fail_msg("L %d pp %d v 2: largest stage %g, best %g", L, pp, got, bs_best);
                for (int st = 0; st < pp; st++) assert_true(abs(sp.count[st] - sp.count[pp + st]) <= 1);
            }
    /* with v = 2 the chunks are cut the same way: 4 x 2 chunks of 32 layers */
    lm_pp_split s;
    assert_int_equal(pp_split_layers(32, 4, 2, NULL, 0, 0, 0, &s, err, sizeof err), 0);
    assert_int_equal(s.n_chunks, 8);
    for (int c = 0; c < 8; c++) assert_int_equal(s.count[c], 4);
}

static void test_split_explicit_and_errors(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    lm_pp_split s;
    int ok[4] = {5, 6, 6, 5};
    assert_int_equal(pp_split_layers(22, 4, 1, ok, 4, 0, 0, &s, err, sizeof err), 0);
    assert_int_equal(s.first[3], 17);
    assert_int_equal(pp_split_layers(3, 4, 1, NULL, 0, 0, 0, &s, err, sizeof err), 2);
    assert_non_null(strstr(err, "model.n_layers = 3 is less than"));
    assert_int_equal(pp_split_layers(6, 2, 2, NULL, 0, 0, 0, &s, err, sizeof err), 0);
    assert_int_equal(pp_split_layers(22, 4, 1, ok, 3, 0, 0, &s, err, sizeof err), 2);
    assert_non_null(strstr(err, "3 entries"));
    int bad[4] = {5, 0, 11, 6};
    assert_int_equal(pp_split_layers(22, 4, 1, bad, 4, 0, 0, &s, err, sizeof err), 2);
    assert_non_null(strstr(err, "entry 2 is 0"));
    int sum[4] = {5, 6, 6, 6};
    assert_int_equal(pp_split_layers(22, 4, 1, sum, 4, 0, 0, &s, err, sizeof err), 2);
    assert_non_null(strstr(err, "sum to 23"));
}

static void test_schedule_rules(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    assert_int_equal(pp_schedule_check(LM_PP_1F1B, 4, 1, 3, err, sizeof err), 0);
    assert_int_equal(pp_schedule_check(LM_PP_1F1B, 4, 2, 8, err, sizeof err), 2);
    assert_non_null(strstr(err, "virtual_stages = 2 must be 1"));
    assert_int_equal(pp_schedule_check(LM_PP_INTERLEAVED, 4, 1, 8, err, sizeof err), 2);
    assert_int_equal(pp_schedule_check(LM_PP_INTERLEAVED, 4, 2, 6, err, sizeof err), 2);
    assert_non_null(strstr(err, "must be a multiple of parallel.pp = 4"));
    assert_int_equal(pp_schedule_check(LM_PP_INTERLEAVED, 4, 2, 8, err, sizeof err), 0);
    assert_int_equal(pp_schedule_check(LM_PP_1F1B, 2, 1, 0, err, sizeof err), 2);
}

/* Every (direction, micro-batch, chunk) once per stage, each forward before
 * its backward, the 1F1B memory bound, the replay without deadlock and the
 * bubble against the formula. */
static void check_schedule(int kind, int pp, int v, int m) {
    int per = 2 * m * v;
    lm_pp_op *ops = malloc(sizeof(lm_pp_op) * (size_t)per);
    for (int s = 0; s < pp; s++) {
        pp_schedule(kind, pp, v, m, s, ops);
        int *seen = calloc(2 * (size_t)m * (size_t)v, sizeof(int));
        int inflight = 0, most = 0;
        for (int i = 0; i < per; i++) {
            const lm_pp_op *o = &ops[i];
            assert_true(o->mb >= 0 && o->mb < m && o->chunk >= 0 && o->chunk < v);
            int f = o->mb * v + o->chunk;
            if (o->kind == LM_PP_BWD) {
                assert_int_equal(seen[f], 1); /* its forward came first */
                seen[m * v + f]++;
                inflight--;
            } else {
                seen[f]++;
                if (++inflight > most) most = inflight;
            }
        }
        for (int i = 0; i < 2 * m * v; i++) assert_int_equal(seen[i], 1);
        if (kind == LM_PP_1F1B) assert_true(most <= pp - s);
        free(seen);
    }
    free(ops);
    double idle[64];
    double span = pp_simulate(kind, pp, v, m, 1.0 / v, 2.0 / v, idle);
    if (span < 0) fail_msg("schedule %d pp %d v %d m %d deadlocks", kind, pp, v, m);
    if (m >= pp) {
        double want = (double)(pp - 1) / ((double)v * m);
        for (int s = 0; s < pp; s++)
            if (fabs(idle[s] - want) > 1e-9)
                fail_msg("schedule %d pp %d v %d m %d: stage %d bubble %g, formula %g", kind, pp, v, m, s, idle[s], want);
    }
}

static void test_schedules(void **state) {
    (void)state;
    for (int pp = 1; pp <= 8; pp++)
        for (int m = 1; m <= 24; m++) check_schedule(LM_PP_1F1B, pp, 1, m);
    for (int pp = 1; pp <= 8; pp++)
        for (int v = 2; v <= 4; v++)
            for (int m = pp; m <= 24; m += pp) check_schedule(LM_PP_INTERLEAVED, pp, v, m);
    /* the warm-up of the first stage, by hand: pp 4, m 8 */
    lm_pp_op ops[16];
    pp_schedule(LM_PP_1F1B, 4, 1, 8, 0, ops);
    int want_kind[8] = {0, 0, 0, 0, 1, 0, 1, 0}, want_mb[8] = {0, 1, 2, 3, 0, 4, 1, 5};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(ops[i].kind, want_kind[i]);
        assert_int_equal(ops[i].mb, want_mb[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_brute_force),
        cmocka_unit_test(test_split_explicit_and_errors),
        cmocka_unit_test(test_schedule_rules),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
