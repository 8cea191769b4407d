/* progress.h — progress of a long job (convert, prep, vocab) on rank 0's
 * stderr. On a terminal (isatty(2)): one line rewritten in place at most
 * 5 times a second, "WHAT: I/N items, X/Y MB, R MB/s, ETA S s". Otherwise
 * (a log file): one plain line each time another 10% of the bytes (or of
 * the items when the byte total is 0) is done. lm_progress_end prints the
 * final line with the elapsed time. Other ranks and a quiet progress
 * (enabled 0) print nothing. */
#ifndef LAMINA_PROGRESS_H
#define LAMINA_PROGRESS_H
#include <stdint.h>

typedef struct {
    const char *what, *unit; /* "convert", "tensors" */
    int64_t n_items, n_bytes, items, bytes;
    double t0, last;
    int tty, decile, enabled;
} lm_progress;

void lm_progress_begin(lm_progress *p, const char *what, const char *unit, int64_t n_items, int64_t n_bytes);
/* items and bytes done so far (totals, not increments). */
void lm_progress_set(lm_progress *p, int64_t items, int64_t bytes);
void lm_progress_end(lm_progress *p);

#endif
