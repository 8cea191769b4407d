/* train_report.c — see train_report.h. */
#include "train_report.h"
#include "comm_dev.h"
#include "common.h"
#include "prof.h"
#include "sde.h"
#include <string.h>

/* Bytes per rank of weights, gradients and optimizer state, on the device
 * and on the host, next to the ZeRO formula for the stage (zero.h): what
 * the manager allocated, device and host together, must be what the
 * formula says; then the placement and whether it fits the device budget. */
void report_memory(lm_session *s) {
    lm_params *ps = &s->model->params;
    lm_zero_mem zm;
    zero_memory_bytes(s->zero, &zm);
    double MiB = 1024.0 * 1024.0, psi = (double)zm.psi, e = (double)zm.esz;
    int dp = zm.dp, st = zm.stage;
    /* train.trainable = embeddings: moments of the trained chunks only (Psi_t) */
    double psit = (double)zm.psi_trained;
    double want_w = st == 3 ? e * psi / dp : e * psi;
    double want_g = st >= 2 ? e * psi / dp : e * psi, want_o = st == 0 ? 8 * psit : 8 * psit / dp;
    double want_m = st == 0 ? 4 * psi : 4 * psi / dp;
    size_t lo = ps->n_chunks ? chunk_len(ps, 0) : 0, hi = 0;
    for (int c = 0; c < ps->n_chunks; c++) {
        if (chunk_len(ps, c) < lo) lo = chunk_len(ps, c);
        if (chunk_len(ps, c) > hi) hi = chunk_len(ps, c);
    }
    if (lo == hi)
        lm_log("parameters: %lld in %d tensors; chunks: %d x %zu elements (%.1f MiB each, padding %.2f%%), %d shard(s) "
               "of %zu elements per chunk\n",
               (long long)ps->numel, ps->n, ps->n_chunks, hi, (double)hi * e / MiB,
               100.0 * (double)(ps->arena - ps->numel) / (double)ps->arena, dp, hi / (size_t)dp);
    else {
        int alone = 0;
        for (int c = 0; c < ps->n_chunks; c++) alone += chunk_len(ps, c) > ps->chunk_size;
        lm_log("parameters: %lld in %d tensors; chunks: %d (%d of them an outsized tensor alone), regular %zu "
               "elements, longest %zu (%.1f MiB), padding %.2f%%, %d shard(s) per chunk\n",
               (long long)ps->numel, ps->n, ps->n_chunks, alone, ps->chunk_size, hi, (double)hi * e / MiB,
               100.0 * (double)(ps->arena - ps->numel) / (double)ps->arena, dp);
    }
    lm_log("memory per rank (ZeRO-%d, dp %d, Psi = %zu elements with padding): weights %zu B (%s = "
           "%.0f), gradients %zu B (%s = %.0f), optimizer state %zu B (%s = %.0f)",
           st, dp, zm.psi, zm.weights + zm.h_params, st == 3 ? "e Psi/dp" : "e Psi", want_w, zm.grads,
           st >= 2 ? "e Psi/dp" : "e Psi", want_g, zm.optim + zm.h_optim,
           zm.psi_trained != zm.psi ? (st == 0 ? "8 Psi_t" : "8 Psi_t/dp") : st == 0 ? "8 Psi" : "8 Psi/dp", want_o);
    if (zm.esz != 4)
        lm_log(", fp32 master weights %zu B (%s = %.0f)", zm.master + zm.h_master, st == 0 ? "4 Psi" : "4 Psi/dp",
               want_m);
    if (zm.psi_trained != zm.psi)
        lm_log("; train.trainable = %s: optimizer state over the %zu trained elements (Psi_t, chunk padding "
               "included) only", s->cfg.trainable, zm.psi_trained);
    lm_log("\n");
    /* device and host together (the formulas above), then where they are */
    lm_log("memory per rank: weights %.1f MiB, gradients %.1f MiB%s, optimizer state %.1f MiB, "
           "activations+workspace %.1f MiB%s\n",
           (double)(zm.weights + zm.h_params + zm.master + zm.h_master) / MiB, (double)zm.grads / MiB,
           st >= 2 ? " (+ chunk buckets in flight)" : "", (double)(zm.optim + zm.h_optim) / MiB,
           (double)s->model->act_bytes / MiB, s->cfg.recompute ? " (recompute)" : "");
    if (zm.n_opt_host || zm.n_par_host || st == 3) {
        char more[128] = "";
        if (st == 3)
            snprintf(more, sizeof more, "; + gathered chunks (at least the largest fetch's, %.2f MiB) and buckets",
                     (double)zm.slots_min / MiB);
        lm_log("memory per rank on the device: weights %.2f MiB, fp32 master %.2f MiB, gradients %.2f MiB, "
               "optimizer state %.2f MiB, activations+workspace %.2f MiB%s\n",
               (double)zm.weights / MiB, (double)zm.master / MiB, (double)zm.grads / MiB, (double)zm.optim / MiB,
               (double)s->model->act_bytes / MiB, more);
    }
    if (zm.n_opt_host || zm.n_par_host) {
        char what[512];
        zero_describe(s->zero, what, sizeof what);
        lm_log("%s\n", what);
        lm_log("memory per rank on the host: fp32 master %.2f MiB, optimizer state %.2f MiB, transfer staging "
               "%.2f MiB, parameters %.2f MiB\n",
               (double)zm.h_master / MiB, (double)zm.h_optim / MiB, (double)zm.h_grads / MiB, (double)zm.h_params / MiB);
        double up, down;
        zero_transfer_formula(s->zero, s->n_micro, &up, &down);
        lm_log("transfers per step (formula): H2D %.0f B, D2H %.0f B per rank%s\n", up, down,
               zm.n_par_host && (s->cfg.prefetch > 0 || s->cfg.device_memory)
                   ? " (parameter uploads: at most; chunks used again soon stay gathered)" : "");
    } else if (strcmp(s->cfg.offload, "none")) {
        lm_log("placement: parallel.offload = %s keeps everything on the device (it fits)\n", s->cfg.offload);
    }
    if (s->cfg.device_memory) {
        size_t used = s->dev->mem_info(s->dev, NULL, 0);
        lm_log("device budget: train.device_memory = %llu B; %zu B allocated now%s\n",
               (unsigned long long)s->cfg.device_memory, used,
               st == 3 ? ", gathered chunks and buckets come and go under it" : "");
    }
    lm_log("activation memory per rank: %zu B kept for backward, %zu B with workspace (tp %d%s)\n",
           s->model->act_kept, s->model->act_bytes, s->model->tp.size, s->model->tp.sp ? ", sequence parallel" : "");
    if ((double)(zm.weights + zm.h_params) != want_w || (double)zm.grads != want_g ||
        (double)(zm.optim + zm.h_optim) != want_o || (zm.esz != 4 && (double)(zm.master + zm.h_master) != want_m))
        lm_abort(LM_ERR_RUNTIME, "memory accounting does not match the ZeRO-%d formula", st);
}

