/* metrics.h — timers, analytic FLOPs, MFU, PAPI counters and the JSONL log
 * (SPEC §6). Everything here is called on every rank; only rank 0 writes. */
#ifndef LAMINA_METRICS_H
#define LAMINA_METRICS_H
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

/* Hardware (or perf) counters of log.papi_events for the calling thread.
 * Events this machine lacks are dropped and reported once on rank 0. */
typedef struct lm_papi lm_papi;
lm_papi *papi_start(const char *events_csv);   /* never NULL */
int papi_n_events(const lm_papi *p);           /* events actually counted */
const char *papi_event_name(const lm_papi *p, int i);
/* Read the counts since the last call (delta) into vals[papi_n_events]. */
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
} lm_step_metrics;

/* JSONL writer on rank 0 (path "" = no file). Appends; fsync not needed. */
typedef struct lm_metrics_log lm_metrics_log;
lm_metrics_log *metrics_open(const char *path, char *err, size_t errlen); /* NULL+err on failure */
void metrics_write(lm_metrics_log *m, const lm_step_metrics *s);
void metrics_close(lm_metrics_log *m);

#endif
