/* test_device_copy.c — the device's memory accounting and asynchronous
 * copies (device.h: mem_info, host_alloc/host_free, copy_async, copy_done,
 * copy_wait, compute_wait) on the CPU backends, float32 ("cpu", whose copy
 * engine runs them on a background thread, copy_engine.c) and bf16
 * ("cpu-bf16", which forwards them to its inner float32 device); and the
 * timing wrapper's byte counts for them (device_prof.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "device.h"
#include "prof.h"
#include "rng.h"
#include "sde.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef lm_device *(*ctor)(size_t);
static const ctor CTORS[] = {device_cpu_create, device_cpu_bf16_create};
enum { NCTOR = 2 };

static void fill(unsigned char *p, size_t n, uint64_t key) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(1 + rng_below(key, i, 255));
}

/* use and peak through alloc/free, and reset's new window */
static void test_mem_info(void **state) {
    (void)state;
    for (int c = 0; c < NCTOR; c++) {
        lm_device *d = CTORS[c](0);
        size_t pk = 1;
        assert_int_equal(d->mem_info(d, &pk, 0), 0);
        assert_int_equal(pk, 0);
        void *a = d->alloc(d, 1000), *b = d->alloc(d, 3000);
        assert_int_equal(d->mem_info(d, &pk, 0), 4000);
        assert_int_equal(pk, 4000);
        d->free(d, a);
        assert_int_equal(d->mem_info(d, NULL, 0), 3000);
        assert_int_equal(d->mem_info(d, &pk, 1), 3000); /* read, then reset */
        assert_int_equal(pk, 4000);
        d->mem_info(d, &pk, 0);
        assert_int_equal(pk, 3000); /* the new window starts at the current use */
        void *e = d->alloc(d, 500);
        d->free(d, e);
        d->free(d, b);
        assert_int_equal(d->mem_info(d, &pk, 0), 0);
        assert_int_equal(pk, 3500);
        void *z = d->alloc(d, 0); /* zero bytes: counted as nothing */
        assert_int_equal(d->mem_info(d, NULL, 0), 0);
        d->free(d, z);
        d->free(d, NULL);
        /* host memory for transfers is not device memory */
        unsigned char *h = d->host_alloc(d, 1 << 20);
        assert_int_equal(d->mem_info(d, NULL, 0), 0);
        d->host_free(d, h);
        device_destroy(d);
    }
}

static void test_host_alloc(void **state) {
    (void)state;
    for (int c = 0; c < NCTOR; c++) {
        lm_device *d = CTORS[c](0);
        size_t sz[] = {0, 1, 63, 4096, (3 << 20) + 5};
        for (size_t k = 0; k < sizeof sz / sizeof *sz; k++) {
            unsigned char *h = d->host_alloc(d, sz[k]);
            assert_non_null(h);
            size_t nz = 0;
            for (size_t i = 0; i < sz[k]; i++) nz += h[i] != 0;
            assert_int_equal(nz, 0);
            if (sz[k]) memset(h, 0x5a, sz[k]);
            d->host_free(d, h);
        }
        d->host_free(d, NULL);
        device_destroy(d);
    }
}

/* 1000 copies of 0 to 256 KiB (a few of 2 MiB) in both directions: every
 * region goes up into device memory and comes back down into a second
 * host buffer. Tickets increase by one; copy_wait(t) makes the data of t
 * (and of every earlier copy) visible; copy_done is monotone and ends true. */
