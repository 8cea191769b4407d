/* model.h — the LLaMA model (SPEC §3) as forward and backward passes over the
 * device interface: parameters in chunks, activations kept per layer (or only
 * the layer inputs when recomputing), and a fused lm_head + cross-entropy
 * that never holds the logits of the whole micro-batch. */
#ifndef LAMINA_MODEL_H
#define LAMINA_MODEL_H
#include "chunks.h"
#include "deck.h"
#include "device.h"
#include <stdint.h>

typedef struct {
    int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size;
    float norm_eps;
    double rope_theta;
    int tied;
} lm_shape;

typedef struct {
    lm_param *ln1, *q, *k, *v, *o, *ln2, *gate, *up, *down;
} lm_layer_params;

/* What backward needs of one layer. With recompute only x is kept per layer
 * and one scratch copy of the rest is refilled by re-running the layer. */
typedef struct {
    void *x;           /* layer input (residual stream) [R, D] */
    float *rstd1;      /* [R] */
    void *q, *k, *v;   /* after RoPE: [R, H*hd], [R, KV*hd] */
    void *att;         /* attention output before o_proj [R, D] */
    float *lse;        /* [B, H, T] */
    void *a;           /* residual after attention [R, D] */
    float *rstd2;      /* [R] */
    void *g, *u;       /* gate and up projections [R, F] */
} lm_layer_acts;

/* Where backward accumulates each parameter's gradient, and the signal that
 * it is complete for this micro-batch (the ZeRO manager starts reducing a
 * chunk when all its tensors are done). NULL hooks: straight into p->g. */
typedef struct {
    void *ctx;
    void *(*grad)(void *ctx, lm_param *p);
    void (*done)(void *ctx, lm_param *p);
} lm_grad_hooks;

typedef struct {
    lm_shape s;
    lm_device *dev;
    lm_params params;
    lm_grad_hooks *hooks;             /* NULL: gradients straight into p->g */
    lm_param *embed, *norm, *lm_head; /* lm_head == embed when tied */
    lm_layer_params *layer;
    int64_t n_matmul_params;          /* N of SPEC §6 */

    /* micro-batch geometry and activations (compute dtype unless float) */
    int B, T, R;
    int recompute;
    float *rope_cos, *rope_sin;       /* [T, hd/2] */
    lm_layer_acts *acts;              /* n_layers (views; x only when recompute) */
    lm_layer_acts scratch_acts;       /* recompute: one layer's worth */
    void *h_final;                    /* last residual [R, D] */
    float *rstd_final;                /* final norm rstd [R] */
    void *n, *dn, *dh;                /* [R, D] */
    void *f1, *f2, *f3;               /* [R, F] */
    void *dq, *dk, *dv, *datt;        /* [R, ..] */
    void *logits;                     /* [head_rows, V] */
    int head_rows;
    size_t act_bytes;                 /* activation + workspace bytes */
} lm_model;

void shape_from_config(lm_shape *s, const lm_config *c);

/* Build the parameter table (HF names, model order), chunk it (chunk size a
 * multiple of `granule` elements), allocate the weights and activations for
 * micro-batches of B sequences of T tokens. Gradients and optimizer state
 * are not allocated here (zero.h, or params_alloc_state). */
lm_model *model_create(lm_device *dev, const lm_shape *s, int B, int T, int recompute, size_t granule);
void model_destroy(lm_model *m);

/* Random init, layout-independent: element i of parameter NAME is
 * std * normal(seed, NAME, i) for matrices and 1 for norm weights. */
void model_init_random(lm_model *m, uint64_t seed, double std);

/* Forward and backward of one micro-batch. ids and targets are [B*T];
 * targets < 0 are padding. Gradients ACCUMULATE into the params' g (scaled
 * by `scale`, which is 1 / number of target tokens of the whole global
 * batch). Returns the sum of the cross-entropy over this micro-batch's
 * target tokens (unscaled). */
double model_forward_backward(lm_model *m, const int32_t *ids, const int32_t *targets, float scale);

/* Forward only; then model_logits_row fills out[V] with the logits of row r
 * (b*T + t). For generation and evaluation. */
void model_forward(lm_model *m, const int32_t *ids);
void model_logits_row(lm_model *m, int r, float *out);

#endif
