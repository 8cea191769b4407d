/* tp_comm.c — the analytic communication count of tensor parallelism (see
 * tp_comm_formula in model.h), for the run report and the benchmark. */
#include "model.h"
#include <string.h>

void tp_comm_formula(const lm_model *m, int n_micro, double e, lm_comm_stats *out) {
    memset(out, 0, sizeof *out);
    double p = m->tp.size, L = m->s.n_layers, rc = m->recompute ? 1.0 : 0.0;
    if (p <= 1) return;
    double RD = (double)m->R * (double)m->s.dim * e, k = (double)n_micro;
    double stats = 12.0 * (double)m->R * p;
    if (!m->tp.sp) {
        out->allreduce_bytes = k * (2 + 4 * L + 2 * L * rc) * RD;
    } else {
        out->reduce_scatter_bytes = k * (2 + 4 * L + 2 * L * rc) * RD;
        out->allgather_bytes = k * (2 + 6 * L + 2 * L * rc) * RD;
        out->allreduce_bytes = (2 * L + 1) * (double)m->s.dim * e;
    }
    out->allgather_bytes += k * stats;
    out->allreduce_bytes += 8.0; /* the gradient norm's sum of squares (float64) */
    out->sent = (p - 1) / p * (2 * out->allreduce_bytes + out->reduce_scatter_bytes + out->allgather_bytes);
}
