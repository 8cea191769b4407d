/* data.c — see data.h. */
#include "data.h"
#include "common.h"
#include "rng.h"
#include <stdlib.h>
#include <string.h>

struct lm_data {
    tokfile **files;
    int64_t *base;     /* first global sample index of each file */
    int n_files;
    int64_t n_samples;
    int shuffle;
    uint64_t seed;
    int model_vocab;
    /* Cached permutations of the two most recent epochs. */
    int64_t perm_epoch[2];
    int64_t *perm[2];
    uint32_t *buf;
};

lm_data *data_open(const lm_config *c, char *err, size_t errlen) {
    lm_data *d = lm_alloc(sizeof *d);
    d->shuffle = c->shuffle;
    d->seed = c->seed;
    d->model_vocab = c->vocab_size;
    d->perm_epoch[0] = d->perm_epoch[1] = -1;
    char *list = lm_strdup(c->train_files), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t')) tok[--n] = 0;
        if (!n) continue;
        tokfile *f = tokfile_open(tok, err, errlen);
        if (!f) goto fail;
        if (tokfile_vocab_size(f) > c->vocab_size) {
            lm_err(err, errlen, LM_ERR_INPUT, "data.train: %s: vocab_size %lld exceeds model.vocab_size %d", tok,
                   (long long)tokfile_vocab_size(f), c->vocab_size);
            tokfile_close(f);
            goto fail;
        }
        /* a sample of 0 or 1 tokens has no target (padding, harmless); a
         * file of nothing else would train on an empty loss */
        int64_t ns = tokfile_n_samples(f), n_short = 0;
        for (int64_t i = 0; i < ns; i++) n_short += tokfile_sample_len(f, i) < 2;
        if (n_short == ns) {
            lm_err(err, errlen, LM_ERR_INPUT,
                   "data.train: %s: /samples/offsets: no sample has a target: every sample is shorter than 2 tokens "
                   "(%lld samples)",
                   tok, (long long)ns);
            tokfile_close(f);
            goto fail;
        }
        if (n_short)
            lm_log("data: %s: %lld of %lld samples are shorter than 2 tokens and hold no target (padding)\n", tok,
                   (long long)n_short, (long long)ns);
        d->files = lm_realloc(d->files, sizeof(tokfile *) * (size_t)(d->n_files + 1));
        d->base = lm_realloc(d->base, sizeof(int64_t) * (size_t)(d->n_files + 1));
        d->files[d->n_files] = f;
        d->base[d->n_files] = d->n_samples;
        d->n_samples += tokfile_n_samples(f);
        d->n_files++;
    }
    lm_free(list);
    list = NULL;
    if (d->n_files == 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "data.train: no token file given");
        goto fail;
    }
    d->buf = lm_alloc(sizeof(uint32_t) * ((size_t)c->seq_len + 1));
    return d;
fail:
    lm_free(list);
    data_close(d);
    return NULL;
}

void data_close(lm_data *d) {
    if (!d) return;
    for (int i = 0; i < d->n_files; i++) tokfile_close(d->files[i]);
    lm_free(d->files);
    lm_free(d->base);
    lm_free(d->perm[0]);
    lm_free(d->perm[1]);
    lm_free(d->buf);
    lm_free(d);
}

int64_t data_n_samples(const lm_data *d) { return d->n_samples; }

/* Fisher-Yates with the swap index of position i drawn as element i of the
 * stream (seed, "data.epoch.E"): the same permutation on every rank. */
static const int64_t *epoch_perm(lm_data *d, int64_t epoch) {
    for (int k = 0; k < 2; k++)
        if (d->perm_epoch[k] == epoch) return d->perm[k];
    int k = d->perm_epoch[0] < d->perm_epoch[1] ? 0 : 1; /* evict the older */
    if (!d->perm[k]) d->perm[k] = lm_alloc(sizeof(int64_t) * (size_t)d->n_samples);
    int64_t *p = d->perm[k];
    char name[64];
    snprintf(name, sizeof name, "data.epoch.%lld", (long long)epoch);
    uint64_t key = rng_stream(d->seed, name);
    for (int64_t i = 0; i < d->n_samples; i++) p[i] = i;
    for (int64_t i = d->n_samples - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(key, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    d->perm_epoch[k] = epoch;
    return p;
}

int64_t data_sample_at(lm_data *d, int64_t g) {
    int64_t epoch = g / d->n_samples, pos = g % d->n_samples;
    return d->shuffle ? epoch_perm(d, epoch)[pos] : pos;
}

static int file_of(const lm_data *d, int64_t s) {
    int lo = 0, hi = d->n_files - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->base[mid] <= s) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int64_t sample_len(const lm_data *d, int64_t s) {
    int f = file_of(d, s);
    return tokfile_sample_len(d->files[f], s - d->base[f]);
}

void batch_alloc(lm_batch *b, int n_micro, int B, int T) {
    memset(b, 0, sizeof *b);
    b->n_micro = n_micro;
    b->B = B;
    b->T = T;
    b->ids = lm_alloc(sizeof(int32_t) * (size_t)n_micro * (size_t)B * (size_t)T);
    b->targets = lm_alloc(sizeof(int32_t) * (size_t)n_micro * (size_t)B * (size_t)T);
}

void batch_free(lm_batch *b) {
    lm_free(b->ids);
    lm_free(b->targets);
    memset(b, 0, sizeof *b);
}

/* Every file must still be the one validated at open: one stat each. */
static int check_files(lm_data *d, char *err, size_t errlen) {
    for (int i = 0; i < d->n_files; i++) {
        int rc = tokfile_check(d->files[i], err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int data_fill(lm_data *d, int64_t first, int global_batch, int dp_rank, int dp_size, lm_batch *b, char *err,
              size_t errlen) {
    int T = b->T;
    /* before the reads (a file that changed since the last step), and after
     * them (one that changed while they ran: HDF5 would have zero-filled) */
    int rc = check_files(d, err, errlen);
    if (rc) return rc;
    /* Counts over the whole global batch come from the offsets alone. */
    b->targets_global = 0;
    b->n_cut_global = 0;
    for (int j = 0; j < global_batch; j++) {
        int64_t len = sample_len(d, data_sample_at(d, first + j));
        if (len > T + 1) b->n_cut_global++;
        int64_t L = len < T + 1 ? len : T + 1;
        if (L > 1) b->targets_global += L - 1;
    }
    int per_rank = global_batch / dp_size;
    b->targets_local = 0;
    for (int j = 0; j < per_rank; j++) {
        int64_t s = data_sample_at(d, first + (int64_t)dp_rank * per_rank + j);
        int f = file_of(d, s);
        int64_t L = tokfile_read_sample(d->files[f], s - d->base[f], d->buf, T + 1, err, errlen);
        if (L < 0) return L == -2 ? 1 : 2;
        for (int64_t t = 0; t < L; t++)
            if (d->buf[t] >= (uint32_t)d->model_vocab)
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: sample %lld: token id %u >= model.vocab_size %d",
                              tokfile_path(d->files[f]), (long long)(s - d->base[f]), d->buf[t], d->model_vocab);
        int32_t *ids = b->ids + (size_t)j * T, *tg = b->targets + (size_t)j * T;
        for (int t = 0; t < T; t++) {
            ids[t] = t < L - 1 ? (int32_t)d->buf[t] : 0;
            tg[t] = t < L - 1 ? (int32_t)d->buf[t + 1] : -1;
        }
        if (L > 1) b->targets_local += L - 1;
    }
    return check_files(d, err, errlen);
}
