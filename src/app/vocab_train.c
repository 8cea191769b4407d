/* vocab_train.c — `lamina vocab train`: SentencePiece's trainer with
 * LLaMA-2's tokenizer settings (its tokenizer.model's trainer_spec and
 * normalizer_spec): BPE, byte fallback, digits split, a dummy prefix,
 * whitespace kept as is, identity normalization, whitespace-only pieces
 * allowed, scripts split, unk/bos/eos = 0/1/2 and no pad, pieces of at most
 * 16 characters, character coverage 0.99995. */
#include "common.h"
#include "opts.h"
#include "spm.h"
#include "spm_train.h"
#include "progress.h"
#include "vocab.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct option TRAIN_OPTS[] = {
    {"vocab-size", required_argument, NULL, 'V'},          {"model-type", required_argument, NULL, 'M'},
    {"character-coverage", required_argument, NULL, 'C'}, {"input-sentence-size", required_argument, NULL, 'S'},
    {"help", no_argument, NULL, 'h'},                      {NULL, 0, NULL, 0},
};

#define TRAIN_USAGE                                                                                                    \
    "lamina vocab train --vocab-size N -o NEW.model [--model-type bpe|unigram] [--character-coverage F] "               \
    "[--input-sentence-size N] FILE..."

/* The trainer's reading of its input, on the progress line (the training
 * itself follows; SentencePiece's own log is quieted). */
static void read_progress(void *ctx, int64_t bytes) { lm_progress_set(ctx, 0, bytes); }

int vocab_train(int argc, char **argv, char *err, size_t errlen) {
    const char *out = NULL, *type = "bpe", *v;
    long vocab = 0, sentences = 0;
    double coverage = 0.99995;
    lm_opts o;
    lm_opts_begin(&o, "vocab train", TRAIN_USAGE, argc, argv, "o:h", TRAIN_OPTS);
    int rc = 0;
    for (int c; !rc && (c = lm_opts_next(&o, &v, err, errlen)) != -1;) {
        char *end;
        errno = 0;
        switch (c) {
        case 'h': vocab_usage(stdout); lm_opts_end(&o); return -1;
        case 'o': out = v; break;
        case 'M': type = v; break;
        case 'V':
            vocab = strtol(v, &end, 10);
            if (errno || *end || !*v || vocab < 2 || vocab > (1 << 24))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: --vocab-size '%s': expected an integer in [2, 16777216]", v);
            break;
        case 'S':
            sentences = strtol(v, &end, 10);
            if (errno || *end || !*v || sentences < 0 || sentences > INT32_MAX)
                rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: --input-sentence-size '%s': expected an integer >= 0 (0: all)", v);
            break;
        case 'C':
            coverage = strtod(v, &end);
            if (errno || *end || !*v || !(coverage > 0 && coverage <= 1))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: --character-coverage '%s': expected a number in (0, 1]", v);
            break;
        default: rc = LM_ERR_INPUT; break; /* '?': err says which */
        }
    }
    if (!rc && !out) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: -o NEW.model is required");
    if (!rc && !vocab) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: --vocab-size N is required");
    if (!rc && strcmp(type, "bpe") && strcmp(type, "unigram"))
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: --model-type '%s': expected bpe or unigram", type);
    if (!rc && !o.npos) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: no input files");
    int64_t total = 0;
    for (int i = 0; !rc && i < o.npos; i++) {
        struct stat st;
        if (!stat(o.pos[i], &st)) total += (int64_t)st.st_size;
        if (stat(o.pos[i], &st)) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: cannot read %s: %s", o.pos[i], strerror(errno));
        else if (!S_ISREG(st.st_mode)) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab train: input %s is not a regular file", o.pos[i]);
    }
    if (rc) {
        lm_opts_end(&o);
        return rc;
    }
    const char *omp = getenv("OMP_NUM_THREADS");
    int threads = omp && atoi(omp) > 0 ? atoi(omp) : 1;
    char opts[1024];
    snprintf(opts, sizeof opts,
             "model_type=%s byte_fallback=true split_digits=true add_dummy_prefix=true remove_extra_whitespaces=false "
             "normalization_rule_name=identity allow_whitespace_only_pieces=true split_by_unicode_script=true "
             "split_by_whitespace=true split_by_number=true unk_id=0 bos_id=1 eos_id=2 pad_id=-1 "
             "max_sentencepiece_length=16 max_sentence_length=4192 character_coverage=%.17g num_threads=%d "
             "input_sentence_size=%ld shuffle_input_sentence=true minloglevel=1",
             type, coverage, threads, sentences);
    double t0 = lm_now();
    lm_progress pr;
    lm_progress_begin(&pr, "vocab train: read", "files", o.npos, total);
    rc = spm_train((const char *const *)o.pos, o.npos, (int)vocab, out, opts, read_progress, &pr, err, errlen);
    lm_opts_end(&o);
    if (rc) return rc;
    lm_spm *sp = spm_load(out, err, errlen);
    if (!sp) return LM_ERR_RUNTIME; /* what we just wrote does not load back */
    printf("vocab train: %s model of %d pieces (%s) in %.1f s -> %s\n", type, spm_vocab_size(sp),
           "byte fallback, digits split", lm_now() - t0, out);
    spm_free(sp);
    return 0;
}
