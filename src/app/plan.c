/* plan.c — `lamina plan`: the performance model's command line, and the
 * parsers of the cluster description and calibration files it reads (pure
 * text parsers, declared in plan_model.h so the unit test can reach them).
 *
 *   lamina plan DECK-or-PRESET --cluster FILE|NAME --gpus N[,N...] [--global-batch B]
 *               [--seq-len T] [--top K] [--calibration FILE] [section.key=value ...]
 *   lamina plan --deck DECK --cluster FILE|NAME [--gpus N] [section.key=value ...]
 *
 * The first searches the layouts (offload and ZeRO-3 included); --deck
 * evaluates the deck's own layout (its parallel.offload, offload_frac,
 * prefetch and train.device_memory included): memory by category on the
 * device and the host, whether it fits, step time, tokens/s and MFU.
 *
 * Every rank computes the same thing (it is cheap); rank 0 prints. Deck
 * overrides of parallel.tp / pp / virtual_stages / schedule / sp / zero /
 * offload / offload_frac / prefetch and train.micro_batch / recompute fix
 * that dimension of the search. */
#include "cmds.h"
#include "common.h"
#include "deck.h"
#include "lm_ini.h"
#include "opts.h"
#include "plan_model.h"
#include <errno.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---------------------------------------------------------------- INI parsing */

/* The cluster file: one section, [cluster]; every key but oversubscribe
 * required. The calibration file: the same keys in every section (one per
 * cluster name, and [default]); their defaults are the built-in values. */
#define CF(f) offsetof(plan_cluster, f), sizeof(((plan_cluster *)0)->f)
#define KF(f) offsetof(plan_calib, f), sizeof(((plan_calib *)0)->f)
#define REQ INI_REQUIRED
#define POS (INI_LO_OPEN | INI_HAS_HI) /* (lo, hi] */
#define NNEG INI_HAS_HI                /* [lo, hi] */
#define CS(n, f) {"cluster", n, INI_STRING, CF(f), 0, 0, 0, 0, REQ, NULL, NULL, NULL}
#define CD(n, f, fl) {"cluster", n, INI_DOUBLE, CF(f), 0, 0, 0, 1e9, (fl) | REQ, NULL, NULL, NULL}
#define KD(n, f, hi, fl, def) {NULL, n, INI_DOUBLE, KF(f), 0, 0, 0, hi, (fl) | REQ, NULL, def, NULL}
static const lm_ini_key CLUSTER_KEYS[] = {
    CS("name", name),
    CS("gpu", gpu),
    CD("peak_tflops", peak_tflops, POS),
    CD("mem_gib", mem_gib, POS),
    {"cluster", "gpus_per_node", INI_INT, CF(gpus_per_node), 1, 1 << 20, 0, 0, REQ, NULL, NULL, NULL},
    CD("intra_node_gbs", intra_gbs, POS),
    CD("inter_node_gbs", inter_gbs, POS),
    CD("latency_us", latency_us, NNEG),
    CD("mem_bw_gbs", mem_bw_gbs, POS),
    /* bf16: CUDA backend, 2-byte weights, fp32 master; fp32: CPU backend */
    {"cluster", "precision", INI_ENUM, CF(esz), 0, 0, 0, 0, INI_INDEX | REQ, "bf16|fp32", NULL, NULL},
    {"cluster", "oversubscribe", INI_BOOL, CF(oversubscribe), 0, 0, 0, 0, 0, NULL, NULL, NULL},
    /* offload: optional (0 = not given; without link_gbs the search does not offload) */
    {"cluster", "host_mem_gib", INI_DOUBLE, CF(host_mem_gib), 0, 0, 0, 1e9, NNEG, NULL, "0", NULL},
    {"cluster", "link_gbs", INI_DOUBLE, CF(link_gbs), 0, 0, 0, 1e9, NNEG, NULL, "0", NULL},
    {"cluster", "host_adamw_rate", INI_DOUBLE, CF(host_adamw_rate), 0, 0, 0, 1e15, NNEG, NULL, "0", NULL},
    {"cluster", "host_mem_bw_gbs", INI_DOUBLE, CF(host_mem_bw_gbs), 0, 0, 0, 1e9, NNEG, NULL, "0", NULL},
};
/* Built-in values (also when no calibration file is found): the H100
 * figures of perf/plan_calibration.ini's [default]. */
