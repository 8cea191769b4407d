/* optim.h — learning-rate schedule, global-norm clipping and AdamW over the
 * chunked parameters (SPEC §3). */
#ifndef LAMINA_OPTIM_H
#define LAMINA_OPTIM_H
#include "chunks.h"
#include "deck.h"
#include "device.h"

/* AdamW's hyper-parameters other than the learning rate (which changes
 * every step: lr_at). Built once from the deck (adamw_hp_of), so that the
 * optimizer depends on these four numbers, not on the whole deck. */
typedef struct {
    double beta1, beta2, eps, weight_decay;
} lm_adamw_hp;

/* The learning-rate schedule's shape, built once from the deck (lr_sched_of). */
typedef enum { LM_LR_CONSTANT, LM_LR_LINEAR, LM_LR_COSINE } lm_lr_shape;
typedef struct {
    double lr, min_lr;       /* peak and floor */
    long warmup_steps, steps; /* linear warm-up; optimizer steps of the schedule */
    lm_lr_shape shape;       /* after the warm-up */
    long start;              /* global steps before the schedule's first (a stage's start) */
} lm_lr_sched;

/* The deck's train.beta1/beta2/eps/weight_decay. */
lm_adamw_hp adamw_hp_of(const lm_config *c);

/* The deck's train.lr/min_lr/warmup_steps/steps/lr_schedule (a name other
 * than constant or linear is cosine, the default). */
lm_lr_sched lr_sched_of(const lm_config *c);

/* Stage k's schedule (SPEC §9: [stage.N] lr, min_lr, warmup_steps,
 * lr_schedule over its steps, starting after deck_stage_start); without
 * stages lr_sched_of(c). */
lm_lr_sched lr_sched_stage(const lm_config *c, int k);

/* lr at global optimizer step `step` (1-based) for schedule s, with
 * i = step - s->start the step within the schedule:
 * warmup (i <= warmup_steps): lr * i / warmup_steps; then over the
 * remaining steps - warmup_steps with progress p = (i-warmup)/(steps-warmup):
 * constant lr; linear lr - (lr-min_lr)*p; cosine min_lr + (lr-min_lr)(1+cos(pi p))/2. */
double lr_at(const lm_lr_sched *s, long step);

/* AdamW's step count t (bias correction 1 - beta^t) at global step `step`:
 * step less the start of the latest stage at or before it that resets the
 * optimizer (reset_optimizer = true; stage 1 counts as a reset at step 0),
 * so that fresh moments get a fresh bias correction. */
long adamw_t(const lm_config *c, long step);

/* Global L2 norm of all gradients (double accumulation). */
double grad_global_norm(lm_device *d, const lm_params *ps);

/* torch.nn.utils.clip_grad_norm_'s coefficient: min(1, clip/(norm+1e-6));
 * 1 when clip = 0 (off). */
double clip_coef(double norm, double clip);

/* One AdamW update of every parameter of a float32 host layout
 * (chunks_build + params_alloc_state; the weights are the master copy);
 * gradients scaled by gscale first. `step` = updates done including this
 * one. The serial reference the ZeRO manager is tested against. */
void adamw_step(lm_device *d, lm_params *ps, const lm_adamw_hp *hp, double lr, double gscale, long step);

#endif
