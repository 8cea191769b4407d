/* prep.c — `lamina prep`: text or JSONL into a token file (SPEC §4, §9).
 *
 * The options, then the pipeline (prep.h lists the parts), on every rank:
 *   read      each rank the documents that start in its byte range of the
 *             inputs; parse, clean or normalise, hash (OpenMP)
 *   category  names numbered in order of first appearance
 *   dedup     exact and near duplicates in global order (rank 0 decides)
 *   assign    the validation hold-out and the bins, seeded
 *   write     tokenize, pack each (category, bin), one collective write
 *             per output file
 *   report    the log per category, --stats, --rejected
 * The output is the same for any number of ranks and threads. An error on
 * any rank ends all ranks with the message of the lowest rank that failed
 * (the earliest document). */
#include "clean.h"
#include "cmds.h"
#include "comm.h"
#include "common.h"
#include "dedup.h"
#include "opts.h"
#include "prep.h"
#include "spm.h"
#include "tokenizer.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* MinHash's hash functions are drawn from a fixed seed (not --seed), so
 * that token files made with different seeds can be deduplicated against
 * each other (--dedup-against checks the whole configuration). */
#define PREP_MINHASH_SEED 0x6c616d696e61ull /* "lamina" */

static void prep_usage(FILE *f) {
    fputs("usage: lamina prep --seq-len N -o OUT.h5 [options] [--category NAME] FILE... [--category NAME FILE...]\n"
          "  Tokenizes FILEs, removes duplicates (and with --clean, low-quality documents), and packs\n"
          "  each category's documents, longest first, into samples of at most N+1 tokens.\n"
          "  --tokenizer M          a SentencePiece model, recorded in OUT.h5 (default: bytes, ids 0-255,\n"
          "                         BOS 256, EOS 257)\n"
          "  --format auto|text|jsonl, --doc-sep LINE\n"
          "                         text: a file is one document, or documents are separated by lines\n"
          "                         equal to LINE; jsonl: one object per line with a string \"text\", or\n"
          "                         \"source\" and \"target\" (SFT: only the target carries loss), and an\n"
          "                         optional \"category\" (auto: by .jsonl/.json)\n"
          "  --category NAME        the category of the files after it (a JSONL \"category\" wins)\n"
          "  --clean[=RULES]        drop documents by the built-in quality rules, or RULES's\n"
          "                         (an INI file; `--clean RULES.ini` works too)\n"
          "  --dedup exact|near|none  default exact; near: MinHash, Jaccard >= --dedup-threshold (0.8)\n"
          "  --dedup-against F.h5[,F2.h5]  also drop duplicates of those token files' documents\n"
          "  --bins K               K bins per category; bucket b = bin b of every category (default 1)\n"
          "  --valid-fraction f     hold out round(f n) documents per category into --valid-out\n"
          "                         (default OUT with .h5 -> .valid.h5)\n"
          "  --seed S               seeds the hold-out and the bins (default 1234)\n"
          "  --stats FILE.json      documents and bytes in and out of every rule, per category\n"
          "  --rejected FILE.jsonl  every dropped document with the rule that dropped it\n"
          "  Runs on any number of ranks (mpirun -np P) and OMP_NUM_THREADS threads; the file is the same.\n",
          f);
}

#define PREP_USAGE "lamina prep --seq-len N -o OUT.h5 [options] [--category NAME] FILE... (lamina help prep)"

enum { O_CAT = 1000, O_CLEAN, O_STATS, O_REJ, O_DEDUP, O_THR, O_AGAINST, O_BINS, O_SEED, O_VF, O_VOUT };

static const struct option PREP_OPTS[] = {
    {"help", no_argument, NULL, 'h'},
    {"seq-len", required_argument, NULL, 'L'},
    {"format", required_argument, NULL, 'F'},
    {"doc-sep", required_argument, NULL, 'S'},
    {"tokenizer", required_argument, NULL, 'T'},
    {"category", required_argument, NULL, O_CAT},
    {"clean", optional_argument, NULL, O_CLEAN},
    {"stats", required_argument, NULL, O_STATS},
    {"rejected", required_argument, NULL, O_REJ},
    {"dedup", required_argument, NULL, O_DEDUP},
    {"dedup-threshold", required_argument, NULL, O_THR},
    {"dedup-against", required_argument, NULL, O_AGAINST},
    {"bins", required_argument, NULL, O_BINS},
    {"seed", required_argument, NULL, O_SEED},
    {"valid-fraction", required_argument, NULL, O_VF},
    {"valid-out", required_argument, NULL, O_VOUT},
    {NULL, 0, NULL, 0},
};

