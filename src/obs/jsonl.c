/* jsonl.c — the JSONL step log (jsonl.h): one compact JSON object per line,
 * flushed after each, non-finite numbers as null. */
#include "jsonl.h"
#include "common.h"
#include "sde.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lm_metrics_log {
    FILE *fp;           /* NULL: writes nothing (no path, or rank != 0) */
    int warned;
    char path[];
};

lm_metrics_log *metrics_open(const char *path, char *err, size_t errlen) {
    if (!path) path = "";
    int writes = path[0] != '\0' && lm_world_rank() == 0;
    size_t len = strlen(path);
    lm_metrics_log *m = lm_alloc(sizeof *m + len + 1);
    memcpy(m->path, path, len + 1);
    if (writes) {
        m->fp = fopen(path, "a");
        if (!m->fp) {
            lm_err(err, errlen, LM_ERR_INPUT, "log.metrics: cannot open '%s' for appending: %s",
                   path, strerror(errno));
            lm_free(m);
            return NULL;
        }
    }
    return m;
}

/* JSON has no NaN or infinity: such values are written as null so that the
 * line stays valid JSON. */
static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

void metrics_write(lm_metrics_log *m, const lm_step_metrics *s) {
    if (!m || !m->fp || !s) return;
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "loss", num(s->loss));
    json_object_set_new(o, "lr", num(s->lr));
    json_object_set_new(o, "grad_norm", num(s->grad_norm));
    json_object_set_new(o, "tokens", json_integer(s->tokens));
    json_object_set_new(o, "tokens_per_s", num(s->tokens_per_s));
    json_object_set_new(o, "tflops", num(s->tflops));
    json_object_set_new(o, "mfu", num(s->mfu));
    json_object_set_new(o, "step_ms", num(s->step_ms));
    json_object_set_new(o, "comm_ms", num(s->comm_ms));
    json_object_set_new(o, "mem_bytes", json_integer((json_int_t)s->mem_bytes));
    json_object_set_new(o, "mem_device_peak", json_integer((json_int_t)s->mem_device_peak));
    json_object_set_new(o, "mem_host_peak", json_integer((json_int_t)s->mem_host_peak));
    json_object_set_new(o, "h2d_bytes", json_integer((json_int_t)s->h2d_bytes));
    json_object_set_new(o, "d2h_bytes", json_integer((json_int_t)s->d2h_bytes));
    if (s->n_papi > 0 && s->papi_names && s->papi_vals) {
        json_t *pp = json_object();
        for (int i = 0; i < s->n_papi; i++)
            if (s->papi_names[i]) json_object_set_new(pp, s->papi_names[i], json_integer(s->papi_vals[i]));
        json_object_set_new(o, "papi", pp);
    }
    const lm_prof_window *w = s->regions;
    if (w) {
        json_t *rg = json_object();
        for (int r = 0; r < PROF_N; r++)
            if (w->excl[r] > 0) json_object_set_new(rg, prof_name(r), num(w->excl[r] * 1e3));
        json_object_set_new(o, "regions", rg);
        int ne = w->n_events < s->n_papi ? w->n_events : s->n_papi;
        if (ne > 0 && s->papi_names) {
            json_t *pr = json_object();
            for (int r = 0; r <= PROF_N; r++) {
                if (!(w->excl[r] > 0)) continue;
                json_t *ev = json_object();
                for (int e = 0; e < ne; e++)
                    if (s->papi_names[e]) json_object_set_new(ev, s->papi_names[e], json_integer(w->counts[r][e]));
                json_object_set_new(pr, prof_name(r), ev);
            }
            json_object_set_new(o, "papi_regions", pr);
        }
    }
    if (s->n_sde > 0 && s->sde_vals) {
        json_t *sd = json_object();
        for (int i = 0; i < s->n_sde && i < LM_SDE_N; i++)
            json_object_set_new(sd, sde_name(i),
                                sde_is_double(i) ? num(s->sde_vals[i]) : json_integer((json_int_t)llround(s->sde_vals[i])));
        json_object_set_new(o, "sde", sd);
    }
    if (s->ckpt_ms > 0) json_object_set_new(o, "ckpt_ms", num(s->ckpt_ms));
    if (s->stage > 0) json_object_set_new(o, "stage", json_integer(s->stage));
    if (s->has_bucket) json_object_set_new(o, "bucket", json_integer(s->bucket));
    if (s->masked_samples > 0) json_object_set_new(o, "masked_samples", json_integer(s->masked_samples));
    if (s->has_val) {
        json_object_set_new(o, "val_loss", num(s->val_loss));
        json_object_set_new(o, "val_bpb", num(s->val_bpb));
        json_t *bc = json_object();
        for (int k = 0; k < s->n_val_cat && s->val_cat_names; k++) {
            json_t *e = json_object();
            json_object_set_new(e, "loss", num(s->val_cat_loss[k]));
            json_object_set_new(e, "bpb", num(s->val_cat_bpb[k]));
            json_object_set_new(bc, s->val_cat_names[k] ? s->val_cat_names[k] : "", e);
        }
        json_object_set_new(o, "val_by_category", bc);
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    int bad = !line || fputs(line, m->fp) == EOF || fputc('\n', m->fp) == EOF || fflush(m->fp) != 0;
    free(line);
    if (bad && !m->warned) {
        m->warned = 1;
        fprintf(stderr, "lamina: warning: writing log.metrics '%s' failed: %s\n", m->path, strerror(errno));
    }
}

void metrics_close(lm_metrics_log *m) {
    if (!m) return;
    if (m->fp) fclose(m->fp);
    lm_free(m);
}
