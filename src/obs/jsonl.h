/* jsonl.h — the per-step JSONL log (log.metrics, SPEC §6): one JSON object
 * per logged step. Called on every rank; only rank 0 writes. */
#ifndef LAMINA_JSONL_H
#define LAMINA_JSONL_H
#include "prof.h"
#include <stddef.h>

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
    /* the largest over the ranks: device bytes allocated at the step's
     * peak, host bytes lamina's allocator held at their peak so far, bytes
     * copied host to device and device to host in the step */
    double mem_device_peak, mem_host_peak, h2d_bytes, d2h_bytes;
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
    /* SPEC §6, §9: "stage" (1-based) when stage > 0; "bucket" when
     * has_bucket (the data has more than one); "masked_samples" when > 0
     * (samples of the global batch whose every target the loss mask
     * removed) */
    int stage, has_bucket, bucket;
    long masked_samples;
    /* on evaluation steps (has_val): "val_loss", "val_bpb" and
     * "val_by_category" {name: {"loss", "bpb"}} (NaN: null) */
    int has_val, n_val_cat;
    double val_loss, val_bpb;
    const char *const *val_cat_names;
    const double *val_cat_loss, *val_cat_bpb;
} lm_step_metrics;

/* JSONL writer on rank 0 (path "" = no file). Appends; fsync not needed. */
typedef struct lm_metrics_log lm_metrics_log;
lm_metrics_log *metrics_open(const char *path, char *err, size_t errlen); /* NULL+err on failure */
void metrics_write(lm_metrics_log *m, const lm_step_metrics *s);
void metrics_close(lm_metrics_log *m);

#endif
