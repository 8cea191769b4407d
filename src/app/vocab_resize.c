/* vocab_resize.c — `lamina vocab resize` (SPEC §8): a checkpoint for a
 * model whose tokenizer B extends A (B's first |A| pieces are A's, in
 * order). The embedding and lm_head (separately; once when tied) gain rows
 * |A| .. |B|-1; new row i of a matrix W is
 *     W'[i] = (1/k) sum_{j=1..k} W[a_j],  (a_1..a_k) = A.encode(piece_i of B)
 * with piece_i the string as stored in B (no BOS/EOS), accumulated in
 * double and rounded to float once — Colossal-LLaMA-2's init_model.py,
 * which averages in float32. Old rows and every other tensor are copied
 * bit for bit. The result is step 0 with no /optim (a starting point for
 * train.init), /config vocab_size = |B|.
 * `--init random` (the ablation the recipe measures) draws the new rows
 * instead as 0.02 * normal(1234, NAME, i) — Hugging Face's
 * resize_token_embeddings with initializer_range 0.02, from the same
 * counter-based generator as train.init_std (src/core/rng.h).
 *
 * Collective: every rank reads the tokenizers and takes part in the
 * checkpoint read and write. Rank 0 holds the embedding and lm_head whole
 * and computes their new rows; every other tensor is split by rows over
 * the ranks (each reads and writes only its share), so memory per rank is
 * its share of the model plus, on rank 0, the vocabulary matrices. The
 * file is written through ckpt_save into OUT.resize.tmp/ and renamed to
 * OUT at the end, so OUT is either absent/old or complete. */
