/* test_optim.c — learning-rate schedule, clipping coefficient, global
 * gradient norm and AdamW (src/optim/optim.h) on the CPU device.
 *
 * AdamW is checked two ways: against values printed by torch.optim.AdamW in
 * float64 for a small hand-written case (the script is quoted below), and
 * against a double-precision re-implementation of torch's update over larger
 * random tensors (one of them big enough for the OpenMP path of the device). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "chunks.h"
#include "common.h"
#include "deck.h"
#include "device.h"
#include "optim.h"
#include "rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ lr_at */

static void sched(lm_config *c, const char *kind, long steps, long warmup, double lr, double min_lr) {
    deck_defaults(c);
    snprintf(c->lr_schedule, sizeof c->lr_schedule, "%s", kind);
    c->steps = steps;
    c->warmup_steps = warmup;
    c->lr = lr;
    c->min_lr = min_lr;
}

/* lr at `step` of the schedule the deck c describes (lr_sched_of, then lr_at):
 * the tests below go through the deck, as a training run does. */
static double lr_of(const lm_config *c, long step) {
    lm_lr_sched s = lr_sched_of(c);
    return lr_at(&s, step);
}

#define ASSERT_LR(c, step, want)                                                                                       \
    do {                                                                                                               \
        double got_ = lr_of((c), (step)), want_ = (want);                                                              \
        if (!(fabs(got_ - want_) <= 1e-12 * fabs(want_) + 1e-18)) {                                                    \
            fprintf(stderr, "# lr_at(%s, steps %ld, warmup %ld, step %ld) = %.17g, want %.17g\n", (c)->lr_schedule,  \
                    (c)->steps, (c)->warmup_steps, (long)(step), got_, want_);                                         \
            fail();                                                                                                    \
        }                                                                                                              \
    } while (0)

static void test_lr_constant(void **state) {
    (void)state;
    lm_config c;
    sched(&c, "constant", 100, 0, 3e-4, 1e-5); /* min_lr has no effect */
    for (long s = 1; s <= 100; s++) ASSERT_LR(&c, s, 3e-4);
    ASSERT_LR(&c, 101, 3e-4);
    sched(&c, "constant", 100, 10, 3e-4, 0);
    ASSERT_LR(&c, 1, 3e-5);
    ASSERT_LR(&c, 5, 1.5e-4);
    ASSERT_LR(&c, 10, 3e-4);
    ASSERT_LR(&c, 11, 3e-4);
    ASSERT_LR(&c, 100, 3e-4);
}

/* Stages (deck [stage.N]): each stage's schedule over its own steps from
 * its start, and Adam's step count from the latest resetting stage. */
