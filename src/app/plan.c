/* plan.c — `lamina plan`: the performance model's command line, and the
 * parsers of the cluster description and calibration files it reads (pure
 * text parsers, declared in plan_model.h so the unit test can reach them).
 *
 *   lamina plan DECK-or-PRESET --cluster FILE --gpus N[,N...] [--global-batch B]
 *               [--seq-len T] [--top K] [--calibration FILE] [section.key=value ...]
 *
 * Every rank computes the same thing (it is cheap); rank 0 prints. Deck
 * overrides of parallel.tp / pp / virtual_stages / schedule / sp / zero and
 * train.micro_batch / recompute fix that dimension of the search. */
#include "cmds.h"
#include "common.h"
#include "deck.h"
#include "plan_model.h"
#include <errno.h>
#include <ctype.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---------------------------------------------------------------- INI parsing */

enum { K_STR, K_NUM, K_INT, K_PREC, K_BOOL };
typedef struct {
    const char *key;
    int type;
    size_t off, size;
    double lo, hi;    /* K_NUM / K_INT: lo <= x <= hi; lo_open: x > lo */
    int lo_open, required;
} pkey;

#define CF(f) offsetof(plan_cluster, f), sizeof(((plan_cluster *)0)->f)
#define KF(f) offsetof(plan_calib, f), sizeof(((plan_calib *)0)->f)
static const pkey CLUSTER_KEYS[] = {
    {"name", K_STR, CF(name), 0, 0, 0, 1},
    {"gpu", K_STR, CF(gpu), 0, 0, 0, 1},
    {"peak_tflops", K_NUM, CF(peak_tflops), 0, 1e9, 1, 1},
    {"mem_gib", K_NUM, CF(mem_gib), 0, 1e9, 1, 1},
    {"gpus_per_node", K_INT, CF(gpus_per_node), 1, 1 << 20, 0, 1},
    {"intra_node_gbs", K_NUM, CF(intra_gbs), 0, 1e9, 1, 1},
    {"inter_node_gbs", K_NUM, CF(inter_gbs), 0, 1e9, 1, 1},
    {"latency_us", K_NUM, CF(latency_us), 0, 1e9, 0, 1},
    {"mem_bw_gbs", K_NUM, CF(mem_bw_gbs), 0, 1e9, 1, 1},
    {"precision", K_PREC, CF(esz), 0, 0, 0, 1},
    {"oversubscribe", K_BOOL, CF(oversubscribe), 0, 0, 0, 0},
};
static const pkey CALIB_KEYS[] = {
    {"gemm_eff_max", K_NUM, KF(gemm_eff_max), 0, 1, 1, 1},
    {"gemm_k_half", K_NUM, KF(gemm_k_half), 0, 1e9, 0, 1},
    {"e2e", K_NUM, KF(e2e), 0, 1, 1, 1},
    {"dp_hidden", K_NUM, KF(dp_hidden), 0, 1, 0, 1},
    {"comm_eff", K_NUM, KF(comm_eff), 0, 1, 1, 1},
    {"dp_comm_eff", K_NUM, KF(dp_comm_eff), 0, 1, 1, 1},
    {"reserve_gib", K_NUM, KF(reserve_gib), 0, 1e9, 0, 1},
    {"step_overhead_ms", K_NUM, KF(step_overhead_ms), 0, 1e9, 0, 1},
};
#define NKEYS(t) ((int)(sizeof t / sizeof t[0]))

typedef struct {
    const pkey *keys;
    int nkeys;
    const char *want;      /* section whose values are stored ("cluster", or a cluster name) */
    const char *fallback;  /* calibration: [default] when `want` is absent */
    void *out, *out_fb;
    int seen[16], seen_fb[16], n_want, n_fb;
    int strict_sections;   /* cluster files: only [cluster] */
    char msg[512];
} pstate;

/* Value text: inline comments (" ;", " #") and surrounding blanks removed. */
static void clean(const char *v, char *out, size_t n) {
    while (isspace((unsigned char)*v)) v++;
    size_t k = 0;
    for (const char *p = v; *p && k + 1 < n; p++) {
        if ((*p == ';' || *p == '#') && p > v && isspace((unsigned char)p[-1])) break;
        out[k++] = *p;
    }
    while (k && isspace((unsigned char)out[k - 1])) k--;
    out[k] = 0;
}

