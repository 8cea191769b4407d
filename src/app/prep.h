/* prep.h — the parts of `lamina prep` (src/app/prep*.c), one job each:
 *
 *   prep.c         options, the pipeline's order, the collective exit
 *   prep_read.c    input files: checks, the byte ranges of the ranks, the
 *                  documents that start in a rank's range
 *   prep_doc.c     one document: parse (text, JSONL, SFT), normalise or
 *                  clean, exact hash, MinHash signature
 *   prep_dedup.c   duplicates in global document order (rank 0, serially)
 *   prep_assign.c  categories, the validation hold-out and the bins
 *   prep_pack.c    tokenize, cut into pieces, pack each (category, bin),
 *                  the layout, the exchange of tokens, the collective write
 *   prep_report.c  --stats, --rejected and the per-category log
 *
 * Every rank runs every stage on its own contiguous range of the documents
 * in global order (file order, then position in the file); whatever crosses
 * ranks is decided so that the output file is the same for any number of
 * ranks (and of threads). */
#ifndef LAMINA_PREP_H
#define LAMINA_PREP_H
#include "comm.h"
#include "dedup.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

enum { PREP_DEDUP_NONE, PREP_DEDUP_EXACT, PREP_DEDUP_NEAR };

/* One input file. */
typedef struct {
    const char *path;
    const char *category; /* the --category in effect before it, or NULL */
    int jsonl;
    int64_t size, base;   /* its bytes, and where they start in the concatenation of all inputs */
} prep_file;

/* A document this rank holds. Status: PREP_KEPT, or the stage that dropped it
 * (a cleaning rule index r in [0, clean_n_rules()), then PREP_ST_EXACT and
 * PREP_ST_NEAR; see prep_stage_name). */
#define PREP_KEPT (-1)
typedef struct {
    int32_t file;
    int32_t status;
    int64_t line;       /* 1-based line of the document's first byte */
    char *text;         /* lm_alloc'ed: the text tokenized (SFT: source then target) */
    size_t len;
    int64_t src;        /* SFT: bytes of text that are the source; -1 for a plain document */
    char *catname;      /* the JSONL `category` field (lm_alloc'ed), or NULL */
    int32_t cat;        /* category index (prep_assign), -1 before */
    int32_t bin;        /* bin in the training set, or -1 for a validation document */
    uint64_t hash;      /* exact-duplicate key of the normalised text */
    int32_t dup_file;   /* the kept document it duplicates: input file (>= 0) or */
    int64_t dup_line;   /* -1 - (--dedup-against file); line there, or document index */
} prep_doc;

typedef struct {
    /* options */
    const char *out, *valid_out, *format, *sep, *tokpath, *rules, *stats, *rejected;
    int clean, dedup;
    double threshold, valid_fraction;
    char **against;
    int n_against;
    int64_t bins;
    uint64_t seed;
    long seq_len;
    prep_file *files;
    int nfiles;
    /* the run */
    lm_group *g;
    const struct lm_clean *rules_set; /* NULL without --clean */
    const lm_tokenizer *tok;
    struct lm_spm *spm;
    lm_minhash_cfg mh;
    int perm;             /* signature length, 0 without --dedup near */
    /* this rank's documents (global order), their signatures [ndocs * perm] */
    prep_doc *docs;
    int64_t ndocs, doc_cap;
    uint32_t *sig;
    int64_t gdoc0, gdocs; /* global index of this rank's first document; documents in all */
    int any_sft;          /* over all ranks */
    /* categories over all ranks, in index order */
    char **cats;
    int ncats;
    int64_t *group_samples; /* the training file's samples per (bin, category) [bins * ncats] */
    /* seconds on rank 0 per stage (PREP_T_*), for the log */
    double secs[6];
} prep_run;

enum { PREP_T_READ, PREP_T_DEDUP, PREP_T_TOKENIZE, PREP_T_PACK, PREP_T_WRITE, PREP_T_ALL };

/* Stages that drop documents, in order: the cleaning rules, then exact and near dedup. */
int prep_n_stages(void);
const char *prep_stage_name(int s);
#define PREP_ST_EXACT (prep_n_stages() - 2)
#define PREP_ST_NEAR (prep_n_stages() - 1)

