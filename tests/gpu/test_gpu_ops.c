/* test_gpu_ops.c — every op of the CUDA backend against the CPU float32
 * reference backend, on the same inputs.
 *
 * Method: inputs are drawn at random on the host (a fresh seed per check,
 * never zeros), uploaded to the CUDA device (which rounds them to bf16), read
 * back as float32 and uploaded to the CPU device: both backends then compute
 * the same function of the same numbers, and what differs is only the CUDA
 * side's bf16 output rounding and its summation order. Outputs that an op
 * overwrites are first poisoned on the CUDA side with NaN (bf16 0x7FC0, fp32
 * 0x7FC00000), so an element the kernel forgets to write shows up as NaN.
 * Outputs that an op accumulates into start from the same random values on
 * both sides.
 *
 * Error measure: ||cuda - cpu|| / ||cpu|| with float64 norms over the whole
 * output (absolute when the reference is all zeros), and the worst element
 * within 5 tol of the largest reference element (so that a few wrong
 * elements cannot hide in a large norm); any NaN or infinity in the CUDA
 * output fails the check. Tolerances: bf16 outputs 1e-2 (GEMMs with
 * reductions up to 4096 long too), float32 statistics (rstd, lse) and AdamW
 * state 2e-3, loss and sum-of-squares scalars 2e-3 relative; exact (0) for
 * copies and conversions.
 *
 * Output: TAP, one line per check ("ok N - name relerr=... tol=..."), the
 * plan "1..N" last; exit 1 on any failure. Each group of ops runs in a child
 * process (see spawn_group): a crash fails that group only. Without a usable
 * GPU: exit 1 with the reason, unless LAMINA_GPU_OPTIONAL=1 (then
 * "1..0 # SKIP ..." and exit 0). `test_gpu_ops --group NAME` runs one group
 * (unnumbered lines); LAMINA_GPU_TEST_EMULATE=1 puts the CPU bf16 emulation
 * in the GPU's place (checks this program on a machine without a GPU). */
#include "bf16.h"
#include "common.h"
#include "device.h"
#include "gpu_harness.h"
#include "rng.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static lm_device *G; /* CUDA, bf16 compute */
static lm_device *C; /* CPU float32 reference */
static uint64_t seed_counter = 0x5eed;

#define TOL_BF16 1e-2
#define TOL_STAT 2e-3
#define TOL_SCALAR 2e-3

/* ------------------------------------------------------------------ TAP */

/* ------------------------------------------------------ host random data */

static uint64_t next_key(void) { return rng_mix64(++seed_counter * 0x9E3779B97F4A7C15ull); }

/* n normals mean + std*N(0,1); a fresh stream each call. */
static float *hrand(size_t n, double mean, double std) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    uint64_t key = next_key();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = (float)(mean + std * rng_normal(key, i));
        if (v == 0.0f) v = (float)(std * 1e-3 + 1e-30); /* never zeros */
        h[i] = v;
    }
    return h;
}

/* n ids uniform in [0, range) */
static int32_t *hids(size_t n, int range) {
    int32_t *h = malloc((n ? n : 1) * sizeof(int32_t));
    uint64_t key = next_key();
    for (size_t i = 0; i < n; i++) h[i] = (int32_t)rng_below(key, i, (uint64_t)range);
    return h;
}

/* ------------------------------------------------------- paired buffers */

/* One logical buffer on both devices. f32: float32 on both (statistics,
 * tables, optimizer state); else the compute dtype (bf16 on CUDA, float32 on
 * the CPU). */
typedef struct {
    void *g, *c;
    size_t n;
    int f32;
} pbuf;

static size_t gsize(const pbuf *b) { return b->n * (b->f32 ? 4 : lm_dtype_size(G->dtype)); }

static pbuf pb_alloc(size_t n, int f32) {
    pbuf b = {NULL, NULL, n, f32};
    b.g = G->alloc(G, gsize(&b) ? gsize(&b) : 4);
    b.c = C->alloc(C, (n ? n : 1) * sizeof(float));
    return b;
}

static void pb_free(pbuf *b) {
    G->free(G, b->g);
    C->free(C, b->c);
    b->g = b->c = NULL;
}

/* Host values -> CUDA (rounded to bf16 unless f32) -> read back -> CPU, so
 * that both hold the same numbers. `host` is overwritten with them. */
static void pb_set(pbuf *b, float *host) {
    if (b->f32) {
        G->to_device(G, b->g, host, b->n * sizeof(float));
    } else {
        G->upload_f32(G, b->g, host, b->n);
        G->sync(G);
        G->download_f32(G, host, b->g, b->n);
    }
    C->to_device(C, b->c, host, b->n * sizeof(float));
}

static void pb_rand(pbuf *b, double mean, double std) {
    float *h = hrand(b->n, mean, std);
    pb_set(b, h);
    free(h);
}

/* NaN into the CUDA side (the CPU reference writes its own outputs). */
static void pb_poison(pbuf *b) {
    if (b->f32) {
        uint32_t *h = malloc((b->n ? b->n : 1) * 4);
        for (size_t i = 0; i < b->n; i++) h[i] = 0x7FC00000u;
        G->to_device(G, b->g, h, b->n * 4);
        free(h);
    } else {
        size_t es = lm_dtype_size(G->dtype);
        unsigned char *h = malloc((b->n ? b->n : 1) * es);
        for (size_t i = 0; i < b->n; i++) {
            if (es == 2) {
                uint16_t v = 0x7FC0;
                memcpy(h + 2 * i, &v, 2);
            } else {
                uint32_t v = 0x7FC00000u;
                memcpy(h + 4 * i, &v, 4);
            }
        }
        G->to_device(G, b->g, h, b->n * es);
        free(h);
    }
}

/* Float32 copies of both sides (malloc'ed). */
static float *get_g(const pbuf *b) {
    float *h = malloc((b->n ? b->n : 1) * sizeof(float));
    G->sync(G);
    if (b->f32) G->to_host(G, h, b->g, b->n * sizeof(float));
    else G->download_f32(G, h, b->g, b->n);
    return h;
}
static float *get_c(const pbuf *b) {
    float *h = malloc((b->n ? b->n : 1) * sizeof(float));
    C->sync(C);
    C->to_host(C, h, b->c, b->n * sizeof(float));
    return h;
}

/* ||a - b|| / ||b|| in float64 (absolute when ||b|| = 0); counts of
 * non-finite values of a and b. */
typedef struct {
    double err;
    int absolute;
    size_t bad_a, bad_b;
    size_t worst_i;
    double worst;
} cmp_t;

