/* common.h — error handling, exit codes and small helpers shared by every module.
 *
 * Exit codes (SPEC §1): 0 ok, 1 runtime failure, 2 bad input, 3 stopped early
 * after a checkpoint. Errors are loud and collective: lm_fail() is for an
 * error that every rank detects the same way (a bad deck), and finalises MPI
 * before exiting; lm_abort() is for an error that one rank alone may see
 * (a bad file read, NaN), and takes the whole job down with MPI_Abort. */
#ifndef LAMINA_COMMON_H
#define LAMINA_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { LM_OK = 0, LM_ERR_RUNTIME = 1, LM_ERR_INPUT = 2, LM_STOPPED = 3 };

#define LM_ERRLEN 1024

/* Rank of this process in the world (0 before MPI is up). */
int lm_world_rank(void);
int lm_world_size(void);

/* Print "lamina: error: ..." (rank 0 only) and exit with `code` on all ranks.
 * Every rank must call it: use for errors that all ranks detect alike. */
_Noreturn void lm_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "lamina: error (rank R): ..." and bring down the whole job with
 * `code`. Use where only this rank may have seen the error. */
_Noreturn void lm_abort(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rank-0 printf to stdout, flushed. */
void lm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc that aborts the job on failure (exit 1 naming the size); memory is
 * zeroed, 64-byte aligned, counted in lm_alloc_bytes. Free with lm_free. */
void *lm_alloc(size_t bytes);
/* lm_alloc of n * size bytes (overflow is an out-of-memory exit). */
void *lm_calloc(size_t n, size_t size);
/* Grow or shrink an lm_alloc block (NULL: a new one); new bytes are zeroed.
 * Exits 1 naming the size on failure, so `p = lm_realloc(p, n)` is safe. */
void *lm_realloc(void *p, size_t bytes);
/* Copy of a string in an lm_alloc block (give back with lm_free). */
char *lm_strdup(const char *s);
void lm_free(void *p);

/* Bytes currently held by lm_alloc, and the peak (for memory reports). */
size_t lm_alloc_bytes(void);
size_t lm_alloc_peak(void);

/* The whole of file `path` in one lm_alloc block (free with lm_free), with a
 * NUL after the last byte; *len (may be NULL) gets its length. No size limit.
 * On failure NULL, and "PATH: cannot read (REASON)" in err. (src/core/file.c) */
char *lm_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* fsync the file (is_dir 0) or directory (1) at `path`: 0, or -1 with errno. */
int lm_fsync_path(const char *path, int is_dir);

/* Wall clock in seconds (monotonic). */
double lm_now(void);

/* snprintf into err; returns `code` (for `return lm_err(err, n, 2, ...)`). */
int lm_err(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
