/* test_host_adamw.c — the fused host AdamW (src/optim/host_adamw.h) against
 * the CPU backends' AdamW, bit for bit, on every path this CPU can run.
 *
 * For each length (1, 7, 15, 17, 40000, 1000003: scalar tails, one and two
 * vector widths plus a tail, the threaded split), each start offset of the
 * arrays (p, m, v, g, w each moved by a different number of elements off
 * the 64-byte boundary), weight decay 0 and 0.1, gscale 1 and 0.7, three
 * consecutive steps on the same state, and each path (scalar, avx2, avx512,
 * forced through LAMINA_HOST_ADAMW_ISA):
 *   fp32 g: p, m, v and w (a separate fp32 copy, w == p, or no w) equal the
 *           float32 backend's adamw (device_cpu_create) byte for byte;
 *   bf16 g: p, m, v and the bf16 w equal the cpu-bf16 backend's adamw
 *           (device_cpu_bf16_create) byte for byte.
 * The inputs hold some specials, each alone in its element: a NaN p, an
 * infinite g, a NaN g, a zero g. With lr = 0 and wd = 0 the update leaves p
 * as it is, so w is the narrowing of chosen bit patterns: random 32-bit
 * words (NaNs of both signs and payloads, infinities, subnormals, values
 * that overflow bf16) and exact ties between two bf16 neighbours; w must be
 * lm_f32_to_bf16(p) and the bf16 backend's w. The long arrays run on three
 * OpenMP threads (an odd split). A name that is not a path, or a bf16 w
 * aliasing the master, exits with 2 or 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bf16.h"
#include "common.h"
#include "device.h"
#include "host_adamw.h"

static const char *const isas[] = {"scalar", "avx2", "avx512"};
static int n_isa; /* paths this CPU runs: isas[0 .. n_isa) */
static lm_device *dev_f32, *dev_bf16;

