/* test_gpu_model.c — the whole model on the CUDA backend against the CPU
 * float32 reference: one forward and backward pass of the same micro-batch.
 *
 * Per shape (GQA, head_dim 64 and 128, tied embeddings, odd vocabulary,
 * recomputation on and off, padding targets): build the model on both
 * devices and initialise both with model_init_random and the same seed. The
 * CUDA weights must then be the bf16 rounding of the CPU ones; they are
 * copied into the CPU model, so both compute the same function and what
 * differs is bf16 rounding inside the CUDA pass. Compared:
 *   - the loss (summed cross-entropy; relative 2e-2),
 *   - every parameter's gradient, ||cuda - cpu|| / ||cpu|| per tensor
 *     (5e-2: bf16 activations and gradients through every layer),
 *   - the gradients after a second identical pass (they must accumulate:
 *     twice the first, same tolerance),
 *   - logits of a few rows from model_forward + model_logits_row (2e-2).
 * Any NaN fails. Gradients go straight into p->g (no hooks): this test
 * allocates a zeroed compute-dtype gradient arena per device itself.
 *
 * Output: TAP, the plan last; exit 1 on any failure. Each case runs in a
 * child process (gpu_harness.h): a crash fails that case only;
 * `test_gpu_model --case I` runs one. LAMINA_GPU_TEST_EMULATE=1 puts the CPU
 * bf16 emulation in the GPU's place (a check of this program without a
 * GPU). Without a usable GPU: exit 1, unless LAMINA_GPU_OPTIONAL=1
 * ("1..0 # SKIP"). */
#include "bf16.h"
#include "common.h"
#include "device.h"
#include "gpu_harness.h"
#include "model.h"
#include "rng.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL_LOSS 2e-2
#define TOL_GRAD 5e-2
#define TOL_LOGITS 2e-2

static lm_device *G; /* CUDA */
static lm_device *C; /* CPU float32 */

typedef struct {
    const char *name;
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab;
    int tied, B, T, recompute, pad;
} mcase;

/* Every shape keeps head_dim at 64 or 128 (what the flash kernels take). */
static const mcase CASES[] = {
    {"base", 256, 4, 4, 4, 688, 1000, 0, 2, 128, 0, 0},
    {"base+recompute+padding", 256, 4, 4, 4, 688, 1000, 0, 2, 128, 1, 1},
    {"gqa-8/2-hd64-oddV-T77", 512, 2, 8, 2, 1376, 1001, 0, 3, 77, 0, 1},
    {"hd128-tied-recompute", 512, 2, 4, 4, 1376, 2048, 1, 1, 256, 1, 0},
    {"mqa-2/1-hd128-tied-oddV", 256, 2, 2, 1, 688, 1001, 1, 2, 64, 0, 1},
    {"V32000-T1024", 512, 2, 8, 8, 1376, 32000, 0, 1, 1024, 0, 0},
};
enum { NCASES = sizeof CASES / sizeof *CASES };

/* ||a - b|| / ||b|| (absolute when b == 0); *bad = non-finite count of a and b */
static double relerr(const float *a, const float *b, size_t n, size_t *bad) {
    double num = 0, den = 0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            (*bad)++;
            continue;
        }
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float *download(lm_device *d, const void *p, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    d->sync(d);
    d->download_f32(d, h, p, n);
    return h;
}

/* A zeroed gradient arena in the device's compute dtype, viewed by every p->g. */
static void *grads_alloc(lm_model *m) {
    lm_device *d = m->dev;
    lm_params *ps = &m->params;
    void *g = d->alloc(d, ps->arena * lm_dtype_size(d->dtype));
    for (int i = 0; i < ps->n; i++) ps->p[i].g = lm_at(d, g, ps->p[i].offset);
    return g;
}
static void grads_free(lm_model *m, void *g) {
    for (int i = 0; i < m->params.n; i++) m->params.p[i].g = NULL;
    m->dev->free(m->dev, g);
}

/* Compare every parameter's gradient; one TAP line for the whole set, one
 * comment line per tensor. */