/* prep_read.c: check the inputs (rank 0: regular files, not the output;
 * sizes), then read the documents that start in this rank's byte range of
 * the inputs, parse and process them (prep_doc_*) into r->docs. Collective;
 * 0 or an exit code with err (the same on all ranks). */
int prep_check_inputs(prep_run *r, char *err, size_t errlen);
int prep_read(prep_run *r, char *err, size_t errlen);

/* The documents of a buffer holding file bytes [at, at + n) whose first
 * byte lies in [a, b), as spans (file offsets) with their line numbers
 * counted from line0 at byte a; for tests (the fuzz and split checks) and
 * prep_read. Text: documents between lines equal to sep (NULL: the whole
 * file is one document); JSONL: the lines that are not blank. Returns the
 * count; *more = 1 when the buffer ends before the last document does (the
 * caller reads on and calls again), 0 when it is complete. at <= a - back,
 * where back = prep_scan_back(sep, jsonl), unless at is 0. */
typedef struct {
    int64_t at, len, line;
} prep_span;
size_t prep_scan_back(const char *sep, int jsonl);
int64_t prep_scan(const char *buf, int64_t at, int64_t n, int eof, int64_t a, int64_t b, const char *sep, int jsonl,
                  int64_t line0, prep_span **spans, int *more);

/* prep_doc.c. Parse one document's bytes: text (jsonl 0) as is; a JSONL
 * line: an object with a string `text`, or with string `source` and
 * `target` (SFT), and an optional string `category` (1..200 bytes, no line
 * break). Fills d->text/len/src/catname (lm_alloc'ed). Returns 0, 1 for a
 * document that is only white space (it is no document: dropped, as
 * before), or -1 with the reason in why. Thread-safe. */
int prep_doc_parse(const char *s, size_t n, int jsonl, prep_doc *d, char *why, size_t whylen);
/* Clean (or only normalise) the document and set its hash and signature
 * (sig: r->perm values, NULL without near dedup); status = the dropping
 * rule or PREP_KEPT. category: its name (NULL: the rules' defaults). */
void prep_doc_process(const prep_run *r, prep_doc *d, const char *category, uint32_t *sig);
void prep_doc_free(prep_doc *d);

/* prep_dedup.c: exact and near duplicates over all ranks' kept documents in
 * global order (first occurrence kept), after the kept documents of the
 * --dedup-against files. Collective. */
int prep_dedup(prep_run *r, char *err, size_t errlen);

/* prep_assign.c: the categories (prep_categories: names numbered in order
 * of first appearance over all documents, read or dropped; cleaning already
 * used the names; a document without one among others with one is an
 * error), then the validation documents and bins of the kept ones
 * (prep_assign). Collective. */
int prep_categories(prep_run *r, char *err, size_t errlen);
void prep_assign(prep_run *r);
/* Per category: kept documents in the training set and in the validation set. */
void prep_counts(const prep_run *r, int64_t *train, int64_t *valid);

/* prep_pack.c: the token file of one set (valid 0: the training documents,
 * bins as buckets; 1: the validation documents, one bin, no buckets) to
 * path. Fills the per-category figures for the log. Collective. */
typedef struct {
    int64_t docs, tokens, samples, bytes, split;
    int64_t concat_samples; /* a plain concatenate-and-split of each (category, bin) */
} prep_catstat;
int prep_write_set(prep_run *r, int valid, const char *path, prep_catstat *cs, char *err, size_t errlen);

/* prep_report.c */
void prep_report_log(const prep_run *r, const prep_catstat *cs, int valid, const char *path);
int prep_report_stats(const prep_run *r, const prep_catstat *train, const prep_catstat *valid, char *err,
                      size_t errlen);
int prep_report_rejected(const prep_run *r, char *err, size_t errlen);

/* prep_pack.c: all ranks' byte blobs, rank order (sizes[p]: each rank's
 * size); lm_free the result. */
void *prep_allgatherv(const lm_group *g, const void *mine, size_t bytes, size_t *sizes);

#endif
