/* deck.c — the input deck (SPEC §2): INI text + section.key=value overrides
 * parsed strictly into lm_config.
 *
 * How a deck resolves (the order is what makes "explicit keys beat the
 * preset" hold whatever their order in the file or on the command line):
 *   1. every assignment (file lines, then overrides in order) is parsed and
 *      range-checked at once and staged with its origin (file:line or
 *      override); a later assignment replaces an earlier one, except that a
 *      key given twice in the file is an error;
 *   2. defaults, then the preset (if model.preset was given), then every
 *      staged key on top;
 *   3. required keys and cross-key consistency are checked, each message
 *      naming the key and where its value came from.
 *
 * libinih splits lines into sections and key/value pairs. Debian's build has
 * a 200-byte line buffer that silently truncates longer lines, so the text
 * reaches inih through our own line reader, which (a) counts lines for the
 * messages (the handler has no line number), (b) strips comments itself
 * (`;` or `#` at the start of a line, or after whitespace inside a line), so
 * inih's run-time options are never touched, (c) checks section headers
 * (an empty unknown section is still an error), and (d) hands over a value
 * too long for inih's buffer by reference: the line becomes `key=\x01` and
 * the handler takes the value from the reader's state. */
#include "deck.h"
#include "common.h"
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the key table, in SPEC order (deck_to_text prints in this order) ---- */

enum { T_INT, T_LONG, T_U64, T_DBL, T_BOOL, T_ENUM, T_STR, T_DP, T_PRESET };
enum { D_LO_OPEN = 1, D_HI_OPEN = 2, D_HAS_HI = 4 }; /* double bounds */
enum { S_EMPTY_OK = 8, REQUIRED = 16, SHAPE = 32 };  /* other flags */

typedef struct {
    const char *sec, *name;
    int type;
    size_t off, size;
    long long ilo, ihi;  /* integer range, inclusive */
    double dlo, dhi;     /* double range, see D_* flags */
    int flags;
    const char *choices; /* T_ENUM: "a|b|c" */
} keydef;

#define FLD(f) offsetof(lm_config, f), sizeof(((lm_config *)0)->f)
#define KI(s, n, f, lo, hi, fl) {s, n, T_INT, FLD(f), lo, hi, 0, 0, fl, NULL}
#define KL(s, n, f, lo, fl) {s, n, T_LONG, FLD(f), lo, LONG_MAX, 0, 0, fl, NULL}
#define KD(s, n, f, lo, hi, fl) {s, n, T_DBL, FLD(f), 0, 0, lo, hi, fl, NULL}
#define KB(s, n, f) {s, n, T_BOOL, FLD(f), 0, 0, 0, 0, 0, NULL}
#define KE(s, n, f, ch) {s, n, T_ENUM, FLD(f), 0, 0, 0, 0, 0, ch}
#define KS(s, n, f, fl) {s, n, T_STR, FLD(f), 0, 0, 0, 0, fl, NULL}