static int set_value(pstate *st, const pkey *k, const char *section, const char *val, void *dst) {
    char *p = (char *)dst + k->off, *end;
    switch (k->type) {
    case K_STR:
        if (!*val || strlen(val) >= k->size) {
            snprintf(st->msg, sizeof st->msg, "[%s] %s = '%s': must be 1 to %zu characters", section, k->key, val,
                     k->size - 1);
            return 0;
        }
        strcpy(p, val);
        return 1;
    case K_PREC:
        if (strcmp(val, "bf16") && strcmp(val, "fp32")) {
            snprintf(st->msg, sizeof st->msg, "[%s] precision = '%s': must be bf16 (CUDA backend: 2-byte weights, "
                     "fp32 master) or fp32 (CPU backend)", section, val);
            return 0;
        }
        *(int *)p = strcmp(val, "bf16") ? 4 : 2;
        return 1;
    case K_BOOL:
        if (!strcasecmp(val, "true") || !strcmp(val, "1") || !strcasecmp(val, "yes")) *(int *)p = 1;
        else if (!strcasecmp(val, "false") || !strcmp(val, "0") || !strcasecmp(val, "no")) *(int *)p = 0;
        else {
            snprintf(st->msg, sizeof st->msg, "[%s] %s = '%s': not a boolean (true/false)", section, k->key, val);
            return 0;
        }
        return 1;
    default: {
        errno = 0;
        double x = strtod(val, &end);
        int bad = !*val || *end || errno || !isfinite(x) || (k->type == K_INT && x != floor(x));
        if (bad) {
            snprintf(st->msg, sizeof st->msg, "[%s] %s = '%s': not %s", section, k->key, val,
                     k->type == K_INT ? "an integer" : "a number");
            return 0;
        }
        int below = k->lo_open ? !(x > k->lo) : !(x >= k->lo);
        if (below || x > k->hi) {
            if (below) snprintf(st->msg, sizeof st->msg, "[%s] %s = %s: must be %s %g", section, k->key, val,
                                k->lo_open ? ">" : ">=", k->lo);
            else snprintf(st->msg, sizeof st->msg, "[%s] %s = %s: must be <= %g", section, k->key, val, k->hi);
            return 0;
        }
        if (k->type == K_INT) *(int *)p = (int)x;
        else *(double *)p = x;
        return 1;
    }
    }
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    pstate *st = user;
    if (!*section) {
        snprintf(st->msg, sizeof st->msg, "key '%s' outside any [section]", name);
        return 0;
    }
    if (st->strict_sections && strcmp(section, st->want)) {
        snprintf(st->msg, sizeof st->msg, "unknown section [%s] (a cluster file has one section, [cluster])", section);
        return 0;
    }
    int k = -1;
    for (int i = 0; i < st->nkeys; i++)
        if (!strcmp(st->keys[i].key, name)) k = i;
    if (k < 0) {
        char known[512] = "";
        for (int i = 0; i < st->nkeys; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", st->keys[i].key);
        snprintf(st->msg, sizeof st->msg, "[%.64s] unknown key '%.64s' (known: %.300s)", section, name, known);
        return 0;
    }
    char val[256];
    clean(value, val, sizeof val);
    int is_want = !strcmp(section, st->want), is_fb = st->fallback && !strcmp(section, st->fallback);
    int *seen = is_want ? st->seen : is_fb ? st->seen_fb : NULL;
    if (seen && seen[k]) {
        snprintf(st->msg, sizeof st->msg, "[%s] duplicate key '%s'", section, name);
        return 0;
    }
    /* other sections of a calibration file are checked, not stored */
    char scratch[sizeof(plan_calib) > sizeof(plan_cluster) ? sizeof(plan_calib) : sizeof(plan_cluster)];
    void *dst = is_want ? st->out : is_fb ? st->out_fb : (void *)scratch;
    if (!set_value(st, &st->keys[k], section, val, dst)) return 0;
    if (seen) {
        seen[k] = 1;
        if (is_want) st->n_want++;
        else st->n_fb++;
    }
    return 1;
}

static int run_parse(pstate *st, const char *text, const char *name, char *err, size_t errlen) {
    int r = ini_parse_string(text, handler, st);
    if (r > 0) {
        if (!st->msg[0]) snprintf(st->msg, sizeof st->msg, "syntax error: expected [section] or key = value");
        return lm_err(err, errlen, LM_ERR_INPUT, "%s:%d: %s", name, r, st->msg);
    }
    if (r < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot parse (inih error %d)", name, r);
    return 0;
}

static int missing(const pstate *st, const int *seen, const char *section, const char *name, char *err,
                   size_t errlen) {
    for (int i = 0; i < st->nkeys; i++)
        if (st->keys[i].required && !seen[i])
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: [%s] key '%s' is missing", name, section, st->keys[i].key);
    return 0;
}

int plan_cluster_parse(const char *text, const char *name, plan_cluster *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    pstate st = {.keys = CLUSTER_KEYS, .nkeys = NKEYS(CLUSTER_KEYS), .want = "cluster", .out = out,
                 .strict_sections = 1};
    int rc = run_parse(&st, text, name, err, errlen);
    if (!rc && !st.n_want) return lm_err(err, errlen, LM_ERR_INPUT, "%s: no [cluster] section", name);
    return rc ? rc : missing(&st, st.seen, "cluster", name, err, errlen);
}

/* Built-in values when no calibration file is found: the H100 figures of
 * perf/plan_calibration.ini's [default]. */
void plan_calib_defaults(plan_calib *c) {
    *c = (plan_calib){.gemm_eff_max = 0.82, .gemm_k_half = 128, .e2e = 0.88, .dp_hidden = 0.8, .comm_eff = 0.8,
                      .dp_comm_eff = 0.8,
                      .reserve_gib = 4, .step_overhead_ms = 0};
}

int plan_calib_parse(const char *text, const char *name, const char *cluster, plan_calib *out, int *found, char *err,
                     size_t errlen) {
    plan_calib want, fb;
    plan_calib_defaults(&want);
    fb = want;
    pstate st = {.keys = CALIB_KEYS, .nkeys = NKEYS(CALIB_KEYS), .want = cluster, .fallback = "default",
                 .out = &want, .out_fb = &fb};
    int rc = run_parse(&st, text, name, err, errlen);
    plan_calib_defaults(out);
    *found = 0;
    if (rc) return rc;
    if (st.n_want) {
        if ((rc = missing(&st, st.seen, cluster, name, err, errlen))) return rc;
        *out = want;
        *found = 1;
    } else if (st.n_fb) {
        if ((rc = missing(&st, st.seen_fb, "default", name, err, errlen))) return rc;
        *out = fb;
        *found = 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- the command */

static char *slurp(const char *what, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) lm_fail(LM_ERR_INPUT, "plan: cannot read %s %s: %s", what, path, strerror(errno));
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n == cap - 1 && cap < ((size_t)1 << 24)) buf = realloc(buf, cap *= 2);
        else if (n == cap - 1) break;
    }
    fclose(f);
    if (!buf) lm_abort(LM_ERR_RUNTIME, "plan: out of memory reading %s", path);
    buf[n] = 0;
    if (memchr(buf, 0, n)) lm_fail(LM_ERR_INPUT, "plan: %s %s is not a text file", what, path);
    return buf;
}

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    char *e;
    errno = 0;
    long x = v ? strtol(v, &e, 10) : 0;
    if (!v || !*v || *e || errno || x < lo || x > hi)
        lm_fail(LM_ERR_INPUT, "plan: %s %s: expected an integer in [%ld, %ld]", flag, v ? v : "(missing)", lo, hi);
    return x;
}