static cmp_t compare(const float *a, const float *b, size_t n) {
    cmp_t r = {0, 0, 0, 0, 0, 0};
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) r.bad_a++;
        if (!isfinite(b[i])) r.bad_b++;
        double d = (double)a[i] - (double)b[i];
        if (isfinite(d)) {
            num += d * d;
            if (fabs(d) > r.worst) {
                r.worst = fabs(d);
                r.worst_i = i;
            }
        }
        if (isfinite(b[i])) den += (double)b[i] * b[i];
    }
    if (den > 0) r.err = sqrt(num) / sqrt(den);
    else {
        r.err = sqrt(num);
        r.absolute = 1;
    }
    return r;
}

/* Report a comparison of host arrays a (CUDA) and b (CPU). */
static int report_arrays(const float *a, const float *b, size_t n, double tol, const char *name) {
    cmp_t r = compare(a, b, n);
    /* the norm hides a few wrong elements in a large output: also bound the
     * worst element by 5 tol times the largest reference element */
    double maxb = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(b[i]) && fabs(b[i]) > maxb) maxb = fabs(b[i]);
    int pass = r.bad_a == 0 && r.bad_b == 0 && r.err <= tol && r.worst <= 5 * tol * maxb;
    char det[320];
    int k = snprintf(det, sizeof det, "%s=%.3e tol=%.0e", r.absolute ? "abserr" : "relerr", r.err, tol);
    if (r.bad_a || r.bad_b)
        k += snprintf(det + k, sizeof det - (size_t)k, " NaN/inf: cuda %zu, cpu %zu of %zu", r.bad_a, r.bad_b, n);
    if (!pass && n)
        snprintf(det + k, sizeof det - (size_t)k, " (worst at %zu: cuda %.6g cpu %.6g; largest |cpu| %.6g)",
                 r.worst_i, (double)a[r.worst_i], (double)b[r.worst_i], maxb);
    tap(pass, det, "%s", name);
    return pass;
}

/* Compare the two sides of a paired buffer. */
static int check_pb(const pbuf *b, double tol, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int check_pb(const pbuf *b, double tol, const char *fmt, ...) {
    char name[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    float *a = get_g(b), *c = get_c(b);
    int pass = report_arrays(a, c, b->n, tol, name);
    free(a);
    free(c);
    return pass;
}

/* A scalar: relative difference (absolute when the reference is 0). */
static void check_scalar(double a, double b, double tol, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void check_scalar(double a, double b, double tol, const char *fmt, ...) {
    char name[400], det[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    double e = b != 0 ? fabs(a - b) / fabs(b) : fabs(a - b);
    int pass = isfinite(a) && isfinite(b) && e <= tol;
    snprintf(det, sizeof det, "%s=%.3e tol=%.0e (cuda %.10g cpu %.10g)", b != 0 ? "relerr" : "abserr", e, tol, a, b);
    tap(pass, det, "%s", name);
}

/* ------------------------------------------------------------- memory */

static void t_memory(void) {
    /* alloc returns zeroed memory */
    size_t nb = 3 * 1000 * 1000 + 7;
    unsigned char *h = malloc(nb);
    void *p = G->alloc(G, nb);
    G->sync(G);
    G->to_host(G, h, p, nb);
    size_t nz = 0;
    for (size_t i = 0; i < nb; i++) nz += h[i] != 0;
    char det[128];
    snprintf(det, sizeof det, "nonzero=%zu of %zu bytes", nz, nb);
    tap(nz == 0, det, "alloc returns zeroed memory");

    /* to_device / to_host round trip, copy and zero on odd byte ranges */
    uint64_t key = next_key();
    for (size_t i = 0; i < nb; i++) h[i] = (unsigned char)(1 + rng_below(key, i, 255));
    G->to_device(G, p, h, nb);
    void *q = G->alloc(G, nb);
    G->copy(G, (char *)q + 1, (char *)p + 3, nb - 5);
    G->zero(G, (char *)p + 101, 777);
    unsigned char *hp = malloc(nb), *hq = malloc(nb);
    G->sync(G);
    G->to_host(G, hp, p, nb);
    G->to_host(G, hq, q, nb);
    size_t bad = 0;
    for (size_t i = 0; i < nb; i++) {
        unsigned char want = (i >= 101 && i < 101 + 777) ? 0 : h[i];
        bad += hp[i] != want;
    }
    snprintf(det, sizeof det, "mismatched bytes=%zu", bad);
    tap(bad == 0, det, "to_device/to_host round trip and zero(777 bytes at offset 101)");
    bad = hq[0] != 0;
    for (size_t i = 0; i < nb - 5; i++) bad += hq[1 + i] != h[3 + i];
    for (size_t i = nb - 4; i < nb; i++) bad += hq[i] != 0;
    snprintf(det, sizeof det, "mismatched bytes=%zu", bad);
    tap(bad == 0, det, "copy(%zu bytes, unaligned offsets)", nb - 5);
    G->free(G, p);
    G->free(G, q);
    free(h);
    free(hp);
    free(hq);

    /* upload_f32 rounds to nearest even exactly as the host does (ties,
     * overflow to inf, subnormals, NaN), download_f32 widens exactly */
    size_t n = 100003;
    float *x = hrand(n, 0.0, 3.0);
    const float special[] = {1.0f + 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-23f, 1.0f + 3 * 0x1p-8f, -(1.0f + 0x1p-8f),
                             3.3895314e38f, 3.4e38f, INFINITY, -INFINITY, 1e-40f, -1e-41f, 0x1p-126f, 0.0f, -0.0f,
                             NAN, 65504.0f, 1e-8f};
    memcpy(x, special, sizeof special);
    uint16_t *want = malloc(n * 2), *got = malloc(n * 2);
    for (size_t i = 0; i < n; i++) want[i] = lm_f32_to_bf16(x[i]);
    void *b = G->alloc(G, n * 2);
    G->upload_f32(G, b, x, n);
    G->sync(G);
    G->to_host(G, got, b, n * 2);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        int nan_w = isnan(lm_bf16_to_f32(want[i])), nan_g = isnan(lm_bf16_to_f32(got[i]));
        bad += nan_w ? !nan_g : got[i] != want[i];
    }
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "upload_f32 rounds to nearest even like lm_f32_to_bf16 (incl. ties, inf, subnormal, NaN)");
    float *back = malloc(n * sizeof(float));
    G->download_f32(G, back, b, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        float w = lm_bf16_to_f32(want[i]);
        bad += isnan(w) ? !isnan(back[i]) : memcmp(&w, &back[i], 4) != 0;
    }
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "download_f32 widens bf16 exactly");

    /* device-side convert: f32 -> bf16 -> f32, and same-dtype copies */
    void *f = G->alloc(G, n * 4), *f2 = G->alloc(G, n * 4), *b2 = G->alloc(G, n * 2), *b3 = G->alloc(G, n * 2);
    G->to_device(G, f, x, n * 4);
    G->convert(G, b2, LM_BF16, f, LM_F32, n);
    G->convert(G, f2, LM_F32, b2, LM_BF16, n);
    G->convert(G, b3, LM_BF16, b2, LM_BF16, n);
    G->sync(G);
    G->to_host(G, got, b2, n * 2);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        int nan_w = isnan(lm_bf16_to_f32(want[i])), nan_g = isnan(lm_bf16_to_f32(got[i]));
        bad += nan_w ? !nan_g : got[i] != want[i];
    }
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "convert f32 -> bf16 (round to nearest even)");
    G->to_host(G, back, f2, n * 4);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        float w = lm_bf16_to_f32(want[i]);
        bad += isnan(w) ? !isnan(back[i]) : memcmp(&w, &back[i], 4) != 0;
    }
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "convert bf16 -> f32 (exact)");
    G->to_host(G, got, b3, n * 2);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        int nan_w = isnan(lm_bf16_to_f32(want[i])), nan_g = isnan(lm_bf16_to_f32(got[i]));
        bad += nan_w ? !nan_g : got[i] != want[i];
    }
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "convert bf16 -> bf16 (copy)");
    G->convert(G, f2, LM_F32, f, LM_F32, n);
    G->sync(G);
    G->to_host(G, back, f2, n * 4);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += isnan(x[i]) ? !isnan(back[i]) : memcmp(&x[i], &back[i], 4) != 0;
    snprintf(det, sizeof det, "mismatches=%zu of %zu", bad, n);
    tap(bad == 0, det, "convert f32 -> f32 (copy)");
    G->free(G, f);
    G->free(G, f2);
    G->free(G, b);
    G->free(G, b2);
    G->free(G, b3);
    free(x);
    free(want);
    free(got);
    free(back);
}

