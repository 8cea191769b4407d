/* copy_engine.c — a FIFO of memcpys run by one background pthread
 * (copy_engine.h).
 *
 * State under one mutex: a ring of pending copies (grown by doubling when
 * full, so issuing never blocks), `issued` (the last ticket handed out) and
 * `completed` (the last ticket whose copy has finished). The thread takes
 * the oldest copy off the ring, drops the lock for the memcpy, then bumps
 * `completed` and broadcasts `cv_done`. Since copies run one at a time in
 * issue order, ticket t is done iff completed >= t. Waiters sleep on
 * `cv_done`; the thread sleeps on `cv_work` while the ring is empty.
 * `completed` is also kept in an atomic so that copy_engine_done, which a
 * caller may poll between compute ops, never takes the lock. */
#include "copy_engine.h"
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
} copy_item;

struct lm_copy_engine {
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* the thread: a copy was queued, or stop */
    pthread_cond_t cv_done; /* waiters: `completed` moved */
    copy_item *ring;
    size_t cap, head, count; /* ring[head], ... ring[(head + count - 1) % cap] pending */
    uint64_t issued;         /* tickets handed out (the issuing thread's; read under mu) */
    _Atomic uint64_t completed;
    int stop;    /* destroy: drain the ring, then exit */
    int started; /* the thread exists */
    pthread_t th;
    double busy; /* seconds spent in memcpy (read under mu) */
};

static void ck(int rc, const char *what) {
    if (rc) lm_abort(LM_ERR_RUNTIME, "copy engine: %s failed (%s)", what, strerror(rc));
}

static void *engine_main(void *arg) {
    lm_copy_engine *e = arg;
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    for (;;) {
        while (!e->count && !e->stop) ck(pthread_cond_wait(&e->cv_work, &e->mu), "pthread_cond_wait");
        if (!e->count) break; /* stop, and nothing left to copy */
        copy_item it = e->ring[e->head];
        e->head = (e->head + 1) % e->cap;
        e->count--;
        ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
        double t0 = lm_now();
        if (it.bytes) memcpy(it.dst, it.src, it.bytes);
        double dt = lm_now() - t0;
        ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
        e->busy += dt;
        /* release: the copied bytes are visible to whoever sees the ticket done */
        atomic_fetch_add_explicit(&e->completed, 1, memory_order_release);
        ck(pthread_cond_broadcast(&e->cv_done), "pthread_cond_broadcast");
    }
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    return NULL;
}

lm_copy_engine *copy_engine_create(void) {
    lm_copy_engine *e = lm_alloc(sizeof *e);
    ck(pthread_mutex_init(&e->mu, NULL), "pthread_mutex_init");
    ck(pthread_cond_init(&e->cv_work, NULL), "pthread_cond_init");
    ck(pthread_cond_init(&e->cv_done, NULL), "pthread_cond_init");
    atomic_init(&e->completed, 0);
    return e;
}

/* The ring doubled, its pending copies moved to the front in order. */
static void grow(lm_copy_engine *e) {
    size_t cap = e->cap ? 2 * e->cap : 64;
    copy_item *r = lm_calloc(cap, sizeof *r);
    for (size_t i = 0; i < e->count; i++) r[i] = e->ring[(e->head + i) % e->cap];
    lm_free(e->ring);
    e->ring = r;
    e->cap = cap;
    e->head = 0;
}

uint64_t copy_engine_issue(lm_copy_engine *e, void *dst, const void *src, size_t bytes) {
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    if (!e->started) {
        ck(pthread_create(&e->th, NULL, engine_main, e), "pthread_create");
        e->started = 1;
    }
    if (e->count == e->cap) grow(e);
    e->ring[(e->head + e->count) % e->cap] = (copy_item){dst, src, bytes};
    e->count++;
    uint64_t t = ++e->issued;
    ck(pthread_cond_signal(&e->cv_work), "pthread_cond_signal");
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    return t;
}

uint64_t copy_engine_issued(lm_copy_engine *e) {
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    uint64_t n = e->issued;
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    return n;
}

static void check_ticket(lm_copy_engine *e, uint64_t t) {
    uint64_t n = copy_engine_issued(e);
    if (t > n) lm_abort(LM_ERR_RUNTIME, "copy engine: ticket %llu was never issued (%llu so far)",
                        (unsigned long long)t, (unsigned long long)n);
}

int copy_engine_done(lm_copy_engine *e, uint64_t t) {
    /* acquire: pairs with the thread's release, so the caller may read dst */
    if (atomic_load_explicit(&e->completed, memory_order_acquire) >= t) return 1;
    check_ticket(e, t);
    return 0;
}

void copy_engine_wait(lm_copy_engine *e, uint64_t t) {
    if (atomic_load_explicit(&e->completed, memory_order_acquire) >= t) return;
    check_ticket(e, t);
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    while (atomic_load_explicit(&e->completed, memory_order_acquire) < t)
        ck(pthread_cond_wait(&e->cv_done, &e->mu), "pthread_cond_wait");
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
}

void copy_engine_destroy(lm_copy_engine *e) {
    if (!e) return;
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    e->stop = 1;
    int started = e->started;
    ck(pthread_cond_signal(&e->cv_work), "pthread_cond_signal");
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    if (started) ck(pthread_join(e->th, NULL), "pthread_join"); /* it drains the ring before it exits */
    pthread_cond_destroy(&e->cv_done);
    pthread_cond_destroy(&e->cv_work);
    pthread_mutex_destroy(&e->mu);
    lm_free(e->ring);
    lm_free(e);
}

double copy_engine_busy(lm_copy_engine *e) {
    ck(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    double b = e->busy;
    ck(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    return b;
}
