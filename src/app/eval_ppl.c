/* eval_ppl.c — the ppl: task: per-category mean loss per target token,
 * perplexity exp(loss) and bits per byte (sum CE / ln 2 / UTF-8 bytes).
 *
 * FILE is JSONL (.jsonl: "text" and an optional "category" per line) or
 * plain text (any other name: the whole file one document); a document
 * without a category takes the file's basename without its extension.
 * Each document is BOS, its text and EOS in the model's tokenizer, cut
 * into windows of at most T + 1 tokens that overlap by one (window w feeds
 * tokens [wT, wT + n) and predicts [wT + 1, wT + n + 1)), so that every
 * token after BOS is a target exactly once; the document's UTF-8 bytes
 * count towards its category. */
#include "eval.h"
#include "common.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *text;
    int cat;
} doc;

typedef struct {
    doc *d;
    int n, cap;
    char **cats;
    int ncat;
} docs;

static int cat_index(docs *D, const char *name) {
    for (int i = 0; i < D->ncat; i++)
        if (!strcmp(D->cats[i], name)) return i;
    D->cats = lm_realloc(D->cats, sizeof(char *) * (size_t)(D->ncat + 1));
    D->cats[D->ncat] = lm_strdup(name);
    return D->ncat++;
}

static void add_doc(docs *D, const char *text, size_t len, const char *cat) {
    if (D->n == D->cap) D->d = lm_realloc(D->d, sizeof(doc) * (size_t)(D->cap = D->cap ? 2 * D->cap : 64));
    char *t = lm_alloc(len + 1);
    memcpy(t, text, len);
    t[len] = 0;
    D->d[D->n++] = (doc){.text = t, .cat = cat_index(D, cat)};
}