static const keydef KEYS[] = {
    {"model", "preset", T_PRESET, FLD(preset), 0, 0, 0, 0, S_EMPTY_OK, NULL},
    KI("model", "dim", dim, 1, INT_MAX, REQUIRED | SHAPE),
    KI("model", "n_layers", n_layers, 1, INT_MAX, REQUIRED | SHAPE),
    KI("model", "n_heads", n_heads, 1, INT_MAX, REQUIRED | SHAPE),
    KI("model", "n_kv_heads", n_kv_heads, 1, INT_MAX, SHAPE),
    KI("model", "ffn_dim", ffn_dim, 1, INT_MAX, REQUIRED | SHAPE),
    KI("model", "vocab_size", vocab_size, 1, INT_MAX, REQUIRED | SHAPE),
    KI("model", "max_seq_len", max_seq_len, 1, INT_MAX, SHAPE),
    KD("model", "norm_eps", norm_eps, 0, 0, D_LO_OPEN | SHAPE),
    KD("model", "rope_theta", rope_theta, 0, 0, D_LO_OPEN | SHAPE),
    {"model", "tie_embeddings", T_BOOL, FLD(tie_embeddings), 0, 0, 0, 0, SHAPE, NULL},
    KI("parallel", "tp", tp, 1, INT_MAX, 0),
    KI("parallel", "pp", pp, 1, INT_MAX, 0),
    {"parallel", "dp", T_DP, FLD(dp), 1, INT_MAX, 0, 0, 0, NULL},
    KI("parallel", "zero", zero, 0, 3, 0),
    KB("parallel", "overlap_comm", overlap_comm),
    KB("parallel", "sp", sp),
    KE("parallel", "comm", comm, "auto|nccl|mpi"),
    KE("parallel", "schedule", schedule, "1f1b|interleaved"),
    KI("parallel", "virtual_stages", virtual_stages, 1, INT_MAX, 0),
    KS("parallel", "stage_layers", stage_layers, S_EMPTY_OK),
    KE("parallel", "offload", offload, "none|optim|param|auto"),
    KE("train", "device", device, "cpu|cuda"),
    KE("train", "precision", precision, "auto|fp32|bf16"),
    {"train", "seed", T_U64, FLD(seed), 0, 0, 0, 0, 0, NULL},
    KL("train", "steps", steps, 1, REQUIRED),
    KI("train", "seq_len", seq_len, 1, INT_MAX, REQUIRED),
    KI("train", "micro_batch", micro_batch, 1, INT_MAX, REQUIRED),
    KI("train", "global_batch", global_batch, 1, INT_MAX, REQUIRED),
    KD("train", "lr", lr, 0, 0, D_LO_OPEN | REQUIRED),
    KD("train", "min_lr", min_lr, 0, 0, 0),
    KL("train", "warmup_steps", warmup_steps, 0, 0),
    KE("train", "lr_schedule", lr_schedule, "constant|linear|cosine"),
    KD("train", "weight_decay", weight_decay, 0, 10, D_HAS_HI),
    KD("train", "beta1", beta1, 0, 1, D_HAS_HI | D_HI_OPEN),
    KD("train", "beta2", beta2, 0, 1, D_HAS_HI | D_HI_OPEN),
    KD("train", "eps", eps, 0, 0, D_LO_OPEN),
    KD("train", "grad_clip", grad_clip, 0, 0, 0),
    KB("train", "recompute", recompute),
    KS("train", "init", init, 0),
    KD("train", "init_std", init_std, 0, 1, D_LO_OPEN | D_HAS_HI), /* above 1 overflows activations */
    KD("train", "max_minutes", max_minutes, 0, 0, 0),
    KS("data", "train", train_files, REQUIRED),
    KB("data", "shuffle", shuffle),
    KS("checkpoint", "dir", ckpt_dir, 0),
    KL("checkpoint", "every", ckpt_every, 0, 0),
    KI("checkpoint", "keep", ckpt_keep, 1, INT_MAX, 0),
    KS("checkpoint", "restart", restart, 0),
    KL("log", "every", log_every, 1, 0),
    KS("log", "metrics", metrics, S_EMPTY_OK),
    KD("log", "peak_tflops", peak_tflops, 0, 0, 0),
    KS("log", "papi_events", papi_events, S_EMPTY_OK),
    KB("log", "kernel_timers", kernel_timers),
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *const SECTIONS[] = {"model", "parallel", "train", "data", "checkpoint", "log"};

static int key_index(const char *sec, const char *name) {
    for (int k = 0; k < NKEYS; k++)
        if (!strcmp(KEYS[k].sec, sec) && !strcmp(KEYS[k].name, name)) return k;
    return -1;
}

static int section_known(const char *s, size_t n) {
    for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++)
        if (strlen(SECTIONS[i]) == n && !memcmp(SECTIONS[i], s, n)) return 1;
    return 0;
}

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

