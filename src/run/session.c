/* session.c — see session.h. */
#include "session.h"
#include "common.h"
#include "opts.h"
#include "prof.h"
#include "sde.h"
#include "hf.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

/* No options of its own: getopt_long over an empty table makes any "-x" an
 * unknown option of `cmd`, and leaves DECK and the overrides in order. */
static const struct option NO_OPTS[] = {{NULL, 0, NULL, 0}};

void session_config(lm_config *c, const char *cmd, const char *usage, int argc, char **argv) {
    char err[LM_ERRLEN];
    const char *deck = NULL, *v;
    char **ov = lm_alloc(sizeof(char *) * (size_t)(argc + 1));
    int nov = 0;
    lm_opts o;
    lm_opts_begin(&o, cmd, usage, argc, argv, "", NO_OPTS);
    if (lm_opts_next(&o, &v, err, sizeof err) != -1) lm_fail(LM_ERR_INPUT, "%s", err);
    if (o.npos < 1) lm_fail(LM_ERR_INPUT, "%s: missing DECK (usage: %s)", cmd, usage);
    deck = o.pos[0];
    for (int i = 1; i < o.npos; i++) ov[nov++] = o.pos[i];
    int rc = deck_load(c, deck, nov, ov, err, sizeof err);
    lm_free(ov);
    lm_opts_end(&o);
    if (rc) lm_fail(LM_ERR_INPUT, "%s", err);
    session_check_config(c);
}

