/* zero_impl.h — the ZeRO manager's state, shared by its files: zero.c
 * (gradients, reductions, the optimizer step on the device and on the host,
 * checkpoints, memory) and zero_fetch.c (ZeRO-3: gathering chunks around
 * their use, prefetch and eviction). Not for other modules. */
#ifndef LAMINA_ZERO_IMPL_H
#define LAMINA_ZERO_IMPL_H
#include "zero.h"
#include "comm.h"
#include "common.h"
#include <stdint.h>

enum { B_FREE, B_LIVE, B_INFLIGHT };

/* Stages 2 and 3: a gradient buffer as long as the longest chunk. */
typedef struct {
    void *buf;
    int chunk;     /* -1 when free */
    int state;
    lm_req q;
    long seq;      /* launch order, to wait for the oldest first */
} zero_bucket;

/* ZeRO-3: where a chunk's gathered weights are. */
enum { S_ABSENT, S_UPLOADING, S_GATHERING, S_READY };

/* One tensor's piece of an owned range for the host optimizer step. */
typedef struct {
    int chunk;
    size_t off, n;  /* elements from the start of the chunk's owned range */
    float wd;
} zero_hseg;

/* Furthest-next-use bookkeeping over the traced order of chunk uses
 * (zero_fetch.c). trace[k] is the chunk of the k-th use in a step (one
 * entry per distinct chunk of each fetch call); next[k] the next position
 * with the same chunk (ntrace when none). */
typedef struct {
    int *trace, ntrace, cap;
    int *next;
    int recording;      /* the first step: append; later steps: follow */
    int ready;          /* a complete trace exists */
    int pos;            /* position of the last use in this step (-1: none yet) */
    int lost;           /* this step left the traced order: no prefetch until the next step */
    long *nextuse;      /* [chunk]: trace position of its next use (LONG_MAX: none) */
    long *lastuse;      /* [chunk]: a counter of uses, for LRU before the trace exists */
    long clock;
} zero_trace;

/* A checkpoint piece streamed from or to device memory (io/ckpt.h pull/push). */
typedef struct {
    lm_device *d;
    float *dev;   /* the piece's element 0 */
} zero_ckpt_src;

struct lm_zero {
    lm_params *ps;
    lm_device *d;
    const lm_group *dp;
    int stage, overlap;
    lm_dtype ct;          /* compute dtype: weights the model reads, gradients */
    size_t esz;           /* its bytes */
    int nc;
    size_t *len, *sh, *os;/* [chunk]: elements, shard elements (len/dp), owned elements */
    size_t maxlen;        /* the longest chunk */
    int f32;              /* float32 compute: a master on the same side as the weights is the weights */
    int *first, *count;   /* params of chunk c: indices first[c] .. first[c]+count[c]-1 */
    int *done;            /* params of chunk c done this micro-step */
    int comm_now;         /* this micro-step reduces */
    int last;             /* this micro-step is the step's last */
    int *all_counted;     /* chunk c holds no tensor that another rank counts in the norm */
    int *post;            /* chunk c holds a tensor summed after the dp reduction (tp replicas, tie) */
    int *trained;         /* [chunk]: 1 trained, 0 frozen (train.trainable) */
    int ntr;
    float *zeros;         /* host: zeros as long as the longest shard (frozen moments in checkpoints) */
    /* stages 0, 1: one request per chunk */
    lm_req *req;
    int *launched;

