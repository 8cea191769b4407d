/* test_ops.c — the CPU backend's ops against references written here.
 *
 * Forward: each op against a naive double-precision implementation.
 * Backward: against central finite differences of L = sum(out * Rw) (Rw
 * random), taken on the double forward, on small shapes; on larger shapes
 * (which take the parallel paths: 3 OpenMP threads, sizes above the
 * backend's serial cut-off) against the analytic double backward.
 * Errors are ||a - b|| / ||b|| over the whole output vector. */
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

#include "common.h"
#include "device.h"

static lm_device *dev;

/* ------------------------------------------------------------- helpers */

/* xorshift64*: a fixed, portable random stream; urand() in [-1, 1). */
static uint64_t rng_s;
static void seed(uint64_t s) { rng_s = s * 0x9E3779B97F4A7C15ull + 1; }
static double urand(void) {
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return (double)((rng_s * 2685821657736338717ull) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static double *drand_vec(size_t n, double amp) {
    double *x = calloc(n ? n : 1, sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = amp * urand();
    return x;
}
static double *dzeros(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* device buffer holding x rounded to float; x is then set to the rounded
 * values, so the double reference sees exactly the backend's inputs */
static float *to_dev(double *x, size_t n) {
    float *f = dev->alloc(dev, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)x[i];
        x[i] = f[i];
    }
    return f;
}
static float *dev_zeros(size_t n) { return dev->alloc(dev, n * sizeof(float)); }
static void dev_free(void *p) { dev->free(dev, p); }

/* ||a - b|| / ||b|| (absolute when b is all zeros); NaN propagates */
static double rel(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_d(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
/* error of an accumulating op: (after - before) against the expected delta */
static double rel_acc(const float *after, const double *before, const double *delta, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = ((double)after[i] - before[i]) - delta[i];
        num += d * d;
        den += delta[i] * delta[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define CHECK(err, tol, ...)                                                                                         \
    do {                                                                                                             \
        double e_ = (err);                                                                                           \
        if (!(e_ < (tol))) {                                                                                         \
            char m_[256];                                                                                            \
            snprintf(m_, sizeof m_, __VA_ARGS__);                                                                    \
            fail_msg("%s: relative error %.3g (limit %.1g)", m_, e_, (double)(tol));                                 \
        }                                                                                                            \
    } while (0)

/* Central differences of f (a double loss) with respect to x[0..n). */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(loss_fn f, void *ctx, double *x, size_t n, double *g) {
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double s = x[i];
        x[i] = s + h;
        double lp = f(ctx);
        x[i] = s - h;
        double lm = f(ctx);
        x[i] = s;
        g[i] = (lp - lm) / (2 * h);
    }
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Run fn(arg) in a child process; return its exit status (-1 if killed). */
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

/* -------------------------------------------------------------- memory */

static void alloc_twice(void *arg) {
    lm_device *d = arg;
    void *a = d->alloc(d, 600);
    void *b = d->alloc(d, 600); /* over capacity: must abort with exit 1 */
    (void)a;
    (void)b;
}

static void test_memory(void **state) {
    (void)state;
    seed(1);
    size_t n = 1000;
    unsigned char *p = dev->alloc(dev, n);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (size_t i = 0; i < n; i++) assert_int_equal(p[i], 0);
    double *x = drand_vec(n / 4, 1.0);
    float *h = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n / 4; i++) h[i] = (float)x[i];
    dev->to_device(dev, p, h, n);
    dev->sync(dev);
    dev->to_host(dev, back, p, n);
    assert_memory_equal(h, back, n);
    dev->free(dev, p);
    dev->free(dev, NULL);
    free(h), free(back), free(x);

    /* capacity: freed bytes come back; going over aborts with exit code 1 */
    lm_device *c = device_cpu_create(1000);
    assert_string_equal(c->name, "cpu");
    assert_int_equal(c->capacity, 1000);
    void *a = c->alloc(c, 600);
    c->free(c, a);
    a = c->alloc(c, 600);
    assert_non_null(a);
    c->free(c, a);
    assert_int_equal(exit_status_of(alloc_twice, c), LM_ERR_RUNTIME);
    device_destroy(c);
    /* capacity 0 = unlimited */
    lm_device *u = device_cpu_create(0);
    void *big = u->alloc(u, 1 << 20);
    assert_non_null(big);
    u->free(u, big);
    device_destroy(u);
}

/* --------------------------------------------------------------- GEMMs */

static void ref_nt(double *y, const double *x, const double *w, int M, int N, int K, double beta, const double *y0) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            y[(size_t)i * N + j] = dot_d(x + (size_t)i * K, w + (size_t)j * K, K) + beta * y0[(size_t)i * N + j];
}
static void ref_nn(double *dx, const double *dy, const double *w, int M, int N, int K, double beta,
                   const double *dx0) {
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += dy[(size_t)i * N + j] * w[(size_t)j * K + k];
            dx[(size_t)i * K + k] = s + beta * dx0[(size_t)i * K + k];
        }
}
static void ref_tn(double *dw, const double *dy, const double *x, int M, int N, int K, double beta,
                   const double *dw0) {
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int i = 0; i < M; i++) s += dy[(size_t)i * N + j] * x[(size_t)i * K + k];
            dw[(size_t)j * K + k] = s + beta * dw0[(size_t)j * K + k];
        }
}

static void test_gemm(void **state) {
    (void)state;
    /* small, odd, and large enough to be cut across threads by rows (M >= N)
     * and by columns (N > M) */
    const int shapes[][3] = {{7, 5, 3}, {37, 29, 19}, {200, 150, 100}, {40, 300, 200}, {1, 1, 1}};
    seed(2);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int beta = 0; beta <= 1; beta++) {
            size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
            double *x = drand_vec(mk, 1), *w = drand_vec(nk, 1), *dy = drand_vec(mn, 1);
            double *y0 = drand_vec(mn, 1), *dx0 = drand_vec(mk, 1), *dw0 = drand_vec(nk, 1);
            float *fx = to_dev(x, (size_t)M * K), *fw = to_dev(w, (size_t)N * K), *fdy = to_dev(dy, (size_t)M * N);
            float *fy = to_dev(y0, (size_t)M * N), *fdx = to_dev(dx0, (size_t)M * K), *fdw = to_dev(dw0, (size_t)N * K);
            double *ry = dzeros((size_t)M * N), *rdx = dzeros((size_t)M * K), *rdw = dzeros((size_t)N * K);
            ref_nt(ry, x, w, M, N, K, beta, y0);
            ref_nn(rdx, dy, w, M, N, K, beta, dx0);
            ref_tn(rdw, dy, x, M, N, K, beta, dw0);
            dev->gemm_nt(dev, fy, fx, fw, M, N, K, (float)beta);
            dev->gemm_nn(dev, fdx, fdy, fw, M, N, K, (float)beta);
            dev->gemm_tn(dev, fdw, fdy, fx, M, N, K, (float)beta);
            CHECK(rel(fy, ry, (size_t)M * N), 1e-5, "gemm_nt %dx%dx%d beta %d", M, N, K, beta);
            CHECK(rel(fdx, rdx, (size_t)M * K), 1e-5, "gemm_nn %dx%dx%d beta %d", M, N, K, beta);
            CHECK(rel(fdw, rdw, (size_t)N * K), 1e-5, "gemm_tn %dx%dx%d beta %d", M, N, K, beta);
            free(x), free(w), free(dy), free(y0), free(dx0), free(dw0), free(ry), free(rdx), free(rdw);
            dev_free(fx), dev_free(fw), dev_free(fdy), dev_free(fy), dev_free(fdx), dev_free(fdw);
        }
    }
}

