/* test_rng.c — counter-based random numbers (src/core/rng.h): ranges, moments of
 * the normal, uniformity of rng_below (chi-square), determinism, independence
 * of streams, and the extreme outputs of the mixer (reached by inverting it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rng.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- inverse of rng_mix64, to reach chosen outputs ----
 * rng_mix64 is z += C0; z ^= z>>30; z *= C1; z ^= z>>27; z *= C2; z ^= z>>31.
 * Each step is a bijection on 64-bit words: an xorshift y = x ^ (x>>s) is
 * undone by iterating x = y ^ (x>>s) (each pass fixes s more top bits), and a
 * multiply by an odd constant by a multiply by its inverse mod 2^64 (Newton:
 * x <- x(2 - a x) doubles the number of correct low bits). */
static uint64_t inv_odd(uint64_t a) {
    uint64_t x = a; /* correct to 3 bits: a*a = 1 mod 8 for odd a */
    for (int k = 0; k < 6; k++) x *= 2 - a * x;
    return x;
}

static uint64_t unxorshift(uint64_t y, int s) {
    uint64_t x = y;
    for (int k = 0; k < 64 / s + 1; k++) x = y ^ (x >> s);
    return x;
}

static uint64_t unmix64(uint64_t z) {
    z = unxorshift(z, 31);
    z *= inv_odd(0x94D049BB133111EBull);
    z = unxorshift(z, 27);
    z *= inv_odd(0xBF58476D1CE4E5B9ull);
    z = unxorshift(z, 30);
    return z - 0x9E3779B97F4A7C15ull;
}

/* The index i of stream key whose raw draw rng_mix64(key ^ rng_mix64(i)) is v. */
static uint64_t index_for(uint64_t key, uint64_t v) { return unmix64(unmix64(v) ^ key); }

static void test_unmix_is_inverse(void **state) {
    (void)state;
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t x = i * 0x123456789ABCDEFull + 17;
        assert_true(unmix64(rng_mix64(x)) == x);
        assert_true(rng_mix64(unmix64(x)) == x);
    }
}

/* FNV-1a 64 reference vectors (from the FNV specification's test suite). */
static void test_hash_str(void **state) {
    (void)state;
    assert_true(rng_hash_str("") == 0xcbf29ce484222325ull);
    assert_true(rng_hash_str("a") == 0xaf63dc4c8601ec8cull);
    assert_true(rng_hash_str("foobar") == 0x85944171f73967e8ull);
}

static void test_uniform_range(void **state) {
    (void)state;
    uint64_t key = rng_stream(1234, "test.uniform");
    double lo = 1, hi = 0, sum = 0;
    int bins[10] = {0};
    const int N = 1000000;
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(key, (uint64_t)i);
        assert_true(u >= 0.0 && u < 1.0);
        if (u < lo) lo = u;
        if (u > hi) hi = u;
        sum += u;
        bins[(int)(u * 10)]++;
    }
    assert_true(lo < 1e-5 && hi > 1 - 1e-5);
    assert_true(fabs(sum / N - 0.5) < 0.002);
    /* chi-square, 9 degrees of freedom: 27.88 is the 0.999 quantile */
    double chi = 0, e = N / 10.0;
    for (int b = 0; b < 10; b++) chi += (bins[b] - e) * (bins[b] - e) / e;
    assert_true(chi < 27.88);
}

/* The largest and smallest raw draws: uniform stays below 1 and hits 0
 * exactly; rng_below stays in [0, n); rng_normal stays finite at u1 = 0. */
