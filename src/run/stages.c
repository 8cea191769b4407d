/* stages.c — see stages.h. */
#include "stages.h"
#include "common.h"
#include <stdio.h>
#include <string.h>

void stage_view(const lm_config *c, int k, lm_config *out) {
    if (out != c) memcpy(out, c, sizeof *out);
    if (c->n_stages <= 0) return;
    const lm_stage *g = &c->stage[k];
    out->lr = g->lr;
    out->min_lr = g->min_lr;
    out->warmup_steps = g->warmup_steps;
    snprintf(out->lr_schedule, sizeof out->lr_schedule, "%s", g->lr_schedule);
    snprintf(out->trainable, sizeof out->trainable, "%s", g->trainable);
    snprintf(out->train_files, sizeof out->train_files, "%s", g->train_files);
    snprintf(out->valid_files, sizeof out->valid_files, "%s", g->valid_files);
}

long stage_end(const lm_config *c, int k) {
    return c->n_stages > 0 ? deck_stage_start(c, k) + c->stage[k].steps : c->steps;
}

int stage_same_data(const lm_config *c, int k) {
    return k > 0 && k < c->n_stages && !strcmp(c->stage[k].train_files, c->stage[k - 1].train_files);
}

/* Inside a stage (or continuing the previous one's stream) without the
 * attribute: back from consumed by the steps since the stream's start. */
static long guess_back(const lm_config *c, long consumed, long steps, int *guessed) {
    *guessed = 1;
    long s0 = consumed - steps * (long)c->global_batch;
    return s0 > 0 ? s0 : 0;
}

long stage_data_start(const lm_config *c, int k, long step, long consumed, long ck_stage, long ck_start,
                      int *guessed) {
    *guessed = 0;
    if (c->n_stages <= 0 || step <= 0) return 0;
    long start = deck_stage_start(c, k);
    if (step > start) { /* inside stage k: its own checkpoint says */
        if (ck_stage == k + 1 && ck_start >= 0) return ck_start;
        return guess_back(c, consumed, step - start, guessed);
    }
    /* stage k starts now, after stage k - 1's last step */
    if (!stage_same_data(c, k)) return consumed;
    if (ck_stage == k && ck_start >= 0) return ck_start;
    return guess_back(c, consumed, step - deck_stage_start(c, k - 1), guessed);
}

void stage_log_start(const lm_config *c, int k, long from, long consumed, long data_start) {
    if (c->n_stages <= 0) return;
    const lm_stage *g = &c->stage[k];
    long start = deck_stage_start(c, k);
    char sched[160];
    if (!strcmp(g->lr_schedule, "constant"))
        snprintf(sched, sizeof sched, "lr %g constant", g->lr);
    else
        snprintf(sched, sizeof sched, "lr %g %s to %g", g->lr, g->lr_schedule, g->min_lr);
    const char *moments = k == 0 ? "fresh" : g->reset_optimizer ? "reset to zero" : "carried over";
    lm_log("stage %d/%d %s: steps %ld-%ld (%ld); data %s from stream sample %ld%s; %s after %ld warm-up step(s); "
           "trainable %s; optimizer moments %s at its start; validation %s\n",
           k + 1, c->n_stages, from > start ? "resumes" : "starts", start + 1, stage_end(c, k), g->steps,
           g->train_files, consumed - data_start, stage_same_data(c, k) ? " (the previous stage's stream)" : "",
           sched, g->warmup_steps, g->trainable, moments, g->valid_files[0] ? g->valid_files : "off");
}

void stage_key(const lm_config *c, int k, const char *what, char *out, size_t n) {
    int own = 0;
    if (c->n_stages > 0) {
        const lm_stage *g = &c->stage[k];
        own = !strcmp(what, "train") ? strcmp(g->train_files, c->train_files) != 0
                                     : strcmp(g->valid_files, c->valid_files) != 0;
    }
    if (own) snprintf(out, n, "stage.%d.%s", k + 1, what);
    else snprintf(out, n, "data.%s", what);
}