static void test_many_copies(void **state) {
    (void)state;
    enum { N = 500 }; /* N up + N down */
    for (int c = 0; c < NCTOR; c++) {
        lm_device *d = CTORS[c](0);
        size_t off[N + 1], tot = 0;
        for (int i = 0; i < N; i++) {
            off[i] = tot;
            size_t s = (size_t)rng_below(3, (uint64_t)i, 256 << 10);
            if (i % 97 == 5) s = 2 << 20;
            if (i % 10 == 3) s = 0;
            tot += s;
        }
        off[N] = tot;
        unsigned char *up = d->host_alloc(d, tot), *down = d->host_alloc(d, tot);
        unsigned char *dev = d->alloc(d, tot);
        fill(up, tot, 1234 + (uint64_t)c);
        uint64_t tu[N], td[N], last = 0;
        int mid = N / 2;
        for (int i = 0; i < N; i++) {
            tu[i] = d->copy_async(d, dev + off[i], up + off[i], off[i + 1] - off[i], 0);
            assert_true(tu[i] == last + 1 || (last == 0 && tu[i] > 0));
            last = tu[i];
            if (i % 2) { /* downloads trail the uploads, interleaved with them */
                int j = i / 2;
                td[j] = d->copy_async(d, down + off[j], dev + off[j], off[j + 1] - off[j], 1);
                assert_int_equal(td[j], last + 1);
                last = td[j];
            }
            if (i == mid) {
                /* waiting for one download: it and everything before it is done */
                int j = (i - 1) / 2;
                d->copy_wait(d, td[j]);
                assert_true(d->copy_done(d, td[j]));
                for (int k = 0; k <= j; k++) {
                    assert_true(d->copy_done(d, td[k]));
                    assert_memory_equal(down + off[k], up + off[k], off[k + 1] - off[k] ? off[k + 1] - off[k] : 1);
                }
                for (int k = 0; k <= i; k++) assert_true(d->copy_done(d, tu[k]) || tu[k] > td[j]);
            }
        }
        for (int j = N / 2; j < N; j++) {
            td[j] = d->copy_async(d, down + off[j], dev + off[j], off[j + 1] - off[j], 1);
            assert_int_equal(td[j], last + 1);
            last = td[j];
        }
        /* monotone while copies are still running: done(t) => done(u < t) */
        for (int k = 0; k < 300; k++) {
            uint64_t t = td[N - 1 - (k * 7) % N];
            if (d->copy_done(d, t))
                for (uint64_t u = 1; u <= t; u++) assert_true(d->copy_done(d, u));
        }
        /* polling alone gets there (copy_done never blocks, the engine runs on) */
        while (!d->copy_done(d, td[N - 1])) usleep(100);
        assert_true(d->copy_done(d, 0));
        for (int i = 0; i < N; i++) assert_true(d->copy_done(d, tu[i]) && d->copy_done(d, td[i]));
        assert_memory_equal(down, up, tot);
        d->copy_wait(d, td[3]); /* waits on done tickets return at once */
        d->compute_wait(d, td[N - 1]);
        d->free(d, dev);
        d->host_free(d, up);
        d->host_free(d, down);
        device_destroy(d);
    }
}

/* compute_wait: compute issued after it sees an upload (on the CPU the host
 * blocks) */
static void test_compute_wait(void **state) {
    (void)state;
    for (int c = 0; c < NCTOR; c++) {
        lm_device *d = CTORS[c](0);
        size_t n = (size_t)4 << 20;
        float *hf = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) hf[i] = (float)((int)(i % 101) - 50);
        size_t es = lm_dtype_size(d->dtype);
        unsigned char *h = d->host_alloc(d, n * es);
        void *x = d->alloc(d, n * es), *y = d->alloc(d, n * es);
        d->upload_f32(d, y, hf, n);  /* the values in the compute dtype */
        d->to_host(d, h, y, n * es); /* ... as host bytes */
        d->zero(d, y, n * es);
        uint64_t t = d->copy_async(d, x, h, n * es, 0);
        d->compute_wait(d, t);
        d->add(d, y, x, n); /* y = 0 + x: needs the whole upload */
        float *back = malloc(n * sizeof(float));
        d->download_f32(d, back, y, n);
        assert_memory_equal(back, hf, n * sizeof(float));
        free(back);
        free(hf);
        d->free(d, x);
        d->free(d, y);
        d->host_free(d, h);
        device_destroy(d);
    }
}

/* Destroy with copies still queued: they all finish first (the engine
 * drains its queue before its thread is joined). Buffers here are the
 * test's own, outliving the device. Also: a device that never copied, and
 * one that copied only zero bytes. */
static void test_destroy_pending(void **state) {
    (void)state;
    for (int c = 0; c < NCTOR; c++) {
        enum { K = 64 };
        size_t sz = (size_t)1 << 20;
        unsigned char *src = malloc(K * sz), *dst = calloc(K, sz);
        fill(src, K * sz, 99);
        lm_device *d = CTORS[c](0);
        for (int k = 0; k < K; k++) d->copy_async(d, dst + k * sz, src + k * sz, sz, k % 2);
        device_destroy(d);
        assert_memory_equal(dst, src, K * sz);
        free(src);
        free(dst);

        device_destroy(CTORS[c](0));
        d = CTORS[c](0);
        uint64_t t = 0;
        for (int k = 0; k < 1000; k++) t = d->copy_async(d, NULL, NULL, 0, k % 2);
        assert_int_equal(t, 1000);
        d->copy_wait(d, t);
        assert_true(d->copy_done(d, 1000));
        device_destroy(d);
    }
}

/* A GEMM on the calling thread while large copies run on the engine: the
 * GEMM's result is the one computed alone, and the copies' data intact. */
