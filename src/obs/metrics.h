/* metrics.h — timers, analytic FLOPs, MFU, PAPI counters and the JSONL log
 * (SPEC §6). Everything here is called on every rank; only rank 0 writes. */
#ifndef LAMINA_METRICS_H
#define LAMINA_METRICS_H
#include "prof.h"
#include <stddef.h>
#include <stdint.h>

/* Model FLOPs per token, PaLM/Megatron convention (SPEC §6):
 * 6*N + 12*n_layers*dim*seq_len, where N counts every parameter that enters a
 * matrix product: all but the input embedding table, lm_head counted also when
 * tied (so N = n_params - vocab*dim + vocab*dim*tied). */
double metrics_flops_per_token(int64_t n_matmul_params, int n_layers, int dim, int seq_len);

/* Peak fp32 FLOP/s of the CPU this rank runs on: threads x clock x FLOP/cycle
 * of the vector unit (AVX-512: 64, AVX2+FMA: 32, AVX: 16, SSE2: 8), clock from
 * cpufreq's cpuinfo_max_freq or /proc/cpuinfo. Writes a one-line description
 * (e.g. "2 threads x 2.445 GHz x 32 FLOP/cycle (AVX2+FMA)") into desc. */
double metrics_cpu_peak_flops(int threads, char *desc, size_t desclen);

/* PAPI_library_init once per process: 1 when PAPI works, -1 when not (said
 * once on rank 0). */
int papi_init(void);

/* Hardware (or perf) counters of log.papi_events for the calling thread.
 * Events this machine lacks are dropped and reported once on rank 0.
 * lamina's own software-defined events (sde:::LAMINA::NAME, sde.h) may be
 * listed too: they are read from the SDE reader's event set (PAPI runs one
 * event set per component at a time), the others from one event set of
 * their own (one component: events of a second one are dropped). */
typedef struct lm_papi lm_papi;
#define LM_PAPI_MAX_EVENTS 64                  /* events of one list at most */
lm_papi *papi_start(const char *events_csv);   /* never NULL */
int papi_n_events(const lm_papi *p);           /* events actually counted */
const char *papi_event_name(const lm_papi *p, int i);
/* The counts since papi_start (PAPI_read: nothing is reset) into
 * vals[papi_n_events]; on a failed read, the previous values. */
void papi_read_now(lm_papi *p, long long *vals);
/* The counts since the last call (delta) into vals[papi_n_events]. */
void papi_read_delta(lm_papi *p, long long *vals);
void papi_stop(lm_papi *p);
/* PAPI library version string, for --version. */
const char *papi_version_string(void);

/* One logged step. */
typedef struct {
    long step;
    double loss, lr, grad_norm;
    long tokens;          /* input tokens consumed so far, padding excluded */
    double tokens_per_s;  /* this step */
    double tflops;        /* model TFLOP/s per device */
    double mfu;
    double step_ms;
    double comm_ms;       /* time this rank was blocked in communication */
    size_t mem_bytes;     /* host bytes held by lamina's allocator now */
    int n_papi;
    const char *const *papi_names;
    const long long *papi_vals;
    /* the step's regions (prof.h): "regions" {name: exclusive ms} of the
     * regions with time in the window, and with counters attached
     * "papi_regions" {name: {event: count}} (names papi_names; "other" =
     * outside every region); NULL: neither */
    const lm_prof_window *regions;
    /* lamina's SDE counters read through PAPI, growth in this step:
     * "sde" {NAME: value} (n_sde = LM_SDE_N; 0: none) */
    int n_sde;
    const double *sde_vals;
    double ckpt_ms;       /* > 0: "ckpt_ms", the checkpoint written after the step */
} lm_step_metrics;

/* JSONL writer on rank 0 (path "" = no file). Appends; fsync not needed. */
typedef struct lm_metrics_log lm_metrics_log;
lm_metrics_log *metrics_open(const char *path, char *err, size_t errlen); /* NULL+err on failure */
void metrics_write(lm_metrics_log *m, const lm_step_metrics *s);
void metrics_close(lm_metrics_log *m);

#endif
