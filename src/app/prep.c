/* prep.c — `lamina prep`: text or JSONL into a token file (SPEC §4).
 *
 * Each document becomes [BOS] tokens [EOS]; a document longer than
 * seq_len+1 tokens is split into pieces of seq_len+1 (nothing is dropped);
 * pieces are then packed into samples of at most seq_len+1 tokens by
 * pack_docs. Runs on rank 0; the other ranks wait for its verdict. */
#include "cmds.h"
#include "comm.h"
#include "common.h"
#include "opts.h"
#include "progress.h"
#include "pack.h"
#include "spm.h"
#include "tokenizer.h"
#include "tokfile.h"
#include "tokrec.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    uint32_t *tok;
    int64_t ntok, cap;
    int64_t *start, *len; /* pieces */
    int64_t npiece, piece_cap;
    int64_t ndocs, nsplit, nbytes;
} corpus;

static void push_piece(corpus *c, int64_t start, int64_t len) {
    if (c->npiece == c->piece_cap) {
        c->piece_cap = c->piece_cap ? 2 * c->piece_cap : 1024;
        c->start = lm_realloc(c->start, sizeof(int64_t) * (size_t)c->piece_cap);
        c->len = lm_realloc(c->len, sizeof(int64_t) * (size_t)c->piece_cap);
    }
    c->start[c->npiece] = start;
    c->len[c->npiece] = len;
    c->npiece++;
}

/* One document's tokens, [BOS] text [EOS], encoded independently of the
 * others so that documents are tokenized in parallel (OpenMP threads); the
 * corpus then takes them in input order, so the output does not depend on
 * the number of threads. A document that is only whitespace gives none. */
typedef struct {
    uint32_t *tok;
    int64_t ntok, nbytes;
} doc_tokens;

static doc_tokens encode_doc(const lm_tokenizer *t, const char *text, size_t n) {
    doc_tokens d = {0};
    size_t k = 0;
    while (k < n && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t')) k++;
    if (k == n) return d;
    size_t cap = t->max_tokens(t, n) + 2;
    d.tok = lm_alloc(sizeof(uint32_t) * cap);
    if (t->bos >= 0) d.tok[d.ntok++] = (uint32_t)t->bos;
    d.ntok += (int64_t)t->encode(t, text, n, d.tok + d.ntok, cap - (size_t)d.ntok - 1);
    if (t->eos >= 0) d.tok[d.ntok++] = (uint32_t)t->eos;
    d.nbytes = (int64_t)n;
    return d;
}

/* Append a document to the corpus (and free its tokens): split into pieces
 * of at most maxlen tokens. */
static void add_doc(corpus *c, doc_tokens *d, int64_t maxlen) {
    if (!d->ntok) return;
    if (c->ntok + d->ntok > c->cap) {
        while (c->ntok + d->ntok > c->cap) c->cap = c->cap ? 2 * c->cap : (1 << 20);
        c->tok = lm_realloc(c->tok, sizeof(uint32_t) * (size_t)c->cap);
    }
    int64_t s = c->ntok, L = d->ntok;
    memcpy(c->tok + s, d->tok, sizeof(uint32_t) * (size_t)L);
    c->ntok += L;
    if (L > maxlen) c->nsplit++;
    for (int64_t o = 0; o < L; o += maxlen) push_piece(c, s + o, L - o < maxlen ? L - o : maxlen);
    c->ndocs++;
    c->nbytes += d->nbytes;
    lm_free(d->tok);
    d->tok = NULL;
}

/* The documents of one file, as byte spans of its buffer: for text, the whole
 * file or the parts between separator lines; for JSONL, the lines (each
 * parsed in the parallel loop). */
typedef struct {
    size_t *at, *len;
    int64_t n, cap;
} spans;

static void span_push(spans *s, size_t at, size_t len) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->at = lm_realloc(s->at, sizeof(size_t) * (size_t)s->cap);
        s->len = lm_realloc(s->len, sizeof(size_t) * (size_t)s->cap);
    }
    s->at[s->n] = at;
    s->len[s->n++] = len;
}

/* Plain text: the whole file is one document, or documents are separated by
 * lines equal to `sep` (fortune files use "%"). */
