/* eval.c — `lamina eval` (SPEC §10): score a model on multiple-choice and
 * perplexity tasks, on any parallel layout.
 *
 * The model: a deck (its latest checkpoint in checkpoint.dir, else
 * train.init), a lamina checkpoint FILE.h5 (shape from its /config), or a
 * Hugging Face folder (config.json). For the last two eval writes the deck
 * itself: the shape, train.init = the file, train.seq_len =
 * model.max_seq_len; the overrides on the command line (parallel.*,
 * train.device, train.precision, train.seq_len, ...) apply on top. The
 * context of a prompt is train.seq_len.
 *
 * The tokenizer: --tokenizer M (a SentencePiece model file), else the one
 * recorded with the weights (a checkpoint's /tokenizer/model, an HF
 * folder's tokenizer.model: tokrecord_from_start), else the bytes one.
 *
 * Every rank reads the task files and builds the same rows; eval_fwd.c
 * splits them over the data-parallel ranks and gathers the results; rank 0
 * prints the table and writes -o OUT.json. */
#include "cmds.h"
#include "common.h"
#include "eval.h"
#include "hf.h"
#include "opts.h"
#include "spm.h"
#include "tokrecord.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EVAL_USAGE                                                                                                  \
    "lamina eval (DECK | FILE.h5 | HFDIR) --task mc:FILE.jsonl|ppl:FILE ... [--tokenizer M] [-o OUT.json]"      \
    " [--shots K] [--batch N] [--lang en|zh|auto] [section.key=value ...]"

#define MAX_TASKS 64

typedef struct {
    const char *tasks[MAX_TASKS];
    int ntasks;
    const char *tokenizer, *out, *lang;
    int shots, batch;
} eval_opts;

static long int_arg(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        lm_fail(LM_ERR_INPUT, "%s '%s': expected an integer in [%ld, %ld]", flag, v, lo, hi);
    return x;
}

