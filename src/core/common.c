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
 * the running total that the memory reports print. */
static size_t g_bytes, g_peak;

void *lm_alloc(size_t bytes) {
    void *raw = NULL;
    if (posix_memalign(&raw, 64, bytes + 64) != 0 || !raw)
        lm_abort(LM_ERR_RUNTIME, "out of host memory allocating %zu bytes", bytes);
    memset(raw, 0, bytes + 64);
    *(size_t *)raw = bytes;
#pragma omp atomic
    g_bytes += bytes;
    if (g_bytes > g_peak) g_peak = g_bytes;
    return (char *)raw + 64;
}

void lm_free(void *p) {
    if (!p) return;
    char *raw = (char *)p - 64;
#pragma omp atomic
    g_bytes -= *(size_t *)raw;
    free(raw);
}

size_t lm_alloc_bytes(void) { return g_bytes; }
size_t lm_alloc_peak(void) { return g_peak; }

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
