/* test_gpu_copy.c — the CUDA backend's memory accounting and its
 * asynchronous copies (device.h: mem_info, host_alloc, copy_async,
 * copy_done, copy_wait, compute_wait).
 *
 * Groups (each in its own process, gpu_harness.h):
 *   memory   mem_info's use and peak follow alloc/free and reset; host_alloc
 *            is zeroed and writable.
 *   upload   host -> device copies of varied sizes issued while GEMMs run on
 *            the compute stream; compute_wait(last ticket) then compute-
 *            stream reads of the uploaded buffers (copy, to_host) see every
 *            byte; an upload right after alloc is not undone by alloc's
 *            zeroing (queued on the compute stream behind GEMMs).
 *   download a buffer is rewritten by compute (scale by 2, exact in bf16)
 *            behind a queue of GEMMs, and downloaded at once with no host
 *            sync: the download must see the scaled values (it waits for the
 *            compute issued before it).
 *   tickets  3000 copies (more than the backend's ring of ticket events):
 *            tickets increase by one, waiting on an old and on the last
 *            ticket, copy_done after a wait and its monotonicity, data.
 *   overlap  a large upload and a GEMM chain alone and together (timings
 *            printed as TAP comments, not checked: the machine decides), and
 *            the data of the overlapped run.
 * LAMINA_GPU_TEST_EMULATE=1 runs it on the CPU bf16 backend (smaller GEMMs). */
#include "bf16.h"
#include "common.h"
#include "device.h"
#include "gpu_harness.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_device *G;
static int emulated; /* the CPU bf16 backend stands in for the GPU */

/* n bytes of a pattern that depends on key (never all zeros) */
static void fill(unsigned char *h, size_t n, uint64_t key) {
    for (size_t i = 0; i < n; i++) h[i] = (unsigned char)(1 + rng_below(key, i, 255));
}

/* A queue of square GEMMs on the compute stream (bf16 operands from alloc:
 * zeros; the time is what matters here). */
typedef struct {
    void *a, *b, *c;
    int n;
} gemm_load;

static gemm_load load_new(void) {
    gemm_load g = {.n = emulated ? 192 : 4096};
    size_t nb = (size_t)g.n * (size_t)g.n * lm_dtype_size(G->dtype);
    g.a = G->alloc(G, nb);
    g.b = G->alloc(G, nb);
    g.c = G->alloc(G, nb);
    return g;
}
static void load_run(gemm_load *g, int k) {
    for (int i = 0; i < k; i++) G->gemm_nt(G, g->c, g->a, g->b, g->n, g->n, g->n, 0.0f);
}
static void load_free(gemm_load *g) {
    G->free(G, g->a);
    G->free(G, g->b);
    G->free(G, g->c);
}

static void t_memory(void) {
    char det[256];
    size_t pk0 = 0, u0 = G->mem_info(G, &pk0, 1);
    size_t a = 5 << 20, b = 3 << 20;
    void *pa = G->alloc(G, a);
    size_t pk = 0, u = G->mem_info(G, &pk, 0);
    snprintf(det, sizeof det, "used %zu -> %zu, peak %zu", u0, u, pk);
    tap(u == u0 + a && pk == u0 + a, det, "mem_info: alloc of %zu bytes counted in use and peak", a);
    void *pb = G->alloc(G, b);
    G->free(G, pa);
    u = G->mem_info(G, &pk, 0);
    snprintf(det, sizeof det, "used %zu, peak %zu (want %zu, %zu)", u, pk, u0 + b, u0 + a + b);
    tap(u == u0 + b && pk == u0 + a + b, det, "mem_info: free lowers use, not the peak");
    u = G->mem_info(G, &pk, 1);
    size_t pk2 = 0;
    G->mem_info(G, &pk2, 0);
    snprintf(det, sizeof det, "peak read %zu, after reset %zu, used %zu", pk, pk2, u);
    tap(pk == u0 + a + b && pk2 == u, det, "mem_info: reset starts a new peak window at the current use");
    G->free(G, pb);
    u = G->mem_info(G, &pk, 0);
    snprintf(det, sizeof det, "used %zu, peak %zu", u, pk);
    tap(u == u0 && pk == u0 + b, det, "mem_info: back to the start, peak of the window kept");

    size_t nh = (64 << 20) + 13;
    unsigned char *h = G->host_alloc(G, nh);
    size_t nz = 0;
    for (size_t i = 0; i < nh; i++) nz += h[i] != 0;
    memset(h, 0xab, nh);
    snprintf(det, sizeof det, "nonzero bytes %zu of %zu", nz, nh);
    tap(nz == 0 && h[nh - 1] == 0xab, det, "host_alloc: zeroed, writable");
    G->host_free(G, h);
    G->host_free(G, NULL);
    tap(G->mem_info(G, NULL, 0) == u0, "", "host_alloc is not counted in mem_info");
}

