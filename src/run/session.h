/* session.h — what `train` and `generate` share: reading the deck and its
 * overrides from the command line, checking that this build can run the
 * layout, creating the device and the model, and loading the weights a run
 * starts from (a checkpoint to resume, an init file, or random init). */
#ifndef LAMINA_SESSION_H
#define LAMINA_SESSION_H
#include "ckpt.h"
#include "comm.h"
#include "deck.h"
#include "model.h"
#include "topo.h"
#include "zero.h"

typedef struct {
    lm_config cfg;
    lm_device *dev;
    lm_model *model;
    lm_topo topo;
    lm_group *kv_group; /* tp ranks sharing a replicated kv head (NULL when none) */
    lm_group *emb_group; /* first and last stage: tied embeddings under pp (NULL when none) */
    lm_pp_split split;  /* layers of each pipeline model chunk */
    int pp_kind;        /* LM_PP_1F1B or LM_PP_INTERLEAVED */
    int n_micro;        /* micro-batches per step (the pipeline's) */
    /* the full model's tensors, in model order, for checkpoints: name and
     * full shape, and the index of this rank's parameter holding it (-1) */
    lm_params full;
    int *local_of;
    lm_zero *zero;      /* gradients and optimizer state (train only) */
    /* where the weights came from */
    char resumed_from[LM_PATHLEN]; /* "" unless resumed */
    long start_step;
    long tokens_seen;
    long consumed_samples;
    /* a multi-stage run's checkpoint attributes (ckpt_meta: stage 0 and
     * stage_data_start -1 when absent or not resumed) */
    long ck_stage, ck_stage_data_start;
    int fresh_moments;  /* resumed at the start of a stage with reset_optimizer: moments not loaded */
    float *host_w;      /* host image of the weights while loading without ZeRO */
} lm_session;

/* Parse DECK and section.key=value overrides from argv (the caller has
 * taken its own options out): through getopt_long (core/opts.h), so any
 * option left is an unknown one of `cmd`, exit 2 with `usage`.
 * Exits collectively with 2 on a bad deck or layout. */
void session_config(lm_config *c, const char *cmd, const char *usage, int argc, char **argv);

/* The same from a deck's text (`name` in messages) and overrides: for a
 * command that makes its deck itself (eval of a checkpoint or HF folder). */
void session_config_string(lm_config *c, const char *text, const char *name, int noverride, char *const *overrides);

/* The checks session_config makes after reading the deck: this build runs
 * the layout, the batch geometry divides; sets c->dp. Exit 2 otherwise. */
void session_check_config(lm_config *c);

/* The layers of each pipeline model chunk per the deck (parallel.pp,
 * virtual_stages, stage_layers; balanced with the lm_head's cost when no
 * list is given): 0, or 2 with err. */
int pp_split_from_deck(const lm_config *c, lm_pp_split *out, char *err, size_t errlen);

/* Build the process grid, the device and the model for micro-batches of B
 * sequences of T tokens; with `train`, the ZeRO manager of gradients and
 * optimizer state, its hooks installed in the model. */
void session_open(lm_session *s, int B, int T, int recompute, int train);

/* Start state: resume per checkpoint.restart (with optimizer state), else
 * train.init, else random. Exits collectively with 2 on a bad file.
 * A checkpoint written at the start of a stage whose reset_optimizer is
 * true (its step is where the stage begins) gives weights and counters
 * but not its moments, which stay zero (fresh_moments). */
void session_load(lm_session *s, int with_optim);

/* The step of the checkpoint session_load would resume from per
 * checkpoint.restart (auto: the newest whose attributes read; a file: its
 * step), or -1 when it would start fresh. Reads attributes only, so that a
 * multi-stage run knows which stage's set-up to build before loading (the
 * full load may still fall back to an older file: the caller checks).
 * Collective. */
long session_restart_step(const lm_config *c);

/* This rank's checkpoint pieces of weights and moments (see zero.h); without
 * a ZeRO manager, whole weight tensors. The arrays hold s->full.n entries,
 * one per tensor of the full model (empty pieces for tensors another
 * pipeline stage holds). */
void session_ckpt_tensors(lm_session *s, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v);

/* Replicated tensors (norm weights across the tensor-parallel group, kv
 * heads shared by several tp ranks) must hold the same bits on every
 * replica. Each rank hashes its checkpoint pieces w (host data, as
 * session_ckpt_tensors and zero_ckpt_pull leave them) of every such tensor,
 * and each group compares its hashes. Returns 0, or 1 with err naming the
 * first tensor that differs (collective over the world). */
int session_check_replicas(lm_session *s, const ckpt_tensor *w, char *err, size_t errlen);

void session_close(lm_session *s);

#endif
