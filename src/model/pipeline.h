/* pipeline.h — the plan of pipeline parallelism: which layers each model
 * chunk holds, and in which order a stage runs the forward and backward
 * passes of its micro-batches (1F1B and Megatron-LM's interleaved 1F1B).
 * Pure functions: no communication, no model.
 *
 * The model is cut into pp * v chunks of consecutive layers, in model order;
 * chunk c runs on stage c % pp as that stage's local chunk c / pp (v = 1:
 * chunk c is stage c). The embedding belongs to chunk 0, the final norm,
 * lm_head and loss to the last chunk. */
#ifndef LAMINA_PIPELINE_H
#define LAMINA_PIPELINE_H
#include <stddef.h>

#define LM_PP_MAX_CHUNKS 1024

typedef struct {
    int pp, v;                         /* stages, chunks per stage */
    int n_chunks;                      /* pp * v */
    int first[LM_PP_MAX_CHUNKS];       /* chunk c holds layers first[c] .. first[c] + count[c] - 1 */
    int count[LM_PP_MAX_CHUNKS];
} lm_pp_split;

/* Cut n_layers into pp * v chunks of at least one layer each. With counts
 * (n_counts = pp * v entries, e.g. from the deck), those layer counts in
 * model order. Else, a layer costing 1, the embedding embed_cost more on
 * chunk 0 and the lm_head and loss head_cost more on the last chunk: the
 * stages' layer counts that minimise the largest stage cost (its chunks'
 * costs summed; ties: the earliest stages take fewer layers), each stage's
 * layers then spread as evenly as possible over its v chunks (earlier
 * chunks fewer). With v = 1 this minimises the largest chunk cost. Returns
 * 0, or 2 with err naming the rule (n_layers < pp * v, counts that do not
 * sum to n_layers or hold a chunk of no layer). */
int pp_split_layers(int n_layers, int pp, int v, const int *counts, int n_counts, double embed_cost, double head_cost,
             lm_pp_split *out, char *err, size_t errlen);

/* The cost of chunk c under the weights of pp_split_layers. */
double pp_chunk_cost(const lm_pp_split *s, int c, double embed_cost, double head_cost);

enum { LM_PP_FWD = 0, LM_PP_BWD = 1 };
typedef struct {
    int kind;   /* LM_PP_FWD or LM_PP_BWD */
    int mb;     /* micro-batch 0 .. m-1 */
    int chunk;  /* this stage's local chunk 0 .. v-1 (model chunk chunk * pp + stage) */
} lm_pp_op;

enum { LM_PP_1F1B = 0, LM_PP_INTERLEAVED = 1 };

/* Whether a schedule can run m micro-batches on pp stages with v chunks
 * each: 0, or 2 with err giving the rule (1f1b: v = 1; interleaved: v >= 2
 * and m a multiple of pp; both: m >= 1). */
int pp_schedule_check(int kind, int pp, int v, int m, char *err, size_t errlen);

/* The 2 * m * v operations of `stage`, in the order it runs them:
 *   1F1B: warm-up forwards of micro-batches 0 .. w-1, w = min(pp - stage - 1,
 *     m); then alternately the forward of micro-batch w + i and the backward
 *     of micro-batch i; then the cool-down backwards.
 *   interleaved: the same over m * v virtual micro-batches k, where k runs
 *     the forward of micro-batch (k / (pp v)) pp + k % pp on local chunk
 *     (k / pp) % v, and its backward on local chunk v - 1 - (k / pp) % v;
 *     w = min(2 (pp - stage - 1) + (v - 1) pp, m v).
 * ops must hold 2 * m * v entries; the schedule must pass pp_schedule_check. */
void pp_schedule(int kind, int pp, int v, int m, int stage, lm_pp_op *ops);

/* The most (micro-batch, chunk) pairs whose forward `stage` has run and
 * whose backward it has not, at any point of its schedule: the activation
 * sets it needs. */
int pp_max_inflight(int kind, int pp, int v, int m, int stage);

/* Replay the schedules of all stages with forward time tf and backward
 * time tb per chunk and zero communication latency: each operation starts
 * when its stage is free and its input exists (the forward of the previous
 * model chunk, or the backward of the next one). Fills idle[stage] with the
 * stage's idle time within the span of the whole step over its busy time
 * (the bubble of Megatron's analysis: (pp - 1) / m for 1F1B, (pp - 1) /
 * (v m) interleaved, with tf, tb the same on every chunk). Returns the
 * span, or -1 when the schedules deadlock. */
double pp_simulate(int kind, int pp, int v, int m, double tf, double tb, double *idle);

#endif