static void t_upload(void) {
    char det[256];
    enum { NB = 24 };
    size_t sz[NB], tot = 0;
    for (int i = 0; i < NB; i++) tot += sz[i] = (size_t)(i % 4 == 3 ? 0 : 1 + rng_below(11, (uint64_t)i, 3u << 20));
    unsigned char *h = G->host_alloc(G, tot), *back = malloc(tot ? tot : 1);
    fill(h, tot, 0xC0FFEE);
    void *dv[NB], *dc[NB];
    for (int i = 0; i < NB; i++) dv[i] = G->alloc(G, sz[i]), dc[i] = G->alloc(G, sz[i]);
    gemm_load g = load_new();
    uint64_t t[NB], prev = 0;
    int incr = 1;
    size_t off = 0;
    for (int i = 0; i < NB; i++) {
        load_run(&g, 1); /* compute keeps the compute stream busy meanwhile */
        t[i] = G->copy_async(G, dv[i], h + off, sz[i], 0);
        incr &= t[i] == prev + 1 || (i == 0 && t[i] > 0);
        prev = t[i];
        off += sz[i];
    }
    tap(incr, "", "upload tickets: positive and increasing by one");
    G->compute_wait(G, t[NB - 1]);
    /* compute-stream reads of the uploads, ordered by compute_wait alone */
    for (int i = 0; i < NB; i++) G->copy(G, dc[i], dv[i], sz[i]);
    off = 0;
    size_t bad = 0;
    for (int i = 0; i < NB; i++) {
        G->to_host(G, back + off, dc[i], sz[i]);
        off += sz[i];
    }
    for (size_t i = 0; i < tot; i++) bad += back[i] != h[i];
    snprintf(det, sizeof det, "%zu of %zu bytes wrong", bad, tot);
    tap(bad == 0, det, "%d uploads (0 to 3 MiB) behind compute_wait: compute-stream copies read every byte", NB);
    G->copy_wait(G, t[NB - 1]);
    int done = 1;
    for (int i = 0; i < NB; i++) done &= G->copy_done(G, t[i]);
    tap(done, "", "copy_done of every upload after copy_wait of the last");

    /* alloc zeroes the block on the compute stream: an upload into it right
     * away (GEMMs still queued ahead of the zeroing) must land after it */
    load_run(&g, emulated ? 2 : 40);
    size_t nf = (size_t)16 << 20;
    unsigned char *hf = G->host_alloc(G, nf), *bf = malloc(nf);
    fill(hf, nf, 4242);
    void *fresh = G->alloc(G, nf);
    uint64_t tf = G->copy_async(G, fresh, hf, nf, 0);
    G->copy_wait(G, tf);
    G->compute_wait(G, tf);
    G->to_host(G, bf, fresh, nf);
    bad = 0;
    for (size_t i = 0; i < nf; i++) bad += bf[i] != hf[i];
    snprintf(det, sizeof det, "%zu of %zu bytes wrong", bad, nf);
    tap(bad == 0, det, "upload into a block just allocated (its zeroing queued behind GEMMs) keeps the data");
    G->free(G, fresh);
    G->host_free(G, hf);
    free(bf);
    load_free(&g);
    for (int i = 0; i < NB; i++) G->free(G, dv[i]), G->free(G, dc[i]);
    G->host_free(G, h);
    free(back);
}