/* --------------------------------------------------------------- GEMMs */

typedef struct {
    int M, N, K;
} mnk;

/* y = x W^T (nt), dx = dy W (nn), dW = dy^T x (tn); the reduction runs over
 * K, N and M respectively, so the shapes put 4096 in each of those places. */
static void t_gemm(void) {
    static const mnk S[] = {{128, 256, 64},  {77, 1001, 200},  {1, 512, 256},     {256, 512, 4096},
                            {256, 4096, 512}, {4096, 256, 512}, {2048, 2048, 2048}};
    static const char *names[] = {"gemm_nt", "gemm_nn", "gemm_tn"};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int M = S[s].M, N = S[s].N, K = S[s].K;
        for (int op = 0; op < 3; op++)
            for (int beta = 0; beta <= 1; beta++) {
                /* a: first input, b: second, y: output */
                size_t na, nb, ny;
                double red; /* reduction length */
                if (op == 0) { na = (size_t)M * K; nb = (size_t)N * K; ny = (size_t)M * N; red = K; }
                else if (op == 1) { na = (size_t)M * N; nb = (size_t)N * K; ny = (size_t)M * K; red = N; }
                else { na = (size_t)M * N; nb = (size_t)M * K; ny = (size_t)N * K; red = M; }
                pbuf a = pb_alloc(na, 0), b = pb_alloc(nb, 0), y = pb_alloc(ny, 0);
                pb_rand(&a, 0.0, 1.0);
                pb_rand(&b, 0.0, 1.0);
                if (beta) pb_rand(&y, 0.0, sqrt(red)); /* same size as the product's elements */
                else pb_poison(&y);
                float bt = (float)beta;
                if (op == 0) {
                    G->gemm_nt(G, y.g, a.g, b.g, M, N, K, bt);
                    C->gemm_nt(C, y.c, a.c, b.c, M, N, K, bt);
                } else if (op == 1) {
                    G->gemm_nn(G, y.g, a.g, b.g, M, N, K, bt);
                    C->gemm_nn(C, y.c, a.c, b.c, M, N, K, bt);
                } else {
                    G->gemm_tn(G, y.g, a.g, b.g, M, N, K, bt);
                    C->gemm_tn(C, y.c, a.c, b.c, M, N, K, bt);
                }
                check_pb(&y, TOL_BF16, "%s M=%d N=%d K=%d beta=%d", names[op], M, N, K, beta);
                pb_free(&a);
                pb_free(&b);
                pb_free(&y);
            }
    }
    /* gemm_nt_add: y = res + x W^T, into a separate y and in place (y == res) */
    static const mnk A[] = {{128, 256, 64}, {77, 1001, 200}, {512, 2048, 4096}, {1, 256, 512}};
    for (size_t s = 0; s < sizeof A / sizeof *A; s++) {
        int M = A[s].M, N = A[s].N, K = A[s].K;
        for (int inplace = 0; inplace <= 1; inplace++) {
            pbuf x = pb_alloc((size_t)M * K, 0), w = pb_alloc((size_t)N * K, 0), res = pb_alloc((size_t)M * N, 0);
            pb_rand(&x, 0.0, 1.0);
            pb_rand(&w, 0.0, 1.0);
            pb_rand(&res, 0.0, sqrt((double)K));
            if (inplace) {
                G->gemm_nt_add(G, res.g, res.g, x.g, w.g, M, N, K);
                C->gemm_nt_add(C, res.c, res.c, x.c, w.c, M, N, K);
                check_pb(&res, TOL_BF16, "gemm_nt_add y == res M=%d N=%d K=%d", M, N, K);
            } else {
                pbuf y = pb_alloc((size_t)M * N, 0);
                pb_poison(&y);
                G->gemm_nt_add(G, y.g, res.g, x.g, w.g, M, N, K);
                C->gemm_nt_add(C, y.c, res.c, x.c, w.c, M, N, K);
                check_pb(&y, TOL_BF16, "gemm_nt_add y != res M=%d N=%d K=%d", M, N, K);
                check_pb(&res, 0.0, "gemm_nt_add y != res leaves res unchanged M=%d N=%d K=%d", M, N, K);
                pb_free(&y);
            }
            pb_free(&x);
            pb_free(&w);
            pb_free(&res);
        }
    }
}

/* ------------------------------------------------------------ embedding */

/* Vocab-parallel ids: a rank passes -1 (or any negative id) for tokens of
 * another rank's slice. Forward: those rows exactly zero (the output is
 * NaN-poisoned first); backward: those rows skipped (the host-side sort
 * must drop them, not index them), deterministic; all ids negative: the
 * table is left bit for bit as it was. Shapes: the 16-byte path (D % 8 == 0)
 * and the one-column path (D odd), repeated ids. */