static void test_extremes(void **state) {
    (void)state;
    uint64_t key = rng_stream(7, "test.extremes");
    uint64_t imax = index_for(key, UINT64_MAX);
    double u = rng_uniform(key, imax);
    assert_true(u < 1.0);
    assert_true(u == nextafter(1.0, 0.0));
    assert_true(rng_below(key, imax, 10) == 9);
    assert_true(rng_below(key, imax, 1) == 0);
    assert_true(rng_below(key, imax, UINT64_MAX) == UINT64_MAX - 1);

    /* a raw draw below 2^11 maps to exactly 0.0; find one at an even index
     * (rng_normal(key, i) takes u1 from index 2i) */
    int found = 0;
    for (uint64_t v = 0; v < 2048 && !found; v++) {
        uint64_t j = index_for(key, v);
        if (j & 1) continue;
        found = 1;
        assert_true(rng_uniform(key, j) == 0.0);
        assert_true(rng_below(key, j, 1000) == 0);
        double z = rng_normal(key, j / 2);
        assert_true(isfinite(z));
        assert_true(fabs(z) <= 37.2); /* sqrt(-2 ln 1e-300) = 37.17 */
    }
    assert_true(found);
}

static void test_normal_moments(void **state) {
    (void)state;
    uint64_t key = rng_stream(1234, "model.layers.0.self_attn.q_proj.weight");
    const int N = 1000000;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0, lag = 0, lag2 = 0, prev = rng_normal(key, (uint64_t)N);
    long in1 = 0, in2 = 0;
    for (int i = 0; i < N; i++) {
        double z = rng_normal(key, (uint64_t)i);
        /* neighbours independent: z and z^2 uncorrelated at lag 1 (normals
         * that shared a uniform would correlate in z^2 by about 0.06) */
        lag += z * prev;
        lag2 += (z * z - 1) * (prev * prev - 1);
        prev = z;
        assert_true(isfinite(z));
        s1 += z;
        s2 += z * z;
        s3 += z * z * z;
        s4 += z * z * z * z;
        in1 += fabs(z) < 1;
        in2 += fabs(z) < 2;
    }
    double mean = s1 / N, var = s2 / N - mean * mean;
    double skew = s3 / N, kurt = s4 / N;
    fprintf(stderr, "# normal: mean %.5f var %.5f skew %.5f kurt %.5f P(|z|<1) %.5f P(|z|<2) %.5f\n", mean, var,
            skew, kurt, (double)in1 / N, (double)in2 / N);
    fprintf(stderr, "# normal: lag-1 corr %.5f, of squares %.5f\n", lag / N, lag2 / (2.0 * N));
    assert_true(fabs(lag / N) < 0.005);
    assert_true(fabs(lag2 / (2.0 * N)) < 0.01);
    assert_true(fabs(mean) < 0.005);
    assert_true(fabs(var - 1.0) < 0.01);
    /* the shape, not only two moments: a scaled uniform passes the above */
    assert_true(fabs(skew) < 0.02);
    assert_true(fabs(kurt - 3.0) < 0.05);
    assert_true(fabs((double)in1 / N - 0.682689) < 0.003);
    assert_true(fabs((double)in2 / N - 0.954500) < 0.002);
}

static void test_determinism(void **state) {
    (void)state;
    uint64_t k1 = rng_stream(42, "data.epoch.0"), k2 = rng_stream(42, "data.epoch.0");
    assert_true(k1 == k2);
    /* any order of evaluation gives the same element: a pure function */
    for (int i = 999; i >= 0; i--) {
        assert_true(rng_uniform(k1, (uint64_t)i) == rng_uniform(k2, (uint64_t)i));
        assert_true(rng_normal(k1, (uint64_t)i) == rng_normal(k2, (uint64_t)i));
        assert_true(rng_below(k1, (uint64_t)i, 37) == rng_below(k2, (uint64_t)i, 37));
    }
    double a = rng_normal(k1, 123456789);
    for (int i = 0; i < 100; i++) (void)rng_normal(k1, (uint64_t)i);
    assert_true(rng_normal(k1, 123456789) == a);
}

