/* stages.h — multi-stage training (SPEC §9): what each [stage.N] of the
 * deck changes, and where each stage's data stream starts.
 *
 * A stage runs as a training run of its own over a window of global steps
 * [deck_stage_start + 1, stage_end]: the trainer opens a session from the
 * stage's view of the deck (stage_view), trains, writes a checkpoint at the
 * stage's last step, closes the session and opens the next stage's from
 * that file. A restart inside a stage is therefore the same code path as a
 * stage boundary.
 *
 * Data: each stage reads the stream of its own `train` files from the
 * stream's start, except that a stage whose files are the previous stage's
 * (the same list, e.g. inherited from data.train) continues that stream
 * where the previous stage stopped. Step s of a stage whose stream started
 * when consumed_samples was S0 reads stream positions consumed - S0 ...
 * (consumed = the samples of all steps before s). S0 is stored in every
 * checkpoint of a staged run (root attribute stage_data_start, with the
 * writing stage as `stage`), so that a restart continues exactly even when
 * train.global_batch changed. Without stages S0 = 0 and nothing changes. */
#ifndef LAMINA_STAGES_H
#define LAMINA_STAGES_H
#include "deck.h"

/* The deck as stage k (0-based) runs it: [train] lr, min_lr, warmup_steps,
 * lr_schedule, trainable and [data] train, valid are the stage's. Without
 * stages (c->n_stages = 0): a copy of c. */
void stage_view(const lm_config *c, int k, lm_config *out);

/* The last global step of stage k (c->steps without stages). */
long stage_end(const lm_config *c, int k);

/* Stage k (> 0) reads the same train files as stage k - 1 (continues its
 * stream). */
int stage_same_data(const lm_config *c, int k);

/* consumed_samples when stage k's data stream started, for a run that
 * starts stage k after global step `step` with `consumed` samples done,
 * from a checkpoint that stage ck_stage (1-based; 0: none or not a staged
 * run's) wrote with stream start ck_start (-1: absent). A fresh start (step
 * 0) gives 0. *guessed is set when the checkpoint does not say and the
 * start is inferred assuming train.global_batch did not change inside the
 * stage. */
long stage_data_start(const lm_config *c, int k, long step, long consumed, long ck_stage, long ck_start,
                      int *guessed);

/* The deck key that names stage k's `what` ("train" or "valid") in
 * messages: "stage.N.what" when the stage sets its own, else
 * "data.what". */
void stage_key(const lm_config *c, int k, const char *what, char *out, size_t n);

/* One log line: stage k starts or resumes after global step `from`
 * (consumed samples done, its stream started at data_start): its steps,
 * data and stream position, schedule, trainable set, optimizer moments,
 * validation data. */
void stage_log_start(const lm_config *c, int k, long from, long consumed, long data_start);

#endif