void deck_defaults(lm_config *c) {
    memset(c, 0, sizeof *c);
    c->max_seq_len = 2048;
    c->norm_eps = 1e-5;
    c->rope_theta = 10000.0;
    c->tp = c->pp = 1;
    c->dp = 0;
    c->overlap_comm = 1;
    strcpy(c->schedule, "1f1b");
    c->virtual_stages = 1;
    strcpy(c->offload, "none");
    strcpy(c->device, "cpu");
    strcpy(c->precision, "auto");
    strcpy(c->comm, "auto");
    c->seed = 1234;
    strcpy(c->lr_schedule, "cosine");
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->eps = 1e-8;
    c->grad_clip = 1.0;
    strcpy(c->init, "random");
    c->init_std = 0.02;
    c->shuffle = 1;
    strcpy(c->ckpt_dir, "ckpt");
    c->ckpt_keep = 2;
    strcpy(c->restart, "auto");
    c->log_every = 1;
    strcpy(c->metrics, "metrics.jsonl");
    strcpy(c->papi_events, "PAPI_TOT_CYC,PAPI_TOT_INS");
}

/* ---- parse state ---- */

enum { O_UNSET, O_FILE, O_OVERRIDE };

typedef struct {
    lm_config ex;        /* staged (explicitly given) values */
    int okind[NKEYS];    /* O_* */
    int oline[NKEYS];    /* file line when O_FILE */
    const char *name;    /* deck name for messages */
    char *err;
    size_t errlen;
    int failed, fail_line;
    /* line reader over the deck text */
    const char *p, *end;
    int lineno;
    const char *longval; /* value handed over by reference (see top) */
    size_t longlen;
    int long_pending;
} pstate;

static int fail(pstate *st, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(pstate *st, int line, const char *fmt, ...) {
    if (st->failed) return LM_ERR_INPUT;
    st->failed = 1;
    st->fail_line = line;
    if (st->err && st->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->err, st->errlen, fmt, ap);
        va_end(ap);
    }
    return LM_ERR_INPUT;
}

/* Where key k's value came from, for messages. */
static void origin(const pstate *st, int k, char *out, size_t n) {
    if (st->okind[k] == O_FILE) snprintf(out, n, "deck %s:%d", st->name, st->oline[k]);
    else if (st->okind[k] == O_OVERRIDE) snprintf(out, n, "override");
    else if ((KEYS[k].flags & SHAPE) && st->ex.preset[0])
        snprintf(out, n, "deck %s (from model.preset %s)", st->name, st->ex.preset);
    else snprintf(out, n, "deck %s (default)", st->name);
}

/* ---- value conversion: each returns NULL or the rule the value broke ---- */

static const char *conv_ll(const char *v, long long lo, long long hi, long long *out, char *why, size_t wn) {
    char *e;
    errno = 0;
    long long x = strtoll(v, &e, 10);
    if (!*v || isspace((unsigned char)*v) || *e) return "not an integer";
    if (errno == ERANGE || x < lo || x > hi) {
        if (hi <= 1000000) snprintf(why, wn, "must be between %lld and %lld", lo, hi);
        else if (errno != ERANGE && x < lo) snprintf(why, wn, "must be >= %lld", lo);
        else snprintf(why, wn, "out of range (must be >= %lld and <= %lld)", lo, hi);
        return why;
    }
    *out = x;
    return NULL;
}

static const char *conv_double(const keydef *kd, const char *v, double *out, char *why, size_t wn) {
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (!*v || isspace((unsigned char)*v) || *e) return "not a number";
    if (!isfinite(x)) return "must be finite";
    if (errno == ERANGE) return "out of the range of a double";
    int lo_ok = (kd->flags & D_LO_OPEN) ? x > kd->dlo : x >= kd->dlo;
    int hi_ok = !(kd->flags & D_HAS_HI) || ((kd->flags & D_HI_OPEN) ? x < kd->dhi : x <= kd->dhi);
    if (!lo_ok || !hi_ok) {
        if (kd->flags & D_HAS_HI)
            snprintf(why, wn, "must be in %c%g, %g%c", (kd->flags & D_LO_OPEN) ? '(' : '[', kd->dlo,
                     kd->dhi, (kd->flags & D_HI_OPEN) ? ')' : ']');
        else snprintf(why, wn, "must be %s %g", (kd->flags & D_LO_OPEN) ? ">" : ">=", kd->dlo);
        return why;
    }
    *out = x;
    return NULL;
}

static const char *conv_u64(const char *v, uint64_t *out) {
    if (!isdigit((unsigned char)v[0])) return "not an unsigned 64-bit integer";
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (*e) return "not an unsigned 64-bit integer";
    if (errno == ERANGE) return "out of range (must be <= 18446744073709551615)";
    *out = (uint64_t)x;
    return NULL;
}