static void test_lr_stages(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    const char *deck = "[model]\npreset = tiny\n[train]\nseq_len = 8\nmicro_batch = 1\nglobal_batch = 1\n"
                       "lr = 1e-3\nmin_lr = 1e-4\nwarmup_steps = 2\n[data]\ntrain = d.h5\n"
                       "[stage.1]\nsteps = 3\nlr = 1e-2\nlr_schedule = constant\nwarmup_steps = 0\n"
                       "[stage.2]\nsteps = 4\nreset_optimizer = true\n"
                       "[stage.3]\nsteps = 5\nlr_schedule = linear\nwarmup_steps = 1\n";
    assert_int_equal(deck_load_string(&c, deck, "t.in", 0, NULL, err, sizeof err), 0);
    lm_lr_sched s1 = lr_sched_stage(&c, 0), s2 = lr_sched_stage(&c, 1), s3 = lr_sched_stage(&c, 2);
    assert_int_equal(s1.start, 0);
    assert_int_equal(s2.start, 3);
    assert_int_equal(s3.start, 7);
    for (long t = 1; t <= 3; t++) assert_true(lr_at(&s1, t) == 1e-2);
    assert_true(fabs(lr_at(&s2, 4) - 5e-4) < 1e-18);      /* warm-up step 1 of 2 */
    assert_true(fabs(lr_at(&s2, 5) - 1e-3) < 1e-18);
    assert_true(fabs(lr_at(&s2, 7) - 1e-4) < 1e-18);      /* cosine's end at the stage's end */
    assert_true(fabs(lr_at(&s3, 8) - 1e-3) < 1e-18);      /* warm-up 1 */
    assert_true(fabs(lr_at(&s3, 10) - (1e-3 - 9e-4 * 0.5)) < 1e-15);
    assert_true(fabs(lr_at(&s3, 12) - 1e-4) < 1e-18);
    /* Adam's t: from 1 at the start, again from 1 at stage 2 (a reset),
     * counting on through stage 3 (no reset) */
    long want[13] = {0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (long t = 1; t <= 12; t++) assert_int_equal(adamw_t(&c, t), want[t]);
    /* without stages: the deck's schedule, t = step */
    sched(&c, "cosine", 10, 2, 1e-3, 0);
    lm_lr_sched s = lr_sched_stage(&c, 0);
    assert_int_equal(s.start, 0);
    assert_true(lr_at(&s, 1) == lr_of(&c, 1) && lr_at(&s, 7) == lr_of(&c, 7));
    assert_int_equal(adamw_t(&c, 7), 7);
}

static void test_lr_linear(void **state) {
    (void)state;
    lm_config c;
    const double lr = 1e-3, mn = 1e-4;
    sched(&c, "linear", 100, 0, lr, mn);
    ASSERT_LR(&c, 1, lr - (lr - mn) * 0.01);
    ASSERT_LR(&c, 50, 5.5e-4);
    ASSERT_LR(&c, 99, lr - (lr - mn) * 0.99);
    ASSERT_LR(&c, 100, mn);
    ASSERT_LR(&c, 150, mn); /* past the end: held at min_lr */
    sched(&c, "linear", 100, 20, lr, mn);
    ASSERT_LR(&c, 1, lr / 20);
    ASSERT_LR(&c, 20, lr);
    ASSERT_LR(&c, 21, lr - (lr - mn) / 80);
    ASSERT_LR(&c, 60, (lr + mn) / 2);
    ASSERT_LR(&c, 100, mn);
    sched(&c, "linear", 10, 0, lr, 0);
    ASSERT_LR(&c, 10, 0.0);
}

static void test_lr_cosine(void **state) {
    (void)state;
    lm_config c;
    const double lr = 6e-4, mn = 6e-5;
    sched(&c, "cosine", 100, 0, lr, 0);
    ASSERT_LR(&c, 1, 0.5 * lr * (1 + cos(M_PI / 100)));
    ASSERT_LR(&c, 50, 0.5 * lr);
    ASSERT_LR(&c, 100, 0.0);
    sched(&c, "cosine", 100, 10, lr, mn);
    ASSERT_LR(&c, 1, lr / 10);
    ASSERT_LR(&c, 5, lr / 2);
    ASSERT_LR(&c, 10, lr);
    ASSERT_LR(&c, 11, mn + 0.5 * (lr - mn) * (1 + cos(M_PI / 90)));
    ASSERT_LR(&c, 55, (lr + mn) / 2);
    ASSERT_LR(&c, 100, mn);
    ASSERT_LR(&c, 1000, mn);
    /* the shape: rising through warmup, then non-increasing, between min and max */
    double prev = 0;
    for (long s = 1; s <= 100; s++) {
        double v = lr_of(&c, s);
        assert_true(v >= mn - 1e-18 && v <= lr + 1e-18);
        if (s <= 10) assert_true(v > prev);
        else assert_true(v <= prev);
        prev = v;
    }
    /* the torch reference case of tests/ref: warmup 2, cosine over 4 steps */
    sched(&c, "cosine", 4, 2, 1e-2, 1e-3);
    ASSERT_LR(&c, 1, 5e-3);
    ASSERT_LR(&c, 2, 1e-2);
    ASSERT_LR(&c, 3, 5.5e-3);
    ASSERT_LR(&c, 4, 1e-3);
    /* the deck default schedule is cosine */
    lm_config d;
    deck_defaults(&d);
    d.steps = 100;
    d.lr = lr;
    ASSERT_LR(&d, 50, 0.5 * lr);
}

/* warmup_steps >= steps: the whole run is warmup (lr is never reached when
 * warmup > steps); equal: the last step is at lr. */
static void test_lr_long_warmup(void **state) {
    (void)state;
    lm_config c;
    const char *kinds[] = {"constant", "linear", "cosine"};
    for (int k = 0; k < 3; k++) {
        sched(&c, kinds[k], 5, 10, 1e-3, 1e-4);
        for (long s = 1; s <= 5; s++) ASSERT_LR(&c, s, 1e-3 * (double)s / 10);
        sched(&c, kinds[k], 5, 5, 1e-3, 1e-4);
        for (long s = 1; s <= 5; s++) ASSERT_LR(&c, s, 1e-3 * (double)s / 5);
        /* beyond the end of a run that was all warmup */
        double after = lr_of(&c, 6);
        assert_true(isfinite(after));
        if (k == 0) ASSERT_LR(&c, 6, 1e-3);
        else ASSERT_LR(&c, 6, 1e-4);
        /* one step, no warmup */
        sched(&c, kinds[k], 1, 0, 1e-3, 1e-4);
        ASSERT_LR(&c, 1, k == 0 ? 1e-3 : 1e-4);
    }
}

/* ------------------------------------------------------------- clip_coef */

static void test_clip_coef(void **state) {
    (void)state;
    assert_true(clip_coef(5.0, 0.0) == 1.0);  /* off */
    assert_true(clip_coef(1e30, 0.0) == 1.0); /* off, whatever the norm */
    assert_true(clip_coef(5.0, -1.0) == 1.0);
    assert_true(clip_coef(0.0, 1.0) == 1.0);
    assert_true(clip_coef(0.5, 1.0) == 1.0);
    assert_true(clip_coef(0.999, 1.0) == 1.0);
    assert_true(clip_coef(10.0, 1.0) == 1.0 / (10.0 + 1e-6));
    assert_true(clip_coef(3.5, 0.25) == 0.25 / (3.5 + 1e-6));
    /* torch clips at norm == clip too: the 1e-6 makes the coefficient < 1 */
    double at = clip_coef(1.0, 1.0);
    assert_true(at < 1.0 && at == 1.0 / (1.0 + 1e-6));
    /* just below the threshold (norm + 1e-6 < clip): not clipped */
    assert_true(clip_coef(1.0 - 2e-6, 1.0) == 1.0);
}

/* --------------------------------------------------------- params helpers */

static void fill_normal(float *x, size_t n, const char *name, double scale) {
    uint64_t k = rng_stream(31, name);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * rng_normal(k, i));
}

