/* common.c — error exits, logging and the tracked allocator. */
#include "common.h"
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void lm_fail(int code, const char *fmt, ...) {
    if (lm_world_rank() == 0) {
        va_list ap;
        va_start(ap, fmt);
        fputs("lamina: error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        fflush(stderr);
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
    if (lm_world_size() > 1) fprintf(stderr, "lamina: error (rank %d): ", lm_world_rank());
    else fputs("lamina: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
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