/* The tensor-parallel split of this rank. */
void tp_report(const lm_model *m, const lm_group *g) {
    const lm_tp_dims *L = &m->ld;
    lm_log("tensor parallel: tp %d%s; per rank %d of %d query heads, %d kv head(s)%s, %d of %d ffn columns, "
           "%d vocabulary rows (vocabulary %d padded to %d); collectives on %s\n",
           m->tp.size, m->tp.sp ? " with sequence parallelism" : "", L->H, m->s.n_heads, L->KV,
           L->kv_replicas > 1 ? " (replicated)" : "", L->F, m->s.ffn_dim, L->V, m->s.vocab_size, L->Vp,
           comm_dev_backend(g));
}

/* The pipeline's plan on this run. */
void pipe_report(lm_session *S) {
    const lm_pp_split *sp = &S->split;
    char list[1024] = "";
    for (int c = 0; c < sp->n_chunks; c++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", c ? "," : "", sp->count[c]);
    int slots = S->model->pp.n_slots;
    comm_allreduce_max_i32(comm_world(), &slots, 1);
    lm_log("pipeline: pp %d, schedule %s, %d model chunk(s) per stage, layers per chunk %s; %d micro-batches per "
           "step; at most %d activation set(s) per stage\n",
           S->cfg.pp, S->pp_kind == LM_PP_INTERLEAVED ? "interleaved" : "1f1b", sp->v, list, S->n_micro, slots);
}


void bubble_add(bubble *b, const lm_pipe *p) {
    double span, busy;
    pipe_times(p, &span, &busy);
    b->idle += span - busy;
    b->busy += busy;
    b->steps++;
}

/* The measured bubble per stage (idle time over compute time, the largest
 * over the stage's ranks) next to Megatron's (p-1)/m, (p-1)/(v m). */
void bubble_report(lm_session *S, const bubble *b) {
    int pp = S->cfg.pp, v = S->model->pp.v, m = S->n_micro;
    double *f = lm_alloc(sizeof(double) * (size_t)pp);
    f[S->topo.pp_rank] = b->busy > 0 ? b->idle / b->busy : 0.0;
    comm_allreduce_max_f64(comm_world(), f, (size_t)pp);
    lm_log("pipeline bubble (idle / compute time per stage, over %ld step(s)):", b->steps);
    for (int st = 0; st < pp; st++) lm_log(" stage %d %.3f;", st, f[st]);
    lm_log(" formula (p-1)/(v m) = %.3f\n", (double)(pp - 1) / ((double)v * m));
    lm_free(f);
}

/* What the tensor-parallel group moved per step (tot: summed over the
 * steps run), next to the count the model's schedule implies
 * (tp_comm_formula). */
void tp_comm_report(const lm_model *m, const lm_group *g, const lm_comm_stats *tot, long steps,
                           int n_micro, int zero, int dp) {
    lm_comm_stats want, zs = {0};
    const lm_comm_stats *before = &zs, now = *tot;
    double n = (double)steps;
    double e = !strcmp(comm_dev_backend(g), "nccl") ? (double)lm_dtype_size(m->dev->dtype) : 4.0;
    tp_comm_formula(m, n_micro, e, &want);
    lm_log("tensor-parallel communication per step (rank 0; payload bytes, and bytes sent = received under ring "
           "algorithms):\n"
           "  measured: all-reduce %.0f, reduce-scatter %.0f, all-gather %.0f; sent %.0f in %.1f calls\n"
           "  formula:  all-reduce %.0f, reduce-scatter %.0f, all-gather %.0f; sent %.0f%s\n",
           (now.allreduce_bytes - before->allreduce_bytes) / n,
           (now.reduce_scatter_bytes - before->reduce_scatter_bytes) / n,
           (now.allgather_bytes - before->allgather_bytes) / n, (now.sent - before->sent) / n,
           (double)(now.calls - before->calls) / n, want.allreduce_bytes, want.reduce_scatter_bytes,
           want.allgather_bytes, want.sent,
           m->tp.sp && (zero || dp > 1) ? " (norm-weight sums counted at ZeRO-0, dp 1)" : "");
}

/* Where the run's time went, per region (exclusive seconds, the largest
 * over ranks: one max-reduction), and lamina's SDE counters at the end
 * (read through PAPI; bytes summed over ranks). Collective. */
void region_report(const lm_group *world) {
    lm_prof_window t;
    prof_collect(NULL);
    prof_totals(&t);
    double v[PROF_N + 2];
    for (int r = 0; r <= PROF_N; r++) v[r] = t.excl[r];
    v[PROF_N + 1] = t.t1 - t.t0;
    comm_allreduce_max_f64(world, v, PROF_N + 2);
    double wall = v[PROF_N + 1] > 0 ? v[PROF_N + 1] : 1.0;
    int order[PROF_N + 1], n = 0;
    for (int r = 0; r <= PROF_N; r++)
        if (v[r] > 0 || (r < PROF_N && t.calls[r] > 0)) order[n++] = r;
    for (int i = 1; i < n; i++) /* by time, largest first */
        for (int j = i; j > 0 && v[order[j]] > v[order[j - 1]]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    lm_log("regions (exclusive seconds, the largest over ranks; %% of the run's %.2f s since start-up; calls on "
           "rank 0):\n", v[PROF_N + 1]);
    for (int i = 0; i < n; i++) {
        int r = order[i];
        if (r == PROF_OTHER)
            lm_log("  %-20s %10.3f s %6.1f%%\n", prof_name(r), v[r], 100.0 * v[r] / wall);
        else
            lm_log("  %-20s %10.3f s %6.1f%% %10ld\n", prof_name(r), v[r], 100.0 * v[r] / wall, t.calls[r]);
    }
    double tv[LM_SDE_N + 1], sum[LM_SDE_N + 1];
    int bad = sde_read_total(tv) != 0;
    for (int i = 0; i < LM_SDE_N; i++) sum[i] = bad ? 0.0 : tv[i];
    sum[LM_SDE_N] = bad;
    comm_allreduce_sum_f64(world, sum, LM_SDE_N + 1);
    if (sum[LM_SDE_N] > 0) return;
    lm_log("PAPI software-defined events sde:::LAMINA:: at the end: TOKENS %.0f, MODEL_FLOPS %.6g, STEPS %.0f (the "
           "job's); summed over the %d rank(s):", tv[LM_SDE_TOKENS], tv[LM_SDE_MODEL_FLOPS], tv[LM_SDE_STEPS],
           world->size);
    for (int i = 0; i < LM_SDE_N; i++)
        if (i != LM_SDE_TOKENS && i != LM_SDE_MODEL_FLOPS && i != LM_SDE_STEPS)
            lm_log(" %s %.0f%s", sde_name(i), sum[i], i == LM_SDE_N - 1 ? "\n" : ",");
}

