/* gpu_bench.c — kernel rates of the CUDA backend, through the device
 * interface (what the model calls):
 *   (a) bf16 GEMMs (fp32 accumulate): M = N = K = 8192, and the 1.3B model's
 *       shapes with M = 8192 tokens: [N,K] = 2048x2048 (q/k/v/o_proj),
 *       5504x2048 (gate/up), 2048x5504 (down), 32000x2048 (lm_head); each as
 *       gemm_nt (forward), gemm_nn (input gradient) and gemm_tn (weight
 *       gradient). FLOPs 2*M*N*K.
 *   (b) flash attention forward and backward, B = 4, T = 2048, causal,
 *       H = KV = 16 with head_dim 128 (the 1.3B model) and H = 32 with
 *       head_dim 64. FLOPs of the causal forward 2 * 2*B*H*T*T*hd / 2 (two
 *       matrix products, half of the score matrix), backward 2.5x that.
 * Each timing: 3 warm-up calls, then 20 calls each between d->sync and two
 * clock_gettime reads; the median is reported. Inputs are uniform random in
 * [-1, 1) (zeros would flatter the tensor cores' power draw). One sampled
 * check per GEMM shape compares 8 output elements of gemm_nt with a float64
 * dot product of the same bf16 inputs.
 *
 * Usage: gpu_bench [--json FILE] [--reps N] [--small]; exit 1 without a
 * usable GPU or when a sampled check fails. --small divides every size by 8
 * (a smoke test of the program itself, e.g. on the CPU bf16 emulation). */
#include "bf16.h"
#include "common.h"
#include "device.h"
#ifdef LAMINA_CUDA
#include "cuda_info.h"
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARMUP 3

static int reps = 20;
static int shrink = 1; /* --small: 8 */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fill n compute-dtype elements with uniform [-1, 1) (xorshift, in slices). */
static void fill_random(lm_device *d, void *p, size_t n, uint64_t seed) {
    const size_t slice = (size_t)1 << 22;
    float *h = malloc(slice * sizeof(float));
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t off = 0; off < n; off += slice) {
        size_t k = n - off < slice ? n - off : slice;
        for (size_t i = 0; i < k; i++) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            h[i] = (float)((double)((s * 2685821657736338717ull) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
        }
        d->upload_f32(d, lm_at(d, p, off), h, k);
    }
    free(h);
}

typedef enum { OP_NT, OP_NN, OP_TN, OP_ATT_FWD, OP_ATT_BWD } op_kind;

typedef struct {
    lm_device *d;
    op_kind op;
    int M, N, K;                  /* GEMMs */
    void *a, *b, *y;
    int B, T, H, KV, hd;          /* attention */
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *lse;
} job;

static void run_once(job *j) {
    lm_device *d = j->d;
    switch (j->op) {
    case OP_NT: d->gemm_nt(d, j->y, j->a, j->b, j->M, j->N, j->K, 0.0f); break;
    case OP_NN: d->gemm_nn(d, j->y, j->a, j->b, j->M, j->N, j->K, 0.0f); break;
    case OP_TN: d->gemm_tn(d, j->y, j->a, j->b, j->M, j->N, j->K, 0.0f); break;
    case OP_ATT_FWD: d->attention_fwd(d, j->o, j->lse, j->q, j->k, j->v, j->B, j->T, j->H, j->KV, j->hd); break;
    case OP_ATT_BWD:
        d->attention_bwd(d, j->dq, j->dk, j->dv, j->dout, j->o, j->lse, j->q, j->k, j->v, j->B, j->T, j->H, j->KV,
                         j->hd);
        break;
    }
}

/* Median seconds of one call. */
static double time_job(job *j) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < WARMUP; i++) run_once(j);
    j->d->sync(j->d);
    for (int i = 0; i < reps; i++) {
        j->d->sync(j->d);
        double t0 = now();
        run_once(j);
        j->d->sync(j->d);
        t[i] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    free(t);
    return med;
}

/* 8 sampled elements of y = x W^T against float64 dot products; returns the
 * largest |diff| / (sqrt(K) * rms scale of the products), ~1e-3 when right. */