static void t_download(void) {
    char det[256];
    size_t n = (size_t)8 << 20; /* bf16 elements: 16 MiB */
    size_t es = lm_dtype_size(G->dtype);
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)((int)(i % 199) - 99); /* exact in bf16, x2 too */
    void *x = G->alloc(G, n * es);
    G->upload_f32(G, x, f, n);
    unsigned char *h = G->host_alloc(G, n * es);
    gemm_load g = load_new();
    load_run(&g, emulated ? 2 : 40); /* a long queue before the rewrite */
    G->scale(G, x, n, 2.0f);
    uint64_t t = G->copy_async(G, h, x, n * es, 1);
    int early = G->copy_done(G, t); /* informative: the GEMMs are still running on a GPU */
    G->copy_wait(G, t);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = 2.0f * f[i];
        float got = es == 2 ? lm_bf16_to_f32(((uint16_t *)h)[i]) : ((float *)h)[i];
        bad += got != want;
    }
    snprintf(det, sizeof det, "%zu of %zu elements not yet scaled or wrong (copy_done right after issue: %d)", bad, n,
             early);
    tap(bad == 0, det, "download waits for the compute issued before it (scale behind a GEMM queue)");
    tap(G->copy_done(G, t), "", "copy_done after copy_wait");

    /* a compute_wait on a download: compute after it may overwrite the source */
    load_run(&g, emulated ? 1 : 10);
    uint64_t t2 = G->copy_async(G, h, x, n * es, 1);
    G->compute_wait(G, t2);
    G->scale(G, x, n, 0.5f); /* would corrupt the download if it ran first */
    G->copy_wait(G, t2);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        float got = es == 2 ? lm_bf16_to_f32(((uint16_t *)h)[i]) : ((float *)h)[i];
        bad += got != 2.0f * f[i];
    }
    snprintf(det, sizeof det, "%zu of %zu elements wrong", bad, n);
    tap(bad == 0, det, "compute after compute_wait(download) does not overtake it");
    G->sync(G);
    load_free(&g);
    G->free(G, x);
    G->host_free(G, h);
    free(f);
}

static void t_tickets(void) {
    char det[256];
    enum { N = 3000 };
    size_t tot = 0, off[N + 1];
    for (int i = 0; i < N; i++) {
        off[i] = tot;
        tot += (size_t)rng_below(5, (uint64_t)i, 4097); /* 0 to 4096 bytes */
    }
    off[N] = tot;
    unsigned char *up = G->host_alloc(G, tot), *down = G->host_alloc(G, tot);
    fill(up, tot, 77);
    unsigned char *dev = G->alloc(G, tot);
    uint64_t *t = malloc(sizeof(uint64_t) * N);
    int incr = 1;
    /* first half up, then the second half up and the first half back down,
     * interleaved; then the second half down */
    for (int i = 0; i < N / 2; i++) t[i] = G->copy_async(G, dev + off[i], up + off[i], off[i + 1] - off[i], 0);
    uint64_t *td = malloc(sizeof(uint64_t) * N);
    for (int i = N / 2; i < N; i++) {
        int j = i - N / 2;
        t[i] = G->copy_async(G, dev + off[i], up + off[i], off[i + 1] - off[i], 0);
        td[j] = G->copy_async(G, down + off[j], dev + off[j], off[j + 1] - off[j], 1);
        incr &= td[j] == t[i] + 1;
    }
    for (int i = N / 2; i < N; i++)
        td[i] = G->copy_async(G, down + off[i], dev + off[i], off[i + 1] - off[i], 1);
    for (int i = 1; i < N / 2; i++) incr &= t[i] == t[i - 1] + 1;
    for (int i = N / 2 + 1; i < N; i++) incr &= td[i] == td[i - 1] + 1;
    tap(incr && t[0] > 0, "", "%d tickets in both directions increase by one", 2 * N);
    /* monotone: a done ticket implies every earlier one is done */
    int mono = 1;
    for (int k = 0; k < 200; k++) {
        uint64_t hi = td[N - 1 - (k * 13) % N];
        if (G->copy_done(G, hi))
            for (uint64_t u = hi > 50 ? hi - 50 : 1; u <= hi; u++) mono &= G->copy_done(G, u);
    }
    tap(mono, "", "copy_done is monotone in the ticket");
    G->copy_wait(G, t[5]); /* far behind the newest ticket */
    tap(G->copy_done(G, t[5]) && G->copy_done(G, 0), "", "copy_wait on a ticket %llu behind the newest",
        (unsigned long long)(td[N - 1] - t[5]));
    G->copy_wait(G, td[N - 1]);
    int all = 1;
    for (int i = 0; i < N; i++) all &= G->copy_done(G, t[i]) && G->copy_done(G, td[i]);
    tap(all, "", "after copy_wait of the last ticket every ticket is done");
    size_t bad = 0;
    for (size_t i = 0; i < tot; i++) bad += down[i] != up[i];
    snprintf(det, sizeof det, "%zu of %zu bytes wrong", bad, tot);
    tap(bad == 0, det, "round trip through %d uploads and %d downloads of 0 to 4096 bytes", N, N);
    G->free(G, dev);
    G->host_free(G, up);
    G->host_free(G, down);
    free(t);
    free(td);
}

