/* model.h — the LLaMA model (SPEC §3) as forward and backward passes over the
 * device interface: parameters in chunks, activations kept per layer (or only
 * the layer inputs when recomputing), and a fused lm_head + cross-entropy
 * that never holds the logits of the whole micro-batch. */
#ifndef LAMINA_MODEL_H
#define LAMINA_MODEL_H
#include "chunks.h"
#include "comm.h"
#include "deck.h"
#include "device.h"
#include "pipeline.h"
#include <stdint.h>

typedef struct {
    int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size;
    float norm_eps;
    double rope_theta;
    int tied;
    int embeddings_only;  /* train.trainable = embeddings: every tensor but the
                           * embedding and lm_head is frozen (lm_param.frozen) */
} lm_shape;

typedef struct {
    lm_param *ln1, *q, *k, *v, *o, *ln2, *gate, *up, *down;
} lm_layer_params;

/* Tensor parallelism (Megatron-LM): this rank's place in its tensor-parallel
 * group. size 1: the plain model. */
typedef struct {
    int size, rank;
    int sp;               /* sequence parallelism: norms and residuals sharded by rows */
    lm_group *g;          /* the tensor-parallel group (NULL when size 1) */
    lm_group *kv;         /* ranks holding the same replicated kv head (n_kv_heads < size) */
} lm_tp;

/* Local sizes of a tensor-parallel rank: query heads, kv heads, ffn columns
 * and vocabulary rows (the vocabulary padded to a multiple of size). */
typedef struct {
    int H, KV, F, V;      /* per rank */
    int Vp;               /* padded vocabulary */
    int kv_replicas;      /* ranks sharing one kv head (1 when n_kv_heads >= size) */
} lm_tp_dims;

/* Pipeline parallelism: this stage's share of the model. size 1: all of it. */
typedef struct {
    int size, rank, v;        /* stages, this stage, model chunks per stage */
    const lm_pp_split *split; /* layers of each model chunk (NULL when size 1) */
    int n_slots;              /* activation sets: (micro-batch, chunk) pairs in flight at most */
    lm_group *emb;            /* the first and last stage (tied embeddings), else NULL */
} lm_pp;

/* The split of shape s over tp ranks: 0, or 2 with err naming the key when
 * it cannot be split (n_heads, ffn_dim, n_kv_heads). */
int tp_dims(const lm_shape *s, int tp, lm_tp_dims *out, char *err, size_t errlen);

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

/* Where the weights are while an op reads them (ZeRO-3 and parameter
 * offload keep a chunk's weights elsewhere between uses): fetch makes p->w
 * of each of the n tensors valid (gathered, uploaded) until the matching
 * release; calls nest per tensor. NULL hooks: every p->w is always valid.
 * The model fetches a layer's nine tensors around the layer's forward and
 * again around its backward (which covers recompute), the embedding around
 * its lookup, the final norm and lm_head around the head; the order of
 * these calls is the same in every step, which the manager traces for
 * prefetching. */
typedef struct {
    void *ctx;
    void (*fetch)(void *ctx, lm_param *const *ps, int n);
    void (*release)(void *ctx, lm_param *const *ps, int n);
} lm_param_hooks;

typedef struct {
    lm_shape s;
    lm_tp tp;
    lm_pp pp;
    int first_chunk, last_chunk;      /* this stage runs model chunk 0 / the last one */
    int *owns;                        /* [layer]: 1 + the local chunk holding it, 0 elsewhere */
    lm_tp_dims ld;                    /* local sizes */
    lm_device *dev;
    lm_params params;
    lm_grad_hooks *hooks;             /* NULL: gradients straight into p->g */
    lm_param_hooks *phooks;           /* NULL: weights always in place */
    lm_param *embed, *norm, *lm_head; /* lm_head == embed when tied */
    lm_layer_params *layer;
    int64_t n_matmul_params;          /* N of SPEC §6 */

    /* micro-batch geometry and activations (compute dtype unless float) */
    int B, T, R;
    int Rx, r0;                       /* rows of the residual stream here (R/tp with sp) and the first */
    int recompute;
    float *rope_cos, *rope_sin;       /* [T, hd/2] */
    lm_layer_acts *acts;              /* [slot][layer] for this stage's layers (x only when recompute) */
    lm_layer_acts scratch_acts;       /* recompute: one layer's worth */
    void **h_final;                   /* [slot]: the last residual [Rx, D] (the last chunk's stage) */
    void *scratch_out;                /* recompute: a layer output nobody reads [Rx, D] */
    float *rstd_final;                /* final norm rstd [R] */
    void *n, *dn, *dh;                /* [R, D] */
    void *f1, *f2, *f3;               /* [R, F] */
    void *dq, *dk, *dv, *datt;        /* [R, ..] */
    void *dhf;                        /* sp: the gathered residual gradient [R, D] */
    void *dw_frozen;                  /* [D]: the discarded weight gradient of a frozen norm */
    void *logits;                     /* [head_rows, V/tp] */
    int head_rows;
    int32_t *lids;                    /* host: local vocab ids of this micro-batch (tp) */
    int32_t *tloc;                    /* host: local targets of a head block */
    float *xstats, *lse;              /* host: vocab-parallel xent statistics */
    size_t act_bytes;                 /* activation + workspace bytes */
    size_t act_kept;                  /* of which the per-layer activations kept for backward */
} lm_model;

void shape_from_config(lm_shape *s, const lm_config *c);

/* The full model's tensors (Hugging Face names, full shapes, model order)
 * into an empty table, without storage: what a checkpoint holds. */
void model_full_tensors(const lm_shape *s, lm_params *ps);

