/* plan_model.h — lamina's performance model (`lamina plan`): for a model, a
 * cluster and a GPU count, the memory per GPU and the time of one optimizer
 * step of every (dp, tp, pp, v, sp, ZeRO, micro-batch, recompute) layout,
 * and the fastest that fits. Pure: no MPI, no files (the INI parsers take
 * the text), so that every formula is unit-testable. perf/PLAN.md derives
 * the equations and says where each constant comes from.
 *
 * The memory model is lamina's own accounting, exactly: the chunk arena Psi
 * of each pipeline stage (chunks.c: padding included), the ZeRO formulas of
 * zero.h, and the activation and workspace buffers model_create_3d
 * allocates (act_bytes), times the activation sets pp_max_inflight says a
 * stage keeps. The time model is analytic: compute at a calibrated fraction
 * of peak that falls with the per-rank GEMM width, tensor-parallel traffic
 * by tp_comm_formula's count, data-parallel reductions partly hidden behind
 * backward, the pipeline's (p-1)/v bubble, point-to-point sends and AdamW.
 *
 * ZeRO-3 and offload (SPEC §2 parallel.zero = 3, parallel.offload,
 * offload_frac, prefetch): the device and host bytes zero.c allocates for
 * them (perf/PLAN.md "Offload"), the host link's transfers per step, the
 * host AdamW, and the smallest offloaded fraction that fits
 * (plan_fit_offload). They are searched and recommended like any layout. */
#ifndef LAMINA_PLAN_MODEL_H
#define LAMINA_PLAN_MODEL_H
#include <stddef.h>

/* A cluster description (an INI file in inputs/clusters, section [cluster]). */
typedef struct {
    char name[64], gpu[96];
    double peak_tflops;       /* dense peak per GPU in the compute precision */
    double mem_gib;           /* memory per GPU */
    int gpus_per_node;
    double intra_gbs;         /* GB/s per GPU, one direction, inside a node */
    double inter_gbs;         /* GB/s per GPU, one direction, between nodes */
    double latency_us;        /* per message hop */
    double mem_bw_gbs;        /* device memory bandwidth (AdamW is bound by it) */
    int esz;                  /* bytes per compute element: 2 (bf16, CUDA backend) or 4 (fp32, CPU) */
    int oversubscribe;        /* more ranks than gpus_per_node share its cores (one node) */
    /* offload (optional keys; 0 = not given) */
    double host_mem_gib;      /* host memory per node: bounds the offloaded bytes x ranks per node (0: unbounded) */
    double link_gbs;          /* host <-> device GB/s per GPU, one direction (0: offload is not searched) */
    double host_adamw_rate;   /* parameters/s of the host AdamW per GPU's share of the host (0: derived) */
    double host_mem_bw_gbs;   /* host memory bandwidth per node (the derived rate: / gpus_per_node / 28 B) */
    double dev_limit;         /* not in the file: bytes a GPU may use (train.device_memory); 0 = mem_gib - reserve */
} plan_cluster;

/* Calibration constants (perf/plan_calibration.ini, one section per cluster
 * name, [default] otherwise). */
typedef struct {
    double gemm_eff_max;      /* fraction of peak a wide GEMM reaches, asymptotically */
    double gemm_k_half;       /* per-rank GEMM width at which that fraction halves */
    double e2e;               /* fraction of the GEMM rate a whole step's compute keeps */
    double dp_hidden;         /* fraction of the overlappable dp reduction hidden behind backward */
    double comm_eff;          /* achieved fraction of a link's bandwidth: blocking collectives, pp sends */
    double dp_comm_eff;       /* the same for the overlapped dp reductions (non-blocking, progressed
                               * between kernels) */
    double reserve_gib;       /* per-GPU memory outside the model (context, libraries) */
    double step_overhead_ms;  /* per step, outside the model (data, logging) */
    double offload_hidden;    /* fraction of the host link's transfers hidden behind compute (optional, 0.5) */
} plan_calib;

/* The model and the batch. */
typedef struct {
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab, tied;
    int seq_len, global_batch; /* sequences per optimizer step */
} plan_shape;