static void small_model(lm_params *ps) {
    memset(ps, 0, sizeof *ps);
    params_add(ps, "model.embed_tokens.weight", 2, 64, 48);
    params_add(ps, "model.layers.0.input_layernorm.weight", 1, 48, 0);
    params_add(ps, "model.layers.0.mlp.up_proj.weight", 2, 256, 160); /* 40960 > the device's serial cut */
    params_add(ps, "model.norm.weight", 1, 33, 0);
    params_add(ps, "lm_head.weight", 2, 7, 13);
    chunks_build(ps, 16);
    params_alloc_state(ps);
}

/* ------------------------------------------------------ grad_global_norm */

static void test_grad_norm(void **state) {
    (void)state;
    lm_device *d = device_cpu_create(0);
    lm_params ps;
    small_model(&ps);
    assert_true(grad_global_norm(d, &ps) == 0.0);
    double ss = 0;
    for (int i = 0; i < ps.n; i++) {
        lm_param *p = &ps.p[i];
        fill_normal(p->g, p->numel, p->name, 0.5 + i);
        for (size_t k = 0; k < p->numel; k++) ss += (double)((float *)p->g)[k] * ((float *)p->g)[k];
    }
    double want = sqrt(ss), got = grad_global_norm(d, &ps);
    fprintf(stderr, "# grad norm %.15g vs %.15g\n", got, want);
    assert_true(fabs(got - want) <= 1e-12 * want);
    /* one element changes the norm as it must */
    lm_param *nw = params_find(&ps, "model.norm.weight");
    ((float *)nw->g)[32] += 1000.0f;
    ss = 0;
    for (int i = 0; i < ps.n; i++)
        for (size_t k = 0; k < ps.p[i].numel; k++) ss += (double)((float *)ps.p[i].g)[k] * ((float *)ps.p[i].g)[k];
    assert_true(sqrt(ss) > want + 500);
    assert_true(fabs(grad_global_norm(d, &ps) - sqrt(ss)) <= 1e-12 * sqrt(ss));
    /* values that overflow a float sum of squares stay exact in double */
    memset(ps.g, 0, ps.arena * sizeof(float));
    lm_param *e = params_find(&ps, "model.embed_tokens.weight");
    for (size_t k = 0; k < e->numel; k++) ((float *)e->g)[k] = 1e20f;
    double big = sqrt((double)e->numel) * (double)1e20f;
    assert_true(fabs(grad_global_norm(d, &ps) - big) <= 1e-12 * big);
    params_free(&ps);
    device_destroy(d);
}

