/* step_probe.h — every counter of one training step in one place: the
 * step's wall time and its regions (prof.h), the counters of
 * log.papi_events, lamina's SDE counters, communication seconds and the
 * tensor-parallel group's traffic, and the memory held. The training loop
 * brackets each step with probe_begin/probe_end and reads the deltas from
 * the struct; nothing of it changes the step's arithmetic. */
#ifndef LAMINA_STEP_PROBE_H
#define LAMINA_STEP_PROBE_H
#include "comm.h"
#include "papi_counters.h"
#include "prof.h"
#include "sde.h"
#include <stddef.h>

typedef struct {
    lm_papi *papi;                                 /* the counters of log.papi_events */
    int n_papi;                                    /* events counted */
    const char *papi_names[LM_PAPI_MAX_EVENTS];
    const lm_group *tp;                            /* the group whose traffic is kept apart */
    /* the step's start (probe_begin, probe_comm_begin) */
    double t0;                                     /* prof's clock */
    lm_comm_stats comm0, tp0;
    /* the step's deltas (probe_end) */
    double seconds;                                /* wall time: the regions add up to it */
    lm_prof_window win;                            /* the step's regions */
    long long papi_vals[LM_PAPI_MAX_EVENTS];
    double comm_s;                                 /* blocked in communication, every group */
    lm_comm_stats tp_moved;                        /* what the tp group moved in the steps so far */
    size_t mem_bytes;                              /* host bytes held by lamina's allocator */
    /* after the step's checkpoint and preemption check (probe_after) */
    double ckpt_ms;                                /* the checkpoint region's inclusive ms */
    int n_sde;                                     /* LM_SDE_N, or 0 when the SDE reader is off */
    double sde_vals[LM_SDE_N];                     /* growth since probe_begin */
} lm_step_probe;

/* Starts the counters of papi_events (attached to prof's regions too);
 * tp: the tensor-parallel group. */
void probe_open(lm_step_probe *p, const char *papi_events, const lm_group *tp);
/* The step starts: a new window of regions, and the counters' deltas reset. */
void probe_begin(lm_step_probe *p);
/* The step's communication counts from here (after the data loader's
 * verdict, which is not the step's traffic). */
void probe_comm_begin(lm_step_probe *p);
/* The step's compute is done: its time, regions, PAPI counts, communication
 * (tp_moved: summed over the steps) and memory into p; then the step's
 * tokens and model FLOPs are added to lamina's SDE counters (after the PAPI
 * read, so that they count in the next window, as before). */
void probe_end(lm_step_probe *p, long tokens, double model_flops);
/* After the checkpoint and the preemption check: their time (ckpt_ms) and
 * the SDE counters' growth since probe_begin. */
void probe_after(lm_step_probe *p);
/* Detaches and stops the counters. */
void probe_close(lm_step_probe *p);

#endif