/* parallel.offload */
enum { PLAN_OFF_NONE = 0, PLAN_OFF_OPTIM, PLAN_OFF_PARAM, PLAN_OFF_AUTO };

/* One layout. fo, fp: fractions of each stage's chunk elements whose
 * optimizer state (fp32 master, moments, AdamW) / compute-dtype parameters
 * live in host memory; as zero.c place_frac places them, a stage offloads
 * whole chunks from the last one (in forward order) backwards until their
 * elements reach f of the stage's arena. optim: fo = offload_frac, fp = 0;
 * param (ZeRO-3 only): fo = fp = offload_frac; auto: as plan_fit_offload
 * chose them (fo first, then fp at ZeRO-3). prefetch: chunks gathered or
 * uploaded ahead of use (ZeRO-3). */
typedef struct {
    int dp, tp, pp, v, sp, zero, mb, recompute;
    int offload;              /* PLAN_OFF_* */
    double fo, fp;
    int prefetch;
} plan_layout;

/* Bytes per GPU of one pipeline stage. */
typedef struct {
    double psi;               /* arena elements (chunk padding included) */
    double chunk;             /* elements of the longest chunk (what a bucket holds) */
    double weights, master, grads, buckets, optim;
    double acts_kept, acts_ws; /* per-layer activations kept for backward; the rest of act_bytes */
    int slots, layers;        /* activation sets kept; layers on the stage */
    double total;             /* device bytes */
    /* chunks and offload (the stage's real layout, chunk_layout_of) */
    int nch, wc;              /* chunks; the most distinct chunks one fetch group touches */
    int ko, kp;               /* chunks (the last ones) whose optimizer state / parameters are offloaded */
    double off_opt, off_par;  /* arena elements of those chunks */
    double owned, owned_t;    /* arena elements whose optimizer state this rank owns (of them trained) */
    double gather;            /* ZeRO-3: elements of the largest fetch group's chunks that need a slot
                               * (zero.c min_slots) */
    double managed;           /* of weights: the gathered chunk slots, e (gather + prefetch x the
                               * longest chunk that needs a slot) */
    double host_master, host_optim, host_grad, host_pstage, host_params; /* pinned host bytes */
    double host_total;
    double h2d, d2h;          /* bytes over the host link per optimizer step */
} plan_mem;

typedef struct {
    plan_layout l;
    plan_mem mem;             /* of the stage that needs the most */
    int mem_stage;
    int n_micro;
    double t_compute, t_bubble, t_tp, t_dp, t_pp, t_optim, t_step; /* seconds */
    double t_xfer, t_host;    /* exposed host-link transfers; host AdamW (in t_step) */
    double host_max;          /* the largest stage's host bytes per GPU */
    double tokens_per_s_gpu, mfu;
    int fits;                 /* the device and the host memory both hold it */
    int fits_device, fits_host;
} plan_result;

/* Why a layout is not evaluated (counted per class by plan_search). */
enum {
    PLAN_OK = 0,
    PLAN_R_TP_SHAPE,          /* tp does not split heads / kv heads / ffn */
    PLAN_R_TP_NODE,           /* tp > gpus_per_node: tensor parallelism across nodes */
    PLAN_R_PP_LAYERS,         /* fewer layers than pp * v model chunks */
    PLAN_R_BATCH,             /* global batch not a multiple of dp * micro_batch */
    PLAN_R_SCHEDULE,          /* interleaved needs micro-batches a multiple of pp */
    PLAN_R_SP_ROWS,           /* sp: micro_batch * seq_len not divisible by tp */
    PLAN_R_MEMORY,            /* does not fit in device memory, even with everything offloaded */
    PLAN_R_HOST,              /* fits the device only with more offload than host memory holds */
    PLAN_R_PARAM_ZERO,        /* parameter offload below ZeRO-3 */
    PLAN_R_N
};
const char *plan_reject_name(int why);

/* Model FLOPs per token, SPEC §6: 6 N + 12 L D T (as metrics_flops_per_token). */
double plan_flops_per_token(const plan_shape *s);
/* Matrix parameters N of SPEC §6 and all parameters. */
double plan_n_params(const plan_shape *s);

