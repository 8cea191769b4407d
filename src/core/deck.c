/* deck.c — the input deck (SPEC §2): INI text + section.key=value overrides
 * parsed strictly into lm_config, as a schema over ini.c.
 *
 * How a deck resolves (the order is what makes "explicit keys beat the
 * preset" hold whatever their order in the file or on the command line):
 *   1. every assignment (file lines, then overrides in order) is parsed and
 *      range-checked at once by ini.c and staged with its origin (file:line
 *      or override); a later assignment replaces an earlier one, except that
 *      a key given twice in the file is an error;
 *   2. defaults, then the preset (if model.preset was given), then every
 *      staged key on top;
 *   3. required keys and cross-key consistency are checked, each message
 *      naming the key and where its value came from;
 *   4. the [stage.N] sections (numbered sections of lm_ini.h, N = 1, 2, ...
 *      without gaps): each inherits the [train]/[data] values it does not
 *      set, needs steps, and train.steps becomes (or must equal) their sum. */
#include "deck.h"
#include "common.h"
#include "lm_ini.h"
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *preset_check(const char *v, char *why, size_t wn);

/* ---- the key table, in SPEC order (deck_to_text prints in this order) ---- */

enum { SHAPE = INI_USER }; /* a model shape key: model.preset may set it */
#define REQUIRED INI_REQUIRED

#define FLD(f) offsetof(lm_config, f), sizeof(((lm_config *)0)->f)
#define KI(s, n, f, lo, hi, def, fl) {s, n, INI_INT, FLD(f), lo, hi, 0, 0, fl, NULL, def, NULL}
#define KL(s, n, f, lo, def, fl) {s, n, INI_LONG, FLD(f), lo, LONG_MAX, 0, 0, fl, NULL, def, NULL}
#define KD(s, n, f, lo, hi, def, fl) {s, n, INI_DOUBLE, FLD(f), 0, 0, lo, hi, fl, NULL, def, NULL}
#define KB(s, n, f, def, fl) {s, n, INI_BOOL, FLD(f), 0, 0, 0, 0, fl, NULL, def, NULL}
#define KE(s, n, f, ch, def) {s, n, INI_ENUM, FLD(f), 0, 0, 0, 0, 0, ch, def, NULL}
#define KS(s, n, f, def, fl) {s, n, INI_STRING, FLD(f), 0, 0, 0, 0, fl, NULL, def, NULL}
/* Paths and the longest value the code can use: a path the kernel takes
 * has at most PATH_MAX - 1 = 4095 bytes; checkpoint.dir also gets
 * "/step_<step>.h5.tmp" and "/latest.tmp" appended, and the checkpoint
 * writer (io/ckpt.c) refuses a directory longer than 4000 bytes, so that is
 * its limit here, at deck time; data.train is a comma-separated list whose
 * every file must fit. */
#define KP(s, n, f, max, why, def, fl) {s, n, INI_PATH, FLD(f), 0, max, 0, 0, fl, why, def, NULL}
#define PATH_MAX_WHY "PATH_MAX 4096 less the final NUL"
/* [stage.N] keys: fields of lm_stage */
#define SFLD(f) offsetof(lm_stage, f), sizeof(((lm_stage *)0)->f)
#define STG "stage.#"

