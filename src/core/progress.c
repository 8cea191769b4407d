/* progress.c — see progress.h. Rate = bytes done / elapsed; ETA = bytes
 * left / rate (items when no byte total was given). */
#include "progress.h"
#include "common.h"
#include <stdio.h>
#include <unistd.h>

void lm_progress_begin(lm_progress *p, const char *what, const char *unit, int64_t n_items, int64_t n_bytes) {
    *p = (lm_progress){.what = what, .unit = unit, .n_items = n_items, .n_bytes = n_bytes, .t0 = lm_now()};
    p->last = p->t0;
    p->enabled = lm_world_rank() == 0;
    p->tty = p->enabled && isatty(2);
}

static void line(lm_progress *p, const char *end, int final) {
    double dt = lm_now() - p->t0, mb = p->bytes / 1e6, rate = dt > 0 ? mb / dt : 0;
    double frac = p->n_bytes > 0 ? (double)p->bytes / (double)p->n_bytes
                : p->n_items > 0 ? (double)p->items / (double)p->n_items : 1;
    double eta = frac > 0 ? dt * (1 - frac) / frac : 0;
    fprintf(stderr, "%s%s: %lld/%lld %s, %.1f/%.1f MB, %.1f MB/s, %s %.0f s%s", p->tty ? "\r" : "", p->what,
            (long long)p->items, (long long)p->n_items, p->unit, mb, p->n_bytes / 1e6, rate, final ? "elapsed" : "ETA",
            final ? dt : eta, p->tty ? "\033[K" : "");
    fputs(end, stderr);
    fflush(stderr);
}

void lm_progress_set(lm_progress *p, int64_t items, int64_t bytes) {
    if (!p->enabled) return;
    p->items = items;
    p->bytes = bytes;
    if (p->tty) {
        double now = lm_now();
        if (now - p->last >= 0.2) {
            p->last = now;
            line(p, "", 0);
        }
        return;
    }
    double frac = p->n_bytes > 0 ? (double)bytes / (double)p->n_bytes : p->n_items > 0 ? (double)items / (double)p->n_items : 0;
    int d = (int)(frac * 10);
    if (d > p->decile && d < 10) {
        p->decile = d;
        line(p, "\n", 0);
    }
}

void lm_progress_end(lm_progress *p) {
    if (!p->enabled) return;
    line(p, "\n", 1);
}