static const lm_ini_key CALIB_KEYS[] = {
    KD("gemm_eff_max", gemm_eff_max, 1, POS, "0.82"),
    KD("gemm_k_half", gemm_k_half, 1e9, NNEG, "128"),
    KD("e2e", e2e, 1, POS, "0.88"),
    KD("dp_hidden", dp_hidden, 1, NNEG, "0.8"),
    KD("comm_eff", comm_eff, 1, POS, "0.8"),
    KD("dp_comm_eff", dp_comm_eff, 1, POS, "0.8"),
    KD("reserve_gib", reserve_gib, 1e9, NNEG, "4"),
    KD("step_overhead_ms", step_overhead_ms, 1e9, NNEG, "0"),
    /* optional: an older calibration file without it keeps the default */
    {NULL, "offload_hidden", INI_DOUBLE, KF(offload_hidden), 0, 0, 0, 1, NNEG, NULL, "0.5", NULL},
};
#define NKEYS(t) ((int)(sizeof t / sizeof t[0]))
static const char *const CLUSTER_SECTIONS[] = {"cluster"};
static const lm_ini_schema CLUSTER = {"cluster file", CLUSTER_KEYS, NKEYS(CLUSTER_KEYS), CLUSTER_SECTIONS, 1,
                                      sizeof(plan_cluster)};
static const lm_ini_schema CALIB = {"calibration file", CALIB_KEYS, NKEYS(CALIB_KEYS), NULL, 0, sizeof(plan_calib)};

/* Whether any key of a destination was set. */
static int any_set(const int *line, int n) {
    for (int i = 0; i < n; i++)
        if (line[i]) return 1;
    return 0;
}

int plan_cluster_parse(const char *text, const char *name, plan_cluster *out, char *err, size_t errlen) {
    int line[NKEYS(CLUSTER_KEYS)] = {0};
    lm_ini_dest d = {"cluster", out, line};
    lm_ini_defaults(&CLUSTER, out);
    int rc = lm_ini_parse(&CLUSTER, text, name, &d, 1, err, errlen);
    if (!rc && !any_set(line, CLUSTER.nkeys))
        return lm_err(err, errlen, LM_ERR_INPUT, "cluster file %s: no [cluster] section", name);
    if (!rc) rc = lm_ini_missing(&CLUSTER, &d, name, err, errlen);
    out->esz = out->esz ? 4 : 2; /* precision's index: bf16, fp32 */
    return rc;
}

void plan_calib_defaults(plan_calib *c) { lm_ini_defaults(&CALIB, c); }

int plan_calib_parse(const char *text, const char *name, const char *cluster, plan_calib *out, int *found, char *err,
                     size_t errlen) {
    plan_calib want, fb;
    plan_calib_defaults(&want);
    fb = want;
    int lw[NKEYS(CALIB_KEYS)] = {0}, lf[NKEYS(CALIB_KEYS)] = {0};
    lm_ini_dest d[2] = {{cluster, &want, lw}, {"default", &fb, lf}};
    int rc = lm_ini_parse(&CALIB, text, name, d, 2, err, errlen);
    plan_calib_defaults(out);
    *found = 0;
    if (rc) return rc;
    for (int i = 0; i < 2; i++)
        if (any_set(d[i].line, CALIB.nkeys)) {
            if ((rc = lm_ini_missing(&CALIB, &d[i], name, err, errlen))) return rc;
            *out = i ? fb : want;
            *found = i + 1;
            return 0;
        }
    return 0;
}

