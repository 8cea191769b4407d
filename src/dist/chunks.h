/* chunks.h — parameters, gradients and AdamW state in chunks (Colossal-AI's
 * Gemini idea). A chunk is the unit of communication (ZeRO's reduce-scatter /
 * all-gather) and, later, of offload. Tensors are packed in model order into
 * chunks without being split: regular chunks all have one length (searched
 * to minimise padding, see chunk_layout_of), and a tensor longer than that
 * (a large vocabulary's embedding and lm_head) gets a chunk of its own, as
 * long as the tensor rounded up to the granule. The four arenas (weights,
 * grads, exp_avg, exp_avg_sq) share one layout: chunk c of each sits at
 * coff[c] (chunk_lo), chunk_len(c) elements long. */
#ifndef LAMINA_CHUNKS_H
#define LAMINA_CHUNKS_H
#include "ckpt.h"
#include "device.h"
#include <stddef.h>
#include <stdint.h>

#define LM_NAMELEN 96

typedef struct {
    char name[LM_NAMELEN];  /* Hugging Face name */
    int ndim;               /* 1 or 2 */
    int64_t rows, cols;     /* [out, in]; cols = 1 for 1-D */
    size_t numel;
    int decay;              /* weight decay applies (2-D weights) */
    int chunk;              /* chunk index */
    size_t offset;          /* element offset in the arena */
    void *w, *g;            /* compute-dtype views into the weight and gradient arenas
                             * (g: NULL while the ZeRO manager has no full gradient) */
    float *m, *v;           /* float32 moments (params_alloc_state only) */

    /* Tensor parallelism: this rank's tensor [rows, cols] is a block of the
     * full logical one [full_rows, full_cols] (the checkpoint's shape). */
    int tp_split;           /* LM_TP_NONE (replicated), LM_TP_COLUMN_PARALLEL (column-parallel:
                             * a slice of output rows), LM_TP_ROW_PARALLEL (row-parallel) */
    int64_t full_rows, full_cols;
    int64_t row0, col0;     /* where the block starts in the full tensor */
    int64_t valid_rows;     /* rows of the block inside the full tensor (a padded
                             * vocabulary's last slice holds fewer) */
    struct lm_group *gsum;  /* group over which the gradient must be summed after
                             * the data-parallel reduction (NULL: none): replicas
                             * that each see part of the batch's contribution */
    int norm_here;          /* this rank counts the tensor in the global
                             * gradient norm (one replica of each) */
    int frozen;             /* not trained (train.trainable = embeddings): set
                             * before chunks_build, which never puts a frozen
                             * and a trained tensor in one chunk */
} lm_param;

enum { LM_TP_NONE = 0, LM_TP_COLUMN_PARALLEL = 1, LM_TP_ROW_PARALLEL = 2 };

typedef struct {
    lm_param *p;
    int n;
    size_t chunk_size;      /* elements per regular chunk (an outsized tensor's own chunk is longer) */
    int n_chunks;
    size_t *coff;           /* [n_chunks + 1]: chunk c is arena elements [coff[c], coff[c + 1]);
                             * use chunk_lo / chunk_len, never c * chunk_size */
    size_t chunk_max;       /* the longest chunk (elements) */
    size_t numel;           /* sum of tensor sizes */
    size_t arena;           /* coff[n_chunks]: every chunk with its padding */
    int managed;            /* no weight arena: a chunk manager (ZeRO-3, offload) places
                             * each chunk's weights and sets p->w while they are in use */
    lm_device *dev;         /* where w and g live (NULL: host float32, chunks_build) */
    void *w, *g;            /* compute dtype of dev */
    float *m, *v;
    int cap;                /* tensor slots allocated in p (params_add grows it geometrically) */
    int *index, index_cap;  /* params_find's hash table of names (open addressing, index_cap slots
                             * holding tensor index + 1), built for the first index_n tensors */
    int index_n;
} lm_params;

/* Where chunk c starts in the arena, and its elements (a multiple of the
 * granule chunks_build was given). */
static inline size_t chunk_lo(const lm_params *ps, int c) { return ps->coff[c]; }
static inline size_t chunk_len(const lm_params *ps, int c) { return ps->coff[c + 1] - ps->coff[c]; }

/* The range the search tries above a cap s (chunk_layout_of), for tensors
 * of the given sizes when the largest is s: min(16M, max(total/8 - s, s/4))
 * elements, sizes rounded up to 16 elements, where total sums them. */
size_t chunk_range(const size_t *sizes, int n);

/* A layout of tensors into chunks. */
typedef struct {
    size_t chunk_size; /* length of the regular chunks (elements, a multiple of the granule) */
    size_t chunk_max;  /* the longest chunk */
    size_t arena;      /* all chunk lengths: coff[n_chunks] */
    int n_chunks;
    int n_alone;       /* chunks holding one outsized tensor */
} chunk_layout;