static const char *conv_bool(const char *v, int *out) {
    static const char *const T[] = {"true", "1", "yes", "on"}, *const F[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, T[i])) { *out = 1; return NULL; }
        if (!strcasecmp(v, F[i])) { *out = 0; return NULL; }
    }
    return "not a boolean (true/false, yes/no, on/off, 1/0)";
}

/* Case-insensitive match against "a|b|c"; copies the canonical spelling. */
static const char *conv_enum(const keydef *kd, const char *v, char *dst, char *why, size_t wn) {
    const char *s = kd->choices;
    while (*s) {
        size_t n = strcspn(s, "|");
        if (strlen(v) == n && !strncasecmp(v, s, n)) {
            memcpy(dst, s, n);
            dst[n] = 0;
            return NULL;
        }
        s += n + (s[n] == '|');
    }
    snprintf(why, wn, "must be one of %s", kd->choices);
    for (char *q = why; *q; q++)
        if (*q == '|') *q = '/';
    return why;
}

/* A string value must survive deck_to_text and a re-parse: no control
 * characters, no leading `;`/`#` and no whitespace before `;`/`#` (those
 * would start a comment), and it must fit the field. */
static const char *check_string(const keydef *kd, const char *v, char *why, size_t wn) {
    size_t n = strlen(v);
    if (!n && !(kd->flags & S_EMPTY_OK)) return "must not be empty";
    if (n >= kd->size) {
        snprintf(why, wn, "too long (%zu characters, at most %zu)", n, kd->size - 1);
        return why;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) return "contains a control character";
        if ((ch == ';' || ch == '#') && (i == 0 || isspace((unsigned char)v[i - 1])))
            return "contains a comment marker (';' or '#' first or after a space)";
    }
    if (n && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1])))
        return "has leading or trailing whitespace";
    return NULL;
}

/* Parse `value` for key k and stage it. `where` prefixes messages. */
static int assign(pstate *st, int k, const char *value, const char *where, int line) {
    const keydef *kd = &KEYS[k];
    char why[160];
    const char *bad = NULL;
    char *dst = (char *)&st->ex + kd->off;
    long long ll = 0;
    switch (kd->type) {
    case T_INT:
        if (!(bad = conv_ll(value, kd->ilo, kd->ihi, &ll, why, sizeof why))) *(int *)dst = (int)ll;
        break;
    case T_LONG:
        if (!(bad = conv_ll(value, kd->ilo, kd->ihi, &ll, why, sizeof why))) *(long *)dst = (long)ll;
        break;
    case T_DP:
        if (!strcasecmp(value, "auto")) *(int *)dst = 0;
        else if (conv_ll(value, 1, INT_MAX, &ll, why, sizeof why))
            bad = "must be auto or an integer >= 1";
        else *(int *)dst = (int)ll;
        break;
    case T_U64: bad = conv_u64(value, (uint64_t *)dst); break;
    case T_DBL: bad = conv_double(kd, value, (double *)dst, why, sizeof why); break;
    case T_BOOL: bad = conv_bool(value, (int *)dst); break;
    case T_ENUM:
        if (strlen(value) >= kd->size) bad = "too long";
        else bad = conv_enum(kd, value, dst, why, sizeof why);
        break;
    case T_PRESET:
        if (!(bad = check_string(kd, value, why, sizeof why))) {
            if (*value && !find_preset(value)) {
                snprintf(why, sizeof why, "unknown preset (known: %s)", PRESET_LIST);
                bad = why;
            } else {
                memset(dst, 0, kd->size);
                memcpy(dst, value, strlen(value));
            }
        }
        break;
    default: /* T_STR */
        if (!(bad = check_string(kd, value, why, sizeof why))) {
            memset(dst, 0, kd->size);
            memcpy(dst, value, strlen(value));
        }
    }
    if (bad) {
        int n = (int)strlen(value);
        return fail(st, line, "%s: %s.%s = '%.*s%s': %s", where, kd->sec, kd->name, n > 80 ? 80 : n, value,
                    n > 80 ? "..." : "", bad);
    }
    return 0;
}

