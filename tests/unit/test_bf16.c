/* test_bf16.c — bfloat16 conversions (src/core/bf16.h) and the cpu-bf16 backend.
 *
 * Conversions: every one of the 65536 bf16 patterns widens exactly and
 * narrows back to itself (NaNs to a quiet NaN of the same sign); every tie
 * between two neighbouring bf16 values rounds to the even one; NaN, overflow,
 * infinities, subnormals and -0 are checked one by one.
 *
 * Backend: every op of the interface runs three times on fresh random inputs
 * u (float32):
 *   B: the bf16 device, on bf16(u);
 *   E: the float32 device, on bf16(u) widened (the same values as B sees);
 *   A: the float32 device, on u itself.
 * The bf16 device is specified as "widen, float32 op, round once", so each
 * bf16 output must equal bf16(E) bit for bit (E and the bf16 device's inner
 * op are the same deterministic float32 code on the same values, with the
 * same thread count), and each float32 output (rstd, lse, master, m, v) must
 * equal E's bit for bit. Against A — what rounding the operands to bf16 costs
 * — the error norm ||B - A|| / ||A|| must be below 1e-2; the norms are
 * printed as TAP comments. Outputs that an op overwrites are filled with NaN
 * patterns first and must all come out finite (every element written);
 * accumulated outputs start from random values (the accumulation must be
 * there for the bit-exact check to pass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
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

static lm_device *fd, *bd; /* float32 reference, bf16 emulation */

/* ------------------------------------------------------------- helpers */

/* xorshift64*: a fixed random stream; urand() in [0, 1). */
static uint64_t rng_s;
static void seed(uint64_t s) { rng_s = s * 0x9E3779B97F4A7C15ull + 1; }
static double urand(void) {
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return (double)((rng_s * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static float *rnd(size_t n, double lo, double hi) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
    return x;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static int bf_isnan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0; }

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

/* ---------------------------------------------------------- conversions */

/* All 65536 patterns: widening appends 16 zero bits; narrowing gives the
 * pattern back (a NaN: a quiet NaN of the same sign). */
static void test_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lm_bf16_to_f32((uint16_t)h);
        assert_int_equal(fbits(f), h << 16);
        uint16_t back = lm_f32_to_bf16(f);
        if (bf_isnan((uint16_t)h)) {
            assert_true(isnan(f));
            assert_true(bf_isnan(back));
            assert_int_equal(back & 0x8040, (h & 0x8000) | 0x0040); /* sign kept, quiet */
        } else {
            assert_int_equal(back, h);
        }
    }
}

/* Every pair of neighbours h, h+1 (finite h, both signs: the bits grow with
 * the magnitude): the float32 exactly halfway rounds to the even pattern,
 * one float32 ulp either side to the nearer one. The halfway point above the
 * largest finite bf16 (odd pattern 0x7f7f) rounds to infinity. */