static const lm_ini_key KEYS[] = {
    {"model", "preset", INI_STRING, FLD(preset), 0, 0, 0, 0, INI_EMPTY_OK, NULL, NULL, preset_check},
    KI("model", "dim", dim, 1, INT_MAX, NULL, REQUIRED | SHAPE),
    KI("model", "n_layers", n_layers, 1, INT_MAX, NULL, REQUIRED | SHAPE),
    KI("model", "n_heads", n_heads, 1, INT_MAX, NULL, REQUIRED | SHAPE),
    KI("model", "n_kv_heads", n_kv_heads, 1, INT_MAX, NULL, SHAPE),
    KI("model", "ffn_dim", ffn_dim, 1, INT_MAX, NULL, REQUIRED | SHAPE),
    KI("model", "vocab_size", vocab_size, 1, INT_MAX, NULL, REQUIRED | SHAPE),
    KI("model", "max_seq_len", max_seq_len, 1, INT_MAX, "2048", SHAPE),
    KD("model", "norm_eps", norm_eps, 0, 0, "1e-5", INI_LO_OPEN | SHAPE),
    KD("model", "rope_theta", rope_theta, 0, 0, "10000", INI_LO_OPEN | SHAPE),
    KB("model", "tie_embeddings", tie_embeddings, NULL, SHAPE),
    KI("parallel", "tp", tp, 1, INT_MAX, "1", 0),
    KI("parallel", "pp", pp, 1, INT_MAX, "1", 0),
    KI("parallel", "dp", dp, 1, INT_MAX, "auto", INI_AUTO),
    KI("parallel", "zero", zero, 0, 3, NULL, 0),
    KB("parallel", "overlap_comm", overlap_comm, "true", 0),
    KB("parallel", "sp", sp, NULL, 0),
    KE("parallel", "comm", comm, "auto|nccl|mpi", "auto"),
    KE("parallel", "schedule", schedule, "1f1b|interleaved", "1f1b"),
    KI("parallel", "virtual_stages", virtual_stages, 1, INT_MAX, "1", 0),
    KS("parallel", "stage_layers", stage_layers, NULL, INI_EMPTY_OK),
    KE("parallel", "offload", offload, "none|optim|param|auto", "none"),
    KI("parallel", "prefetch", prefetch, 0, 64, "2", 0),
    KD("parallel", "offload_frac", offload_frac, 0, 1, "1.0", INI_HAS_HI),
    {"train", "device_memory", INI_BYTES, FLD(device_memory), 0, 0, 0, 0, 0, NULL, "0", NULL},
    KE("train", "trainable", trainable, "all|embeddings", "all"),
    KE("train", "device", device, "cpu|cuda", "cpu"),
    KE("train", "precision", precision, "auto|fp32|bf16", "auto"),
    {"train", "seed", INI_U64, FLD(seed), 0, 0, 0, 0, 0, NULL, "1234", NULL},
    KL("train", "steps", steps, 1, NULL, 0), /* required without stages (resolve) */
    KI("train", "seq_len", seq_len, 1, INT_MAX, NULL, REQUIRED),
    KI("train", "micro_batch", micro_batch, 1, INT_MAX, NULL, REQUIRED),
    KI("train", "global_batch", global_batch, 1, INT_MAX, NULL, REQUIRED),
    KD("train", "lr", lr, 0, 0, NULL, INI_LO_OPEN | REQUIRED),
    KD("train", "min_lr", min_lr, 0, 0, NULL, 0),
    KL("train", "warmup_steps", warmup_steps, 0, NULL, 0),
    KE("train", "lr_schedule", lr_schedule, "constant|linear|cosine", "cosine"),
    KD("train", "weight_decay", weight_decay, 0, 10, NULL, INI_HAS_HI),
    KD("train", "beta1", beta1, 0, 1, "0.9", INI_HAS_HI | INI_HI_OPEN),
    KD("train", "beta2", beta2, 0, 1, "0.95", INI_HAS_HI | INI_HI_OPEN),
    KD("train", "eps", eps, 0, 0, "1e-8", INI_LO_OPEN),
    KD("train", "grad_clip", grad_clip, 0, 0, "1", 0),
    KB("train", "recompute", recompute, NULL, 0),
    KP("train", "init", init, 4095, PATH_MAX_WHY, "random", 0),
    KD("train", "init_std", init_std, 0, 1, "0.02", INI_LO_OPEN | INI_HAS_HI), /* above 1 overflows activations */
    KD("train", "max_minutes", max_minutes, 0, 0, NULL, 0),
    KL("train", "eval_every", eval_every, 0, "0", 0),
    KL("train", "eval_batches", eval_batches, 0, "0", 0),
    /* required unless every stage has its own train (resolve) */
    KP("data", "train", train_files, 4095, PATH_MAX_WHY, NULL, INI_LIST | INI_EMPTY_OK),
    KP("data", "valid", valid_files, 4095, PATH_MAX_WHY, NULL, INI_LIST | INI_EMPTY_OK),
    KB("data", "shuffle", shuffle, "true", 0),
    KP("checkpoint", "dir", ckpt_dir, 4000, "the checkpoint writer's limit, leaving room for \"/step_<step>.h5.tmp\" "
       "within PATH_MAX 4096", "ckpt", 0),
    KL("checkpoint", "every", ckpt_every, 0, NULL, 0),
    KI("checkpoint", "keep", ckpt_keep, 1, INT_MAX, "2", 0),
    KP("checkpoint", "restart", restart, 4095, PATH_MAX_WHY, "auto", 0),
    KL("log", "every", log_every, 1, "1", 0),
    KP("log", "metrics", metrics, 4095, PATH_MAX_WHY, "metrics.jsonl", INI_EMPTY_OK),
    KD("log", "peak_tflops", peak_tflops, 0, 0, NULL, 0),
    KS("log", "papi_events", papi_events, "PAPI_TOT_CYC,PAPI_TOT_INS", INI_EMPTY_OK),
    KB("log", "kernel_timers", kernel_timers, NULL, 0),
    /* [stage.N]: unset keys inherit [train] / [data] (resolve_stages) */
    {STG, "steps", INI_LONG, SFLD(steps), 1, LONG_MAX, 0, 0, 0, NULL, NULL, NULL},
    {STG, "train", INI_PATH, SFLD(train_files), 0, 4095, 0, 0, INI_LIST, PATH_MAX_WHY, NULL, NULL},
    {STG, "valid", INI_PATH, SFLD(valid_files), 0, 4095, 0, 0, INI_LIST | INI_EMPTY_OK, PATH_MAX_WHY, NULL, NULL},
    {STG, "lr", INI_DOUBLE, SFLD(lr), 0, 0, 0, 0, INI_LO_OPEN, NULL, NULL, NULL},
    {STG, "min_lr", INI_DOUBLE, SFLD(min_lr), 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {STG, "warmup_steps", INI_LONG, SFLD(warmup_steps), 0, LONG_MAX, 0, 0, 0, NULL, NULL, NULL},
    {STG, "lr_schedule", INI_ENUM, SFLD(lr_schedule), 0, 0, 0, 0, 0, "constant|linear|cosine", NULL, NULL},
    {STG, "trainable", INI_ENUM, SFLD(trainable), 0, 0, 0, 0, 0, "all|embeddings", NULL, NULL},
    {STG, "reset_optimizer", INI_BOOL, SFLD(reset_optimizer), 0, 0, 0, 0, 0, NULL, NULL, NULL},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *const SECTIONS[] = {"model", "parallel", "train", "data", "checkpoint", "log", STG};

static const lm_ini_schema DECK = {"deck", KEYS, NKEYS, SECTIONS, (int)(sizeof SECTIONS / sizeof SECTIONS[0]),
                                sizeof(lm_config)};

static int key_index(const char *sec, const char *name) { return lm_ini_find(&DECK, sec, name); }

/* ---- presets ---- */

typedef struct {
    const char *name;
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size, max_seq_len;
    double norm_eps, rope_theta;
} preset;

/* tiny: vocab 258 = lamina's byte tokenizer (256 bytes + BOS + EOS).
 * llama2-*: the shapes of Meta's Llama-2 releases (config.json). */
static const preset PRESETS[] = {
    {"tiny", 64, 2, 4, 2, 176, 258, 256, 1e-5, 10000.0},
    {"llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 1e-5, 10000.0},
    {"llama2-13b", 5120, 40, 40, 40, 13824, 32000, 4096, 1e-5, 10000.0},
    {"llama2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, 1e-5, 10000.0},
};
#define NPRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))
#define PRESET_LIST "tiny, llama2-7b, llama2-13b, llama2-70b"

static const preset *find_preset(const char *name) {
    for (int i = 0; i < NPRESETS; i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}

int deck_apply_preset(lm_config *c, const char *name, char *err, size_t errlen) {
    const preset *p = find_preset(name ? name : "");
    if (!p)
        return lm_err(err, errlen, LM_ERR_INPUT, "model.preset = '%.64s': unknown preset (known: %s)",
                      name ? name : "", PRESET_LIST);
    snprintf(c->preset, sizeof c->preset, "%s", p->name);
    c->dim = p->dim;
    c->n_layers = p->n_layers;
    c->n_heads = p->n_heads;
    c->n_kv_heads = p->n_kv_heads;
    c->ffn_dim = p->ffn_dim;
    c->vocab_size = p->vocab_size;
    c->max_seq_len = p->max_seq_len;
    c->norm_eps = p->norm_eps;
    c->rope_theta = p->rope_theta;
    c->tie_embeddings = 0;
    return 0;
}

/* model.preset names a known preset (or is empty). */
static const char *preset_check(const char *v, char *why, size_t wn) {
    if (!*v || find_preset(v)) return NULL;
    snprintf(why, wn, "unknown preset (known: %s)", PRESET_LIST);
    return why;
}

/* Defaults of SPEC §2: the schema's (required keys 0/empty). */
void deck_defaults(lm_config *c) { lm_ini_defaults(&DECK, c); }

/* ---- parse state ---- */

typedef struct {
    lm_config ex;        /* staged (explicitly given) values */
    int line[NKEYS];     /* file line, INI_BY_OVERRIDE, or 0 (unset) */
    int sline[LM_MAX_STAGES][NKEYS]; /* the same for [stage.N]'s keys */
    int shead[LM_MAX_STAGES];        /* the line of [stage.N] (INI_BY_OVERRIDE, 0: absent) */
    const char *name;    /* deck name for messages */
    char *err;
    size_t errlen;
} pstate;

/* Where key k's value came from, for messages. */
static void origin(const pstate *st, int k, char *out, size_t n) {
    if (st->line[k] > 0) snprintf(out, n, "deck %s:%d", st->name, st->line[k]);
    else if (st->line[k] == INI_BY_OVERRIDE) snprintf(out, n, "override");
    else if ((KEYS[k].flags & SHAPE) && st->ex.preset[0])
        snprintf(out, n, "deck %s (from model.preset %s)", st->name, st->ex.preset);
    else snprintf(out, n, "deck %s (default)", st->name);
}

#define KIDX(sec, name) key_index(sec, name)
#define ORIGIN(sec, name) origin(st, KIDX(sec, name), w, sizeof w)

/* Where [stage.N]'s key k came from (i = N - 1); an unset key names the
 * section's header. */
static void sorigin(const pstate *st, int i, int k, char *out, size_t n) {
    int l = st->sline[i][k] ? st->sline[i][k] : st->shead[i];
    if (l > 0) snprintf(out, n, "deck %s:%d", st->name, l);
    else snprintf(out, n, "override");
}

/* The [stage.N] sections: numbered 1, 2, ... without gaps; each inherits
 * the [train] / [data] values it does not set and must give steps; the
 * stages' steps sum to train.steps (which may be omitted). */
static int resolve_stages(pstate *st, lm_config *c) {
    char w[LM_PATHLEN + 96];
    int n = 0;
    while (n < LM_MAX_STAGES && st->shead[n]) n++;
    for (int i = n + 1; i < LM_MAX_STAGES; i++)
        if (st->shead[i]) {
            sorigin(st, i, 0, w, sizeof w);
            return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: [stage.%d] without [stage.%d]: stage sections are numbered "
                          "1, 2, ... without gaps", w, i + 1, n + 1);
        }
    long sum = 0;
    c->n_stages = n;
    for (int i = 0; i < n; i++) {
        lm_stage *g = &c->stage[i];
        memset(g, 0, sizeof *g);
        g->steps = 0;
        snprintf(g->train_files, sizeof g->train_files, "%s", c->train_files);
        snprintf(g->valid_files, sizeof g->valid_files, "%s", c->valid_files);
        g->lr = c->lr;
        g->min_lr = c->min_lr;
        g->warmup_steps = c->warmup_steps;
        snprintf(g->lr_schedule, sizeof g->lr_schedule, "%s", c->lr_schedule);
        snprintf(g->trainable, sizeof g->trainable, "%s", c->trainable);
        for (int k = 0; k < NKEYS; k++)
            if (st->sline[i][k]) memcpy((char *)g + KEYS[k].off, (char *)&st->ex.stage[i] + KEYS[k].off, KEYS[k].size);
        if (!st->sline[i][KIDX(STG, "steps")]) {
            sorigin(st, i, 0, w, sizeof w);
            return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: [stage.%d] has no steps: stage.%d.steps is required (>= 1)",
                          w, i + 1, i + 1);
        }
        if (!g->train_files[0]) {
            sorigin(st, i, KIDX(STG, "train"), w, sizeof w);
            return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: [stage.%d] has no training data: set stage.%d.train, or "
                          "data.train for the stages that do not set their own", w, i + 1, i + 1);
        }
        if (g->min_lr > g->lr) {
            int k = st->sline[i][KIDX(STG, "min_lr")] ? KIDX(STG, "min_lr") : KIDX(STG, "lr");
            sorigin(st, i, k, w, sizeof w);
            return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: stage.%d.min_lr = %g%s must be <= stage.%d.lr = %g%s", w,
                          i + 1, g->min_lr, st->sline[i][KIDX(STG, "min_lr")] ? "" : " (from train.min_lr)", i + 1, g->lr,
                          st->sline[i][KIDX(STG, "lr")] ? "" : " (from train.lr)");
        }
        if (g->steps > LONG_MAX - sum) {
            sorigin(st, i, KIDX(STG, "steps"), w, sizeof w);
            return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: stage.%d.steps = %ld: the stages' steps overflow", w, i + 1,
                          g->steps);
        }
        sum += g->steps;
    }
    int ks = KIDX("train", "steps");
    if (st->line[ks] && c->steps != sum) {
        origin(st, ks, w, sizeof w);
        char terms[256] = "";
        for (int i = 0; i < n && strlen(terms) < 200; i++)
            snprintf(terms + strlen(terms), sizeof terms - strlen(terms), "%sstage.%d.steps", i ? " + " : "", i + 1);
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: train.steps = %ld must equal the sum of the stages' steps (%s = "
                      "%ld); or leave train.steps out", w, c->steps, terms, sum);
    }
    c->steps = sum;
    return 0;
}