/* ------------------------------------------------------------------ AdamW */

/* torch.optim.AdamW, float64:
 *   W = [[0.5,-0.25,1.5],[-2,0.125,0.75]] (weight_decay 0.1),
 *   n = [1,-0.5,0.001,3] (weight_decay 0), lr per step 1e-2, 2e-2, 5e-3,
 *   betas (0.9, 0.95), eps 1e-8; grads below times gscale (1, 0.375, 1);
 *   after each step param_groups' lr is set, .grad assigned, opt.step(). */
static const double gW[3][6] = {{0.1, -0.2, 0.3, 1e-6, -4.0, 0.0},
                                {-0.05, 0.2, 0.25, 2e-6, 3.0, 0.5},
                                {0.3, 0.1, -0.3, -1e-6, -2.0, 0.25}};
static const double gN[3][4] = {{0.5, -1e-7, 2.0, 0.0}, {0.25, 3e-7, -1.0, 0.125}, {-0.5, -2e-7, 0.5, 0.0625}};
static const double torch_W[6] = {0.47413057961940069, -0.23184061977000331, 1.4671749482915308,
                                  -2.0233309112395661, 0.1464714272780635,   0.72847208500225757};
static const double torch_n[4] = {0.97394223343946817, -0.49081851847715463, -0.022331251256224094,
                                  2.9810871151264222};
static const double torch_mW[6] = {0.036412499999999993, 0.0005499999999999983, 0.0027375000000000034,
                                   4.8499999999999984e-08, -0.4227499999999999, 0.041874999999999996};
static const double torch_vW[6] = {0.0049679492187500044, 0.002572187500000002, 0.0089787304687500066,
                                   1.2184375000000008e-13, 0.98211718750000088, 0.0047949218750000045};