static void split_text(spans *d, const char *buf, size_t n, const char *sep) {
    if (!sep) {
        span_push(d, 0, n);
        return;
    }
    size_t seplen = strlen(sep), doc = 0, line = 0;
    while (line <= n) {
        size_t e = line;
        while (e < n && buf[e] != '\n') e++;
        size_t le = e;
        if (le > line && buf[le - 1] == '\r') le--;
        if (le - line == seplen && memcmp(buf + line, sep, seplen) == 0) {
            span_push(d, doc, line - doc);
            doc = e + 1;
        }
        line = e + 1;
    }
    if (doc < n) span_push(d, doc, n - doc);
}

/* JSONL: every line that is not blank is a document. */
static void split_lines(spans *d, const char *buf, size_t n) {
    for (size_t line = 0; line < n;) {
        size_t e = line;
        while (e < n && buf[e] != '\n') e++;
        size_t k = line;
        while (k < e && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r')) k++;
        if (k < e) span_push(d, line, e - line);
        line = e + 1;
    }
}

/* The 1-based line number of byte `at` (for messages). */
static long line_of(const char *buf, size_t at) {
    long l = 1;
    for (size_t i = 0; i < at; i++) l += buf[i] == '\n';
    return l;
}

/* Tokenize the documents of one file in parallel and append them in order.
 * JSONL lines must be objects with a string field "text"; the first bad line
 * (lowest) is the error. */
/* Tokenize the documents of one file in parallel, in batches of documents
 * (progress is reported between batches), and append them in order. JSONL
 * lines must be objects with a string field "text"; the first bad line
 * (lowest) is the error. base: bytes of earlier files, for the progress. */
static int read_file_docs(corpus *c, const lm_tokenizer *t, const char *path, const char *buf, size_t n, int jsonl,
                          const char *sep, int64_t maxlen, lm_progress *pr, int file, int64_t base, char *err,
                          size_t errlen) {
    spans d = {0};
    if (jsonl) split_lines(&d, buf, n);
    else split_text(&d, buf, n, sep);
    enum { BATCH = 8192 };
    doc_tokens *docs = lm_calloc(BATCH, sizeof(doc_tokens));
    json_object_seed(0); /* jansson: seed its hash tables before threads parse */
    int64_t bad = d.n;
    char why[160] = "";
    for (int64_t b0 = 0; b0 < d.n && bad == d.n; b0 += BATCH) {
        int64_t b1 = b0 + BATCH < d.n ? b0 + BATCH : d.n;
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t i = b0; i < b1; i++) {
            const char *text = buf + d.at[i];
            size_t len = d.len[i];
            json_t *o = NULL;
            if (jsonl) {
                json_error_t je;
                o = json_loadb(text, len, 0, &je);
                json_t *txt = o && json_is_object(o) ? json_object_get(o, "text") : NULL;
                if (!o || !json_is_string(txt)) {
#pragma omp critical(prep_bad)
                    if (i < bad) {
                        bad = i;
                        snprintf(why, sizeof why, "%s", !o ? je.text : "expected a JSON object with a string field \"text\"");
                    }
                    json_decref(o);
                    continue;
                }
                text = json_string_value(txt);
                len = json_string_length(txt);
            }
            docs[i - b0] = encode_doc(t, text, len);
            json_decref(o);
        }
        for (int64_t i = b0; i < b1; i++) {
            if (bad == d.n) add_doc(c, &docs[i - b0], maxlen);
            lm_free(docs[i - b0].tok);
            docs[i - b0].tok = NULL;
        }
        lm_progress_set(pr, file, base + (int64_t)(d.at[b1 - 1] + d.len[b1 - 1]));
    }
    int rc = 0;
    if (bad < d.n) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: %s:%ld: %s", path, line_of(buf, d.at[bad]), why);
    lm_free(docs);
    lm_free(d.at);
    lm_free(d.len);
    return rc;
}

static void prep_usage(FILE *f) {
    fputs("usage: lamina prep --seq-len N -o OUT.h5 [--tokenizer M] [--format auto|text|jsonl] [--doc-sep LINE] FILE...\n"
          "  Tokenizes FILEs and packs the documents, longest first, into samples of at most N+1\n"
          "  tokens. --tokenizer: a SentencePiece model (e.g. LLaMA-2's tokenizer.model), recorded in\n"
          "  OUT.h5; without it the bytes tokenizer (ids 0-255, BOS 256, EOS 257).\n"
          "  Documents are tokenized in parallel (OMP_NUM_THREADS threads).\n"
          "  text: a file is one document, or documents are separated by lines equal to LINE.\n"
          "  jsonl: one JSON object per line, its \"text\" field a document (auto: by .jsonl/.json).\n",
          f);
}