static double check_nt(lm_device *d, const void *y, const void *x, const void *w, int M, int N, int K) {
    float *xr = malloc(sizeof(float) * (size_t)K), *wr = malloc(sizeof(float) * (size_t)K);
    double worst = 0;
    uint64_t s = 12345;
    d->sync(d);
    for (int t = 0; t < 8; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((s >> 33) % (uint64_t)M), jn = (int)((s >> 7) % (uint64_t)N);
        float yv;
        d->download_f32(d, xr, lm_at(d, x, (size_t)i * K), (size_t)K);
        d->download_f32(d, wr, lm_at(d, w, (size_t)jn * K), (size_t)K);
        d->download_f32(d, &yv, lm_at(d, y, (size_t)i * N + jn), 1);
        double ref = 0, scale = 0;
        for (int c = 0; c < K; c++) {
            ref += (double)xr[c] * wr[c];
            scale += ((double)xr[c] * wr[c]) * ((double)xr[c] * wr[c]);
        }
        double e = fabs((double)yv - ref) / (sqrt(scale) + 1e-30);
        if (!isfinite(yv)) e = INFINITY;
        if (e > worst) worst = e;
    }
    free(xr);
    free(wr);
    return worst;
}

typedef struct {
    const char *name;
    int M, N, K;
    double ms[3], tflops[3], check;
} gemm_row;

typedef struct {
    int B, T, H, KV, hd;
    double fwd_ms, bwd_ms, fwd_tflops, bwd_tflops;
} att_row;

