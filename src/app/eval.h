/* eval.h — `lamina eval` (SPEC §10): what its files share.
 *
 *   eval.c        the command: options, the model (a deck's latest
 *                 checkpoint or train.init, a checkpoint file, an HF folder)
 *                 and its tokenizer, the tasks in order, the outputs;
 *   eval_items.c  reading and checking a multiple-choice JSONL file, the
 *                 language of a subject, rendering the prompts (SPEC §10);
 *   eval_fwd.c    scoring rows of tokens on any layout (the batched,
 *                 right-padded forward pass);
 *   eval_mc.c     the mc: task (letter scores and the length-normalised
 *                 log-likelihood of each choice);
 *   eval_ppl.c    the ppl: task (loss, perplexity and bits per byte per
 *                 category);
 *   eval_out.c    the results JSON and the table. */
#ifndef LAMINA_EVAL_H
#define LAMINA_EVAL_H
#include "session.h"
#include "tokenizer.h"
#include <jansson.h>
#include <stdint.h>

/* ---- rows: what the forward pass scores ---------------------------------
 * A row feeds ids[0..n) (1 <= n <= train.seq_len) at positions 0..n-1.
 * With tgt (non-NULL, [n]), ll gets the sum over positions t with
 * tgt[t] >= 0 of log softmax(logits_t)[tgt[t]]. With nq > 0, the logits
 * of the last position (n - 1) at the ids qids[0..nq) are returned. */
typedef struct {
    int n;
    int32_t *ids, *tgt;
    int nq;
    const int32_t *qids;
} eval_row;

typedef struct {
    double seconds;          /* the forward passes, results gathered */
    long long tokens;        /* real (not padding) tokens fed */
    long long forwards;      /* batches on this rank */
} eval_fwd_stats;

/* Scores rows[0..nrows) on session S (every rank passes the same rows):
 * batches of S's B rows per data-parallel rank, each row right-padded to
 * the sequence length (causal attention never lets a position see a later
 * one, so padding after a row's last real token changes none of its
 * logits). Every rank gets ll[nrows] and q[sum of nq] (row order),
 * gathered from the ranks that computed them. Collective. */
void eval_forward_rows(lm_session *S, const eval_row *rows, int nrows, double *ll, double *q, eval_fwd_stats *st);

/* ---- multiple-choice items --------------------------------------------- */
#define MC_MAX_CHOICES 26

typedef struct {
    int line;               /* 1-based line of the JSONL file */
    int subject;            /* index into mc_set.subjects */
    int dev;                /* split: 1 dev, 0 test */
    char *question;
    char **choices;
    int n_choices;
    int answer;             /* 0-based letter */
} mc_item;

typedef struct {
    mc_item *items;
    int n;
    char **subjects;        /* in order of first appearance */
    int n_subjects;
    int *zh;                /* [n_subjects]: rendered in Chinese */
} mc_set;

/* Reads and checks FILE (exit 2 naming FILE:LINE on a malformed item). */
void mc_read(const char *path, mc_set *set);
void mc_free(mc_set *set);

/* lang: "en", "zh" or "auto": a subject is Chinese when more than half of
 * its items (dev and test) are: an item is Chinese when its question and
 * choices hold more CJK characters than ASCII letters. */
void mc_set_lang(mc_set *set, const char *lang);

/* The prompt text (without BOS) for test item `t` with the worked examples
 * dev[0..ndev): SPEC §10's rendering. choice < 0: the letter prompt
 * (ending "Answer: "); choice >= 0: the log-likelihood context, ending
 * "Answer:" (zh "答案：") after the question alone, whose continuation
 * mc_continuation gives. lm_alloc'd. */
char *mc_render(const mc_set *set, const mc_item *t, const mc_item *const *dev, int ndev, int loglik);
char *mc_continuation(const mc_set *set, const mc_item *t, int choice);

/* ---- tasks and outputs ------------------------------------------------- */
typedef struct {
    const lm_tokenizer *tk;
    int shots;              /* -1: every dev item */
    const char *lang;
    int T;                  /* the context: train.seq_len */
} eval_ctx;

/* Each returns the task's JSON object (rank 0 prints its table). */
json_t *eval_mc(lm_session *S, const eval_ctx *e, const char *file);
json_t *eval_ppl(lm_session *S, const eval_ctx *e, const char *file);

/* Table lines on stdout (rank 0). */
void eval_table_mc(const char *file, json_t *r);
void eval_table_ppl(const char *file, json_t *r);

/* A number for the JSON output: null when not finite. */
json_t *eval_num(double x);

#endif
