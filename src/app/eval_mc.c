/* eval_mc.c — the mc: task (SPEC §10; ColossalEval's method).
 *
 * Letter scores: per test item one row, BOS and the prompt (header, the
 * subject's dev items as worked examples, the item ending "Answer: "); the
 * dev items are dropped from the front while the prompt is longer than the
 * context T; a 0-shot prompt still too long keeps its last T tokens (said
 * once per task). Letter L's score is max(logit[a_L], logit[z_L]) of the
 * next token after the prompt, a_L and z_L the last ids of
 * encode("Answer: L") and encode("答案：L"); the prediction is the first
 * letter of the largest score.
 *
 * Length-normalised log-likelihood (lm-eval-harness's acc_norm), beside
 * it: context = BOS, the header, the same worked examples, then
 * "Question: {q}\nAnswer:" (zh "题目：{q}\n答案：") without the lettered
 * list; continuation = " {choice}" (zh "{choice}"). whole = BOS +
 * encode(context + continuation); its tokens past the first
 * len(BOS + encode(context)) are the continuation's (at least the last
 * one). Score = sum of log p(continuation tokens) / UTF-8 bytes of the
 * continuation; one row per choice, whole[0..n-1) fed, whole[1..n) the
 * targets. Dev items are dropped while the longest choice's row exceeds
 * T; a row still too long keeps its last T positions. */
#include "eval.h"
#include "common.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* BOS (with bos) and the ids of text; *n their count; lm_alloc'd. */
static int32_t *encode(const lm_tokenizer *tk, const char *text, int bos, int *n) {
    size_t len = strlen(text), cap = tk->max_tokens(tk, len) + 2, k = 0;
    uint32_t *u = lm_alloc(sizeof(uint32_t) * cap);
    if (bos && tk->bos >= 0) u[k++] = (uint32_t)tk->bos;
    k += tk->encode(tk, text, len, u + k, cap - k);
    int32_t *out = lm_alloc(sizeof(int32_t) * (k ? k : 1));
    for (size_t i = 0; i < k; i++) out[i] = (int32_t)u[i];
    lm_free(u);
    *n = (int)k;
    return out;
}

/* The last id of encode(text). */
static int32_t last_id(const lm_tokenizer *tk, const char *text) {
    int n;
    int32_t *x = encode(tk, text, 0, &n);
    if (!n) lm_fail(LM_ERR_INPUT, "eval: the %s tokenizer encodes '%s' to no tokens", tk->name, text);
    int32_t id = x[n - 1];
    lm_free(x);
    return id;
}

/* Keeps the last `keep` of *n ids (moving them to the front). */
static void keep_last(int32_t *x, int *n, int keep) {
    if (*n <= keep) return;
    memmove(x, x + (*n - keep), sizeof(int32_t) * (size_t)keep);
    *n = keep;
}

/* The subject's dev items (at most `shots` of them; -1 all), file order. */
static int dev_items(const mc_set *s, int subject, int shots, const mc_item **out) {
    int n = 0;
    for (int i = 0; i < s->n && (shots < 0 || n < shots); i++)
        if (s->items[i].dev && s->items[i].subject == subject) out[n++] = &s->items[i];
    return n;
}

/* The letter row of test item t. */
static void letter_row(const mc_set *s, const eval_ctx *e, const mc_item *t, const mc_item **dev, int ndev,
                       const int32_t *qids, eval_row *row, int *shots, int *cut) {
    for (int k = ndev;; k--) {
        char *p = mc_render(s, t, dev + (ndev - k), k, 0);
        int n;
        int32_t *x = encode(e->tk, p, 1, &n);
        lm_free(p);
        if (n <= e->T || k == 0) {
            if (n > e->T) {
                keep_last(x, &n, e->T);
                (*cut)++;
            }
            *row = (eval_row){.n = n, .ids = x, .nq = 2 * t->n_choices, .qids = qids};
            *shots = k;
            return;
        }
        lm_free(x);
    }
}

