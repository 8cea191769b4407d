/* valid.h — held-out evaluation during training (SPEC §2, §6; issue 18
 * item 6): the loss on data.valid overall and per data category, in nats
 * per target token and in bits per byte.
 *
 * What is evaluated: the first train.eval_batches global batches of the
 * held-out stream in file order (no shuffle; 0, or more than the files
 * hold: every sample once), each sample once; the last, partial batch
 * counts only the samples that exist. The held-out stream has its own
 * loader, so the training data order and every RNG are untouched.
 *
 * How: forward only, with the training session's model and layout: the
 * micro-batches through the model chunks (with pipeline parallelism, the
 * activations sent stage to stage in chunk order), then model_chunk_eval's
 * cross-entropy of every row on the last stage. Per sample its rows' losses
 * and target tokens are summed and added to its category's sums; the sums
 * of the last stage's first tensor-parallel rank of every data-parallel
 * rank are then summed over the world (float64).
 *   loss      = sum CE / target tokens                 (overall and per category)
 *   bits/byte = sum CE / ln 2 / sum of /samples/bytes  (per category likewise)
 * A sample whose every target the loss mask removed counts in neither
 * sum (its bytes neither); a partly masked sample counts all its bytes.
 * bpb is unknown (NaN, null in the metrics) where a sample of the sums has
 * no /samples/bytes (a file written without it; the log says so once) and
 * for a category without target tokens. */
#ifndef LAMINA_VALID_H
#define LAMINA_VALID_H
#include "session.h"

typedef struct lm_valid lm_valid;

typedef struct {
    double loss, bpb;                 /* overall; bpb NaN when unknown */
    int n_cat;
    const char *const *cat_names;     /* [n_cat] */
    const double *cat_loss, *cat_bpb; /* [n_cat]; loss NaN for a category without target tokens */
    long long tokens, samples;        /* target tokens and samples evaluated */
} lm_valid_result;

/* The held-out files `files` (as data.train: `path` or `path:weight`,
 * comma-separated; key names them in messages) for session s, whose deck
 * gives train.eval_batches and the batch geometry. NULL when files is "".
 * Collective; a bad file stops every rank (exit 2). */
lm_valid *valid_open(lm_session *s, const char *files, const char *key);

/* Evaluate the session's current weights (between optimizer steps).
 * Collective over the world; every rank gets the result. */
void valid_run(lm_valid *v, lm_valid_result *out);

/* One log line per evaluation: the step, the overall loss and bpb, and per
 * category. */
void valid_log(const lm_valid *v, const lm_valid_result *r, long step);

void valid_close(lm_valid *v);

#endif