void session_config_string(lm_config *c, const char *text, const char *name, int noverride, char *const *overrides) {
    char err[LM_ERRLEN];
    if (deck_load_string(c, text, name, noverride, overrides, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    session_check_config(c);
}

void session_check_config(lm_config *c) {
    char err[LM_ERRLEN];
    /* What this version runs: data, tensor and pipeline parallelism with ZeRO 0-2.
     * The other keys exist so that decks written for later versions parse;
     * asking for them is a clear input error, not a silent fallback. */
    int world = comm_world()->size, dp = 0;
    if (topo_sizes(world, c->tp, c->pp, c->dp, &dp, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    if (!strcmp(c->offload, "param") && c->zero != 3)
        lm_fail(LM_ERR_INPUT, "parallel.offload = param needs parallel.zero = 3 (the parameters are sharded and "
                              "gathered around their uses; parallel.zero = %d keeps them whole): use parallel.zero = 3, "
                              "or parallel.offload = optim", c->zero);
    if (!strcmp(c->device, "cuda") && !strcmp(c->precision, "fp32"))
        lm_fail(LM_ERR_INPUT, "train.precision = fp32 with train.device = cuda: the CUDA backend computes in bf16 "
                              "(fp32 master weights and optimizer state); use bf16 or auto");
    if (!strcmp(c->device, "cuda") && c->dim / c->n_heads != 64 && c->dim / c->n_heads != 128)
        lm_fail(LM_ERR_INPUT, "model.dim / model.n_heads = %d: the CUDA backend's flash attention has head_dim 64 "
                              "and 128 (train.device = cuda)", c->dim / c->n_heads);
    if (!strcmp(c->device, "cpu") && !strcmp(c->comm, "nccl"))
        lm_fail(LM_ERR_INPUT, "parallel.comm = nccl needs train.device = cuda (use auto or mpi)");
    lm_shape sh;
    lm_tp_dims td;
    shape_from_config(&sh, c);
    if (tp_dims(&sh, c->tp, &td, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    if (c->sp && c->tp > 1 && ((long)c->micro_batch * c->seq_len) % c->tp)
        lm_fail(LM_ERR_INPUT,
                "parallel.sp = true: train.micro_batch x train.seq_len = %ld rows per micro-batch must be divisible "
                "by parallel.tp = %d (sequence parallelism shards them)", (long)c->micro_batch * c->seq_len, c->tp);
    if ((long long)dp * c->micro_batch > c->global_batch) /* also keeps dp x micro_batch within int */
        lm_fail(LM_ERR_INPUT,
                "train.global_batch = %d is less than dp (%d) x train.micro_batch (%d): each data-parallel rank needs "
                "at least one micro-batch per step", c->global_batch, dp, c->micro_batch);
    if (c->global_batch % (dp * c->micro_batch))
        lm_fail(LM_ERR_INPUT,
                "train.global_batch = %d is not a multiple of dp (%d) x train.micro_batch (%d): each of the %d "
                "data-parallel rank(s) takes global_batch/dp samples in micro-batches of micro_batch",
                c->global_batch, dp, c->micro_batch, dp);
    c->dp = dp;
    int kind = !strcmp(c->schedule, "interleaved") ? LM_PP_INTERLEAVED : LM_PP_1F1B;
    if (c->pp > 1 && pp_schedule_check(kind, c->pp, c->virtual_stages, c->global_batch / (dp * c->micro_batch), err,
                                       sizeof err))
        lm_fail(LM_ERR_INPUT, "%s", err);
    lm_pp_split split;
    if (pp_split_from_deck(c, &split, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
}

/* The relative cost of the lm_head and loss, in layers: forward FLOPs per
 * token of the head (2 V D) over those of a layer (2 (2 D^2 + 2 KVD D +
 * 3 F D) + 4 T D for attention); the embedding lookup costs nothing. */
static double head_cost(const lm_config *c) {
    double D = c->dim, KVD = (double)c->n_kv_heads * (c->dim / c->n_heads), F = c->ffn_dim, V = c->vocab_size;
    double layer = 2 * (2 * D * D + 2 * KVD * D + 3 * F * D) + 4.0 * c->seq_len * D;
    return 2 * V * D / layer;
}

int pp_split_from_deck(const lm_config *c, lm_pp_split *out, char *err, size_t errlen) {
    int v = c->pp > 1 ? c->virtual_stages : 1, counts[LM_PP_MAX_CHUNKS], n = 0;
    if (c->pp > 1 && !strcmp(c->schedule, "1f1b") && c->virtual_stages != 1)
        return lm_err(err, errlen, LM_ERR_INPUT, "parallel.schedule = 1f1b runs one model chunk per stage: "
                                      "parallel.virtual_stages = %d must be 1 (or use interleaved)", c->virtual_stages);
    if (c->stage_layers[0]) {
        const char *p = c->stage_layers;
        while (*p) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p || x < 0 || x > INT_MAX || n >= LM_PP_MAX_CHUNKS)
                return lm_err(err, errlen, LM_ERR_INPUT, "parallel.stage_layers = '%s': expected a comma-separated list of layer "
                                              "counts, one per model chunk", c->stage_layers);
            counts[n++] = (int)x;
            p = end;
            while (*p == ' ') p++;
            if (*p == ',') p++;
            while (*p == ' ') p++;
        }
    }
    return pp_split_layers(c->n_layers, c->pp, v, n ? counts : NULL, n, 0.0, head_cost(c), out, err, errlen);
}

/* The device of this rank: the CPU backend (float32, or its bf16 emulation),
 * or the GPU of index local rank % GPUs on the node. A GPU that is missing
 * or unusable on any rank stops every rank with exit 1. */
static lm_device *open_device(const lm_config *c) {
    if (!strcmp(c->device, "cpu"))
        return !strcmp(c->precision, "bf16") ? device_cpu_bf16_create((size_t)c->device_memory)
                                              : device_cpu_create((size_t)c->device_memory);
    char why[512] = {0};
    lm_device *d = device_cuda_create(comm_local_rank(), why, sizeof why);
    if (d && c->device_memory) d->capacity = (size_t)c->device_memory;
    char err[LM_ERRLEN];
    snprintf(err, sizeof err, "train.device = cuda: rank %d: %s", comm_world()->rank, why);
    if (comm_agree(comm_world(), d ? 0 : 1, err, sizeof err)) lm_fail(LM_ERR_RUNTIME, "%s", err);
    return d;
}

/* Device collectives of the data-parallel, tensor-parallel and shared-kv
 * groups: NCCL on CUDA unless parallel.comm = mpi (host staging). */
static void bind_comm(lm_session *s) {
    lm_config *c = &s->cfg;
    int nccl = !strcmp(c->device, "cuda") && strcmp(c->comm, "mpi");
    lm_group *gs[5] = {s->topo.dp_group, s->topo.tp_group, s->kv_group, s->emb_group, s->topo.pp_group};
    for (int i = 0; i < 5; i++) {
        if (!gs[i]) continue;
        char why[512] = {0};
        /* pipeline sends go through MPI (staged on a GPU) in this version */
        int rc = comm_attach_device(gs[i], s->dev, i < 4 ? nccl : 0, why, sizeof why);
        char err[LM_ERRLEN];
        snprintf(err, sizeof err, "parallel.comm: NCCL bootstrap failed on rank %d: %s", comm_world()->rank, why);
        if (comm_agree(comm_world(), rc ? 1 : 0, err, sizeof err)) lm_fail(LM_ERR_RUNTIME, "%s", err);
    }
}

void session_open(lm_session *s, int B, int T, int recompute, int train) {
    lm_config *c = &s->cfg;
    lm_shape sh;
    shape_from_config(&sh, c);
    topo_create(&s->topo, c->dp, c->tp, c->pp);
    lm_tp_dims td;
    char err[LM_ERRLEN];
    if (tp_dims(&sh, c->tp, &td, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    /* ranks of a tensor-parallel group that hold the same (replicated) kv head */
    if (td.kv_replicas > 1) s->kv_group = comm_split(s->topo.tp_group, s->topo.tp_rank / td.kv_replicas, s->topo.tp_rank);
    /* pipeline: the plan, and the first and last stage's group for tied embeddings */
    s->pp_kind = !strcmp(c->schedule, "interleaved") ? LM_PP_INTERLEAVED : LM_PP_1F1B;
    s->n_micro = c->global_batch / (c->dp * c->micro_batch);
    if (pp_split_from_deck(c, &s->split, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    int pr = s->topo.pp_rank, pp = c->pp;
    if (pp > 1 && c->tie_embeddings) {
        /* every data-parallel rank of both ends at one tensor-parallel rank:
         * the stages own different elements of the table (zero.c, sum_tied) */
        int ends = pr == 0 || pr == pp - 1;
        s->emb_group = comm_split(comm_world(), ends ? s->topo.tp_rank : c->tp + comm_world()->rank,
                                  (pr == 0 ? 0 : c->dp) + s->topo.dp_rank);
    }
    /* every device op through the timing wrapper (prof.h): host<->device
     * bytes and the `transfer` region always, kernel.* with log.kernel_timers */
    s->dev = device_prof_wrap(open_device(c), c->kernel_timers);
    bind_comm(s);
    lm_tp tp = {.size = c->tp, .rank = s->topo.tp_rank, .sp = c->sp && c->tp > 1, .g = s->topo.tp_group,
                .kv = s->kv_group};
    int v = pp > 1 ? c->virtual_stages : 1;
    lm_pp ppd = {.size = pp, .rank = pr, .v = v, .split = &s->split,
                 .n_slots = pp > 1 ? pp_max_inflight(s->pp_kind, pp, v, s->n_micro, pr) : 1, .emb = s->emb_group};
    /* chunks split into dp equal, 64-byte-aligned shards */
    s->model = model_create_3d(s->dev, &sh, &tp, &ppd, B, T, recompute, (size_t)16 * (size_t)s->topo.dp,
                               train && c->zero == 3);
    /* the full model's tensors, and where this rank holds each */
    model_full_tensors(&sh, &s->full);
    s->local_of = lm_alloc(sizeof(int) * (size_t)s->full.n);
    for (int i = 0; i < s->full.n; i++) {
        lm_param *p = params_find(&s->model->params, s->full.p[i].name);
        s->local_of[i] = p ? (int)(p - s->model->params.p) : -1;
    }
    if (train) {
        lm_zero_opts zo = {.offload = zero_offload_of(c->offload), .offload_frac = c->offload_frac,
                           .prefetch = c->prefetch, .device_memory = (size_t)c->device_memory, .model = s->model};
        s->zero = zero_create_opts(&s->model->params, s->dev, s->topo.dp_group, c->zero, c->overlap_comm, &zo);
        zero_attach(s->zero, s->model);
    }
}


/* This rank's pieces of its own parameters (local order). */
static void local_pieces(lm_session *s, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
    if (s->zero) {
        zero_ckpt_tensors(s->zero, w, m, v);
        return;
    }
    /* No optimizer: whole tensors through a host float32 image of the
     * weights (session_load puts it on the device). */
    lm_params *ps = &s->model->params;
    if (!s->host_w) s->host_w = lm_alloc(ps->arena * sizeof(float));
    for (int i = 0; i < ps->n; i++) {
        lm_param *p = &ps->p[i];
        ckpt_tensor t = params_piece(p, 0, p->numel, s->host_w + p->offset);
        if (w) w[i] = t;
        t.count = 0;
        t.data = NULL;
        if (m) m[i] = t;
        if (v) v[i] = t;
    }
}

void session_ckpt_tensors(lm_session *s, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
    int n = s->model->params.n;
    ckpt_tensor *loc[3], *out[3] = {w, m, v};
    for (int k = 0; k < 3; k++) loc[k] = lm_alloc(sizeof(ckpt_tensor) * (size_t)(n ? n : 1));
    local_pieces(s, loc[0], loc[1], loc[2]);
    for (int i = 0; i < s->full.n; i++) {
        const lm_param *f = &s->full.p[i];
        ckpt_tensor none = {f->name, f->ndim, f->rows, f->cols, 0, 0, NULL, 0, 0, 0, 0, NULL, NULL, NULL};
        for (int k = 0; k < 3; k++)
            if (out[k]) out[k][i] = s->local_of[i] >= 0 ? loc[k][s->local_of[i]] : none;
    }
    for (int k = 0; k < 3; k++) lm_free(loc[k]);
}

/* The checkpoint's /config must describe the deck's model: each shape key
 * present (SPEC §5) and equal to the deck's. Returns 0, or 2 with err. */
static int check_meta(const lm_config *c, const ckpt_meta *m, const char *path, char *err, size_t errlen) {
    struct { const char *key; long have, want; } k[] = {
        {"dim", m->dim, c->dim},
        {"n_layers", m->n_layers, c->n_layers},
        {"n_heads", m->n_heads, c->n_heads},
        {"n_kv_heads", m->n_kv_heads, c->n_kv_heads},
        {"ffn_dim", m->ffn_dim, c->ffn_dim},
        {"vocab_size", m->vocab_size, c->vocab_size},
        {"tie_embeddings", m->tie_embeddings, c->tie_embeddings},
    };
    int n = (int)(sizeof k / sizeof *k), absent = 0;
    for (int i = 0; i < n - 1; i++) absent += k[i].have == 0; /* ckpt_read_meta: 0 = absent, else >= 1 */
    if (absent == n - 1)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config: missing, or without the model shape attributes (dim, n_layers, "
                                      "n_heads, n_kv_heads, ffn_dim, vocab_size; SPEC §5)", path);
    for (int i = 0; i < n - 1; i++)
        if (k[i].have == 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config attribute %s: missing (SPEC §5)", path, k[i].key);
    for (int i = 0; i < n; i++)
        if (k[i].have != k[i].want)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config: model.%s = %ld does not match the deck's %ld", path, k[i].key,
                          k[i].have, k[i].want);
    return 0;
}

/* Step `step` ends a stage and the next one resets the optimizer. */
static int resets_at(const lm_config *c, long step) {
    for (int k = 1; k < c->n_stages; k++)
        if (c->stage[k].reset_optimizer && deck_stage_start(c, k) == step) return 1;
    return 0;
}

/* Read and check one checkpoint into this rank's pieces: attributes,
 * /config against the deck, and (resume) what a restart needs: the data
 * loader position consumed_samples and tokens_seen (lamina's own attribute
 * and a SPEC one, absent from files other tools write: those serve as
 * train.init). Returns 0, or 2 with err naming the file and the rule; on
 * failure the pieces hold partial data. Collective. */
static int load_one(lm_session *s, const char *path, int resume, ckpt_tensor *tw, ckpt_tensor *tm, ckpt_tensor *tv,
                    ckpt_meta *meta, char *err, size_t errlen) {
    MPI_Comm mc = comm_mpi(comm_world());
    memset(meta, 0, sizeof *meta);
    if (ckpt_read_meta(mc, path, meta, err, errlen)) return LM_ERR_INPUT;
    int rc = check_meta(&s->cfg, meta, path, err, errlen);
    if (!rc && resume && meta->consumed_samples < 0)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute consumed_samples: missing; a restart needs the data position "
                                    "(use the file as train.init to start a new run from its weights)", path);
    if (!rc && resume && meta->tokens_seen < 0)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute tokens_seen: missing (SPEC §5)", path);
    s->fresh_moments = resume && resets_at(&s->cfg, meta->step);
    if (s->fresh_moments) resume = 0;
    if (!rc) rc = ckpt_load(mc, path, tw, resume ? tm : NULL, resume ? tv : NULL, s->full.n, err, errlen);
    if (rc) {
        free((void *)meta->deck_text);
        meta->deck_text = NULL;
    }
    return rc ? 2 : 0;
}

/* checkpoint.restart = auto: resume from the newest checkpoint that passes
 * every check (ckpt_candidates' order: what `latest` names, then step files
 * newest first). A file that fails is skipped with a warning naming it and
 * why; with none left the run stops (2) listing each one, rather than start
 * fresh and then overwrite or prune them. A `latest` that is unusable
 * (dangling link, FIFO, missing target) with no step file is also an error:
 * something was saved there. Returns 1 with path and meta of the loaded
 * file, 0 when the directory holds no checkpoint at all. */
static int restart_auto(lm_session *s, int resume, ckpt_tensor *tw, ckpt_tensor *tm, ckpt_tensor *tv, char *path,
                        size_t pathlen, ckpt_meta *meta) {
    const lm_config *c = &s->cfg;
    char note[LM_ERRLEN] = {0}, err[LM_ERRLEN];
    char **cand = NULL;
    int n = ckpt_candidates(comm_mpi(comm_world()), c->ckpt_dir, &cand, note, sizeof note);
    if (n < 0) lm_fail(LM_ERR_INPUT, "checkpoint.restart = auto: %s", note);
    if (n == 0 && note[0])
        lm_fail(LM_ERR_INPUT, "checkpoint.restart = auto: %s, and %s holds no step_*.h5 to resume from (remove it, or "
                              "set checkpoint.restart = none to start fresh)", note, c->ckpt_dir);
    int rank = comm_world()->rank;
    if (note[0] && rank == 0) fprintf(stderr, "lamina: warning: checkpoint.restart = auto: %s; looking for the newest valid step_*.h5\n", note);
    /* why each skipped file failed, for the warnings and the final error */
    size_t cap = 256 + (size_t)n * (LM_ERRLEN + 8), len = 0;
    char *why = lm_alloc(cap);
    int got = -1;
    for (int i = 0; i < n && got < 0; i++) {
        if (!load_one(s, cand[i], resume, tw, tm, tv, meta, err, sizeof err)) {
            got = i;
            break;
        }
        if (rank == 0) fprintf(stderr, "lamina: warning: checkpoint.restart = auto: skipping %s: %s\n", cand[i], err);
        len += (size_t)snprintf(why + len, cap - len, "\n  %s", err);
    }
    if (got < 0 && n > 0) {
        char *msg = lm_alloc(cap + 512);
        snprintf(msg, cap + 512, "checkpoint.restart = auto: no valid checkpoint in %s (nothing was changed there; "
                 "fix or remove the files, or set checkpoint.restart = none to start fresh):%s", c->ckpt_dir, why);
        lm_fail(LM_ERR_INPUT, "%s", msg);
    }
    if (got > 0 && rank == 0)
        fprintf(stderr, "lamina: warning: checkpoint.restart = auto: resuming from %s, an older checkpoint than the "
                "skipped one(s) above\n", cand[got]);
    if (got >= 0) snprintf(path, pathlen, "%s", cand[got]);
    lm_free(why);
    free(cand);
    return got >= 0;
}

/* train.init = DIR, a Hugging Face folder (SPEC §7): its config.json must
 * describe the deck's model as a checkpoint's /config must (check_meta's
 * keys, named by their config.json names), and each rank reads the rows
 * its pieces touch straight from the safetensors (io/hf.h: hf_load).
 * Returns 0, or 2 with err. Collective. */
static int load_hf(lm_session *s, const char *dir, ckpt_tensor *tw, char *err, size_t errlen) {
    hf_config h;
    const lm_config *c = &s->cfg;
    int rc = hf_config_read(dir, &h, err, errlen);
    if (comm_agree(comm_world(), rc, err, errlen)) return LM_ERR_INPUT;
    struct { const char *key, *deck; long have, want; } k[] = {
        {"hidden_size", "dim", h.dim, c->dim},
        {"num_hidden_layers", "n_layers", h.n_layers, c->n_layers},
        {"num_attention_heads", "n_heads", h.n_heads, c->n_heads},
        {"num_key_value_heads", "n_kv_heads", h.n_kv_heads, c->n_kv_heads},
        {"intermediate_size", "ffn_dim", h.ffn_dim, c->ffn_dim},
        {"vocab_size", "vocab_size", h.vocab_size, c->vocab_size},
        {"tie_word_embeddings", "tie_embeddings", h.tie_embeddings, c->tie_embeddings},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (k[i].have != k[i].want)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s/config.json: key %s = %ld does not match the deck's model.%s = %ld", dir,
                          k[i].key, k[i].have, k[i].deck, k[i].want);
    if (h.rope_theta != c->rope_theta || h.norm_eps != c->norm_eps)
        lm_log("lamina: warning: %s/config.json has rope_theta %g, rms_norm_eps %g; the deck's model.rope_theta %g, "
               "model.norm_eps %g are used\n", dir, h.rope_theta, h.norm_eps, c->rope_theta, c->norm_eps);
    return hf_load(comm_mpi(comm_world()), dir, tw, s->full.n, &h, NULL, NULL, err, errlen);
}

void session_load(lm_session *s, int with_optim) {
    lm_config *c = &s->cfg;
    char err[LM_ERRLEN] = {0}, path[LM_PATHLEN] = {0};
    int n = s->full.n;
    ckpt_tensor *tw = lm_alloc(sizeof(ckpt_tensor) * (size_t)n), *tm = lm_alloc(sizeof(ckpt_tensor) * (size_t)n),
                *tv = lm_alloc(sizeof(ckpt_tensor) * (size_t)n);
    session_ckpt_tensors(s, tw, tm, tv);
    ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    int found = 0, loaded = 0, resume = with_optim;
    s->ck_stage = 0;
    s->ck_stage_data_start = -1;
    s->fresh_moments = 0;
    prof_enter(PROF_CHECKPOINT);
    if (!strcmp(c->restart, "auto")) {
        found = loaded = restart_auto(s, resume, tw, tm, tv, path, sizeof path, &meta);
    } else if (strcmp(c->restart, "none")) {
        snprintf(path, sizeof path, "%s", c->restart);
        if (access(path, R_OK)) lm_fail(LM_ERR_INPUT, "checkpoint.restart: cannot read %s", path);
        found = 1;
    }
    const char *from = found ? path : strcmp(c->init, "random") ? c->init : NULL;
    if (from && !loaded) {
        resume = found && with_optim;
        int hf = !found && hf_is_folder(from);
        if (hf ? load_hf(s, from, tw, err, sizeof err) : load_one(s, from, resume, tw, tm, tv, &meta, err, sizeof err))
            lm_fail(LM_ERR_INPUT, "%s%s", found ? "checkpoint.restart: " : "train.init: ", err);
    }
    if (from) {
        resume = found && with_optim;
        long long bytes = 0;
        for (int i = 0; i < n; i++) bytes += (tw[i].count + (resume ? tm[i].count + tv[i].count : 0)) * 4LL;
        sde_add(LM_SDE_CKPT_BYTES_READ, bytes);
        if (s->zero) {
            zero_gather_loaded(s->zero, resume && !s->fresh_moments); /* each rank read its shards */
        } else {
            lm_params *ps = &s->model->params;
            for (int i = 0; i < ps->n; i++) params_set_tensor(ps, i, s->host_w + ps->p[i].offset);
        }
        if (found) {
            snprintf(s->resumed_from, sizeof s->resumed_from, "%s", from);
            s->start_step = meta.step;
            /* absent in a file another tool wrote (weights only: generate) */
            s->tokens_seen = meta.tokens_seen > 0 ? meta.tokens_seen : 0;
            s->consumed_samples = meta.consumed_samples > 0 ? meta.consumed_samples : 0;
            s->ck_stage = meta.stage;
            s->ck_stage_data_start = meta.stage_data_start;
        }
        free((void *)meta.deck_text);
        lm_log("%s %s (step %ld)%s\n", resume ? "resuming from" : "model weights from", from, meta.step,
               resume && s->fresh_moments ? "; the next stage resets the optimizer: its moments are not loaded" : "");
        prof_exit(PROF_CHECKPOINT);
    } else {
        prof_exit(PROF_CHECKPOINT);
        if (s->model->params.managed) {
            zero_init_random(s->zero, c->seed, c->init_std);
        } else {
            model_init_random(s->model, c->seed, c->init_std);
            if (s->zero) zero_master_from_weights(s->zero);
        }
    }
    lm_free(s->host_w);
    s->host_w = NULL;
    lm_free(tw);
    lm_free(tm);
    lm_free(tv);
}

long session_restart_step(const lm_config *c) {
    MPI_Comm mc = comm_mpi(comm_world());
    char err[LM_ERRLEN], note[LM_ERRLEN] = {0};
    ckpt_meta m;
    long step = -1;
    if (!strcmp(c->restart, "none")) return -1;
    if (strcmp(c->restart, "auto")) {
        if (!ckpt_read_meta(mc, c->restart, &m, err, sizeof err)) {
            step = m.step;
            free((void *)m.deck_text);
        }
        return step; /* an unreadable file fails in session_load */
    }
    char **cand = NULL;
    int n = ckpt_candidates(mc, c->ckpt_dir, &cand, note, sizeof note);
    for (int i = 0; i < n && step < 0; i++)
        if (!ckpt_read_meta(mc, cand[i], &m, err, sizeof err)) {
            step = m.step;
            free((void *)m.deck_text);
        }
    free(cand);
    return step;
}

/* The piece's values in blocks: its data, or (a piece streamed from device
 * memory, io/ckpt.h) pulled a block at a time into a bounded buffer. */
#define PIECE_BLOCK 65536
static const float *piece_block(const ckpt_tensor *t, int64_t off, int64_t n, float *buf) {
    if (t->data) return t->data + off;
    t->pull(t->ctx, buf, off, n);
    return buf;
}

/* FNV-1a over the piece's offset and bits, kept to 53 bits so that a double
 * carries it exactly through the max-reductions below. */
static double piece_hash(const ckpt_tensor *t) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t k = 0; k < 8; k++) h = (h ^ (uint64_t)((t->off >> (8 * k)) & 0xff)) * 1099511628211ull;
    float *buf = t->data ? NULL : lm_alloc(sizeof(float) * PIECE_BLOCK);
    for (int64_t o = 0; o < t->count; o += PIECE_BLOCK) {
        int64_t n = t->count - o < PIECE_BLOCK ? t->count - o : PIECE_BLOCK;
        const unsigned char *b = (const unsigned char *)piece_block(t, o, n, buf);
        for (size_t i = 0; i < (size_t)n * sizeof(float); i++) h = (h ^ b[i]) * 1099511628211ull;
    }
    lm_free(buf);
    return (double)(h >> 11);
}

/* A checksum of a tensor's values that does not depend on how its elements
 * are cut into pieces: the sum, modulo 2^40, of a hash of each element's
 * index and bits (two hashes, two sums). */
static void piece_sums(const ckpt_tensor *t, double out[2]) {
    const uint64_t M = ((uint64_t)1 << 40) - 1;
    uint64_t s0 = 0, s1 = 0;
    float *buf = t->data ? NULL : lm_alloc(sizeof(float) * PIECE_BLOCK);
    for (int64_t o = 0; o < t->count; o += PIECE_BLOCK) {
        int64_t n = t->count - o < PIECE_BLOCK ? t->count - o : PIECE_BLOCK;
        const uint32_t *b = (const uint32_t *)piece_block(t, o, n, buf);
        for (int64_t i = 0; i < n; i++) {
            uint64_t x = ((uint64_t)(t->off + o + i) << 32) ^ b[i];
            x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull, x ^= x >> 33;
            s0 = (s0 + x) & M;
            s1 = (s1 + (x >> 24)) & M;
        }
    }
    lm_free(buf);
    out[0] += (double)s0, out[1] += (double)s1;
}

/* The tied embedding's first and last stage hold its elements in
 * differently cut pieces (each stage's data-parallel ranks own the parts of
 * their own chunk layout), so piece hashes do not compare: each stage's
 * pieces' checksums are summed over the group of both stages' ranks (exact in
 * double: fewer than 2^13 terms of 2^40) and the two stages' totals compared. */
static int tied_differs(lm_session *s, const ckpt_tensor *w, const int *full_of) {
    double h[4] = {0, 0, 0, 0};
    lm_params *ps = &s->model->params;
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].gsum && ps->p[i].gsum == s->emb_group) piece_sums(&w[full_of[i]], h + (s->topo.pp_rank ? 2 : 0));
    comm_allreduce_sum_f64(s->emb_group, h, 4);
    uint64_t r[4];
    for (int k = 0; k < 4; k++) r[k] = (uint64_t)h[k] & (((uint64_t)1 << 40) - 1);
    return r[0] != r[2] || r[1] != r[3];
}

static int tied_full_index(lm_session *s) {
    for (int i = 0; i < s->full.n; i++)
        if (!strcmp(s->full.p[i].name, "model.embed_tokens.weight")) return i;
    return 0;
}

int session_check_replicas(lm_session *s, const ckpt_tensor *w, char *err, size_t errlen) {
    lm_params *ps = &s->model->params;
    int bad = -1;
    /* two passes of piece hashes: the whole tensor-parallel group (norm
     * weights) and the shared-kv groups; then the tied embeddings' first and
     * last stage (tied_differs) */
    int *full_of = lm_alloc(sizeof(int) * (size_t)(ps->n ? ps->n : 1));
    for (int i = 0; i < s->full.n; i++)
        if (s->local_of[i] >= 0) full_of[s->local_of[i]] = i;
    lm_group *groups[2] = {s->topo.tp_group, s->kv_group};
    for (int k = 0; k < 2; k++) {
        lm_group *g = groups[k];
        if (!g || g->size == 1) continue;
        double *h = lm_alloc(sizeof(double) * 2 * (size_t)(ps->n ? ps->n : 1));
        int *idx = lm_alloc(sizeof(int) * (size_t)(ps->n ? ps->n : 1)), n = 0;
        for (int i = 0; i < ps->n; i++) {
            const lm_param *p = &ps->p[i];
            int mine = k == 0 ? p->tp_split == LM_TP_NONE : p->gsum && p->gsum == g;
            if (!mine) continue;
            h[2 * n] = piece_hash(&w[full_of[i]]);
            h[2 * n + 1] = -h[2 * n];
            idx[n++] = full_of[i];
        }
        comm_allreduce_max_f64(g, h, 2 * (size_t)n);
        for (int j = 0; j < n && bad < 0; j++)
            if (h[2 * j] != -h[2 * j + 1]) bad = idx[j];
        lm_free(h);
        lm_free(idx);
    }
    if (s->emb_group && s->emb_group->size > 1 && tied_differs(s, w, full_of)) bad = tied_full_index(s);
    lm_free(full_of);
    int any = bad;
    comm_allreduce_max_i32(comm_world(), &any, 1);
    if (any < 0) return 0;
    return lm_err(err, errlen, LM_ERR_RUNTIME,
                  "replicated tensor %s differs between the ranks holding it (a bug: tensor-parallel replicas and "
                  "the tied embedding's first and last stage must stay identical); no checkpoint written", s->full.p[any].name);
}

void session_close(lm_session *s) {
    comm_detach_device(s->topo.dp_group);
    comm_detach_device(s->topo.tp_group);
    comm_free(s->kv_group);
    comm_free(s->emb_group);
    s->kv_group = s->emb_group = NULL;
    params_free(&s->full);
    lm_free(s->local_of);
    s->local_of = NULL;
    zero_destroy(s->zero);
    s->zero = NULL;
    model_destroy(s->model);
    device_destroy(s->dev);
    topo_destroy(&s->topo);
    s->model = NULL;
    s->dev = NULL;
}
