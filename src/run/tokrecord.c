/* tokrecord.c — see tokrecord.h. */
#include "tokrecord.h"
#include "ckpt.h"
#include "comm.h"
#include "common.h"
#include "data.h"
#include "hf.h"
#include "spm.h"
#include "tokfile.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* model.vocab_size must hold every id of the tokenizer. */
static int vocab_rule(const lm_config *c, const lm_tokrec *t, const char *where, char *err, size_t errlen) {
    if (t->vocab_size > c->vocab_size)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.vocab_size = %d is smaller than the vocabulary of the tokenizer recorded in %s (vocab_size "
                      "%lld): the embedding must hold every id the tokenizer gives (set model.vocab_size >= %lld)",
                      c->vocab_size, where, (long long)t->vocab_size, (long long)t->vocab_size);
    return 0;
}

/* tokrecord_from_data's step per data.train file. */
typedef struct {
    const lm_config *c;
    lm_tokrec *out;
    char *from;
    size_t fromlen;
    char *err;
    size_t errlen;
} rec_ctx;

static int rec_one(const char *p, double weight, void *ctx) {
    (void)weight;
    rec_ctx *r = ctx;
    char why[LM_ERRLEN];
    tokfile *f = tokfile_open(p, why, sizeof why);
    if (!f) return 0; /* data_open reports it */
    lm_tokrec t;
    int rc = tokfile_tokenizer(f, &t, r->err, r->errlen);
    tokfile_close(f);
    if (rc || !t.model) return rc;
    if (!r->out->model) {
        *r->out = t;
        snprintf(r->from, r->fromlen, "%s", p);
        return vocab_rule(r->c, r->out, r->from, r->err, r->errlen);
    }
    if (!tokrec_equal(r->out, &t))
        rc = lm_err(r->err, r->errlen, LM_ERR_INPUT,
                    "data.train: %s and %s record different tokenizers (/tokenizer/model: %zu vs %zu bytes, bos_id "
                    "%lld vs %lld, eos_id %lld vs %lld): train on files made with one tokenizer",
                    r->from, p, r->out->len, t.len, (long long)r->out->bos_id, (long long)t.bos_id,
                    (long long)r->out->eos_id, (long long)t.eos_id);
    tokrec_free(&t);
    return rc;
}

int tokrecord_from_data(const lm_config *c, lm_tokrec *out, char *from, size_t fromlen, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->bos_id = out->eos_id = -1;
    from[0] = 0;
    /* the entries as the loader reads them (path:weight) */
    rec_ctx r = {c, out, from, fromlen, err, errlen};
    int rc = data_list_each(c->train_files, "data.train", rec_one, &r, err, errlen);
    if (rc) tokrec_free(out);
    return rc;
}

int tokrecord_from_ckpt(const lm_config *c, const char *path, lm_tokrec *out, char *err, size_t errlen) {
    int rc = ckpt_tokenizer(path, out, err, errlen);
    if (!rc && out->model) rc = vocab_rule(c, out, path, err, errlen);
    if (rc) tokrec_free(out);
    return rc;
}

/* An HF folder's tokenizer.model (absent: none), validated by loading it;
 * bos/eos and the vocabulary from the model itself. */
static int from_hf(const lm_config *c, const char *dir, lm_tokrec *out, char *err, size_t errlen) {
    char path[LM_PATHLEN];
    struct stat st;
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return 0;
    lm_spm *sp = spm_load(path, err, errlen);
    if (!sp) return LM_ERR_INPUT;
    size_t n;
    const void *b = spm_model_bytes(sp, &n);
    out->model = lm_alloc(n);
    memcpy(out->model, b, n);
    out->len = n;
    out->bos_id = spm_bos_id(sp);
    out->eos_id = spm_eos_id(sp);
    out->vocab_size = spm_vocab_size(sp);
    spm_free(sp);
    int rc = vocab_rule(c, out, path, err, errlen);
    if (rc) tokrec_free(out);
    return rc;
}

int tokrecord_from_start(const lm_config *c, const char *from, lm_tokrec *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->bos_id = out->eos_id = -1;
    struct stat st;
    if (!from || stat(from, &st)) return 0;
    if (S_ISREG(st.st_mode)) return tokrecord_from_ckpt(c, from, out, err, errlen);
    if (S_ISDIR(st.st_mode) && hf_is_folder(from)) return from_hf(c, from, out, err, errlen);
    return 0;
}

const lm_tokenizer *tokrecord_session_tokenizer(const lm_session *S, const char *path, const char *cmd, lm_spm **sp) {
    const lm_config *c = &S->cfg;
    char err[LM_ERRLEN] = {0};
    int rc = 0;
    *sp = NULL;
    if (path) {
        if (!(*sp = spm_load(path, err, sizeof err))) rc = LM_ERR_INPUT;
    } else {
        const char *from = S->resumed_from[0] ? S->resumed_from : strcmp(c->init, "random") ? c->init : NULL;
        lm_tokrec rec;
        rc = tokrecord_from_start(c, from, &rec, err, sizeof err);
        if (!rc && rec.model) {
            char what[LM_PATHLEN + 32];
            snprintf(what, sizeof what, "%s:/tokenizer/model", from);
            if (!(*sp = spm_load_bytes(rec.model, rec.len, what, err, sizeof err))) rc = LM_ERR_INPUT;
        }
        tokrec_free(&rec);
    }
    if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "%s: %s", cmd, err);
    const lm_tokenizer *tk = *sp ? spm_tokenizer(*sp) : tokenizer_bytes();
    if (c->vocab_size < tk->vocab_size)
        lm_fail(LM_ERR_INPUT, "%s: model.vocab_size = %d is smaller than the %s tokenizer's %d", cmd, c->vocab_size,
                tk->name, tk->vocab_size);
    return tk;
}
