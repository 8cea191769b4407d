/* valid.c — see valid.h. */
#include "valid.h"
#include "common.h"
#include "data.h"
#include "prof.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

struct lm_valid {
    lm_session *s;
    lm_data *data;
    char files[LM_PATHLEN];
    lm_batch batch;
    int64_t n_samples;     /* samples evaluated (the first of the stream) */
    long n_batches;        /* global batches */
    int K;                 /* categories */
    const char **names;    /* [K] */
    /* per category: CE sum, target tokens, bytes, samples without bytes,
     * samples; then the results */
    double *sums;          /* [5K] */
    double *loss, *bpb;    /* [K] */
    double *row_loss;      /* [R] host */
    void *sendbuf;         /* pipeline: one activation message */
    int warned;            /* the no-bytes note was printed */
};

lm_valid *valid_open(lm_session *s, const char *files, const char *key) {
    if (!files || !files[0]) return NULL;
    const lm_config *c = &s->cfg;
    lm_valid *v = lm_calloc(1, sizeof *v);
    v->s = s;
    snprintf(v->files, sizeof v->files, "%s", files);
    /* file order: the held-out stream is never shuffled */
    lm_config vc;
    memcpy(&vc, c, sizeof vc);
    vc.shuffle = 0;
    char err[LM_ERRLEN] = {0};
    v->data = data_open_list(files, key, &vc, err, sizeof err);
    if (comm_agree(comm_world(), v->data ? 0 : LM_ERR_INPUT, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    int64_t n = data_n_samples(v->data), GB = c->global_batch;
    long all = (long)((n + GB - 1) / GB);
    v->n_batches = c->eval_batches > 0 && c->eval_batches < all ? c->eval_batches : all;
    v->n_samples = (int64_t)v->n_batches * GB < n ? (int64_t)v->n_batches * GB : n;
    v->K = data_n_categories(v->data);
    v->names = lm_alloc(sizeof(char *) * (size_t)(v->K ? v->K : 1));
    for (int k = 0; k < v->K; k++) v->names[k] = data_category(v->data, k);
    v->sums = lm_alloc(sizeof(double) * 5 * (size_t)(v->K ? v->K : 1));
    v->loss = lm_alloc(sizeof(double) * (size_t)(v->K ? v->K : 1));
    v->bpb = lm_alloc(sizeof(double) * (size_t)(v->K ? v->K : 1));
    batch_alloc(&v->batch, s->n_micro, c->micro_batch, c->seq_len);
    v->row_loss = lm_alloc(sizeof(double) * (size_t)s->model->R);
    if (c->pp > 1)
        v->sendbuf = s->dev->alloc(s->dev, (size_t)s->model->Rx * (size_t)c->dim * lm_dtype_size(s->dev->dtype));
    lm_log("validation: %s (%s): %lld of its %lld samples (%ld global batch(es)%s), %d categor%s, on %s%s\n", files,
           key, (long long)v->n_samples, (long long)n, v->n_batches,
           c->eval_batches > 0 && c->eval_batches < all ? "" : ": the whole file", v->K, v->K == 1 ? "y" : "ies",
           c->eval_every > 0 ? "every train.eval_every steps and " : "", "the last step of each stage");
    return v;
}

void valid_close(lm_valid *v) {
    if (!v) return;
    if (v->sendbuf) v->s->dev->free(v->s->dev, v->sendbuf);
    batch_free(&v->batch);
    data_close(v->data);
    lm_free(v->names);
    lm_free(v->sums);
    lm_free(v->loss);
    lm_free(v->bpb);
    lm_free(v->row_loss);
    lm_free(v);
}

/* The rows of micro-batch mb are in v->row_loss: each local sample's loss
 * and targets into its category's sums (samples past the stream's first
 * n_samples, the repeats that fill a partial last batch, are left out). */
static void add_micro(lm_valid *v, int mb, int64_t first_local) {
    const lm_batch *b = &v->batch;
    int T = b->T;
    for (int i = 0; i < b->B; i++) {
        int j = mb * b->B + i; /* the local sample */
        if (first_local + j >= v->n_samples) continue;
        const int32_t *tg = b->targets + (size_t)j * T;
        double ce = 0.0, nt = 0.0;
        for (int t = 0; t < T; t++)
            if (tg[t] >= 0) {
                ce += v->row_loss[(size_t)i * T + t];
                nt += 1.0;
            }
        int k = b->row_category[j];
        if (k < 0 || k >= v->K) lm_abort(LM_ERR_RUNTIME, "valid: category %d of %d", k, v->K);
        double *s = v->sums + 5 * (size_t)k;
        s[4] += 1.0;
        if (nt == 0) continue; /* every target masked: neither loss nor bytes */
        s[0] += ce;
        s[1] += nt;
        if (b->row_bytes[j] >= 0) s[2] += (double)b->row_bytes[j];
        else s[3] += 1.0;
    }
}

/* One global batch forward through the model chunks in order, micro-batch
 * by micro-batch: with a pipeline, each model chunk c = j pp + stage runs
 * on its stage after receiving chunk c - 1's output and sends its own to
 * chunk c + 1's (tags 2C + c, apart from the training schedule's); the
 * stages walk the chunks in the same order, so every send meets a posted
 * receive. The last chunk's stage takes the losses. */
static void forward_batch(lm_valid *v, int64_t first_local, int sums_here) {
    lm_session *s = v->s;
    lm_model *m = s->model;
    const lm_batch *b = &v->batch;
    size_t R = (size_t)m->R;
    int pp = s->cfg.pp, C = pp * m->pp.v, stage = s->topo.pp_rank;
    size_t bytes = (size_t)m->Rx * (size_t)m->s.dim * lm_dtype_size(s->dev->dtype);
    for (int mb = 0; mb < b->n_micro; mb++) {
        const int32_t *ids = b->ids + mb * R, *tg = b->targets + mb * R;
        if (pp == 1) {
            model_chunk_forward(m, 0, 0, ids, NULL);
            model_chunk_eval(m, 0, tg, v->row_loss);
        } else {
            for (int c = 0; c < C; c++) {
                if (c % pp != stage) continue;
                int j = c / pp;
                lm_req q;
                if (c > 0) {
                    comm_dev_irecv(s->topo.pp_group, model_chunk_input(m, j, 0), bytes, (c - 1) % pp, 2 * C + c, &q);
                    comm_wait(&q);
                }
                model_chunk_forward(m, j, 0, ids, c < C - 1 ? v->sendbuf : NULL);
                if (c < C - 1) {
                    s->dev->sync(s->dev);
                    comm_dev_isend(s->topo.pp_group, v->sendbuf, bytes, (c + 1) % pp, 2 * C + c + 1, &q);
                    comm_wait(&q);
                } else {
                    model_chunk_eval(m, 0, tg, v->row_loss);
                }
            }
        }
        if (sums_here) add_micro(v, mb, first_local);
    }
}

void valid_run(lm_valid *v, lm_valid_result *out) {
    lm_session *s = v->s;
    const lm_config *c = &s->cfg;
    int K = v->K, GB = c->global_batch, dp = s->topo.dp;
    char err[LM_ERRLEN] = {0};
    prof_enter(PROF_FORWARD_BACKWARD);
    /* ZeRO-3: the evaluation's fetches are not a training step's; a fresh
     * step window keeps them out of the prefetch trace */
    if (s->zero && s->model->params.managed) zero_step_begin(s->zero);
    memset(v->sums, 0, sizeof(double) * 5 * (size_t)K);
    /* the sums of each data-parallel rank's samples: on the last stage's
     * first tensor-parallel rank (every tp rank computes the same losses) */
    int sums_here = s->topo.pp_rank == c->pp - 1 && s->topo.tp_rank == 0;
    for (long bi = 0; bi < v->n_batches; bi++) {
        int64_t first = (int64_t)bi * GB;
        int rc = data_fill(v->data, first, GB, s->topo.dp_rank, dp, &v->batch, err, sizeof err);
        if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "validation data: %s", err);
        forward_batch(v, first + (int64_t)s->topo.dp_rank * (GB / dp), sums_here);
    }
    if (!s->dev->host_visible) s->dev->sync(s->dev);
    comm_allreduce_sum_f64(comm_world(), v->sums, 5 * (size_t)K);
    prof_exit(PROF_FORWARD_BACKWARD);
    double ce = 0, nt = 0, by = 0, miss = 0, ns = 0;
    for (int k = 0; k < K; k++) {
        const double *q = v->sums + 5 * (size_t)k;
        v->loss[k] = q[1] > 0 ? q[0] / q[1] : NAN;
        v->bpb[k] = q[1] > 0 && q[3] == 0 && q[2] > 0 ? q[0] / M_LN2 / q[2] : NAN;
        ce += q[0], nt += q[1], by += q[2], miss += q[3], ns += q[4];
    }
    *out = (lm_valid_result){.loss = nt > 0 ? ce / nt : NAN, .bpb = nt > 0 && miss == 0 && by > 0 ? ce / M_LN2 / by : NAN,
                             .n_cat = K, .cat_names = v->names, .cat_loss = v->loss, .cat_bpb = v->bpb,
                             .tokens = (long long)nt, .samples = (long long)ns};
    if (miss > 0 && !v->warned) {
        v->warned = 1;
        lm_log("validation: %.0f of the %.0f samples evaluated have no /samples/bytes (a token file written without "
               "it): bits per byte is reported as null where they count\n", miss, ns);
    }
}

/* "1.2345" or "n/a" */
static const char *num(char *buf, size_t n, double x) {
    if (isfinite(x)) snprintf(buf, n, "%.4f", x);
    else snprintf(buf, n, "n/a");
    return buf;
}

void valid_log(const lm_valid *v, const lm_valid_result *r, long step) {
    char a[32], b[32], line[4096];
    size_t w = (size_t)snprintf(line, sizeof line, "eval  %6ld | val_loss %s | val_bpb %s | %lld tokens in %lld samples",
                                step, num(a, sizeof a, r->loss), num(b, sizeof b, r->bpb), r->tokens, r->samples);
    for (int k = 0; k < r->n_cat && w < sizeof line; k++)
        w += (size_t)snprintf(line + w, sizeof line - w, "%s %s: loss %s bpb %s", k ? ";" : " |", r->cat_names[k],
                              num(a, sizeof a, r->cat_loss[k]), num(b, sizeof b, r->cat_bpb[k]));
    (void)v;
    lm_log("%s\n", line);
}
