/* test_sample.c — next-token sampling (src/model/sample.h): greedy is the
 * argmax, a temperature near 0 is greedy, top-k stays inside the k largest
 * logits, the frequencies of many draws match the tempered softmax, and a
 * seed and draw index fix the token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "rng.h"
#include "sample.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Logits of V tokens from the RNG, spread over [-4, 4). */
static void random_logits(float *l, int V, uint64_t seed) {
    uint64_t key = rng_stream(seed, "test-logits");
    for (int v = 0; v < V; v++) l[v] = (float)(8.0 * rng_uniform(key, (uint64_t)v) - 4.0);
}

static int argmax(const float *l, int V) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[b]) b = v;
    return b;
}

/* Temperature 0 returns the argmax whatever the key, draw and top-k; equal
 * maxima give the lowest id. */
static void test_greedy(void **state) {
    (void)state;
    enum { V = 50 };
    float l[V];
    lm_sampler s;
    sampler_init(&s, V);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        random_logits(l, V, seed);
        int want = argmax(l, V);
        for (uint64_t d = 0; d < 5; d++) assert_int_equal(sample_token(&s, l, 0.0, (int)d, seed, d), want);
    }
    for (int v = 0; v < V; v++) l[v] = 0.0f;
    l[7] = l[30] = 1.0f;
    assert_int_equal(sample_token(&s, l, 0.0, 40, 1, 0), 7);
    sampler_free(&s);
}

/* A temperature near 0 puts all the mass on the largest logit: the draw is
 * the greedy token (logits at least 1e-3 apart: exp(-1e-3/1e-6) = 0). */
static void test_cold_is_greedy(void **state) {
    (void)state;
    enum { V = 64 };
    float l[V];
    lm_sampler s;
    sampler_init(&s, V);
    for (uint64_t seed = 1; seed <= 10; seed++) {
        uint64_t key = rng_stream(seed, "order");
        for (int v = 0; v < V; v++) l[v] = 1e-3f * (float)v;
        for (int v = V - 1; v > 0; v--) { /* shuffle the distinct values */
            int j = (int)(rng_uniform(key, (uint64_t)v) * (v + 1));
            float t = l[v];
            l[v] = l[j];
            l[j] = t;
        }
        int want = argmax(l, V);
        for (uint64_t d = 0; d < 200; d++) {
            assert_int_equal(sample_token(&s, l, 1e-6, 0, seed, d), want);
            assert_int_equal(sample_token(&s, l, 1e-6, 5, seed, d), want);
        }
    }
    sampler_free(&s);
}

/* Top-k: every draw is one of the k largest logits, even at a temperature
 * that makes the others almost as likely; each of the k is drawn. */
static void test_top_k_support(void **state) {
    (void)state;
    enum { V = 40, K = 4, N = 20000 };
    float l[V];
    lm_sampler s;
    sampler_init(&s, V);
    random_logits(l, V, 99);
    float sorted[V];
    memcpy(sorted, l, sizeof sorted);
    for (int i = 1; i < V; i++) /* descending */
        for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
            float t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    int seen[V] = {0};
    for (int d = 0; d < N; d++) {
        int t = sample_token(&s, l, 50.0, K, 7, (uint64_t)d);
        assert_true(t >= 0 && t < V);
        assert_true(l[t] >= sorted[K - 1]);
        seen[t]++;
    }
    int distinct = 0;
    for (int v = 0; v < V; v++) distinct += seen[v] > 0;
    assert_int_equal(distinct, K);
    /* top_k <= 0 or >= V: the whole vocabulary */
    memset(seen, 0, sizeof seen);
    for (int d = 0; d < N; d++) seen[sample_token(&s, l, 50.0, V + 5, 8, (uint64_t)d)]++;
    for (int d = 0; d < N; d++) seen[sample_token(&s, l, 50.0, -1, 9, (uint64_t)d)]++;
    for (int v = 0; v < V; v++) assert_true(seen[v] > 0);
    sampler_free(&s);
}

/* Frequencies over N draws against softmax(logits/T) over the top k
 * (renormalised), within 5 standard deviations of a binomial count; tokens
 * outside the top k never appear. */
static void check_frequencies(const float *l, int V, double T, int k, uint64_t key) {
    enum { N = 200000 };
    lm_sampler s;
    sampler_init(&s, V);
    int n[16] = {0};
    for (int d = 0; d < N; d++) n[sample_token(&s, l, T, k, key, (uint64_t)d)]++;
    double p[16], z = 0;
    for (int v = 0; v < V; v++) {
        int rank = 0; /* how many logits are larger */
        for (int u = 0; u < V; u++) rank += l[u] > l[v];
        p[v] = k > 0 && rank >= k ? 0.0 : exp(l[v] / T);
        z += p[v];
    }
    for (int v = 0; v < V; v++) {
        p[v] /= z;
        double sd = sqrt(p[v] * (1 - p[v]) / N), f = (double)n[v] / N;
        if (p[v] == 0) assert_int_equal(n[v], 0);
        else assert_true(fabs(f - p[v]) <= 5 * sd);
    }
    sampler_free(&s);
}

static void test_frequencies(void **state) {
    (void)state;
    const float l[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f};
    check_frequencies(l, 6, 1.0, 0, 11);
    check_frequencies(l, 6, 0.7, 0, 12);
    check_frequencies(l, 6, 2.5, 3, 13); /* top 3: ids 4, 0, 1 */
}

/* The same seed gives the same tokens, draw by draw; another seed does not. */
static void test_seeded(void **state) {
    (void)state;
    enum { V = 30, N = 64 };
    float l[V];
    random_logits(l, V, 5);
    for (int v = 0; v < V; v++) l[v] *= 0.1f; /* near-uniform: many tokens likely */
    lm_sampler s;
    sampler_init(&s, V);
    int a[N], b[N], c[N];
    uint64_t k1 = rng_stream(1234, "generate"), k2 = rng_stream(1235, "generate");
    for (int d = 0; d < N; d++) a[d] = sample_token(&s, l, 0.8, 10, k1, (uint64_t)d);
    for (int d = N - 1; d >= 0; d--) b[d] = sample_token(&s, l, 0.8, 10, k1, (uint64_t)d); /* any order */
    for (int d = 0; d < N; d++) c[d] = sample_token(&s, l, 0.8, 10, k2, (uint64_t)d);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    sampler_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_cold_is_greedy),
        cmocka_unit_test(test_top_k_support),
        cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_seeded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
