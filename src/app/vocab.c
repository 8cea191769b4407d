/* vocab.c — `lamina vocab` (SPEC §8): dispatch, and the line tools
 * encode, decode and stats. train, expand and resize live in
 * vocab_train.c, vocab_expand.c and vocab_resize.c.
 *
 * Every subcommand but resize runs on rank 0 (stdin reaches rank 0 under
 * mpirun); the other ranks wait for its exit code, so an error is the same
 * exit on every rank. resize is collective (it reads and writes
 * checkpoints with parallel HDF5). */
#include "cmds.h"
#include "comm.h"
#include "common.h"
#include "opts.h"
#include "spm.h"
#include "vocab.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB_USAGE                                                                                                    \
    "usage: lamina vocab encode --tokenizer M [--bos] [--eos] < TEXT\n"                                               \
    "       lamina vocab decode --tokenizer M < IDS\n"                                                                 \
    "       lamina vocab stats --tokenizer M FILE...\n"                                                                \
    "       lamina vocab train --vocab-size N -o NEW.model [--model-type bpe|unigram] [--character-coverage F]\n"      \
    "                          [--input-sentence-size N] FILE...\n"                                                    \
    "       lamina vocab expand --base BASE.model (--pieces FILE | --from NEW.model) [--max-new N] -o MERGED.model\n" \
    "       lamina vocab resize --old-tokenizer A.model --new-tokenizer B.model FROM.h5 -o OUT.h5 [--init mean|random]\n"

void vocab_usage(FILE *f) {
    fputs(VOCAB_USAGE
          "  encode: one line of space-separated ids per input line (a line: the bytes up to '\\n').\n"
          "  decode: one text line per line of ids.\n"
          "  stats: characters, bytes and tokens of each file (each line encoded alone) and their ratios.\n"
          "  train: SentencePiece's trainer with LLaMA-2's settings (bpe, byte fallback, split digits).\n"
          "  expand: Colossal-LLaMA-2's merge: new pieces, shortest first, appended after BASE's.\n"
          "  resize: a step-0 checkpoint for B: new embedding and lm_head rows are the mean of the\n"
          "          rows of A.encode(piece) (--init random: 0.02 * normal, an ablation); old rows are copied.\n",
          f);
}

/* One line of f (without its '\n') into *buf: its length, or -1 at the end. */
ssize_t vocab_getline(char **buf, size_t *cap, FILE *f) {
    ssize_t n = getline(buf, cap, f);
    if (n > 0 && (*buf)[n - 1] == '\n') (*buf)[--n] = 0;
    return n;
}

/* Decimal of v at p; returns the characters written. */
static int put_int(char *p, int32_t v) {
    char t[12];
    int k = 0, n = 0;
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
    do t[k++] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) p[n++] = '-';
    while (k) p[n++] = t[--k];
    return n;
}

