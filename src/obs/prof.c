/* prof.c — timed regions (prof.h). */
#include "prof.h"
#include "comm.h"
#include "common.h"
#include <string.h>

static const char *const g_names[PROF_N + 1] = {
    [PROF_DATA] = "data",
    [PROF_FORWARD_BACKWARD] = "forward_backward",
    [PROF_COMM] = "comm",
    [PROF_GRAD_NORM] = "grad_norm",
    [PROF_OPTIMIZER] = "optimizer",
    [PROF_CHECKPOINT] = "checkpoint",
    [PROF_TRANSFER] = "transfer",
    [PROF_K_GEMM] = "kernel.gemm",
    [PROF_K_ATTENTION] = "kernel.attention",
    [PROF_K_NORM] = "kernel.norm",
    [PROF_K_ROPE] = "kernel.rope",
    [PROF_K_SWIGLU] = "kernel.swiglu",
    [PROF_K_EMBEDDING] = "kernel.embedding",
    [PROF_K_XENT] = "kernel.xent",
    [PROF_K_ADAMW] = "kernel.adamw",
    [PROF_K_ELEMENTWISE] = "kernel.elementwise",
    [PROF_OTHER] = "other",
};

const char *prof_name(int r) { return r >= 0 && r <= PROF_N ? g_names[r] : "?"; }

typedef struct {
    int r;
    double t_enter;
} frame;

static struct {
    int depth;                /* open regions on the stack */
    int lost;                 /* open regions beyond PROF_DEPTH (not recorded) */
    frame st[PROF_DEPTH];
    int active[PROF_N];       /* open instances of each region (recursion) */
    double last;              /* time of the last boundary */
    int n;                    /* counters attached */
    prof_read_fn read;
    void *ctx;
    long long prev[PROF_MAX_EVENTS];
    lm_prof_window win, tot;
} g;

/* Set on the recording thread only: other threads' calls are no-ops. */
static _Thread_local int t_owner;

int prof_on(void) { return t_owner; }

static void comm_region_enter(void) { prof_enter(PROF_COMM); }
static void comm_region_leave(void) { prof_exit(PROF_COMM); }

void prof_init(void) {
    memset(&g, 0, sizeof g);
    t_owner = 1;
    g.last = g.win.t0 = g.win.t1 = g.tot.t0 = g.tot.t1 = lm_now();
    comm_set_region_hooks(comm_region_enter, comm_region_leave); /* the comm layer's blocking calls */
}

void prof_shutdown(void) {
    t_owner = 0;
    g.n = 0;
    comm_set_region_hooks(NULL, NULL);
}

/* The segment since the previous boundary belongs to the innermost open
 * region (PROF_OTHER when none): its time and its counter deltas. */
static void boundary(double now) {
    int top = g.depth ? g.st[g.depth - 1].r : PROF_OTHER;
    g.win.excl[top] += now - g.last;
    g.last = now;
    if (g.n) {
        long long v[PROF_MAX_EVENTS];
        g.read(g.ctx, v);
        for (int e = 0; e < g.n; e++) {
            g.win.counts[top][e] += v[e] - g.prev[e];
            g.prev[e] = v[e];
        }
    }
}

void prof_counters(int n, prof_read_fn read, void *ctx) {
    if (!t_owner) return;
    boundary(lm_now());
    if (n > PROF_MAX_EVENTS) n = PROF_MAX_EVENTS;
    if (n < 0 || !read) n = 0;
    g.n = n;
    g.read = read;
    g.ctx = ctx;
    if (n) read(ctx, g.prev);
}

void prof_enter(lm_region r) {
    if (!t_owner) return;
    if ((unsigned)r >= PROF_N) lm_abort(LM_ERR_RUNTIME, "prof: no region %d", (int)r);
    if (g.depth == PROF_DEPTH) {
        g.lost++;
        return;
    }
    double now = lm_now();
    boundary(now);
    g.st[g.depth++] = (frame){(int)r, now};
    g.active[r]++;
    g.win.calls[r]++;
}

void prof_exit(lm_region r) {
    if (!t_owner) return;
    if (g.lost) {
        g.lost--;
        return;
    }
    if (!g.depth || g.st[g.depth - 1].r != (int)r)
        lm_abort(LM_ERR_RUNTIME, "prof: region %s ends while %s is the innermost open one", prof_name((int)r),
                 g.depth ? prof_name(g.st[g.depth - 1].r) : "none");
    double now = lm_now();
    boundary(now);
    frame f = g.st[--g.depth];
    if (--g.active[r] == 0) g.win.incl[r] += now - f.t_enter;
}

static void add_window(lm_prof_window *a, const lm_prof_window *b) {
    for (int r = 0; r <= PROF_N; r++) {
        a->excl[r] += b->excl[r];
        for (int e = 0; e < PROF_MAX_EVENTS; e++) a->counts[r][e] += b->counts[r][e];
    }
    for (int r = 0; r < PROF_N; r++) {
        a->incl[r] += b->incl[r];
        a->calls[r] += b->calls[r];
    }
    a->t1 = b->t1;
    a->n_events = b->n_events;
}

double prof_collect(lm_prof_window *w) {
    double now = lm_now();
    if (!t_owner) {
        if (w) {
            memset(w, 0, sizeof *w);
            w->t0 = w->t1 = now;
        }
        return now;
    }
    boundary(now);
    g.win.t1 = now;
    g.win.n_events = g.n;
    add_window(&g.tot, &g.win);
    if (w) *w = g.win;
    memset(&g.win, 0, sizeof g.win);
    g.win.t0 = g.win.t1 = now;
    return now;
}

void prof_totals(lm_prof_window *w) { *w = g.tot; }
