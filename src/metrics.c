/* metrics.c — analytic FLOPs, CPU peak, PAPI counters and the JSONL step log
 * (SPEC §6). Every function is safe to call on every rank; only rank 0
 * prints or writes. */
#include "metrics.h"
#include "common.h"
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

#define PAPI_MAX_EVENTS 64

struct lm_papi {
    int eventset;       /* PAPI_NULL when nothing is counted */
    int n;              /* events counted */
    char *names[PAPI_MAX_EVENTS];
};

/* 0: not tried, 1: initialised, -1: failed (reported once). */
static int g_papi_state;

static int papi_lib_init(void) {
    if (g_papi_state != 0) return g_papi_state;
    int rc = PAPI_library_init(PAPI_VER_CURRENT);
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

/* Adds the events of the list one by one; those the machine lacks (or the
 * event set refuses, e.g. a second component) are dropped and listed in one
 * rank-0 line. */
lm_papi *papi_start(const char *events_csv) {
    lm_papi *p = lm_alloc(sizeof *p);
    p->eventset = PAPI_NULL;
    p->n = 0;
    if (!events_csv) return p;
    const char *s = events_csv;
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    if (*s == '\0') return p;                       /* empty list: nothing, silently */
    if (papi_lib_init() != 1) return p;
    if (PAPI_create_eventset(&p->eventset) != PAPI_OK) {
        lm_log("PAPI: unavailable (cannot create an event set)\n");
        p->eventset = PAPI_NULL;
        return p;
    }
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
            int ok = p->n < PAPI_MAX_EVENTS && PAPI_add_named_event(p->eventset, name) == PAPI_OK;
            if (ok) {
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
    if (p->n > 0) {
        int rc = PAPI_start(p->eventset);
        if (rc != PAPI_OK) {
            lm_log("PAPI: cannot start counters (%s); counting nothing\n", PAPI_strerror(rc));
            for (int i = 0; i < p->n; i++) lm_free(p->names[i]);
            p->n = 0;
        }
    }
    if (p->n == 0) {
        PAPI_cleanup_eventset(p->eventset);
        PAPI_destroy_eventset(&p->eventset);
        p->eventset = PAPI_NULL;
    }
    return p;
}

int papi_n_events(const lm_papi *p) { return p ? p->n : 0; }

const char *papi_event_name(const lm_papi *p, int i) {
    return (p && i >= 0 && i < p->n) ? p->names[i] : NULL;
}

/* PAPI_accum adds the counts into vals and resets the counters: starting
 * from zeros it yields the delta since the previous call. */
void papi_read_delta(lm_papi *p, long long *vals) {
    if (!p || p->n == 0) return;
    for (int i = 0; i < p->n; i++) vals[i] = 0;
    if (PAPI_accum(p->eventset, vals) != PAPI_OK)
        for (int i = 0; i < p->n; i++) vals[i] = 0;
}

void papi_stop(lm_papi *p) {
    if (!p) return;
    if (p->eventset != PAPI_NULL) {
        long long scratch[PAPI_MAX_EVENTS];
        PAPI_stop(p->eventset, scratch);
        PAPI_cleanup_eventset(p->eventset);
        PAPI_destroy_eventset(&p->eventset);
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