static const struct option TOK_OPTS[] = {
    {"tokenizer", required_argument, NULL, 't'}, {"bos", no_argument, NULL, 'B'}, {"eos", no_argument, NULL, 'E'},
    {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
};

/* The options of encode, decode and stats: --tokenizer M, --bos, --eos. */
static int tok_opts(const char *cmd, int argc, char **argv, lm_spm **sp, int *bos, int *eos, lm_opts *o, char *err,
                    size_t errlen) {
    const char *tok = NULL, *v;
    lm_opts_begin(o, cmd, VOCAB_USAGE, argc, argv, "h", TOK_OPTS);
    for (int c; (c = lm_opts_next(o, &v, err, errlen)) != -1;) {
        if (c == 't') tok = v;
        else if (c == 'B' && bos) *bos = 1;
        else if (c == 'E' && eos) *eos = 1;
        else if (c == 'h') {
            vocab_usage(stdout);
            return -1;
        } else {
            if (c != '?') lm_err(err, errlen, LM_ERR_INPUT, "%s: unknown option (see lamina help vocab)", cmd);
            return LM_ERR_INPUT;
        }
    }
    if (!tok) return lm_err(err, errlen, LM_ERR_INPUT, "%s: --tokenizer M is required", cmd);
    *sp = spm_load(tok, err, errlen);
    return *sp ? 0 : LM_ERR_INPUT;
}

/* encode: each stdin line -> its ids (BOS/EOS added on request). */
static int vocab_encode(int argc, char **argv, char *err, size_t errlen) {
    lm_spm *sp = NULL;
    int bos = 0, eos = 0;
    lm_opts o;
    int rc = tok_opts("vocab encode", argc, argv, &sp, &bos, &eos, &o, err, errlen);
    lm_opts_end(&o);
    if (rc) return rc;
    if ((bos && spm_bos_id(sp) < 0) || (eos && spm_eos_id(sp) < 0)) {
        lm_err(err, errlen, LM_ERR_INPUT, "vocab encode: the tokenizer has no %s piece", bos && spm_bos_id(sp) < 0 ? "BOS" : "EOS");
        spm_free(sp);
        return LM_ERR_INPUT;
    }
    char *line = NULL, *out = NULL;
    size_t cap = 0, ocap = 0;
    ssize_t n;
    while (!rc && (n = vocab_getline(&line, &cap, stdin)) >= 0) {
        int32_t *ids;
        size_t k;
        if (spm_encode(sp, line, (size_t)n, &ids, &k, err, errlen)) {
            rc = LM_ERR_RUNTIME;
            break;
        }
        if (ocap < 12 * (k + 3)) out = lm_realloc(out, ocap = 12 * (k + 3));
        size_t w = 0;
        if (bos) w += (size_t)put_int(out + w, spm_bos_id(sp)), out[w++] = ' ';
        for (size_t i = 0; i < k; i++) w += (size_t)put_int(out + w, ids[i]), out[w++] = ' ';
        if (eos) w += (size_t)put_int(out + w, spm_eos_id(sp)), out[w++] = ' ';
        if (w) w--; /* the last separator */
        out[w++] = '\n';
        if (fwrite(out, 1, w, stdout) != w) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab encode: writing stdout: %s", strerror(errno));
        lm_free(ids);
    }
    if (!rc && fflush(stdout)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab encode: writing stdout: %s", strerror(errno));
    free(line);
    lm_free(out);
    spm_free(sp);
    return rc;
}

/* decode: each stdin line of ids -> its text. */
static int vocab_decode(int argc, char **argv, char *err, size_t errlen) {
    lm_spm *sp = NULL;
    lm_opts o;
    int rc = tok_opts("vocab decode", argc, argv, &sp, NULL, NULL, &o, err, errlen);
    lm_opts_end(&o);
    if (rc) return rc;
    char *line = NULL;
    size_t cap = 0, icap = 0;
    int32_t *ids = NULL;
    ssize_t n;
    long lineno = 0;
    while (!rc && (n = vocab_getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t k = 0;
        char *p = line, *e = line + n;
        while (p < e) {
            while (p < e && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
            if (p == e) break;
            char *q = p;
            while (q < e && *q != ' ' && *q != '\t' && *q != '\r') q++;
            char tokbuf[32], *end;
            size_t tl = (size_t)(q - p);
            snprintf(tokbuf, sizeof tokbuf, "%.*s", (int)(tl < 31 ? tl : 31), p);
            errno = 0;
            long v = strtol(tokbuf, &end, 10);
            if (tl > 30 || errno || *end || v < 0 || v >= spm_vocab_size(sp)) {
                rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab decode: stdin line %ld: id '%.*s' is not in [0, %d)", lineno,
                            (int)(tl < 40 ? tl : 40), p, spm_vocab_size(sp));
                break;
            }
            if (k == icap) ids = lm_realloc(ids, sizeof(int32_t) * (icap = icap ? 2 * icap : 256));
            ids[k++] = (int32_t)v;
            p = q;
        }
        if (rc) break;
        char *txt;
        size_t len;
        if ((rc = spm_decode(sp, ids, k, &txt, &len, err, errlen))) break;
        txt[len] = '\n';
        if (fwrite(txt, 1, len + 1, stdout) != len + 1)
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab decode: writing stdout: %s", strerror(errno));
        lm_free(txt);
    }
    if (!rc && fflush(stdout)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "vocab decode: writing stdout: %s", strerror(errno));
    free(line);
    lm_free(ids);
    spm_free(sp);
    return rc;
}

/* Characters of UTF-8 text: the bytes that do not continue a character
 * (not 10xxxxxx), so a stray byte counts as one. */
size_t vocab_utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static void stats_row(const char *name, double ch, double by, double tk) {
    printf("%-32s %12.0f %12.0f %12.0f %10.3f %10.3f\n", name, ch, by, tk, tk ? ch / tk : 0.0, tk ? by / tk : 0.0);
}

/* stats: each line of each file encoded alone (no BOS/EOS); characters and
 * bytes are those of the lines, without their '\n'. */
static int vocab_stats(int argc, char **argv, char *err, size_t errlen) {
    lm_spm *sp = NULL;
    lm_opts o;
    int rc = tok_opts("vocab stats", argc, argv, &sp, NULL, NULL, &o, err, errlen);
    if (rc) {
        lm_opts_end(&o);
        return rc;
    }
    if (!o.npos) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab stats: no input files");
    double tot[3] = {0, 0, 0};
    if (!rc) printf("%-32s %12s %12s %12s %10s %10s\n", "file", "characters", "bytes", "tokens", "chars/tok", "bytes/tok");
    for (int f = 0; f < o.npos && !rc; f++) {
        size_t n;
        char *buf = lm_read_file(o.pos[f], &n, err, errlen);
        if (!buf) {
            rc = LM_ERR_INPUT;
            break;
        }
        double c[3] = {0, 0, 0};
        for (size_t a = 0; a < n && !rc;) {
            char *nl = memchr(buf + a, '\n', n - a);
            size_t b = nl ? (size_t)(nl - buf) : n;
            int32_t *ids;
            size_t k;
            if (spm_encode(sp, buf + a, b - a, &ids, &k, err, errlen)) rc = LM_ERR_RUNTIME;
            else lm_free(ids);
            c[0] += (double)vocab_utf8_chars(buf + a, b - a);
            c[1] += (double)(b - a);
            c[2] += (double)k;
            a = b + 1;
        }
        lm_free(buf);
        if (!rc) stats_row(o.pos[f], c[0], c[1], c[2]);
        for (int j = 0; j < 3; j++) tot[j] += c[j];
    }
    if (!rc) stats_row("total", tot[0], tot[1], tot[2]);
    fflush(stdout);
    lm_opts_end(&o);
    spm_free(sp);
    return rc;
}

int cmd_vocab(int argc, char **argv) {
    const char *sub = argc > 0 ? argv[0] : NULL;
    if (sub && !strcmp(sub, "resize")) return vocab_resize(argc - 1, argv + 1);
    char err[LM_ERRLEN] = {0};
    int rc = 0;
    if (comm_world()->rank == 0) {
        if (!sub) rc = lm_err(err, sizeof err, LM_ERR_INPUT, "vocab: no subcommand given\n%s", VOCAB_USAGE);
        else if (!strcmp(sub, "encode")) rc = vocab_encode(argc - 1, argv + 1, err, sizeof err);
        else if (!strcmp(sub, "decode")) rc = vocab_decode(argc - 1, argv + 1, err, sizeof err);
        else if (!strcmp(sub, "stats")) rc = vocab_stats(argc - 1, argv + 1, err, sizeof err);
        else if (!strcmp(sub, "train")) rc = vocab_train(argc - 1, argv + 1, err, sizeof err);
        else if (!strcmp(sub, "expand")) rc = vocab_expand(argc - 1, argv + 1, err, sizeof err);
        else if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) vocab_usage(stdout);
        else rc = lm_err(err, sizeof err, LM_ERR_INPUT, "vocab: unknown subcommand '%s'\n%s", sub, VOCAB_USAGE);
    }
    int code = rc < 0 ? 0 : rc;
    comm_bcast(comm_world(), &code, sizeof code, 0);
    if (code) lm_fail(code, "%s", err);
    return 0;
}