static int parse_options(int argc, char **argv, eval_opts *o, char ***pos) {
    static const struct option longs[] = {
        {"task", required_argument, NULL, 't'},   {"tokenizer", required_argument, NULL, 'k'},
        {"output", required_argument, NULL, 'o'}, {"shots", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'},  {"lang", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    *o = (eval_opts){.lang = "auto", .shots = -1, .batch = 4};
    lm_opts p;
    const char *arg;
    char err[LM_ERRLEN];
    lm_opts_begin(&p, "eval", EVAL_USAGE, argc, argv, "o:", longs);
    for (int ch; (ch = lm_opts_next(&p, &arg, err, sizeof err)) != -1;) {
        if (ch == 't') {
            if (o->ntasks == MAX_TASKS) lm_fail(LM_ERR_INPUT, "eval: at most %d --task", MAX_TASKS);
            if (strncmp(arg, "mc:", 3) && strncmp(arg, "ppl:", 4))
                lm_fail(LM_ERR_INPUT, "--task '%s': expected mc:FILE.jsonl or ppl:FILE", arg);
            if (!strchr(arg, ':')[1]) lm_fail(LM_ERR_INPUT, "--task '%s': missing FILE", arg);
            o->tasks[o->ntasks++] = arg;
        } else if (ch == 'k') o->tokenizer = arg;
        else if (ch == 'o') o->out = arg;
        else if (ch == 's') o->shots = (int)int_arg("--shots", arg, 0, 1000000);
        else if (ch == 'b') o->batch = (int)int_arg("--batch", arg, 1, 4096);
        else if (ch == 'l') {
            if (strcmp(arg, "en") && strcmp(arg, "zh") && strcmp(arg, "auto"))
                lm_fail(LM_ERR_INPUT, "--lang '%s': expected en, zh or auto", arg);
            o->lang = arg;
        } else {
            lm_opts_end(&p);
            lm_fail(LM_ERR_INPUT, "%s", err);
        }
    }
    *pos = lm_alloc(sizeof(char *) * (size_t)(p.npos + 1));
    for (int i = 0; i < p.npos; i++) (*pos)[i] = p.pos[i];
    int n = p.npos;
    lm_opts_end(&p);
    if (!n) lm_fail(LM_ERR_INPUT, "eval: missing DECK, FILE.h5 or HFDIR (usage: %s)", EVAL_USAGE);
    if (!o->ntasks) lm_fail(LM_ERR_INPUT, "eval: no --task (usage: %s)", EVAL_USAGE);
    return n;
}

/* The deck eval writes for a checkpoint file or an HF folder. The keys a
 * deck requires and eval does not use (train.steps, lr, data.train: no
 * data is read) get placeholders; global_batch 64 x world keeps the
 * layout checks satisfied on any grid. */
static char *weights_deck(const char *path, int hf) {
    int dim, nl, nh, nkv, ffn, V, msl, tie;
    double eps, theta;
    char err[LM_ERRLEN] = {0};
    if (hf) {
        hf_config h;
        if (hf_config_read(path, &h, err, sizeof err)) lm_fail(LM_ERR_INPUT, "eval: %s", err);
        dim = h.dim, nl = h.n_layers, nh = h.n_heads, nkv = h.n_kv_heads, ffn = h.ffn_dim, V = h.vocab_size;
        msl = h.max_seq_len, tie = h.tie_embeddings, eps = h.norm_eps, theta = h.rope_theta;
    } else {
        ckpt_meta m;
        memset(&m, 0, sizeof m);
        if (ckpt_read_meta(comm_mpi(comm_world()), path, &m, err, sizeof err)) lm_fail(LM_ERR_INPUT, "eval: %s", err);
        free((void *)m.deck_text);
        if (m.dim < 1 || m.n_layers < 1 || m.n_heads < 1 || m.ffn_dim < 1 || m.vocab_size < 1 || m.max_seq_len < 1)
            lm_fail(LM_ERR_INPUT, "eval: %s: /config lacks the model shape (dim, n_layers, n_heads, ffn_dim, "
                                  "vocab_size, max_seq_len)", path);
        dim = m.dim, nl = m.n_layers, nh = m.n_heads, nkv = m.n_kv_heads ? m.n_kv_heads : m.n_heads;
        ffn = m.ffn_dim, V = m.vocab_size, msl = m.max_seq_len, tie = m.tie_embeddings;
        eps = m.norm_eps > 0 ? m.norm_eps : 1e-5, theta = m.rope_theta > 0 ? m.rope_theta : 10000.0;
    }
    int world = comm_world()->size;
    size_t n = 2048 + 2 * strlen(path);
    char *t = lm_alloc(n);
    snprintf(t, n,
             "[model]\ndim = %d\nn_layers = %d\nn_heads = %d\nn_kv_heads = %d\nffn_dim = %d\nvocab_size = %d\n"
             "max_seq_len = %d\nnorm_eps = %.17g\nrope_theta = %.17g\ntie_embeddings = %s\n"
             "[train]\nsteps = 1\nlr = 1e-4\nseq_len = %d\nmicro_batch = 1\nglobal_batch = %d\ninit = %s\n"
             "[data]\ntrain = %s\n[checkpoint]\nrestart = none\n",
             dim, nl, nh, nkv, ffn, V, msl, eps, theta, tie ? "true" : "false", msl, 64 * world, path, path);
    return t;
}

/* The weights and the layout: a one-rank-per-row forward session of
 * batch rows of train.seq_len tokens. */
static void open_model(lm_session *S, int n, char **args, int batch) {
    memset(S, 0, sizeof *S);
    const char *src = args[0];
    struct stat sb;
    int is_dir = !stat(src, &sb) && S_ISDIR(sb.st_mode);
    size_t L = strlen(src);
    if (is_dir && hf_is_folder(src)) {
        char *deck = weights_deck(src, 1);
        session_config_string(&S->cfg, deck, src, n - 1, args + 1);
        lm_free(deck);
    } else if (is_dir) {
        lm_fail(LM_ERR_INPUT, "eval: %s is a folder without config.json (not a Hugging Face folder)", src);
    } else if (L > 3 && !strcmp(src + L - 3, ".h5")) {
        char *deck = weights_deck(src, 0);
        session_config_string(&S->cfg, deck, src, n - 1, args + 1);
        lm_free(deck);
    } else {
        session_config(&S->cfg, "eval", EVAL_USAGE, n, args);
        if (!strcmp(S->cfg.restart, "none")) snprintf(S->cfg.restart, sizeof S->cfg.restart, "auto");
        char latest[LM_PATHLEN], why[LM_ERRLEN];
        if (!strcmp(S->cfg.restart, "auto") &&
            ckpt_find_latest(S->cfg.ckpt_dir, latest, sizeof latest, why, sizeof why) == 0 &&
            !strcmp(S->cfg.init, "random"))
            lm_fail(LM_ERR_INPUT, "eval: no checkpoint in checkpoint.dir = %s and train.init = random: no trained "
                                  "weights to evaluate", S->cfg.ckpt_dir);
    }
    S->cfg.sp = 0; /* rows are whole sequences */
    session_open(S, batch, S->cfg.seq_len, 0, 0);
    session_load(S, 0);
}

/* The tokenizer (see the top); *sp holds a SentencePiece model to free. */
static const lm_tokenizer *eval_tokenizer(const lm_session *S, const char *path, lm_spm **sp) {
    return tokrecord_session_tokenizer(S, path, "eval", sp);
}

int cmd_eval(int argc, char **argv) {
    eval_opts o;
    char **args;
    int nargs = parse_options(argc, argv, &o, &args);
    if (o.out && lm_world_rank() == 0) { /* fail before the work, not after */
        FILE *f = fopen(o.out, "w");
        if (!f) lm_fail(LM_ERR_INPUT, "-o %s: cannot write the file", o.out);
        fclose(f);
    }
    lm_session S;
    open_model(&S, nargs, args, o.batch);
    lm_free(args);
    lm_spm *sp;
    const lm_tokenizer *tk = eval_tokenizer(&S, o.tokenizer, &sp);
    eval_ctx e = {.tk = tk, .shots = o.shots, .lang = o.lang, .T = S.cfg.seq_len};
    lm_log("eval: %s: %s tokenizer (vocab %d), context %d tokens, %d row(s) per forward on each of %d data-parallel "
           "rank(s) (tp %d, pp %d)\n",
           S.resumed_from[0] ? S.resumed_from : S.cfg.init, tk->name, tk->vocab_size, e.T, o.batch, S.topo.dp,
           S.cfg.tp, S.cfg.pp);
    json_t *root = json_object(), *tasks = json_object();
    for (int i = 0; i < o.ntasks; i++) {
        const char *t = o.tasks[i];
        int mc = !strncmp(t, "mc:", 3);
        const char *file = strchr(t, ':') + 1;
        json_t *r = mc ? eval_mc(&S, &e, file) : eval_ppl(&S, &e, file);
        if (mc) eval_table_mc(file, r);
        else eval_table_ppl(file, r);
        json_object_set_new(tasks, t, r);
    }
    json_object_set_new(root, "model", json_string(S.resumed_from[0] ? S.resumed_from : S.cfg.init));
    json_object_set_new(root, "tokenizer", json_string(tk->name));
    json_object_set_new(root, "seq_len", json_integer(e.T));
    json_object_set_new(root, "tasks", tasks);
    if (o.out && lm_world_rank() == 0 && json_dump_file(root, o.out, JSON_INDENT(1)))
        lm_abort(LM_ERR_RUNTIME, "-o %s: cannot write the file", o.out);
    json_decref(root);
    spm_free(sp);
    session_close(&S);
    return LM_OK;
}