static void test_adamw_torch_golden(void **state) {
    (void)state;
    lm_device *d = device_cpu_create(0);
    lm_params ps;
    memset(&ps, 0, sizeof ps);
    params_add(&ps, "W", 2, 2, 3);
    params_add(&ps, "n", 1, 4, 0);
    chunks_build(&ps, 16);
    params_alloc_state(&ps);
    lm_param *W = params_find(&ps, "W"), *n = params_find(&ps, "n");
    const float w0[6] = {0.5f, -0.25f, 1.5f, -2.0f, 0.125f, 0.75f}, n0[4] = {1.0f, -0.5f, 0.001f, 3.0f};
    memcpy(W->w, w0, sizeof w0);
    memcpy(n->w, n0, sizeof n0);
    lm_config c;
    deck_defaults(&c);
    c.weight_decay = 0.1;
    const lm_adamw_hp hp = adamw_hp_of(&c);
    const double lrs[3] = {1e-2, 2e-2, 5e-3}, gs[3] = {1.0, 0.375, 1.0};
    for (int s = 0; s < 3; s++) {
        for (int k = 0; k < 6; k++) ((float *)W->g)[k] = (float)gW[s][k];
        for (int k = 0; k < 4; k++) ((float *)n->g)[k] = (float)gN[s][k];
        adamw_step(d, &ps, &hp, lrs[s], gs[s], s + 1);
    }
    for (int k = 0; k < 6; k++) {
        if (fabs(((float *)W->w)[k] - torch_W[k]) > 2e-6) fprintf(stderr, "# W[%d] %.9g torch %.9g\n", k, ((float *)W->w)[k], torch_W[k]);
        assert_true(fabs(((float *)W->w)[k] - torch_W[k]) <= 2e-6);
        assert_true(fabs(W->m[k] - torch_mW[k]) <= 1e-6 * fabs(torch_mW[k]) + 1e-12);
        assert_true(fabs(W->v[k] - torch_vW[k]) <= 1e-6 * fabs(torch_vW[k]) + 1e-15);
    }
    for (int k = 0; k < 4; k++) {
        if (fabs(((float *)n->w)[k] - torch_n[k]) > 2e-6) fprintf(stderr, "# n[%d] %.9g torch %.9g\n", k, ((float *)n->w)[k], torch_n[k]);
        assert_true(fabs(((float *)n->w)[k] - torch_n[k]) <= 2e-6);
    }
    params_free(&ps);
    device_destroy(d);
}

