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

/* malloc that aborts the job on failure; memory is zeroed. 64-byte aligned. */
void *lm_alloc(size_t bytes);
void lm_free(void *p);

/* Bytes currently held by lm_alloc, and the peak (for memory reports). */
size_t lm_alloc_bytes(void);
size_t lm_alloc_peak(void);

/* Wall clock in seconds (monotonic). */
double lm_now(void);

/* snprintf into err; returns `code` (for `return lm_err(err, n, 2, ...)`). */
int lm_err(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
