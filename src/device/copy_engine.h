/* copy_engine.h — the CPU backends' "copy stream": one background thread
 * that performs memcpys in issue order, so that host<->device transfers
 * (device.h: copy_async and its tickets) overlap the compute that runs on
 * the calling thread.
 *
 * Tickets: the k-th copy issued gets ticket k (1, 2, ...); copies complete
 * in issue order, so "ticket t done" means every copy up to t is done.
 * Ticket 0 is always done. The queue is unbounded (an array that grows);
 * the thread starts on the first copy and is joined by copy_engine_destroy,
 * which first lets every pending copy finish. One thread issues and waits
 * (the device's caller); the engine's own thread only copies. */
#ifndef LAMINA_COPY_ENGINE_H
#define LAMINA_COPY_ENGINE_H
#include <stddef.h>
#include <stdint.h>

typedef struct lm_copy_engine lm_copy_engine;

/* An idle engine (no thread yet). */
lm_copy_engine *copy_engine_create(void);
/* Queues memcpy(dst, src, bytes) after every earlier copy and returns its
 * ticket; dst and src must stay valid, and src unchanged, until it is done.
 * bytes may be 0 (a ticket that completes in order like any other). */
uint64_t copy_engine_issue(lm_copy_engine *e, void *dst, const void *src, size_t bytes);
/* Has ticket t (and so every earlier one) completed? Non-blocking. A ticket
 * never issued is a bug (abort). */
int copy_engine_done(lm_copy_engine *e, uint64_t t);
/* Blocks until ticket t has completed (sleeps on a condition variable). */
void copy_engine_wait(lm_copy_engine *e, uint64_t t);
/* Tickets issued so far (the last one returned). */
uint64_t copy_engine_issued(lm_copy_engine *e);
/* Seconds the engine's thread has spent copying so far. */
double copy_engine_busy(lm_copy_engine *e);
/* Waits for every pending copy, stops and joins the thread, frees e. */
void copy_engine_destroy(lm_copy_engine *e);

#endif
