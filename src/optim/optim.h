/* optim.h — learning-rate schedule, global-norm clipping and AdamW over the
 * chunked parameters (SPEC §3). */
#ifndef LAMINA_OPTIM_H
#define LAMINA_OPTIM_H
#include "chunks.h"
#include "deck.h"
#include "device.h"

/* lr at optimizer step `step` (1-based) for the deck's schedule:
 * warmup (step <= warmup_steps): lr * step / warmup_steps; then over the
 * remaining steps - warmup_steps with progress p = (step-warmup)/(steps-warmup):
 * constant lr; linear lr - (lr-min_lr)*p; cosine min_lr + (lr-min_lr)(1+cos(pi p))/2. */
double lr_at(const lm_config *c, long step);

/* Global L2 norm of all gradients (double accumulation). */
double grad_global_norm(lm_device *d, const lm_params *ps);

/* torch.nn.utils.clip_grad_norm_'s coefficient: min(1, clip/(norm+1e-6));
 * 1 when clip = 0 (off). */
double clip_coef(double norm, double clip);

/* One AdamW update of every parameter of a float32 host layout
 * (chunks_build + params_alloc_state; the weights are the master copy);
 * gradients scaled by gscale first. `step` = updates done including this
 * one. The serial reference the ZeRO manager is tested against. */
void adamw_step(lm_device *d, lm_params *ps, const lm_config *c, double lr, double gscale, long step);

#endif
