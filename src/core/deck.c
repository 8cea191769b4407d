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
 *      naming the key and where its value came from. */
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
    KL("train", "steps", steps, 1, NULL, REQUIRED),
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
    KP("data", "train", train_files, 4095, PATH_MAX_WHY, NULL, REQUIRED | INI_LIST),
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
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *const SECTIONS[] = {"model", "parallel", "train", "data", "checkpoint", "log"};

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

/* ---- resolve: defaults, preset, staged keys, then the checks ---- */

#define KIDX(sec, name) key_index(sec, name)
#define ORIGIN(sec, name) origin(st, KIDX(sec, name), w, sizeof w)

static int resolve(pstate *st, lm_config *c) {
    char w[LM_PATHLEN + 96];
    deck_defaults(c);
    if (st->line[KIDX("model", "preset")] && st->ex.preset[0])
        deck_apply_preset(c, st->ex.preset, NULL, 0); /* validated when staged */
    for (int k = 0; k < NKEYS; k++)
        if (st->line[k]) memcpy((char *)c + KEYS[k].off, (char *)&st->ex + KEYS[k].off, KEYS[k].size);
    if (!c->preset[0] && !st->line[KIDX("model", "n_kv_heads")]) c->n_kv_heads = c->n_heads;

    for (int k = 0; k < NKEYS; k++) {
        if (!(KEYS[k].flags & REQUIRED) || st->line[k]) continue;
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
    /* warmup_steps > steps is allowed: the run ends while still warming up. */
    return 0;
}

int deck_load_string(lm_config *c, const char *text, const char *name, int noverride, char *const *overrides,
                     char *err, size_t errlen) {
    pstate *st = lm_alloc(sizeof *st);
    st->name = name ? name : "(string)";
    st->err = err;
    st->errlen = errlen;
    if (err && errlen) err[0] = 0;
    lm_ini_dest d = {NULL, &st->ex, st->line};
    int rc = text ? lm_ini_parse(&DECK, text, st->name, &d, 1, err, errlen) : 0;
    for (int i = 0; !rc && i < noverride; i++) rc = lm_ini_override(&DECK, overrides[i] ? overrides[i] : "", &d, err, errlen);
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

size_t deck_to_text(const lm_config *c, char *buf, size_t len) { return lm_ini_to_text(&DECK, c, buf, len); }
