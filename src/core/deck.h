/* deck.h — the input deck (SPEC §2): an INI file plus section.key=value
 * overrides, parsed strictly into lm_config.
 *
 * Strict means: unknown sections and keys, malformed numbers, out-of-range
 * values, a missing required key, or an inconsistent model shape are errors
 * whose message names the key (and the file:line where it came from). */
#ifndef LAMINA_DECK_H
#define LAMINA_DECK_H
#include <stddef.h>
#include <stdint.h>

#define LM_PATHLEN 4096
#define LM_MAX_STAGES 16

/* One [stage.N] section of a multi-stage run (SPEC §9), resolved: the keys
 * it does not set are inherited from [train] and [data]. */
typedef struct {
    long steps;                    /* optimizer steps of the stage (>= 1) */
    char train_files[LM_PATHLEN];  /* data.train for the stage */
    char valid_files[LM_PATHLEN];  /* data.valid for the stage ("" = none) */
    double lr, min_lr;
    long warmup_steps;
    char lr_schedule[16];
    char trainable[16];
    int reset_optimizer;           /* 1: the stage starts with zero moments */
} lm_stage;

typedef struct {
    /* [model] */
    char preset[32];            /* "" when none */
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size;
    int max_seq_len;            /* 2048 */
    double norm_eps;            /* 1e-5 */
    double rope_theta;          /* 10000 */
    int tie_embeddings;         /* 0/1 */
    /* [parallel] */
    int tp, pp;                 /* 1, 1 */
    int dp;                     /* 0 = auto */
    int zero;                   /* 0..3 */
    int overlap_comm;           /* 1: reduce gradient chunks during backward */
    int sp;                     /* 0/1: Megatron sequence parallelism (with tp > 1) */
    char comm[8];               /* auto | nccl | mpi: device collectives (auto: nccl on cuda) */
    char schedule[16];          /* 1f1b | interleaved */
    int virtual_stages;         /* 1 */
    char stage_layers[256];     /* "" (balanced) or layers per model chunk, comma-separated */
    char offload[16];           /* none | optim | param | auto */
    int prefetch;               /* ZeRO-3/offload: chunks gathered or uploaded ahead of use (2) */
    double offload_frac;        /* fraction of the chunk bytes optim/param offload (1.0) */
    /* [train] */
    char trainable[16];         /* all | embeddings (only embed_tokens and lm_head update) */
    char device[8];             /* cpu | cuda */
    uint64_t device_memory;     /* bytes the device may use; 0 = all it has */
    char precision[8];          /* auto | fp32 | bf16 (auto: fp32 on cpu, bf16 on cuda) */
    uint64_t seed;              /* 1234 */
    long steps;
    int seq_len, micro_batch, global_batch;
    double lr, min_lr;          /* -, 0 */
    long warmup_steps;          /* 0 */
    char lr_schedule[16];       /* constant | linear | cosine (default) */
    double weight_decay, beta1, beta2, eps, grad_clip; /* 0, .9, .95, 1e-8, 1 */
    int recompute;              /* 0/1 */
    char init[LM_PATHLEN];      /* "random" or a checkpoint file */
    double init_std;            /* 0.02 */
    double max_minutes;         /* wall-clock budget of this run; 0 = none */
    long eval_every;            /* evaluate on data.valid every N steps (0: only at each stage's end) */
    long eval_batches;          /* global batches of data.valid per evaluation (0: the whole file) */
    /* [data] */
    char train_files[LM_PATHLEN]; /* comma-separated, each `path` or `path:weight` */
    char valid_files[LM_PATHLEN]; /* held-out token files ("" = no evaluation) */
    int shuffle;                /* 1 */
    /* [checkpoint] */
    char ckpt_dir[LM_PATHLEN];  /* "ckpt" */
    long ckpt_every;            /* 0 = only at the end */
    int ckpt_keep;              /* 2 */
    char restart[LM_PATHLEN];   /* auto | none | a file */
    /* [log] */
    long log_every;             /* 1 */
    char metrics[LM_PATHLEN];   /* "metrics.jsonl"; "" = none */
    double peak_tflops;         /* 0 = detect */
    char papi_events[1024];     /* "PAPI_TOT_CYC,PAPI_TOT_INS" */
    int kernel_timers;          /* 0/1: time device ops by kind (syncs after each op) */
    /* [stage.1] .. [stage.n_stages] (0: a single-stage run per [train]);
     * with stages, steps is their sum */
    int n_stages;
    lm_stage stage[LM_MAX_STAGES];
} lm_config;

/* Defaults of SPEC §2 (required keys left 0/empty). */
void deck_defaults(lm_config *c);

/* Parse `path` (NULL = no file) then apply `noverride` "section.key=value"
 * strings, then apply the preset, check required keys and ranges.
 * Returns 0, or 2 with a message naming the key in err. */
int deck_load(lm_config *c, const char *path, int noverride, char *const *overrides,
              char *err, size_t errlen);

/* Same, from an in-memory INI text (used for the deck stored in a checkpoint
 * and by tests). `name` is used in messages. */
int deck_load_string(lm_config *c, const char *text, const char *name, int noverride,
                     char *const *overrides, char *err, size_t errlen);

/* The resolved deck as INI text, every key present, in SPEC order; it parses
 * back to the same lm_config. Returns bytes written (excluding NUL), or the
 * size needed if it does not fit (like snprintf). */
size_t deck_to_text(const lm_config *c, char *buf, size_t len);

/* Stages (0-based index k): the optimizer steps before stage k, and the
 * stage that runs step `step` (1-based; past the end: the last stage).
 * Without [stage.N] sections the run is one stage of c->steps. */
long deck_stage_start(const lm_config *c, int k);
int deck_stage_of(const lm_config *c, long step);

/* Fill the shape fields from a named preset; returns 0, or 2 if unknown. */
int deck_apply_preset(lm_config *c, const char *name, char *err, size_t errlen);

#endif