/* gemm_nn and gemm_tn are the backward of gemm_nt: check them against
 * finite differences of L = sum(Rw * x w^T). */
typedef struct {
    int M, N, K;
    double *x, *w, *Rw, *y, *zero;
} gemm_ctx;
static double gemm_loss(void *p) {
    gemm_ctx *c = p;
    ref_nt(c->y, c->x, c->w, c->M, c->N, c->K, 0, c->zero);
    return dot_d(c->y, c->Rw, (size_t)c->M * c->N);
}

static void test_gemm_grad(void **state) {
    (void)state;
    seed(3);
    gemm_ctx c = {.M = 6, .N = 5, .K = 4};
    size_t nx = (size_t)c.M * c.K, nw = (size_t)c.N * c.K, ny = (size_t)c.M * c.N;
    c.x = drand_vec(nx, 1), c.w = drand_vec(nw, 1), c.Rw = drand_vec(ny, 1), c.y = dzeros(ny), c.zero = dzeros(ny);
    float *fx = to_dev(c.x, nx), *fw = to_dev(c.w, nw), *fR = to_dev(c.Rw, ny);
    float *fdx = dev_zeros(nx), *fdw = dev_zeros(nw);
    double *gx = dzeros(nx), *gw = dzeros(nw);
    fd_grad(gemm_loss, &c, c.x, nx, gx);
    fd_grad(gemm_loss, &c, c.w, nw, gw);
    dev->gemm_nn(dev, fdx, fR, fw, c.M, c.N, c.K, 0.0f);
    dev->gemm_tn(dev, fdw, fR, fx, c.M, c.N, c.K, 0.0f);
    CHECK(rel(fdx, gx, nx), 1e-4, "gemm dx vs finite differences");
    CHECK(rel(fdw, gw, nw), 1e-4, "gemm dw vs finite differences");
    free(c.x), free(c.w), free(c.Rw), free(c.y), free(c.zero), free(gx), free(gw);
    dev_free(fx), dev_free(fw), dev_free(fR), dev_free(fdx), dev_free(fdw);
}

/* ----------------------------------------------------------- embedding */

typedef struct {
    int R, D;
    const int32_t *ids;
    double *table, *Rw;
} emb_ctx;
static double emb_loss(void *p) {
    emb_ctx *c = p;
    double L = 0;
    for (int r = 0; r < c->R; r++) L += dot_d(c->table + (size_t)c->ids[r] * c->D, c->Rw + (size_t)r * c->D, c->D);
    return L;
}

/* fd: check against finite differences; exact: small-integer values, so the
 * float sums are exact and any lost update (a race) shows as a mismatch */
static void emb_case(int R, int D, int V, int fd, int exact) {
    int32_t *ids = malloc(sizeof(int32_t) * R);
    for (int r = 0; r < R; r++) ids[r] = (int32_t)((urand() + 1) * 0.5 * V) % V;
    ids[R - 1] = ids[0]; /* at least one repeat */
    size_t nt = (size_t)V * D, no = (size_t)R * D;
    double *table = drand_vec(nt, 1), *Rw = drand_vec(no, 1), *dt0 = drand_vec(nt, 1);
    if (exact) {
        for (size_t i = 0; i < no; i++) Rw[i] = round(2 * Rw[i]);
        for (size_t i = 0; i < nt; i++) dt0[i] = round(4 * dt0[i]);
    }
    float *ft = to_dev(table, nt), *fR = to_dev(Rw, no), *fdt = to_dev(dt0, nt), *fo = dev_zeros(no);
    dev->embedding_fwd(dev, fo, ft, ids, R, D);
    for (int r = 0; r < R; r++) assert_memory_equal(fo + (size_t)r * D, ft + (size_t)ids[r] * D, sizeof(float) * D);
    double *delta = dzeros(nt);
    emb_ctx c = {R, D, ids, table, Rw};
    if (fd) fd_grad(emb_loss, &c, table, nt, delta);
    else
        for (int r = 0; r < R; r++)
            for (int k = 0; k < D; k++) delta[(size_t)ids[r] * D + k] += Rw[(size_t)r * D + k];
    dev->embedding_bwd(dev, fdt, fR, ids, R, D);
    CHECK(rel_acc(fdt, dt0, delta, nt), exact ? 1e-300 : 1e-4, "embedding_bwd R=%d D=%d V=%d %s", R, D, V,
          fd ? "vs FD" : exact ? "exact" : "vs ref");
    free(ids), free(table), free(Rw), free(dt0), free(delta);
    dev_free(ft), dev_free(fR), dev_free(fdt), dev_free(fo);
}

/* Vocab-parallel ids: negative ids (rows of another rank's slice; -1 and
 * other negatives) give zero rows forward and are skipped backward. Values
 * are small integers, so the sums are exact and compared exactly; `allneg`
 * makes every id negative (forward all zeros, backward a no-op). */