/* Pearson correlation of elements 0..n-1 of two streams. */
static double corr(uint64_t ka, uint64_t kb, int n) {
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (int i = 0; i < n; i++) {
        double a = rng_uniform(ka, (uint64_t)i), b = rng_uniform(kb, (uint64_t)i);
        sa += a;
        sb += b;
        saa += a * a;
        sbb += b * b;
        sab += a * b;
    }
    double ca = saa / n - (sa / n) * (sa / n), cb = sbb / n - (sb / n) * (sb / n);
    return (sab / n - (sa / n) * (sb / n)) / sqrt(ca * cb);
}

static void test_streams_differ(void **state) {
    (void)state;
    const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                           "model.layers.1.self_attn.q_proj.weight", "data.epoch.0", "data.epoch.1", "a", "b", ""};
    int nn = (int)(sizeof names / sizeof names[0]);
    uint64_t keys[16];
    for (int a = 0; a < nn; a++) keys[a] = rng_stream(1234, names[a]);
    keys[nn] = rng_stream(1235, names[0]); /* neighbouring seed, same name */
    keys[nn + 1] = rng_stream(0, names[0]);
    int nk = nn + 2;
    for (int a = 0; a < nk; a++)
        for (int b = a + 1; b < nk; b++) {
            assert_true(keys[a] != keys[b]);
            int same = 0;
            for (int i = 0; i < 1000; i++) same += rng_uniform(keys[a], (uint64_t)i) == rng_uniform(keys[b], (uint64_t)i);
            assert_int_equal(same, 0);
            /* 2e4 pairs: standard error of r is 0.007 */
            double r = corr(keys[a], keys[b], 20000);
            assert_true(fabs(r) < 0.035);
        }
    /* neighbouring indices of one stream are uncorrelated too */
    uint64_t k = keys[0];
    double s = 0;
    const int N = 100000;
    for (int i = 0; i < N; i++) s += (rng_uniform(k, (uint64_t)i) - 0.5) * (rng_uniform(k, (uint64_t)i + 1) - 0.5);
    assert_true(fabs(s / N * 12.0) < 0.015);
}

static void test_below(void **state) {
    (void)state;
    uint64_t key = rng_stream(99, "test.below");
    const int N = 200000;
    /* range for several n, chi-square over the n = 10 bins */
    const uint64_t ns[] = {1, 2, 3, 7, 10, 1000003, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        uint64_t n = ns[t], mx = 0;
        for (int i = 0; i < N; i++) {
            uint64_t r = rng_below(key, (uint64_t)i, n);
            assert_true(r < n);
            if (r > mx) mx = r;
        }
        if (n > 1) assert_true(mx >= n - n / 1000 - 1); /* the top of the range is reached */
    }
    int bins[10] = {0};
    for (int i = 0; i < N; i++) bins[rng_below(key, (uint64_t)i, 10)]++;
    double chi = 0, e = N / 10.0;
    for (int b = 0; b < 10; b++) chi += (bins[b] - e) * (bins[b] - e) / e;
    fprintf(stderr, "# rng_below(10): chi2 = %.2f (9 dof)\n", chi);
    assert_true(chi < 27.88);
    /* n = 3 does not divide 2^64: still uniform */
    int b3[3] = {0};
    for (int i = 0; i < N; i++) b3[rng_below(key, (uint64_t)i + N, 3)]++;
    chi = 0;
    e = N / 3.0;
    for (int b = 0; b < 3; b++) chi += (b3[b] - e) * (b3[b] - e) / e;
    assert_true(chi < 13.82); /* 2 dof, 0.999 */
    /* rng_below agrees with the uniform of the same element: both read the
     * top bits of the same raw draw */
    for (int i = 0; i < 1000; i++) {
        double u = rng_uniform(key, (uint64_t)i);
        uint64_t r = rng_below(key, (uint64_t)i, 1000);
        assert_true(fabs((double)r - floor(u * 1000)) <= 1.0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmix_is_inverse), cmocka_unit_test(test_hash_str),
        cmocka_unit_test(test_uniform_range),    cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_normal_moments),   cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_streams_differ),   cmocka_unit_test(test_below),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