/* ---- resolve: defaults, preset, staged keys, then the checks ---- */


static int resolve(pstate *st, lm_config *c) {
    char w[LM_PATHLEN + 96];
    deck_defaults(c);
    if (st->line[KIDX("model", "preset")] && st->ex.preset[0])
        deck_apply_preset(c, st->ex.preset, NULL, 0); /* validated when staged */
    for (int k = 0; k < NKEYS; k++)
        if (st->line[k] && strcmp(KEYS[k].sec, STG))
            memcpy((char *)c + KEYS[k].off, (char *)&st->ex + KEYS[k].off, KEYS[k].size);
    if (!c->preset[0] && !st->line[KIDX("model", "n_kv_heads")]) c->n_kv_heads = c->n_heads;

    /* train.steps and data.train are required without stages */
    int staged = 0, ksteps = KIDX("train", "steps"), ktrain = KIDX("data", "train");
    for (int i = 0; i < LM_MAX_STAGES; i++) staged |= st->shead[i] != 0;
    for (int k = 0; k < NKEYS; k++) {
        int req = (KEYS[k].flags & REQUIRED) || (!staged && (k == ksteps || k == ktrain));
        if (!req || st->line[k]) continue;
        if ((KEYS[k].flags & SHAPE) && c->preset[0]) continue;
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s.%s is required (set it in deck %s or as %s.%s=VALUE; model shape keys may come "
                    "from model.preset)", KEYS[k].sec, KEYS[k].name, st->name, KEYS[k].sec, KEYS[k].name);
    }
    if (c->n_heads % c->n_kv_heads) {
        ORIGIN("model", "n_kv_heads");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: model.n_kv_heads = %d must divide model.n_heads = %d", w, c->n_kv_heads, c->n_heads);
    }
    if (c->dim % c->n_heads) {
        ORIGIN("model", "dim");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: model.dim = %d must be a multiple of model.n_heads = %d", w, c->dim, c->n_heads);
    }
    if ((c->dim / c->n_heads) % 2) {
        ORIGIN("model", "dim");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: model.dim = %d gives head_dim = dim/n_heads = %d, which must be even (RoPE rotates pairs)",
                    w, c->dim, c->dim / c->n_heads);
    }
    if (c->seq_len > c->max_seq_len) {
        ORIGIN("train", "seq_len");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: train.seq_len = %d exceeds model.max_seq_len = %d", w, c->seq_len, c->max_seq_len);
    }
    if (c->global_batch % c->micro_batch) {
        ORIGIN("train", "global_batch");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: train.global_batch = %d must be a multiple of train.micro_batch = %d", w,
                    c->global_batch, c->micro_batch);
    }
    if (c->min_lr > c->lr) {
        ORIGIN("train", "min_lr");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: train.min_lr = %g must be <= train.lr = %g", w, c->min_lr, c->lr);
    }
    if (!staged && !c->train_files[0]) {
        ORIGIN("data", "train");
        return lm_err(st->err, st->errlen, LM_ERR_INPUT, "%s: data.train = '': must not be empty", w);
    }
    /* warmup_steps > steps is allowed: the run ends while still warming up. */
    return staged ? resolve_stages(st, c) : 0;
}