static void test_ties(void **state) {
    (void)state;
    long checked = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80) == 0x7f80) continue; /* inf, NaN */
        uint32_t mid = (h << 16) | 0x8000u;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(lm_f32_to_bf16(bitsf(mid)), even);
        assert_int_equal(lm_f32_to_bf16(bitsf(mid - 1)), h);
        assert_int_equal(lm_f32_to_bf16(bitsf(mid + 1)), h + 1);
        checked++;
    }
    assert_int_equal(checked, 65536 - 2 * 128);
    /* a worked pair by value: 1 + 2^-8 lies halfway between 1 (even, 0x3f80)
     * and 1 + 2^-7 (odd, 0x3f81); 1 + 3*2^-8 halfway between 0x3f81 and 0x3f82 */
    assert_int_equal(lm_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(lm_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(lm_f32_to_bf16(-(1.0f + 0x1p-8f)), 0xbf80);
    assert_int_equal(lm_f32_to_bf16(-(1.0f + 3 * 0x1p-8f)), 0xbf82);
    assert_int_equal(lm_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}

static void test_special(void **state) {
    (void)state;
    /* NaN: quiet, sign kept, never infinity, whatever the payload (a payload
     * only in the dropped bits; all-ones bits, where rounding would carry
     * into the sign) */
    const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0xffffffffu, 0x7fa00000u};
    for (size_t i = 0; i < sizeof nans / sizeof *nans; i++) {
        uint16_t h = lm_f32_to_bf16(bitsf(nans[i]));
        assert_true(bf_isnan(h));
        assert_int_equal(h & 0x0040, 0x0040);
        assert_int_equal(h >> 15, nans[i] >> 31);
        assert_true(isnan(lm_bf16_to_f32(h)));
    }
    assert_true(isnan(lm_bf16_to_f32(lm_f32_to_bf16(NAN))));
    /* infinities and overflow (round to nearest: above max + half ulp is inf) */
    assert_int_equal(lm_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(lm_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(lm_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(lm_f32_to_bf16(-FLT_MAX), 0xff80);
    assert_int_equal(lm_f32_to_bf16(bitsf(0x7f7f7fffu)), 0x7f7f); /* below the tie: bf16 max */
    assert_int_equal(lm_f32_to_bf16(bitsf(0x7f7f8000u)), 0x7f80); /* the tie: odd max -> inf */
    assert_true(isinf(lm_bf16_to_f32(0x7f80)) && lm_bf16_to_f32(0x7f80) > 0);
    assert_float_equal(lm_bf16_to_f32(0x7f7f), 0x1.fep127f, 0.0f);
    /* subnormals: bf16 ones are exact; float32 ones round like the rest */
    assert_true(lm_bf16_to_f32(0x0001) == 0x1p-133f);
    assert_true(lm_bf16_to_f32(0x007f) == 127 * 0x1p-133f);
    assert_int_equal(lm_f32_to_bf16(0x1p-133f), 0x0001);
    assert_int_equal(lm_f32_to_bf16(0x1p-149f), 0x0000);          /* tiniest float32 -> 0 */
    assert_int_equal(lm_f32_to_bf16(bitsf(0x00008000u)), 0x0000); /* tie, even 0 */
    assert_int_equal(lm_f32_to_bf16(bitsf(0x00018000u)), 0x0002); /* tie, odd 1 -> 2 */
    assert_int_equal(lm_f32_to_bf16(bitsf(0x00008001u)), 0x0001);
    assert_int_equal(lm_f32_to_bf16(bitsf(0x007fffffu)), 0x0080); /* up to the smallest normal */
    assert_int_equal(lm_f32_to_bf16(-0x1p-133f), 0x8001);
    /* signed zeros */
    assert_int_equal(lm_f32_to_bf16(0.0f), 0x0000);
    assert_int_equal(lm_f32_to_bf16(-0.0f), 0x8000);
    float nz = lm_bf16_to_f32(0x8000);
    assert_true(nz == 0.0f && signbit(nz));
    /* ordinary values */
    assert_int_equal(lm_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(lm_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(lm_f32_to_bf16(3.140625f), 0x4049);
}

/* The array forms (both the serial and the threaded length) and the
 * device's convert/upload/download against the scalar functions. */
static void test_arrays(void **state) {
    (void)state;
    seed(3);
    const size_t ns[] = {1, 1000, 100003};
    for (size_t t = 0; t < 3; t++) {
        size_t n = ns[t];
        float *f = rnd(n, -1e3, 1e3), *f2 = malloc(n * 4), *f3 = malloc(n * 4);
        uint16_t *h = malloc(n * 2), *h2 = malloc(n * 2);
        f[0] = NAN;
        lm_f32_to_bf16_n(h, f, n);
        for (size_t i = 0; i < n; i++) assert_int_equal(h[i], lm_f32_to_bf16(f[i]));
        lm_bf16_to_f32_n(f2, h, n);
        for (size_t i = 0; i < n; i++) assert_int_equal(fbits(f2[i]), (uint32_t)h[i] << 16);

        /* device: host f32 -> bf16, bf16 -> host f32, and convert all ways */
        void *db = bd->alloc(bd, n * 2), *db2 = bd->alloc(bd, n * 2);
        float *df = bd->alloc(bd, n * 4), *df2 = bd->alloc(bd, n * 4);
        bd->upload_f32(bd, db, f, n);
        assert_memory_equal(db, h, n * 2);
        bd->download_f32(bd, f3, db, n);
        assert_memory_equal(f3, f2, n * 4);
        bd->to_device(bd, df, f, n * 4);
        bd->convert(bd, db2, LM_BF16, df, LM_F32, n);
        assert_memory_equal(db2, h, n * 2);
        bd->convert(bd, df2, LM_F32, db2, LM_BF16, n);
        assert_memory_equal(df2, f2, n * 4);
        bd->zero(bd, db2, n * 2);
        bd->convert(bd, db2, LM_BF16, db, LM_BF16, n);
        assert_memory_equal(db2, h, n * 2);
        bd->convert(bd, df2, LM_F32, df, LM_F32, n);
        assert_memory_equal(df2, f, n * 4);
        bd->convert(bd, db2, LM_BF16, db2, LM_BF16, n); /* in place, one dtype: unchanged */
        assert_memory_equal(db2, h, n * 2);
        bd->to_host(bd, h2, db2, n * 2);
        assert_memory_equal(h2, h, n * 2);
        bd->free(bd, db), bd->free(bd, db2), bd->free(bd, df), bd->free(bd, df2);
        free(f), free(f2), free(f3), free(h), free(h2);
    }
}

/* --------------------------------------------------------------- memory */

static void alloc_twice(void *arg) {
    lm_device *d = arg;
    void *a = d->alloc(d, 600);
    void *b = d->alloc(d, 600); /* over capacity: must abort with exit 1 */
    (void)a;
    (void)b;
}

static void test_memory(void **state) {
    (void)state;
    assert_string_equal(bd->name, "cpu-bf16");
    assert_int_equal(bd->dtype, LM_BF16);
    assert_int_equal(bd->host_visible, 1);
    assert_int_equal(lm_dtype_size(bd->dtype), 2);
    size_t before = lm_alloc_bytes();
    lm_device *c = device_cpu_bf16_create(1000);
    assert_int_equal(c->capacity, 1000);
    unsigned char *p = c->alloc(c, 600);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (int i = 0; i < 600; i++) assert_int_equal(p[i], 0);
    unsigned char src[600], back[600];
    for (int i = 0; i < 600; i++) src[i] = (unsigned char)(i * 7);
    c->to_device(c, p, src, 600);
    c->sync(c);
    c->to_host(c, back, p, 600);
    assert_memory_equal(src, back, 600);
    c->zero(c, p, 600);
    for (int i = 0; i < 600; i++) assert_int_equal(p[i], 0);
    c->free(c, p); /* the bytes come back */
    p = c->alloc(c, 600);
    assert_non_null(p);
    c->free(c, p);
    c->free(c, NULL);
    assert_int_equal(exit_status_of(alloc_twice, c), LM_ERR_RUNTIME);
    /* scratch grows with use; destroy gives back every byte (the hook) */
    lm_device *u = device_cpu_bf16_create(0);
    size_t n = 5000;
    void *x = u->alloc(u, n * 2), *y = u->alloc(u, n * 2);
    u->add(u, y, x, n);
    u->gemm_nt(u, y, x, x, 50, 50, 100, 1.0f);
    u->free(u, x), u->free(u, y);
    device_destroy(u);
    device_destroy(c);
    assert_int_equal(lm_alloc_bytes(), before);
}

/* ------------------------------------------------------- op comparisons */

/* Buffer kinds: compute dtype in, overwritten out, read and written (an
 * accumulated or in-place output); float32 in, out, read-and-written. */
enum { IN, OUT, ACC, FIN, FOUT, FACC };
typedef struct {
    int kind;
    size_t n;
    float lo, hi;       /* random values in [lo, hi) unless init */
    const float *init;  /* given values (unrounded) */
} bspec;
#define MAXB 16
typedef double (*opfn)(lm_device *d, void **b, const void *ctx);

static int is_cd(int kind) { return kind <= ACC; }
static int is_out(int kind) { return kind == OUT || kind == ACC || kind == FOUT || kind == FACC; }

/* buffers on device d holding host values h (rounded where d is bf16 and
 * the buffer is in the compute dtype), NaN patterns for outputs */
static void *make_buf(lm_device *d, const bspec *s, const float *h) {
    int cd = is_cd(s->kind), bf = cd && d->dtype == LM_BF16;
    size_t es = bf ? 2 : 4;
    void *p = d->alloc(d, (s->n ? s->n : 1) * es);
    if (s->kind == OUT || s->kind == FOUT) {
        static const uint16_t pb[] = {0x7fc1, 0xffc1, 0x7f81};
        for (size_t i = 0; i < s->n; i++) {
            if (bf) ((uint16_t *)p)[i] = pb[i % 3];
            else ((float *)p)[i] = bitsf(0x7fc00001u);
        }
    } else if (bf) {
        lm_f32_to_bf16_n(p, h, s->n);
    } else {
        memcpy(p, h, s->n * sizeof(float));
    }
    return p;
}

static double rel_f(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double worst = 0; /* largest error norm seen, for the summary */

/* Runs B, E, A (see the top) and checks every output, and the return value
 * when has_ret (xent's loss, sumsq). */
static void check_op(const char *name, const bspec *sp, int nb, opfn fn, const void *ctx, int has_ret) {
    float *u[MAXB], *r[MAXB];
    void *bb[MAXB], *be[MAXB], *ba[MAXB];
    for (int i = 0; i < nb; i++) {
        size_t n = sp[i].n;
        u[i] = rnd(n, sp[i].lo, sp[i].hi);
        if (sp[i].init) memcpy(u[i], sp[i].init, n * sizeof(float));
        r[i] = malloc((n ? n : 1) * sizeof(float));
        for (size_t j = 0; j < n; j++) r[i][j] = is_cd(sp[i].kind) ? lm_bf16_to_f32(lm_f32_to_bf16(u[i][j])) : u[i][j];
    }
    for (int i = 0; i < nb; i++) bb[i] = make_buf(bd, &sp[i], u[i]);
    double rb = fn(bd, bb, ctx);
    for (int i = 0; i < nb; i++) be[i] = make_buf(fd, &sp[i], r[i]);
    double re = fn(fd, be, ctx);
    for (int i = 0; i < nb; i++) ba[i] = make_buf(fd, &sp[i], u[i]);
    double ra = fn(fd, ba, ctx);

    for (int i = 0; i < nb; i++) {
        if (!is_out(sp[i].kind)) continue;
        size_t n = sp[i].n;
        const float *e = be[i], *a = ba[i];
        float *got = malloc((n ? n : 1) * sizeof(float));
        if (is_cd(sp[i].kind)) {
            const uint16_t *h = bb[i];
            size_t bad = 0, first = n;
            for (size_t j = 0; j < n; j++)
                if (h[j] != lm_f32_to_bf16(e[j])) bad++, first = first < n ? first : j;
            if (bad)
                fail_msg("%s output %d: %zu of %zu elements differ from bf16(f32 op on bf16 inputs), first [%zu] "
                         "%#06x vs %#06x (f32 %.9g)",
                         name, i, bad, n, first, h[first], lm_f32_to_bf16(e[first]), (double)e[first]);
            lm_bf16_to_f32_n(got, h, n);
        } else {
            if (memcmp(bb[i], e, n * sizeof(float)) != 0)
                fail_msg("%s float32 output %d differs from the f32 op on bf16 inputs", name, i);
            memcpy(got, bb[i], n * sizeof(float));
        }
        for (size_t j = 0; j < n; j++)
            if (!isfinite(got[j])) fail_msg("%s output %d: element %zu not finite (not written?)", name, i, j);
        double err = rel_f(got, a, n);
        printf("# %-34s out %d %-4s n=%-7zu rel err vs f32 %.3e\n", name, i, is_cd(sp[i].kind) ? "bf16" : "f32",
               n, err);
        if (!(err < 1e-2)) fail_msg("%s output %d: relative error %.3g vs float32 (limit 1e-2)", name, i, err);
        if (err > worst) worst = err;
        free(got);
    }
    if (has_ret) {
        double ee = fabs(rb - re) / fmax(fabs(re), 1e-300), ea = fabs(rb - ra) / fmax(fabs(ra), 1e-300);
        printf("# %-34s return        rel err vs f32 %.3e (vs f32 op on bf16 inputs %.1e)\n", name, ea, ee);
        if (!(ee < 1e-12)) fail_msg("%s returned %.17g, f32 op on bf16 inputs %.17g", name, rb, re);
        if (!(ea < 1e-2)) fail_msg("%s returned %.17g, f32 op %.17g", name, rb, ra);
    }
    for (int i = 0; i < nb; i++) {
        bd->free(bd, bb[i]), fd->free(fd, be[i]), fd->free(fd, ba[i]);
        free(u[i]), free(r[i]);
    }
}

/* --------------------------------------------------------------- GEMMs */

typedef struct {
    int M, N, K;
    float beta;
} gemm_ctx;
static double op_nt(lm_device *d, void **b, const void *c_) {
    const gemm_ctx *c = c_;
    d->gemm_nt(d, b[0], b[1], b[2], c->M, c->N, c->K, c->beta);
    return 0;
}
static double op_nn(lm_device *d, void **b, const void *c_) {
    const gemm_ctx *c = c_;
    d->gemm_nn(d, b[0], b[1], b[2], c->M, c->N, c->K, c->beta);
    return 0;
}
static double op_tn(lm_device *d, void **b, const void *c_) {
    const gemm_ctx *c = c_;
    d->gemm_tn(d, b[0], b[1], b[2], c->M, c->N, c->K, c->beta);
    return 0;
}
static double op_nt_add(lm_device *d, void **b, const void *c_) {
    const gemm_ctx *c = c_;
    d->gemm_nt_add(d, b[0], b[1], b[2], b[3], c->M, c->N, c->K);
    return 0;
}
static double op_nt_add_inplace(lm_device *d, void **b, const void *c_) {
    const gemm_ctx *c = c_;
    d->gemm_nt_add(d, b[0], b[0], b[1], b[2], c->M, c->N, c->K);
    return 0;
}

static void test_gemm(void **state) {
    (void)state;
    seed(10);
    const int shapes[][3] = {{37, 29, 50}, {128, 96, 256}};
    for (int s = 0; s < 2; s++) {
        size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int beta = 0; beta <= 1; beta++) {
            gemm_ctx c = {(int)M, (int)N, (int)K, (float)beta};
            int ko = beta ? ACC : OUT;
            char nm[64];
            bspec nt[] = {{ko, M * N, -1, 1, NULL}, {IN, M * K, -1, 1, NULL}, {IN, N * K, -1, 1, NULL}};
            snprintf(nm, sizeof nm, "gemm_nt %zux%zux%zu beta %d", M, N, K, beta);
            check_op(nm, nt, 3, op_nt, &c, 0);
            bspec nn[] = {{ko, M * K, -1, 1, NULL}, {IN, M * N, -1, 1, NULL}, {IN, N * K, -1, 1, NULL}};
            snprintf(nm, sizeof nm, "gemm_nn %zux%zux%zu beta %d", M, N, K, beta);
            check_op(nm, nn, 3, op_nn, &c, 0);
            bspec tn[] = {{ko, N * K, -1, 1, NULL}, {IN, M * N, -1, 1, NULL}, {IN, M * K, -1, 1, NULL}};
            snprintf(nm, sizeof nm, "gemm_tn %zux%zux%zu beta %d", M, N, K, beta);
            check_op(nm, tn, 3, op_tn, &c, 0);
        }
        gemm_ctx c = {(int)M, (int)N, (int)K, 0};
        char nm[64];
        bspec add[] = {{OUT, M * N, -1, 1, NULL},
                       {IN, M * N, -1, 1, NULL},
                       {IN, M * K, -1, 1, NULL},
                       {IN, N * K, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "gemm_nt_add %zux%zux%zu", M, N, K);
        check_op(nm, add, 4, op_nt_add, &c, 0);
        bspec inpl[] = {{ACC, M * N, -1, 1, NULL}, {IN, M * K, -1, 1, NULL}, {IN, N * K, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "gemm_nt_add y=res %zux%zux%zu", M, N, K);
        check_op(nm, inpl, 3, op_nt_add_inplace, &c, 0);
    }
}

/* ----------------------------------------------------------- embedding */

typedef struct {
    const int32_t *ids;
    int R, D;
} emb_ctx;
static double op_emb_fwd(lm_device *d, void **b, const void *c_) {
    const emb_ctx *c = c_;
    d->embedding_fwd(d, b[0], b[1], c->ids, c->R, c->D);
    return 0;
}
static double op_emb_bwd(lm_device *d, void **b, const void *c_) {
    const emb_ctx *c = c_;
    d->embedding_bwd(d, b[0], b[1], c->ids, c->R, c->D);
    return 0;
}

/* ids repeat (r*7 mod 11, or mod 61) and leave the top rows untouched. */
static void test_embedding(void **state) {
    (void)state;
    seed(20);
    const int cases[][4] = {{40, 24, 16, 11}, {600, 64, 100, 61}}; /* R, D, V, distinct */
    for (int t = 0; t < 2; t++) {
        int R = cases[t][0], D = cases[t][1], V = cases[t][2];
        int32_t *ids = malloc(R * sizeof(int32_t));
        for (int r = 0; r < R; r++) ids[r] = (r * 7) % cases[t][3];
        emb_ctx c = {ids, R, D};
        char nm[64];
        bspec fw[] = {{OUT, (size_t)R * D, -1, 1, NULL}, {IN, (size_t)V * D, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "embedding_fwd R=%d D=%d", R, D);
        check_op(nm, fw, 2, op_emb_fwd, &c, 0);
        bspec bw[] = {{ACC, (size_t)V * D, -1, 1, NULL}, {IN, (size_t)R * D, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "embedding_bwd R=%d D=%d", R, D);
        check_op(nm, bw, 2, op_emb_bwd, &c, 0);
        free(ids);
    }
    /* vocab-parallel ids: negative ones (another rank's rows) give zero rows
     * forward (the NaN-poisoned output must come out as bf16(0) = 0x0000)
     * and are skipped backward */
    const int R = 300, D = 40, V = 50;
    int32_t *ids = malloc(R * sizeof(int32_t));
    for (int r = 0; r < R; r++) ids[r] = r % 4 == 0 ? -1 : r % 9 == 2 ? -3 : (r * 7) % V;
    emb_ctx c = {ids, R, D};
    bspec fw[] = {{OUT, (size_t)R * D, -1, 1, NULL}, {IN, (size_t)V * D, -1, 1, NULL}};
    check_op("embedding_fwd negative ids", fw, 2, op_emb_fwd, &c, 0);
    bspec bw[] = {{ACC, (size_t)V * D, -1, 1, NULL}, {IN, (size_t)R * D, -1, 1, NULL}};
    check_op("embedding_bwd negative ids", bw, 2, op_emb_bwd, &c, 0);
    uint16_t *out = bd->alloc(bd, (size_t)R * D * 2), *tab = bd->alloc(bd, (size_t)V * D * 2);
    uint16_t *tab0 = malloc((size_t)V * D * 2);
    float *h = rnd((size_t)V * D, -1, 1);
    bd->upload_f32(bd, tab, h, (size_t)V * D);
    memcpy(tab0, tab, (size_t)V * D * 2);
    for (size_t i = 0; i < (size_t)R * D; i++) out[i] = 0x7fc1;
    bd->embedding_fwd(bd, out, tab, ids, R, D);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < D; k++)
            assert_int_equal(out[(size_t)r * D + k], ids[r] < 0 ? 0 : tab[(size_t)ids[r] * D + k]);
    /* every id negative: the backward touches nothing */
    for (int r = 0; r < R; r++) ids[r] = -1 - r % 3;
    bd->embedding_bwd(bd, tab, out, ids, R, D);
    assert_memory_equal(tab, tab0, (size_t)V * D * 2);
    bd->free(bd, out), bd->free(bd, tab);
    free(tab0), free(h), free(ids);
}

/* ------------------------------------------------------------- RMSNorm */

typedef struct {
    int R, D;
} rms_ctx;
static double op_rms_fwd(lm_device *d, void **b, const void *c_) {
    const rms_ctx *c = c_;
    d->rmsnorm_fwd(d, b[0], b[1], b[2], b[3], c->R, c->D, 1e-5f);
    return 0;
}
static double op_rms_bwd(lm_device *d, void **b, const void *c_) {
    const rms_ctx *c = c_;
    d->rmsnorm_bwd(d, b[0], b[1], b[2], b[3], b[4], b[5], c->R, c->D);
    return 0;
}

static void test_rmsnorm(void **state) {
    (void)state;
    seed(30);
    const int cases[][2] = {{13, 40}, {300, 128}};
    for (int t = 0; t < 2; t++) {
        int R = cases[t][0], D = cases[t][1];
        size_t n = (size_t)R * D;
        rms_ctx c = {R, D};
        char nm[64];
        float *x = rnd(n, -2, 2), *w = rnd(D, 0.5, 1.5);
        bspec fw[] = {{OUT, n, 0, 0, NULL}, {FOUT, R, 0, 0, NULL}, {IN, n, 0, 0, x}, {IN, D, 0, 0, w}};
        snprintf(nm, sizeof nm, "rmsnorm_fwd R=%d D=%d", R, D);
        check_op(nm, fw, 4, op_rms_fwd, &c, 0);
        /* rstd of the float32 forward, for the backward */
        float *fx = fd->alloc(fd, n * 4), *fw_ = fd->alloc(fd, D * 4), *fy = fd->alloc(fd, n * 4);
        float *rstd = fd->alloc(fd, R * 4);
        memcpy(fx, x, n * 4), memcpy(fw_, w, D * 4);
        fd->rmsnorm_fwd(fd, fy, rstd, fx, fw_, R, D, 1e-5f);
        bspec bw[] = {{ACC, n, -1, 1, NULL}, {ACC, D, -1, 1, NULL}, {IN, n, -1, 1, NULL},
                      {IN, n, 0, 0, x},      {IN, D, 0, 0, w},       {FIN, R, 0, 0, rstd}};
        snprintf(nm, sizeof nm, "rmsnorm_bwd R=%d D=%d", R, D);
        check_op(nm, bw, 6, op_rms_bwd, &c, 0);
        fd->free(fd, fx), fd->free(fd, fw_), fd->free(fd, fy), fd->free(fd, rstd);
        free(x), free(w);
    }
}

/* ---------------------------------------------------------------- RoPE */

typedef struct {
    int R, T, nh, hd;
} rope_ctx;
static double op_rope_fwd(lm_device *d, void **b, const void *c_) {
    const rope_ctx *c = c_;
    d->rope_fwd(d, b[0], b[1], b[2], c->R, c->T, c->nh, c->hd);
    return 0;
}
static double op_rope_bwd(lm_device *d, void **b, const void *c_) {
    const rope_ctx *c = c_;
    d->rope_bwd(d, b[0], b[1], b[2], c->R, c->T, c->nh, c->hd);
    return 0;
}

static void test_rope(void **state) {
    (void)state;
    seed(40);
    const int B = 2, T = 13, nh = 4, hd = 16, R = B * T, half = hd / 2;
    float *cs = malloc(T * half * 4), *sn = malloc(T * half * 4);
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(10000.0, -2.0 * i / hd);
            cs[p * half + i] = (float)cos(a);
            sn[p * half + i] = (float)sin(a);
        }
    rope_ctx c = {R, T, nh, hd};
    size_t n = (size_t)R * nh * hd;
    bspec sp[] = {{ACC, n, -1, 1, NULL}, {FIN, (size_t)T * half, 0, 0, cs}, {FIN, (size_t)T * half, 0, 0, sn}};
    check_op("rope_fwd", sp, 3, op_rope_fwd, &c, 0);
    check_op("rope_bwd", sp, 3, op_rope_bwd, &c, 0);
    free(cs), free(sn);
}

/* ----------------------------------------------------------- attention */

typedef struct {
    int B, T, H, KV, hd;
} att_ctx;
static double op_att_fwd(lm_device *d, void **b, const void *c_) {
    const att_ctx *c = c_;
    d->attention_fwd(d, b[0], b[1], b[2], b[3], b[4], c->B, c->T, c->H, c->KV, c->hd);
    return 0;
}
static double op_att_bwd(lm_device *d, void **b, const void *c_) {
    const att_ctx *c = c_;
    d->attention_bwd(d, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], c->B, c->T, c->H, c->KV, c->hd);
    return 0;
}

static void test_attention(void **state) {
    (void)state;
    seed(50);
    const int cases[][5] = {{2, 13, 4, 2, 16}, {2, 64, 4, 1, 64}}; /* B, T, H, KV, hd */
    for (int t = 0; t < 2; t++) {
        att_ctx c = {cases[t][0], cases[t][1], cases[t][2], cases[t][3], cases[t][4]};
        size_t nq = (size_t)c.B * c.T * c.H * c.hd, nk = (size_t)c.B * c.T * c.KV * c.hd;
        size_t nl = (size_t)c.B * c.H * c.T;
        float *q = rnd(nq, -1.5, 1.5), *k = rnd(nk, -1.5, 1.5), *v = rnd(nk, -1, 1);
        char nm[80];
        bspec fw[] = {{OUT, nq, 0, 0, NULL}, {FOUT, nl, 0, 0, NULL}, {IN, nq, 0, 0, q}, {IN, nk, 0, 0, k},
                      {IN, nk, 0, 0, v}};
        snprintf(nm, sizeof nm, "attention_fwd B%d T%d H%d KV%d hd%d", c.B, c.T, c.H, c.KV, c.hd);
        check_op(nm, fw, 5, op_att_fwd, &c, 0);
        /* o and lse of the float32 forward, for the backward */
        float *fq = fd->alloc(fd, nq * 4), *fk = fd->alloc(fd, nk * 4), *fv = fd->alloc(fd, nk * 4);
        float *fo = fd->alloc(fd, nq * 4), *fl = fd->alloc(fd, nl * 4);
        memcpy(fq, q, nq * 4), memcpy(fk, k, nk * 4), memcpy(fv, v, nk * 4);
        fd->attention_fwd(fd, fo, fl, fq, fk, fv, c.B, c.T, c.H, c.KV, c.hd);
        bspec bw[] = {{OUT, nq, 0, 0, NULL}, {OUT, nk, 0, 0, NULL}, {OUT, nk, 0, 0, NULL},
                      {IN, nq, -1, 1, NULL}, {IN, nq, 0, 0, fo},    {FIN, nl, 0, 0, fl},
                      {IN, nq, 0, 0, q},     {IN, nk, 0, 0, k},     {IN, nk, 0, 0, v}};
        snprintf(nm, sizeof nm, "attention_bwd B%d T%d H%d KV%d hd%d", c.B, c.T, c.H, c.KV, c.hd);
        check_op(nm, bw, 9, op_att_bwd, &c, 0);
        fd->free(fd, fq), fd->free(fd, fk), fd->free(fd, fv), fd->free(fd, fo), fd->free(fd, fl);
        free(q), free(k), free(v);
    }
}

/* -------------------------------------------------------------- SwiGLU */

static double op_swiglu_fwd(lm_device *d, void **b, const void *c_) {
    d->swiglu_fwd(d, b[0], b[1], b[2], *(const size_t *)c_);
    return 0;
}
static double op_swiglu_bwd(lm_device *d, void **b, const void *c_) {
    d->swiglu_bwd(d, b[0], b[1], b[2], b[3], b[4], *(const size_t *)c_);
    return 0;
}

static void test_swiglu(void **state) {
    (void)state;
    seed(60);
    const size_t ns[] = {1000, 40000};
    for (int t = 0; t < 2; t++) {
        size_t n = ns[t];
        char nm[64];
        bspec fw[] = {{OUT, n, 0, 0, NULL}, {IN, n, -4, 4, NULL}, {IN, n, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "swiglu_fwd n=%zu", n);
        check_op(nm, fw, 3, op_swiglu_fwd, &n, 0);
        bspec bw[] = {{OUT, n, 0, 0, NULL}, {OUT, n, 0, 0, NULL}, {IN, n, -1, 1, NULL}, {IN, n, -4, 4, NULL},
                      {IN, n, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "swiglu_bwd n=%zu", n);
        check_op(nm, bw, 5, op_swiglu_bwd, &n, 0);
    }
}

/* -------------------------------------------------------- cross-entropy */

typedef struct {
    const int32_t *tg;
    int R, V;
    float scale;
} xent_ctx;
static double op_xent(lm_device *d, void **b, const void *c_) {
    const xent_ctx *c = c_;
    return d->xent_fwd_bwd(d, b[0], c->tg, c->R, c->V, c->scale);
}

/* one padding row (target -1) in each case: it must come out zero */
static void test_xent(void **state) {
    (void)state;
    seed(70);
    const int cases[][2] = {{9, 50}, {16, 3000}};
    for (int t = 0; t < 2; t++) {
        int R = cases[t][0], V = cases[t][1];
        int32_t *tg = malloc(R * sizeof(int32_t));
        for (int r = 0; r < R; r++) tg[r] = (int32_t)((r * 37 + 5) % V);
        tg[R / 2] = -1;
        xent_ctx c = {tg, R, V, 1.0f / (R - 1)};
        char nm[64];
        bspec sp[] = {{ACC, (size_t)R * V, -3, 3, NULL}};
        snprintf(nm, sizeof nm, "xent R=%d V=%d", R, V);
        check_op(nm, sp, 1, op_xent, &c, 1);
        /* the padding row is zeros on the bf16 device */
        uint16_t *lg = bd->alloc(bd, (size_t)R * V * 2);
        float *h = rnd((size_t)R * V, -3, 3);
        bd->upload_f32(bd, lg, h, (size_t)R * V);
        bd->xent_fwd_bwd(bd, lg, tg, R, V, c.scale);
        for (int j = 0; j < V; j++) assert_int_equal(lg[(size_t)(R / 2) * V + j], 0);
        bd->free(bd, lg);
        free(h), free(tg);
    }
}

/* ----------------------------------------- vocab-parallel cross-entropy */

typedef struct {
    const int32_t *tl;
    int R, V, Vv;
    float scale;
} xpart_ctx;
static double op_xpart_stats(lm_device *d, void **b, const void *c_) {
    const xpart_ctx *c = c_;
    d->xent_part_stats(d, b[0], c->tl, c->R, c->V, c->Vv, b[1]);
    return 0;
}
static double op_xpart_grad(lm_device *d, void **b, const void *c_) {
    const xpart_ctx *c = c_;
    d->xent_part_grad(d, b[0], c->tl, b[1], c->R, c->V, c->Vv, c->scale);
    return 0;
}

/* A slice [R, V] with Vv real columns; the padding columns hold garbage
 * (NaN, +-inf, +-1e30) that must not reach any output. tloc: padding rows
 * (LM_XENT_PAD), rows whose target another rank holds (-1) and local
 * targets. Statistics (float32 outputs, a host array) must equal the float32
 * op's bit for bit, the gradient bf16(float32 op) (lse: this slice's own
 * log-sum-exp plus log 2 on rows with tloc = -1, as if another rank held as
 * much). Then Vv = 0: m = -inf, s = 0, zt = 0 and a zero gradient. */
static void test_xent_part(void **state) {
    (void)state;
    seed(75);
    static const float garbage[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f};
    const int cases[][3] = {{9, 40, 37}, {16, 3000, 2990}, {5, 64, 64}}; /* R, V, Vv */
    for (int t = 0; t < 3; t++) {
        int R = cases[t][0], V = cases[t][1], Vv = cases[t][2];
        size_t n = (size_t)R * V;
        int32_t *tl = malloc(R * sizeof(int32_t));
        for (int r = 0; r < R; r++) tl[r] = r % 5 == 2 ? LM_XENT_PAD : r % 3 == 1 ? -1 : (r * 37 + 5) % Vv;
        float *x = rnd(n, -3, 3), *lse = malloc(R * sizeof(float));
        for (int r = 0; r < R; r++) {
            double m = -INFINITY, s = 0;
            for (int c = 0; c < V; c++) {
                if (c >= Vv) x[(size_t)r * V + c] = garbage[(r + c) % 5];
                else m = fmax(m, x[(size_t)r * V + c]);
            }
            for (int c = 0; c < Vv; c++) s += exp(x[(size_t)r * V + c] - m);
            lse[r] = (float)(m + log(s) + (tl[r] == -1 ? log(2.0) : 0.0));
        }
        xpart_ctx c = {tl, R, V, Vv, 1.0f / R};
        char nm[64];
        bspec st[] = {{IN, n, 0, 0, x}, {FOUT, (size_t)3 * R, 0, 0, NULL}};
        snprintf(nm, sizeof nm, "xent_part_stats R=%d V=%d Vv=%d", R, V, Vv);
        check_op(nm, st, 2, op_xpart_stats, &c, 0);
        bspec gr[] = {{ACC, n, 0, 0, x}, {FIN, (size_t)R, 0, 0, lse}};
        snprintf(nm, sizeof nm, "xent_part_grad R=%d V=%d Vv=%d", R, V, Vv);
        check_op(nm, gr, 2, op_xpart_grad, &c, 0);
        /* padding columns and padding rows are zeros on the bf16 device */
        uint16_t *lg = bd->alloc(bd, n * 2);
        bd->upload_f32(bd, lg, x, n);
        bd->xent_part_grad(bd, lg, tl, lse, R, V, Vv, c.scale);
        for (int r = 0; r < R; r++)
            for (int col = 0; col < V; col++)
                if (col >= Vv || tl[r] == LM_XENT_PAD) assert_int_equal(lg[(size_t)r * V + col], 0);
        bd->free(bd, lg);
        free(tl), free(x), free(lse);
    }
    /* Vv = 0: a slice of padding only */
    const int R = 6, V = 24;
    const int32_t tl[] = {-1, LM_XENT_PAD, -1, -1, LM_XENT_PAD, -1};
    float *x = rnd((size_t)R * V, -3, 3), stats[3 * 6], lse[6] = {1, 2, 3, 4, 5, 6};
    uint16_t *lg = bd->alloc(bd, (size_t)R * V * 2);
    bd->upload_f32(bd, lg, x, (size_t)R * V);
    bd->xent_part_stats(bd, lg, tl, R, V, 0, stats);
    for (int r = 0; r < R; r++)
        assert_true(stats[3 * r] == -INFINITY && stats[3 * r + 1] == 0.0f && stats[3 * r + 2] == 0.0f);
    bd->xent_part_grad(bd, lg, tl, lse, R, V, 0, 1.0f);
    for (int i = 0; i < R * V; i++) assert_int_equal(lg[i], 0);
    bd->free(bd, lg);
    free(x);
}

/* ---------------------------------------------------------- elementwise */

typedef struct {
    size_t n;
    float s;
} ew_ctx;
static double op_add(lm_device *d, void **b, const void *c_) {
    d->add(d, b[0], b[1], ((const ew_ctx *)c_)->n);
    return 0;
}
static double op_scale(lm_device *d, void **b, const void *c_) {
    const ew_ctx *c = c_;
    d->scale(d, b[0], c->n, c->s);
    return 0;
}
static double op_sumsq(lm_device *d, void **b, const void *c_) { return d->sumsq(d, b[0], ((const ew_ctx *)c_)->n); }

static void test_elementwise(void **state) {
    (void)state;
    seed(80);
    const size_t ns[] = {1000, 50001};
    for (int t = 0; t < 2; t++) {
        ew_ctx c = {ns[t], 0.37f};
        char nm[64];
        bspec add[] = {{ACC, c.n, -1, 1, NULL}, {IN, c.n, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "add n=%zu", c.n);
        check_op(nm, add, 2, op_add, &c, 0);
        bspec sc[] = {{ACC, c.n, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "scale n=%zu", c.n);
        check_op(nm, sc, 1, op_scale, &c, 0);
        bspec ss[] = {{IN, c.n, -1, 1, NULL}};
        snprintf(nm, sizeof nm, "sumsq n=%zu", c.n);
        check_op(nm, ss, 1, op_sumsq, &c, 1);
    }
    /* y += y (x aliasing y) doubles exactly */
    uint16_t *y = bd->alloc(bd, 100 * 2);
    float *h = rnd(100, -1, 1), *back = malloc(400);
    bd->upload_f32(bd, y, h, 100);
    bd->add(bd, y, y, 100);
    bd->download_f32(bd, back, y, 100);
    for (int i = 0; i < 100; i++) assert_true(back[i] == 2 * lm_bf16_to_f32(lm_f32_to_bf16(h[i])));
    bd->free(bd, y);
    free(h), free(back);
}

/* ---------------------------------------------------------------- AdamW */

#define NSEG 3
typedef struct {
    size_t n[NSEG];
    float wd[NSEG];
} adam_ctx;
/* per segment five buffers: master, w, g, m, v. On the float32 device w is
 * a separate float32 buffer (it receives a copy of master). */
static double op_adamw(lm_device *d, void **b, const void *c_) {
    const adam_ctx *c = c_;
    lm_adamw_seg s[NSEG];
    for (int i = 0; i < NSEG; i++)
        s[i] = (lm_adamw_seg){b[5 * i], b[5 * i + 1], b[5 * i + 2], b[5 * i + 3], b[5 * i + 4], c->n[i], c->wd[i]};
    d->adamw(d, s, NSEG, 0.7f, 1e-2f, 0.9f, 0.95f, 1e-8f, 3);
    return 0;
}

static void adamw_w_is_master(void *arg) {
    lm_device *d = arg;
    float *p = d->alloc(d, 64), *m = d->alloc(d, 64), *v = d->alloc(d, 64);
    void *g = d->alloc(d, 32);
    lm_adamw_seg s = {p, p, g, m, v, 16, 0.0f};
    d->adamw(d, &s, 1, 1.0f, 1e-3f, 0.9f, 0.95f, 1e-8f, 1);
}

static void test_adamw(void **state) {
    (void)state;
    seed(90);
    adam_ctx c = {{100, 5000, 40000}, {0.1f, 0.0f, 0.01f}};
    bspec sp[5 * NSEG];
    for (int i = 0; i < NSEG; i++) {
        size_t n = c.n[i];
        sp[5 * i + 0] = (bspec){FACC, n, -1, 1, NULL};   /* master */
        sp[5 * i + 1] = (bspec){OUT, n, 0, 0, NULL};     /* w */
        sp[5 * i + 2] = (bspec){IN, n, -1, 1, NULL};     /* g */
        sp[5 * i + 3] = (bspec){FACC, n, -0.1f, 0.1f, NULL}; /* m */
        sp[5 * i + 4] = (bspec){FACC, n, 0, 0.01f, NULL};   /* v */
    }
    check_op("adamw 3 segments", sp, 5 * NSEG, op_adamw, &c, 0);
    /* w == master on the bf16 backend is a caller's bug: abort, exit 1 */
    assert_int_equal(exit_status_of(adamw_w_is_master, bd), LM_ERR_RUNTIME);
    printf("# largest error norm vs float32 over all ops: %.3e\n", worst);
}

/* ----------------------------------------------------------------- main */

static int setup(void **state) {
    (void)state;
    omp_set_num_threads(3); /* uneven splits across threads, even on 2 cores */
    fd = device_cpu_create(0);
    bd = device_cpu_bf16_create(0);
    return fd && bd ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    device_destroy(bd);
    device_destroy(fd);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exhaustive), cmocka_unit_test(test_ties),      cmocka_unit_test(test_special),
        cmocka_unit_test(test_arrays),     cmocka_unit_test(test_memory),    cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_embedding),  cmocka_unit_test(test_rmsnorm),   cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),  cmocka_unit_test(test_swiglu),    cmocka_unit_test(test_xent),
        cmocka_unit_test(test_xent_part),
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_adamw),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