/* ---- the INI file through inih ---- */

/* Reader for ini_parse_stream: one deck line per call, normalised (see the
 * comment at the top). Returns NULL at the end or after an error. */
static char *deck_reader(char *str, int num, void *stream) {
    pstate *st = stream;
    if (st->failed || st->p >= st->end || num < 8) return NULL;
    const char *line = st->p;
    const char *nl = memchr(line, '\n', (size_t)(st->end - line));
    const char *s = line, *e = nl ? nl : st->end;
    st->p = nl ? nl + 1 : st->end;
    st->lineno++;
    if (st->lineno == 1 && e - s >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* UTF-8 BOM */
    while (s < e && isspace((unsigned char)*s)) s++;
    /* A comment starts the line, or follows whitespace (inih's rule, with `#` too). */
    for (const char *q = s; q < e; q++)
        if ((*q == ';' || *q == '#') && (q == s || isspace((unsigned char)q[-1]))) {
            e = q;
            break;
        }
    while (e > s && isspace((unsigned char)e[-1])) e--;
    size_t len = (size_t)(e - s), room = (size_t)num - 2; /* '\n' + NUL */
    if (len && *s == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb) {
            if (!section_known(s + 1, (size_t)(rb - s - 1))) {
                int n = (int)(rb - s - 1);
                fail(st, st->lineno, "deck %s:%d: unknown section [%.*s%s] (known: model, parallel, train, "
                     "data, checkpoint, log)", st->name, st->lineno, n > 64 ? 64 : n, s + 1, n > 64 ? "..." : "");
                return NULL;
            }
            len = (size_t)(rb - s + 1); /* drop anything after ']' as inih does */
        }
    } else if (len > room) {
        const char *sep = s;
        while (sep < e && *sep != '=' && *sep != ':') sep++;
        if (sep == e || (size_t)(sep - s) + 3 > room) {
            fail(st, st->lineno, "deck %s:%d: line too long and not a key = value line", st->name, st->lineno);
            return NULL;
        }
        const char *v = sep + 1;
        while (v < e && isspace((unsigned char)*v)) v++;
        st->longval = v;
        st->longlen = (size_t)(e - v);
        st->long_pending = 1;
        size_t kn = (size_t)(sep - s);
        memcpy(str, s, kn);
        memcpy(str + kn, "=\x01\n", 4);
        return str;
    }
    if (len > room) {
        fail(st, st->lineno, "deck %s:%d: line too long", st->name, st->lineno);
        return NULL;
    }
    memcpy(str, s, len);
    str[len] = '\n';
    str[len + 1] = 0;
    return str;
}

static int deck_handler(void *user, const char *section, const char *name, const char *value) {
    pstate *st = user;
    if (st->failed) return 0;
    char *longv = NULL;
    if (st->long_pending) {
        st->long_pending = 0;
        if (!strcmp(value, "\x01")) {
            longv = lm_alloc(st->longlen + 1);
            memcpy(longv, st->longval, st->longlen);
            value = longv;
        }
    }
    int line = st->lineno, rc = 0;
    char where[LM_PATHLEN + 64];
    snprintf(where, sizeof where, "deck %s:%d", st->name, line);
    int k = key_index(section, name);
    if (!*section)
        rc = fail(st, line, "%s: key '%.64s' outside any [section]", where, name);
    else if (!section_known(section, strlen(section)))
        rc = fail(st, line, "%s: unknown section [%.64s]", where, section);
    else if (k < 0)
        rc = fail(st, line, "%s: unknown key %s.%.64s", where, section, name);
    else if (st->okind[k] == O_FILE)
        rc = fail(st, line, "%s: duplicate key %s.%s (first set at line %d)", where, section, name, st->oline[k]);
    else if (!(rc = assign(st, k, value, where, line))) {
        st->okind[k] = O_FILE;
        st->oline[k] = line;
    }
    lm_free(longv);
    return rc == 0;
}

