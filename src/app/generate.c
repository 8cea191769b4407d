/* generate.c — `lamina generate`: sample text from the model a deck describes
 * (its latest checkpoint, or train.init). No KV cache: each new token re-runs
 * the forward pass over the window, which is fine for the small models the
 * demo trains and keeps the model code single-purpose. Sampling: softmax of
 * logits/temperature restricted to the top-k, drawn with the counter RNG. */
#include "cmds.h"
#include "common.h"
#include "rng.h"
#include "session.h"
#include "tokenizer.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int gen_flag(const char *a, int *nargs) {
    if (!strcmp(a, "--prompt") || !strcmp(a, "--tokens") || !strcmp(a, "--temperature") || !strcmp(a, "--top-k")) {
        *nargs = 1;
        return 1;
    }
    return 0;
}

static double num_arg(const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !(x >= lo && x <= hi)) lm_fail(LM_ERR_INPUT, "%s '%s': expected a number in [%g, %g]", flag, v, lo, hi);
    return x;
}

int cmd_generate(int argc, char **argv) {
    const char *prompt = "";
    int ntok = 200, topk = 40;
    double temp = 0.8;
    for (int i = 1; i < argc; i++) {
        int na = 0;
        if (!gen_flag(argv[i], &na)) {
            if (argv[i][0] == '-') lm_fail(LM_ERR_INPUT, "generate: unknown option %s (see lamina help generate)", argv[i]);
            continue;
        }
        if (i + 1 >= argc) lm_fail(LM_ERR_INPUT, "generate: %s needs a value", argv[i]);
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--prompt")) prompt = v;
        else if (!strcmp(argv[i - 1], "--tokens")) ntok = (int)num_arg("--tokens", v, 1, 1e6);
        else if (!strcmp(argv[i - 1], "--temperature")) temp = num_arg("--temperature", v, 0, 100);
        else topk = (int)num_arg("--top-k", v, 0, 1e9);
    }
    lm_session S;
    memset(&S, 0, sizeof S);
    session_config(&S.cfg, argc, argv, gen_flag);
    const lm_tokenizer *tk = tokenizer_bytes();
    if (S.cfg.vocab_size < tk->vocab_size)
        lm_fail(LM_ERR_INPUT, "model.vocab_size = %d is smaller than the %s tokenizer's %d", S.cfg.vocab_size, tk->name,
                tk->vocab_size);
    int T = S.cfg.seq_len;
    /* Sampling needs trained weights: the latest checkpoint (whatever
     * checkpoint.restart says, unless it names a file), else train.init. */
    if (!strcmp(S.cfg.restart, "none")) snprintf(S.cfg.restart, sizeof S.cfg.restart, "auto");
    char latest[LM_PATHLEN], why[LM_ERRLEN];
    if (!strcmp(S.cfg.restart, "auto") && ckpt_find_latest(S.cfg.ckpt_dir, latest, sizeof latest, why, sizeof why) == 0 &&
        !strcmp(S.cfg.init, "random"))
        lm_fail(LM_ERR_INPUT, "generate: no checkpoint in checkpoint.dir = %s and train.init = random: nothing trained to sample from",
                S.cfg.ckpt_dir);
    S.cfg.sp = 0; /* one sequence at a time: nothing worth sharding */
    if (S.cfg.pp > 1)
        lm_fail(LM_ERR_INPUT, "generate: parallel.pp = %d: generation runs the whole model on each rank (use pp = 1; "
                              "tp and any checkpoint layout are fine)", S.cfg.pp);
    session_open(&S, 1, T, 0, 0);
    session_load(&S, 0);

    size_t plen = strlen(prompt);
    size_t cap = plen + (size_t)ntok + 2;
    uint32_t *seq = lm_alloc(sizeof(uint32_t) * cap);
    size_t n = 0;
    seq[n++] = (uint32_t)tk->bos;
    n += tk->encode(tk, prompt, plen, seq + n, cap - n);
    /* The model sees only the last seq_len tokens (the sliding window): a
     * longer prompt keeps its end, as most tools do, and the user is told
     * how much of its start does not condition the output. */
    if (n > (size_t)T && lm_world_rank() == 0) {
        fprintf(stderr,
                "lamina: warning: generate: the prompt is %zu tokens with BOS, longer than train.seq_len = %d: the "
                "first %zu tokens (BOS and the start of the prompt) are dropped from the model's window; the last "
                "%d are kept (train.seq_len may go up to model.max_seq_len = %d)\n",
                n, T, n - (size_t)T, T, S.cfg.max_seq_len);
        fflush(stderr);
    }
    int32_t *ids = lm_alloc(sizeof(int32_t) * (size_t)T);
    int V = S.cfg.vocab_size;
    float *logits = lm_alloc(sizeof(float) * (size_t)V);
    double *prob = lm_alloc(sizeof(double) * (size_t)V);
    int *idx = lm_alloc(sizeof(int) * (size_t)V);
    uint64_t key = rng_stream(S.cfg.seed, "generate");
    for (int g = 0; g < ntok; g++) {
        /* the last T tokens form the window */
        size_t w0 = n > (size_t)T ? n - (size_t)T : 0, wn = n - w0;
        for (int t = 0; t < T; t++) ids[t] = (size_t)t < wn ? (int32_t)seq[w0 + t] : 0;
        model_forward(S.model, ids);
        model_logits_row(S.model, (int)wn - 1, logits);
        int next;
        if (temp == 0) {
            next = 0;
            for (int v = 1; v < V; v++)
                if (logits[v] > logits[next]) next = v;
        } else {
            /* top-k by partial selection, then a draw from the tempered softmax */
            int k = topk > 0 && topk < V ? topk : V;
            for (int v = 0; v < V; v++) idx[v] = v;
            for (int a = 0; a < k; a++) {
                int best = a;
                for (int b = a + 1; b < V; b++)
                    if (logits[idx[b]] > logits[idx[best]]) best = b;
                int t = idx[a];
                idx[a] = idx[best];
                idx[best] = t;
            }
            double mx = logits[idx[0]], z = 0;
            for (int a = 0; a < k; a++) z += prob[a] = exp((logits[idx[a]] - mx) / temp);
            double u = rng_uniform(key, (uint64_t)g) * z;
            next = idx[k - 1];
            for (int a = 0; a < k; a++) {
                u -= prob[a];
                if (u <= 0) {
                    next = idx[a];
                    break;
                }
            }
        }
        if (next == tk->eos) break;
        seq[n++] = (uint32_t)next;
    }
    size_t olen = 4 * n + 16;
    char *text = lm_alloc(olen);
    tk->decode(tk, seq, n, text, olen);
    lm_log("%s\n", text);
    lm_free(text);
    lm_free(seq);
    lm_free(ids);
    lm_free(logits);
    lm_free(prob);
    lm_free(idx);
    session_close(&S);
    return 0;
}