static void test_overlap_gemm(void **state) {
    (void)state;
    for (int c = 0; c < NCTOR; c++) {
        lm_device *d = CTORS[c](0);
        const int M = 256, N = 192, K = 320;
        size_t es = lm_dtype_size(d->dtype);
        float *hx = malloc(sizeof(float) * M * K), *hw = malloc(sizeof(float) * N * K);
        for (int i = 0; i < M * K; i++) hx[i] = (float)((i * 7) % 13) - 6.0f;
        for (int i = 0; i < N * K; i++) hw[i] = (float)((i * 5) % 11) - 5.0f;
        void *x = d->alloc(d, es * M * K), *w = d->alloc(d, es * N * K), *y = d->alloc(d, es * M * N);
        d->upload_f32(d, x, hx, (size_t)M * K);
        d->upload_f32(d, w, hw, (size_t)N * K);
        float *ref = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
        d->gemm_nt(d, y, x, w, M, N, K, 0.0f);
        d->download_f32(d, ref, y, (size_t)M * N);
        d->zero(d, y, es * M * N);

        size_t nb = (size_t)32 << 20;
        unsigned char *hu = d->host_alloc(d, nb), *hd = d->host_alloc(d, nb), *dv = d->alloc(d, nb);
        fill(hu, nb, 7 + (uint64_t)c);
        uint64_t t1 = d->copy_async(d, dv, hu, nb / 2, 0);
        uint64_t t2 = d->copy_async(d, dv + nb / 2, hu + nb / 2, nb / 2, 0);
        for (int r = 0; r < 4; r++) d->gemm_nt(d, y, x, w, M, N, K, 0.0f); /* meanwhile */
        uint64_t t3 = d->copy_async(d, hd, dv, nb, 1);
        d->download_f32(d, got, y, (size_t)M * N);
        assert_memory_equal(got, ref, sizeof(float) * M * N);
        d->copy_wait(d, t3);
        assert_true(d->copy_done(d, t1) && d->copy_done(d, t2));
        assert_memory_equal(hd, hu, nb);
        d->free(d, dv);
        d->host_free(d, hu);
        d->host_free(d, hd);
        free(ref);
        free(got);
        free(hx);
        free(hw);
        d->free(d, x);
        d->free(d, w);
        d->free(d, y);
        device_destroy(d);
    }
}

/* A ticket that was never issued is a bug: the job ends (exit 1). */
static void test_bad_ticket(void **state) {
    (void)state;
    for (int op = 0; op < 2; op++) {
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stderr)) _exit(3);
            lm_device *d = device_cpu_create(0);
            char b[8] = {0}, a[8] = {0};
            uint64_t t = d->copy_async(d, a, b, 8, 0);
            if (op == 0) d->copy_wait(d, t + 1);
            else d->copy_done(d, t + 5);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), LM_ERR_RUNTIME);
    }
}

/* The timing wrapper: asynchronous copies add their bytes to BYTES_H2D /
 * BYTES_D2H when issued; the waits are the region `transfer` (compute_wait
 * only where the host blocks in it, as here); copy_done is neither. */
static void test_prof_wrapper(void **state) {
    (void)state;
    lm_device *in = device_cpu_bf16_create(0), *d = device_prof_wrap(in, 0);
    prof_init();
    prof_collect(NULL);
    long long h2d = lm_sde_count[LM_SDE_BYTES_H2D], d2h = lm_sde_count[LM_SDE_BYTES_D2H];
    unsigned char *h = d->host_alloc(d, 5000), *back = d->host_alloc(d, 5000);
    fill(h, 5000, 3);
    unsigned char *dv = d->alloc(d, 5000);
    uint64_t t1 = d->copy_async(d, dv, h, 5000, 0);
    uint64_t t2 = d->copy_async(d, back, dv, 3000, 1);
    uint64_t t3 = d->copy_async(d, back + 3000, dv + 3000, 0, 1);
    assert_true(t2 == t1 + 1 && t3 == t2 + 1);
    d->compute_wait(d, t1);
    d->copy_wait(d, t3);
    assert_true(d->copy_done(d, t3));
    lm_prof_window win;
    prof_collect(&win);
    assert_int_equal(lm_sde_count[LM_SDE_BYTES_H2D] - h2d, 5000);
    assert_int_equal(lm_sde_count[LM_SDE_BYTES_D2H] - d2h, 3000);
    assert_int_equal(win.calls[PROF_TRANSFER], 2);
    assert_memory_equal(back, h, 3000);
    size_t pk = 0;
    assert_int_equal(d->mem_info(d, &pk, 0), 5000);
    assert_int_equal(pk, 5000);
    prof_shutdown();
    d->free(d, dv);
    d->host_free(d, h);
    d->host_free(d, back);
    device_destroy(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_info),        cmocka_unit_test(test_host_alloc),
        cmocka_unit_test(test_many_copies),     cmocka_unit_test(test_compute_wait),
        cmocka_unit_test(test_destroy_pending), cmocka_unit_test(test_overlap_gemm),
        cmocka_unit_test(test_bad_ticket),      cmocka_unit_test(test_prof_wrapper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
