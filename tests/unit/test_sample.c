/* test_sample.c — next-token sampling (src/model/sample.h): greedy is the
 * argmax, a temperature near 0 is greedy, top-k stays inside the k largest
 * logits, the frequencies of many draws match the tempered softmax, and a
 * seed and draw index fix the token; the top-k / top-p filtered
 * distribution against a direct computation, top-k 1 is greedy, and the
 * frequencies under top-p. */
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
        for (uint64_t d = 0; d < 5; d++) assert_int_equal(sample_token(&s, l, 0.0, (int)d, 1.0, seed, d), want);
    }
    for (int v = 0; v < V; v++) l[v] = 0.0f;
    l[7] = l[30] = 1.0f;
    assert_int_equal(sample_token(&s, l, 0.0, 40, 1.0, 1, 0), 7);
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
            assert_int_equal(sample_token(&s, l, 1e-6, 0, 1.0, seed, d), want);
            assert_int_equal(sample_token(&s, l, 1e-6, 5, 1.0, seed, d), want);
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
        int t = sample_token(&s, l, 50.0, K, 1.0, 7, (uint64_t)d);
        assert_true(t >= 0 && t < V);
        assert_true(l[t] >= sorted[K - 1]);
        seen[t]++;
    }
    int distinct = 0;
    for (int v = 0; v < V; v++) distinct += seen[v] > 0;
    assert_int_equal(distinct, K);
    /* top_k <= 0 or >= V: the whole vocabulary */
    memset(seen, 0, sizeof seen);
    for (int d = 0; d < N; d++) seen[sample_token(&s, l, 50.0, V + 5, 1.0, 8, (uint64_t)d)]++;
    for (int d = 0; d < N; d++) seen[sample_token(&s, l, 50.0, -1, 1.0, 9, (uint64_t)d)]++;
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
    for (int d = 0; d < N; d++) n[sample_token(&s, l, T, k, 1.0, key, (uint64_t)d)]++;
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

/* The filtered distribution computed directly from its definition (sample.h):
 * q[v] over the whole vocabulary, 0 outside the top-k and the nucleus. The
 * candidates' order by insertion sort (larger logit, then lower id). */
static void direct_filter(const float *l, int V, double T, int k, double top_p, double *q) {
    int ord[256];
    for (int v = 0; v < V; v++) {
        int j = v;
        for (; j > 0 && (l[ord[j - 1]] < l[v]); j--) ord[j] = ord[j - 1];
        ord[j] = v;
    }
    int kk = k > 0 && k < V ? k : V;
    double mx = l[ord[0]], z = 0, p[256];
    for (int a = 0; a < kk; a++) z += p[a] = exp(((double)l[ord[a]] - mx) / T);
    double before = 0, zn = 0;
    int n = 0;
    for (int a = 0; a < kk; a++) { /* kept iff the mass strictly before it is short of top_p */
        if (a > 0 && before >= top_p) break;
        before += p[a] / z;
        zn += p[a];
        n++;
    }
    for (int v = 0; v < V; v++) q[v] = 0;
    for (int a = 0; a < n; a++) q[ord[a]] = p[a] / zn;
}

/* Frequencies over N draws against direct_filter's distribution, within 5
 * standard deviations of a binomial count; filtered-out tokens never
 * appear. */