/* The argument vector element that holds s (getopt's optarg points into one). */
static int arg_index(char **av, int ac, const char *s) {
    for (int j = 0; j < ac; j++)
        if (s >= av[j] && s <= av[j] + strlen(av[j])) return j;
    return -1;
}

static int num(const char *v, double lo, double hi, int lo_open, double *x) {
    char *end;
    errno = 0;
    *x = strtod(v, &end);
    return !errno && *v && !*end && isfinite(*x) && (lo_open ? *x > lo : *x >= lo) && *x <= hi;
}

typedef struct {
    char **av;     /* the arguments, "--clean X.ini" made "--clean=X.ini" */
    int ac;
    char *merged;  /* that one string */
    char *against; /* the copy --dedup-against is cut into */
    int *cat_at;   /* argument index of each --category, and its name */
    const char **cat_name;
    int ncat;
    char *vout;    /* the derived --valid-out */
} prep_args;

static void args_free(prep_args *a) {
    lm_free(a->av);
    lm_free(a->merged);
    lm_free(a->against);
    lm_free(a->cat_at);
    lm_free(a->cat_name);
    lm_free(a->vout);
}

/* Parse the options into r (every rank alike). 0, -1 for --help, or an exit code with err. */
static int parse_opts(prep_run *r, prep_args *A, int argc, char **argv, char *err, size_t errlen) {
    const char *v;
    A->av = lm_calloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (!strcmp(argv[i], "--")) {
            for (; i < argc; i++) A->av[A->ac++] = argv[i];
            break;
        }
        if (!strcmp(argv[i], "--clean") && i + 1 < argc && !A->merged && (n = strlen(argv[i + 1])) > 4 &&
            !strcmp(argv[i + 1] + n - 4, ".ini")) {
            A->merged = lm_alloc(n + 9);
            snprintf(A->merged, n + 9, "--clean=%s", argv[i + 1]);
            A->av[A->ac++] = A->merged;
            i++;
        } else A->av[A->ac++] = argv[i];
    }
    *r = (prep_run){.format = "auto", .dedup = PREP_DEDUP_EXACT, .threshold = 0.8, .bins = 1, .seed = 1234};
    lm_opts o;
    lm_opts_begin(&o, "prep", PREP_USAGE, A->ac, A->av, "o:h", PREP_OPTS);
    int rc = 0;
    for (int c; !rc && (c = lm_opts_next(&o, &v, err, errlen)) != -1;) {
        double x;
        char *end;
        switch (c) {
        case 'h': rc = -1; break;
        case 'o': r->out = v; break;
        case 'F': r->format = v; break;
        case 'S': r->sep = v; break;
        case 'T': r->tokpath = v; break;
        case 'L':
            errno = 0;
            r->seq_len = strtol(v, &end, 10);
            if (errno || !*v || *end || r->seq_len < 1 || r->seq_len > (1 << 24))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --seq-len '%s': expected an integer in [1, 16777216]", v);
            break;
        case O_CAT:
            if (!*v || strpbrk(v, "\n\r") || strlen(v) > 200)
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --category '%s': expected a name of 1 to 200 bytes without line breaks", v);
            A->cat_at = lm_realloc(A->cat_at, sizeof(int) * (size_t)(A->ncat + 1));
            A->cat_name = lm_realloc(A->cat_name, sizeof(char *) * (size_t)(A->ncat + 1));
            A->cat_at[A->ncat] = arg_index(A->av, A->ac, v);
            A->cat_name[A->ncat++] = v;
            break;
        case O_CLEAN:
            r->clean = 1;
            r->rules = v && *v && strcmp(v, "default") ? v : NULL;
            break;
        case O_STATS: r->stats = v; break;
        case O_REJ: r->rejected = v; break;
        case O_DEDUP:
            r->dedup = !strcmp(v, "none") ? PREP_DEDUP_NONE : !strcmp(v, "exact") ? PREP_DEDUP_EXACT : !strcmp(v, "near") ? PREP_DEDUP_NEAR : -1;
            if (r->dedup < 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --dedup '%s': expected exact, near or none", v);
            break;
        case O_THR:
            if (!num(v, 0, 1, 1, &r->threshold))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --dedup-threshold '%s': expected a Jaccard similarity in (0, 1]", v);
            break;
        case O_AGAINST: {
            lm_free(A->against);
            A->against = lm_strdup(v);
            r->n_against = 0;
            lm_free(r->against);
            r->against = NULL;
            for (char *s = A->against, *tok; (tok = strsep(&s, ","));) {
                if (!*tok) continue;
                r->against = lm_realloc(r->against, sizeof(char *) * (size_t)(r->n_against + 1));
                r->against[r->n_against++] = tok;
            }
            if (!r->n_against) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --dedup-against '%s': expected FILE.h5[,FILE.h5...]", v);
            break;
        }
        case O_BINS:
            if (!num(v, 1, 1000000, 0, &x) || x != floor(x))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --bins '%s': expected an integer in [1, 1000000]", v);
            r->bins = (int64_t)x;
            break;
        case O_SEED:
            errno = 0;
            r->seed = strtoull(v, &end, 10);
            if (errno || !*v || *end || *v == '-')
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --seed '%s': expected a non-negative integer", v);
            break;
        case O_VF:
            if (!num(v, 0, 1, 0, &r->valid_fraction) || r->valid_fraction >= 1)
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --valid-fraction '%s': expected a fraction in [0, 1)", v);
            break;
        case O_VOUT: r->valid_out = v; break;
        default: rc = LM_ERR_INPUT; break; /* '?': err says which */
        }
    }
    if (rc) {
        lm_opts_end(&o);
        return rc;
    }
    /* the files, each with the last --category before it */
    r->nfiles = o.npos;
    r->files = lm_calloc((size_t)(o.npos ? o.npos : 1), sizeof(prep_file));
    int last_file = -1;
    for (int i = 0; i < o.npos; i++) {
        int at = arg_index(A->av, A->ac, o.pos[i]);
        r->files[i].path = o.pos[i];
        for (int k = 0; k < A->ncat; k++)
            if (A->cat_at[k] < at) r->files[i].category = A->cat_name[k];
        if (at > last_file) last_file = at;
        const char *dot = strrchr(o.pos[i], '.');
        r->files[i].jsonl = !strcmp(r->format, "jsonl") ||
                            (!strcmp(r->format, "auto") && dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json")));
    }
    lm_opts_end(&o);
    const char *bad = !r->out ? "-o OUT.h5 is required" : !r->seq_len ? "--seq-len N is required" : !r->nfiles ? "no input files"
                    : strcmp(r->format, "auto") && strcmp(r->format, "text") && strcmp(r->format, "jsonl") ? "--format must be auto, text or jsonl"
                    : r->valid_out && r->valid_fraction <= 0 ? "--valid-out needs --valid-fraction f > 0"
                    : r->n_against && r->dedup == PREP_DEDUP_NONE ? "--dedup-against needs --dedup exact or near"
                    : NULL;
    if (bad) return lm_err(err, errlen, LM_ERR_INPUT, "prep: %s", bad);
    for (int k = 0; k < A->ncat; k++)
        if (A->cat_at[k] > last_file)
            return lm_err(err, errlen, LM_ERR_INPUT, "prep: --category %s: no input file follows it (it names the category of the files after it)",
                          A->cat_name[k]);
    if (r->valid_fraction > 0 && !r->valid_out) {
        size_t n = strlen(r->out);
        A->vout = lm_alloc(n + 16);
        if (n > 3 && !strcmp(r->out + n - 3, ".h5")) snprintf(A->vout, n + 16, "%.*s.valid.h5", (int)(n - 3), r->out);
        else snprintf(A->vout, n + 16, "%s.valid.h5", r->out);
        r->valid_out = A->vout;
    }
    if (r->valid_out && !strcmp(r->valid_out, r->out))
        return lm_err(err, errlen, LM_ERR_INPUT, "prep: --valid-out %s is the same as -o", r->valid_out);
    return 0;
}

/* Free the texts of the dropped documents (after --rejected has them). */
static void drop_texts(prep_run *r) {
    for (int64_t i = 0; i < r->ndocs; i++)
        if (r->docs[i].status != PREP_KEPT) prep_doc_free(&r->docs[i]);
}

static int prep_main(prep_run *r, prep_args *A, int argc, char **argv, char *err, size_t errlen) {
    int rc = parse_opts(r, A, argc, argv, err, errlen);
    r->g = comm_world();
    if (rc == -1) {
        if (lm_world_rank() == 0) prep_usage(stdout);
        return -1;
    }
    if (rc) return rc;
    r->tok = tokenizer_bytes();
    if (r->tokpath) {
        if (!(r->spm = spm_load(r->tokpath, err, errlen))) return LM_ERR_INPUT;
        r->tok = spm_tokenizer(r->spm);
    }
    if (r->clean && !(r->rules_set = clean_load(r->rules, err, errlen))) return LM_ERR_INPUT;
    r->mh = minhash_default(PREP_MINHASH_SEED);
    r->perm = r->dedup == PREP_DEDUP_NEAR ? r->mh.perm : 0;
    double t0 = lm_now(), t1;
    if ((rc = prep_check_inputs(r, err, errlen))) return rc;
    if ((rc = prep_read(r, err, errlen))) return rc;
    if ((rc = prep_categories(r, err, errlen))) return rc;
    r->secs[PREP_T_READ] = (t1 = lm_now()) - t0;
    if ((rc = prep_dedup(r, err, errlen))) return rc;
    r->secs[PREP_T_DEDUP] = lm_now() - t1;
    if (r->rejected && (rc = prep_report_rejected(r, err, errlen))) return rc;
    drop_texts(r);
    prep_assign(r);
    if (r->valid_fraction > 0) {
        int64_t *ntr = lm_calloc((size_t)r->ncats, sizeof(int64_t)), *nva = lm_calloc((size_t)r->ncats, sizeof(int64_t)), held = 0;
        prep_counts(r, ntr, nva);
        for (int c = 0; c < r->ncats; c++) held += nva[c];
        lm_free(ntr);
        lm_free(nva);
        if (!held)
            rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: --valid-fraction %g holds out no document (round(f n) is 0 in every category)",
                        r->valid_fraction);
    }
    if (rc) return rc;
    prep_catstat *tr = lm_calloc((size_t)r->ncats, sizeof(prep_catstat)), *va = NULL;
    rc = prep_write_set(r, 0, r->out, tr, err, errlen);
    if (!rc) prep_report_log(r, tr, 0, r->out);
    if (!rc && r->valid_fraction > 0) {
        va = lm_calloc((size_t)r->ncats, sizeof(prep_catstat));
        rc = prep_write_set(r, 1, r->valid_out, va, err, errlen);
        if (!rc) prep_report_log(r, va, 1, r->valid_out);
    }
    if (!rc && r->stats) rc = prep_report_stats(r, tr, va, err, errlen);
    r->secs[PREP_T_ALL] = lm_now() - t0;
    if (!rc) {
        double mb = 0;
        for (int f = 0; f < r->nfiles; f++) mb += (double)r->files[f].size / 1e6;
        lm_log("prep: %.2f MB in %.2f s on %d ranks: read%s %.2f s, dedup %.2f s, tokenize %.2f s, pack %.2f s, "
               "write %.2f s\n",
               mb, r->secs[PREP_T_ALL], r->g->size, r->rules_set ? "+clean" : "", r->secs[PREP_T_READ],
               r->secs[PREP_T_DEDUP], r->secs[PREP_T_TOKENIZE], r->secs[PREP_T_PACK], r->secs[PREP_T_WRITE]);
    }
    lm_free(tr);
    lm_free(va);
    return rc;
}

int cmd_prep(int argc, char **argv) {
    char err[LM_ERRLEN] = {0};
    prep_run r = {0};
    prep_args A = {0};
    int rc = prep_main(&r, &A, argc, argv, err, sizeof err);
    for (int64_t i = 0; i < r.ndocs; i++) prep_doc_free(&r.docs[i]);
    for (int c = 0; c < r.ncats; c++) lm_free(r.cats[c]);
    lm_free(r.cats);
    lm_free(r.docs);
    lm_free(r.sig);
    lm_free(r.group_samples);
    lm_free(r.files);
    lm_free(r.against);
    if (r.rules_set) clean_free((struct lm_clean *)r.rules_set);
    spm_free(r.spm);
    args_free(&A);
    /* every rank parsed the same options and agreed on every later step */
    int code = rc < 0 ? 0 : rc;
    if (code) lm_fail(code, "%s", err);
    return 0;
}