/* splitmix64: deterministic test data */
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void) {
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float unif(void) { return (float)((double)(rnd64() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void use_isa(const char *name) {
    if (setenv("LAMINA_HOST_ADAMW_ISA", name, 1)) fail_msg("setenv");
    assert_string_equal(host_adamw_isa(), name);
}

/* One state of n elements at the given element offsets into 64-byte aligned
 * blocks (the offsets make the starts unaligned). */
typedef struct {
    float *bp, *bm, *bv, *bw; /* blocks */
    void *bg, *bwh;
    float *p, *m, *v, *w; /* w: fp32 copy */
    void *g, *wh;         /* g in the dtype; wh: bf16 w */
} st_t;

static void st_alloc(st_t *s, size_t n, const int off[5]) {
    s->bp = lm_calloc(n + 16, 4);
    s->bm = lm_calloc(n + 16, 4);
    s->bv = lm_calloc(n + 16, 4);
    s->bw = lm_calloc(n + 16, 4);
    s->bg = lm_calloc(n + 16, 4);
    s->bwh = lm_calloc(n + 16, 2);
    s->p = s->bp + off[0];
    s->m = s->bm + off[1];
    s->v = s->bv + off[2];
    s->g = (char *)s->bg + 4 * off[3];
    s->w = s->bw + off[4];
    s->wh = (uint16_t *)s->bwh + off[4];
}
static void st_free(st_t *s) {
    lm_free(s->bp);
    lm_free(s->bm);
    lm_free(s->bv);
    lm_free(s->bw);
    lm_free(s->bg);
    lm_free(s->bwh);
}
static void st_copy(st_t *d, const st_t *s, size_t n) {
    memcpy(d->p, s->p, n * 4);
    memcpy(d->m, s->m, n * 4);
    memcpy(d->v, s->v, n * 4);
}

/* Random p, m, v (v >= 0) with the specials of the header comment. */
static void fill_state(st_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        s->p[i] = unif() * 0.5f;
        s->m[i] = unif() * 1e-2f;
        s->v[i] = fabsf(unif()) * 1e-4f;
        if (i % 101 == 5) s->p[i] = bitsf(0x7fc01234u); /* a NaN with a payload */
    }
}
/* A new gradient (magnitudes over many decades) in dtype t. */
static void fill_grad(st_t *s, size_t n, lm_dtype t) {
    for (size_t i = 0; i < n; i++) {
        float x = unif() * powf(10.0f, (float)(int)(rnd64() % 9) - 6.0f);
        if (i % 101 == 17) x = INFINITY;
        if (i % 101 == 33) x = bitsf(0xffc0abcdu);
        if (i % 101 == 50) x = 0.0f;
        if (t == LM_BF16)
            ((uint16_t *)s->g)[i] = lm_f32_to_bf16(x);
        else
            ((float *)s->g)[i] = x;
    }
}

static void assert_same(const void *a, const void *b, size_t bytes, const char *what, const char *isa, size_t n) {
    if (memcmp(a, b, bytes)) {
        const unsigned char *x = a, *y = b;
        size_t i = 0;
        while (x[i] == y[i]) i++;
        fail_msg("%s differs (path %s, n %zu) at byte %zu", what, isa, n, i);
    }
}

/* wmode for fp32: 0 a separate w, 1 w == p, 2 no w */
static void run_case(size_t n, lm_dtype t, float wd, float gscale, int wmode, int oi) {
    const int off[5] = {oi % 16, (oi * 3 + 1) % 16, (oi * 5 + 2) % 16, (oi * 7 + 3) % 16, (oi * 11 + 5) % 16};
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    st_t r;
    st_alloc(&r, n, off);
    fill_state(&r, n);
    /* the reference's state, then each path's copy of the same state */
    st_t *hs = lm_calloc((size_t)n_isa, sizeof *hs);
    for (int k = 0; k < n_isa; k++) {
        st_alloc(&hs[k], n, off);
        st_copy(&hs[k], &r, n);
    }
    lm_device *d = t == LM_BF16 ? dev_bf16 : dev_f32;
    for (long step = 1; step <= 3; step++) {
        fill_grad(&r, n, t);
        void *rw = t == LM_BF16 ? r.wh : wmode == 0 ? (void *)r.w : wmode == 1 ? (void *)r.p : NULL;
        lm_adamw_seg seg = {r.p, rw, r.g, r.m, r.v, n, wd};
        d->adamw(d, &seg, 1, gscale, lr, b1, b2, eps, step);
        for (int k = 0; k < n_isa; k++) {
            st_t *s = &hs[k];
            memcpy(s->g, r.g, n * lm_dtype_size(t));
            memset(s->w, 0xff, n * 4);
            memset(s->wh, 0xff, n * 2);
            void *w = t == LM_BF16 ? s->wh : wmode == 0 ? (void *)s->w : wmode == 1 ? (void *)s->p : NULL;
            use_isa(isas[k]);
            host_adamw(s->p, s->m, s->v, s->g, w, t, n, gscale, lr, b1, b2, eps, wd, step);
            assert_same(s->p, r.p, n * 4, "p", isas[k], n);
            assert_same(s->m, r.m, n * 4, "m", isas[k], n);
            assert_same(s->v, r.v, n * 4, "v", isas[k], n);
            if (t == LM_BF16) assert_same(s->wh, r.wh, n * 2, "bf16 w", isas[k], n);
            if (t == LM_F32 && wmode == 0) assert_same(s->w, r.w, n * 4, "fp32 w", isas[k], n);
            if (t == LM_F32 && wmode == 2) /* no w: the fp32 w buffer is untouched */
                for (size_t i = 0; i < n; i++) assert_int_equal(((uint32_t *)s->w)[i], 0xffffffffu);
        }
    }
    for (int k = 0; k < n_isa; k++) st_free(&hs[k]);
    lm_free(hs);
    st_free(&r);
}

static const size_t lens[] = {1, 7, 15, 17, 40000, 1000003};

static void test_fp32(void **state) {
    (void)state;
    int oi = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int var = 0; var < 2; var++)
            for (int wmode = 0; wmode < 3; wmode++, oi++)
                run_case(lens[li], LM_F32, var ? 0.1f : 0.0f, var ? 0.7f : 1.0f, wmode, oi);
}

static void test_bf16(void **state) {
    (void)state;
    int oi = 5;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int var = 0; var < 2; var++, oi++) run_case(lens[li], LM_BF16, var ? 0.1f : 0.0f, var ? 0.7f : 1.0f, 0, oi);
}

/* lr = 0, wd = 0: p stays (NaNs quieted), w = bf16(p) on chosen patterns. */
static void test_narrowing(void **state) {
    (void)state;
    const size_t n = 70001;
    const int off[5] = {3, 0, 0, 0, 9};
    st_t r;
    st_alloc(&r, n, off);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)rnd64();
        if (i % 3 == 1) u = (u & 0xffff0000u) | 0x8000u; /* a tie */
        if (i % 7 == 2) u = (u & 0x807fffffu) | 0x7f800000u; /* exponent 0xff: NaN or infinity */
        if (i % 11 == 4) u = 0x7f7e8000u | (u & 0x80010000u); /* a tie at the top: to 0x7f7e, or up to infinity */
        r.p[i] = bitsf(u);
        r.m[i] = 0.0f;
        r.v[i] = 0.0f;
        ((uint16_t *)r.g)[i] = 0;
    }
    float *p0 = lm_calloc(n, 4), *pb = lm_calloc(n, 4), *mb = lm_calloc(n, 4), *vb = lm_calloc(n, 4);
    uint16_t *wr = lm_calloc(n, 2);
    memcpy(p0, r.p, n * 4);
    memcpy(pb, r.p, n * 4);
    lm_adamw_seg seg = {pb, wr, r.g, mb, vb, n, 0.0f};
    dev_bf16->adamw(dev_bf16, &seg, 1, 1.0f, 0.0f, 0.9f, 0.95f, 1e-8f, 1);
    size_t nan = 0, ties = 0;
    for (int k = 0; k < n_isa; k++) {
        memcpy(r.p, p0, n * 4);
        use_isa(isas[k]);
        host_adamw(r.p, r.m, r.v, r.g, r.wh, LM_BF16, n, 1.0f, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
        assert_same(r.p, pb, n * 4, "p (lr 0)", isas[k], n);
        assert_same(r.wh, wr, n * 2, "bf16 w (lr 0)", isas[k], n);
        for (size_t i = 0; i < n; i++) {
            uint32_t a, b;
            memcpy(&a, &r.p[i], 4);
            memcpy(&b, &p0[i], 4);
            if (isnan(p0[i])) {
                nan++;
                assert_int_equal(a, b | 0x00400000u); /* the same NaN, quieted */
            } else {
                assert_int_equal(a, b);
                ties += (b & 0xffffu) == 0x8000u;
            }
            assert_int_equal(((uint16_t *)r.wh)[i], lm_f32_to_bf16(r.p[i]));
        }
    }
    print_message("# narrowing: %zu NaNs and %zu ties over %d paths\n", nan, ties, n_isa);
    assert_true(nan > 1000 && ties > 10000);
    lm_free(p0);
    lm_free(pb);
    lm_free(mb);
    lm_free(vb);
    lm_free(wr);
    st_free(&r);
}