static void check_frequencies_p(const float *l, int V, double T, int k, double top_p, uint64_t key) {
    enum { N = 200000 };
    lm_sampler s;
    sampler_init(&s, V);
    int n[16] = {0};
    for (int d = 0; d < N; d++) n[sample_token(&s, l, T, k, top_p, key, (uint64_t)d)]++;
    double p[16];
    direct_filter(l, V, T, k, top_p, p);
    for (int v = 0; v < V; v++) {
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
    for (int d = 0; d < N; d++) a[d] = sample_token(&s, l, 0.8, 10, 1.0, k1, (uint64_t)d);
    for (int d = N - 1; d >= 0; d--) b[d] = sample_token(&s, l, 0.8, 10, 1.0, k1, (uint64_t)d); /* any order */
    for (int d = 0; d < N; d++) c[d] = sample_token(&s, l, 0.8, 10, 1.0, k2, (uint64_t)d);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    sampler_free(&s);
}


/* sample_filter against direct_filter: the same candidates, in decreasing
 * logit order, with the same probabilities (1e-12), over random logits and
 * a grid of temperatures, top-k and top-p; the nucleus is the shortest
 * prefix reaching top_p. */
static void test_filter_direct(void **state) {
    (void)state;
    enum { V = 97 };
    float l[V];
    double q[V];
    lm_sampler s;
    sampler_init(&s, V);
    const double temps[] = {0.3, 1.0, 2.0};
    const int ks[] = {0, 1, 5, 40, V, V + 3};
    const double ps[] = {1.0, 0.95, 0.5, 0.1, 1e-9};
    for (uint64_t seed = 1; seed <= 6; seed++) {
        random_logits(l, V, seed);
        if (seed == 6) l[3] = l[50] = l[argmax(l, V)]; /* ties: lower id first */
        for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
            for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
                    int n = sample_filter(&s, l, temps[ti], ks[ki], ps[pi]);
                    direct_filter(l, V, temps[ti], ks[ki], ps[pi], q);
                    int want_n = 0;
                    double cum = 0;
                    for (int v = 0; v < V; v++) want_n += q[v] > 0;
                    assert_int_equal(n, want_n);
                    for (int a = 0; a < n; a++) {
                        assert_true(a == 0 || l[s.idx[a - 1]] > l[s.idx[a]] ||
                                    (l[s.idx[a - 1]] == l[s.idx[a]] && s.idx[a - 1] < s.idx[a]));
                        assert_true(fabs(s.prob[a] - q[s.idx[a]]) <= 1e-12);
                        cum += s.prob[a];
                    }
                    assert_true(fabs(cum - 1.0) <= 1e-12);
                    if (ps[pi] == 1e-9 || ks[ki] == 1) assert_int_equal(n, 1);
                    if (ps[pi] == 1.0) assert_int_equal(n, ks[ki] > 0 && ks[ki] < V ? ks[ki] : V);
                }
    }
    sampler_free(&s);
}

/* Top-k 1 is greedy at any temperature, and so is a tiny top-p; the
 * argmax's lowest id wins ties in both. */
static void test_top1_is_greedy(void **state) {
    (void)state;
    enum { V = 64 };
    float l[V];
    lm_sampler s;
    sampler_init(&s, V);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        random_logits(l, V, seed);
        if (seed % 2) l[argmax(l, V) / 2] = l[argmax(l, V)];
        int want = sample_token(&s, l, 0.0, 0, 1.0, seed, 0);
        assert_int_equal(want, argmax(l, V));
        for (uint64_t d = 0; d < 50; d++) {
            assert_int_equal(sample_token(&s, l, 1.0, 1, 1.0, seed, d), want);
            assert_int_equal(sample_token(&s, l, 5.0, 1, 0.7, seed, d), want);
            assert_int_equal(sample_token(&s, l, 1.0, 0, 1e-12, seed, d), want);
        }
    }
    sampler_free(&s);
}

/* Draw frequencies under top-p (and top-k with top-p) against the direct
 * distribution. softmax of l at T=1, largest first: 0.538 (id 4), 0.198
 * (id 0), 0.120 (id 1), 0.073, 0.044, 0.027: p = 0.6 keeps 2 tokens
 * (0.538 < 0.6 <= 0.736) and p = 0.75 keeps 3. */
static void test_top_p_frequencies(void **state) {
    (void)state;
    const float l[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f};
    check_frequencies_p(l, 6, 1.0, 0, 0.6, 21);
    check_frequencies_p(l, 6, 1.0, 0, 0.75, 22);
    check_frequencies_p(l, 6, 2.0, 0, 0.9, 23);
    check_frequencies_p(l, 6, 1.5, 4, 0.8, 24);
    double q[6];
    direct_filter(l, 6, 1.0, 0, 0.6, q);
    int kept = 0;
    for (int v = 0; v < 6; v++) kept += q[v] > 0;
    assert_int_equal(kept, 2);
    assert_true(q[4] > 0 && q[0] > 0);
    direct_filter(l, 6, 1.0, 0, 0.75, q);
    kept = 0;
    for (int v = 0; v < 6; v++) kept += q[v] > 0;
    assert_int_equal(kept, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_cold_is_greedy),
        cmocka_unit_test(test_top_k_support),
        cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_filter_direct),
        cmocka_unit_test(test_top1_is_greedy),
        cmocka_unit_test(test_top_p_frequencies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