/* The choice rows of test item t (row[0 .. n_choices)). */
static void loglik_rows(const mc_set *s, const eval_ctx *e, const mc_item *t, const mc_item **dev, int ndev,
                        eval_row *row, int *shots, int *cut) {
    int nc = t->n_choices;
    int32_t **w = lm_alloc(sizeof(int32_t *) * (size_t)nc);
    int *nw = lm_alloc(sizeof(int) * (size_t)nc), *cs = lm_alloc(sizeof(int) * (size_t)nc);
    for (int k = ndev;; k--) {
        char *ctx = mc_render(s, t, dev + (ndev - k), k, 1);
        int nctx, longest = 0;
        lm_free(encode(e->tk, ctx, 1, &nctx));
        for (int c = 0; c < nc; c++) {
            char *cont = mc_continuation(s, t, c);
            size_t a = strlen(ctx), b = strlen(cont);
            char *all = lm_alloc(a + b + 1);
            memcpy(all, ctx, a);
            memcpy(all + a, cont, b + 1);
            w[c] = encode(e->tk, all, 1, &nw[c]);
            cs[c] = nctx < nw[c] - 1 ? nctx : nw[c] - 1;
            if (cs[c] < 1) cs[c] = 1;
            if (nw[c] - 1 > longest) longest = nw[c] - 1;
            lm_free(all);
            lm_free(cont);
        }
        lm_free(ctx);
        if (longest <= e->T || k == 0) {
            if (longest > e->T) (*cut)++;
            for (int c = 0; c < nc; c++) {
                int n = nw[c] - 1, drop = n > e->T ? n - e->T : 0;
                eval_row *r = &row[c];
                r->n = n - drop;
                r->ids = lm_alloc(sizeof(int32_t) * (size_t)r->n);
                r->tgt = lm_alloc(sizeof(int32_t) * (size_t)r->n);
                for (int p = 0; p < r->n; p++) {
                    int src = p + drop; /* position src of whole predicts whole[src + 1] */
                    r->ids[p] = w[c][src];
                    r->tgt[p] = src + 1 >= cs[c] ? w[c][src + 1] : -1;
                }
                r->nq = 0;
                lm_free(w[c]);
            }
            *shots = k;
            break;
        }
        for (int c = 0; c < nc; c++) lm_free(w[c]);
    }
    lm_free(w);
    lm_free(nw);
    lm_free(cs);
}

/* UTF-8 bytes of choice c's continuation. */
static double cont_bytes(const mc_set *s, const mc_item *t, int c) {
    char *x = mc_continuation(s, t, c);
    double n = (double)strlen(x);
    lm_free(x);
    return n;
}

