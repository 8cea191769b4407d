/* pipe_run.h — running one optimizer step's micro-batches through this
 * pipeline stage per its schedule (pipeline.h): receive each chunk's input,
 * compute, send its output on, non-blocking, while the stage goes on with
 * its next operation. */
#ifndef LAMINA_PIPE_RUN_H
#define LAMINA_PIPE_RUN_H
#include "session.h"

typedef struct lm_pipe lm_pipe;

lm_pipe *pipe_create(lm_session *s);
void pipe_destroy(lm_pipe *p);

/* The forward and backward passes of all n_micro micro-batches of a step
 * (ids and targets: n_micro blocks of R = micro_batch x seq_len), gradients
 * into the ZeRO manager (zero_step_begin before, as without a pipeline).
 * Returns this stage's loss sum: the last stage's, 0 elsewhere. */
double pipe_step(lm_pipe *p, const int32_t *ids, const int32_t *targets, float scale);

/* The last step's span (seconds from the stages' common start to the end
 * of the last stage's last operation) and the seconds this stage computed. */
void pipe_times(const lm_pipe *p, double *span, double *busy);

#endif
