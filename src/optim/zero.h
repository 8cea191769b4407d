/* zero.h — data-parallel gradient reduction, ZeRO stages 0-3 and the
 * placement of chunks between device and host memory (CPU offload, Colossal-
 * AI's Gemini) over the chunked parameters (DESIGN §6).
 *
 * Chunk c (chunks.h: chunk_lo, chunk_len = cs_c elements; chunks may differ
 * in length) splits into dp shards of cs_c/dp; rank r of the data-parallel
 * group owns shard r of every chunk. A chunk is the bucket of
 * communication: its gradients are reduced as soon as backward has produced
 * all of them (non-blocking; comm_test between kernels drives MPI's
 * progress), while backward goes on producing the gradients of earlier
 * chunks.
 *
 *   stage 0  weights, gradients, moments replicated. Each chunk's gradients
 *            are all-reduced (sum) on the last micro-step; AdamW everywhere.
 *   stage 1  moments sharded: each chunk's gradients are reduce-scattered on
 *            the last micro-step (in place: rank r's summed shard lands in the
 *            first cs/dp elements of the chunk); AdamW on the owned shard of
 *            the weights; the chunk's weights are all-gathered.
 *   stage 2  gradients sharded too: a chunk's gradient lives in a bucket
 *            buffer only while backward writes it, is reduce-scattered on
 *            every micro-step as soon as it is complete, added into the
 *            rank's gradient shard, and the buffer is reused.
 *   stage 3  parameters sharded too (a managed layout: no weight arena):
 *            the rank keeps its shard of each chunk's weights (its home) and
 *            the model's parameter hooks gather the chunk into a device slot
 *            around each use (zero_fetch.c: prefetch along the traced order,
 *            eviction by furthest next use under a device budget); gradients
 *            as stage 2; AdamW writes the home shards.
 *
 * Placement (parallel.offload): for a chosen set of chunks (offload_frac of
 * the chunk bytes, the chunks used last in forward first; auto: the fewest
 * that fit the device budget) the fp32 master weights, both moments and the
 * AdamW step live on the host (optim); at stage 3 the compute-dtype home
 * shards too (param). On the last micro-step each offloaded chunk's reduced
 * gradient goes down (compute dtype, asynchronous copy) as soon as it is
 * final; the host step (host_adamw.h: one fused pass, bit-identical to the
 * device's AdamW) writes the compute-dtype parameters, which go up (or are
 * the home); the stage 1-2 all-gather of a chunk waits for its upload only.
 * Without clipping the host steps run during backward (zero_early_step).
 * Nothing of the placement changes the numbers.
 *
 * Weights and gradients are in the device's compute dtype (e bytes: 4 on the
 * float32 CPU backend, 2 in bf16); AdamW updates float32 master weights of
 * the owned range (the whole chunk at stage 0, the rank's shard otherwise)
 * and writes them back rounded into the weights. In float32 a master on the
 * weights' side is the weights. Bytes per rank, device and host together
 * (Psi = arena elements, chunk padding included):
 *     weights e Psi (stages 0-2) or e Psi/dp (stage 3, + gathered chunks),
 *     + master 4 Psi (stage 0) or 4 Psi/dp in bf16 (and in float32 for
 *     offloaded chunks whose weights stay on the device);
 *     gradients e Psi (stages 0, 1) or e Psi/dp (+ in-flight buckets of e cs
 *     each, stages 2, 3);  optimizer state 8 Psi (stage 0) or 8 Psi/dp;
 *     offloaded chunks also hold host staging of e x owned for the gradient
 *     (and, bf16, the parameters going up).
 *
 * train.trainable = embeddings: the frozen tensors sit in chunks of their
 * own (chunks.h); such a chunk has no moments (the optimizer state is over
 * the trained chunks only), its gradients are neither computed, reduced,
 * counted in the norm nor applied, and its weights are never re-gathered.
 * Its checkpoint moments are written as zeros.
 *
 * Gradients are sums over ranks (the loss is scaled by 1/targets of the whole
 * global batch), so no averaging is needed. */
#ifndef LAMINA_ZERO_H
#define LAMINA_ZERO_H
#include "chunks.h"
#include "ckpt.h"
#include "comm.h"
#include "optim.h"
#include "device.h"
#include "model.h"

typedef struct lm_zero lm_zero;

/* parallel.offload */
enum { LM_OFFLOAD_NONE = 0, LM_OFFLOAD_OPTIM, LM_OFFLOAD_PARAM, LM_OFFLOAD_AUTO };
int zero_offload_of(const char *name); /* "none" ... "auto" -> LM_OFFLOAD_* (-1: unknown) */

/* Placement and ZeRO-3 options beyond the stage. */
typedef struct {
    int offload;          /* LM_OFFLOAD_* */
    double offload_frac;  /* optim, param: the fraction of the chunk bytes offloaded, the chunks
                           * used last in forward first */
    int prefetch;         /* ZeRO-3: chunks gathered (uploaded) ahead of use */
    size_t device_memory; /* the device's budget (0: unlimited); auto plans under it and ZeRO-3
                           * keeps gathered chunks cached up to it */
    const lm_model *model;/* the model (its fetch groups size ZeRO-3's gathered chunks); NULL: none */
} lm_zero_opts;

/* The manager of ps's gradients and optimizer state; ps was built with
 * chunks_build(ps, 16 * dp->size) (stage 3: a managed layout, ps->managed).
 * overlap = 0 delays every reduction to the end of backward (for measuring
 * what overlap hides, and debugging). opts NULL: no offload, prefetch 2.
 * With a device budget, a placement that cannot fit stops every rank of
 * the world (exit 2) naming train.device_memory and parallel.offload with
 * the numbers and the smallest setting that fits (collective). */
