/* common.c — error exits, logging and the tracked allocator. */
#include "common.h"
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

int lm_world_rank(void) {
    int init = 0, fin = 0, r = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int lm_world_size(void) {
    int init = 0, fin = 0, n = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

/* One error line, "lamina: error[ (rank R)]: MESSAGE\n", formatted into a
 * buffer and written with a single write(2), so that the lines of several
 * ranks sharing a terminal or a file never interleave mid-line (stdio would
 * split them into several writes). An over-long message is cut, still
 * ending in a newline. */
static void err_line(int with_rank, const char *fmt, va_list ap) {
    char buf[8192];
    int n = with_rank ? snprintf(buf, sizeof buf, "lamina: error (rank %d): ", lm_world_rank())
                      : snprintf(buf, sizeof buf, "lamina: error: ");
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    while (len > 0 && buf[len - 1] == '\n') len--; /* exactly one newline at the end */
    buf[len++] = '\n';
    /* a message of several lines (a usage text): each continuation line
     * starts with "lamina: " too, in the same write */
    char out[sizeof buf + 2048];
    size_t o = 0;
    for (size_t i = 0; i < len && o < sizeof out - 16; i++) {
        out[o++] = buf[i];
        if (buf[i] == '\n' && i + 1 < len) {
            memcpy(out + o, "lamina:   ", 10);
            o += 10;
        }
    }
    if (out[o - 1] != '\n') out[o - 1] = '\n';
    len = o;
    fflush(stdout);
    fflush(stderr);
    const char *p = out;
    while (len > 0) {
        ssize_t w = write(2, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        len -= (size_t)w;
    }
}

void lm_fail(int code, const char *fmt, ...) {
    if (lm_world_rank() == 0) {
        va_list ap;
        va_start(ap, fmt);
        err_line(0, fmt, ap);
        va_end(ap);
    }
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Finalize();
    exit(code);
}

void lm_abort(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_line(lm_world_size() > 1, fmt, ap);
    va_end(ap);
    fflush(stdout);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin && lm_world_size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
    if (init && !fin) MPI_Finalize();
    exit(code);
}

void lm_log(const char *fmt, ...) {
    if (lm_world_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Each block carries a 64-byte header holding its size, so lm_free can keep
 * the running total that the memory reports print. Both counters are updated
 * with atomics: blocks are taken and given back from OpenMP threads. */
static size_t g_bytes, g_peak;

/* Add `delta` bytes (a size_t, so "minus" wraps) to the running total; on
 * growth, raise the peak to the new total unless another thread already
 * raised it higher (compare-and-swap loop). */
static void count_bytes(size_t delta, int grow) {
    size_t now = grow ? __atomic_add_fetch(&g_bytes, delta, __ATOMIC_RELAXED)
                      : __atomic_sub_fetch(&g_bytes, delta, __ATOMIC_RELAXED);
    if (!grow) return;
    size_t peak = __atomic_load_n(&g_peak, __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&g_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* A 64-byte aligned block of `bytes` behind its header, not yet counted;
 * the job exits 1 naming the size when the host has no memory left. */
static char *alloc_raw(size_t bytes) {
    void *raw = NULL;
    if (bytes > SIZE_MAX - 64 || posix_memalign(&raw, 64, bytes + 64) != 0 || !raw)
        lm_abort(LM_ERR_RUNTIME, "out of host memory allocating %zu bytes", bytes);
    *(size_t *)raw = bytes;
    return raw;
}

void *lm_alloc(size_t bytes) {
    char *raw = alloc_raw(bytes);
    memset(raw + 64, 0, bytes);
    count_bytes(bytes, 1);
    return raw + 64;
}

void *lm_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        lm_abort(LM_ERR_RUNTIME, "out of host memory allocating %zu x %zu bytes", n, size);
    return lm_alloc(n * size);
}

/* A new block, the old contents copied and the rest zeroed, the old block
 * freed: aligned like lm_alloc, and the old block stays intact (and the job
 * exits) if the new one cannot be had. */
void *lm_realloc(void *p, size_t bytes) {
    if (!p) return lm_alloc(bytes);
    size_t old = *(size_t *)((char *)p - 64);
    char *raw = alloc_raw(bytes);
    size_t keep = old < bytes ? old : bytes;
    memcpy(raw + 64, p, keep);
    memset(raw + 64 + keep, 0, bytes - keep);
    count_bytes(bytes, 1);
    lm_free(p);
    return raw + 64;
}

char *lm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lm_alloc(n);
    memcpy(d, s, n);
    return d;
}

void lm_free(void *p) {
    if (!p) return;
    char *raw = (char *)p - 64;
    count_bytes(*(size_t *)raw, 0);
    free(raw);
}

size_t lm_alloc_bytes(void) { return __atomic_load_n(&g_bytes, __ATOMIC_RELAXED); }
size_t lm_alloc_peak(void) { return __atomic_load_n(&g_peak, __ATOMIC_RELAXED); }

double lm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lm_err(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