/* Build the parameter table (HF names, model order), chunk it (chunk size a
 * multiple of `granule` elements), allocate the weights and activations for
 * micro-batches of B sequences of T tokens. Gradients and optimizer state
 * are not allocated here (zero.h, or params_alloc_state). */
lm_model *model_create(lm_device *dev, const lm_shape *s, int B, int T, int recompute, size_t granule);
/* The same, tensor-parallel: this rank's slices of the parameters (tp_dims
 * must accept the shape; with tp->sp, B*T divisible by tp->size). */
lm_model *model_create_tp(lm_device *dev, const lm_shape *s, const lm_tp *tp, int B, int T, int recompute,
                          size_t granule);
/* The same, one pipeline stage of it (pp NULL or size 1: the whole model).
 * managed: no weight arena; a chunk manager (zero.h: ZeRO-3, parameter
 * offload) places the weights and installs param_hooks. */
lm_model *model_create_3d(lm_device *dev, const lm_shape *s, const lm_tp *tp, const lm_pp *pp, int B, int T,
                          int recompute, size_t granule, int managed);

/* Pipeline pieces. Local chunk j (model chunk j * pp + stage) of a
 * micro-batch, its activations in slot k (0 .. n_slots - 1):
 *   model_chunk_input: where the chunk's input [Rx, D] goes (receive into
 *     it) unless it is model chunk 0, which looks up ids itself;
 *   model_chunk_forward: the chunk's layers; the output goes to out (to be
 *     sent on), or on the last model chunk is kept in the slot;
 *   model_chunk_backward: on the last model chunk the final norm, lm_head
 *     and loss first (returns the loss sum over targets, else 0), otherwise
 *     from the gradient received into model_chunk_grad; the layers'
 *     backward; then the input gradient is in model_chunk_grad (to be sent
 *     on), or on model chunk 0 goes into the embedding.
 * Gradients accumulate as model_forward_backward's do. */
void *model_chunk_input(lm_model *m, int j, int k);
void model_chunk_forward(lm_model *m, int j, int k, const int32_t *ids, void *out);
double model_chunk_backward(lm_model *m, int j, int k, const int32_t *ids, const int32_t *targets, float scale);
void *model_chunk_grad(lm_model *m);
void model_destroy(lm_model *m);

/* Random init, layout-independent: element i of parameter NAME is
 * std * normal(seed, NAME, i) for matrices and 1 for norm weights. */
void model_init_random(lm_model *m, uint64_t seed, double std);
/* The same values for the block-local elements [a, b) of tensor p, into
 * out[0 .. b-a) (a managed layout initialises piece by piece). */
void model_init_values(const lm_param *p, uint64_t seed, double std, size_t a, size_t b, float *out);

/* Forward and backward of one micro-batch. ids and targets are [B*T];
 * targets < 0 are padding. Gradients ACCUMULATE into the params' g (scaled
 * by `scale`, which is 1 / number of target tokens of the whole global
 * batch). Returns the sum of the cross-entropy over this micro-batch's
 * target tokens (unscaled). */
double model_forward_backward(lm_model *m, const int32_t *ids, const int32_t *targets, float scale);

/* Evaluation (held-out loss), on the stage of the last model chunk after
 * model_chunk_forward of micro-batch slot k: the final norm, the lm_head
 * and the cross-entropy of every row, without gradients. row_loss[r]
 * (host, [R]) gets row r's -log softmax(logits)[target] (0 where the
 * target is < 0); returns their sum. Under tensor parallelism the ranks'
 * vocabulary slices combine as in training (every tp rank gets the same
 * values). Per row: m, s = max and sum of exp(x - m) over the slice's real
 * columns, zt = the target's logit (xent_part_stats), then
 * loss = M + log(sum_k s_k exp(m_k - M)) - sum_k zt_k in double. */
double model_chunk_eval(lm_model *m, int k, const int32_t *targets, double *row_loss);

/* Forward only; then model_logits_row fills out[V] with the logits of row r
 * (b*T + t). For generation and evaluation. */
void model_forward(lm_model *m, const int32_t *ids);
void model_logits_row(lm_model *m, int r, float *out);

/* Bytes the tensor-parallel group moves per optimizer step of n_micro
 * micro-batches (e bytes per element of the activations on the wire),
 * by kind, with `sent` under ring algorithms (see comm.h). Per micro-batch,
 * with RD = R*D*e, L layers, recompute adding one more forward per layer:
 *   without sp: all-reduce (2 + 4L [+ 2L]) RD — embedding, o and down
 *     forward, the lm_head's input gradient, the column-parallel input
 *     gradients backward;
 *   with sp: reduce-scatter (2 + 4L [+ 2L]) RD where those all-reduces
 *     were, all-gather (2 + 6L [+ 2L]) RD — the norm outputs before every
 *     column-parallel linear (forward, again in backward), the residual
 *     gradient before every row-parallel one and the embedding backward;
 *   both: all-gather of the vocab-parallel cross-entropy statistics, 12 R tp
 *     bytes (3 float32 per row and rank);
 * and per step the gradient norm's float64 sum of squares (8 bytes), and
 * with sp the norm weights' gradient sums, all-reduce (2L + 1) D e (at
 * ZeRO-0; sharded stages sum only the owned pieces).
 * Megatron-LM's figure per layer and micro-batch is the same: 4 all-reduces
 * of RD without sp, and with sp 4 all-gathers + 4 reduce-scatters plus the
 * 2 all-gathers that re-gather the layer inputs for the weight gradients. */
void tp_comm_formula(const lm_model *m, int n_micro, double e, lm_comm_stats *out);

#endif