static void emb_neg_case(int R, int D, int V, int allneg) {
    int32_t *ids = malloc(sizeof(int32_t) * R);
    for (int r = 0; r < R; r++) {
        ids[r] = (int32_t)((urand() + 1) * 0.5 * V) % V;
        if (allneg || r % 3 == 0) ids[r] = -1;
        else if (r % 7 == 1) ids[r] = -1 - (r % 5);
    }
    size_t nt = (size_t)V * D, no = (size_t)R * D;
    double *table = drand_vec(nt, 1), *Rw = drand_vec(no, 1), *dt0 = drand_vec(nt, 1), *junk = drand_vec(no, 1);
    for (size_t i = 0; i < no; i++) Rw[i] = round(2 * Rw[i]);
    for (size_t i = 0; i < nt; i++) dt0[i] = round(4 * dt0[i]);
    for (size_t i = 0; i < no; i++) junk[i] = 7.0 + junk[i]; /* out must be overwritten: never 0 */
    float *ft = to_dev(table, nt), *fR = to_dev(Rw, no), *fdt = to_dev(dt0, nt), *fo = to_dev(junk, no);
    dev->embedding_fwd(dev, fo, ft, ids, R, D);
    for (int r = 0; r < R; r++) {
        if (ids[r] >= 0) {
            assert_memory_equal(fo + (size_t)r * D, ft + (size_t)ids[r] * D, sizeof(float) * D);
        } else {
            for (int k = 0; k < D; k++)
                if (fo[(size_t)r * D + k] != 0.0f)
                    fail_msg("embedding_fwd R=%d D=%d: row %d (id %d) element %d is %g, not 0", R, D, r, ids[r], k,
                             (double)fo[(size_t)r * D + k]);
        }
    }
    double *delta = dzeros(nt);
    for (int r = 0; r < R; r++)
        if (ids[r] >= 0)
            for (int k = 0; k < D; k++) delta[(size_t)ids[r] * D + k] += Rw[(size_t)r * D + k];
    dev->embedding_bwd(dev, fdt, fR, ids, R, D);
    CHECK(rel_acc(fdt, dt0, delta, nt), 1e-300, "embedding_bwd with negative ids R=%d D=%d V=%d%s", R, D, V,
          allneg ? " (all negative)" : "");
    if (allneg)
        for (size_t i = 0; i < nt; i++) assert_true(fdt[i] == (float)dt0[i]);
    free(ids), free(table), free(Rw), free(dt0), free(junk), free(delta);
    dev_free(ft), dev_free(fR), dev_free(fdt), dev_free(fo);
}

static void test_embedding(void **state) {
    (void)state;
    seed(4);
    emb_case(9, 5, 4, 1, 0);       /* finite differences, repeated ids */
    emb_case(300, 130, 7, 0, 0);   /* parallel path: many repeats across threads */
    /* every row hits one of two table rows, exact sums: a race (rows split
     * across threads) loses updates; repeated since a race shows by chance */
    for (int rep = 0; rep < 4; rep++) emb_case(50000, 64, 2, 0, 1);
    emb_neg_case(10, 5, 4, 0);     /* serial path */
    emb_neg_case(3000, 64, 50, 0); /* parallel path */
    emb_neg_case(6, 9, 3, 1);      /* every id negative */
}

/* ------------------------------------------------------------- RMSNorm */

typedef struct {
    int R, D;
    double eps, *x, *w, *Rw, *y, *rstd;
} rms_ctx;
static void rms_ref(rms_ctx *c) {
    for (int r = 0; r < c->R; r++) {
        const double *x = c->x + (size_t)r * c->D;
        double rs = 1.0 / sqrt(dot_d(x, x, c->D) / c->D + c->eps);
        c->rstd[r] = rs;
        for (int k = 0; k < c->D; k++) c->y[(size_t)r * c->D + k] = x[k] * rs * c->w[k];
    }
}
static double rms_loss(void *p) {
    rms_ctx *c = p;
    rms_ref(c);
    return dot_d(c->y, c->Rw, (size_t)c->R * c->D);
}
/* analytic backward (dy = Rw), written out independently of the backend */
static void rms_ref_bwd(rms_ctx *c, double *dx, double *dw) {
    rms_ref(c);
    int D = c->D;
    for (int r = 0; r < c->R; r++) {
        const double *x = c->x + (size_t)r * D, *dy = c->Rw + (size_t)r * D;
        double rs = c->rstd[r], gx = 0;
        for (int k = 0; k < D; k++) gx += dy[k] * c->w[k] * x[k];
        for (int k = 0; k < D; k++) {
            dx[(size_t)r * D + k] = dy[k] * c->w[k] * rs - x[k] * rs * rs * rs * gx / D;
            dw[k] += dy[k] * x[k] * rs;
        }
    }
}

static void rms_case(int R, int D, double eps, double amp, int fd) {
    size_t n = (size_t)R * D;
    rms_ctx c = {R, D, eps, drand_vec(n, amp), drand_vec(D, 1), drand_vec(n, 1), dzeros(n), dzeros(R)};
    double *dx0 = drand_vec(n, 1), *dw0 = drand_vec(D, 1), *gx = dzeros(n), *gw = dzeros(D);
    float *fx = to_dev(c.x, n), *fw = to_dev(c.w, D), *fR = to_dev(c.Rw, n), *fdx = to_dev(dx0, n),
          *fdw = to_dev(dw0, D), *fy = dev_zeros(n), *frs = dev_zeros(R);
    dev->rmsnorm_fwd(dev, fy, frs, fx, fw, R, D, (float)eps);
    rms_ref(&c);
    CHECK(rel(fy, c.y, n), 1e-6, "rmsnorm_fwd y R=%d D=%d", R, D);
    CHECK(rel(frs, c.rstd, R), 1e-6, "rmsnorm_fwd rstd R=%d D=%d", R, D);
    if (fd) {
        fd_grad(rms_loss, &c, c.x, n, gx);
        fd_grad(rms_loss, &c, c.w, D, gw);
        /* the analytic reference must agree with the finite differences too */
        double *ax = dzeros(n), *aw = dzeros(D);
        rms_ref_bwd(&c, ax, aw);
        CHECK(rel_d(ax, gx, n), 1e-6, "rmsnorm reference dx vs FD");
        CHECK(rel_d(aw, gw, D), 1e-6, "rmsnorm reference dw vs FD");
        free(ax), free(aw);
    } else {
        rms_ref_bwd(&c, gx, gw);
    }
    dev->rmsnorm_bwd(dev, fdx, fdw, fR, fx, fw, frs, R, D);
    CHECK(rel_acc(fdx, dx0, gx, n), 1e-4, "rmsnorm_bwd dx R=%d D=%d %s", R, D, fd ? "vs FD" : "vs ref");
    CHECK(rel_acc(fdw, dw0, gw, D), 1e-4, "rmsnorm_bwd dw R=%d D=%d %s", R, D, fd ? "vs FD" : "vs ref");
    free(c.x), free(c.w), free(c.Rw), free(c.y), free(c.rstd), free(dx0), free(dw0), free(gx), free(gw);
    dev_free(fx), dev_free(fw), dev_free(fR), dev_free(fdx), dev_free(fdw), dev_free(fy), dev_free(frs);
}

