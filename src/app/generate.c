/* generate.c — `lamina generate`: sample text from the model a deck describes
 * (its latest checkpoint, or train.init). No KV cache: each new token re-runs
 * the forward pass over the window, which is fine for the small models the
 * demo trains and keeps the model code single-purpose. Sampling (sample.h):
 * softmax of logits/temperature restricted to the top-k, drawn with the
 * counter RNG; temperature 0 is greedy. */
#include "cmds.h"
#include "common.h"
#include "opts.h"
#include "rng.h"
#include "sample.h"
#include "session.h"
#include "tokenizer.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The number v of option `flag`, which must lie in [lo, hi] (else exit 2). */
static double num_arg(const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !(x >= lo && x <= hi)) lm_fail(LM_ERR_INPUT, "%s '%s': expected a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

/* generate's own options; the rest of the command line is the deck and its
 * overrides. */
typedef struct {
    const char *prompt;
    int tokens, top_k;
    double temperature;
} gen_opts;

#define GEN_USAGE "lamina generate DECK [section.key=value ...] [--prompt TEXT] [--tokens N] [--temperature X] [--top-k K]"

/* Parses --prompt, --tokens, --temperature and --top-k (also as --opt=value;
 * opts.h) into o; the other arguments, the deck and its overrides in their
 * order, go into *pos (lm_alloc'd; their count is returned). Exit 2 on an
 * unknown option or a missing or bad value. */
static int parse_options(int argc, char **argv, gen_opts *o, char ***pos) {
    static const struct option longs[] = {
        {"prompt", required_argument, NULL, 'p'},
        {"tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0},
    };
    *o = (gen_opts){.prompt = "", .tokens = 200, .top_k = 40, .temperature = 0.8};
    lm_opts p;
    const char *arg;
    char err[LM_ERRLEN];
    lm_opts_begin(&p, "generate", GEN_USAGE, argc, argv, "", longs);
    for (int ch; (ch = lm_opts_next(&p, &arg, err, sizeof err)) != -1;) {
        if (ch == 'p') o->prompt = arg;
        else if (ch == 'n') o->tokens = (int)num_arg("--tokens", arg, 1, 1e6);
        else if (ch == 't') o->temperature = num_arg("--temperature", arg, 0, 100);
        else if (ch == 'k') o->top_k = (int)num_arg("--top-k", arg, 0, 1e9);
        else {
            lm_opts_end(&p);
            lm_fail(LM_ERR_INPUT, "%s", err);
        }
    }
    *pos = lm_alloc(sizeof(char *) * (size_t)(p.npos + 1));
    for (int i = 0; i < p.npos; i++) (*pos)[i] = p.pos[i];
    int n = p.npos;
    lm_opts_end(&p);
    return n;
}

/* The deck (args[0]) with its overrides args[1..n), the latest
 * checkpoint's weights (or train.init's) on a one-sequence session. */
static void open_model(lm_session *S, int n, char **args) {
    memset(S, 0, sizeof *S);
    session_config(&S->cfg, "generate", GEN_USAGE, n, args);
    const lm_tokenizer *tk = tokenizer_bytes();
    if (S->cfg.vocab_size < tk->vocab_size)
        lm_fail(LM_ERR_INPUT, "model.vocab_size = %d is smaller than the %s tokenizer's %d", S->cfg.vocab_size,
                tk->name, tk->vocab_size);
    /* Sampling needs trained weights: the latest checkpoint (whatever
     * checkpoint.restart says, unless it names a file), else train.init. */
    if (!strcmp(S->cfg.restart, "none")) snprintf(S->cfg.restart, sizeof S->cfg.restart, "auto");
    char latest[LM_PATHLEN], why[LM_ERRLEN];
    if (!strcmp(S->cfg.restart, "auto") &&
        ckpt_find_latest(S->cfg.ckpt_dir, latest, sizeof latest, why, sizeof why) == 0 &&
        !strcmp(S->cfg.init, "random"))
        lm_fail(LM_ERR_INPUT,
                "generate: no checkpoint in checkpoint.dir = %s and train.init = random: nothing trained to sample from",
                S->cfg.ckpt_dir);
    S->cfg.sp = 0; /* one sequence at a time: nothing worth sharding */
    if (S->cfg.pp > 1)
        lm_fail(LM_ERR_INPUT, "generate: parallel.pp = %d: generation runs the whole model on each rank (use pp = 1; "
                              "tp and any checkpoint layout are fine)", S->cfg.pp);
    session_open(S, 1, S->cfg.seq_len, 0, 0);
    session_load(S, 0);
}

/* BOS and the encoded prompt into seq (capacity cap); returns the length.
 * The model sees only the last seq_len tokens (the sliding window): a
 * longer prompt keeps its end, as most tools do, and the user is told how
 * much of its start does not condition the output. */
static size_t encode_prompt(const lm_config *c, const lm_tokenizer *tk, const char *prompt, uint32_t *seq,
                            size_t cap) {
    int T = c->seq_len;
    size_t n = 0;
    seq[n++] = (uint32_t)tk->bos;
    n += tk->encode(tk, prompt, strlen(prompt), seq + n, cap - n);
    if (n > (size_t)T && lm_world_rank() == 0) {
        fprintf(stderr,
                "lamina: warning: generate: the prompt is %zu tokens with BOS, longer than train.seq_len = %d: the "
                "first %zu tokens (BOS and the start of the prompt) are dropped from the model's window; the last "
                "%d are kept (train.seq_len may go up to model.max_seq_len = %d)\n",
                n, T, n - (size_t)T, T, c->max_seq_len);
        fflush(stderr);
    }
    return n;
}

/* Appends up to o->tokens sampled tokens to seq[0..n) (stopping at EOS);
 * returns the new length. Each token re-runs the forward pass over the
 * window of the last seq_len tokens. */
static size_t extend(lm_session *S, const gen_opts *o, const lm_tokenizer *tk, uint32_t *seq, size_t n) {
    int T = S->cfg.seq_len;
    int32_t *ids = lm_alloc(sizeof(int32_t) * (size_t)T);
    float *logits = lm_alloc(sizeof(float) * (size_t)S->cfg.vocab_size);
    lm_sampler smp;
    sampler_init(&smp, S->cfg.vocab_size);
    uint64_t key = rng_stream(S->cfg.seed, "generate");
    for (int g = 0; g < o->tokens; g++) {
        size_t w0 = n > (size_t)T ? n - (size_t)T : 0, wn = n - w0;
        for (int t = 0; t < T; t++) ids[t] = (size_t)t < wn ? (int32_t)seq[w0 + t] : 0;
        model_forward(S->model, ids);
        model_logits_row(S->model, (int)wn - 1, logits);
        int next = sample_token(&smp, logits, o->temperature, o->top_k, key, (uint64_t)g);
        if (next == tk->eos) break;
        seq[n++] = (uint32_t)next;
    }
    sampler_free(&smp);
    lm_free(ids);
    lm_free(logits);
    return n;
}

/* `lamina generate DECK [overrides] [--prompt TEXT] [--tokens N]
 * [--temperature X] [--top-k K]`: the prompt's continuation on stdout. */
int cmd_generate(int argc, char **argv) {
    gen_opts o;
    char **args;
    int nargs = parse_options(argc, argv, &o, &args);
    lm_session S;
    open_model(&S, nargs, args);
    lm_free(args);
    const lm_tokenizer *tk = tokenizer_bytes();
    size_t cap = strlen(o.prompt) + (size_t)o.tokens + 2;
    uint32_t *seq = lm_alloc(sizeof(uint32_t) * cap);
    size_t n = encode_prompt(&S.cfg, tk, o.prompt, seq, cap);
    n = extend(&S, &o, tk, seq, n);
    size_t olen = 4 * n + 16;
    char *text = lm_alloc(olen);
    tk->decode(tk, seq, n, text, olen);
    lm_log("%s\n", text);
    lm_free(text);
    lm_free(seq);
    session_close(&S);
    return LM_OK;
}
