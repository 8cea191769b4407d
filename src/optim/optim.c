/* optim.c — see optim.h. */
#include "optim.h"
#include <math.h>
#include <string.h>

double lr_at(const lm_config *c, long step) {
    if (c->warmup_steps > 0 && step <= c->warmup_steps) return c->lr * (double)step / (double)c->warmup_steps;
    if (strcmp(c->lr_schedule, "constant") == 0) return c->lr;
    long span = c->steps - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    if (strcmp(c->lr_schedule, "linear") == 0) return c->lr - (c->lr - c->min_lr) * p;
    return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1.0 + cos(M_PI * p));
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

void adamw_step(lm_device *d, lm_params *ps, const lm_config *c, double lr, double gscale, long step) {
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        lm_adamw_seg s = {p->w, p->w, p->g, p->m, p->v, p->numel, p->decay ? (float)c->weight_decay : 0.0f};
        d->adamw(d, &s, 1, (float)gscale, (float)lr, (float)c->beta1, (float)c->beta2, (float)c->eps, step);
    }
}