static void compare_grads(lm_model *mg, lm_model *mc, const char *cname, const char *what) {
    double worst = 0;
    const char *worst_name = "-";
    int nfail = 0;
    size_t nbad = 0;
    char failed[512] = "";
    for (int i = 0; i < mg->params.n; i++) {
        lm_param *pg = &mg->params.p[i], *pc = &mc->params.p[i];
        float *a = download(G, pg->g, pg->numel), *b = download(C, pc->g, pc->numel);
        size_t bad;
        double e = relerr(a, b, pg->numel, &bad);
        double nb = 0;
        for (size_t j = 0; j < pc->numel; j++) nb += (double)b[j] * b[j];
        printf("#   %-48s relerr %.3e  |cpu grad| %.3e%s\n", pg->name, e, sqrt(nb), bad ? "  NaN/inf!" : "");
        nbad += bad;
        if (bad || !(e <= TOL_GRAD)) {
            nfail++;
            size_t l = strlen(failed);
            if (l < sizeof failed - 64) snprintf(failed + l, sizeof failed - l, " %s", pg->name);
        }
        if (e > worst || bad) {
            worst = bad ? INFINITY : e;
            worst_name = pg->name;
        }
        free(a);
        free(b);
    }
    char det[800];
    snprintf(det, sizeof det, "worst relerr=%.3e (%s) tol=%.0e%s%s%s", worst, worst_name, TOL_GRAD,
             nbad ? " NaN/inf present" : "", nfail ? "; failing:" : "", failed);
    tap(nfail == 0, det, "%s: %s of all %d tensors", cname, what, mg->params.n);
}