static void test_rmsnorm(void **state) {
    (void)state;
    seed(5);
    rms_case(3, 7, 1e-5, 1.0, 1);
    rms_case(4, 6, 1e-3, 0.1, 1);      /* eps comparable to mean(x^2) */
    rms_case(260, 130, 1e-5, 1.0, 0); /* parallel path: dw reduced over threads */
}

/* ---------------------------------------------------------------- RoPE */

typedef struct {
    int R, T, nh, hd;
    const double *cs, *sn;
    double *x, *Rw, *y;
} rope_ctx;
static void rope_ref(rope_ctx *c, const double *x, double *y, double sign) {
    int half = c->hd / 2;
    for (int r = 0; r < c->R; r++)
        for (int h = 0; h < c->nh; h++) {
            size_t o = ((size_t)r * c->nh + h) * c->hd;
            for (int i = 0; i < half; i++) {
                double co = c->cs[(r % c->T) * half + i], si = sign * c->sn[(r % c->T) * half + i];
                y[o + i] = x[o + i] * co - x[o + i + half] * si;
                y[o + i + half] = x[o + i + half] * co + x[o + i] * si;
            }
        }
}
static double rope_loss(void *p) {
    rope_ctx *c = p;
    rope_ref(c, c->x, c->y, 1.0);
    return dot_d(c->y, c->Rw, (size_t)c->R * c->nh * c->hd);
}

static void rope_case(int R, int T, int nh, int hd, int fd) {
    int half = hd / 2;
    size_t n = (size_t)R * nh * hd;
    double *cs = dzeros((size_t)T * half), *sn = dzeros((size_t)T * half);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double a = t * pow(10000.0, -2.0 * i / hd) + 0.3 * urand();
            cs[t * half + i] = cos(a), sn[t * half + i] = sin(a);
        }
    rope_ctx c = {R, T, nh, hd, cs, sn, drand_vec(n, 1), drand_vec(n, 1), dzeros(n)};
    float *fcs = to_dev(cs, (size_t)T * half), *fsn = to_dev(sn, (size_t)T * half);
    float *fx = to_dev(c.x, n), *fR = to_dev(c.Rw, n);
    dev->rope_fwd(dev, fx, fcs, fsn, R, T, nh, hd);
    rope_ref(&c, c.x, c.y, 1.0);
    CHECK(rel(fx, c.y, n), 1e-6, "rope_fwd R=%d T=%d nh=%d hd=%d", R, T, nh, hd);
    double *g = dzeros(n);
    if (fd) fd_grad(rope_loss, &c, c.x, n, g);
    else rope_ref(&c, c.Rw, g, -1.0);
    dev->rope_bwd(dev, fR, fcs, fsn, R, T, nh, hd);
    CHECK(rel(fR, g, n), 1e-5, "rope_bwd R=%d T=%d nh=%d hd=%d %s", R, T, nh, hd, fd ? "vs FD" : "vs ref");
    free(cs), free(sn), free(c.x), free(c.Rw), free(c.y), free(g);
    dev_free(fcs), dev_free(fsn), dev_free(fx), dev_free(fR);
}

static void test_rope(void **state) {
    (void)state;
    seed(6);
    rope_case(10, 4, 3, 8, 1);    /* positions wrap: rows 4..9 reuse 0..3 */
    rope_case(700, 9, 3, 16, 0); /* parallel path */
}

/* ----------------------------------------------------------- attention */

typedef struct {
    int B, T, H, KV, hd;
    double *q, *k, *v, *Ro, *o, *lse;
} att_ctx;
#define QI(c, b, t, h) ((((size_t)(b) * (c)->T + (t)) * (c)->H + (h)) * (c)->hd)
#define KI(c, b, t, g) ((((size_t)(b) * (c)->T + (t)) * (c)->KV + (g)) * (c)->hd)

/* naive causal GQA: scores, masked softmax (by log-sum-exp), weighted sum */
static void att_ref(att_ctx *c) {
    int T = c->T, hd = c->hd, grp = c->H / c->KV;
    double scale = 1.0 / sqrt((double)hd), *s = dzeros(T);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < T; i++) {
                int g = h / grp;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    s[j] = scale * dot_d(c->q + QI(c, b, i, h), c->k + KI(c, b, j, g), hd);
                    m = fmax(m, s[j]);
                }
                for (int j = 0; j <= i; j++) sum += exp(s[j] - m);
                double lse = m + log(sum);
                c->lse[((size_t)b * c->H + h) * T + i] = lse;
                double *o = c->o + QI(c, b, i, h);
                for (int d = 0; d < hd; d++) o[d] = 0;
                for (int j = 0; j <= i; j++) {
                    double p = exp(s[j] - lse);
                    for (int d = 0; d < hd; d++) o[d] += p * c->v[KI(c, b, j, g) + d];
                }
            }
    free(s);
}
static double att_loss(void *p) {
    att_ctx *c = p;
    att_ref(c);
    return dot_d(c->o, c->Ro, (size_t)c->B * c->T * c->H * c->hd);
}
/* analytic backward with dO = Ro, naive loops in double */
static void att_ref_bwd(att_ctx *c, double *dq, double *dk, double *dv) {
    att_ref(c);
    int T = c->T, hd = c->hd, grp = c->H / c->KV;
    double scale = 1.0 / sqrt((double)hd), *p = dzeros(T);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < T; i++) {
                int g = h / grp;
                const double *qi = c->q + QI(c, b, i, h), *dO = c->Ro + QI(c, b, i, h);
                double lse = c->lse[((size_t)b * c->H + h) * T + i], D = 0;
                for (int j = 0; j <= i; j++) {
                    p[j] = exp(scale * dot_d(qi, c->k + KI(c, b, j, g), hd) - lse);
                    D += p[j] * dot_d(dO, c->v + KI(c, b, j, g), hd);
                }
                for (int j = 0; j <= i; j++) {
                    double ds = p[j] * (dot_d(dO, c->v + KI(c, b, j, g), hd) - D);
                    for (int d = 0; d < hd; d++) {
                        dq[QI(c, b, i, h) + d] += scale * ds * c->k[KI(c, b, j, g) + d];
                        dk[KI(c, b, j, g) + d] += scale * ds * qi[d];
                        dv[KI(c, b, j, g) + d] += p[j] * dO[d];
                    }
                }
            }
    free(p);
}