/* The file's basename without its extension. */
static void base_name(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(out, n, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void read_docs(const char *path, docs *D) {
    memset(D, 0, sizeof *D);
    char base[LM_PATHLEN];
    base_name(path, base, sizeof base);
    FILE *f = fopen(path, "rb");
    if (!f) lm_fail(LM_ERR_INPUT, "--task ppl:%s: cannot open the file", path);
    if (ends_with(path, ".h5"))
        lm_fail(LM_ERR_INPUT, "--task ppl:%s: token files are not read by eval in this version: give the text "
                              "(.jsonl with \"text\" per line, or plain text)", path);
    if (!ends_with(path, ".jsonl")) {
        size_t cap = 1 << 16, n = 0;
        char *buf = lm_alloc(cap);
        for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
            n += got;
            if (n == cap) buf = lm_realloc(buf, cap *= 2);
        }
        fclose(f);
        if (memchr(buf, 0, n)) lm_fail(LM_ERR_INPUT, "--task ppl:%s: a NUL byte in the text", path);
        if (!n) lm_fail(LM_ERR_INPUT, "--task ppl:%s: the file is empty", path);
        add_doc(D, buf, n, base);
        lm_free(buf);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    int ln = 0;
    for (ssize_t len; (len = getline(&line, &cap, f)) >= 0;) {
        ln++;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) continue;
        json_error_t je;
        json_t *o = json_loads(p, JSON_REJECT_DUPLICATES, &je);
        if (!o || !json_is_object(o)) lm_fail(LM_ERR_INPUT, "%s:%d: not a JSON object%s%s", path, ln, o ? "" : ": ", o ? "" : je.text);
        json_t *t = json_object_get(o, "text"), *c = json_object_get(o, "category");
        if (!json_is_string(t) || !json_string_length(t))
            lm_fail(LM_ERR_INPUT, "%s:%d: \"text\" must be a non-empty string", path, ln);
        if (c && (!json_is_string(c) || !json_string_length(c)))
            lm_fail(LM_ERR_INPUT, "%s:%d: \"category\" must be a non-empty string", path, ln);
        if (strlen(json_string_value(t)) != json_string_length(t))
            lm_fail(LM_ERR_INPUT, "%s:%d: \"text\" holds a NUL character", path, ln);
        add_doc(D, json_string_value(t), json_string_length(t), c ? json_string_value(c) : base);
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (!D->n) lm_fail(LM_ERR_INPUT, "--task ppl:%s: no documents", path);
}

json_t *eval_ppl(lm_session *S, const eval_ctx *e, const char *file) {
    docs D;
    read_docs(file, &D);
    const lm_tokenizer *tk = e->tk;
    int T = e->T, nrows = 0, cap = 0;
    eval_row *rows = NULL;
    int *row_cat = NULL;
    double *bytes = lm_calloc((size_t)D.ncat, sizeof(double)), *targets = lm_calloc((size_t)D.ncat, sizeof(double));
    for (int i = 0; i < D.n; i++) {
        size_t len = strlen(D.d[i].text), k = 0, mx = tk->max_tokens(tk, len) + 2;
        uint32_t *u = lm_alloc(sizeof(uint32_t) * mx);
        if (tk->bos >= 0) u[k++] = (uint32_t)tk->bos;
        k += tk->encode(tk, D.d[i].text, len, u + k, mx - k);
        if (tk->eos >= 0) u[k++] = (uint32_t)tk->eos;
        bytes[D.d[i].cat] += (double)len;
        for (size_t w = 0; w + 1 < k; w += (size_t)T) {
            int n = k - 1 - w < (size_t)T ? (int)(k - 1 - w) : T;
            if (nrows == cap) {
                rows = lm_realloc(rows, sizeof(eval_row) * (size_t)(cap = cap ? 2 * cap : 64));
                row_cat = lm_realloc(row_cat, sizeof(int) * (size_t)cap);
            }
            eval_row *r = &rows[nrows];
            *r = (eval_row){.n = n, .ids = lm_alloc(sizeof(int32_t) * (size_t)n), .tgt = lm_alloc(sizeof(int32_t) * (size_t)n)};
            for (int t = 0; t < n; t++) r->ids[t] = (int32_t)u[w + (size_t)t], r->tgt[t] = (int32_t)u[w + (size_t)t + 1];
            targets[D.d[i].cat] += n;
            row_cat[nrows++] = D.d[i].cat;
        }
        lm_free(u);
    }
    double *ll = lm_alloc(sizeof(double) * (size_t)(nrows ? nrows : 1)), dummy = 0;
    eval_fwd_stats st;
    eval_forward_rows(S, rows, nrows, ll, &dummy, &st);
    double *ce = lm_calloc((size_t)D.ncat, sizeof(double));
    for (int r = 0; r < nrows; r++) ce[row_cat[r]] -= ll[r];
    json_t *res = json_object(), *by = json_object();
    double CE = 0, NT = 0, NB = 0;
    for (int k = 0; k < D.ncat; k++) {
        json_t *o = json_object();
        double loss = targets[k] > 0 ? ce[k] / targets[k] : NAN;
        json_object_set_new(o, "loss", eval_num(loss));
        json_object_set_new(o, "ppl", eval_num(exp(loss)));
        json_object_set_new(o, "bpb", eval_num(bytes[k] > 0 ? ce[k] / M_LN2 / bytes[k] : NAN));
        json_object_set_new(o, "tokens", json_integer((json_int_t)targets[k]));
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes[k]));
        json_object_set_new(by, D.cats[k], o);
        CE += ce[k], NT += targets[k], NB += bytes[k];
    }
    double loss = NT > 0 ? CE / NT : NAN;
    json_object_set_new(res, "kind", json_string("ppl"));
    json_object_set_new(res, "file", json_string(file));
    json_object_set_new(res, "loss", eval_num(loss));
    json_object_set_new(res, "ppl", eval_num(exp(loss)));
    json_object_set_new(res, "bpb", eval_num(NB > 0 ? CE / M_LN2 / NB : NAN));
    json_object_set_new(res, "tokens", json_integer((json_int_t)NT));
    json_object_set_new(res, "bytes", json_integer((json_int_t)NB));
    json_object_set_new(res, "documents", json_integer(D.n));
    json_object_set_new(res, "seconds", eval_num(st.seconds));
    json_object_set_new(res, "tokens_per_s", eval_num(st.seconds > 0 ? (double)st.tokens / st.seconds : NAN));
    json_object_set_new(res, "by_category", by);
    for (int r = 0; r < nrows; r++) lm_free(rows[r].ids), lm_free(rows[r].tgt);
    lm_free(rows);
    lm_free(row_cat);
    lm_free(ll);
    lm_free(ce);
    lm_free(bytes);
    lm_free(targets);
    for (int i = 0; i < D.n; i++) lm_free(D.d[i].text);
    for (int k = 0; k < D.ncat; k++) lm_free(D.cats[k]);
    lm_free(D.d);
    lm_free(D.cats);
    return res;
}
