/* prof.h — timed regions of the training run, and the device wrapper that
 * times device ops (device_prof.c).
 *
 * A region is one of a fixed set of names (the training loop's phases, the
 * comm layer, checkpoint I/O, host<->device copies, and with
 * log.kernel_timers one per kind of device op). prof_enter / prof_exit
 * bracket it; regions nest (at most PROF_DEPTH deep; deeper ones are not
 * counted). Time is split at every boundary: the time between two
 * consecutive boundaries belongs to the innermost open region (or to
 * "other" when none is open), so the exclusive times of all regions plus
 * "other" add up exactly to the wall time between two prof_collect calls.
 * Inclusive time is exit - enter of the outermost instance of a region.
 * When counters are attached (prof_counters: the events of log.papi_events),
 * they are read at every boundary and each delta goes to the innermost
 * region the same way, so per-region counts partition the window's counts.
 *
 * Cost of a boundary: one clock_gettime, plus one counter read (a PAPI_read)
 * when counters are attached. Regions are for phases and ops, never for
 * per-element loops.
 *
 * Only the thread that called prof_init records; on any other thread (and
 * before prof_init) enter and exit do nothing, so code shared with other
 * commands and OpenMP workers may call them freely. */
#ifndef LAMINA_PROF_H
#define LAMINA_PROF_H
#include "device.h"

typedef enum {
    PROF_DATA,             /* data loader: filling the step's micro-batches */
    PROF_FORWARD_BACKWARD, /* model forward + backward (or the pipeline schedule) */
    PROF_COMM,             /* inside the comm layer: collectives, point to point, waits */
    PROF_GRAD_NORM,        /* global gradient norm */
    PROF_OPTIMIZER,        /* zeroing gradients, AdamW, ZeRO weight gathers */
    PROF_CHECKPOINT,       /* checkpoint save (gather + write) and load */
    PROF_TRANSFER,         /* host<->device copies through the device interface */
    PROF_K_GEMM,           /* log.kernel_timers: device ops by kind */
    PROF_K_ATTENTION,
    PROF_K_NORM,
    PROF_K_ROPE,
    PROF_K_SWIGLU,
    PROF_K_EMBEDDING,
    PROF_K_XENT,
    PROF_K_ADAMW,
    PROF_K_ELEMENTWISE,
    PROF_N
} lm_region;
#define PROF_OTHER PROF_N  /* slot of the time and counts outside every region */
#define PROF_DEPTH 16
#define PROF_MAX_EVENTS 16

/* "data", "forward_backward", "comm", ..., "kernel.gemm", ...; "other" for PROF_OTHER */
const char *prof_name(int r);

/* Start recording on the calling thread (resets everything; the window
 * starts now). prof_shutdown stops it. */
void prof_init(void);
void prof_shutdown(void);
int prof_on(void);

/* Counters read at every boundary: read(ctx, vals) stores the n current
 * (cumulative) values. n = 0 detaches. n is capped at PROF_MAX_EVENTS. */
typedef void (*prof_read_fn)(void *ctx, long long *vals);
void prof_counters(int n, prof_read_fn read, void *ctx);

void prof_enter(lm_region r);
void prof_exit(lm_region r);   /* r must be the innermost open region */

/* What one window (between two prof_collect calls) or the whole run holds. */
typedef struct {
    double t0, t1;                    /* lm_now() at the window's ends */
    double excl[PROF_N + 1];          /* seconds with the region innermost; [PROF_OTHER]: none open */
    double incl[PROF_N];              /* seconds inside the region (outermost instances ended here) */
    long calls[PROF_N];               /* prof_enter calls */
    int n_events;                     /* counters attached */
    long long counts[PROF_N + 1][PROF_MAX_EVENTS];  /* counter deltas by innermost region */
} lm_prof_window;

/* A boundary that ends the current window: the window so far goes into w
 * (NULL: dropped from the per-window view) and into the run's totals; the
 * next window starts now. Returns the timestamp (lm_now()) of the boundary,
 * which is w->t1. Without prof_init: returns lm_now(), w zeroed. */
double prof_collect(lm_prof_window *w);

/* Everything since prof_init up to the last prof_collect. */
void prof_totals(lm_prof_window *w);

/* The device wrapper (device_prof.c): a device whose every op calls the
 * same op of `inner`. Host<->device copies (to_device, to_host, upload_f32,
 * download_f32) are the region `transfer` and add their bytes to the SDE
 * counters BYTES_H2D / BYTES_D2H (bytes of device memory written or read:
 * n x the compute dtype's size for the float32 conversions). With
 * kernel_timers, each compute op is the region kernel.KIND:
 *   gemm (gemm_nt, gemm_nn, gemm_tn, gemm_nt_add), attention, norm
 *   (rmsnorm), rope, swiglu, embedding, xent (xent_fwd_bwd, xent_part_*),
 *   adamw, elementwise (add, scale, sumsq, convert, copy, zero).
 * On a device that is not host-visible (a GPU) ops are asynchronous: the
 * wrapper synchronizes before and after each timed op, so kernel timers
 * serialize the GPU and cost speed (a copy is synchronous anyway; the sync
 * before it keeps earlier kernels out of `transfer`). The wrapper shares
 * inner's impl (backend code that reads impl, like the NCCL binding's
 * stream, sees the same state) and its name, dtype and capacity;
 * device_destroy(wrapper) destroys inner too. */
lm_device *device_prof_wrap(lm_device *inner, int kernel_timers);
/* The wrapped device (d itself if it is not a wrapper). */
lm_device *device_prof_inner(lm_device *d);

#endif