/* ---------------------------------------------------------------- the command */

/* A whole text file (lm_ini_read_file); exits 2 when it cannot be read. */
static char *slurp(const char *what, const char *path) {
    char *text, err[LM_ERRLEN];
    if (lm_ini_read_file(path, what, &text, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
    return text;
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
    *f = (plan_fix){-1, -1, -1, -1, -1, -1, -1, -1, -1, -1.0};
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
        if (HAS("parallel.offload"))
            f->offload = !strcmp(c->offload, "optim")   ? PLAN_OFF_OPTIM
                         : !strcmp(c->offload, "param") ? PLAN_OFF_PARAM
                         : !strcmp(c->offload, "auto")  ? PLAN_OFF_AUTO
                                                        : PLAN_OFF_NONE;
        if (HAS("parallel.offload_frac")) f->frac = c->offload_frac;
        if (HAS("parallel.prefetch")) f->prefetch = c->prefetch;
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
    lm_free(text);
    snprintf(src, n, "%.3900s [%.63s]", path,
             found == 1 ? cluster : found == 2 ? "default" : "none: built-in defaults");
}

static const double GiB = 1073741824.0;

static const char *const OFF_NAME[] = {"none", "optim", "param", "auto"};

/* "-", "optim 0.60", "param 1.00", "auto 1.00/0.25" (fo/fp) */
static const char *off_label(const plan_layout *l, char *b, size_t n) {
    if (l->offload == PLAN_OFF_NONE) snprintf(b, n, "-");
    else if (l->offload == PLAN_OFF_AUTO) snprintf(b, n, "auto %.2f/%.2f", l->fo, l->fp);
    else snprintf(b, n, "%s %.2f", OFF_NAME[l->offload], l->offload == PLAN_OFF_PARAM ? l->fp : l->fo);
    return b;
}

static void print_row(int i, const plan_result *r) {
    const plan_layout *l = &r->l;
    char ob[32];
    off_label(l, ob, sizeof ob);
    for (char *q = ob; *q; q++)
        if (*q == ' ') *q = ':'; /* one word per column: "optim:0.60" */
    lm_log("%3d %5d %3d %3d %3d %2d %4d %-11s %3d %2d %8.1f %8.1f %9.3f %10.0f %5.1f%% | %7.3f %7.3f %7.3f %7.3f %6.3f "
           "%6.3f %6.3f %6.3f\n", i, l->dp, l->tp, l->pp, l->v, l->sp, l->zero, ob, l->mb,
           l->recompute, r->mem.total / GiB, r->host_max / GiB, r->t_step, r->tokens_per_s_gpu, 100 * r->mfu,
           r->t_compute, r->t_bubble, r->t_tp, r->t_dp, r->t_pp, r->t_optim, r->t_xfer, r->t_host);
}

/* The overrides that run a layout (offload keys only when it offloads). */
static void run_overrides(const plan_layout *l, char *b, size_t n) {
    int w = snprintf(b, n, "parallel.dp=%d parallel.tp=%d parallel.pp=%d parallel.schedule=%s "
                     "parallel.virtual_stages=%d parallel.sp=%s parallel.zero=%d", l->dp, l->tp, l->pp,
                     l->v > 1 ? "interleaved" : "1f1b", l->v, l->sp ? "true" : "false", l->zero);
    if (w > 0 && (size_t)w < n && l->offload != PLAN_OFF_NONE) {
        if (l->offload == PLAN_OFF_AUTO)
            snprintf(b + w, n - (size_t)w, " parallel.offload=auto parallel.prefetch=%d", l->prefetch);
        else
            snprintf(b + w, n - (size_t)w, " parallel.offload=%s parallel.offload_frac=%.4g parallel.prefetch=%d",
                     OFF_NAME[l->offload], l->offload == PLAN_OFF_PARAM ? l->fp : l->fo, l->prefetch);
    }
}

/* The stage's memory by category, device and host, and the link's bytes. */
static void print_memory(const plan_result *b, int gpus, const plan_cluster *cl, const char *indent) {
    const plan_mem *M = &b->mem;
    const plan_layout *l = &b->l;
    const double MiB = 1048576.0;
    lm_log("%smemory per GPU (stage %d of %d: %d layer(s), %d activation set(s)): weights %.1f MiB%s, gradients "
           "%.1f MiB (+ buckets %.1f), optimizer state %.1f MiB, activations kept %.1f MiB + workspace %.1f MiB; "
           "Psi = %.0f elements\n", indent, b->mem_stage, l->pp, M->layers, M->slots, (M->weights + M->master) / MiB,
           M->master > 0 ? " (incl. fp32 master)" : "", M->grads / MiB, M->buckets / MiB, M->optim / MiB,
           M->acts_kept / MiB, M->acts_ws / MiB, M->psi);
    lm_log("%s  device %.2f GiB: weights %.2f (of them %.2f gathered chunk slots: the largest fetch's %.0f "
           "elements + prefetch %d), fp32 master %.2f, moments %.2f, gradients %.2f + buckets %.2f (2 x the longest "
           "chunk, %.0f elements), activations %.2f + workspace %.2f; %d chunks, the last %d with the optimizer "
           "state (%.1f%% of the elements) and the last %d with the parameters offloaded\n", indent,
           M->total / GiB, M->weights / GiB, M->managed / GiB, M->gather, l->prefetch, M->master / GiB,
           M->optim / GiB, M->grads / GiB, M->buckets / GiB, M->chunk, M->acts_kept / GiB, M->acts_ws / GiB, M->nch,
           M->ko, M->psi > 0 ? 100 * M->off_opt / M->psi : 0.0, M->kp);
    int rpn = plan_ranks_per_node(cl, gpus);
    lm_log("%s  host (pinned) %.2f GiB per GPU (the largest stage), %.2f GiB per node of %d rank(s)%s: master "
           "%.2f, moments %.2f, gradient staging %.2f, parameter staging %.2f, parameters %.2f; link per step: "
           "H2D %.2f GiB, D2H %.2f GiB at %.4g GB/s\n", indent, b->host_max / GiB, b->host_max * rpn / GiB, rpn,
           cl->host_mem_gib > 0 ? "" : " (host_mem_gib not given: unbounded)", M->host_master / GiB,
           M->host_optim / GiB, M->host_grad / GiB, M->host_pstage / GiB, M->host_params / GiB, M->h2d / GiB,
           M->d2h / GiB, cl->link_gbs);
}

static void print_one(const char *deck, int is_deck, int gpus, const lm_config *cfg, const plan_shape *s,
                      const plan_cluster *cl, const plan_calib *c, const plan_fix *fx, int top) {
    int nodes = cl->oversubscribe ? 1 : (gpus + cl->gpus_per_node - 1) / cl->gpus_per_node;
    lm_log("\n== %d x %s (%s, %d node(s) of %d): %s, global batch %d x %d tokens ==\n", gpus, cl->gpu, cl->name, nodes,
           cl->gpus_per_node, cfg->preset[0] ? cfg->preset : deck, s->global_batch, s->seq_len);
    plan_result *res = lm_alloc(sizeof(plan_result) * (size_t)(top > 0 ? top : 1));
    plan_rejects rej;
    int n = plan_search(s, cl, c, gpus, fx, res, top > 0 ? top : 1, &rej);
    double limit = plan_device_limit(cl, c) / GiB;
    if (n) {
        lm_log("  # %5s %3s %3s %3s %2s %4s %-11s %3s %2s %8s %8s %9s %10s %6s | %7s %7s %7s %7s %6s %6s %6s %6s\n",
               "dp", "tp", "pp", "v", "sp", "zero", "offload", "mb", "rc", "dev GiB", "host GiB", "step s",
               "tok/s/GPU", "MFU", "compute", "bubble", "tp", "dp", "pp", "optim", "xfer", "host");
        for (int i = 0; i < n && i < top; i++) print_row(i + 1, &res[i]);
        lm_log("  (%d layouts fit of %ld evaluated; GiB per GPU on the device and pinned on the host; times in "
               "seconds per step: compute, pipeline bubble, exposed tp, dp and pp communication, device optimizer, "
               "exposed host-link transfers, host AdamW)\n", n, rej.evaluated);
        const plan_result *b = &res[0];
        const plan_layout *l = &b->l;
        char ob[32], ov[512];
        lm_log("recommended: dp %d x tp %d x pp %d (v %d, sp %s), ZeRO-%d, offload %s, micro_batch %d, recompute %s: "
               "%.1f GiB/GPU (limit %.1f), host %.1f GiB/GPU, %.3f s/step (transfers %.3f, host AdamW %.3f), "
               "%.0f tokens/s/GPU, MFU %.1f%%\n", l->dp, l->tp, l->pp, l->v, l->sp ? "on" : "off", l->zero,
               l->offload ? off_label(l, ob, sizeof ob) : "none", l->mb, l->recompute ? "on" : "off",
               b->mem.total / GiB, limit, b->host_max / GiB, b->t_step, b->t_xfer, b->t_host, b->tokens_per_s_gpu,
               100 * b->mfu);
        print_memory(b, gpus, cl, "  ");
        run_overrides(l, ov, sizeof ov);
        lm_log("  run: mpirun -np %d lamina train %s%s %s train.micro_batch=%d train.recompute=%s "
               "train.global_batch=%d train.seq_len=%d\n", gpus, is_deck ? deck : "DECK model.preset=",
               is_deck ? "" : deck, ov, l->mb, l->recompute ? "true" : "false", s->global_batch, s->seq_len);
    } else {
        lm_log("no layout fits: of %ld evaluated, the smallest needs %.1f GiB per GPU (limit %.1f)%s\n", rej.evaluated,
               rej.min_mem / GiB, limit,
               cl->link_gbs > 0 ? ", with everything offloaded that lamina offloads"
                                : " (the cluster file gives no link_gbs: offload not searched)");
    }
    for (int w = 1; w < PLAN_R_N; w++) {
        if (!rej.count[w]) continue;
        if (w == PLAN_R_MEMORY)
            lm_log("rejected: %ld layouts do not fit in %.1f GiB%s; the smallest of them needs %.1f GiB\n",
                   rej.count[w], limit, cl->link_gbs > 0 ? " even with the most offload (parameters at ZeRO-3 only)" : "", rej.min_mem / GiB);
        else if (w == PLAN_R_HOST)
            lm_log("rejected: %ld layouts need more host memory for their offload than the node's %.0f GiB (the "
                   "smallest %.1f GiB per node)\n", rej.count[w], cl->host_mem_gib, rej.min_host / GiB);
        else
            lm_log("rejected: %ld layouts: %s (e.g. dp %d x tp %d x pp %d)\n", rej.count[w], plan_reject_name(w),
                   rej.example[w][0], rej.example[w][1], rej.example[w][2]);
    }
    lm_free(res);
}

/* --deck: the deck's own layout, evaluated (no search): memory by category
 * on the device and the host, whether it fits, the step time, and when it
 * does not fit the smallest change that would. */
static void print_deck(const char *deck, int gpus, const lm_config *cfg, const plan_shape *s, plan_cluster *cl,
                       const plan_calib *c) {
    int tp = cfg->tp, pp = cfg->pp;
    int dp = cfg->dp > 0 ? cfg->dp : gpus / (tp * pp);
    if (dp < 1 || dp * tp * pp != gpus)
        lm_fail(LM_ERR_INPUT, "plan: --gpus %d is not parallel.dp x tp x pp = %d x %d x %d of %s", gpus, dp, tp, pp,
                deck);
    int mode = !strcmp(cfg->offload, "optim")   ? PLAN_OFF_OPTIM
               : !strcmp(cfg->offload, "param") ? PLAN_OFF_PARAM
               : !strcmp(cfg->offload, "auto")  ? PLAN_OFF_AUTO
                                                : PLAN_OFF_NONE;
    plan_layout l = {dp, tp, pp, pp > 1 ? cfg->virtual_stages : 1, cfg->sp && tp > 1, cfg->zero, cfg->micro_batch,
                     cfg->recompute, PLAN_OFF_NONE, 0, 0, cfg->prefetch};
    plan_set_offload(&l, mode, cfg->offload_frac);
    if (cfg->device_memory) cl->dev_limit = (double)cfg->device_memory;
    int why = plan_check(s, cl, &l);
    lm_log("\n== %s: dp %d x tp %d x pp %d (v %d, sp %s) on %d x %s (%s), ZeRO-%d, parallel.offload = %s "
           "(offload_frac %.4g, prefetch %d), micro_batch %d, recompute %s, global batch %d x %d tokens ==\n", deck,
           dp, tp, pp, l.v, l.sp ? "on" : "off", gpus, cl->gpu, cl->name, l.zero, cfg->offload, cfg->offload_frac,
           l.prefetch, l.mb, l.recompute ? "on" : "off", s->global_batch, s->seq_len);
    if (why) lm_fail(LM_ERR_INPUT, "plan: %s: the layout is not possible: %s", deck, plan_reject_name(why));
    int auto_ok = 1;
    if (mode == PLAN_OFF_AUTO) auto_ok = plan_fit_offload(s, cl, c, &l);
    plan_result r;
    plan_evaluate(s, cl, c, &l, &r);
    char ob[32];
    if (mode == PLAN_OFF_AUTO)
        lm_log("  auto: %s: optimizer state of %.2f and parameters of %.2f of the chunk bytes offloaded\n",
               auto_ok ? "the smallest offload that fits" : "nothing fits; the most offload", l.fo, l.fp);
    print_memory(&r, gpus, cl, "  ");
    double lim = plan_device_limit(cl, c);
    lm_log("  device: %.2f GiB of %.2f GiB (%s): %s; host: %.2f GiB per node of %s: %s\n", r.mem.total / GiB,
           lim / GiB, cfg->device_memory ? "train.device_memory" : "mem_gib - calibration reserve",
           r.fits_device ? "fits" : "DOES NOT FIT", r.host_max * plan_ranks_per_node(cl, gpus) / GiB,
           cl->host_mem_gib > 0 ? "host_mem_gib" : "unbounded host memory", r.fits_host ? "fits" : "DOES NOT FIT");
    lm_log("  step: %.3f s (compute %.3f, bubble %.3f, tp %.3f, dp %.3f, pp %.3f, device optimizer %.3f, "
           "transfers %.3f exposed, host AdamW %.3f), %.0f tokens/s/GPU, %.0f tokens/s in all, MFU %.1f%%, "
           "%d micro-batch(es) per step\n", r.t_step, r.t_compute, r.t_bubble, r.t_tp, r.t_dp, r.t_pp, r.t_optim,
           r.t_xfer, r.t_host, r.tokens_per_s_gpu, r.tokens_per_s_gpu * gpus, 100 * r.mfu, r.n_micro);
    lm_log("deck layout: %s, %.1f GiB/GPU device (limit %.1f), %.1f GiB/GPU host, offload %s, %.3f s/step, "
           "%.0f tokens/s/GPU, MFU %.1f%%\n", r.fits ? "fits" : "does not fit", r.mem.total / GiB, lim / GiB,
           r.host_max / GiB, off_label(&l, ob, sizeof ob), r.t_step, r.tokens_per_s_gpu, 100 * r.mfu);
    if (!r.fits_device) {
        /* the smallest of each remedy that fits */
        const char *m2[] = {"optim", "param"};
        for (int k = 0; k < (l.zero == 3 ? 2 : 1); k++) { /* parameter offload needs ZeRO-3 */
            plan_layout t = l;
            t.offload = k ? PLAN_OFF_PARAM : PLAN_OFF_OPTIM;
            if (plan_fit_offload(s, cl, c, &t))
                lm_log("  would fit: parallel.offload = %s with offload_frac >= %.4g\n", m2[k], k ? t.fp : t.fo);
        }
        if (dp > 1 && l.zero < 3) {
            plan_layout t = l;
            t.zero = 3;
            plan_result z3;
            plan_evaluate(s, cl, c, &t, &z3);
            if (z3.fits_device) lm_log("  would fit: parallel.zero = 3 (%.1f GiB/GPU)\n", z3.mem.total / GiB);
        }
    }
}

/* --cluster NAME-or-FILE: a file, else inputs/clusters/NAME.ini here or
 * next to the executable's ../inputs/clusters. */
static const char *cluster_file(const char *arg, char *buf, size_t n) {
    if (!access(arg, F_OK) || strchr(arg, '/')) return arg;
    snprintf(buf, n, "inputs/clusters/%s.ini", arg);
    if (!access(buf, R_OK)) return buf;
    char exe[LM_PATHLEN];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *sl = strrchr(exe, '/');
        if (sl) *sl = 0;
        snprintf(buf, n, "%.3900s/../inputs/clusters/%.60s.ini", exe, arg);
        if (!access(buf, R_OK)) return buf;
    }
    lm_fail(LM_ERR_INPUT, "plan: --cluster %s: neither a file nor a name of inputs/clusters/NAME.ini", arg);
    return arg;
}

#define PLAN_USAGE "lamina plan DECK|PRESET --cluster FILE|NAME --gpus N[,N...] [--global-batch B] [--seq-len T] " \
                   "[--top K] [--calibration FILE] [section.key=value ...] | lamina plan --deck DECK --cluster " \
                   "FILE|NAME [--gpus N] [section.key=value ...]"

static const struct option PLAN_OPTS[] = {
    {"cluster", required_argument, NULL, 'c'},      {"calibration", required_argument, NULL, 'C'},
    {"gpus", required_argument, NULL, 'g'},         {"global-batch", required_argument, NULL, 'b'},
    {"seq-len", required_argument, NULL, 's'},      {"top", required_argument, NULL, 't'},
    {"deck", required_argument, NULL, 'd'},         {NULL, 0, NULL, 0},
};

int cmd_plan(int argc, char **argv) {
    const char *model = NULL, *cluster_path = NULL, *calib_path = NULL, *gpus_arg = NULL, *deck_path = NULL, *v;
    long gb = 0, seq = 0, top = 10;
    char **ov = lm_alloc(sizeof(char *) * (size_t)(argc + 1)), err[LM_ERRLEN];
    int nov = 0;
    lm_opts o;
    lm_opts_begin(&o, "plan", PLAN_USAGE, argc, argv, "", PLAN_OPTS);
    for (int c; (c = lm_opts_next(&o, &v, err, sizeof err)) != -1;) {
        switch (c) {
        case 'c': cluster_path = v; break;
        case 'C': calib_path = v; break;
        case 'g': gpus_arg = v; break;
        case 'b': gb = parse_long("--global-batch", v, 1, INT_MAX); break;
        case 's': seq = parse_long("--seq-len", v, 1, INT_MAX); break;
        case 't': top = parse_long("--top", v, 1, 1000); break;
        case 'd': deck_path = v; break;
        default: lm_fail(LM_ERR_INPUT, "%s", err); /* '?': unknown option or missing value */
        }
    }
    for (int i = 0; i < o.npos; i++) {
        const char *a = o.pos[i];
        if (!model && !deck_path) model = a;
        else if (strchr(a, '=')) ov[nov++] = o.pos[i];
        else lm_fail(LM_ERR_INPUT, "plan: unexpected argument '%s' (overrides are section.key=value)", a);
    }
    if (deck_path) {
        if (access(deck_path, F_OK)) lm_fail(LM_ERR_INPUT, "plan: --deck %s: no such file", deck_path);
        model = deck_path;
    }
    if (!model) lm_fail(LM_ERR_INPUT, "plan: missing DECK or PRESET (see lamina help plan)");
    if (!cluster_path)
        lm_fail(LM_ERR_INPUT, "plan: missing --cluster FILE|NAME (e.g. inputs/clusters/h100-sxm.ini or h100-sxm)");
    char cbuf[LM_PATHLEN];
    cluster_path = cluster_file(cluster_path, cbuf, sizeof cbuf);
    int gpus[64], ng = deck_path && !gpus_arg ? 0 : parse_gpus(gpus_arg, gpus, 64);

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

    char src[LM_PATHLEN + 96];
    char *text = slurp("cluster file", cluster_path);
    plan_cluster cl;
    if (plan_cluster_parse(text, cluster_path, &cl, err, sizeof err)) lm_fail(LM_ERR_INPUT, "plan: %s", err);
    lm_free(text);
    plan_calib cal;
    load_calib(calib_path, cl.name, &cal, src, sizeof src);

    plan_shape s = {cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.vocab_size,
                    cfg.tie_embeddings, cfg.seq_len, cfg.global_batch};
    lm_log("lamina plan: %s: %.3g parameters (dim %d, %d layers, %d heads, %d kv heads, ffn %d, vocab %d%s), "
           "%.3g model FLOPs per token\n", cfg.preset[0] ? cfg.preset : model,
           plan_n_params(&s) + (s.tied ? 0 : (double)s.vocab * s.dim), s.dim, s.n_layers, s.n_heads, s.n_kv_heads,
           s.ffn_dim, s.vocab, s.tied ? ", tied" : "", plan_flops_per_token(&s));
    lm_log("cluster: %s: %s, %.4g TFLOP/s peak (%s), %.4g GiB, %d per node, %.4g / %.4g GB/s intra / inter node, "
           "%.3g us%s; host %.4g GiB per node, link %.4g GB/s per GPU, host AdamW %.3g parameters/s per GPU%s\n",
           cluster_path, cl.gpu, cl.peak_tflops, cl.esz == 2 ? "bf16" : "fp32", cl.mem_gib, cl.gpus_per_node,
           cl.intra_gbs, cl.inter_gbs, cl.latency_us, cl.oversubscribe ? ", ranks beyond a node share its cores" : "",
           cl.host_mem_gib, cl.link_gbs,
           cl.host_adamw_rate > 0 ? cl.host_adamw_rate : cl.host_mem_bw_gbs * 1e9 / cl.gpus_per_node / 28.0,
           cl.host_adamw_rate > 0 ? "" : " (host_mem_bw_gbs / gpus_per_node / 28 B)");
    lm_log("calibration: %s: GEMM efficiency %.3g k/(k + %.4g), end-to-end %.3g, dp hidden %.2f, link efficiency "
           "%.2f (dp %.2f), reserve %.3g GiB, overhead %.4g ms, host-link transfers hidden %.2f\n", src,
           cal.gemm_eff_max, cal.gemm_k_half, cal.e2e, cal.dp_hidden, cal.comm_eff, cal.dp_comm_eff, cal.reserve_gib,
           cal.step_overhead_ms, cal.offload_hidden);
    int is_deck = !access(model, F_OK);
    if (deck_path) {
        if (!ng) gpus[ng++] = (cfg.dp > 0 ? cfg.dp : 1) * cfg.tp * cfg.pp;
        for (int i = 0; i < ng; i++) print_deck(deck_path, gpus[i], &cfg, &s, &cl, &cal);
    } else
        for (int i = 0; i < ng; i++) print_one(model, is_deck, gpus[i], &cfg, &s, &cl, &cal, &fx, (int)top);
    lm_free(ov);
    lm_opts_end(&o);
    return 0;
}