/* Run fn(arg) in a child process; its exit status (-1 if killed). */
static int exit_status_of(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(99);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
static void step_with(void *isa) {
    float p[4] = {0}, m[4] = {0}, v[4] = {0}, g[4] = {1, 2, 3, 4};
    if (setenv("LAMINA_HOST_ADAMW_ISA", isa, 1)) _exit(98);
    host_adamw(p, m, v, g, NULL, LM_F32, 4, 1.0f, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
}
static void bf16_w_is_master(void *arg) {
    (void)arg;
    float p[4] = {0}, m[4] = {0}, v[4] = {0};
    uint16_t g[4] = {0};
    host_adamw(p, m, v, g, p, LM_BF16, 4, 1.0f, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
}

static void test_errors(void **state) {
    (void)state;
    assert_int_equal(exit_status_of(step_with, "avx1024"), LM_ERR_INPUT);
    assert_int_equal(exit_status_of(step_with, "scalar"), 0);
    for (int k = n_isa; k < 3; k++) /* a path this CPU lacks */
        assert_int_equal(exit_status_of(step_with, (void *)isas[k]), LM_ERR_INPUT);
    for (int k = 0; k < n_isa; k++) assert_int_equal(exit_status_of(step_with, (void *)isas[k]), 0);
    assert_int_equal(exit_status_of(bf16_w_is_master, NULL), LM_ERR_RUNTIME);
}

static int setup(void **state) {
    (void)state;
    unsetenv("LAMINA_HOST_ADAMW_ISA");
    const char *best = host_adamw_isa();
    for (n_isa = 1; strcmp(isas[n_isa - 1], best); n_isa++) {}
    print_message("# host_adamw paths on this CPU: %d (best %s)\n", n_isa, best);
    omp_set_num_threads(3);
    dev_f32 = device_cpu_create(0);
    dev_bf16 = device_cpu_bf16_create(0);
    return 0;
}
static int teardown(void **state) {
    (void)state;
    device_destroy(dev_f32);
    device_destroy(dev_bf16);
    unsetenv("LAMINA_HOST_ADAMW_ISA");
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_narrowing),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
