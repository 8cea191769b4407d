/* host_adamw_bench.c — how close the fused host AdamW (src/optim/host_adamw.h)
 * comes to the machine's memory bandwidth.
 *
 *   host_adamw_bench [N]     (N parameters, default 64M = 67108864)
 *
 * First the bandwidth: a STREAM triad a[i] = b[i] + s c[i] over three arrays
 * of 32M doubles (768 MB, far beyond any cache), best of 5, counted as
 * STREAM counts it (24 bytes per element), on 1 thread and on all OpenMP
 * threads. Then host_adamw on N
 * parameters with bf16 g and w (28 bytes per parameter: p, m, v read and
 * written, g read, w written) and with fp32 g and a separate fp32 w (32
 * bytes), on each path the CPU has (LAMINA_HOST_ADAMW_ISA) and on 1 and all
 * threads: best of 5 calls after one warm-up, as parameters/s, GB/s moved
 * and that as a fraction of the triad on the same number of threads and of
 * the all-thread triad. Like STREAM, neither count includes the extra read
 * of a write-allocate (the stores to w; the triad's stores to a). Every
 * array comes from lm_alloc, whose zeroing touches its pages from one
 * thread: on a multi-socket machine run it under numactl on one node, so
 * that the triad and host_adamw see the same memory. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bf16.h"
#include "common.h"
#include "device.h"
#include "host_adamw.h"

#define REPS 5
#define TRIAD_N (32u << 20)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best triad bandwidth (bytes/s) on nt threads. */
static double triad(int nt) {
    const size_t n = TRIAD_N;
    double *a = lm_alloc(n * 8), *b = lm_alloc(n * 8), *c = lm_alloc(n * 8);
    const double s = 3.0;
    omp_set_num_threads(nt);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    double best = 1e30;
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        double t = now() - t0;
        if (t < best) best = t;
    }
    if (a[n / 2] != 7.0) lm_abort(LM_ERR_RUNTIME, "triad: a = %g, not 7", a[n / 2]);
    lm_free(a);
    lm_free(b);
    lm_free(c);
    return 24.0 * (double)n / best;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)64 << 20;
    if (n == 0) lm_fail(LM_ERR_INPUT, "host_adamw_bench: N must be a positive count");
    const int all = omp_get_max_threads();
    const int nts[2] = {1, all};
    const int nnt = all > 1 ? 2 : 1;

    double bw[2];
    for (int k = 0; k < nnt; k++) {
        bw[k] = triad(nts[k]);
        printf("triad %d thread%s: %.2f GB/s (best of %d, 3 x %u MB)\n", nts[k], nts[k] > 1 ? "s" : "", bw[k] / 1e9,
               REPS, (unsigned)(TRIAD_N * 8u >> 20));
    }

    unsetenv("LAMINA_HOST_ADAMW_ISA");
    const char *best = host_adamw_isa();
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    int n_isa = 1;
    while (strcmp(isas[n_isa - 1], best)) n_isa++;

    omp_set_num_threads(all);
    float *p = lm_alloc(n * 4), *m = lm_alloc(n * 4), *v = lm_alloc(n * 4);
    void *g = lm_alloc(n * 4), *w = lm_alloc(n * 4);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = (float)((i * 2654435761u) % 1000003u) * 1e-6f - 0.5f;
        p[i] = x;
        m[i] = x * 1e-3f;
        v[i] = x * x * 1e-5f;
        ((float *)g)[i] = x * 1e-2f;
        ((float *)w)[i] = 0.0f;
    }
    printf("host_adamw, n = %zu (%.0f MB of state), paths: %d (best %s)\n", n, (double)n * 20 / 1e6, n_isa, best);
    printf("%-6s %-6s %7s %14s %9s %9s %9s %9s\n", "path", "grad", "threads", "params/s", "ms/call", "GB/s",
           "of triad", "of all");
    long step = 0;
    for (int dt = 0; dt < 2; dt++) {
        lm_dtype t = dt == 0 ? LM_BF16 : LM_F32;
        double bytes = t == LM_BF16 ? 28.0 : 32.0;
        if (t == LM_BF16) /* the gradient in bf16 (first half of g) */
            for (size_t i = 0; i < n; i++) ((uint16_t *)g)[i] = lm_f32_to_bf16(p[i] * 1e-2f);
        for (int k = 0; k < n_isa; k++) {
            setenv("LAMINA_HOST_ADAMW_ISA", isas[k], 1);
            for (int q = 0; q < nnt; q++) {
                omp_set_num_threads(nts[q]);
                double tbest = 1e30;
                for (int r = 0; r <= REPS; r++) {
                    double t0 = now();
                    host_adamw(p, m, v, g, w, t, n, 0.9f, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step);
                    double el = now() - t0;
                    if (r > 0 && el < tbest) tbest = el; /* r = 0 is the warm-up */
                }
                double gbs = bytes * (double)n / tbest;
                printf("%-6s %-6s %7d %14.4g %9.2f %9.2f %8.1f%% %8.1f%%\n", isas[k], lm_dtype_name(t), nts[q],
                       (double)n / tbest, tbest * 1e3, gbs / 1e9, 100.0 * gbs / bw[q], 100.0 * gbs / bw[nnt - 1]);
            }
        }
    }
    for (size_t i = 0; i < n; i += n / 97 + 1)
        if (!isfinite(p[i])) lm_abort(LM_ERR_RUNTIME, "host_adamw_bench: p[%zu] = %g", i, p[i]);
    lm_free(p);
    lm_free(m);
    lm_free(v);
    lm_free(g);
    lm_free(w);
    /* the triad again: on a shared machine a change between the two says
     * how far the fractions above (against the first) can be trusted */
    for (int k = 0; k < nnt; k++)
        printf("triad %d thread%s again: %.2f GB/s\n", nts[k], nts[k] > 1 ? "s" : "", triad(nts[k]) / 1e9);
    return 0;
}