/* Megatron's pipeline bubble: idle over compute time, (p - 1) / (v m). */
double plan_bubble(int pp, int v, int m);

/* Fraction of peak the GEMMs reach at per-rank width k:
 * gemm_eff_max * k / (k + gemm_k_half). */
double plan_gemm_eff(const plan_calib *c, double k);

/* Chunk arena of tensors of `sizes` elements packed in order, as
 * chunks_build does it for a granule (16 * dp): elements per chunk in
 * *chunk (may be NULL). Exact. */
double plan_arena(const size_t *sizes, int n, size_t granule, double *chunk);

/* 0, or the PLAN_R_* class that rules the layout out before memory. */
int plan_check(const plan_shape *s, const plan_cluster *cl, const plan_layout *l);

/* Bytes a GPU may use: cl->dev_limit, else (mem_gib - reserve) GiB. */
double plan_device_limit(const plan_cluster *cl, const plan_calib *c);
/* Host bytes a node holds for offload: host_mem_gib GiB (0: unbounded, returns +inf). */
double plan_host_limit(const plan_cluster *cl);
/* Ranks (GPUs) per node of a layout of `gpus`. */
int plan_ranks_per_node(const plan_cluster *cl, int gpus);

/* Sets l->fo, l->fp from a deck's parallel.offload mode and offload_frac
 * (auto: both 0, for plan_fit_offload to choose). */
void plan_set_offload(plan_layout *l, int mode, double frac);

/* The smallest offload of l's mode (optim: fo; param: fo = fp; auto: fo,
 * then at ZeRO-3 fp with fo = 1), stepping one chunk at a time from the
 * last chunk of some stage (the fraction reported is of the elements: the
 * offloaded chunks' elements over the stage's arena), with which every
 * stage's device bytes fit plan_device_limit. 1 and l updated when one
 * fits; 0 (l at the most offload of its mode) when none does (param below
 * ZeRO-3: never). */
int plan_fit_offload(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, plan_layout *l);

/* Memory of pipeline stage `stage` (the layout must pass plan_check). */
void plan_stage_memory(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, int stage, plan_mem *out);

/* Memory (the largest stage) and step time of a layout that passes plan_check. */
void plan_evaluate(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, const plan_layout *l,
                   plan_result *out);

/* Restrictions of the search (-1: free). */
typedef struct {
    int tp, pp, v, sp, zero, mb, recompute;
    int offload, prefetch;    /* PLAN_OFF_* (-1 free); prefetch (-1: 2) */
    double frac;              /* offload_frac (< 0: the smallest that fits) */
} plan_fix;

typedef struct {
    long count[PLAN_R_N];     /* layouts ruled out per class */
    int example[PLAN_R_N][3]; /* one (dp, tp, pp) of each class */
    double min_mem;           /* the least device memory of a layout that does not fit (bytes) */
    double min_host;          /* the least host bytes per node of a layout rejected for host memory */
    long evaluated;
} plan_rejects;

/* Every layout of `gpus` GPUs that fits, fastest first, into out (at most
 * max; returns how many fit in all). Per (dp, tp, pp, v, sp, ZeRO, mb,
 * recompute): without offload when that fits the device, else (when the
 * cluster gives link_gbs) the smallest optim fraction that fits, else the
 * smallest param fraction; the host must hold the offloaded bytes.
 * fix->offload >= 0 fixes the mode (and fix->frac >= 0 its fraction). */
int plan_search(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, int gpus, const plan_fix *fix,
                plan_result *out, int max, plan_rejects *rej);

/* Parse a cluster description / calibration file (INI text; `name` in
 * messages). Every key is checked: unknown, missing, duplicate or bad
 * values give 2 with "NAME:LINE: ..." naming the key in err.
 * plan_calib_parse takes the section `cluster` of the text, else
 * [default]; *found says which (0 neither: *out holds the built-in
 * defaults of plan_calib_defaults). */
int plan_cluster_parse(const char *text, const char *name, plan_cluster *out, char *err, size_t errlen);
void plan_calib_defaults(plan_calib *c);
int plan_calib_parse(const char *text, const char *name, const char *cluster, plan_calib *out, int *found, char *err,
                     size_t errlen);

#endif
