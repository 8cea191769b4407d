/* papi_counters.h — hardware (or perf) counters of log.papi_events, read per
 * step and per region. Called on every rank; only rank 0 prints. */
#ifndef LAMINA_PAPI_COUNTERS_H
#define LAMINA_PAPI_COUNTERS_H

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

#endif