static int parse_text(pstate *st, const char *text) {
    st->p = text;
    st->end = text + strlen(text);
    st->lineno = 0;
    int r = ini_parse_stream(deck_reader, st, deck_handler, st);
    if (r > 0 && (!st->failed || r < st->fail_line)) {
        st->failed = 0;
        return fail(st, r, "deck %s:%d: syntax error: expected [section] or key = value", st->name, r);
    }
    if (st->failed) return LM_ERR_INPUT;
    if (r < 0) return fail(st, 0, "deck %s: inih failed (%d)", st->name, r);
    return 0;
}

/* ---- overrides: section.key=value ---- */

static int apply_override(pstate *st, const char *ov) {
    const char *eq = strchr(ov, '=');
    const char *dot = eq ? memchr(ov, '.', (size_t)(eq - ov)) : NULL;
    int n = (int)strlen(ov);
    if (!eq || !dot || dot == ov || dot + 1 == eq)
        return fail(st, 0, "override '%.*s%s': expected section.key=value", n > 80 ? 80 : n, ov, n > 80 ? "..." : "");
    char sec[32], key[64];
    const char *s0 = ov, *s1 = dot, *k0 = dot + 1, *k1 = eq;
    while (s0 < s1 && isspace((unsigned char)*s0)) s0++;
    while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
    int k = -1;
    if (s1 - s0 < (long)sizeof sec && k1 - k0 < (long)sizeof key) {
        memcpy(sec, s0, (size_t)(s1 - s0));
        sec[s1 - s0] = 0;
        memcpy(key, k0, (size_t)(k1 - k0));
        key[k1 - k0] = 0;
        k = key_index(sec, key);
    }
    if (k < 0) {
        int kn = (int)(eq - ov);
        return fail(st, 0, "override '%.*s%s': unknown key %.*s", n > 80 ? 80 : n, ov, n > 80 ? "..." : "",
                    kn > 64 ? 64 : kn, ov);
    }
    /* trim the value like a deck value */
    const char *v0 = eq + 1, *v1 = ov + n;
    while (v0 < v1 && isspace((unsigned char)*v0)) v0++;
    while (v1 > v0 && isspace((unsigned char)v1[-1])) v1--;
    char *v = lm_alloc((size_t)(v1 - v0) + 1);
    memcpy(v, v0, (size_t)(v1 - v0));
    int rc = assign(st, k, v, "override", 0);
    lm_free(v);
    if (!rc) st->okind[k] = O_OVERRIDE;
    return rc;
}

/* ---- resolve: defaults, preset, staged keys, then the checks ---- */

/* Path keys and the longest value the code can use: a path the kernel
 * takes has at most PATH_MAX - 1 = 4095 bytes; checkpoint.dir also gets
 * "/step_<step>.h5.tmp" and "/latest.tmp" appended, and the checkpoint
 * writer (io/ckpt.c) refuses a directory longer than 4000 bytes, so that is
 * its limit here, at deck time; data.train is a comma-separated list whose
 * every file must fit. */
static const struct { const char *sec, *name; size_t max; int list; } PATH_KEYS[] = {
    {"train", "init", 4095, 0},     {"data", "train", 4095, 1},      {"checkpoint", "dir", 4000, 0},
    {"checkpoint", "restart", 4095, 0}, {"log", "metrics", 4095, 0},
};

static int check_paths(pstate *st, const lm_config *c) {
    char w[LM_PATHLEN + 96];
    for (size_t i = 0; i < sizeof PATH_KEYS / sizeof PATH_KEYS[0]; i++) {
        int k = key_index(PATH_KEYS[i].sec, PATH_KEYS[i].name);
        const char *v = (const char *)c + KEYS[k].off;
        size_t n = strnlen(v, KEYS[k].size);
        /* the longest element (the whole value unless it is a list) */
        size_t longest = 0;
        for (const char *p = v; p < v + n;) {
            const char *e = PATH_KEYS[i].list ? memchr(p, ',', (size_t)(v + n - p)) : NULL;
            if (!e) e = v + n;
            if ((size_t)(e - p) > longest) longest = (size_t)(e - p);
            p = e + 1;
        }
        if (longest > PATH_KEYS[i].max) {
            origin(st, k, w, sizeof w);
            return fail(st, 0, "%s: %s.%s = '%.40s...': %s %zu bytes long; the longest usable is %zu bytes "
                        "(%s)", w, KEYS[k].sec, KEYS[k].name, v,
                        PATH_KEYS[i].list ? "a path in the list is" : "the path is", longest, PATH_KEYS[i].max,
                        !strcmp(PATH_KEYS[i].name, "dir") ? "the checkpoint writer's limit, leaving room for "
                        "\"/step_<step>.h5.tmp\" within PATH_MAX 4096" : "PATH_MAX 4096 less the final NUL");
        }
    }
    return 0;
}