/* --gpus N[,N...] */
static int parse_gpus(const char *v, int *gpus, int max) {
    if (!v) lm_fail(LM_ERR_INPUT, "plan: --gpus needs a value (e.g. --gpus 8,64)");
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max) lm_fail(LM_ERR_INPUT, "plan: --gpus: at most %d counts", max);
        gpus[n++] = (int)parse_long("--gpus", t, 1, 1 << 20);
    }
    if (!n) lm_fail(LM_ERR_INPUT, "plan: --gpus '%s': expected N[,N...] with N >= 1", v);
    return n;
}

/* Overrides of a search dimension fix it (read back from the resolved deck). */
static void fixes(int nov, char **ov, const lm_config *c, plan_fix *f) {
    *f = (plan_fix){-1, -1, -1, -1, -1, -1, -1};
    for (int i = 0; i < nov; i++) {
        const char *o = ov[i];
#define HAS(k) (!strncmp(o, k "=", strlen(k) + 1) || !strncmp(o, k " ", strlen(k) + 1))
        if (HAS("parallel.tp")) f->tp = c->tp;
        if (HAS("parallel.pp")) f->pp = c->pp;
        if (HAS("parallel.virtual_stages")) f->v = c->virtual_stages;
        if (HAS("parallel.schedule") && !strcmp(c->schedule, "1f1b")) f->v = 1;
        if (HAS("parallel.sp")) f->sp = c->sp;
        if (HAS("parallel.zero")) f->zero = c->zero;
        if (HAS("train.micro_batch")) f->mb = c->micro_batch;
        if (HAS("train.recompute")) f->recompute = c->recompute;
#undef HAS
    }
}