static void att_case(int B, int T, int H, int KV, int hd, int fd) {
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd, nl = (size_t)B * H * T;
    att_ctx c = {B, T, H, KV, hd, drand_vec(nq, 1), drand_vec(nk, 1), drand_vec(nk, 1), drand_vec(nq, 1),
                 dzeros(nq), dzeros(nl)};
    /* scale q up so that the softmax is far from uniform */
    for (size_t i = 0; i < nq; i++) c.q[i] *= 2.0;
    float *fq = to_dev(c.q, nq), *fk = to_dev(c.k, nk), *fv = to_dev(c.v, nk), *fR = to_dev(c.Ro, nq);
    float *fo = dev_zeros(nq), *flse = dev_zeros(nl);
    double *junk = drand_vec(nq, 1e3); /* dq, dk, dv must be overwritten */
    float *fdq = to_dev(junk, nq), *fdk = to_dev(junk, nk), *fdv = to_dev(junk, nk);
    dev->attention_fwd(dev, fo, flse, fq, fk, fv, B, T, H, KV, hd);
    att_ref(&c);
    CHECK(rel(fo, c.o, nq), 1e-5, "attention_fwd o B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
    CHECK(rel(flse, c.lse, nl), 1e-6, "attention_fwd lse B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
    double *gq = dzeros(nq), *gk = dzeros(nk), *gv = dzeros(nk);
    if (fd) {
        fd_grad(att_loss, &c, c.q, nq, gq);
        fd_grad(att_loss, &c, c.k, nk, gk);
        fd_grad(att_loss, &c, c.v, nk, gv);
        double *aq = dzeros(nq), *ak = dzeros(nk), *av = dzeros(nk);
        att_ref_bwd(&c, aq, ak, av);
        CHECK(rel_d(aq, gq, nq), 1e-6, "attention reference dq vs FD");
        CHECK(rel_d(ak, gk, nk), 1e-6, "attention reference dk vs FD");
        CHECK(rel_d(av, gv, nk), 1e-6, "attention reference dv vs FD");
        free(aq), free(ak), free(av);
    } else {
        att_ref_bwd(&c, gq, gk, gv);
    }
    dev->attention_bwd(dev, fdq, fdk, fdv, fR, fo, flse, fq, fk, fv, B, T, H, KV, hd);
    const char *how = fd ? "vs FD" : "vs ref";
    CHECK(rel(fdq, gq, nq), 1e-4, "attention_bwd dq B=%d T=%d H=%d KV=%d hd=%d %s", B, T, H, KV, hd, how);
    CHECK(rel(fdk, gk, nk), 1e-4, "attention_bwd dk B=%d T=%d H=%d KV=%d hd=%d %s", B, T, H, KV, hd, how);
    CHECK(rel(fdv, gv, nk), 1e-4, "attention_bwd dv B=%d T=%d H=%d KV=%d hd=%d %s", B, T, H, KV, hd, how);
    free(c.q), free(c.k), free(c.v), free(c.Ro), free(c.o), free(c.lse), free(junk), free(gq), free(gk), free(gv);
    dev_free(fq), dev_free(fk), dev_free(fv), dev_free(fR), dev_free(fo), dev_free(flse);
    dev_free(fdq), dev_free(fdk), dev_free(fdv);
}

static void test_attention_fd(void **state) {
    (void)state;
    seed(7);
    att_case(2, 5, 2, 2, 4, 1);   /* H = KV */
    att_case(1, 7, 4, 2, 6, 1);   /* grouped-query, 2 heads per kv head */
    att_case(2, 3, 6, 1, 4, 1);   /* grouped-query, one kv head */
    att_case(3, 1, 2, 1, 8, 1);   /* T = 1 */
    att_case(1, 13, 2, 1, 5, 1);  /* odd T and hd */
    att_case(1, 17, 2, 2, 16, 1); /* T just past one tile, hd one full tile */
}

static void test_attention_large(void **state) {
    (void)state;
    seed(8);
    att_case(3, 37, 4, 2, 64, 0); /* the model's head dim, T not a multiple of anything */
    att_case(2, 70, 6, 1, 64, 0);
    att_case(2, 33, 6, 6, 80, 0); /* hd past a tile boundary */
    att_case(4, 1, 6, 3, 64, 0);
}

/* -------------------------------------------------------------- SwiGLU */

typedef struct {
    size_t n;
    double *g, *u, *Rw;
} swi_ctx;
static double silu_d(double g) { return g / (1.0 + exp(-g)); }
static double swi_loss(void *p) {
    swi_ctx *c = p;
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += silu_d(c->g[i]) * c->u[i] * c->Rw[i];
    return L;
}

static void swi_case(size_t n, int fd) {
    swi_ctx c = {n, drand_vec(n, 4), drand_vec(n, 1), drand_vec(n, 1)};
    if (!fd) { /* extremes: saturated gates must stay finite */
        c.g[0] = 100, c.g[1] = -100, c.g[2] = 88.5, c.g[3] = -88.5, c.g[4] = 0;
    }
    float *fg = to_dev(c.g, n), *fu = to_dev(c.u, n), *fR = to_dev(c.Rw, n);
    float *fo = dev_zeros(n), *fdg = dev_zeros(n), *fdu = dev_zeros(n);
    double *out = dzeros(n), *gg = dzeros(n), *gu = dzeros(n);
    for (size_t i = 0; i < n; i++) out[i] = silu_d(c.g[i]) * c.u[i];
    dev->swiglu_fwd(dev, fo, fg, fu, n);
    CHECK(rel(fo, out, n), 1e-6, "swiglu_fwd n=%zu", n);
    if (fd) {
        fd_grad(swi_loss, &c, c.g, n, gg);
        fd_grad(swi_loss, &c, c.u, n, gu);
    } else {
        for (size_t i = 0; i < n; i++) {
            double s = 1.0 / (1.0 + exp(-c.g[i]));
            gg[i] = c.Rw[i] * c.u[i] * s * (1 + c.g[i] * (1 - s));
            gu[i] = c.Rw[i] * silu_d(c.g[i]);
        }
    }
    dev->swiglu_bwd(dev, fdg, fdu, fR, fg, fu, n);
    for (size_t i = 0; i < n; i++) assert_true(isfinite(fo[i]) && isfinite(fdg[i]) && isfinite(fdu[i]));
    CHECK(rel(fdg, gg, n), 1e-5, "swiglu_bwd dg n=%zu %s", n, fd ? "vs FD" : "vs ref");
    CHECK(rel(fdu, gu, n), 1e-5, "swiglu_bwd du n=%zu %s", n, fd ? "vs FD" : "vs ref");
    free(c.g), free(c.u), free(c.Rw), free(out), free(gg), free(gu);
    dev_free(fg), dev_free(fu), dev_free(fR), dev_free(fo), dev_free(fdg), dev_free(fdu);
}

static void test_swiglu(void **state) {
    (void)state;
    seed(9);
    swi_case(41, 1);
    swi_case(40001, 0);
}

/* ------------------------------------------------------- cross-entropy */

typedef struct {
    int R, V;
    const int32_t *t;
    double *x;
} xent_ctx;
/* sum over valid rows of logsumexp(row) - row[target], in double */
static double xent_loss(void *p) {
    xent_ctx *c = p;
    double L = 0;
    for (int r = 0; r < c->R; r++) {
        if (c->t[r] < 0) continue;
        const double *x = c->x + (size_t)r * c->V;
        double m = -INFINITY, s = 0;
        for (int k = 0; k < c->V; k++) m = fmax(m, x[k]);
        for (int k = 0; k < c->V; k++) s += exp(x[k] - m);
        L += m + log(s) - x[c->t[r]];
    }
    return L;
}
static void xent_ref_grad(xent_ctx *c, double scale, double *g) {
    for (int r = 0; r < c->R; r++) {
        const double *x = c->x + (size_t)r * c->V;
        double *gr = g + (size_t)r * c->V;
        if (c->t[r] < 0) {
            for (int k = 0; k < c->V; k++) gr[k] = 0;
            continue;
        }
        double m = -INFINITY, s = 0;
        for (int k = 0; k < c->V; k++) m = fmax(m, x[k]);
        for (int k = 0; k < c->V; k++) s += exp(x[k] - m);
        for (int k = 0; k < c->V; k++) gr[k] = scale * exp(x[k] - m) / s;
        gr[c->t[r]] -= scale;
    }
}

static void xent_case(int R, int V, double amp, float scale, const int32_t *t, int fd) {
    size_t n = (size_t)R * V;
    xent_ctx c = {R, V, t, drand_vec(n, amp)};
    float *fx = to_dev(c.x, n);
    double loss = dev->xent_fwd_bwd(dev, fx, t, R, V, scale);
    double ref = xent_loss(&c);
    assert_true(isfinite(loss));
    CHECK(fabs(loss - ref) / fmax(fabs(ref), 1e-300), 1e-6, "xent loss R=%d V=%d amp=%g", R, V, amp);
    double *g = dzeros(n);
    if (fd) {
        fd_grad(xent_loss, &c, c.x, n, g);
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    } else {
        xent_ref_grad(&c, scale, g);
    }
    for (size_t i = 0; i < n; i++) assert_true(isfinite(fx[i]));
    for (int r = 0; r < R; r++)
        if (t[r] < 0)
            for (int k = 0; k < V; k++) assert_true(fx[(size_t)r * V + k] == 0.0f);
    CHECK(rel(fx, g, n), 1e-5, "xent grad R=%d V=%d amp=%g %s", R, V, amp, fd ? "vs FD" : "vs ref");
    if (!fd && amp <= 2) { /* each probability to float accuracy (the backend's exp);
                            * small logits, so float x - max adds < 2.5e-7 */
        double worst = 0;
        for (int r = 0; r < R; r++)
            for (int k = 0; k < V; k++) {
                size_t i = (size_t)r * V + k;
                if (t[r] >= 0 && k != t[r] && fabs(g[i]) > 1e-30) worst = fmax(worst, fabs(fx[i] - g[i]) / fabs(g[i]));
            }
        CHECK(worst, 1e-6, "xent probabilities above 1e-30, worst element, R=%d V=%d amp=%g", R, V, amp);
    }
    free(c.x), free(g);
    dev_free(fx);
}

static void test_xent(void **state) {
    (void)state;
    seed(10);
    const int32_t t1[] = {3, -1, 0, 10, 7};
    xent_case(5, 11, 2.0, 0.25f, t1, 1);        /* with a padding row, vs FD */
    const int32_t t2[] = {0, 49, -7, 25};
    xent_case(4, 50, 100.0, 1.0f, t2, 0);       /* logits up to +-100: stability */
    int32_t *t3 = malloc(300 * sizeof(int32_t)); /* parallel path */
    for (int r = 0; r < 300; r++) t3[r] = r % 13 == 0 ? -1 : (int32_t)((urand() + 1) * 100) % 200;
    xent_case(300, 200, 5.0, 1.0f / 300, t3, 0);
    xent_case(64, 256, 2.0, 0.5f, t3, 0); /* worst single probability */
    free(t3);

    /* all padding: zeros, loss 0, whatever the logits were */
    const int32_t tp[] = {-1, -1, -1};
    size_t n = 3 * 17;
    double *x = drand_vec(n, 50);
    float *fx = to_dev(x, n);
    double loss = dev->xent_fwd_bwd(dev, fx, tp, 3, 17, 1.0f);
    assert_true(loss == 0.0);
    for (size_t i = 0; i < n; i++) assert_true(fx[i] == 0.0f);
    free(x);
    dev_free(fx);
}

/* ---------------------------------------- vocab-parallel cross-entropy */

/* The logits [R, V] are cut into k vocab slices of width w (k*w >= V; the
 * last real slice shorter, possibly whole slices of padding, Vv = 0); each
 * slice is a device buffer [R, w] whose columns past Vv hold garbage (NaN,
 * +-inf, +-1e30) that must be ignored. Per slice: xent_part_stats; the
 * stats are combined here as the caller does (in double):
 *   M = max_k m_k,  S = sum_k s_k exp(m_k - M),  lse = M + log S,
 *   loss_r = lse - sum_k zt_k;
 * then xent_part_grad with lse rounded to float. Checked: each slice's
 * (m, s, zt) against the float values (m and zt exactly), the total loss
 * against xent_fwd_bwd on the full logits and against the double
 * reference, the assembled gradient against both, every padding column and
 * every padding row exactly zero. */
static const float GARBAGE[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 88.0f};

static void xpart_case(int R, int V, double amp, float scale, const int32_t *t, int k, int w) {
    size_t n = (size_t)R * V, ns = (size_t)R * w;
    assert_true(k * w >= V);
    xent_ctx c = {R, V, t, drand_vec(n, amp)};
    float *fx = to_dev(c.x, n); /* c.x now holds the float values */
    double loss_full = dev->xent_fwd_bwd(dev, fx, t, R, V, scale); /* fx: the full gradient */
    double loss_ref = xent_loss(&c);
    double *gref = dzeros(n), *gfull = dzeros(n);
    xent_ref_grad(&c, scale, gref);
    for (size_t i = 0; i < n; i++) gfull[i] = fx[i];

    float **sl = malloc(sizeof(float *) * k), *stats = malloc(sizeof(float) * 3 * R * k);
    int32_t *tl = malloc(sizeof(int32_t) * R * k);
    for (int j = 0; j < k; j++) {
        int lo = j * w, Vv = V - lo < 0 ? 0 : V - lo > w ? w : V - lo;
        sl[j] = dev->alloc(dev, (ns ? ns : 1) * sizeof(float));
        for (int r = 0; r < R; r++) {
            for (int col = 0; col < w; col++)
                sl[j][(size_t)r * w + col] =
                    col < Vv ? (float)c.x[(size_t)r * V + lo + col] : GARBAGE[(r + col) % 6];
            int32_t *tj = tl + (size_t)j * R;
            tj[r] = t[r] < 0 ? LM_XENT_PAD : (t[r] >= lo && t[r] < lo + Vv) ? t[r] - lo : -1;
        }
        float *st = stats + (size_t)3 * R * j;
        for (int i = 0; i < 3 * R; i++) st[i] = NAN; /* every element must be written */
        dev->xent_part_stats(dev, sl[j], tl + (size_t)j * R, R, w, Vv, st);
        for (int r = 0; r < R; r++) {
            const double *x = c.x + (size_t)r * V + lo;
            float m = -INFINITY;
            double s = 0;
            for (int col = 0; col < Vv; col++) m = x[col] > m ? (float)x[col] : m;
            for (int col = 0; col < Vv; col++) s += exp(x[col] - m);
            int tj = tl[(size_t)j * R + r];
            if (!(st[3 * r] == m))
                fail_msg("xent_part_stats R=%d V=%d k=%d slice %d row %d: m %g, want %g", R, V, k, j, r,
                         (double)st[3 * r], (double)m);
            if (Vv == 0) assert_true(st[3 * r + 1] == 0.0f);
            else CHECK(fabs(st[3 * r + 1] - s) / s, 1e-6, "xent_part_stats s R=%d V=%d k=%d slice %d row %d", R, V, k, j, r);
            float zt = tj >= 0 ? (float)x[tj] : 0.0f;
            if (!(st[3 * r + 2] == zt))
                fail_msg("xent_part_stats R=%d V=%d k=%d slice %d row %d: zt %g, want %g", R, V, k, j, r,
                         (double)st[3 * r + 2], (double)zt);
        }
    }
    /* combine across slices, as the caller does */
    float *lse = malloc(sizeof(float) * R);
    double loss = 0;
    for (int r = 0; r < R; r++) {
        double M = -INFINITY, S = 0, zt = 0;
        for (int j = 0; j < k; j++) M = fmax(M, stats[(size_t)3 * R * j + 3 * r]);
        for (int j = 0; j < k; j++) {
            const float *st = stats + (size_t)3 * R * j + 3 * r;
            if (st[0] != -INFINITY) S += st[1] * exp(st[0] - M);
            zt += st[2];
        }
        double L = M + log(S);
        lse[r] = (float)L;
        if (t[r] >= 0) loss += L - zt;
    }
    assert_true(isfinite(loss));
    CHECK(fabs(loss - loss_full) / fabs(loss_full), 1e-6, "xent_part loss vs xent_fwd_bwd R=%d V=%d k=%d w=%d amp=%g",
          R, V, k, w, amp);
    CHECK(fabs(loss - loss_ref) / fabs(loss_ref), 1e-6, "xent_part loss vs double R=%d V=%d k=%d w=%d amp=%g", R, V,
          k, w, amp);

    /* gradient slice by slice, assembled into the full [R, V] */
    float *g = malloc(sizeof(float) * (n ? n : 1));
    for (int j = 0; j < k; j++) {
        int lo = j * w, Vv = V - lo < 0 ? 0 : V - lo > w ? w : V - lo;
        dev->xent_part_grad(dev, sl[j], tl + (size_t)j * R, lse, R, w, Vv, scale);
        for (int r = 0; r < R; r++)
            for (int col = 0; col < w; col++) {
                float v = sl[j][(size_t)r * w + col];
                if (col < Vv) g[(size_t)r * V + lo + col] = v;
                if ((col >= Vv || t[r] < 0) && v != 0.0f)
                    fail_msg("xent_part_grad R=%d V=%d k=%d slice %d row %d col %d (Vv %d, %s) is %g, not 0", R, V,
                             k, j, r, col, Vv, t[r] < 0 ? "padding row" : "padding column", (double)v);
            }
        dev_free(sl[j]);
    }
    for (size_t i = 0; i < n; i++) assert_true(isfinite(g[i]));
    CHECK(rel(g, gfull, n), 1e-5, "xent_part grad vs xent_fwd_bwd R=%d V=%d k=%d w=%d amp=%g", R, V, k, w, amp);
    CHECK(rel(g, gref, n), 1e-5, "xent_part grad vs double R=%d V=%d k=%d w=%d amp=%g", R, V, k, w, amp);
    if (amp <= 2) { /* each probability: float lse and vexpf, a few ulp */
        double worst = 0;
        for (int r = 0; r < R; r++)
            for (int col = 0; col < V; col++) {
                size_t i = (size_t)r * V + col;
                if (t[r] >= 0 && col != t[r] && fabs(gref[i]) > 1e-30)
                    worst = fmax(worst, fabs(g[i] - gref[i]) / fabs(gref[i]));
            }
        CHECK(worst, 2e-6, "xent_part probabilities, worst element, R=%d V=%d k=%d", R, V, k);
    }
    free(c.x), free(gref), free(gfull), free(sl), free(stats), free(tl), free(lse), free(g);
    dev_free(fx);
}

static void xpart_bad_target(void *arg) {
    (void)arg;
    float x[2 * 4] = {0};
    float st[6];
    const int32_t tl[2] = {1, 3}; /* 3 >= Vv = 3 */
    dev->xent_part_stats(dev, x, tl, 2, 4, 3, st);
}

static void test_xent_part(void **state) {
    (void)state;
    seed(13);
    enum { R = 9, V = 37 };
    int32_t t[R];
    for (int r = 0; r < R; r++) t[r] = (int32_t)((urand() + 1) * 0.5 * V) % V;
    t[2] = t[6] = -1;            /* padding rows */
    t[0] = 0, t[1] = V - 1;      /* first and last column */
    t[3] = 18, t[4] = 19;        /* the two sides of the k = 2 cut */
    t[5] = 9, t[7] = 10;         /* the two sides of the k = 4 cut */
    const int kw[][2] = {{1, 37}, {2, 19}, {3, 13}, {4, 10}, {4, 13}, {5, 8}}; /* {4, 13}: last slice Vv = 0 */
    for (size_t i = 0; i < sizeof kw / sizeof *kw; i++) xpart_case(R, V, 2.0, 1.0f / 7, t, kw[i][0], kw[i][1]);
    xpart_case(R, V, 100.0, 1.0f, t, 3, 13); /* logits up to +-100: stability of the combination */
    xpart_case(R, V, 100.0, 1.0f, t, 4, 13);

    /* parallel paths (R * w above the serial cut-off), padding rows */
    int32_t *t3 = malloc(300 * sizeof(int32_t));
    for (int r = 0; r < 300; r++) t3[r] = r % 11 == 0 ? -1 : (int32_t)((urand() + 1) * 200.5) % 401;
    xpart_case(300, 401, 3.0, 1.0f / 300, t3, 3, 134);
    xpart_case(300, 401, 3.0, 1.0f / 300, t3, 2, 256); /* last slice: 145 real of 256 */
    free(t3);

    /* every row padding: zeros whatever the logits and lse were */
    const int32_t tp[] = {LM_XENT_PAD, LM_XENT_PAD, LM_XENT_PAD};
    float lse[3] = {1, 2, 3}, *x = dev->alloc(dev, 3 * 17 * sizeof(float));
    for (int i = 0; i < 3 * 17; i++) x[i] = GARBAGE[i % 6];
    dev->xent_part_grad(dev, x, tp, lse, 3, 17, 11, 1.0f);
    for (int i = 0; i < 3 * 17; i++) assert_true(x[i] == 0.0f);
    dev_free(x);

    /* a target column past the real ones is a caller's bug: abort, exit 1 */
    assert_int_equal(exit_status_of(xpart_bad_target, NULL), LM_ERR_RUNTIME);
}

/* ---------------------------------------------------------------- AdamW */

static void test_adamw(void **state) {
    (void)state;
    seed(11);
    const size_t n = 40001;
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
    double *p = drand_vec(n, 1), *m = dzeros(n), *v = dzeros(n);
    float *fp = to_dev(p, n), *fm = dev_zeros(n), *fv = dev_zeros(n);
    for (long step = 1; step <= 3; step++) {
        double *g = drand_vec(n, 2);
        float *fg = to_dev(g, n);
        /* two segments (one launch), the split at an odd element */
        lm_adamw_seg seg[2] = {{fp, fp, fg, fm, fv, n / 3, (float)wd},
                               {fp + n / 3, fp + n / 3, fg + n / 3, fm + n / 3, fv + n / 3, n - n / 3, (float)wd}};
        dev->adamw(dev, seg, 2, (float)gs, (float)lr, (float)b1, (float)b2, (float)eps, step);
        /* float constants, as the backend receives them */
        double flr = (float)lr, fb1 = (float)b1, fb2 = (float)b2, feps = (float)eps, fwd = (float)wd;
        double bc1 = 1 - pow(fb1, step), bc2 = 1 - pow(fb2, step);
        for (size_t i = 0; i < n; i++) {
            double gi = g[i] * gs;
            p[i] *= 1 - flr * fwd;
            m[i] = fb1 * m[i] + (1 - fb1) * gi;
            v[i] = fb2 * v[i] + (1 - fb2) * gi * gi;
            p[i] -= flr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + feps);
        }
        free(g);
        dev_free(fg);
        CHECK(rel(fm, m, n), 1e-6, "adamw m step %ld", step);
        CHECK(rel(fv, v, n), 1e-6, "adamw v step %ld", step);
        CHECK(rel(fp, p, n), 1e-6, "adamw p step %ld", step);
    }
    free(p), free(m), free(v);
    dev_free(fp), dev_free(fm), dev_free(fv);

    /* one element by hand: p=1, g=2, gscale .5, lr .1, wd .5, step 1:
     * p = 1*(1-.05) - .1 * 1 / (1 + 1e-8) */
    float p1 = 1, g1 = 2, m1 = 0, v1 = 0;
    lm_adamw_seg s1 = {&p1, &p1, &g1, &m1, &v1, 1, 0.5f};
    dev->adamw(dev, &s1, 1, 0.5f, 0.1f, 0.9f, 0.95f, 1e-8f, 1);
    assert_true(fabs(p1 - (0.95 - 0.1 / (1 + 1e-8))) < 1e-6);
    assert_true(fabs(m1 - 0.1) < 1e-7 && fabs(v1 - 0.05) < 1e-7);
}

/* ------------------------------------------------- add, scale, sumsq */

static void test_elementwise(void **state) {
    (void)state;
    seed(12);
    const size_t sizes[] = {1, 37, 50001};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        double *x = drand_vec(n, 1), *y = drand_vec(n, 1), *e = dzeros(n);
        float *fx = to_dev(x, n), *fy = to_dev(y, n);
        dev->add(dev, fy, fx, n);
        for (size_t i = 0; i < n; i++) assert_true(fy[i] == (float)((float)y[i] + (float)x[i]));
        dev->scale(dev, fy, n, -0.75f);
        for (size_t i = 0; i < n; i++) e[i] = -0.75 * (double)(float)((float)y[i] + (float)x[i]);
        CHECK(rel(fy, e, n), 1e-7, "scale n=%zu", n);
        double ss = dev->sumsq(dev, fx, n), ref = dot_d(x, x, n);
        CHECK(fabs(ss - ref) / ref, 1e-12, "sumsq n=%zu", n);
        free(x), free(y), free(e);
        dev_free(fx), dev_free(fy);
    }
}

/* ----------------------------------------------------------------- main */

static int setup(void **state) {
    (void)state;
    omp_set_num_threads(3); /* uneven splits across threads, even on 2 cores */
    dev = device_cpu_create(0);
    return dev ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    device_destroy(dev);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),         cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_grad),      cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention_fd),   cmocka_unit_test(test_attention_large),
        cmocka_unit_test(test_swiglu),         cmocka_unit_test(test_xent),
        cmocka_unit_test(test_xent_part),
        cmocka_unit_test(test_adamw),          cmocka_unit_test(test_elementwise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
