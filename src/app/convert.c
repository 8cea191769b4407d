/* convert.c — `lamina convert` (SPEC §7): Hugging Face folders to and from
 * lamina checkpoints.
 *
 * --from-hf DIR -o FILE.h5: every rank validates the folder (io/hf.h),
 * reads its share of each tensor (rows [R*rank/size, R*(rank+1)/size)) and
 * the ranks write the checkpoint collectively with ckpt_save (step 0, no
 * /optim, /config from config.json with a [model] deck). ckpt_save writes
 * into a directory, FILE.h5.convert.tmp/step_00000000.h5, which rank 0 then
 * renames to FILE.h5 and removes the directory: an error leaves neither.
 * Memory per rank: its share of the model in float32.
 *
 * --to-hf FILE.h5 -o DIR: rank 0 streams tensor by tensor (ckpt_load of one
 * whole tensor over MPI_COMM_SELF, checksum verified, convert, write,
 * free) into DIR.tmp, renamed to DIR (io/hf_write.c); the other ranks wait
 * and share the exit code. */
#include "cmds.h"
#include "ckpt.h"
#include "comm.h"
#include "common.h"
#include "deck.h"
#include "hf.h"
#include "hf_tokenizer.h"
#include "opts.h"
#include "progress.h"
#include "spm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONVERT_USAGE                                                                                                  \
    "lamina convert --from-hf DIR -o FILE.h5\n"                                                                        \
    "       lamina convert --to-hf FILE.h5 -o DIR [--dtype bf16|fp16|fp32] [--shard-size BYTES] [--tokenizer MODEL]"

typedef struct {
    const char *from_hf, *to_hf, *out, *tokenizer;
    st_dtype dtype;
    uint64_t shard;
} conv_opts;

/* BYTES with an optional suffix: K, M, G, T (powers of 1000, as HF's "5GB")
 * or KiB, MiB, GiB, TiB (powers of 1024); a trailing B is allowed (KB). */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return -1;
    double mul = 1;
    const char *u = "KMGT", *p = *end ? strchr(u, *end) : NULL;
    if (*end && !p) return -1;
    if (p) {
        int pw = (int)(p - u) + 1, bin = end[1] == 'i';
        for (int i = 0; i < pw; i++) mul *= bin ? 1024 : 1000;
        end += 1 + bin;
        if (*end == 'B') end++;
        else if (bin) return -1;
    } else if (*end == 'B') end++;
    if (*end || v * mul > 1e18 || v * mul < 1) return -1;
    *out = (uint64_t)(v * mul);
    return 0;
}

