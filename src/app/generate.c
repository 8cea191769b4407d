/* generate.c — `lamina generate`: sample text from the model a deck describes
 * (its latest checkpoint, or train.init).
 *
 * Decoding runs with a KV cache (kvcache.h): the prompt goes through the
 * model once, then each new token is one step at the next position over
 * the cached keys and values. --no-cache recomputes the forward pass over
 * the whole context for every token instead (for checking and
 * benchmarking); both see the same context and give the same tokens.
 *
 * The context is at most train.seq_len tokens (the model's RoPE tables).
 * A longer prompt keeps its last seq_len tokens. When generation fills the
 * context, it shifts: the last seq_len/2 tokens are kept (the cache is
 * refilled from them, at positions 0 ..) and generation goes on; so a
 * cached step never re-encodes more than half a window.
 *
 * Sampling (sample.h): greedy at temperature 0, else softmax(logits/T) cut
 * to the top-k and the nucleus (top-p), drawn with the counter RNG of
 * --seed and the token's index. World rank 0 draws and broadcasts the
 * token, so every rank (and every tp layout, whose logits are all-gathered
 * identically in a group) continues with the same one. It stops at the
 * tokenizer's EOS or after --max-new-tokens. */
#include "cmds.h"
#include "common.h"
#include "kvcache.h"
#include "opts.h"
#include "rng.h"
#include "sample.h"
#include "session.h"
#include "spm.h"
#include "tokenizer.h"
#include "tokrecord.h"
#include "comm.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tokenizer generate encodes and decodes with, and whose EOS stops it:
 * the one recorded where the weights came from (the checkpoint, or an HF
 * folder's tokenizer.model: tokrecord_from_start), else the bytes
 * tokenizer. Every rank reads the record itself and they agree on errors.
 * *sp holds a SentencePiece model to free (NULL for the bytes one). */
static const lm_tokenizer *generate_tokenizer(const lm_session *S, lm_spm **sp) {
    return tokrecord_session_tokenizer(S, NULL, "generate", sp);
}

/* The number v of option `flag`, which must lie in [lo, hi] (else exit 2). */
static double num_arg(const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        lm_fail(LM_ERR_INPUT, "%s '%s': expected a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

/* The integer v of option `flag` in [lo, hi] (else exit 2). */
static long int_arg(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        lm_fail(LM_ERR_INPUT, "%s '%s': expected an integer in [%ld, %ld]", flag, v, lo, hi);
    return x;
}

/* generate's own options; the rest of the command line is the deck and its
 * overrides. */
typedef struct {
    const char *prompt; /* NULL: none given; "-": read stdin */
    int tokens, top_k, cache, have_seed;
    double temperature, top_p;
    uint64_t seed;
} gen_opts;

#define GEN_USAGE                                                                                            \
    "lamina generate DECK [section.key=value ...] [--prompt TEXT|-] [--max-new-tokens N] [--temperature T]" \
    " [--top-k K] [--top-p P] [--seed S] [--no-cache]"

/* Parses the options (also as --opt=value; opts.h) into o; the other
 * arguments, the deck and its overrides in their order, go into *pos
 * (lm_alloc'd; their count is returned). Exit 2 on an unknown option or a
 * missing or bad value: temperature >= 0, top-k >= 0, top-p in (0, 1],
 * max-new-tokens >= 1. --tokens is the older name of --max-new-tokens. */
static int parse_options(int argc, char **argv, gen_opts *o, char ***pos) {
    static const struct option longs[] = {
        {"prompt", required_argument, NULL, 'p'},
        {"max-new-tokens", required_argument, NULL, 'n'},
        {"tokens", required_argument, NULL, 'N'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {"top-p", required_argument, NULL, 'P'},
        {"seed", required_argument, NULL, 's'},
        {"no-cache", no_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    *o = (gen_opts){.prompt = NULL, .tokens = 200, .top_k = 40, .temperature = 0.8, .top_p = 1.0, .cache = 1};
    lm_opts p;
    const char *arg;
    char err[LM_ERRLEN];
    lm_opts_begin(&p, "generate", GEN_USAGE, argc, argv, "", longs);
    for (int ch; (ch = lm_opts_next(&p, &arg, err, sizeof err)) != -1;) {
        if (ch == 'p') o->prompt = arg;
        else if (ch == 'n') o->tokens = (int)int_arg("--max-new-tokens", arg, 1, 100000000);
        else if (ch == 'N') o->tokens = (int)int_arg("--tokens", arg, 1, 100000000);
        else if (ch == 't') o->temperature = num_arg("--temperature", arg, 0, 1e6);
        else if (ch == 'k') o->top_k = (int)int_arg("--top-k", arg, 0, 1000000000);
        else if (ch == 'P') {
            o->top_p = num_arg("--top-p", arg, 0, 1);
            if (o->top_p <= 0) lm_fail(LM_ERR_INPUT, "--top-p '%s': expected a number in (0, 1]", arg);
        } else if (ch == 's') {
            o->seed = (uint64_t)int_arg("--seed", arg, 0, 0x7fffffffffffffffL);
            o->have_seed = 1;
        } else if (ch == 'c') o->cache = 0;
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

/* The prompt text: --prompt's, or stdin's with --prompt - (read on world
 * rank 0, the one mpirun gives stdin, and broadcast); lm_alloc'd. */
static char *prompt_text(const gen_opts *o) {
    if (!o->prompt) return lm_strdup("");
    if (strcmp(o->prompt, "-")) return lm_strdup(o->prompt);
    uint64_t n = 0;
    char *buf = NULL;
    if (lm_world_rank() == 0) {
        size_t cap = 4096;
        buf = lm_alloc(cap);
        for (size_t got; (got = fread(buf + n, 1, cap - n - 1, stdin)) > 0;) {
            n += got;
            if (cap - n - 1 == 0) buf = lm_realloc(buf, cap *= 2);
        }
    }
    comm_bcast(comm_world(), &n, sizeof n, 0);
    if (lm_world_rank() != 0) buf = lm_alloc((size_t)n + 1);
    comm_bcast(comm_world(), buf, (size_t)n, 0);
    buf[n] = 0;
    return buf;
}

/* BOS and the encoded prompt into seq (capacity cap); returns the length. */
static size_t encode_prompt(const lm_tokenizer *tk, const char *prompt, uint32_t *seq, size_t cap) {
    size_t n = 0;
    if (tk->bos >= 0) seq[n++] = (uint32_t)tk->bos;
    n += tk->encode(tk, prompt, strlen(prompt), seq + n, cap - n);
    return n;
}

/* The first token of the context for a prompt of n tokens: its last
 * seq_len. The user is told how much of its start does not condition the
 * output. */
static size_t prompt_window(const lm_config *c, size_t n) {
    int T = c->seq_len;
    if (n <= (size_t)T) return 0;
    if (lm_world_rank() == 0) {
        fprintf(stderr,
                "lamina: warning: generate: the prompt is %zu tokens with BOS, longer than train.seq_len = %d: the "
                "first %zu tokens (BOS and the start of the prompt) are dropped from the model's window; the last "
                "%d are kept (train.seq_len may go up to model.max_seq_len = %d)\n",
                n, T, n - (size_t)T, T, c->max_seq_len);
        fflush(stderr);
    }
    return n - (size_t)T;
}

/* How generation went. */
typedef struct {
    int made;       /* new tokens */
    int eos;        /* stopped at EOS */
    int shifts;     /* context shifts */
    double seconds; /* the decoding loop, prefill included */
} gen_stats;

/* The logits of the last token of the context seq[w0..n): with the cache,
 * the tokens not yet in it go through as one step (all of them after a
 * reset: the prefill); without, the forward pass over the whole context
 * (padded to seq_len, which causal attention never reads). */
static void context_logits(lm_session *S, lm_kv_cache *kv, const uint32_t *seq, size_t w0, size_t n, int32_t *ids,
                           float *logits) {
    int T = S->cfg.seq_len, wn = (int)(n - w0);
    if (kv) {
        int have = kv_len(kv);
        for (int t = have; t < wn; t++) ids[t - have] = (int32_t)seq[w0 + (size_t)t];
        kv_forward(kv, ids, wn - have);
        kv_logits(kv, logits);
        return;
    }
    for (int t = 0; t < T; t++) ids[t] = t < wn ? (int32_t)seq[w0 + (size_t)t] : 0;
    model_forward(S->model, ids);
    model_logits_row(S->model, wn - 1, logits);
}

/* Appends up to o->tokens sampled tokens to seq[0..n) (stopping at EOS);
 * returns the new length. */
static size_t extend(lm_session *S, const gen_opts *o, const lm_tokenizer *tk, lm_kv_cache *kv, uint32_t *seq,
                     size_t n, gen_stats *st) {
    int T = S->cfg.seq_len, keep = T / 2 > 0 ? T / 2 : 1;
    int32_t *ids = lm_alloc(sizeof(int32_t) * (size_t)T);
    float *logits = lm_alloc(sizeof(float) * (size_t)S->cfg.vocab_size);
    lm_sampler smp;
    sampler_init(&smp, S->cfg.vocab_size);
    uint64_t key = rng_stream(o->have_seed ? o->seed : S->cfg.seed, "generate");
    size_t w0 = prompt_window(&S->cfg, n);
    *st = (gen_stats){0};
    double t0 = lm_now();
    for (int g = 0; g < o->tokens; g++) {
        if (n - w0 > (size_t)T) { /* the context is full: keep its last half */
            w0 = n - (size_t)keep;
            st->shifts++;
            if (kv) kv_reset(kv);
        }
        context_logits(S, kv, seq, w0, n, ids, logits);
        int32_t next = 0;
        if (lm_world_rank() == 0)
            next = sample_token(&smp, logits, o->temperature, o->top_k, o->top_p, key, (uint64_t)g);
        comm_bcast(comm_world(), &next, sizeof next, 0);
        if (next == tk->eos) {
            st->eos = 1;
            break;
        }
        seq[n++] = (uint32_t)next;
        st->made++;
    }
    st->seconds = lm_now() - t0;
    sampler_free(&smp);
    lm_free(ids);
    lm_free(logits);
    return n;
}

/* `lamina generate DECK [overrides] [options]` (GEN_USAGE): the prompt and
 * its continuation on stdout; a summary line on stderr. */
int cmd_generate(int argc, char **argv) {
    gen_opts o;
    char **args;
    int nargs = parse_options(argc, argv, &o, &args);
    lm_session S;
    open_model(&S, nargs, args);
    lm_free(args);
    lm_spm *sp;
    const lm_tokenizer *tk = generate_tokenizer(&S, &sp);
    lm_kv_cache *kv = NULL;
    char why[LM_ERRLEN];
    if (o.cache && !kv_supported(S.model, why, sizeof why)) {
        if (lm_world_rank() == 0) {
            fprintf(stderr, "lamina: note: generate: no KV cache (%s): recomputing the context for every token, "
                            "as --no-cache\n", why);
            fflush(stderr);
        }
        o.cache = 0;
    }
    if (o.cache) kv = kv_create(S.model);
    char *prompt = prompt_text(&o);
    size_t cap = tk->max_tokens(tk, strlen(prompt)) + (size_t)o.tokens + 2;
    uint32_t *seq = lm_alloc(sizeof(uint32_t) * cap);
    size_t n0 = encode_prompt(tk, prompt, seq, cap);
    gen_stats st;
    size_t n = extend(&S, &o, tk, kv, seq, n0, &st);
    size_t olen = 128 * n + 16; /* a piece is at most a few dozen bytes of text */
    char *text = lm_alloc(olen);
    tk->decode(tk, seq, n, text, olen);
    lm_log("%s\n", text);
    if (lm_world_rank() == 0) {
        fprintf(stderr,
                "lamina: generate: %d new tokens in %.3f s (%.1f tokens/s, %s), stopped at %s; %d context shifts; "
                "%zu prompt tokens (%s tokenizer, vocab %d)\n",
                st.made, st.seconds, st.seconds > 0 ? (st.made + st.eos) / st.seconds : 0.0,
                kv ? "KV cache" : "no cache", st.eos ? "EOS" : "--max-new-tokens", st.shifts, n0, tk->name,
                tk->vocab_size);
        fflush(stderr);
    }
    lm_free(text);
    lm_free(seq);
    lm_free(prompt);
    kv_destroy(kv);
    spm_free(sp);
    session_close(&S);
    return LM_OK;
}