static void t_overlap(void) {
    char det[256];
    size_t nb = emulated ? (size_t)32 << 20 : (size_t)512 << 20;
    unsigned char *h = G->host_alloc(G, nb), *back = G->host_alloc(G, nb);
    fill(h, nb, 99);
    void *x = G->alloc(G, nb);
    gemm_load g = load_new();
    int k = emulated ? 4 : 200;
    load_run(&g, 2); /* warm-up: cuBLASLt plan */
    G->sync(G);
    double t0 = lm_now();
    G->copy_wait(G, G->copy_async(G, x, h, nb, 0));
    double t_copy = lm_now() - t0;
    t0 = lm_now();
    load_run(&g, k);
    G->sync(G);
    double t_gemm = lm_now() - t0;
    memset(back, 0, nb);
    t0 = lm_now();
    load_run(&g, k);
    uint64_t t = G->copy_async(G, x, h, nb, 0);
    G->sync(G);
    G->copy_wait(G, t);
    double t_both = lm_now() - t0;
    printf("# overlap: upload of %zu MiB %.2f ms, %d GEMMs %d^3 %.2f ms, both at once %.2f ms (serial sum %.2f)\n",
           nb >> 20, t_copy * 1e3, k, g.n, t_gemm * 1e3, t_both * 1e3, (t_copy + t_gemm) * 1e3);
    uint64_t td = G->copy_async(G, back, x, nb, 1);
    G->copy_wait(G, td);
    size_t bad = 0;
    for (size_t i = 0; i < nb; i++) bad += back[i] != h[i];
    snprintf(det, sizeof det, "%zu of %zu bytes wrong", bad, nb);
    tap(bad == 0, det, "upload overlapped with a GEMM chain: data intact");
    load_free(&g);
    G->free(G, x);
    G->host_free(G, h);
    G->host_free(G, back);
}

static const struct {
    const char *name;
    void (*fn)(void);
} GROUPS[] = {{"memory", t_memory}, {"upload", t_upload}, {"download", t_download}, {"tickets", t_tickets},
              {"overlap", t_overlap}};
enum { NGROUPS = sizeof GROUPS / sizeof *GROUPS };

static int run_group(const char *name) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *e = getenv("LAMINA_GPU_TEST_EMULATE");
    emulated = e && !strcmp(e, "1");
    for (int i = 0; i < NGROUPS; i++) {
        if (strcmp(GROUPS[i].name, name)) continue;
        char why[LM_ERRLEN] = {0};
        G = open_gpu(why, sizeof why);
        if (!G) {
            printf("not ok - CUDA device: %s\n", why);
            return 1;
        }
        double t = lm_now();
        GROUPS[i].fn();
        printf("# group %s done: %d checks, %d failed, %.1f s\n", name, n_checks, n_failed, lm_now() - t);
        device_destroy(G);
        return n_failed ? 1 : 0;
    }
    fprintf(stderr, "test_gpu_copy: no group '%s'\n", name);
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--group")) return run_group(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_gpu_copy [--group NAME]  (groups:");
        for (int i = 0; i < NGROUPS; i++) fprintf(stderr, " %s", GROUPS[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    int rc = probe_gpu("asynchronous copies and memory accounting");
    if (rc >= 0) return rc;
    double t0 = lm_now();
    for (int i = 0; i < NGROUPS; i++)
        spawn_child("test_gpu_copy", "--group", GROUPS[i].name, "group", GROUPS[i].name);
    printf("1..%d\n", n_checks);
    printf("# %d passed, %d failed (%.1f s)\n", n_checks - n_failed, n_failed, lm_now() - t0);
    return n_failed ? 1 : 0;
}
