/* metrics.c — analytic FLOPs, CPU peak, PAPI counters and the JSONL step log
 * (SPEC §6). Every function is safe to call on every rank; only rank 0
 * prints or writes. */
#include "metrics.h"
#include "common.h"
#include "sde.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <papi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- FLOPs */

/* PaLM/Megatron model FLOPs per token (SPEC §6). A matrix product with N
 * weights costs 2N FLOPs per token forward and 4N backward (input and weight
 * gradients): 6N. Attention adds, per layer, QK^T and PV over seq_len keys:
 * 2 * 2*dim*seq forward, twice that backward, = 12*dim*seq per layer
 * (causal masking not halved, recomputation not counted). */
double metrics_flops_per_token(int64_t n_matmul_params, int n_layers, int dim, int seq_len) {
    return 6.0 * (double)n_matmul_params + 12.0 * (double)n_layers * (double)dim * (double)seq_len;
}

/* ------------------------------------------------------------ CPU peak */

/* Clock in Hz from cpufreq's cpuinfo_max_freq (kHz); 0 if absent. */
static double clock_from_cpufreq(void) {
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    if (!f) return 0.0;
    double khz = 0.0;
    if (fscanf(f, "%lf", &khz) != 1 || !(khz > 0.0)) khz = 0.0;
    fclose(f);
    return khz * 1e3;
}

/* Clock in Hz from /proc/cpuinfo: the largest "cpu MHz" line, else the
 * "@ X.XXGHz" of "model name"; 0 if neither is there. */
static double clock_from_cpuinfo(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0.0;
    char line[512];
    double best_mhz = 0.0, model_ghz = 0.0;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (strncmp(line, "cpu MHz", 7) == 0) {
            double mhz = strtod(colon + 1, NULL);
            if (mhz > best_mhz) best_mhz = mhz;
        } else if (strncmp(line, "model name", 10) == 0 && model_ghz == 0.0) {
            char *at = strchr(colon, '@');
            if (at) {
                char *end = NULL;
                double ghz = strtod(at + 1, &end);
                while (end && *end == ' ') end++;
                if (end && strncmp(end, "GHz", 3) == 0 && ghz > 0.0) model_ghz = ghz;
            }
        }
    }
    fclose(f);
    if (best_mhz > 0.0) return best_mhz * 1e6;
    return model_ghz * 1e9;
}

/* Peak = threads x clock x fp32 FLOP/cycle. FLOP/cycle per core = 2 FMA
 * pipes x (vector width / 32 bit) x 2 (an FMA is 2 FLOPs): AVX-512 2x16x2=64
 * (assumes two 512-bit FMA pipes), AVX2+FMA 2x8x2=32; without FMA, one add
 * and one mul pipe: AVX 2x8=16, SSE2 2x4=8. */
double metrics_cpu_peak_flops(int threads, char *desc, size_t desclen) {
    if (threads < 1) threads = 1;
    const char *unknown = "";
    double hz = clock_from_cpufreq();
    if (!(hz > 0.0)) hz = clock_from_cpuinfo();
    if (!(hz > 0.0)) {
        hz = 2.0e9;
        unknown = " (clock unknown, assumed)";
    }
    __builtin_cpu_init();
    int fpc;
    const char *isa;
    if (__builtin_cpu_supports("avx512f")) {
        fpc = 64;
        isa = "AVX-512, two 512-bit FMA pipes assumed";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fpc = 32;
        isa = "AVX2+FMA";
    } else if (__builtin_cpu_supports("avx")) {
        fpc = 16;
        isa = "AVX";
    } else {
        fpc = 8;
        isa = "SSE2";
    }
    if (desc && desclen > 0)
        snprintf(desc, desclen, "%d thread%s x %.3f GHz%s x %d FLOP/cycle (%s)", threads,
                 threads == 1 ? "" : "s", hz / 1e9, unknown, fpc, isa);
    return (double)threads * hz * (double)fpc;
}

/* ---------------------------------------------------------------- PAPI */

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

/* 0: not tried, 1: initialised, -1: failed (reported once). */
static int g_papi_state;

int papi_init(void) {
    if (g_papi_state != 0) return g_papi_state;
    int rc = PAPI_is_initialized() != PAPI_NOT_INITED ? (int)PAPI_VER_CURRENT : PAPI_library_init(PAPI_VER_CURRENT);
    if (rc == PAPI_VER_CURRENT) {
        g_papi_state = 1;
    } else {
        g_papi_state = -1;
        if (rc > 0)
            lm_log("PAPI: unavailable (library version %d.%d differs from header %d.%d)\n",
                   PAPI_VERSION_MAJOR(rc), PAPI_VERSION_MINOR(rc),
                   PAPI_VERSION_MAJOR(PAPI_VERSION), PAPI_VERSION_MINOR(PAPI_VERSION));
        else
            lm_log("PAPI: unavailable (%s)\n", PAPI_strerror(rc));
    }
    return g_papi_state;
}

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

const char *papi_version_string(void) {
    static char buf[32];
    if (PAPI_VERSION_INCREMENT(PAPI_VERSION))
        snprintf(buf, sizeof buf, "%d.%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION),
                 PAPI_VERSION_MINOR(PAPI_VERSION), PAPI_VERSION_REVISION(PAPI_VERSION),
                 PAPI_VERSION_INCREMENT(PAPI_VERSION));
    else
        snprintf(buf, sizeof buf, "%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION),
                 PAPI_VERSION_MINOR(PAPI_VERSION), PAPI_VERSION_REVISION(PAPI_VERSION));
    return buf;
}

/* --------------------------------------------------------------- JSONL */

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