static void parse_options(int argc, char **argv, conv_opts *o) {
    static const struct option longs[] = {
        {"from-hf", required_argument, NULL, 'f'}, {"to-hf", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},  {"dtype", required_argument, NULL, 'd'},
        {"shard-size", required_argument, NULL, 's'}, {"tokenizer", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    *o = (conv_opts){.dtype = ST_BF16, .shard = 5000000000ULL};
    lm_opts p;
    const char *arg;
    char err[LM_ERRLEN];
    int dtype_set = 0, shard_set = 0;
    lm_opts_begin(&p, "convert", CONVERT_USAGE, argc, argv, "o:h", longs);
    for (int ch; (ch = lm_opts_next(&p, &arg, err, sizeof err)) != -1;) {
        if (ch == 'f') o->from_hf = arg;
        else if (ch == 't') o->to_hf = arg;
        else if (ch == 'o') o->out = arg;
        else if (ch == 'k') o->tokenizer = arg;
        else if (ch == 'd') {
            dtype_set = 1;
            if (!strcmp(arg, "bf16")) o->dtype = ST_BF16;
            else if (!strcmp(arg, "fp16")) o->dtype = ST_F16;
            else if (!strcmp(arg, "fp32")) o->dtype = ST_F32;
            else lm_fail(LM_ERR_INPUT, "convert: --dtype '%s': expected bf16, fp16 or fp32", arg);
        } else if (ch == 's') {
            shard_set = 1;
            if (parse_size(arg, &o->shard))
                lm_fail(LM_ERR_INPUT, "convert: --shard-size '%s': expected a byte count >= 1 with an optional K, M, G, T "
                                      "(x1000) or KiB, MiB, GiB, TiB (x1024) suffix", arg);
        } else if (ch == 'h') {
            lm_log("usage: %s\n", CONVERT_USAGE);
            lm_opts_end(&p);
            comm_finalize();
            exit(0);
        } else {
            lm_opts_end(&p);
            lm_fail(LM_ERR_INPUT, "%s", err);
        }
    }
    int npos = p.npos;
    const char *pos0 = npos ? p.pos[0] : "";
    char pos_copy[256];
    snprintf(pos_copy, sizeof pos_copy, "%s", pos0);
    lm_opts_end(&p);
    if (npos) lm_fail(LM_ERR_INPUT, "convert: unexpected argument '%s' (usage: %s)", pos_copy, CONVERT_USAGE);
    if (!!o->from_hf == !!o->to_hf) lm_fail(LM_ERR_INPUT, "convert: give one of --from-hf DIR or --to-hf FILE.h5 (usage: %s)", CONVERT_USAGE);
    if (!o->out || !*o->out) lm_fail(LM_ERR_INPUT, "convert: missing -o (usage: %s)", CONVERT_USAGE);
    if (o->from_hf && (dtype_set || shard_set || o->tokenizer))
        lm_fail(LM_ERR_INPUT, "convert: --dtype, --shard-size and --tokenizer apply to --to-hf only");
}

/* The [model] section of the resolved deck of c's shape (deck defaults for
 * everything else): what /config's deck attribute holds for an import. */
static char *model_deck(const hf_config *h) {
    lm_config c;
    deck_defaults(&c);
    c.dim = h->dim, c.n_layers = h->n_layers, c.n_heads = h->n_heads, c.n_kv_heads = h->n_kv_heads;
    c.ffn_dim = h->ffn_dim, c.vocab_size = h->vocab_size, c.max_seq_len = h->max_seq_len;
    c.norm_eps = h->norm_eps, c.rope_theta = h->rope_theta, c.tie_embeddings = h->tie_embeddings;
    size_t len = deck_to_text(&c, NULL, 0) + 1;
    char *all = lm_alloc(len), *out = lm_alloc(len + 128);
    deck_to_text(&c, all, len);
    char *m = strstr(all, "[model]"), *next = m ? strstr(m + 1, "\n[") : NULL;
    if (next) next[1] = 0;
    snprintf(out, len + 128, "; imported from a Hugging Face folder by lamina convert --from-hf\n%s", m ? m : "");
    lm_free(all);
    return out;
}

static void load_progress(void *ctx, int tensors, uint64_t bytes) { lm_progress_set(ctx, tensors, (int64_t)bytes); }

/* Remove DIR's two files ckpt_save leaves (step_00000000.h5, latest) and
 * DIR itself. */
static void remove_ckdir(const char *dir) {
    char p[LM_PATHLEN + 64];
    const char *names[3] = {"step_00000000.h5", "step_00000000.h5.tmp", "latest"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* DIR/tokenizer.model when the folder has one (else rec->model NULL),
 * loaded as a SentencePiece model to check it and take its BOS/EOS ids, so
 * the checkpoint records it (SPEC §5) and later commands need not be told.
 * Every rank reads it. Returns 0, or 2 with err. */
static int hf_folder_tokenizer(const char *dir, int vocab_size, lm_tokrec *rec, char *err, size_t errlen) {
    char path[LM_PATHLEN + 32];
    struct stat st;
    memset(rec, 0, sizeof *rec);
    rec->bos_id = rec->eos_id = -1;
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if (stat(path, &st)) return 0;
    lm_spm *sp = spm_load(path, err, errlen);
    if (!sp) return LM_ERR_INPUT;
    int rc = 0;
    if (spm_vocab_size(sp) > vocab_size)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s has %d pieces, more than config.json's vocab_size %d", path,
                    spm_vocab_size(sp), vocab_size);
    else {
        const void *b = spm_model_bytes(sp, &rec->len);
        rec->model = lm_alloc(rec->len);
        memcpy(rec->model, b, rec->len);
        rec->bos_id = spm_bos_id(sp);
        rec->eos_id = spm_eos_id(sp);
        rec->vocab_size = spm_vocab_size(sp);
    }
    spm_free(sp);
    return rc;
}

static int from_hf(const conv_opts *o) {
    MPI_Comm mc = comm_mpi(comm_world());
    int rank = comm_world()->rank, size = comm_world()->size;
    char err[LM_ERRLEN] = {0};
    hf_config cfg;
    int rc = hf_config_read(o->from_hf, &cfg, err, sizeof err);
    if (rc) lm_fail(rc, "convert: %s", err);
    hf_shape *s;
    int n = hf_expected(&cfg, &s);
    ckpt_tensor *t = lm_calloc((size_t)n, sizeof *t);
    int64_t mine = 0;
    for (int i = 0; i < n; i++) {
        int64_t r0 = s[i].rows * rank / size, r1 = s[i].rows * (rank + 1) / size;
        t[i] = (ckpt_tensor){.name = s[i].name, .ndim = s[i].ndim, .rows = s[i].rows, .cols = s[i].cols,
                             .off = r0 * s[i].cols, .count = (r1 - r0) * s[i].cols};
        t[i].data = lm_alloc(sizeof(float) * (size_t)(t[i].count ? t[i].count : 1));
        mine += t[i].count * 4;
    }
    lm_progress pr;
    lm_progress_begin(&pr, "convert: read", "tensors", n, mine);
    rc = hf_load(mc, o->from_hf, t, n, &cfg, load_progress, &pr, err, sizeof err);
    if (rc) lm_fail(rc, "convert: %s", err);
    lm_progress_end(&pr);
    char *deck = model_deck(&cfg);
    lm_tokrec tok = {0};
    if ((rc = hf_folder_tokenizer(o->from_hf, cfg.vocab_size, &tok, err, sizeof err))) lm_fail(rc, "convert: %s", err);
    ckpt_meta meta = {.step = 0, .tokens_seen = 0, .consumed_samples = 0, .seed = 0, .dim = cfg.dim,
                      .n_layers = cfg.n_layers, .n_heads = cfg.n_heads, .n_kv_heads = cfg.n_kv_heads,
                      .ffn_dim = cfg.ffn_dim, .vocab_size = cfg.vocab_size, .max_seq_len = cfg.max_seq_len,
                      .tie_embeddings = cfg.tie_embeddings, .norm_eps = cfg.norm_eps, .rope_theta = cfg.rope_theta,
                      .deck_text = deck, .tok = tok.model ? &tok : NULL};
    char tmpdir[LM_PATHLEN + 32], step[LM_PATHLEN + 64];
    if (snprintf(tmpdir, sizeof tmpdir, "%s.convert.tmp", o->out) >= LM_PATHLEN) lm_fail(LM_ERR_INPUT, "convert: -o %s: path too long", o->out);
    snprintf(step, sizeof step, "%s/step_00000000.h5", tmpdir);
    double t0 = lm_now();
    rc = ckpt_save(mc, tmpdir, &meta, t, NULL, NULL, n, 1, err, sizeof err);
    if (!rc && rank == 0) {
        if (rename(step, o->out)) rc = lm_err(err, sizeof err, LM_ERR_RUNTIME, "convert: rename %s to %s failed (%s)", step, o->out, strerror(errno));
        else {
            char parent[LM_PATHLEN];
            snprintf(parent, sizeof parent, "%s", o->out);
            char *sl = strrchr(parent, '/');
            if (sl) *sl = 0;
            lm_fsync_path(sl ? (parent[0] ? parent : "/") : ".", 1);
        }
    }
    if (rank == 0) remove_ckdir(tmpdir);
    if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "%s", err);
    lm_log("convert: %s -> %s: %d tensors, %d layers, dim %d, vocab %d%s, %.1f s to write\n", o->from_hf, o->out, n,
           cfg.n_layers, cfg.dim, cfg.vocab_size, cfg.tie_embeddings ? " (tied)" : "", lm_now() - t0);
    for (int i = 0; i < n; i++) lm_free(t[i].data);
    lm_free(t);
    lm_free(deck);
    tokrec_free(&tok);
    hf_names_free(s, n);
    return 0;
}

/* --to-hf: what the writer's callbacks need. */
typedef struct {
    const char *file;
    lm_progress pr;
    lm_spm *sp;      /* the tokenizer to write beside the weights (NULL: none) */
    int max_len;
} to_ctx;

/* The writer's last step, in its temporary folder: the tokenizer files. */
static int write_tokenizer(void *ctx, const char *tmpdir, char *err, size_t errlen) {
    to_ctx *c = ctx;
    return c->sp ? hf_tokenizer_write(tmpdir, c->sp, c->max_len, err, errlen) : 0;
}

/* The tokenizer of --to-hf: --tokenizer's model, else the one the
 * checkpoint records (none: *sp NULL). Its vocabulary must fit the
 * model's. Returns 0, or 2 with err. */
static int to_hf_tokenizer(const conv_opts *o, int vocab_size, lm_spm **sp, char *err, size_t errlen) {
    *sp = NULL;
    if (o->tokenizer) {
        char why[LM_ERRLEN];
        if (!(*sp = spm_load(o->tokenizer, why, sizeof why)))
            return lm_err(err, errlen, LM_ERR_INPUT, "convert: --tokenizer: %s", why);
    } else {
        lm_tokrec rec;
        int rc = ckpt_tokenizer(o->to_hf, &rec, err, errlen);
        if (rc) return rc;
        if (rec.model) {
            char what[LM_PATHLEN + 32];
            snprintf(what, sizeof what, "%s:/tokenizer/model", o->to_hf);
            *sp = spm_load_bytes(rec.model, rec.len, what, err, errlen);
            tokrec_free(&rec);
            if (!*sp) return LM_ERR_INPUT;
        }
    }
    if (*sp && spm_vocab_size(*sp) > vocab_size) {
        int v = spm_vocab_size(*sp);
        spm_free(*sp);
        *sp = NULL;
        return lm_err(err, errlen, LM_ERR_INPUT, "convert: the tokenizer %s has %d pieces, more than the model's vocab_size %d",
                      o->tokenizer ? o->tokenizer : "recorded in the checkpoint", v, vocab_size);
    }
    return 0;
}

/* One whole tensor from the checkpoint (rank 0 alone: MPI_COMM_SELF), its
 * checksum and finiteness verified by ckpt_load. */
static int fetch_tensor(void *ctx, int i, const hf_shape *s, float *buf, char *err, size_t errlen) {
    (void)i;
    to_ctx *c = ctx;
    ckpt_tensor t = {.name = s->name, .ndim = s->ndim, .rows = s->rows, .cols = s->cols, .off = 0,
                     .count = s->rows * s->cols, .data = buf};
    return ckpt_load(MPI_COMM_SELF, c->file, &t, NULL, NULL, 1, err, errlen);
}

static void write_progress(void *ctx, int tensors, uint64_t bytes) { lm_progress_set(&((to_ctx *)ctx)->pr, tensors, (int64_t)bytes); }

/* Rank 0's part of --to-hf: the checkpoint's /config (shape keys
 * required; max_seq_len, norm_eps, rope_theta default as in the deck when
 * another tool left them out), then the folder. */
static int to_hf_rank0(const conv_opts *o, hf_config *h, char *err, size_t errlen) {
    ckpt_meta m;
    int rc = ckpt_read_meta(MPI_COMM_SELF, o->to_hf, &m, err, errlen);
    if (rc) return rc;
    free((void *)m.deck_text);
    struct { const char *k; int v; } req[] = {{"dim", m.dim}, {"n_layers", m.n_layers}, {"n_heads", m.n_heads},
                                              {"n_kv_heads", m.n_kv_heads}, {"ffn_dim", m.ffn_dim},
                                              {"vocab_size", m.vocab_size}};
    for (size_t i = 0; i < sizeof req / sizeof *req; i++)
        if (req[i].v <= 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config attribute %s: missing (SPEC §5)", o->to_hf, req[i].k);
    if (m.dim % m.n_heads || m.n_heads % m.n_kv_heads)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config: dim %d, n_heads %d, n_kv_heads %d are inconsistent", o->to_hf,
                      m.dim, m.n_heads, m.n_kv_heads);
    *h = (hf_config){.dim = m.dim, .n_layers = m.n_layers, .n_heads = m.n_heads, .n_kv_heads = m.n_kv_heads,
                     .ffn_dim = m.ffn_dim, .vocab_size = m.vocab_size, .max_seq_len = m.max_seq_len ? m.max_seq_len : 2048,
                     .tie_embeddings = m.tie_embeddings, .norm_eps = m.norm_eps > 0 ? m.norm_eps : 1e-5,
                     .rope_theta = m.rope_theta > 0 ? m.rope_theta : 10000, .bos_id = -1, .eos_id = -1};
    to_ctx c = {.file = o->to_hf, .max_len = h->max_seq_len};
    if ((rc = to_hf_tokenizer(o, m.vocab_size, &c.sp, err, errlen))) return rc;
    if (c.sp) h->bos_id = spm_bos_id(c.sp), h->eos_id = spm_eos_id(c.sp);
    hf_shape *s;
    int n = hf_expected(h, &s);
    int64_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += s[i].rows * s[i].cols * st_dtype_size(o->dtype);
    hf_names_free(s, n);
    lm_progress_begin(&c.pr, "convert: write", "tensors", n, bytes);
    rc = hf_write_folder(o->out, h, o->dtype, o->shard, fetch_tensor, write_tokenizer, write_progress, &c, err, errlen);
    if (!rc) lm_progress_end(&c.pr);
    if (!rc && c.sp) lm_log("convert: tokenizer (%d pieces, %s) -> %s/tokenizer.model\n", spm_vocab_size(c.sp),
                            o->tokenizer ? o->tokenizer : "recorded in the checkpoint", o->out);
    spm_free(c.sp);
    return rc;
}

static int to_hf(const conv_opts *o) {
    char err[LM_ERRLEN] = {0};
    hf_config h;
    memset(&h, 0, sizeof h);
    double t0 = lm_now();
    int rc = comm_world()->rank == 0 ? to_hf_rank0(o, &h, err, sizeof err) : 0;
    if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "%s", err);
    lm_log("convert: %s -> %s (%s, %d layers, dim %d, vocab %d%s), %.1f s\n", o->to_hf, o->out, st_dtype_str(o->dtype),
           h.n_layers, h.dim, h.vocab_size, h.tie_embeddings ? ", tied" : "", lm_now() - t0);
    return 0;
}

int cmd_convert(int argc, char **argv) {
    conv_opts o;
    parse_options(argc, argv, &o);
    return o.from_hf ? from_hf(&o) : to_hf(&o);
}
