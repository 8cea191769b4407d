/* test_kvcache.c — incremental inference over a KV cache (src/model/kvcache.h)
 * against the full forward pass: for a random model and a token sequence,
 * the logits of the last token after each cached step (a prefill of several
 * tokens, then one at a time) equal the full forward's logits of that row
 * within 1e-5 relative (float32 CPU backend; the bf16 emulation within bf16
 * rounding); any split of the sequence into steps gives the same logits; a
 * reset cache replays bit for bit; and the decode attention op against a
 * direct double-precision computation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "kvcache.h"
#include "model.h"
#include "rng.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { TW = 24, LEN = 20 }; /* window (model T) and tokens used */

static lm_shape shape(int vocab, int kv) {
    lm_shape s = {.dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = kv, .head_dim = 8, .ffn_dim = 48,
                  .vocab_size = vocab, .norm_eps = 1e-5f, .rope_theta = 10000.0, .tied = 0};
    return s;
}

/* max |a - b| / max |b| over n values */
static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, m = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

/* The full forward's logits of every row t < LEN: full[t * V ..]. */
static void full_logits(lm_model *m, const int32_t *seq, float *full) {
    int32_t ids[TW] = {0};
    memcpy(ids, seq, sizeof(int32_t) * LEN);
    model_forward(m, ids);
    for (int t = 0; t < LEN; t++) model_logits_row(m, t, full + (size_t)t * m->s.vocab_size);
}

/* The cached logits after steps of the given sizes (summing to LEN) against
 * the full forward's rows; returns the worst relative difference; the
 * logits after the last step go to last. */
static double cached_vs_full(lm_model *m, lm_kv_cache *c, const int32_t *seq, const float *full, const int *steps,
                             float *last) {
    int V = m->s.vocab_size, p = 0;
    double worst = 0;
    kv_reset(c);
    for (int i = 0; p < LEN; i++) {
        kv_forward(c, seq + p, steps[i]);
        p += steps[i];
        assert_int_equal(kv_len(c), p);
        kv_logits(c, last);
        worst = fmax(worst, rel_diff(last, full + (size_t)(p - 1) * V, V));
    }
    return worst;
}

static void check_model(lm_device *dev, int kv_heads, double tol) {
    lm_shape s = shape(50, kv_heads);
    lm_model *m = model_create(dev, &s, 1, TW, 0, 16);
    model_init_random(m, 7, 0.3);
    char why[LM_ERRLEN];
    assert_true(kv_supported(m, why, sizeof why));
    int32_t seq[LEN];
    uint64_t key = rng_stream(3, "kv-test");
    for (int t = 0; t < LEN; t++) seq[t] = (int32_t)(rng_uniform(key, (uint64_t)t) * s.vocab_size);
    float *full = lm_alloc(sizeof(float) * LEN * 50), a[50], b[50];
    full_logits(m, seq, full);
    lm_kv_cache *c = kv_create(m);
    assert_int_equal(kv_capacity(c), TW);
    const int prefill[] = {5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int ones[LEN] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int chunks[] = {3, 7, 2, 8};
    double w1 = cached_vs_full(m, c, seq, full, prefill, a);
    double w2 = cached_vs_full(m, c, seq, full, ones, b);
    double w3 = cached_vs_full(m, c, seq, full, chunks, b);
    print_message("# %s kv_heads %d: worst relative logit difference %.2e %.2e %.2e (tol %.0e)\n", dev->name,
                  kv_heads, w1, w2, w3, tol);
    assert_true(w1 <= tol && w2 <= tol && w3 <= tol);
    /* the same steps again after a reset: the same bits */
    cached_vs_full(m, c, seq, full, prefill, b);
    assert_memory_equal(a, b, sizeof a);
    kv_destroy(c);
    lm_free(full);
    model_destroy(m);
}

static void test_cpu_f32(void **state) {
    (void)state;
    lm_device *dev = device_cpu_create(0);
    check_model(dev, 2, 1e-5); /* grouped-query: 2 query heads per kv head */
    check_model(dev, 4, 1e-5);
    device_destroy(dev);
}

/* bf16 emulation: the cached and full paths round different intermediates
 * (a step's rows vs the whole window), so they agree to bf16 precision. */
static void test_cpu_bf16(void **state) {
    (void)state;
    lm_device *dev = device_cpu_bf16_create(0);
    check_model(dev, 2, 3e-2);
    device_destroy(dev);
}

/* attention_decode against a direct computation in double: n = 3 query
 * rows at p0 = 4 over 7 cached rows, H = 4, KV = 2, hd = 8. */
static void test_decode_op(void **state) {
    (void)state;
    enum { n = 3, p0 = 4, H = 4, KV = 2, hd = 8, L = p0 + n };
    float q[n * H * hd], k[L * KV * hd], v[L * KV * hd], o[n * H * hd];
    uint64_t key = rng_stream(11, "decode-op");
    uint64_t i = 0;
    for (int a = 0; a < n * H * hd; a++) q[a] = (float)rng_normal(key, i++);
    for (int a = 0; a < L * KV * hd; a++) k[a] = (float)rng_normal(key, i++);
    for (int a = 0; a < L * KV * hd; a++) v[a] = (float)rng_normal(key, i++);
    lm_device *dev = device_cpu_create(0);
    dev->attention_decode(dev, o, q, k, v, n, p0, H, KV, hd);
    for (int r = 0; r < n; r++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV), nk = p0 + r + 1;
            double s[L], mx = -INFINITY, z = 0;
            for (int j = 0; j < nk; j++) {
                s[j] = 0;
                for (int c = 0; c < hd; c++) s[j] += (double)q[(r * H + h) * hd + c] * k[(j * KV + g) * hd + c];
                s[j] /= sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < nk; j++) z += s[j] = exp(s[j] - mx);
            for (int c = 0; c < hd; c++) {
                double want = 0;
                for (int j = 0; j < nk; j++) want += s[j] / z * v[(j * KV + g) * hd + c];
                assert_true(fabs(o[(r * H + h) * hd + c] - want) <= 1e-5 * (1 + fabs(want)));
            }
        }
    device_destroy(dev);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_op),
        cmocka_unit_test(test_cpu_f32),
        cmocka_unit_test(test_cpu_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