static void embedding_negative_ids(void) {
    static const struct {
        int V, D, R, range, allneg;
    } S[] = {{1000, 256, 512, 1000, 0}, {258, 1001, 300, 16, 0}, {100, 128, 64, 100, 1}};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int V = S[s].V, D = S[s].D, R = S[s].R;
        int32_t *ids = hids((size_t)R, S[s].range);
        for (int r = 0; r < R; r++)
            if (S[s].allneg || r % 3 == 0) ids[r] = -1 - (r % 7 == 0 ? r % 5 : 0);
        pbuf table = pb_alloc((size_t)V * D, 0), out = pb_alloc((size_t)R * D, 0);
        pb_rand(&table, 0.0, 1.0);
        pb_poison(&out);
        G->embedding_fwd(G, out.g, table.g, ids, R, D);
        C->embedding_fwd(C, out.c, table.c, ids, R, D);
        check_pb(&out, TOL_BF16, "embedding_fwd negative ids V=%d D=%d R=%d%s", V, D, R, S[s].allneg ? " (all)" : "");
        float *og = get_g(&out);
        size_t bad = 0;
        for (int r = 0; r < R; r++)
            if (ids[r] < 0)
                for (int k = 0; k < D; k++) bad += og[(size_t)r * D + k] != 0.0f || signbit(og[(size_t)r * D + k]);
        char det[96];
        snprintf(det, sizeof det, "non-zero elements=%zu", bad);
        tap(bad == 0, det, "embedding_fwd rows of negative ids are +0 V=%d D=%d R=%d", V, D, R);
        free(og);

        pbuf dout = pb_alloc((size_t)R * D, 0);
        pb_rand(&dout, 0.0, 1.0);
        float *t0 = hrand((size_t)V * D, 0.0, 1.0);
        pb_set(&table, t0); /* t0: the values both sides hold */
        G->embedding_bwd(G, table.g, dout.g, ids, R, D);
        C->embedding_bwd(C, table.c, dout.c, ids, R, D);
        float *first = get_g(&table);
        if (S[s].allneg) {
            bad = 0;
            for (size_t i = 0; i < (size_t)V * D; i++) bad += memcmp(&first[i], &t0[i], 4) != 0;
            snprintf(det, sizeof det, "changed elements=%zu", bad);
            tap(bad == 0, det, "embedding_bwd with every id negative leaves the table as it was V=%d D=%d R=%d", V,
                D, R);
        } else {
            check_pb(&table, TOL_BF16, "embedding_bwd negative ids (accumulates) V=%d D=%d R=%d ids<%d", V, D, R,
                     S[s].range);
            pb_set(&table, t0);
            G->embedding_bwd(G, table.g, dout.g, ids, R, D);
            float *second = get_g(&table);
            bad = 0;
            for (size_t i = 0; i < (size_t)V * D; i++) bad += memcmp(&first[i], &second[i], 4) != 0;
            snprintf(det, sizeof det, "differing elements=%zu", bad);
            tap(bad == 0, det, "embedding_bwd negative ids deterministic (two runs bit-identical) V=%d D=%d R=%d", V,
                D, R);
            free(second);
        }
        free(first);
        free(t0);
        free(ids);
        pb_free(&table);
        pb_free(&out);
        pb_free(&dout);
    }
}

static void t_embedding(void) {
    static const struct {
        int V, D, R, range;
    } S[] = {{1000, 256, 128, 1000}, {50257, 200, 77, 50257}, {32000, 512, 1, 32000},
             {1000, 256, 4096, 16},  {32000, 128, 4096, 32000}, {258, 1001, 300, 258}};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int V = S[s].V, D = S[s].D, R = S[s].R;
        int32_t *ids = hids((size_t)R, S[s].range);
        pbuf table = pb_alloc((size_t)V * D, 0), out = pb_alloc((size_t)R * D, 0);
        pb_rand(&table, 0.0, 1.0);
        pb_poison(&out);
        G->embedding_fwd(G, out.g, table.g, ids, R, D);
        C->embedding_fwd(C, out.c, table.c, ids, R, D);
        check_pb(&out, TOL_BF16, "embedding_fwd V=%d D=%d R=%d", V, D, R);

        /* backward accumulates into a table that already holds values; ids
         * repeat (heavily where range = 16) */
        pbuf dout = pb_alloc((size_t)R * D, 0);
        pb_rand(&dout, 0.0, 1.0);
        float *t0 = hrand((size_t)V * D, 0.0, 1.0);
        pb_set(&table, t0);
        G->embedding_bwd(G, table.g, dout.g, ids, R, D);
        C->embedding_bwd(C, table.c, dout.c, ids, R, D);
        check_pb(&table, TOL_BF16, "embedding_bwd (accumulates) V=%d D=%d R=%d ids<%d", V, D, R, S[s].range);
        if (S[s].range < R) {
            /* the same accumulation again from the same start: bit-identical */
            float *first = get_g(&table);
            pb_set(&table, t0);
            G->embedding_bwd(G, table.g, dout.g, ids, R, D);
            float *second = get_g(&table);
            size_t bad = 0;
            for (size_t i = 0; i < (size_t)V * D; i++) bad += memcmp(&first[i], &second[i], 4) != 0;
            char det[96];
            snprintf(det, sizeof det, "differing elements=%zu", bad);
            tap(bad == 0, det, "embedding_bwd deterministic (two runs bit-identical) V=%d D=%d R=%d", V, D, R);
            free(first);
            free(second);
        }
        free(t0);
        free(ids);
        pb_free(&table);
        pb_free(&out);
        pb_free(&dout);
    }
    embedding_negative_ids();
}

/* -------------------------------------------------------------- RMSNorm */