/* Double-precision torch.optim.AdamW on one tensor. */
static void adamw_ref(double *p, double *m, double *v, const float *g, size_t n, double gscale, double lr, double b1,
                      double b2, double eps, double wd, long t) {
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gscale;
        p[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

static void test_adamw_reference(void **state) {
    (void)state;
    lm_device *d = device_cpu_create(0);
    lm_params ps;
    small_model(&ps);
    lm_config c;
    sched(&c, "cosine", 3, 1, 1e-2, 1e-3);
    c.weight_decay = 0.1;
    c.beta1 = 0.8; /* not the defaults, to see that the deck's values are used */
    c.beta2 = 0.99;
    c.eps = 1e-7;
    const lm_adamw_hp hp = adamw_hp_of(&c);
    size_t A = ps.arena;
    double *P = calloc(A, sizeof(double)), *M = calloc(A, sizeof(double)), *V = calloc(A, sizeof(double));
    for (int i = 0; i < ps.n; i++) {
        lm_param *p = &ps.p[i];
        fill_normal(p->w, p->numel, p->name, ps.p[i].ndim == 2 ? 0.5 : 1.0);
        if (p->ndim == 1)
            for (size_t k = 0; k < p->numel; k++) ((float *)p->w)[k] += 1.0f;
        for (size_t k = 0; k < p->numel; k++) P[p->offset + k] = ((float *)p->w)[k];
    }
    const double gscale[3] = {1.0, 0.4, 1.0};
    char name[128];
    for (long t = 1; t <= 3; t++) {
        /* gradients over a wide range of magnitudes: eps matters for the tiny ones */
        for (int i = 0; i < ps.n; i++) {
            lm_param *p = &ps.p[i];
            snprintf(name, sizeof name, "%s.grad.%ld", p->name, t);
            fill_normal(p->g, p->numel, name, 1.0);
            for (size_t k = 0; k < p->numel; k++) ((float *)p->g)[k] *= (float)pow(10.0, -(double)(k % 8));
        }
        double lr = lr_of(&c, t);
        adamw_step(d, &ps, &hp, lr, gscale[t - 1], t);
        for (int i = 0; i < ps.n; i++) {
            lm_param *p = &ps.p[i];
            size_t o = p->offset;
            adamw_ref(P + o, M + o, V + o, p->g, p->numel, gscale[t - 1], lr, c.beta1, c.beta2, c.eps,
                      p->ndim == 2 ? c.weight_decay : 0.0, t);
        }
    }
    double worst = 0;
    for (int i = 0; i < ps.n; i++) {
        lm_param *p = &ps.p[i];
        for (size_t k = 0; k < p->numel; k++) {
            size_t o = p->offset + k;
            double e = fabs(((float *)p->w)[k] - P[o]) / (1e-6 + 1e-6 * fabs(P[o]));
            if (e > worst) worst = e;
            if (e > 1.0)
                fprintf(stderr, "# %s[%zu]: %.9g vs reference %.9g\n", p->name, k, (double)((float *)p->w)[k], P[o]);
            assert_true(e <= 1.0);
            /* moments: relative, plus a floor at the element's gradient
             * scale for m, which cancels when gradients change sign */
            double sc = pow(10.0, -(double)(k % 8));
            assert_true(fabs(p->m[k] - M[o]) <= 1e-5 * fabs(M[o]) + 1e-6 * sc);
            assert_true(fabs(p->v[k] - V[o]) <= 1e-5 * fabs(V[o]) + 1e-6 * sc * sc);
        }
    }
    fprintf(stderr, "# adamw: worst |p - ref| / (1e-6 (1 + |ref|)) = %.3f\n", worst);
    /* padding between tensors was never touched */
    for (size_t o = 0; o < A; o++) {
        int inside = 0;
        for (int i = 0; i < ps.n && !inside; i++) inside = o >= ps.p[i].offset && o < ps.p[i].offset + ps.p[i].numel;
        if (!inside) assert_true(((float *)ps.w)[o] == 0.0f && ps.m[o] == 0.0f && ps.v[o] == 0.0f);
    }
    free(P);
    free(M);
    free(V);
    params_free(&ps);
    device_destroy(d);
}

/* Decay only on 2-D tensors: with zero gradients the Adam term is 0 and a
 * step is exactly p *= 1 - lr*wd on matrices, no change on vectors. */
static void test_adamw_decay_rule(void **state) {
    (void)state;
    lm_device *d = device_cpu_create(0);
    lm_params ps;
    small_model(&ps);
    lm_config c;
    deck_defaults(&c);
    c.weight_decay = 0.5;
    const lm_adamw_hp hp = adamw_hp_of(&c);
    for (int i = 0; i < ps.n; i++) fill_normal(ps.p[i].w, ps.p[i].numel, ps.p[i].name, 1.0);
    float *before = malloc(ps.arena * sizeof(float));
    memcpy(before, ps.w, ps.arena * sizeof(float));
    adamw_step(d, &ps, &hp, 0.1, 1.0, 1);
    for (int i = 0; i < ps.n; i++) {
        lm_param *p = &ps.p[i];
        float f = p->decay ? (float)(1.0 - 0.1 * 0.5) : 1.0f;
        for (size_t k = 0; k < p->numel; k++) assert_true(((float *)p->w)[k] == before[p->offset + k] * f);
    }
    free(before);
    params_free(&ps);
    device_destroy(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr_constant),        cmocka_unit_test(test_lr_linear),
        cmocka_unit_test(test_lr_stages),
        cmocka_unit_test(test_lr_cosine),          cmocka_unit_test(test_lr_long_warmup),
        cmocka_unit_test(test_clip_coef),          cmocka_unit_test(test_grad_norm),
        cmocka_unit_test(test_adamw_torch_golden), cmocka_unit_test(test_adamw_reference),
        cmocka_unit_test(test_adamw_decay_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
