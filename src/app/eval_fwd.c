/* eval_fwd.c — scoring rows of tokens on any layout (see eval.h).
 *
 * Rows go in global batches of dp x B: batch g's rows [g dp B + r B,
 * g dp B + (r + 1) B) belong to data-parallel rank r (every rank runs the
 * same number of batches; missing rows are padding). Each row is
 * right-padded with id 0 and targets -1 to the sequence length T: under
 * causal attention position t sees only positions <= t, so a row's real
 * positions get exactly the logits of the row alone.
 *
 * A batch goes through the model chunks in order (with pipeline
 * parallelism the activations pass stage to stage, as validation does:
 * valid.c); on the last chunk's stage model_chunk_eval gives each
 * position's -log softmax(logits)[target] (the vocabulary-parallel
 * statistics combined under tensor parallelism) and leaves the final norm
 * in place, so that model_logits_row gives the full logits of a row's last
 * position (all-gathered over the tensor-parallel group). The last stage's
 * first tensor-parallel rank writes its rows' results into zeroed arrays
 * of every row, which one float64 sum over the world then gives to every
 * rank (each entry has exactly one writer, so the sum is exact). */
#include "eval.h"
#include "common.h"
#include "comm_dev.h"
#include <string.h>

void eval_forward_rows(lm_session *S, const eval_row *rows, int nrows, double *ll, double *q, eval_fwd_stats *st) {
    lm_model *m = S->model;
    int B = m->B, T = m->T, dp = S->topo.dp, dr = S->topo.dp_rank;
    int pp = S->cfg.pp, C = pp * m->pp.v, stage = S->topo.pp_rank, V = S->cfg.vocab_size;
    int last = stage == pp - 1, owner = last && S->topo.tp_rank == 0;
    size_t bytes = (size_t)m->Rx * (size_t)m->s.dim * lm_dtype_size(S->dev->dtype);
    size_t *qoff = lm_alloc(sizeof(size_t) * (size_t)(nrows + 1));
    qoff[0] = 0;
    for (int i = 0; i < nrows; i++) {
        if (rows[i].n < 1 || rows[i].n > T) lm_abort(LM_ERR_RUNTIME, "eval: row %d of %d tokens (T = %d)", i, rows[i].n, T);
        qoff[i + 1] = qoff[i] + (size_t)rows[i].nq;
    }
    memset(ll, 0, sizeof(double) * (size_t)nrows);
    memset(q, 0, sizeof(double) * qoff[nrows]);
    int32_t *ids = lm_alloc(sizeof(int32_t) * (size_t)B * T), *tg = lm_alloc(sizeof(int32_t) * (size_t)B * T);
    double *row_loss = lm_alloc(sizeof(double) * (size_t)m->R);
    float *logits = lm_alloc(sizeof(float) * (size_t)V);
    void *sendbuf = pp > 1 ? S->dev->alloc(S->dev, bytes) : NULL;
    long nb = ((long)nrows + (long)dp * B - 1) / ((long)dp * B);
    double t0 = lm_now();
    *st = (eval_fwd_stats){0};
    for (long g = 0; g < nb; g++) {
        long r0 = g * dp * B + (long)dr * B;
        for (int b = 0; b < B; b++) {
            int32_t *x = ids + (size_t)b * T, *y = tg + (size_t)b * T;
            long r = r0 + b;
            int n = r < nrows ? rows[r].n : 0;
            for (int t = 0; t < T; t++) {
                x[t] = t < n ? rows[r].ids[t] : 0;
                y[t] = t < n && rows[r].tgt ? rows[r].tgt[t] : -1;
            }
            st->tokens += n;
        }
        st->forwards++;
        for (int c = 0; c < C; c++) {
            if (c % pp != stage) continue;
            int j = c / pp;
            lm_req rq;
            if (c > 0) {
                comm_dev_irecv(S->topo.pp_group, model_chunk_input(m, j, 0), bytes, (c - 1) % pp, 2 * C + c, &rq);
                comm_wait(&rq);
            }
            model_chunk_forward(m, j, 0, ids, c < C - 1 ? sendbuf : NULL);
            if (c < C - 1) {
                S->dev->sync(S->dev);
                comm_dev_isend(S->topo.pp_group, sendbuf, bytes, (c + 1) % pp, 2 * C + c + 1, &rq);
                comm_wait(&rq);
            }
        }
        if (!last) continue;
        model_chunk_eval(m, 0, tg, row_loss);
        for (int b = 0; b < B; b++) {
            long r = r0 + b;
            if (r >= nrows) break;
            const eval_row *w = &rows[r];
            double s = 0.0;
            for (int t = 0; t < w->n; t++)
                if (w->tgt && w->tgt[t] >= 0) s -= row_loss[(size_t)b * T + t];
            if (owner) ll[r] = s;
            if (w->nq <= 0) continue;
            model_logits_row(m, b * T + w->n - 1, logits);
            if (owner)
                for (int k = 0; k < w->nq; k++) q[qoff[r] + k] = logits[w->qids[k]];
        }
    }
    if (!S->dev->host_visible) S->dev->sync(S->dev);
    comm_allreduce_sum_f64(comm_world(), ll, (size_t)nrows);
    comm_allreduce_sum_f64(comm_world(), q, qoff[nrows]);
    double tk = (double)st->tokens;
    comm_allreduce_sum_f64(S->topo.dp_group, &tk, 1); /* every dp rank's rows */
    st->tokens = (long long)tk;
    st->seconds = lm_now() - t0;
    if (sendbuf) S->dev->free(S->dev, sendbuf);
    lm_free(ids);
    lm_free(tg);
    lm_free(row_loss);
    lm_free(logits);
    lm_free(qoff);
}
