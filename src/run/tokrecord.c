/* tokrecord.c — see tokrecord.h. */
#include "tokrecord.h"
#include "ckpt.h"
#include "common.h"
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

int tokrecord_from_data(const lm_config *c, lm_tokrec *out, char *from, size_t fromlen, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->bos_id = out->eos_id = -1;
    from[0] = 0;
    char *list = lm_strdup(c->train_files), *save = NULL;
    int rc = 0;
    for (char *p = strtok_r(list, ",", &save); p && !rc; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) p[--n] = 0;
        if (!n) continue;
        char why[LM_ERRLEN];
        tokfile *f = tokfile_open(p, why, sizeof why);
        if (!f) continue; /* data_open reports it */
        lm_tokrec t;
        rc = tokfile_tokenizer(f, &t, err, errlen);
        tokfile_close(f);
        if (rc || !t.model) continue;
        if (!out->model) {
            *out = t;
            snprintf(from, fromlen, "%s", p);
            rc = vocab_rule(c, out, from, err, errlen);
            continue;
        }
        if (!tokrec_equal(out, &t))
            rc = lm_err(err, errlen, LM_ERR_INPUT,
                        "data.train: %s and %s record different tokenizers (/tokenizer/model: %zu vs %zu bytes, bos_id "
                        "%lld vs %lld, eos_id %lld vs %lld): train on files made with one tokenizer",
                        from, p, out->len, t.len, (long long)out->bos_id, (long long)t.bos_id, (long long)out->eos_id,
                        (long long)t.eos_id);
        tokrec_free(&t);
    }
    lm_free(list);
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
