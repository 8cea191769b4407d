/* data.c — see data.h: the file list (weights), the files' checks, the
 * categories, and filling batches. Which sample a position names:
 * data_order.c. */
#include "data_int.h"
#include "common.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* One list entry, trimmed, split into path and weight (-1: none). A
 * trailing ":<number>" is a weight; a trailing ":<anything else>" is part
 * of the path, unless only the part before the colon names a file (then
 * it is a weight that is not a number). A name that exists as a whole
 * wins over a weight. Returns 0 or LM_ERR_INPUT. */
static int parse_entry(char *e, const char *key, double *w, char *err, size_t errlen) {
    *w = -1;
    char *colon = strrchr(e, ':');
    if (!colon) return 0;
    const char *suf = colon + 1;
    *colon = 0;
    int prefix_exists = is_file(e);
    *colon = ':';
    int whole_exists = is_file(e);
    char *end = NULL;
    double v = strtod(suf, &end);
    int numeric = *suf && strspn(suf, "0123456789.eE+-") == strlen(suf) && end && !*end;
    if (!numeric) {
        if (prefix_exists && !whole_exists) {
            *colon = 0;
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: weight \"%s\" is not a number (path:weight, weight > 0)", key,
                          e, suf);
        }
        return 0;
    }
    if (whole_exists && !prefix_exists) return 0;
    *colon = 0;
    if (!*e) return lm_err(err, errlen, LM_ERR_INPUT, "%s: \":%s\": a weight without a file", key, suf);
    if (!(v > 0) || !isfinite(v))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: weight %s must be a number > 0", key, e, suf);
    *w = v;
    return 0;
}

/* The index of category `name`, added if new. */
static int cat_index(lm_data *d, const char *name) {
    for (int k = 0; k < d->n_cat; k++)
        if (!strcmp(d->cat[k], name)) return k;
    d->cat = lm_realloc(d->cat, sizeof(char *) * (size_t)(d->n_cat + 1));
    d->cat[d->n_cat] = lm_strdup(name);
    return d->n_cat++;
}

/* A file's categories mapped into the data's; a file without any is one
 * category named after its file (no directory, no ".h5"). */
static void map_categories(lm_data *d, dfile *df) {
    int n = tokfile_n_categories(df->f);
    df->cat_map = lm_alloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (n > 0) {
        for (int k = 0; k < n; k++) df->cat_map[k] = cat_index(d, tokfile_category(df->f, k));
        return;
    }
    const char *p = tokfile_path(df->f), *s = strrchr(p, '/');
    char *name = lm_strdup(s ? s + 1 : p);
    size_t len = strlen(name);
    if (len > 3 && !strcmp(name + len - 3, ".h5")) name[len - 3] = 0;
    df->cat_map[0] = cat_index(d, name);
    lm_free(name);
}

/* The checks of one opened file; 0 or LM_ERR_INPUT. */
static int check_file(const lm_data *d, tokfile *f, const char *path, char *err, size_t errlen) {
    if (tokfile_vocab_size(f) > d->model_vocab)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: vocab_size %lld exceeds model.vocab_size %d", d->key, path,
                      (long long)tokfile_vocab_size(f), d->model_vocab);
    /* a sample of 0 or 1 tokens has no target (padding, harmless); a file of
     * nothing else would train on an empty loss */
    int64_t ns = tokfile_n_samples(f), n_short = 0;
    for (int64_t i = 0; i < ns; i++) n_short += tokfile_sample_len(f, i) < 2;
    if (n_short == ns)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "%s: %s: /samples/offsets: no sample has a target: every sample is shorter than 2 tokens (%lld "
                      "samples)",
                      d->key, path, (long long)ns);
    if (n_short)
        lm_log("data: %s: %lld of %lld samples are shorter than 2 tokens and hold no target (padding)\n", path,
               (long long)n_short, (long long)ns);
    return 0;
}

