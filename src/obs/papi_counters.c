/* papi_counters.c — the counters of log.papi_events (papi_counters.h):
 * hardware/perf events in one PAPI event set, lamina's own SDE events from
 * the SDE reader. */
#include "papi_counters.h"
#include "common.h"
#include "papi_lib.h"
#include "sde.h"
#include <papi.h>
#include <stdio.h>
#include <string.h>

#define PAPI_MAX_EVENTS LM_PAPI_MAX_EVENTS

struct lm_papi {
    int eventset;       /* PAPI_NULL when none of the events is in it */
    int n_own;          /* events in the event set */
    int n;              /* events counted, in list order */
    int n_sde;          /* of which lamina's own SDE events */
    int src[PAPI_MAX_EVENTS];        /* >= 0: index in the event set; < 0: -1 - SDE index */
    char *names[PAPI_MAX_EVENTS];
    long long cur[PAPI_MAX_EVENTS];  /* the last values read (papi_read_now) */
    long long last[PAPI_MAX_EVENTS]; /* at the last papi_read_delta */
};

static char *dup_str(const char *s, size_t n) {
    char *d = lm_alloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* One event of the list: lamina's own SDE event from the SDE reader, any
 * other into the event set (created on first use). 1 if counted. */
static int papi_add_one(lm_papi *p, const char *name) {
    if (p->n >= PAPI_MAX_EVENTS) return 0;
    int k = sde_index(name);
    if (k >= 0 && sde_reader_start()) {
        p->src[p->n] = -1 - k;
        p->n_sde++;
        return 1;
    }
    if (p->eventset == PAPI_NULL && PAPI_create_eventset(&p->eventset) != PAPI_OK) {
        p->eventset = PAPI_NULL;
        return 0;
    }
    if (PAPI_add_named_event(p->eventset, name) != PAPI_OK) return 0;
    p->src[p->n] = p->n_own++;
    return 1;
}

static void papi_drop_own(lm_papi *p) {
    if (p->eventset == PAPI_NULL) return;
    PAPI_cleanup_eventset(p->eventset);
    PAPI_destroy_eventset(&p->eventset);
    p->eventset = PAPI_NULL;
}

/* Adds the events of the list one by one; those the machine lacks (or the
 * event set refuses, e.g. a second component) are dropped and listed in one
 * rank-0 line. */
lm_papi *papi_start(const char *events_csv) {
    lm_papi *p = lm_alloc(sizeof *p);
    p->eventset = PAPI_NULL;
    if (!events_csv) return p;
    const char *s = events_csv;
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    if (*s == '\0') return p;                       /* empty list: nothing, silently */
    if (papi_init() != 1) return p;
    char dropped[1024] = "";
    size_t dlen = 0;
    for (const char *c = events_csv; *c;) {
        const char *end = strchr(c, ',');
        if (!end) end = c + strlen(c);
        const char *a = c, *b = end;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r')) b--;
        if (b > a) {
            char *name = dup_str(a, (size_t)(b - a));
            if (papi_add_one(p, name)) {
                p->names[p->n++] = name;
            } else {
                if (dlen < sizeof dropped) {
                    int w = snprintf(dropped + dlen, sizeof dropped - dlen, "%s%s", dlen ? ", " : "", name);
                    if (w > 0) dlen += (size_t)w;
                }
                lm_free(name);
            }
        }
        c = *end ? end + 1 : end;
    }
    if (dlen) lm_log("PAPI: not available on this machine: %s\n", dropped);
    if (p->n_own > 0) {
        int rc = PAPI_start(p->eventset);
        if (rc != PAPI_OK) {
            lm_log("PAPI: cannot start counters (%s); counting nothing\n", PAPI_strerror(rc));
            for (int i = 0; i < p->n; i++) lm_free(p->names[i]);
            p->n = p->n_own = p->n_sde = 0;
        }
    }
    if (p->n_own == 0) papi_drop_own(p);
    papi_read_now(p, p->cur);
    memcpy(p->last, p->cur, sizeof p->last);
    return p;
}

int papi_n_events(const lm_papi *p) { return p ? p->n : 0; }

const char *papi_event_name(const lm_papi *p, int i) {
    return (p && i >= 0 && i < p->n) ? p->names[i] : NULL;
}

void papi_read_now(lm_papi *p, long long *vals) {
    if (!p || p->n == 0) return;
    long long own[PAPI_MAX_EVENTS], sde[LM_SDE_N];
    int ok_own = p->n_own == 0 || PAPI_read(p->eventset, own) == PAPI_OK;
    int ok_sde = p->n_sde == 0 || sde_read_raw(sde) == 0;
    for (int i = 0; i < p->n; i++) {
        int k = p->src[i];
        if (k >= 0 ? ok_own : ok_sde) p->cur[i] = k >= 0 ? own[k] : sde[-1 - k];
        vals[i] = p->cur[i];
    }
}

/* The counters run from papi_start on and are never reset (prof.c reads
 * the same event set at region boundaries): a delta is the difference of
 * two reads. */
void papi_read_delta(lm_papi *p, long long *vals) {
    if (!p || p->n == 0) return;
    long long now[PAPI_MAX_EVENTS];
    papi_read_now(p, now);
    for (int i = 0; i < p->n; i++) {
        vals[i] = now[i] - p->last[i];
        p->last[i] = now[i];
    }
}

void papi_stop(lm_papi *p) {
    if (!p) return;
    if (p->eventset != PAPI_NULL) {
        long long scratch[PAPI_MAX_EVENTS];
        PAPI_stop(p->eventset, scratch);
        papi_drop_own(p);
    }
    for (int i = 0; i < p->n; i++) lm_free(p->names[i]);
    lm_free(p);
}


