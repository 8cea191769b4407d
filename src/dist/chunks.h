/* chunks.h — parameters, gradients and AdamW state in fixed-size chunks
 * (Colossal-AI's Gemini idea). A chunk is the unit of communication (ZeRO's
 * reduce-scatter / all-gather) and, later, of offload. Tensors are packed in
 * model order into chunks without being split; the chunk size is chosen by a
 * search that minimises padding (see chunk_search). The four arenas (weights,
 * grads, exp_avg, exp_avg_sq) share one layout, so chunk c of each sits at
 * c*chunk_size. */
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
    size_t chunk_size;      /* elements per chunk */
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

/* Chunk size (elements) for tensors of the given sizes packed in order, each
 * rounded up to `align` elements: among sizes in [largest, largest + range]
 * in steps of `step`, the one with the least padding (n_chunks*size - used);
 * ties go to the smaller size. */
size_t chunk_search(const size_t *sizes, int n, size_t align, size_t range, size_t step);

/* The range chunks_build searches above the largest tensor (elements):
 * min(16M, max(total/8 - largest, largest/4)), sizes rounded up to 16
 * elements. */
size_t chunk_range(const size_t *sizes, int n);

/* The layout chunks_build gives tensors of these sizes (also used by the
 * performance model, plan_model.c): the searched chunk size
 * (chunk_search over chunk_range, tensors aligned to 16 elements), that size
 * rounded up to a multiple of the granule (the dp shard unit), and next-fit
 * packing in order at a chunk size, which returns the chunk count and, when
 * the arrays are given, each tensor's chunk and offset in the arena. */
size_t chunk_searched(const size_t *sizes, int n);
size_t chunk_round(size_t searched, size_t granule);
size_t chunk_pack(const size_t *sizes, int n, size_t chunk, int *chunk_of, size_t *off_of);

/* Add a tensor to the table before chunks_build; amortised O(1) (the
 * table doubles when full), so building a model is linear in its tensors.
 * The returned pointer is valid until the next params_add (the table grows).
 * ndim 2 = a weight matrix [rows, cols] (weight decay applies); ndim 1 = a
 * vector of rows elements (norm weights; no decay). */
lm_param *params_add(lm_params *ps, const char *name, int ndim, int64_t rows, int64_t cols);

/* Search the chunk size (then round it up to a multiple of `granule`
 * elements, so that a chunk splits into equal 64-byte-aligned shards: the
 * caller passes 16 * dp), place tensors and allocate the weight arena
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