static void t_rmsnorm(void) {
    static const struct {
        int R, D;
    } S[] = {{128, 256}, {77, 200}, {1, 2048}, {4096, 4096}, {3, 5504}, {33, 1001}};
    const float eps = 1e-5f;
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int R = S[s].R, D = S[s].D;
        size_t n = (size_t)R * D;
        pbuf x = pb_alloc(n, 0), w = pb_alloc((size_t)D, 0), y = pb_alloc(n, 0), rstd = pb_alloc((size_t)R, 1);
        pb_rand(&x, 0.1, 1.5);
        pb_rand(&w, 1.0, 0.2);
        pb_poison(&y);
        pb_poison(&rstd);
        G->rmsnorm_fwd(G, y.g, rstd.g, x.g, w.g, R, D, eps);
        C->rmsnorm_fwd(C, y.c, rstd.c, x.c, w.c, R, D, eps);
        check_pb(&y, TOL_BF16, "rmsnorm_fwd y R=%d D=%d", R, D);
        check_pb(&rstd, TOL_STAT, "rmsnorm_fwd rstd R=%d D=%d", R, D);

        /* backward: both get the reference rstd; dx and dw accumulate */
        float *rs = get_c(&rstd);
        pb_set(&rstd, rs);
        free(rs);
        pbuf dy = pb_alloc(n, 0), dx = pb_alloc(n, 0), dw = pb_alloc((size_t)D, 0);
        pb_rand(&dy, 0.0, 1.0);
        pb_rand(&dx, 0.0, 0.5);
        pb_rand(&dw, 0.0, 0.5 * sqrt((double)R));
        G->rmsnorm_bwd(G, dx.g, dw.g, dy.g, x.g, w.g, rstd.g, R, D);
        C->rmsnorm_bwd(C, dx.c, dw.c, dy.c, x.c, w.c, rstd.c, R, D);
        check_pb(&dx, TOL_BF16, "rmsnorm_bwd dx (accumulates) R=%d D=%d", R, D);
        check_pb(&dw, TOL_BF16, "rmsnorm_bwd dw (accumulates) R=%d D=%d", R, D);
        pb_free(&x);
        pb_free(&w);
        pb_free(&y);
        pb_free(&rstd);
        pb_free(&dy);
        pb_free(&dx);
        pb_free(&dw);
    }
}

/* ----------------------------------------------------------------- RoPE */

/* cos/sin tables [T, hd/2] of SPEC §3: angle p * theta^(-2i/hd). */
static void rope_tables(pbuf *cs, pbuf *sn, int T, int hd) {
    int half = hd / 2;
    float *c = malloc((size_t)T * half * sizeof(float)), *s = malloc((size_t)T * half * sizeof(float));
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(10000.0, -2.0 * i / hd);
            c[(size_t)p * half + i] = (float)cos(a);
            s[(size_t)p * half + i] = (float)sin(a);
        }
    *cs = pb_alloc((size_t)T * half, 1);
    *sn = pb_alloc((size_t)T * half, 1);
    pb_set(cs, c);
    pb_set(sn, s);
    free(c);
    free(s);
}

static void t_rope(void) {
    static const struct {
        int B, T, nh, hd;
    } S[] = {{2, 77, 8, 64}, {3, 1, 4, 128}, {1, 2048, 16, 128}, {2, 128, 2, 72}, {1, 64, 3, 200}};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int B = S[s].B, T = S[s].T, nh = S[s].nh, hd = S[s].hd, R = B * T;
        pbuf cs, sn;
        rope_tables(&cs, &sn, T, hd);
        for (int dir = 0; dir < 2; dir++) {
            pbuf x = pb_alloc((size_t)R * nh * hd, 0);
            pb_rand(&x, 0.0, 1.0);
            if (dir == 0) {
                G->rope_fwd(G, x.g, cs.g, sn.g, R, T, nh, hd);
                C->rope_fwd(C, x.c, cs.c, sn.c, R, T, nh, hd);
            } else {
                G->rope_bwd(G, x.g, cs.g, sn.g, R, T, nh, hd);
                C->rope_bwd(C, x.c, cs.c, sn.c, R, T, nh, hd);
            }
            check_pb(&x, TOL_BF16, "rope_%s B=%d T=%d nh=%d hd=%d", dir ? "bwd" : "fwd", B, T, nh, hd);
            pb_free(&x);
        }
        pb_free(&cs);
        pb_free(&sn);
    }
}

/* ------------------------------------------------------------ attention */

static void t_attention(void) {
    static const struct {
        int B, T, H, KV, hd;
        double qstd;
    } S[] = {{2, 128, 8, 8, 64, 1.0},   {1, 77, 16, 4, 128, 1.0},  {3, 1, 8, 2, 64, 1.0},
             {2, 300, 8, 8, 64, 4.0},   {2, 256, 8, 1, 64, 1.0},   {1, 2048, 16, 4, 128, 1.0},
             {2, 2048, 8, 8, 64, 1.0},  {1, 1000, 16, 16, 128, 2.0}};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int B = S[s].B, T = S[s].T, H = S[s].H, KV = S[s].KV, hd = S[s].hd;
        size_t R = (size_t)B * T, nq = R * H * hd, nk = R * KV * hd;
        pbuf q = pb_alloc(nq, 0), k = pb_alloc(nk, 0), v = pb_alloc(nk, 0), o = pb_alloc(nq, 0),
             lse = pb_alloc((size_t)B * H * T, 1);
        pb_rand(&q, 0.0, S[s].qstd);
        pb_rand(&k, 0.0, 1.0);
        pb_rand(&v, 0.0, 1.0);
        pb_poison(&o);
        pb_poison(&lse);
        G->attention_fwd(G, o.g, lse.g, q.g, k.g, v.g, B, T, H, KV, hd);
        C->attention_fwd(C, o.c, lse.c, q.c, k.c, v.c, B, T, H, KV, hd);
        check_pb(&o, TOL_BF16, "attention_fwd o B=%d T=%d H=%d KV=%d hd=%d qstd=%g", B, T, H, KV, hd, S[s].qstd);
        check_pb(&lse, TOL_STAT, "attention_fwd lse B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);

        /* backward from the reference forward (o rounded to bf16 for both) */
        float *ho = get_c(&o), *hl = get_c(&lse);
        pb_set(&o, ho);
        pb_set(&lse, hl);
        free(ho);
        free(hl);
        pbuf dout = pb_alloc(nq, 0), dq = pb_alloc(nq, 0), dk = pb_alloc(nk, 0), dv = pb_alloc(nk, 0);
        pb_rand(&dout, 0.0, 1.0);
        pb_poison(&dq);
        pb_poison(&dk);
        pb_poison(&dv);
        G->attention_bwd(G, dq.g, dk.g, dv.g, dout.g, o.g, lse.g, q.g, k.g, v.g, B, T, H, KV, hd);
        C->attention_bwd(C, dq.c, dk.c, dv.c, dout.c, o.c, lse.c, q.c, k.c, v.c, B, T, H, KV, hd);
        check_pb(&dq, TOL_BF16, "attention_bwd dq B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
        check_pb(&dk, TOL_BF16, "attention_bwd dk B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
        check_pb(&dv, TOL_BF16, "attention_bwd dv B=%d T=%d H=%d KV=%d hd=%d", B, T, H, KV, hd);
        pb_free(&q);
        pb_free(&k);
        pb_free(&v);
        pb_free(&o);
        pb_free(&lse);
        pb_free(&dout);
        pb_free(&dq);
        pb_free(&dk);
        pb_free(&dv);
    }
}

/* --------------------------------------------------------------- SwiGLU */

static void t_swiglu(void) {
    static const size_t S[] = {1, 77, 688 * 128, 5504 * 2048 + 3};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        size_t n = S[s];
        pbuf g = pb_alloc(n, 0), u = pb_alloc(n, 0), out = pb_alloc(n, 0);
        pb_rand(&g, 0.0, 2.0);
        pb_rand(&u, 0.0, 1.0);
        pb_poison(&out);
        G->swiglu_fwd(G, out.g, g.g, u.g, n);
        C->swiglu_fwd(C, out.c, g.c, u.c, n);
        check_pb(&out, TOL_BF16, "swiglu_fwd n=%zu", n);
        pbuf dout = pb_alloc(n, 0), dg = pb_alloc(n, 0), du = pb_alloc(n, 0);
        pb_rand(&dout, 0.0, 1.0);
        pb_poison(&dg);
        pb_poison(&du);
        G->swiglu_bwd(G, dg.g, du.g, dout.g, g.g, u.g, n);
        C->swiglu_bwd(C, dg.c, du.c, dout.c, g.c, u.c, n);
        check_pb(&dg, TOL_BF16, "swiglu_bwd dg n=%zu", n);
        check_pb(&du, TOL_BF16, "swiglu_bwd du n=%zu", n);
        pb_free(&g);
        pb_free(&u);
        pb_free(&out);
        pb_free(&dout);
        pb_free(&dg);
        pb_free(&du);
    }
}

/* -------------------------------------------------------- cross-entropy */

static void t_xent(void) {
    static const struct {
        int R, V, pad; /* pad: every pad-th row is padding; -1: all rows */
    } S[] = {{128, 1000, 5}, {77, 32000, 4}, {64, 50257, 3}, {1, 50257, 0}, {512, 32000, 7}, {8, 1001, -1},
             {300, 258, 2}};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        int R = S[s].R, V = S[s].V, pad = S[s].pad;
        int32_t *t = hids((size_t)R, V);
        int valid = 0;
        for (int r = 0; r < R; r++) {
            if (pad < 0 || (pad > 0 && r % pad == pad - 1)) t[r] = -1;
            valid += t[r] >= 0;
        }
        float scale = valid ? 1.0f / (float)valid : 1.0f;
        pbuf lg = pb_alloc((size_t)R * V, 0);
        pb_rand(&lg, 0.0, 2.0);
        double lg_g = G->xent_fwd_bwd(G, lg.g, t, R, V, scale);
        double lg_c = C->xent_fwd_bwd(C, lg.c, t, R, V, scale);
        check_scalar(lg_g, lg_c, TOL_SCALAR, "xent_fwd_bwd loss R=%d V=%d valid=%d", R, V, valid);
        check_pb(&lg, TOL_BF16, "xent_fwd_bwd dlogits R=%d V=%d valid=%d", R, V, valid);
        pb_free(&lg);
        free(t);
    }
}