int data_list_each(const char *files, const char *key, int (*fn)(const char *path, double weight, void *ctx), void *ctx,
                   char *err, size_t errlen) {
    char *list = lm_strdup(files ? files : ""), *save = NULL;
    int rc = 0, n = 0, n_weighted = 0;
    for (char *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t')) tok[--len] = 0;
        if (!len) continue;
        double w;
        rc = parse_entry(tok, key, &w, err, errlen);
        if (rc) break;
        len = strlen(tok); /* the path, trimmed again before the colon */
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t')) tok[--len] = 0;
        n_weighted += w > 0;
        n++;
        if (n_weighted && n_weighted != n)
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: either every file has a weight (path:weight) or none does", key,
                        tok);
        else
            rc = fn(tok, w, ctx);
    }
    lm_free(list);
    return rc;
}

/* data_open_list's step per file: open, check, add. */
typedef struct {
    lm_data *d;
    double *w;
    char *err;
    size_t errlen;
} open_ctx;

static int open_one(const char *path, double wt, void *ctx) {
    open_ctx *o = ctx;
    lm_data *d = o->d;
    char why[LM_ERRLEN];
    tokfile *f = tokfile_open(path, why, sizeof why);
    if (!f) return lm_err(o->err, o->errlen, LM_ERR_INPUT, "%s: %s", d->key, why);
    if (check_file(d, f, path, o->err, o->errlen)) {
        tokfile_close(f);
        return LM_ERR_INPUT;
    }
    d->files = lm_realloc(d->files, sizeof(dfile) * (size_t)(d->n_files + 1));
    o->w = lm_realloc(o->w, sizeof(double) * (size_t)(d->n_files + 1));
    dfile *df = &d->files[d->n_files];
    memset(df, 0, sizeof *df);
    df->f = f;
    df->base = d->n_samples;
    o->w[d->n_files] = wt;
    map_categories(d, df);
    d->n_samples += tokfile_n_samples(f);
    d->n_files++;
    return 0;
}

lm_data *data_open_list(const char *files, const char *key, const lm_config *c, char *err, size_t errlen) {
    lm_data *d = lm_calloc(1, sizeof *d);
    snprintf(d->key, sizeof d->key, "%s", key);
    d->shuffle = c->shuffle;
    d->seed = c->seed;
    d->model_vocab = c->vocab_size;
    d->blk = -1;
    open_ctx o = {d, NULL, err, errlen};
    if (data_list_each(files, key, open_one, &o, err, errlen)) goto fail;
    if (d->n_files == 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: no token file given", key);
        goto fail;
    }
    if (data_streams_build(d, o.w[0] > 0 ? o.w : NULL, err, errlen)) goto fail;
    if (d->weighted)
        for (int i = 0; i < d->n_st; i++)
            lm_log("%s: %s: weight %g, %d of every %d samples\n", key, tokfile_path(d->files[i].f), d->st[i].weight,
                   d->st[i].share, DATA_MIX_BLOCK);
    lm_free(o.w);
    d->buf = lm_alloc(sizeof(uint32_t) * ((size_t)c->seq_len + 1));
    d->mbuf = lm_alloc((size_t)c->seq_len + 1);
    return d;
fail:
    lm_free(o.w);
    data_close(d);
    return NULL;
}

lm_data *data_open(const lm_config *c, char *err, size_t errlen) {
    return data_open_list(c->train_files, "data.train", c, err, errlen);
}

void data_close(lm_data *d) {
    if (!d) return;
    data_streams_free(d);
    for (int i = 0; i < d->n_files; i++) {
        tokfile_close(d->files[i].f);
        lm_free(d->files[i].cat_map);
    }
    for (int k = 0; k < d->n_cat; k++) lm_free(d->cat[k]);
    lm_free(d->cat);
    lm_free(d->files);
    lm_free(d->buf);
    lm_free(d->mbuf);
    lm_free(d);
}

int64_t data_n_samples(const lm_data *d) { return d->n_samples; }
int data_n_categories(const lm_data *d) { return d->n_cat; }
const char *data_category(const lm_data *d, int k) { return k >= 0 && k < d->n_cat ? d->cat[k] : NULL; }