/* The model: a deck file, or a preset (then a minimal deck is made so that
 * overrides go through the deck's own checks). */
static void load_model(const char *what, int nov, char **ov, int seq, int gb, lm_config *c) {
    char err[LM_ERRLEN];
    if (!access(what, F_OK)) {
        if (deck_load(c, what, nov, ov, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
        return;
    }
    lm_config p;
    deck_defaults(&p);
    if (deck_apply_preset(&p, what, err, sizeof err))
        lm_fail(LM_ERR_INPUT, "plan: '%s' is neither a deck file nor a preset: %s", what, err);
    int T = seq > 0 ? seq : p.max_seq_len;
    int B = gb > 0 ? gb : ((4 << 20) + T - 1) / T; /* Meta's LLaMA-2 batch: 4M tokens */
    char text[512];
    snprintf(text, sizeof text, "[model]\npreset = %s\n[train]\nsteps = 1\nseq_len = %d\nmicro_batch = 1\n"
             "global_batch = %d\nlr = 1\n[data]\ntrain = none\n", what, T, B);
    if (deck_load_string(c, text, what, nov, ov, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
}

/* The calibration file: --calibration, else perf/plan_calibration.ini here
 * or next to the executable's ../perf. */
static void load_calib(const char *path, const char *cluster, plan_calib *c, char *src, size_t n) {
    char guess[LM_PATHLEN + 64] = "";
    if (!path) {
        if (!access("perf/plan_calibration.ini", R_OK)) path = "perf/plan_calibration.ini";
        else {
            ssize_t k = readlink("/proc/self/exe", guess, sizeof guess - 40);
            if (k > 0) {
                guess[k] = 0;
                char *sl = strrchr(guess, '/');
                if (sl) strcpy(sl, "/../perf/plan_calibration.ini");
                if (!access(guess, R_OK)) path = guess;
            }
        }
    }
    if (!path) {
        plan_calib_defaults(c);
        snprintf(src, n, "built-in defaults (no perf/plan_calibration.ini found)");
        return;
    }
    char *text = slurp("calibration file", path), err[LM_ERRLEN];
    int found = 0;
    if (plan_calib_parse(text, path, cluster, c, &found, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
    free(text);
    snprintf(src, n, "%.3900s [%.63s]", path,
             found == 1 ? cluster : found == 2 ? "default" : "none: built-in defaults");
}

static const double GiB = 1073741824.0;

static void print_row(int i, const plan_result *r) {
    const plan_layout *l = &r->l;
    lm_log("%3d %5d %3d %3d %3d %2d %4d %3d %2d %8.1f %9.3f %10.0f %5.1f%% | %7.3f %7.3f %7.3f %7.3f %6.3f %6.3f\n", i,
           l->dp, l->tp, l->pp, l->v, l->sp, l->zero, l->mb, l->recompute, r->mem.total / GiB, r->t_step,
           r->tokens_per_s_gpu, 100 * r->mfu, r->t_compute, r->t_bubble, r->t_tp, r->t_dp, r->t_pp, r->t_optim);
}

static void print_one(const char *deck, int is_deck, int gpus, const lm_config *cfg, const plan_shape *s,
                      const plan_cluster *cl, const plan_calib *c, const plan_fix *fx, int top) {
    int nodes = cl->oversubscribe ? 1 : (gpus + cl->gpus_per_node - 1) / cl->gpus_per_node;
    lm_log("\n== %d x %s (%s, %d node(s) of %d): %s, global batch %d x %d tokens ==\n", gpus, cl->gpu, cl->name, nodes,
           cl->gpus_per_node, cfg->preset[0] ? cfg->preset : deck, s->global_batch, s->seq_len);
    plan_result *res = malloc(sizeof(plan_result) * (size_t)(top > 0 ? top : 1)), mod;
    plan_rejects rej;
    int n = plan_search(s, cl, c, gpus, fx, res, top > 0 ? top : 1, &mod, &rej);
    double limit = (cl->mem_gib - c->reserve_gib);
    if (n) {
        lm_log("  # %5s %3s %3s %3s %2s %4s %3s %2s %8s %9s %10s %6s | %7s %7s %7s %7s %6s %6s\n", "dp", "tp", "pp",
               "v", "sp", "zero", "mb", "rc", "GiB/GPU", "step s", "tok/s/GPU", "MFU", "compute", "bubble", "tp", "dp",
               "pp", "optim");
        for (int i = 0; i < n && i < top; i++) print_row(i + 1, &res[i]);
        lm_log("  (%d layouts fit of %ld evaluated; times in seconds per step: compute, pipeline bubble, exposed tp, "
               "dp and pp communication, optimizer)\n", n, rej.evaluated);
        const plan_result *b = &res[0];
        const plan_layout *l = &b->l;
        lm_log("recommended: dp %d x tp %d x pp %d (v %d, sp %s), ZeRO-%d, micro_batch %d, recompute %s: %.1f GiB/GPU "
               "(limit %.1f), %.3f s/step, %.0f tokens/s/GPU, MFU %.1f%%\n", l->dp, l->tp, l->pp, l->v,
               l->sp ? "on" : "off", l->zero, l->mb, l->recompute ? "on" : "off", b->mem.total / GiB, limit, b->t_step,
               b->tokens_per_s_gpu, 100 * b->mfu);
        const plan_mem *M = &b->mem;
        const double MiB = 1048576.0;
        lm_log("  memory per GPU (stage %d of %d: %d layer(s), %d activation set(s)): weights %.1f MiB%s, gradients "
               "%.1f MiB (+ buckets %.1f), optimizer state %.1f MiB, activations kept %.1f MiB + workspace %.1f MiB; "
               "Psi = %.0f elements\n", b->mem_stage, l->pp, M->layers, M->slots, (M->weights + M->master) / MiB,
               M->master > 0 ? " (incl. fp32 master)" : "", M->grads / MiB, M->buckets / MiB, M->optim / MiB,
               M->acts_kept / MiB, M->acts_ws / MiB, M->psi);
        lm_log("  run: mpirun -np %d lamina train %s%s parallel.dp=%d parallel.tp=%d parallel.pp=%d "
               "parallel.schedule=%s parallel.virtual_stages=%d parallel.sp=%s parallel.zero=%d "
               "train.micro_batch=%d train.recompute=%s train.global_batch=%d train.seq_len=%d\n", gpus,
               is_deck ? deck : "DECK model.preset=", is_deck ? "" : deck, l->dp, l->tp, l->pp,
               l->v > 1 ? "interleaved" : "1f1b", l->v, l->sp ? "true" : "false", l->zero, l->mb,
               l->recompute ? "true" : "false", s->global_batch, s->seq_len);
    } else {
        lm_log("no layout fits: of %ld evaluated, the smallest needs %.1f GiB per GPU (limit %.1f = %.0f GiB - %.1f "
               "reserve)\n", rej.evaluated, rej.min_mem / GiB, limit, cl->mem_gib, c->reserve_gib);
    }
    for (int w = 1; w < PLAN_R_N; w++) {
        if (!rej.count[w]) continue;
        if (w == PLAN_R_MEMORY)
            lm_log("rejected: %ld layouts do not fit in %.1f GiB (%.0f GiB - %.1f reserve); the smallest of them needs "
                   "%.1f GiB\n", rej.count[w], limit, cl->mem_gib, c->reserve_gib, rej.min_mem / GiB);
        else
            lm_log("rejected: %ld layouts: %s (e.g. dp %d x tp %d x pp %d)\n", rej.count[w], plan_reject_name(w),
                   rej.example[w][0], rej.example[w][1], rej.example[w][2]);
    }
    if (mod.fits && (!n || (!mod.l.offload && mod.t_step < res[0].t_step))) {
        const plan_layout *l = &mod.l;
        lm_log("modelled only (not in lamina yet, never recommended): %s: dp %d x tp %d x pp %d, micro_batch %d, "
               "recompute %s would need %.1f GiB/GPU%s", l->offload ? "ZeRO-2 + optimizer offload to host" : "ZeRO-3",
               l->dp, l->tp, l->pp, l->mb, l->recompute ? "on" : "off", mod.mem.total / GiB,
               l->offload ? " (step time not modelled)\n" : "");
        if (!l->offload) lm_log(", %.3f s/step, MFU %.1f%%\n", mod.t_step, 100 * mod.mfu);
    }
    free(res);
}

int cmd_plan(int argc, char **argv) {
    const char *model = NULL, *cluster_path = NULL, *calib_path = NULL, *gpus_arg = NULL;
    long gb = 0, seq = 0, top = 10;
    char **ov = malloc(sizeof(char *) * (size_t)(argc + 1));
    int nov = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cluster")) cluster_path = v, i++;
        else if (!strcmp(a, "--calibration")) calib_path = v, i++;
        else if (!strcmp(a, "--gpus")) gpus_arg = v, i++;
        else if (!strcmp(a, "--global-batch")) gb = parse_long(a, v, 1, INT_MAX), i++;
        else if (!strcmp(a, "--seq-len")) seq = parse_long(a, v, 1, INT_MAX), i++;
        else if (!strcmp(a, "--top")) top = parse_long(a, v, 1, 1000), i++;
        else if (a[0] == '-') lm_fail(LM_ERR_INPUT, "plan: unknown option '%s' (see lamina help plan)", a);
        else if (!model) model = a;
        else if (strchr(a, '=')) ov[nov++] = argv[i];
        else lm_fail(LM_ERR_INPUT, "plan: unexpected argument '%s' (overrides are section.key=value)", a);
        if ((!strcmp(a, "--cluster") || !strcmp(a, "--calibration")) && !v)
            lm_fail(LM_ERR_INPUT, "plan: %s needs a file", a);
    }
    if (!model) lm_fail(LM_ERR_INPUT, "plan: missing DECK or PRESET (see lamina help plan)");
    if (!cluster_path) lm_fail(LM_ERR_INPUT, "plan: missing --cluster FILE (e.g. inputs/clusters/h100-sxm.ini)");
    int gpus[64], ng = parse_gpus(gpus_arg, gpus, 64);

    lm_config cfg;
    load_model(model, nov, ov, (int)seq, (int)gb, &cfg);
    if (seq > 0) {
        if (seq > cfg.max_seq_len)
            lm_fail(LM_ERR_INPUT, "plan: --seq-len %ld exceeds model.max_seq_len = %d", seq, cfg.max_seq_len);
        cfg.seq_len = (int)seq;
    }
    if (gb > 0) cfg.global_batch = (int)gb;
    plan_fix fx;
    fixes(nov, ov, &cfg, &fx);

    char err[LM_ERRLEN], src[LM_PATHLEN + 96];
    char *text = slurp("cluster file", cluster_path);
    plan_cluster cl;
    if (plan_cluster_parse(text, cluster_path, &cl, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
    free(text);
    plan_calib cal;
    load_calib(calib_path, cl.name, &cal, src, sizeof src);

    plan_shape s = {cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.vocab_size,
                    cfg.tie_embeddings, cfg.seq_len, cfg.global_batch};
    lm_log("lamina plan: %s: %.3g parameters (dim %d, %d layers, %d heads, %d kv heads, ffn %d, vocab %d%s), "
           "%.3g model FLOPs per token\n", cfg.preset[0] ? cfg.preset : model,
           plan_n_params(&s) + (s.tied ? 0 : (double)s.vocab * s.dim), s.dim, s.n_layers, s.n_heads, s.n_kv_heads,
           s.ffn_dim, s.vocab, s.tied ? ", tied" : "", plan_flops_per_token(&s));
    lm_log("cluster: %s: %s, %.4g TFLOP/s peak (%s), %.4g GiB, %d per node, %.4g / %.4g GB/s intra / inter node, "
           "%.3g us%s\n", cluster_path, cl.gpu, cl.peak_tflops, cl.esz == 2 ? "bf16" : "fp32", cl.mem_gib,
           cl.gpus_per_node, cl.intra_gbs, cl.inter_gbs, cl.latency_us,
           cl.oversubscribe ? ", ranks beyond a node share its cores" : "");
    lm_log("calibration: %s: GEMM efficiency %.3g k/(k + %.4g), end-to-end %.3g, dp hidden %.2f, link efficiency "
           "%.2f (dp %.2f), reserve %.3g GiB, overhead %.4g ms\n", src, cal.gemm_eff_max, cal.gemm_k_half, cal.e2e,
           cal.dp_hidden, cal.comm_eff, cal.dp_comm_eff, cal.reserve_gib, cal.step_overhead_ms);
    int is_deck = !access(model, F_OK);
    for (int i = 0; i < ng; i++) print_one(model, is_deck, gpus[i], &cfg, &s, &cl, &cal, &fx, (int)top);
    free(ov);
    return 0;
}