#include "ckpt.h"
#include "comm.h"
#include "hf.h"
#include "common.h"
#include "model.h"
#include "opts.h"
#include "spm.h"
#include "rng.h"
#include "vocab.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct option RESIZE_OPTS[] = {
    {"old-tokenizer", required_argument, NULL, 'a'},
    {"new-tokenizer", required_argument, NULL, 'b'},
    {"init", required_argument, NULL, 'i'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define RESIZE_USAGE "lamina vocab resize --old-tokenizer A.model --new-tokenizer B.model FROM -o OUT.h5 [--init mean|random] (FROM: a checkpoint or a Hugging Face folder)"

/* B must begin with A's pieces, in A's order. */
static int check_prefix(const lm_spm *a, const lm_spm *b, const char *pa, const char *pb, char *err, size_t errlen) {
    int na = spm_vocab_size(a), nb = spm_vocab_size(b);
    for (int i = 0; i < na; i++) {
        const char *x = spm_id_to_piece(a, i), *y = i < nb ? spm_id_to_piece(b, i) : NULL;
        if (!y || strcmp(x, y))
            return lm_err(err, errlen, LM_ERR_INPUT,
                          "vocab resize: %s does not start with the pieces of %s: id %d is '%s' in %s but %s%s%s", pb, pa, i,
                          x, pa, y ? "'" : "absent (", y ? y : "fewer pieces)", y ? "'" : "");
    }
    return 0;
}

/* W' rows [na, nb) from W [na, D] as the mean of W over A's ids of B's
 * piece; rows below na copied. */
static int grow(const float *w, float *out, int64_t D, const lm_spm *a, const lm_spm *b, const char *name, int random,
                char *err, size_t errlen) {
    int na = spm_vocab_size(a), nb = spm_vocab_size(b);
    memcpy(out, w, sizeof(float) * (size_t)na * (size_t)D);
    if (random) { /* 0.02 * N(0,1), element i of the new block of NAME */
        uint64_t key = rng_stream(1234, name);
        size_t n = (size_t)(nb - na) * (size_t)D;
        for (size_t i = 0; i < n; i++) out[(size_t)na * (size_t)D + i] = (float)(0.02 * rng_normal(key, i));
        return 0;
    }
    double *acc = lm_alloc(sizeof(double) * (size_t)D);
    int rc = 0;
    for (int i = na; i < nb && !rc; i++) {
        const char *p = spm_id_to_piece(b, i);
        int32_t *ids;
        size_t k;
        if (spm_encode(a, p, strlen(p), &ids, &k, err, errlen)) {
            rc = LM_ERR_RUNTIME;
            break;
        }
        if (!k) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: %s: new piece %d '%s' encodes to no ids with the old tokenizer", name, i, p);
        memset(acc, 0, sizeof(double) * (size_t)D);
        for (size_t j = 0; j < k && !rc; j++) {
            const float *r = w + (size_t)ids[j] * (size_t)D;
            for (int64_t d = 0; d < D; d++) acc[d] += r[d];
        }
        float *o = out + (size_t)i * (size_t)D;
        for (int64_t d = 0; d < D && !rc; d++) o[d] = (float)(acc[d] / (double)k);
        lm_free(ids);
    }
    lm_free(acc);
    return rc;
}

/* Everything but the exit: 0, -1 (help) or an exit code with err, the same
 * on every rank. */
static int resize_main(int argc, char **argv, char *err, size_t errlen) {
    lm_group *w = comm_world();
    MPI_Comm mc = comm_mpi(w);
    int rank = w->rank;
    const char *pa = NULL, *pb = NULL, *out = NULL, *from = NULL, *v;
    int random = 0;
    lm_opts o;
    lm_opts_begin(&o, "vocab resize", RESIZE_USAGE, argc, argv, "o:h", RESIZE_OPTS);
    int rc = 0;
    for (int c; !rc && (c = lm_opts_next(&o, &v, err, errlen)) != -1;) {
        if (c == 'h') {
            if (rank == 0) vocab_usage(stdout);
            lm_opts_end(&o);
            return -1;
        }
        if (c == 'a') pa = v;
        else if (c == 'b') pb = v;
        else if (c == 'o') out = v;
        else if (c == 'i' && (!strcmp(v, "mean") || !strcmp(v, "random"))) random = !strcmp(v, "random");
        else if (c == 'i') rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: --init is mean or random, not '%s'", v);
        else rc = LM_ERR_INPUT;
    }
    if (!rc && o.npos != 1) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: give one checkpoint or Hugging Face folder FROM (usage: %s)", RESIZE_USAGE);
    if (!rc) from = o.pos[0];
    if (!rc && (!pa || !pb || !out))
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: --old-tokenizer, --new-tokenizer and -o are required (usage: %s)", RESIZE_USAGE);
    lm_spm *a = NULL, *b = NULL;
    if (!rc && !(a = spm_load(pa, err, errlen))) rc = LM_ERR_INPUT;
    if (!rc && !(b = spm_load(pb, err, errlen))) rc = LM_ERR_INPUT;
    if (!rc) rc = check_prefix(a, b, pa, pb, err, errlen);
    rc = comm_agree(w, rc, err, errlen);
    ckpt_meta meta = {0};
    hf_config hcfg;
    int hf = !rc && hf_is_folder(from);
    if (hf) { /* a Hugging Face folder: its config.json gives the shape */
        if (hf_config_read(from, &hcfg, err, errlen)) rc = LM_ERR_INPUT;
        else
            meta = (ckpt_meta){.dim = hcfg.dim, .n_layers = hcfg.n_layers, .n_heads = hcfg.n_heads,
                               .n_kv_heads = hcfg.n_kv_heads, .ffn_dim = hcfg.ffn_dim, .vocab_size = hcfg.vocab_size,
                               .max_seq_len = hcfg.max_seq_len, .tie_embeddings = hcfg.tie_embeddings,
                               .norm_eps = hcfg.norm_eps, .rope_theta = hcfg.rope_theta};
    } else if (!rc && ckpt_read_meta(mc, from, &meta, err, errlen)) rc = LM_ERR_INPUT;
    int na = a ? spm_vocab_size(a) : 0, nb = b ? spm_vocab_size(b) : 0;
    if (!rc && (meta.dim <= 0 || meta.n_layers <= 0 || meta.n_heads <= 0 || meta.n_kv_heads <= 0 || meta.ffn_dim <= 0))
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: %s: /config lacks the model shape (dim, n_layers, n_heads, n_kv_heads, ffn_dim)", from);
    if (!rc && meta.vocab_size != na)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: %s: /config vocab_size = %d, but the old tokenizer %s has %d pieces", from,
                    meta.vocab_size, pa, na);
    /* the tensors: the vocabulary matrices whole on rank 0, the rest split by rows */
    lm_params full = {0};
    ckpt_tensor *t = NULL, *t2 = NULL;
    float **buf = NULL;
    if (!rc) {
        lm_shape sh = {.dim = meta.dim, .n_layers = meta.n_layers, .n_heads = meta.n_heads, .n_kv_heads = meta.n_kv_heads,
                       .head_dim = meta.dim / meta.n_heads, .ffn_dim = meta.ffn_dim, .vocab_size = na,
                       .norm_eps = (float)meta.norm_eps, .rope_theta = meta.rope_theta, .tied = meta.tie_embeddings};
        model_full_tensors(&sh, &full);
        t = lm_calloc((size_t)full.n, sizeof *t);
        t2 = lm_calloc((size_t)full.n, sizeof *t2);
        buf = lm_calloc((size_t)full.n, sizeof *buf);
        int size = w->size;
        for (int i = 0; i < full.n; i++) {
            lm_param *p = &full.p[i];
            int vocab = !strcmp(p->name, "model.embed_tokens.weight") || !strcmp(p->name, "lm_head.weight");
            int64_t r0 = vocab ? 0 : p->rows * rank / size;
            int64_t r1 = vocab ? (rank == 0 ? p->rows : 0) : p->rows * (rank + 1) / size;
            int64_t n = (r1 - r0) * p->cols;
            if (n) buf[i] = lm_alloc(sizeof(float) * (size_t)n);
            t[i] = (ckpt_tensor){p->name, p->ndim, p->rows, p->cols, r0 * p->cols, n, buf[i], 0, 0, 0, 0, NULL, NULL, NULL};
        }
        if (hf ? hf_load(mc, from, t, full.n, &hcfg, NULL, NULL, err, errlen)
               : ckpt_load(mc, from, t, NULL, NULL, full.n, err, errlen))
            rc = LM_ERR_INPUT;
    }
    /* grow the vocabulary matrices (rank 0) */
    float **grown = NULL;
    if (!rc) {
        grown = lm_calloc((size_t)full.n, sizeof *grown);
        for (int i = 0; i < full.n && !rc; i++) {
            t2[i] = t[i];
            if (strcmp(t[i].name, "model.embed_tokens.weight") && strcmp(t[i].name, "lm_head.weight")) continue;
            t2[i].rows = nb;
            if (rank == 0) {
                grown[i] = lm_alloc(sizeof(float) * (size_t)nb * (size_t)t[i].cols);
                rc = grow(t[i].data, grown[i], t[i].cols, a, b, t[i].name, random, err, errlen);
                t2[i].data = grown[i];
                t2[i].count = (int64_t)nb * t[i].cols;
            }
        }
        rc = comm_agree(w, rc, err, errlen);
    }
    /* write OUT through a scratch directory, then rename */
    char dir[4096], step[4200], latest[4200];
    if (!rc && snprintf(dir, sizeof dir, "%s.resize.tmp", out) >= (int)sizeof dir)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab resize: -o path too long");
    snprintf(step, sizeof step, "%s/step_%08ld.h5", dir, 0L);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    if (!rc && rank == 0) {
        unlink(step);
        unlink(latest);
        if (mkdir(dir, 0777) && errno != EEXIST)
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab resize: cannot create %s: %s", dir, strerror(errno));
    }
    rc = comm_agree(w, rc, err, errlen);
    if (!rc) {
        const char *old = meta.deck_text ? meta.deck_text : "";
        size_t dl = strlen(old) + strlen(from) + strlen(pa) + strlen(pb) + 512;
        char *deck = lm_alloc(dl);
        snprintf(deck, dl, "; lamina vocab resize: vocab_size %d -> %d from %s (old tokenizer %s, new tokenizer %s)\n%s%s",
                 na, nb, from, pa, pb, hf ? "; imported from a Hugging Face folder\n" : "", old);
        ckpt_meta m2 = meta;
        m2.step = 0;
        m2.tokens_seen = 0;
        m2.consumed_samples = 0;
        m2.vocab_size = nb;
        m2.deck_text = deck;
        /* the new tokenizer is the one the resized model speaks (SPEC §5) */
        lm_tokrec tb = {.bos_id = spm_bos_id(b), .eos_id = spm_eos_id(b), .vocab_size = nb};
        tb.model = (unsigned char *)spm_model_bytes(b, &tb.len);
        m2.tok = &tb;
        if (ckpt_save(mc, dir, &m2, t2, NULL, NULL, full.n, 1, err, errlen)) rc = LM_ERR_RUNTIME;
        lm_free(deck);
    }
    if (!rc && rank == 0) {
        if (rename(step, out)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab resize: cannot rename %s to %s: %s", step, out, strerror(errno));
        else if (lm_fsync_path(out, 0)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab resize: cannot sync %s: %s", out, strerror(errno));
        unlink(latest);
        rmdir(dir);
        if (!rc)
            printf("vocab resize: %s (vocab %d) -> %s (vocab %d): %d new rows in %s, %s%s\n", from, na, out, nb, nb - na,
                   meta.tie_embeddings ? "the tied embedding" : "embed_tokens and lm_head",
                   random ? "random: 0.02 * normal" : "the mean of the old rows of each piece's ids under ", random ? "" : pa);
    }
    rc = comm_agree(w, rc, err, errlen);
    for (int i = 0; buf && i < full.n; i++) lm_free(buf[i]);
    for (int i = 0; grown && i < full.n; i++) lm_free(grown[i]);
    lm_free(buf);
    lm_free(grown);
    lm_free(t);
    lm_free(t2);
    if (full.p) params_free(&full);
    free((void *)meta.deck_text);
    spm_free(a);
    spm_free(b);
    lm_opts_end(&o);
    fflush(stdout);
    return rc;
}

int vocab_resize(int argc, char **argv) {
    char err[LM_ERRLEN] = {0};
    int rc = resize_main(argc, argv, err, sizeof err);
    if (rc > 0) lm_fail(rc, "%s", err);
    return 0;
}