void batch_alloc(lm_batch *b, int n_micro, int B, int T) {
    memset(b, 0, sizeof *b);
    b->n_micro = n_micro;
    b->B = B;
    b->T = T;
    size_t rows = (size_t)n_micro * (size_t)B;
    b->ids = lm_alloc(sizeof(int32_t) * rows * (size_t)T);
    b->targets = lm_alloc(sizeof(int32_t) * rows * (size_t)T);
    b->row_category = lm_alloc(sizeof(int32_t) * rows);
    b->row_bytes = lm_alloc(sizeof(int64_t) * rows);
}

void batch_free(lm_batch *b) {
    lm_free(b->ids);
    lm_free(b->targets);
    lm_free(b->row_category);
    lm_free(b->row_bytes);
    memset(b, 0, sizeof *b);
}

/* Every file must still be the one validated at open: one stat each. */
static int check_files(lm_data *d, char *err, size_t errlen) {
    for (int i = 0; i < d->n_files; i++) {
        int rc = tokfile_check(d->files[i].f, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

/* Targets of a sample cut to L <= T+1 tokens: positions 1 .. L-1 whose
 * mask is 1 (the first token is never a target). Returns the count, or
 * -1 / -2 from the read. */
static int64_t count_targets(lm_data *d, tokfile *f, int64_t s, int64_t L, char *err, size_t errlen) {
    if (L < 2) return 0;
    if (!tokfile_has_loss_mask(f)) return L - 1;
    int64_t n = tokfile_read_mask(f, s, d->mbuf, L, err, errlen);
    if (n < 0) return n;
    int64_t c = 0;
    for (int64_t t = 1; t < n; t++) c += d->mbuf[t];
    return c;
}

int data_fill(lm_data *d, int64_t first, int global_batch, int dp_rank, int dp_size, lm_batch *b, char *err,
              size_t errlen) {
    int T = b->T;
    /* before the reads (a file that changed since the last step), and after
     * them (one that changed while they ran: HDF5 would have zero-filled) */
    int rc = check_files(d, err, errlen);
    if (rc) return rc;
    /* Counts over the whole global batch: from the offsets, and from the
     * loss masks where the files have them (every rank reads them all, so
     * every rank has the same counts without communicating). */
    b->targets_global = 0;
    b->n_cut_global = 0;
    b->n_masked_global = 0;
    for (int j = 0; j < global_batch; j++) {
        int k;
        int64_t s, bk;
        data_locate(d, first + j, &k, &s, &bk);
        tokfile *f = d->files[k].f;
        int64_t len = tokfile_sample_len(f, s);
        if (len > T + 1) b->n_cut_global++;
        int64_t L = len < T + 1 ? len : T + 1;
        int64_t tg = count_targets(d, f, s, L, err, errlen);
        if (tg < 0) return tg == -2 ? 1 : 2;
        b->targets_global += tg;
        b->n_masked_global += L > 1 && tg == 0;
    }
    int per_rank = global_batch / dp_size;
    b->targets_local = 0;
    for (int j = 0; j < per_rank; j++) {
        int k;
        int64_t s, bk;
        data_locate(d, first + (int64_t)dp_rank * per_rank + j, &k, &s, &bk);
        tokfile *f = d->files[k].f;
        int64_t L = tokfile_read_sample_mask(f, s, d->buf, d->mbuf, T + 1, err, errlen);
        if (L < 0) return L == -2 ? 1 : 2;
        for (int64_t t = 0; t < L; t++)
            if (d->buf[t] >= (uint32_t)d->model_vocab)
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: sample %lld: token id %u >= model.vocab_size %d",
                              tokfile_path(f), (long long)s, d->buf[t], d->model_vocab);
        int32_t *ids = b->ids + (size_t)j * T, *tg = b->targets + (size_t)j * T;
        for (int t = 0; t < T; t++) {
            int in = t < L - 1;
            ids[t] = in ? (int32_t)d->buf[t] : 0;
            tg[t] = in && d->mbuf[t + 1] ? (int32_t)d->buf[t + 1] : -1;
            b->targets_local += tg[t] >= 0;
        }
        b->row_category[j] = d->files[k].cat_map[tokfile_sample_category(f, s)];
        b->row_bytes[j] = tokfile_sample_bytes(f, s);
    }
    return check_files(d, err, errlen);
}