#define KIDX(sec, name) key_index(sec, name)
#define ORIGIN(sec, name) origin(st, KIDX(sec, name), w, sizeof w)

static int resolve(pstate *st, lm_config *c) {
    char w[LM_PATHLEN + 96];
    deck_defaults(c);
    if (st->okind[KIDX("model", "preset")] != O_UNSET && st->ex.preset[0])
        deck_apply_preset(c, st->ex.preset, NULL, 0); /* validated when staged */
    for (int k = 0; k < NKEYS; k++)
        if (st->okind[k] != O_UNSET) memcpy((char *)c + KEYS[k].off, (char *)&st->ex + KEYS[k].off, KEYS[k].size);
    if (!c->preset[0] && st->okind[KIDX("model", "n_kv_heads")] == O_UNSET) c->n_kv_heads = c->n_heads;

    for (int k = 0; k < NKEYS; k++) {
        if (!(KEYS[k].flags & REQUIRED) || st->okind[k] != O_UNSET) continue;
        if ((KEYS[k].flags & SHAPE) && c->preset[0]) continue;
        return fail(st, 0, "%s.%s is required (set it in deck %s or as %s.%s=VALUE; model shape keys may come "
                    "from model.preset)", KEYS[k].sec, KEYS[k].name, st->name, KEYS[k].sec, KEYS[k].name);
    }
    if (c->n_heads % c->n_kv_heads) {
        ORIGIN("model", "n_kv_heads");
        return fail(st, 0, "%s: model.n_kv_heads = %d must divide model.n_heads = %d", w, c->n_kv_heads, c->n_heads);
    }
    if (c->dim % c->n_heads) {
        ORIGIN("model", "dim");
        return fail(st, 0, "%s: model.dim = %d must be a multiple of model.n_heads = %d", w, c->dim, c->n_heads);
    }
    if ((c->dim / c->n_heads) % 2) {
        ORIGIN("model", "dim");
        return fail(st, 0, "%s: model.dim = %d gives head_dim = dim/n_heads = %d, which must be even (RoPE rotates pairs)",
                    w, c->dim, c->dim / c->n_heads);
    }
    if (c->seq_len > c->max_seq_len) {
        ORIGIN("train", "seq_len");
        return fail(st, 0, "%s: train.seq_len = %d exceeds model.max_seq_len = %d", w, c->seq_len, c->max_seq_len);
    }
    if (c->global_batch % c->micro_batch) {
        ORIGIN("train", "global_batch");
        return fail(st, 0, "%s: train.global_batch = %d must be a multiple of train.micro_batch = %d", w,
                    c->global_batch, c->micro_batch);
    }
    if (c->min_lr > c->lr) {
        ORIGIN("train", "min_lr");
        return fail(st, 0, "%s: train.min_lr = %g must be <= train.lr = %g", w, c->min_lr, c->lr);
    }
    /* warmup_steps > steps is allowed: the run ends while still warming up. */
    return check_paths(st, c);
}

int deck_load_string(lm_config *c, const char *text, const char *name, int noverride, char *const *overrides,
                     char *err, size_t errlen) {
    pstate *st = lm_alloc(sizeof *st);
    st->name = name ? name : "(string)";
    st->err = err;
    st->errlen = errlen;
    if (err && errlen) err[0] = 0;
    int rc = text ? parse_text(st, text) : 0;
    for (int i = 0; !rc && i < noverride; i++) rc = apply_override(st, overrides[i] ? overrides[i] : "");
    if (!rc) rc = resolve(st, c);
    else deck_defaults(c);
    lm_free(st);
    return rc;
}

