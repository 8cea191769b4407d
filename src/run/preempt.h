/* preempt.h — stopping a run early and cleanly (SPEC §1, exit code 3).
 *
 * A batch system warns a job before it ends it: Slurm with `sbatch
 * --signal=USR1@T` or on preemption (SIGTERM, then SIGKILL after KillWait),
 * PBS with `qsig`. lamina catches SIGUSR1 and SIGTERM on every rank, finishes
 * the step under way, writes a checkpoint collectively and exits 3, which the
 * job scripts turn into a requeue; the requeued job resumes with
 * checkpoint.restart = auto. train.max_minutes does the same from a
 * wall-clock budget, without any signal. */
#ifndef LAMINA_PREEMPT_H
#define LAMINA_PREEMPT_H
#include "comm.h"
#include <stddef.h>

/* Installs the SIGUSR1/SIGTERM handlers (they only record the signal);
 * idempotent. They are also installed before main by a constructor, so a
 * signal is never fatal from the first instant of lamina's own code. */
void preempt_install(void);
/* Back to the default actions (for commands that do not poll for a stop:
 * prep, plan, generate); a signal caught meanwhile is raised again. */
void preempt_uninstall(void);
/* Collective over `world`: 1 if any rank caught a signal so far; `why`
 * then names it and the lowest such rank. */
int preempt_any(const lm_group *world, char *why, size_t len);
/* The first signal caught so far on this rank, 0 if none. */
int preempt_caught(void);

/* A stop request came before the first step of this run: logs `why`,
 * finalises MPI and exits 3 on every rank (all must call it). */
_Noreturn void preempt_exit_before_step(long next_step, const char *why);

/* The wall-clock budget of one run. */
typedef struct {
    double t0;        /* lm_now() when the run started */
    double budget_s;  /* 0 = no budget */
    double step_s;    /* the longest step so far, checkpoint included */
    double save_s;    /* the longest checkpoint write so far */
} lm_budget;

void budget_init(lm_budget *b, double max_minutes);
/* Record one step that took step_s seconds (its checkpoint, if any, took
 * save_s of them; 0 if none). */
void budget_step(lm_budget *b, double step_s, double save_s);

/* Collective over `world`, called by every rank after each step: 1 if the
 * run must stop now, because a rank caught a signal or because one more step
 * and a checkpoint would not end within the budget on some rank; `why` then
 * says which ("SIGUSR1 on rank 3", "train.max_minutes = 30: ..."). */
int preempt_should_stop(const lm_group *world, const lm_budget *b, char *why, size_t len);

#endif
