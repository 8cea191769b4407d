/* step_probe.c — the counters of one training step (step_probe.h). */
#include "step_probe.h"
#include "common.h"
#include <string.h>

/* acc += b - a, counter by counter */
static void stats_add_delta(lm_comm_stats *acc, const lm_comm_stats *b, const lm_comm_stats *a) {
    acc->allreduce_bytes += b->allreduce_bytes - a->allreduce_bytes;
    acc->reduce_scatter_bytes += b->reduce_scatter_bytes - a->reduce_scatter_bytes;
    acc->allgather_bytes += b->allgather_bytes - a->allgather_bytes;
    acc->bcast_bytes += b->bcast_bytes - a->bcast_bytes;
    acc->p2p_bytes += b->p2p_bytes - a->p2p_bytes;
    acc->sent += b->sent - a->sent;
    acc->calls += b->calls - a->calls;
    acc->seconds += b->seconds - a->seconds;
}

/* prof.h's counter reader over the events of log.papi_events. */
static void read_papi(void *p, long long *vals) {
    long long all[LM_PAPI_MAX_EVENTS];
    papi_read_now(p, all);
    memcpy(vals, all, sizeof(long long) * (size_t)(papi_n_events(p) < PROF_MAX_EVENTS ? papi_n_events(p) : PROF_MAX_EVENTS));
}

void probe_open(lm_step_probe *p, const char *papi_events, const lm_group *tp) {
    memset(p, 0, sizeof *p);
    p->tp = tp;
    p->papi = papi_start(papi_events);
    p->n_papi = papi_n_events(p->papi);
    for (int i = 0; i < p->n_papi; i++) p->papi_names[i] = papi_event_name(p->papi, i);
    if (p->n_papi) prof_counters(p->n_papi, read_papi, p->papi); /* per-region counts */
}

void probe_begin(lm_step_probe *p) {
    p->t0 = prof_collect(NULL); /* the step's window of regions starts */
    if (p->n_papi) papi_read_delta(p->papi, p->papi_vals);
    sde_read_delta(p->sde_vals);
}

void probe_comm_begin(lm_step_probe *p) {
    comm_stats(&p->comm0);
    comm_group_stats(p->tp, &p->tp0);
}

void probe_end(lm_step_probe *p, long tokens, double model_flops) {
    p->seconds = prof_collect(&p->win) - p->t0;
    if (p->n_papi) papi_read_delta(p->papi, p->papi_vals);
    sde_add(LM_SDE_TOKENS, tokens);
    sde_add_flops(model_flops);
    sde_add(LM_SDE_STEPS, 1);
    lm_comm_stats comm1, tp1;
    comm_stats(&comm1);
    comm_group_stats(p->tp, &tp1);
    stats_add_delta(&p->tp_moved, &tp1, &p->tp0);
    p->comm_s = comm1.seconds - p->comm0.seconds;
    p->mem_bytes = lm_alloc_bytes();
}

void probe_after(lm_step_probe *p) {
    lm_prof_window after; /* logging, checkpoint, preemption check */
    prof_collect(&after);
    p->ckpt_ms = after.incl[PROF_CHECKPOINT] * 1e3;
    p->n_sde = sde_read_delta(p->sde_vals) == 0 ? LM_SDE_N : 0;
}

void probe_close(lm_step_probe *p) {
    prof_counters(0, NULL, NULL);
    papi_stop(p->papi);
    p->papi = NULL;
}
