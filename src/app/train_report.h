/* train_report.h — the training run's reports in the log: memory per rank
 * against the ZeRO formulas, the tensor- and pipeline-parallel plans, the
 * pipeline bubble, the tensor-parallel traffic against its formula, and
 * where the run's time went per region (with lamina's SDE counters). */
#ifndef LAMINA_TRAIN_REPORT_H
#define LAMINA_TRAIN_REPORT_H
#include "pipe_run.h"
#include "session.h"

/* Idle and busy time of this stage, summed over the steps after the first. */
typedef struct {
    double idle, busy;
    long steps;
} bubble;

/* Bytes per rank of weights, gradients and optimizer state, on the device
 * and on the host, next to the ZeRO formula (aborts when they differ). */
void report_memory(lm_session *s);
/* The tensor-parallel split of this rank. */
void tp_report(const lm_model *m, const lm_group *g);
/* The pipeline's plan on this run. */
void pipe_report(lm_session *S);
/* The last step's idle and busy time of this stage into b. */
void bubble_add(bubble *b, const lm_pipe *p);
/* The measured bubble per stage next to Megatron's (p-1)/(v m). Collective. */
void bubble_report(lm_session *S, const bubble *b);
/* What the tensor-parallel group moved per step next to tp_comm_formula. */
void tp_comm_report(const lm_model *m, const lm_group *g, const lm_comm_stats *tot, long steps, int n_micro, int zero,
                    int dp);
/* Exclusive seconds per region (the largest over ranks) and the SDE
 * counters at the end. Collective. */
void region_report(const lm_group *world);

#endif