lm_zero *zero_create(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap);
lm_zero *zero_create_opts(lm_params *ps, lm_device *d, const lm_group *dp, int stage, int overlap,
                          const lm_zero_opts *opts);
void zero_destroy(lm_zero *z);

/* Install the manager's gradient hooks (and at stage 3 its parameter
 * hooks) in the model whose parameters it manages. */
void zero_attach(lm_zero *z, lm_model *m);

/* Random init of a managed layout (stage 3: no weight arena): each owned
 * range's master weights and weights from model_init_values. */
void zero_init_random(lm_zero *z, uint64_t seed, double std);

/* Bytes one optimizer step of n_micro micro-batches copies between host
 * and device on this rank, by the formula: offloaded optimizer state moves
 * each trained chunk's owned gradient down and (unless its parameters live
 * on the host) its owned parameters up, e * owned each; a
 * parameter-offloaded chunk's home shard goes up at every fetch that finds
 * it absent: n_micro times per fetch group holding it (forward: the
 * embedding, each layer; backward: the head, each layer). Exact with
 * parallel.prefetch = 0 and no device budget; otherwise an upper bound (a
 * chunk used again soon is kept). */
void zero_transfer_formula(const lm_zero *z, int n_micro, double *h2d, double *d2h);

/* Seconds the host has waited for copies (transfer time not hidden). */
double zero_wait_seconds(const lm_zero *z);

/* The placement in words for the log (one line per fact, rank 0 prints). */
void zero_describe(const lm_zero *z, char *buf, size_t len);

/* Hooks for model backward: where each gradient goes, and when it is done. */
lm_grad_hooks *zero_hooks(lm_zero *z);

/* One optimizer step: zero the gradients; around each micro-step's backward
 * call micro_begin / micro_end (last = the step's last micro-step). After the
 * last micro_end the reduced gradients are in place. */
void zero_step_begin(lm_zero *z);
void zero_micro_begin(lm_zero *z, int last);
void zero_micro_end(lm_zero *z);

/* Sum of squares of the whole reduced gradient (every rank gets it). */
double zero_reduced_grad_sumsq(lm_zero *z);

/* Before the step's first micro_begin, when the update will not clip
 * (gscale 1: train.grad_clip = 0): the host optimizer step of each
 * offloaded chunk may then run during backward as soon as the chunk's
 * gradient is on the host (zero_update must get the same lr and step). */
void zero_early_step(lm_zero *z, const lm_adamw_hp *hp, double lr, long step);

/* AdamW on the owned part (gradients scaled by gscale), then all-gather the
 * weights (stages 1, 2). step = updates done including this one. */
void zero_update(lm_zero *z, const lm_adamw_hp *hp, double lr, double gscale, long step);

/* After a load of this rank's checkpoint pieces (zero_ckpt_tensors): put
 * them in place (from the host staging), all-gather the master shards at
 * stage 0 (and the replicated moments with with_moments), and refresh the
 * compute-dtype weights of every replica. */
void zero_gather_loaded(lm_zero *z, int with_moments);

/* After the compute-dtype weights were written directly (random init): the
 * master weights of the owned ranges from them. */
void zero_master_from_weights(lm_zero *z);

/* Before writing a checkpoint: the device's pieces into the host staging
 * zero_ckpt_tensors points at (a no-op when the pieces are the device's
 * own memory). */
void zero_ckpt_pull(lm_zero *z);

/* This rank's checkpoint pieces: for each tensor the range of it that lies
 * in this rank's shards, for the float32 master weights and both moments
 * (any of w, m, v may be NULL). Every element is in exactly one rank's
 * piece. The data pointers are host memory: the master weights themselves
 * on a float32 host-visible device, else a host staging filled by
 * zero_ckpt_pull and read back by zero_gather_loaded. */
void zero_ckpt_tensors(lm_zero *z, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v);

/* Bytes per rank held for weights, gradients (without buckets), optimizer
 * state; the bucket bytes at their peak so far. */
typedef struct {
    size_t weights;  /* compute-dtype weights on the device (the arena; ZeRO-3: the device home shards) */
    size_t master;   /* float32 master weights when separate from them */
    size_t grads, optim, buckets_peak;
    size_t psi;      /* arena elements */
    size_t psi_trained; /* of which in trained chunks (all but train.trainable's frozen ones):
                         * the optimizer state is 8 psi_trained (/dp) */
    size_t esz;      /* bytes per compute-dtype element */
    int stage, dp;
    /* on the device, of the above: master and optim count only the chunks
     * kept there; host (offloaded chunks): */
    size_t h_master, h_optim, h_grads, h_params; /* fp32 master, moments, transfer staging (gradients
                                                  * down, bf16 parameters up), parameters (the home
                                                  * shards of par_host chunks) */
    size_t slots_peak;   /* ZeRO-3: gathered chunks held at once, at most so far (device) */
    size_t slots_min;    /* ZeRO-3: the most one use needs gathered at once */
    int n_opt_host, n_par_host, nc;
    long gathers, uploads, evictions; /* ZeRO-3 counts so far */
    long host_steps, host_early; /* chunk steps of the host optimizer so far, of which during backward */
} lm_zero_mem;
void zero_memory_bytes(const lm_zero *z, lm_zero_mem *m);

/* The moment arrays of the owned ranges (nc x owned elements: the whole
 * arena at stage 0, shards otherwise); device memory. */
void zero_moment_arrays(lm_zero *z, float **m, float **v);

/* Test hook: set element i (mod the shard) of the rank's reduced gradient
 * shard to NaN. */
void zero_poison_grad(lm_zero *z, size_t i);

#endif