/* ----------------------------------------- vocab-parallel cross-entropy */

/* m, s or zt (which = 0, 1, 2) of every row, out of a stats array [3R] */
static float *stat_col(const float *st, int R, int which) {
    float *o = malloc(sizeof(float) * (R ? R : 1));
    for (int r = 0; r < R; r++) o[r] = st[3 * r + which];
    return o;
}

/* The logits [R, V] cut into k slices of width w (the last real one
 * shorter, possibly slices of padding only: Vv = 0), padding columns full
 * of garbage (NaN, +-inf, +-1e30) that must not count. Per slice, both
 * backends' xent_part_stats: m and zt exactly equal (the max and a copy of
 * the same bf16 numbers), s within TOL_STAT; Vv = 0: m = -inf, s = 0,
 * zt = 0. The stats are combined as the caller does (double):
 * lse = M + log sum_k s_k exp(m_k - M), loss = sum_r lse - sum_k zt_k; the
 * loss from the CUDA stats against the CPU's xent_fwd_bwd on the full
 * logits. Then xent_part_grad on both sides with the same lse (from the CPU
 * stats): each slice within TOL_BF16, padding columns and padding rows
 * exactly zero on the CUDA side, and the assembled CUDA gradient against
 * xent_fwd_bwd's full one. Shapes: the 16-byte path (w % 8 == 0, Vv not a
 * multiple of 8 too) and the one-column path (w odd), vocabularies of
 * 32000 and 50257. */