#define PREP_USAGE "lamina prep --seq-len N -o OUT.h5 [--tokenizer M] [--format auto|text|jsonl] [--doc-sep LINE] FILE..."

static const struct option PREP_OPTS[] = {
    {"help", no_argument, NULL, 'h'},          {"seq-len", required_argument, NULL, 'L'},
    {"format", required_argument, NULL, 'F'}, {"doc-sep", required_argument, NULL, 'S'},
    {"tokenizer", required_argument, NULL, 'T'},
    {NULL, 0, NULL, 0},
};

static int prep_main(int argc, char **argv, char *err, size_t errlen) {
    const char *out = NULL, *format = "auto", *sep = NULL, *tokpath = NULL, *v;
    long seq_len = 0;
    lm_opts o;
    lm_opts_begin(&o, "prep", PREP_USAGE, argc, argv, "o:h", PREP_OPTS);
    for (int c; (c = lm_opts_next(&o, &v, err, errlen)) != -1;) {
        char *end;
        switch (c) {
        case 'h':
            lm_opts_end(&o);
            if (lm_world_rank() == 0) prep_usage(stdout);
            return -1;
        case 'o': out = v; break;
        case 'F': format = v; break;
        case 'S': sep = v; break;
        case 'T': tokpath = v; break;
        case 'L':
            errno = 0;
            seq_len = strtol(v, &end, 10);
            if (errno || !*v || *end || seq_len < 1 || seq_len > (1 << 24)) {
                lm_opts_end(&o);
                return lm_err(err, errlen, LM_ERR_INPUT, "prep: --seq-len '%s': expected an integer in [1, 16777216]", v);
            }
            break;
        default: lm_opts_end(&o); return LM_ERR_INPUT; /* '?': err says which */
        }
    }
    int nin = o.npos;
    char **in = lm_calloc((size_t)nin + 1, sizeof(char *));
    for (int i = 0; i < nin; i++) in[i] = o.pos[i];
    lm_opts_end(&o);
    int bad = !out ? 1 : !seq_len ? 2 : !nin ? 3 : 0;
    if (!bad && strcmp(format, "auto") && strcmp(format, "text") && strcmp(format, "jsonl")) bad = 4;
    if (bad) {
        lm_free(in);
        return lm_err(err, errlen, LM_ERR_INPUT, "prep: %s", bad == 1 ? "-o OUT.h5 is required" : bad == 2 ? "--seq-len N is required"
                                                  : bad == 3 ? "no input files" : "--format must be auto, text or jsonl");
    }
    /* Inputs must be regular files (a FIFO would block, a directory would
     * read as nothing), and the output must not be one of them: the same
     * device and inode, whatever the spelling or symlink. */
    struct stat ost;
    int out_exists = stat(out, &ost) == 0;
    if (out_exists && S_ISDIR(ost.st_mode)) {
        lm_free(in);
        return lm_err(err, errlen, LM_ERR_INPUT, "prep: -o %s is a directory: give the token file's path", out);
    }
    for (int i = 0; i < nin; i++) {
        struct stat st;
        const char *why = NULL;
        if (stat(in[i], &st)) {
            int e = errno;
            lm_err(err, errlen, LM_ERR_INPUT, "prep: cannot read %s: %s", in[i], strerror(e));
            lm_free(in);
            return LM_ERR_INPUT;
        }
        if (S_ISDIR(st.st_mode)) why = "is a directory (give the files inside it)";
        else if (!S_ISREG(st.st_mode)) why = S_ISFIFO(st.st_mode) ? "is not a regular file (a FIFO)" : "is not a regular file";
        else if (out_exists && st.st_dev == ost.st_dev && st.st_ino == ost.st_ino)
            why = "is the output file (-o): refusing to overwrite an input";
        if (why) {
            lm_err(err, errlen, LM_ERR_INPUT, "prep: input %s %s", in[i], why);
            lm_free(in);
            return LM_ERR_INPUT;
        }
    }
    const lm_tokenizer *t = tokenizer_bytes();
    lm_spm *sp = NULL;
    if (tokpath) {
        if (!(sp = spm_load(tokpath, err, errlen))) {
            lm_free(in);
            return LM_ERR_INPUT;
        }
        t = spm_tokenizer(sp);
    }
    corpus c = {0};
    int rc = 0;
    int64_t maxlen = seq_len + 1, total = 0, done = 0;
    for (int i = 0; i < nin; i++) {
        struct stat st;
        if (!stat(in[i], &st)) total += (int64_t)st.st_size;
    }
    lm_progress pr;
    lm_progress_begin(&pr, "prep: tokenize", "files", nin, total);
    for (int i = 0; i < nin && !rc; i++) {
        size_t n;
        char *buf = lm_read_file(in[i], &n, err, errlen);
        if (!buf) {
            rc = LM_ERR_INPUT;
            break;
        }
        const char *dot = strrchr(in[i], '.');
        int jsonl = !strcmp(format, "jsonl") || (!strcmp(format, "auto") && dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json")));
        rc = read_file_docs(&c, t, in[i], buf, n, jsonl, sep, maxlen, &pr, i, done, err, errlen);
        done += (int64_t)n;
        lm_progress_set(&pr, i + 1, done);
        lm_free(buf);
    }
    if (!rc) lm_progress_end(&pr);
    if (!rc && c.npiece == 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: the input holds no documents");
    if (!rc) {
        int64_t *bin = lm_alloc(sizeof(int64_t) * (size_t)c.npiece), *order = lm_alloc(sizeof(int64_t) * (size_t)c.npiece);
        int64_t nb = pack_docs(c.len, c.npiece, maxlen, 0, bin, order);
        /* Lay samples out: count per bin, then fill in placement order. */
        int64_t *off = lm_calloc((size_t)nb + 1, sizeof(int64_t)), *fill = lm_calloc((size_t)nb, sizeof(int64_t));
        uint32_t *tok = lm_alloc(sizeof(uint32_t) * (size_t)(c.ntok ? c.ntok : 1));
        if (!bin || !order || !off || !fill || !tok) lm_abort(LM_ERR_RUNTIME, "prep: out of memory");
        for (int64_t k = 0; k < c.npiece; k++) off[bin[k] + 1] += c.len[k];
        for (int64_t b = 0; b < nb; b++) off[b + 1] += off[b];
        for (int64_t k = 0; k < c.npiece; k++) {
            int64_t i = order[k], b = bin[i];
            memcpy(tok + off[b] + fill[b], c.tok + c.start[i], sizeof(uint32_t) * (size_t)c.len[i]);
            fill[b] += c.len[i];
        }
        const char *names[] = {"seq_len"};
        int64_t vals[] = {seq_len};
        lm_tokrec rec = {0};
        if (sp) {
            rec.model = (unsigned char *)spm_model_bytes(sp, &rec.len);
            rec.bos_id = spm_bos_id(sp);
            rec.eos_id = spm_eos_id(sp);
        }
        rc = tokfile_write_tok(out, tok, off[nb], off, nb, t->vocab_size, 1, names, vals, sp ? &rec : NULL, err, errlen)
                 ? LM_ERR_RUNTIME : 0;
        if (!rc)
            lm_log("prep: %lld documents (%lld bytes, %lld split at %ld+1 tokens) -> %lld tokens in %lld samples "
                   "of <= %ld+1 (packing %.1f%%, %s tokenizer, vocab %d) -> %s\n",
                   (long long)c.ndocs, (long long)c.nbytes, (long long)c.nsplit, seq_len, (long long)off[nb],
                   (long long)nb, seq_len, 100.0 * (double)off[nb] / ((double)nb * (double)maxlen),
                   sp ? tokpath : t->name, t->vocab_size, out);
        lm_free(bin);
        lm_free(order);
        lm_free(off);
        lm_free(fill);
        lm_free(tok);
    }
    spm_free(sp);
    lm_free(c.tok);
    lm_free(c.start);
    lm_free(c.len);
    lm_free(in);
    return rc;
}

int cmd_prep(int argc, char **argv) {
    char err[LM_ERRLEN] = {0};
    int rc = 0;
    if (comm_world()->rank == 0) rc = prep_main(argc, argv, err, sizeof err);
    int code = rc < 0 ? 0 : rc;
    comm_bcast(comm_world(), &code, sizeof code, 0);
    if (code) lm_fail(code, "%s", err);
    return 0;
}