    /* placement (parallel.offload): chunk c's fp32 master weights, moments
     * and AdamW step on the host (opt_host), its compute-dtype parameters
     * too (par_host; ZeRO-3 only, always with opt_host) */
    int *opt_host, *par_host;
    int n_opt_host, n_par_host;
    int offload;          /* LM_OFFLOAD_* */
    /* per chunk, the owned range (the whole chunk at stage 0, the rank's
     * shard otherwise): */
    float *blk_master[2], *blk_m[2], *blk_v[2]; /* [0] device, [1] host: the blocks the pointers below point into */
    float **master;       /* fp32 master weights: device, host (opt_host) or the weights themselves */
    int *master_alias;    /* master[c] is the compute-dtype weights (fp32 on the same side) */
    float **mm, **mv;     /* moments (NULL for a frozen chunk): device, or host (opt_host) */
    void **gsh;           /* stages 2, 3: the reduced gradient shard (device) */
    void **hgrad;         /* opt_host: host copy of the reduced owned gradient (compute dtype) */
    void **hparam;        /* opt_host, bf16, not par_host: host staging of the updated parameters */
    uint64_t *tk_g, *tk_u;/* tickets of each chunk's gradient download and parameter upload */
    int *got_g;           /* the gradient download of chunk c was issued this step */
    int *done_h;          /* chunk c's host optimizer step ran this step */
    int early;            /* zero_early_step: host steps may run during backward */
    lm_adamw_hp early_hp;
    double early_lr;
    long early_t;
    long host_steps, host_early; /* chunk host steps so far, of which during backward */

    /* stage 3: every chunk is managed (ps->managed): the rank's shard of its
     * compute-dtype weights lives in home[c] (device, or host when
     * par_host); the whole chunk is gathered into slot[c] around its uses */
    int managed;
    void **home;
    void **slot;
    int *state, *refcnt, *slot_is_home;
    lm_req *req3;
    uint64_t *tk_s;       /* upload of the home shard into the slot */
    long *up_event;       /* the fetch at which that upload was issued */
    long events;          /* fetch calls so far */
    int prefetch;         /* chunks gathered ahead */
    size_t budget;        /* device bytes (train.device_memory; 0 = unlimited) */
    zero_trace tr;
    size_t slot_bytes, slot_bytes_peak;
    long gathers, uploads, evictions; /* counts since creation */
    double wait_s;        /* seconds the host waited for copies (zero_wait_copy) */
    lm_param_hooks phooks;
    const lm_model *model;
    size_t min_slots_bytes; /* the most one fetch needs resident at once */

    /* stages 2, 3 */
    zero_bucket *bk;
    int nbk;
    int *bucket_of;       /* chunk -> bucket index or -1 */
    long seq;
    size_t bucket_bytes_peak;
    lm_adamw_seg *segs;   /* the device optimizer's segments (built once) */
    int nseg;
    zero_hseg *hsegs;     /* the host optimizer's (opt_host chunks) */
    int nhseg;
    zero_ckpt_src *ck;    /* [3 x tensor]: where each streamed checkpoint piece is on the device */
    lm_grad_hooks hooks;
    /* the tied embedding's copy under pipeline parallelism (see sum_tied) */
    int tie;
    const lm_group *tie_g;
    int *tie_side, *tie_dp;
    int64_t *tie_lo, *tie_hi;
    void *tie_tmp;
};

/* The host waits for a copy (compute = 0) or makes compute wait for it
 * (on the CPU backends the host blocks either way): the time spent is
 * counted as transfer time not hidden behind compute. */
static inline void zero_wait_copy(lm_zero *z, uint64_t t, int compute) {
    if (!t) return;
    double t0 = lm_now();
    if (compute) z->d->compute_wait(z->d, t);
    else z->d->copy_wait(z->d, t);
    z->wait_s += lm_now() - t0;
}

/* Arena element where chunk c's owned range starts. */
static inline size_t zero_owned_lo(const lm_zero *z, int c) {
    return chunk_lo(z->ps, c) + (z->stage == 0 ? 0 : (size_t)z->dp->rank * z->sh[c]);
}

/* zero_fetch.c */
void zero_fetch_init(lm_zero *z);
void zero_fetch_free(lm_zero *z);
void zero_fetch_step_begin(lm_zero *z);
/* After the optimizer step changed the home shards: every gathered slot is
 * stale and goes. */
void zero_fetch_invalidate(lm_zero *z);
/* Device bytes: free what a fetch can evict so that `bytes` more fit under
 * the budget; 0 when they cannot. */
int zero_make_room(lm_zero *z, size_t bytes);

/* The furthest-next-use choice among the candidates (resident, unused):
 * the chunk whose next use is latest (none: LONG_MAX, the best victim),
 * ties to the least recently used. -1 when there is no candidate. */
int zero_victim(const zero_trace *t, const int *cand, int n);

#endif