/* Read the whole file (deck files are small; 16 MiB is a sanity cap). */
int deck_load(lm_config *c, const char *path, int noverride, char *const *overrides, char *err, size_t errlen) {
    deck_defaults(c);
    if (!path) return deck_load_string(c, NULL, "(none)", noverride, overrides, err, errlen);
    /* Only a regular file: opening a FIFO (or a tty) for reading would block
     * until a writer comes, possibly forever. O_NONBLOCK makes the open itself
     * return at once; fstat then tells what it is. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "cannot read deck %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        const char *what = S_ISFIFO(sb.st_mode) ? "a FIFO" : S_ISDIR(sb.st_mode) ? "a directory"
                         : S_ISCHR(sb.st_mode) ? "a character device" : S_ISSOCK(sb.st_mode) ? "a socket"
                         : "not a regular file";
        close(fd);
        return lm_err(err, errlen, LM_ERR_INPUT, "cannot read deck %s: it is %s; the deck must be a regular file", path, what);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return lm_err(err, errlen, LM_ERR_INPUT, "cannot read deck %s: %s", path, strerror(e));
    }
    size_t cap = 4096, n = 0;
    char *buf = lm_alloc(cap);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
        if (n == cap - 1) {
            if (cap >= ((size_t)16 << 20)) break;
            char *nb = lm_alloc(cap * 2);
            memcpy(nb, buf, n);
            lm_free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    int ioerr = ferror(f) ? errno : 0, big = !ioerr && !feof(f);
    fclose(f);
    int rc;
    if (ioerr) rc = lm_err(err, errlen, LM_ERR_INPUT, "cannot read deck %s: %s", path, strerror(ioerr));
    else if (big) rc = lm_err(err, errlen, LM_ERR_INPUT, "cannot read deck %s: larger than 16 MiB", path);
    else if (memchr(buf, 0, n)) rc = lm_err(err, errlen, LM_ERR_INPUT, "deck %s: contains a NUL byte (not a text file)", path);
    else {
        buf[n] = 0;
        rc = deck_load_string(c, buf, path, noverride, overrides, err, errlen);
    }
    lm_free(buf);
    return rc;
}

/* ---- the resolved deck as text ---- */

typedef struct {
    char *buf;
    size_t len, n;
} outbuf;

static void put(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->n < o->len ? o->buf + o->n : NULL, o->n < o->len ? o->len - o->n : 0, fmt, ap);
    va_end(ap);
    if (w > 0) o->n += (size_t)w;
}

/* Shortest text that strtod reads back to the same double: integral values
 * below 2^53 as integers, else the fewest %g digits (at most 17) that
 * round-trip. */
static void fmt_double(double v, char *out, size_t n) {
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, v);
        if (strtod(out, NULL) == v) return;
    }
}

size_t deck_to_text(const lm_config *c, char *buf, size_t len) {
    outbuf o = {buf, len, 0};
    if (buf && len) buf[0] = 0;
    const char *sec = "";
    for (int k = 0; k < NKEYS; k++) {
        const keydef *kd = &KEYS[k];
        const char *p = (const char *)c + kd->off;
        if (strcmp(sec, kd->sec)) {
            put(&o, "%s[%s]\n", k ? "\n" : "", kd->sec);
            sec = kd->sec;
        }
        char num[64];
        const char *v = num;
        int prec = 64;
        switch (kd->type) {
        case T_INT: snprintf(num, sizeof num, "%d", *(const int *)p); break;
        case T_LONG: snprintf(num, sizeof num, "%ld", *(const long *)p); break;
        case T_DP:
            if (*(const int *)p) snprintf(num, sizeof num, "%d", *(const int *)p);
            else v = "auto";
            break;
        case T_U64: snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)p); break;
        case T_DBL: fmt_double(*(const double *)p, num, sizeof num); break;
        case T_BOOL: v = *(const int *)p ? "true" : "false"; break;
        default: /* strings: NUL-terminated within the field */
            v = p;
            prec = (int)strnlen(p, kd->size);
        }
        if (*v) put(&o, "%s = %.*s\n", kd->name, prec, v);
        else put(&o, "%s =\n", kd->name);
    }
    return o.n;
}