int deck_load_string(lm_config *c, const char *text, const char *name, int noverride, char *const *overrides,
                     char *err, size_t errlen) {
    pstate *st = lm_alloc(sizeof *st);
    st->name = name ? name : "(string)";
    st->err = err;
    st->errlen = errlen;
    if (err && errlen) err[0] = 0;
    memset(st->sline, 0, sizeof st->sline);
    memset(st->shead, 0, sizeof st->shead);
    lm_ini_dest d = {NULL, &st->ex, st->line};
    lm_ini_numbered sd = {STG, st->ex.stage, sizeof(lm_stage), LM_MAX_STAGES, &st->sline[0][0], st->shead};
    int rc = text ? lm_ini_parse_n(&DECK, text, st->name, &d, 1, &sd, 1, err, errlen) : 0;
    for (int i = 0; !rc && i < noverride; i++)
        rc = lm_ini_override_n(&DECK, overrides[i] ? overrides[i] : "", &d, 1, &sd, 1, err, errlen);
    if (!rc) rc = resolve(st, c);
    else deck_defaults(c);
    lm_free(st);
    return rc;
}

/* Read the deck file (lm_ini_read_file: a regular file, at most 16 MiB). */
int deck_load(lm_config *c, const char *path, int noverride, char *const *overrides, char *err, size_t errlen) {
    deck_defaults(c);
    if (!path) return deck_load_string(c, NULL, "(none)", noverride, overrides, err, errlen);
    char *buf;
    int rc = lm_ini_read_file(path, "deck", &buf, err, errlen);
    if (rc) return rc;
    rc = deck_load_string(c, buf, path, noverride, overrides, err, errlen);
    lm_free(buf);
    return rc;
}

/* [model] .. [log], then each [stage.N] with every key (resolved). */
size_t deck_to_text(const lm_config *c, char *buf, size_t len) {
    size_t n = lm_ini_to_text(&DECK, c, buf, len);
    for (int i = 0; i < c->n_stages; i++) {
        char head[32];
        snprintf(head, sizeof head, "stage.%d", i + 1);
        if (buf && n + 1 < len) { /* a blank line first */
            buf[n] = '\n';
            buf[n + 1] = 0;
        }
        n++;
        int room = buf && n < len;
        n += lm_ini_section_to_text(&DECK, STG, head, &c->stage[i], room ? buf + n : NULL, room ? len - n : 0);
    }
    return n;
}

long deck_stage_start(const lm_config *c, int k) {
    long s = 0;
    for (int i = 0; i < k && i < c->n_stages; i++) s += c->stage[i].steps;
    return s;
}

int deck_stage_of(const lm_config *c, long step) {
    long end = 0;
    for (int i = 0; i < c->n_stages; i++) {
        end += c->stage[i].steps;
        if (step <= end) return i;
    }
    return c->n_stages > 0 ? c->n_stages - 1 : 0;
}