/* The layout chunks_build gives tensors of these sizes (a pure function;
 * the performance model, plan_model.c, uses it too). Tensors (each rounded
 * up to 16 elements, starting 64-byte aligned) go in model order; with G the
 * granule rounded up to a multiple of 16, the layout at regular length c (a
 * multiple of G) is:
 *   - a tensor longer than c is outsized: it closes the open chunk and gets
 *     a chunk of its own, round_up(numel, G) long;
 *   - the others go next-fit into chunks of length c, a new chunk starting
 *     where a tensor does not fit, after an outsized tensor, and where grp
 *     (NULL: none; the frozen flags) changes value.
 * The search tries caps s = each distinct (aligned) tensor size from the
 * largest down to half the mean tensor size (at most 64 caps). For each,
 * the candidates are c = round_up(s + j*step, G), 0 <= j*step <= range,
 * range the one chunk_range gives over the tensors no longer than s. So the
 * largest cap is the whole-model search of one chunk size (as before
 * outsized chunks), and the smaller caps give the layouts where the larger
 * tensors go alone. The candidate with the least padding (arena - sum of
 * sizes) wins; ties go to fewer chunks, then to the smaller c. The floor
 * (half the mean size) keeps vectors (norm weights, far below the mean)
 * from setting the regular length: otherwise a model could be cut into one
 * chunk per tensor, norms alone, to save the last few elements; the
 * matrices of a layer, near the mean, can. step 0: every 1024 elements,
 * coarser when caps x candidates x tensors would pass 2^26 (the cost stays
 * linear in the tensor count). chunk_of and off_of (n entries) get each
 * tensor's chunk and arena offset, coff (n + 1 entries: a layout has at
 * most one chunk per tensor) the chunk starts, when given. */
chunk_layout chunk_layout_of(const size_t *sizes, const int *grp, int n, size_t granule, size_t step,
                             int *chunk_of, size_t *off_of, size_t *coff);

/* Add a tensor to the table before chunks_build; amortised O(1) (the
 * table doubles when full), so building a model is linear in its tensors.
 * The returned pointer is valid until the next params_add (the table grows).
 * ndim 2 = a weight matrix [rows, cols] (weight decay applies); ndim 1 = a
 * vector of rows elements (norm weights; no decay). */
lm_param *params_add(lm_params *ps, const char *name, int ndim, int64_t rows, int64_t cols);

/* Lay the tensors out in chunks (chunk_layout_of; every chunk a multiple
 * of `granule` elements, so that a chunk splits into equal 64-byte-aligned
 * shards: the caller passes 16 * dp) and allocate the weight arena
 * (zeroed). Gradients and optimizer state belong to the ZeRO manager
 * (zero.h), which shards them; params_alloc_state gives full ones.
 * When some tensors are frozen, a chunk starts wherever the frozen flag
 * changes along the tensor order (and the search counts that padding), so
 * every chunk is wholly trained or wholly frozen: the ZeRO manager then
 * skips frozen chunks whole (no reduction, no moments, no update). */
void chunks_build(lm_params *ps, size_t granule);
/* The same layout, with the weight arena on device d in its compute dtype;
 * with ps->managed set before the call, no arena (every p->w NULL). */
void chunks_build_on(lm_params *ps, size_t granule, lm_device *d);
/* A full, zeroed gradient arena in the compute dtype (on ps->dev; host
 * float32 for a chunks_build layout), with per-tensor views. */
void params_alloc_grads(lm_params *ps);
/* Full (unsharded) float32 gradient and moment arenas with per-tensor views,
 * on the host (chunks_build layouts only: the serial reference optimizer). */
void params_alloc_state(lm_params *ps);
/* Tensor i's weights from a host float32 array of its numel elements,
 * rounded to the compute dtype. */
void params_set_tensor(lm_params *ps, int i, const float *host);
void params_free(lm_params *ps);

/* The first tensor named `name`, or NULL: expected O(1) through a hash
 * table of the names, (re)built on the first lookup after tensors were
 * added, so that matching every tensor of one table to another is linear. */
lm_param *params_find(lm_params *ps, const char *name);

/* Element i (row-major in the rank's block) of p in the full tensor, or -1
 * when it lies in padding rows. */
int64_t params_full_index(const lm_param *p, size_t i);

/* The checkpoint piece of p made of its block-local elements [a, b) (the
 * part inside the full tensor: padding rows are left out), data pointing at
 * element a; an empty piece when nothing of [a, b) is real. */
ckpt_tensor params_piece(const lm_param *p, size_t a, size_t b, float *data);


#endif