static void t_xent_part(void) {
    static const struct {
        int R, V, k, w, pad; /* pad: every pad-th row is padding; -1: all rows */
    } S[] = {{128, 32000, 2, 16000, 5}, {77, 50257, 4, 12565, 4}, {64, 32000, 3, 10667, 3},
             {33, 1000, 4, 256, 6},     {16, 100, 4, 48, 3},      {8, 1001, 2, 501, -1},
             {300, 258, 1, 258, 7}};
    static const float garbage[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        const int R = S[s].R, V = S[s].V, k = S[s].k, w = S[s].w, pad = S[s].pad;
        const size_t n = (size_t)R * V, ns = (size_t)R * w;
        int32_t *t = hids((size_t)R, V);
        int valid = 0;
        for (int r = 0; r < R; r++) {
            if (pad < 0 || (pad > 0 && r % pad == pad - 1)) t[r] = -1;
            valid += t[r] >= 0;
        }
        const float scale = valid ? 1.0f / (float)valid : 1.0f;
        float *x = hrand(n, 0.0, 2.0), *xr = malloc(n * sizeof(float));
        pbuf *sl = malloc(sizeof(pbuf) * k);
        int32_t *tl = malloc(sizeof(int32_t) * (size_t)R * k);
        int *vv = malloc(sizeof(int) * k);
        float *stg = malloc(sizeof(float) * 3 * (size_t)R * k), *stc = malloc(sizeof(float) * 3 * (size_t)R * k);
        for (int j = 0; j < k; j++) {
            const int lo = j * w, Vv = V - lo < 0 ? 0 : V - lo > w ? w : V - lo;
            vv[j] = Vv;
            float *h = malloc(ns * sizeof(float));
            for (int r = 0; r < R; r++) {
                for (int c = 0; c < w; c++)
                    h[(size_t)r * w + c] = c < Vv ? x[(size_t)r * V + lo + c] : garbage[(r + c) % 5];
                tl[(size_t)j * R + r] = t[r] < 0 ? LM_XENT_PAD : (t[r] >= lo && t[r] < lo + Vv) ? t[r] - lo : -1;
            }
            sl[j] = pb_alloc(ns, 0);
            pb_set(&sl[j], h); /* h: the bf16 values both sides hold */
            for (int r = 0; r < R; r++)
                for (int c = 0; c < Vv; c++) xr[(size_t)r * V + lo + c] = h[(size_t)r * w + c];
            free(h);
            float *sg = stg + (size_t)3 * R * j, *sc = stc + (size_t)3 * R * j;
            for (int i = 0; i < 3 * R; i++) sg[i] = NAN;
            G->xent_part_stats(G, sl[j].g, tl + (size_t)j * R, R, w, Vv, sg);
            C->xent_part_stats(C, sl[j].c, tl + (size_t)j * R, R, w, Vv, sc);
            if (Vv == 0) {
                size_t bad = 0;
                for (int r = 0; r < R; r++)
                    bad += !(sg[3 * r] == -INFINITY && sg[3 * r + 1] == 0.0f && sg[3 * r + 2] == 0.0f);
                char det[96];
                snprintf(det, sizeof det, "rows not {-inf, 0, 0}=%zu of %d", bad, R);
                tap(bad == 0, det, "xent_part_stats slice %d of padding only (Vv=0) R=%d w=%d", j, R, w);
                continue;
            }
            static const char *what[] = {"max", "sum exp", "target logit"};
            for (int q = 0; q < 3; q++) {
                float *a = stat_col(sg, R, q), *b = stat_col(sc, R, q);
                char name[200];
                snprintf(name, sizeof name, "xent_part_stats %s R=%d V=%d slice %d/%d (Vv=%d of %d)", what[q], R, V,
                         j, k, Vv, w);
                report_arrays(a, b, (size_t)R, q == 1 ? TOL_STAT : 0.0, name);
                free(a);
                free(b);
            }
        }
        /* the CPU's cross-entropy on the full (bf16-valued) logits */
        float *full = C->alloc(C, n * sizeof(float));
        memcpy(full, xr, n * sizeof(float));
        double loss_ref = C->xent_fwd_bwd(C, full, t, R, V, scale);
        /* combine, as the caller does */
        float *lse = malloc(sizeof(float) * R);
        double loss_g = 0;
        for (int r = 0; r < R; r++) {
            double lg = 0, lc = 0;
            for (int side = 0; side < 2; side++) {
                const float *st = side ? stc : stg;
                double M = -INFINITY, S2 = 0, zt = 0;
                for (int j = 0; j < k; j++) M = fmax(M, st[(size_t)3 * R * j + 3 * r]);
                for (int j = 0; j < k; j++) {
                    const float *e = st + (size_t)3 * R * j + 3 * r;
                    if (e[0] != -INFINITY) S2 += e[1] * exp(e[0] - M);
                    zt += e[2];
                }
                double L = M + log(S2);
                if (side) lc = L;
                else lg = L - zt;
            }
            lse[r] = (float)lc;
            if (t[r] >= 0) loss_g += lg;
        }
        check_scalar(loss_g, loss_ref, TOL_SCALAR, "xent_part loss (cuda stats combined) vs xent_fwd_bwd R=%d V=%d k=%d",
                     R, V, k);
        /* gradients, slice by slice, with the same lse */
        float *ga = malloc(n * sizeof(float));
        size_t nonzero = 0;
        for (int j = 0; j < k; j++) {
            const int lo = j * w, Vv = vv[j];
            G->xent_part_grad(G, sl[j].g, tl + (size_t)j * R, lse, R, w, Vv, scale);
            C->xent_part_grad(C, sl[j].c, tl + (size_t)j * R, lse, R, w, Vv, scale);
            check_pb(&sl[j], TOL_BF16, "xent_part_grad R=%d V=%d slice %d/%d (Vv=%d of %d)", R, V, j, k, Vv, w);
            float *g = get_g(&sl[j]);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < w; c++) {
                    float v = g[(size_t)r * w + c];
                    if (c < Vv) ga[(size_t)r * V + lo + c] = v;
                    if ((c >= Vv || t[r] < 0) && (v != 0.0f || signbit(v))) nonzero++;
                }
            free(g);
            pb_free(&sl[j]);
        }
        char det[96];
        snprintf(det, sizeof det, "non-zero elements=%zu", nonzero);
        tap(nonzero == 0, det, "xent_part_grad padding columns and padding rows are +0 R=%d V=%d k=%d", R, V, k);
        char name[160];
        snprintf(name, sizeof name, "xent_part_grad assembled vs xent_fwd_bwd R=%d V=%d k=%d valid=%d", R, V, k, valid);
        report_arrays(ga, full, n, TOL_BF16, name);
        C->free(C, full);
        free(ga);
        free(lse);
        free(x);
        free(xr);
        free(sl);
        free(tl);
        free(vv);
        free(stg);
        free(stc);
        free(t);
    }
}

/* ------------------------------------------------- add, scale, sumsq */

static void t_elementwise(void) {
    static const size_t S[] = {1, 1001, (1u << 20) + 3, (1u << 22) + 5};
    for (size_t s = 0; s < sizeof S / sizeof *S; s++) {
        size_t n = S[s];
        pbuf y = pb_alloc(n, 0), x = pb_alloc(n, 0);
        pb_rand(&y, 0.0, 1.0);
        pb_rand(&x, 0.0, 1.0);
        G->add(G, y.g, x.g, n);
        C->add(C, y.c, x.c, n);
        check_pb(&y, TOL_BF16, "add n=%zu", n);
        pb_rand(&x, 0.5, 1.0);
        G->scale(G, x.g, n, 0.37f);
        C->scale(C, x.c, n, 0.37f);
        check_pb(&x, TOL_BF16, "scale n=%zu", n);
        pb_rand(&x, 0.0, 1e-3);
        double sg = G->sumsq(G, x.g, n), sc = C->sumsq(C, x.c, n);
        check_scalar(sg, sc, TOL_SCALAR, "sumsq n=%zu", n);
        pb_free(&y);
        pb_free(&x);
    }
}

/* ---------------------------------------------------------------- AdamW */

/* Several segments in arenas at 16-element-aligned offsets (the chunk
 * layout's alignment), weight decay 0 and 0.1, two steps. Compared: the
 * update of the master weights (master - master0, so the small update is not
 * hidden under the weights), m, v, and w against bf16(master). Elements
 * between segments must stay untouched. */