int main(int argc, char **argv) {
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--small")) shrink = 8;
        else {
            fprintf(stderr, "usage: gpu_bench [--json FILE] [--reps N] [--small]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    char why[LM_ERRLEN] = {0};
    lm_device *d = device_cuda_create(0, why, sizeof why);
    if (!d) {
        fprintf(stderr, "gpu_bench: no usable GPU: %s\n", why);
        if (json) {
            FILE *f = fopen(json, "w");
            if (f) {
                fprintf(f, "{\"error\": \"no usable GPU\"}\n");
                fclose(f);
            }
        }
        return 1;
    }
    char gpu[1024] = "unknown GPU";
#ifdef LAMINA_CUDA
    {
        char desc[4096] = {0}, w2[256] = {0};
        if (lm_cuda_devices(desc, sizeof desc, w2, sizeof w2) > 0) {
            char *nl = strchr(desc, '\n');
            if (nl) *nl = 0;
            snprintf(gpu, sizeof gpu, "%s", desc);
        }
    }
#endif
    /* JSON-safe device string */
    for (char *c = gpu; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = ' ';
    printf("gpu_bench: device %s (%s compute), median of %d after %d warm-ups\n", gpu, lm_dtype_name(d->dtype), reps,
           WARMUP);

    /* ---------------------------------------------------------- GEMMs */
    gemm_row G[] = {{"square 8192^3", 8192, 8192, 8192, {0}, {0}, 0},
                    {"q/k/v/o_proj", 8192, 2048, 2048, {0}, {0}, 0},
                    {"gate/up_proj", 8192, 5504, 2048, {0}, {0}, 0},
                    {"down_proj", 8192, 2048, 5504, {0}, {0}, 0},
                    {"lm_head", 8192, 32000, 2048, {0}, {0}, 0}};
    enum { NG = sizeof G / sizeof *G };
    for (int i = 0; i < NG; i++) {
        G[i].M /= shrink;
        G[i].N /= shrink;
        G[i].K /= shrink;
    }
    size_t max_mk = 0, max_nk = 0, max_mn = 0, max_out = 0;
    for (int i = 0; i < NG; i++) {
        size_t M = (size_t)G[i].M, N = (size_t)G[i].N, K = (size_t)G[i].K;
        if (M * K > max_mk) max_mk = M * K;
        if (N * K > max_nk) max_nk = N * K;
        if (M * N > max_mn) max_mn = M * N;
    }
    max_out = max_mn > max_mk ? max_mn : max_mk;
    if (max_nk > max_out) max_out = max_nk;
    size_t es = lm_dtype_size(d->dtype);
    void *X = d->alloc(d, max_mk * es), *W = d->alloc(d, max_nk * es), *DY = d->alloc(d, max_mn * es),
         *O = d->alloc(d, max_out * es);
    fill_random(d, X, max_mk, 1);
    fill_random(d, W, max_nk, 2);
    fill_random(d, DY, max_mn, 3);
    printf("\n%-16s %6s %6s %6s | %9s %9s %9s | %8s %8s %8s | %s\n", "GEMM (bf16)", "M", "N", "K", "nt TF/s",
           "nn TF/s", "tn TF/s", "nt ms", "nn ms", "tn ms", "check");
    double best_gemm = 0, model_gemm_sum_flops = 0, model_gemm_sum_t = 0;
    for (int i = 0; i < NG; i++) {
        gemm_row *r = &G[i];
        double fl = 2.0 * r->M * (double)r->N * r->K;
        for (int o = 0; o < 3; o++) {
            /* nt: y=O[M,N] from X[M,K], W[N,K]; nn: dx=O[M,K] from DY[M,N], W;
             * tn: dw=O[N,K] from DY[M,N], X[M,K] */
            job j = {.d = d, .op = (op_kind)o, .M = r->M, .N = r->N, .K = r->K, .y = O};
            j.a = o == OP_NT ? X : DY;
            j.b = o == OP_TN ? X : W;
            double t = time_job(&j);
            r->ms[o] = t * 1e3;
            r->tflops[o] = fl / t / 1e12;
            if (r->tflops[o] > best_gemm) best_gemm = r->tflops[o];
            if (i > 0) {
                model_gemm_sum_flops += fl;
                model_gemm_sum_t += t;
            }
            if (o == OP_NT) r->check = check_nt(d, O, X, W, r->M, r->N, r->K);
        }
        printf("%-16s %6d %6d %6d | %9.1f %9.1f %9.1f | %8.3f %8.3f %8.3f | %s (%.1e)\n", r->name, r->M, r->N, r->K,
               r->tflops[0], r->tflops[1], r->tflops[2], r->ms[0], r->ms[1], r->ms[2],
               r->check < 2e-2 ? "ok" : "WRONG", r->check);
    }
    double model_gemm = model_gemm_sum_t > 0 ? model_gemm_sum_flops / model_gemm_sum_t / 1e12 : 0;
    printf("model-shape GEMMs, all three kinds together: %.1f TFLOP/s (time-weighted)\n", model_gemm);
    d->free(d, X);
    d->free(d, W);
    d->free(d, DY);
    d->free(d, O);

    /* ------------------------------------------------------ attention */
    att_row A[] = {{4, 2048, 16, 16, 128, 0, 0, 0, 0}, {4, 2048, 32, 32, 64, 0, 0, 0, 0}};
    enum { NA = sizeof A / sizeof *A };
    for (int i = 0; i < NA; i++) A[i].T /= shrink;
    printf("\n%-22s %3s %5s %3s %3s %4s | %8s %9s | %8s %9s\n", "attention (causal)", "B", "T", "H", "KV", "hd",
           "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s");
    for (int i = 0; i < NA; i++) {
        att_row *r = &A[i];
        size_t R = (size_t)r->B * r->T, nq = R * r->H * r->hd, nk = R * r->KV * r->hd;
        job j = {.d = d, .B = r->B, .T = r->T, .H = r->H, .KV = r->KV, .hd = r->hd};
        j.q = d->alloc(d, nq * es);
        j.k = d->alloc(d, nk * es);
        j.v = d->alloc(d, nk * es);
        j.o = d->alloc(d, nq * es);
        j.dout = d->alloc(d, nq * es);
        j.dq = d->alloc(d, nq * es);
        j.dk = d->alloc(d, nk * es);
        j.dv = d->alloc(d, nk * es);
        j.lse = d->alloc(d, sizeof(float) * (size_t)r->B * r->H * r->T);
        fill_random(d, j.q, nq, 11);
        fill_random(d, j.k, nk, 12);
        fill_random(d, j.v, nk, 13);
        fill_random(d, j.dout, nq, 14);
        double fwd_flops = 2.0 * 2.0 * r->B * (double)r->H * r->T * (double)r->T * r->hd / 2.0;
        j.op = OP_ATT_FWD;
        double t = time_job(&j);
        r->fwd_ms = t * 1e3;
        r->fwd_tflops = fwd_flops / t / 1e12;
        j.op = OP_ATT_BWD;
        t = time_job(&j);
        r->bwd_ms = t * 1e3;
        r->bwd_tflops = 2.5 * fwd_flops / t / 1e12;
        /* the outputs must be finite */
        float probe[4];
        d->download_f32(d, probe, j.dq, 4);
        int finite = isfinite(probe[0]) && isfinite(probe[3]);
        printf("%-22s %3d %5d %3d %3d %4d | %8.3f %9.1f | %8.3f %9.1f%s\n", "flash attention", r->B, r->T, r->H,
               r->KV, r->hd, r->fwd_ms, r->fwd_tflops, r->bwd_ms, r->bwd_tflops, finite ? "" : "  (NaN output!)");
        void *bufs[] = {j.q, j.k, j.v, j.o, j.dout, j.dq, j.dk, j.dv, j.lse};
        for (size_t b = 0; b < sizeof bufs / sizeof *bufs; b++) d->free(d, bufs[b]);
    }
    printf("\nattention fwd %.1f / bwd %.1f TFLOP/s vs cuBLAS GEMM %.1f TFLOP/s (8192^3): %.0f%% / %.0f%%\n",
           A[0].fwd_tflops, A[0].bwd_tflops, G[0].tflops[0], 100 * A[0].fwd_tflops / G[0].tflops[0],
           100 * A[0].bwd_tflops / G[0].tflops[0]);

    int wrong = 0;
    for (int i = 0; i < NG; i++) wrong |= !(G[i].check < 2e-2);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "gpu_bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\n  \"device\": \"%s\",\n  \"reps\": %d,\n  \"warmup\": %d,\n  \"gemm\": [\n", gpu, reps, WARMUP);
        for (int i = 0; i < NG; i++)
            fprintf(f,
                    "    {\"name\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"nt_tflops\": %.2f, \"nn_tflops\": %.2f, "
                    "\"tn_tflops\": %.2f, \"nt_ms\": %.4f, \"nn_ms\": %.4f, \"tn_ms\": %.4f, \"check\": %.3e}%s\n",
                    G[i].name, G[i].M, G[i].N, G[i].K, G[i].tflops[0], G[i].tflops[1], G[i].tflops[2], G[i].ms[0],
                    G[i].ms[1], G[i].ms[2], G[i].check, i + 1 < NG ? "," : "");
        fprintf(f, "  ],\n  \"attention\": [\n");
        for (int i = 0; i < NA; i++)
            fprintf(f,
                    "    {\"B\": %d, \"T\": %d, \"H\": %d, \"KV\": %d, \"hd\": %d, \"fwd_ms\": %.4f, \"fwd_tflops\": %.2f, "
                    "\"bwd_ms\": %.4f, \"bwd_tflops\": %.2f}%s\n",
                    A[i].B, A[i].T, A[i].H, A[i].KV, A[i].hd, A[i].fwd_ms, A[i].fwd_tflops, A[i].bwd_ms,
                    A[i].bwd_tflops, i + 1 < NA ? "," : "");
        fprintf(f,
                "  ],\n  \"gemm_square_tflops\": %.2f,\n  \"gemm_best_tflops\": %.2f,\n  \"gemm_model_shapes_tflops\": "
                "%.2f,\n  \"attn_fwd_tflops\": %.2f,\n  \"attn_bwd_tflops\": %.2f,\n  \"checks_ok\": %s\n}\n",
                G[0].tflops[0], best_gemm, model_gemm, A[0].fwd_tflops, A[0].bwd_tflops, wrong ? "false" : "true");
        fclose(f);
        printf("gpu_bench: wrote %s\n", json);
    }
    device_destroy(d);
    if (wrong) fprintf(stderr, "gpu_bench: a sampled GEMM check FAILED\n");
    return wrong ? 1 : 0;
}