json_t *eval_mc(lm_session *S, const eval_ctx *e, const char *file) {
    mc_set s;
    mc_read(file, &s);
    mc_set_lang(&s, e->lang);
    int32_t qids[2 * MC_MAX_CHOICES];
    for (int L = 0; L < MC_MAX_CHOICES; L++) {
        char a[32], z[32];
        snprintf(a, sizeof a, "Answer: %c", 'A' + L);
        snprintf(z, sizeof z, "答案：%c", 'A' + L);
        qids[2 * L] = last_id(e->tk, a);
        qids[2 * L + 1] = last_id(e->tk, z);
    }
    int ntest = 0, nrows_ll = 0;
    for (int i = 0; i < s.n; i++)
        if (!s.items[i].dev) ntest++, nrows_ll += s.items[i].n_choices;
    int *test = lm_alloc(sizeof(int) * (size_t)ntest), *shots = lm_alloc(sizeof(int) * (size_t)ntest),
        *shots_ll = lm_alloc(sizeof(int) * (size_t)ntest), *first_ll = lm_alloc(sizeof(int) * (size_t)ntest);
    eval_row *rows = lm_calloc((size_t)ntest, sizeof(eval_row)), *rows_ll = lm_calloc((size_t)nrows_ll, sizeof(eval_row));
    const mc_item **dev = lm_alloc(sizeof(mc_item *) * (size_t)s.n);
    int cut = 0, cut_ll = 0;
    for (int i = 0, j = 0, r = 0; i < s.n; i++) {
        const mc_item *t = &s.items[i];
        if (t->dev) continue;
        int nd = dev_items(&s, t->subject, e->shots, dev);
        test[j] = i;
        letter_row(&s, e, t, dev, nd, qids, &rows[j], &shots[j], &cut);
        first_ll[j] = r;
        loglik_rows(&s, e, t, dev, nd, rows_ll + r, &shots_ll[j], &cut_ll);
        r += t->n_choices;
        j++;
    }
    if (cut || cut_ll)
        lm_log("eval: %s: %d test item(s) with a 0-shot prompt longer than the context (train.seq_len = %d) for the "
               "letter scores, %d for the log-likelihood: their last %d tokens are kept\n",
               file, cut, e->T, cut_ll, e->T);
    int nq = 0;
    for (int j = 0; j < ntest; j++) nq += rows[j].nq;
    double *ll = lm_alloc(sizeof(double) * (size_t)(ntest + nrows_ll)), *q = lm_alloc(sizeof(double) * (size_t)(nq ? nq : 1));
    eval_fwd_stats st1, st2;
    eval_forward_rows(S, rows, ntest, ll, q, &st1);
    double *ll2 = ll + ntest, dummy = 0;
    eval_forward_rows(S, rows_ll, nrows_ll, ll2, &dummy, &st2);

    json_t *items = json_array(), *by = json_object(), *by_ll = json_object();
    int *right = lm_calloc((size_t)s.n_subjects, sizeof(int)), *right_ll = lm_calloc((size_t)s.n_subjects, sizeof(int)),
        *count = lm_calloc((size_t)s.n_subjects, sizeof(int));
    int all_right = 0, all_right_ll = 0;
    const double *qp = q;
    for (int j = 0; j < ntest; j++) {
        const mc_item *t = &s.items[test[j]];
        json_t *sc = json_array(), *lg = json_array();
        int pred = 0, pred_ll = 0;
        double best = -INFINITY, best_ll = -INFINITY;
        for (int c = 0; c < t->n_choices; c++) {
            double v = qp[2 * c] > qp[2 * c + 1] ? qp[2 * c] : qp[2 * c + 1];
            if (v > best) best = v, pred = c;
            double u = ll2[first_ll[j] + c] / cont_bytes(&s, t, c);
            if (u > best_ll) best_ll = u, pred_ll = c;
            json_array_append_new(sc, eval_num(v));
            json_array_append_new(lg, eval_num(u));
        }
        qp += 2 * t->n_choices;
        count[t->subject]++;
        right[t->subject] += pred == t->answer;
        right_ll[t->subject] += pred_ll == t->answer;
        all_right += pred == t->answer;
        all_right_ll += pred_ll == t->answer;
        char P[2] = {(char)('A' + pred), 0}, A[2] = {(char)('A' + t->answer), 0}, PL[2] = {(char)('A' + pred_ll), 0};
        json_t *o = json_object();
        json_object_set_new(o, "line", json_integer(t->line));
        json_object_set_new(o, "subject", json_string(s.subjects[t->subject]));
        json_object_set_new(o, "scores", sc);
        json_object_set_new(o, "prediction", json_string(P));
        json_object_set_new(o, "answer", json_string(A));
        json_object_set_new(o, "loglik", lg);
        json_object_set_new(o, "prediction_loglik", json_string(PL));
        json_object_set_new(o, "shots", json_integer(shots[j]));
        json_object_set_new(o, "shots_loglik", json_integer(shots_ll[j]));
        json_object_set_new(o, "prompt_tokens", json_integer(rows[j].n));
        json_array_append_new(items, o);
    }
    json_t *langs = json_object();
    for (int k = 0; k < s.n_subjects; k++) {
        json_object_set_new(by, s.subjects[k], eval_num((double)right[k] / count[k]));
        json_object_set_new(by_ll, s.subjects[k], eval_num((double)right_ll[k] / count[k]));
        json_object_set_new(langs, s.subjects[k], json_string(s.zh[k] ? "zh" : "en"));
    }
    double secs = st1.seconds + st2.seconds;
    json_t *r = json_object();
    json_object_set_new(r, "kind", json_string("mc"));
    json_object_set_new(r, "file", json_string(file));
    json_object_set_new(r, "accuracy", eval_num((double)all_right / ntest));
    json_object_set_new(r, "by_subject", by);
    json_object_set_new(r, "accuracy_loglik", eval_num((double)all_right_ll / ntest));
    json_object_set_new(r, "by_subject_loglik", by_ll);
    json_object_set_new(r, "language", langs);
    json_object_set_new(r, "n_items", json_integer(ntest));
    json_object_set_new(r, "seconds", eval_num(secs));
    json_object_set_new(r, "seconds_letter", eval_num(st1.seconds));
    json_object_set_new(r, "seconds_loglik", eval_num(st2.seconds));
    json_object_set_new(r, "questions_per_s", eval_num(secs > 0 ? ntest / secs : NAN));
    json_object_set_new(r, "tokens", json_integer(st1.tokens + st2.tokens));
    json_object_set_new(r, "tokens_per_s", eval_num(secs > 0 ? (double)(st1.tokens + st2.tokens) / secs : NAN));
    json_object_set_new(r, "items", items);
    for (int j = 0; j < ntest; j++) lm_free(rows[j].ids);
    for (int j = 0; j < nrows_ll; j++) lm_free(rows_ll[j].ids), lm_free(rows_ll[j].tgt);
    lm_free(rows);
    lm_free(rows_ll);
    lm_free(test);
    lm_free(shots);
    lm_free(shots_ll);
    lm_free(first_ll);
    lm_free(dev);
    lm_free(ll);
    lm_free(q);
    lm_free(right);
    lm_free(right_ll);
    lm_free(count);
    mc_free(&s);
    return r;
}