static void t_adamw(void) {
    static const struct {
        size_t n;
        float wd;
    } S[] = {{1, 0.1f}, {1000, 0.0f}, {77777, 0.1f}, {1u << 20, 0.0f}, {5, 0.1f}, {300001, 0.0f}};
    enum { NS = sizeof S / sizeof *S };
    size_t off[NS], total = 0;
    for (int i = 0; i < NS; i++) {
        off[i] = total;
        total += (S[i].n + 15) / 16 * 16 + 16; /* a gap of at least 16 elements */
    }
    pbuf master = pb_alloc(total, 1), m = pb_alloc(total, 1), v = pb_alloc(total, 1), g = pb_alloc(total, 0);
    pbuf w = pb_alloc(total, 0); /* CUDA: bf16 compute copy; CPU: a float32 copy */
    float *m0 = hrand(total, 0.0, 0.5);
    pb_set(&master, m0);
    float *zeros = calloc(total, sizeof(float));
    pb_set(&m, zeros);
    pb_set(&v, zeros);
    pb_poison(&w);
    C->zero(C, w.c, total * sizeof(float));
    lm_adamw_seg sg[NS], sc[NS];
    for (int i = 0; i < NS; i++) {
        size_t o = off[i];
        sg[i] = (lm_adamw_seg){(float *)master.g + o, lm_at(G, w.g, o), lm_at(G, g.g, o), (float *)m.g + o,
                               (float *)v.g + o, S[i].n, S[i].wd};
        sc[i] = (lm_adamw_seg){(float *)master.c + o, (float *)w.c + o, (float *)g.c + o, (float *)m.c + o,
                               (float *)v.c + o, S[i].n, S[i].wd};
    }
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    for (long step = 1; step <= 2; step++) {
        float gscale = step == 1 ? 1.0f : 0.5f;
        pb_rand(&g, 0.0, 1e-2);
        float *before = get_g(&master);
        G->adamw(G, sg, NS, gscale, lr, b1, b2, eps, step);
        C->adamw(C, sc, NS, gscale, lr, b1, b2, eps, step);
        float *mg = get_g(&master), *mc = get_c(&master);
        /* per segment: the update master - master_before */
        for (int i = 0; i < NS; i++) {
            size_t n = S[i].n, o = off[i];
            float *du = malloc(n * sizeof(float)), *dc = malloc(n * sizeof(float));
            for (size_t j = 0; j < n; j++) {
                du[j] = (float)((double)mg[o + j] - before[o + j]);
                dc[j] = (float)((double)mc[o + j] - before[o + j]);
            }
            char name[160];
            snprintf(name, sizeof name, "adamw step %ld segment %d (n=%zu wd=%g) master update", step, i, n,
                     (double)S[i].wd);
            report_arrays(du, dc, n, TOL_STAT, name);
            free(du);
            free(dc);
        }
        char name[160];
        snprintf(name, sizeof name, "adamw step %ld master weights (all segments)", step);
        report_arrays(mg, mc, total, TOL_STAT, name);
        /* gaps untouched */
        size_t bad = 0;
        for (int i = 0; i < NS; i++) {
            size_t end = i + 1 < NS ? off[i + 1] : total;
            for (size_t j = off[i] + S[i].n; j < end; j++) bad += memcmp(&mg[j], &before[j], 4) != 0;
        }
        char det[96];
        snprintf(det, sizeof det, "changed=%zu", bad);
        tap(bad == 0, det, "adamw step %ld leaves elements between segments untouched", step);
        check_pb(&m, TOL_STAT, "adamw step %ld exp_avg (m)", step);
        check_pb(&v, TOL_STAT, "adamw step %ld exp_avg_sq (v)", step);
        /* w = bf16(master) exactly, and close to the reference master */
        float *wf = get_g(&w);
        size_t mism = 0, inseg = 0;
        for (int i = 0; i < NS; i++)
            for (size_t j = off[i]; j < off[i] + S[i].n; j++) {
                inseg++;
                float want = lm_bf16_to_f32(lm_f32_to_bf16(mg[j]));
                mism += memcmp(&want, &wf[j], 4) != 0;
            }
        snprintf(det, sizeof det, "mismatches=%zu of %zu", mism, inseg);
        tap(mism == 0, det, "adamw step %ld w == bf16(master) on the CUDA side", step);
        float *wa = malloc(inseg * sizeof(float)), *wb = malloc(inseg * sizeof(float));
        size_t k = 0;
        for (int i = 0; i < NS; i++)
            for (size_t j = off[i]; j < off[i] + S[i].n; j++, k++) {
                wa[k] = wf[j];
                wb[k] = mc[j];
            }
        snprintf(name, sizeof name, "adamw step %ld w vs reference master", step);
        report_arrays(wa, wb, inseg, TOL_BF16, name);
        free(wa);
        free(wb);
        free(wf);
        free(before);
        free(mg);
        free(mc);
    }
    free(m0);
    free(zeros);
    pb_free(&master);
    pb_free(&m);
    pb_free(&v);
    pb_free(&g);
    pb_free(&w);
}

/* ----------------------------------------------------------------- main */


/* Each group runs in its own process (this program re-executed with
 * --group NAME, its own CUDA context), so that a group that crashes or
 * aborts — a kernel that faults, an op the backend rejects — is reported as
 * a failure and the other groups still run. The parent numbers the
 * children's "ok - ..." lines into one TAP stream. */
static const struct {
    const char *name;
    void (*fn)(void);
} GROUPS[] = {{"memory", t_memory},    {"gemm", t_gemm},     {"embedding", t_embedding}, {"rmsnorm", t_rmsnorm},
              {"rope", t_rope},        {"attention", t_attention}, {"swiglu", t_swiglu}, {"xent", t_xent},
              {"xent_part", t_xent_part},
              {"elementwise", t_elementwise}, {"adamw", t_adamw}};
enum { NGROUPS = sizeof GROUPS / sizeof *GROUPS };

static int run_group(const char *name) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < NGROUPS; i++) {
        if (strcmp(GROUPS[i].name, name)) continue;
        char why[LM_ERRLEN] = {0};
        G = open_gpu(why, sizeof why);
        if (!G) {
            printf("not ok - CUDA device: %s\n", why);
            return 1;
        }
        C = device_cpu_create(0);
        double t = lm_now();
        GROUPS[i].fn();
        printf("# group %s done: %d checks, %d failed, %.1f s\n", name, n_checks, n_failed, lm_now() - t);
        device_destroy(C);
        device_destroy(G);
        return n_failed ? 1 : 0;
    }
    fprintf(stderr, "test_gpu_ops: no group '%s'\n", name);
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--group")) return run_group(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_gpu_ops [--group NAME]  (groups:");
        for (int i = 0; i < NGROUPS; i++) fprintf(stderr, " %s", GROUPS[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    int rc = probe_gpu("ops");
    if (rc >= 0) return rc;
    double t0 = lm_now();
    for (int i = 0; i < NGROUPS; i++) spawn_child("test_gpu_ops", "--group", GROUPS[i].name, "group", GROUPS[i].name);
    printf("1..%d\n", n_checks);
    printf("# %d passed, %d failed (%.1f s)\n", n_checks - n_failed, n_failed, lm_now() - t0);
    return n_failed ? 1 : 0;
}