static void run_case(const mcase *k, int idx) {
    lm_shape s = {0};
    s.dim = k->dim;
    s.n_layers = k->n_layers;
    s.n_heads = k->n_heads;
    s.n_kv_heads = k->n_kv_heads;
    s.head_dim = k->dim / k->n_heads;
    s.ffn_dim = k->ffn_dim;
    s.vocab_size = k->vocab;
    s.norm_eps = 1e-5f;
    s.rope_theta = 10000.0;
    s.tied = k->tied;
    int B = k->B, T = k->T, R = B * T, V = k->vocab;
    printf("# case %s: dim %d, %d layers, %d heads / %d kv (hd %d), ffn %d, vocab %d%s, B %d x T %d, "
           "recompute %s, padding %s\n",
           k->name, s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, s.ffn_dim, V, k->tied ? " tied" : "", B,
           T, k->recompute ? "on" : "off", k->pad ? "yes" : "no");
    double t0 = lm_now();
    lm_model *mg = model_create(G, &s, B, T, k->recompute, 16);
    lm_model *mc = model_create(C, &s, B, T, k->recompute, 16);
    uint64_t seed = 1000 + (uint64_t)idx;
    model_init_random(mg, seed, 0.02);
    model_init_random(mc, seed, 0.02);

    /* CUDA weights are the bf16 rounding of the CPU init; then the CPU model
     * takes the rounded values */
    size_t mism = 0, total = 0, bad = 0;
    double werr = 0;
    for (int i = 0; i < mg->params.n; i++) {
        lm_param *pg = &mg->params.p[i], *pc = &mc->params.p[i];
        float *a = download(G, pg->w, pg->numel), *b = download(C, pc->w, pc->numel);
        size_t nb;
        double e = relerr(a, b, pg->numel, &nb);
        if (e > werr) werr = e;
        bad += nb;
        for (size_t j = 0; j < pg->numel; j++) {
            float want = lm_bf16_to_f32(lm_f32_to_bf16(b[j]));
            mism += memcmp(&want, &a[j], 4) != 0;
        }
        total += pg->numel;
        C->upload_f32(C, pc->w, a, pc->numel);
        free(a);
        free(b);
    }
    char det[256];
    snprintf(det, sizeof det, "elements != bf16(cpu init): %zu of %zu; worst tensor relerr %.2e", mism, total, werr);
    tap(bad == 0 && werr <= 4e-3, det, "%s: model_init_random on CUDA = bf16 of the CPU init", k->name);

    /* a batch: random ids and targets, padding in some rows */
    uint64_t key = rng_stream(seed, "batch");
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)R), *tg = malloc(sizeof(int32_t) * (size_t)R);
    int valid = 0;
    for (int r = 0; r < R; r++) {
        ids[r] = (int32_t)rng_below(key, 2 * (uint64_t)r, (uint64_t)V);
        tg[r] = (int32_t)rng_below(key, 2 * (uint64_t)r + 1, (uint64_t)V);
        int t = r % T, b = r / T;
        if (k->pad && (t >= T - T / 5 - 1 || (b == B - 1 && t >= T / 2))) tg[r] = -1;
        valid += tg[r] >= 0;
    }
    float scale = 1.0f / (float)valid;

    void *gg = grads_alloc(mg), *gc = grads_alloc(mc);
    double lg = model_forward_backward(mg, ids, tg, scale);
    double lc = model_forward_backward(mc, ids, tg, scale);
    G->sync(G);
    double e = fabs(lg - lc) / fabs(lc);
    snprintf(det, sizeof det, "relerr=%.3e tol=%.0e (cuda %.6f cpu %.6f per token; %d target tokens)", e, TOL_LOSS,
             lg / valid, lc / valid, valid);
    tap(isfinite(lg) && e <= TOL_LOSS, det, "%s: loss", k->name);
    compare_grads(mg, mc, k->name, "gradients");

    /* a second pass accumulates */
    model_forward_backward(mg, ids, tg, scale);
    model_forward_backward(mc, ids, tg, scale);
    compare_grads(mg, mc, k->name, "gradients after a second pass (accumulated)");

    /* forward only, logits of three rows */
    model_forward(mg, ids);
    model_forward(mc, ids);
    int rows[3] = {0, R / 2, R - 1};
    float *a = malloc(sizeof(float) * (size_t)V * 3), *b = malloc(sizeof(float) * (size_t)V * 3);
    for (int i = 0; i < 3; i++) {
        model_logits_row(mg, rows[i], a + (size_t)i * V);
        model_logits_row(mc, rows[i], b + (size_t)i * V);
    }
    size_t nb;
    e = relerr(a, b, (size_t)V * 3, &nb);
    snprintf(det, sizeof det, "relerr=%.3e tol=%.0e%s", e, TOL_LOGITS, nb ? " NaN/inf present" : "");
    tap(nb == 0 && e <= TOL_LOGITS, det, "%s: model_forward logits of rows 0, %d, %d", k->name, R / 2, R - 1);
    free(a);
    free(b);

    grads_free(mg, gg);
    grads_free(mc, gc);
    model_destroy(mg);
    model_destroy(mc);
    free(ids);
    free(tg);
    printf("# case %s: %.1f s\n", k->name, lm_now() - t0);
}

/* Each case runs in its own process (this program re-executed with --case
 * I, its own CUDA context): a case that crashes or aborts fails alone and
 * the others still run. The parent numbers the children's lines. */
static int run_one(int idx) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (idx < 0 || idx >= NCASES) {
        fprintf(stderr, "test_gpu_model: no case %d (0..%d)\n", idx, NCASES - 1);
        return 2;
    }
    char why[LM_ERRLEN] = {0};
    G = open_gpu(why, sizeof why);
    if (!G) {
        printf("not ok - CUDA device: %s\n", why);
        return 1;
    }
    C = device_cpu_create(0);
    run_case(&CASES[idx], idx);
    printf("# case %d done: %d checks, %d failed\n", idx, n_checks, n_failed);
    device_destroy(C);
    device_destroy(G);
    return n_failed ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--case")) return run_one(atoi(argv[2]));
    if (argc != 1) {
        fprintf(stderr, "usage: test_gpu_model [--case I]  (cases 0..%d)\n", NCASES - 1);
        return 2;
    }
    int rc = probe_gpu("model");
    if (rc >= 0) return rc;
    double t0 = lm_now();
    for (int i = 0; i < NCASES; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", i);
        spawn_child("test_gpu_model", "--case", arg, "case", CASES[i].name);
    }
    printf("1..%d\n", n_checks);
    printf("# %d passed, %d failed (%.1f s)\n", n_checks - n_failed, n_failed, lm_now() - t0);
    return n_failed ? 1 : 0;
}
