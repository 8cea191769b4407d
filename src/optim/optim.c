/* optim.c — see optim.h. */
#include "optim.h"
#include <math.h>
#include <string.h>

lm_adamw_hp adamw_hp_of(const lm_config *c) {
    return (lm_adamw_hp){.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .weight_decay = c->weight_decay};
}

lm_lr_sched lr_sched_of(const lm_config *c) {
    lm_lr_shape shape = strcmp(c->lr_schedule, "constant") == 0 ? LM_LR_CONSTANT
                        : strcmp(c->lr_schedule, "linear") == 0 ? LM_LR_LINEAR
                                                                 : LM_LR_COSINE;
    return (lm_lr_sched){
        .lr = c->lr, .min_lr = c->min_lr, .warmup_steps = c->warmup_steps, .steps = c->steps, .shape = shape};
}

lm_lr_sched lr_sched_stage(const lm_config *c, int k) {
    if (c->n_stages <= 0) return lr_sched_of(c);
    const lm_stage *g = &c->stage[k];
    lm_lr_shape shape = strcmp(g->lr_schedule, "constant") == 0 ? LM_LR_CONSTANT
                        : strcmp(g->lr_schedule, "linear") == 0 ? LM_LR_LINEAR
                                                                 : LM_LR_COSINE;
    return (lm_lr_sched){.lr = g->lr, .min_lr = g->min_lr, .warmup_steps = g->warmup_steps, .steps = g->steps,
                         .shape = shape, .start = deck_stage_start(c, k)};
}

long adamw_t(const lm_config *c, long step) {
    long from = 0;
    for (int k = deck_stage_of(c, step); k > 0; k--)
        if (c->stage[k].reset_optimizer) {
            from = deck_stage_start(c, k);
            break;
        }
    return step - from;
}

/* Warm-up, then the shape over the remaining steps (formula: optim.h). */
double lr_at(const lm_lr_sched *s, long step) {
    step -= s->start;
    if (s->warmup_steps > 0 && step <= s->warmup_steps) return s->lr * (double)step / (double)s->warmup_steps;
    if (s->shape == LM_LR_CONSTANT) return s->lr;
    long span = s->steps - s->warmup_steps;
    double p = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    if (s->shape == LM_LR_LINEAR) return s->lr - (s->lr - s->min_lr) * p;
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * p));
}

double grad_global_norm(lm_device *d, const lm_params *ps) {
    /* Padding between tensors is zero, so one pass over the arena is exact. */
    return sqrt(d->sumsq(d, ps->g, ps->arena));
}

double clip_coef(double norm, double clip) {
    if (clip <= 0) return 1.0;
    double c = clip / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

/* One device AdamW call per tensor; decay only where the tensor takes it. */
void adamw_step(lm_device *d, lm_params *ps, const lm_adamw_hp *hp, double lr, double gscale, long step) {
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        lm_adamw_seg s = {p->w, p->w, p->g, p->m, p->v, p->numel, p->decay ? (float)hp->weight_decay : 0.0f};
        d->adamw(d, &s, 1, (float)gscale, (float)lr, (float)hp->beta1, (float)hp->beta2, (float)hp->eps, step);
    }
}
