/* sde.h — lamina's own counters, published as PAPI software-defined events
 * sde:::LAMINA::NAME (the list and their meaning: sde_events.h), so that
 * any PAPI reader in the process (a profiler, or lamina's own JSONL) can
 * count them like hardware events.
 *
 * The counters are plain 64-bit variables that lamina adds to (sde_add, on
 * the thread that runs the training loop); the communication bytes are
 * callback counters over the comm layer's statistics (comm_stats), so PAPI
 * and the comm layer can never disagree. MODEL_FLOPS is a double.
 *
 * papi_native_avail cannot see a running process's events: it lists a
 * library's by calling its papi_sde_hook_list_events. src/obs/sde.c built with
 * -DLM_SDE_HOOK_ONLY is that library (build/liblamina-sde.so, `make`):
 *     papi_native_avail -sde build/liblamina-sde.so
 *     LD_PRELOAD=build/liblamina-sde.so papi_native_avail
 * both list sde:::LAMINA::* with their descriptions. */
#ifndef LAMINA_SDE_H
#define LAMINA_SDE_H
#include "sde_events.h"

typedef enum {
#define LM_SDE_ID(id, type, desc) LM_SDE_##id,
    LM_SDE_EVENTS(LM_SDE_ID)
#undef LM_SDE_ID
    LM_SDE_N
} lm_sde_id;

/* Storage of the integer counters (the callback ones' slots are unused). */
extern long long lm_sde_count[LM_SDE_N];
extern double lm_sde_flops;
static inline void sde_add(lm_sde_id c, long long v) { lm_sde_count[c] += v; }
static inline void sde_add_flops(double f) { lm_sde_flops += f; }

/* Register the counters with libsde under "LAMINA" (once; later calls do
 * nothing). */
void sde_init(void);
const char *sde_name(int i);       /* "TOKENS" */
int sde_is_double(int i);          /* MODEL_FLOPS */
/* i for "sde:::LAMINA::NAME" (also "LAMINA::NAME"), else -1 */
int sde_index(const char *event);

/* Reading them back through PAPI: an event set of every sde:::LAMINA::*
 * event (PAPI_add_named_event, PAPI_start). Returns 1 when it runs, 0 when
 * PAPI or its SDE component is unavailable (said once on rank 0). Calls
 * sde_init. */
int sde_reader_start(void);
int sde_reader_on(void);
/* Values since sde_reader_start, as PAPI_read returns them (doubles
 * rounded to integers): vals[LM_SDE_N]. 0, or -1 when not running. */
int sde_read_raw(long long *vals);
/* Values since the previous sde_read_delta (or the start) in vals[LM_SDE_N]
 * (integers exact up to 2^53). 0, or -1 when not running. */
int sde_read_delta(double *vals);
/* Values since sde_reader_start. 0, or -1 when not running. */
int sde_read_total(double *vals);
void sde_reader_stop(void);

#endif
