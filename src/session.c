/* session.c — see session.h. */
#include "session.h"
#include "common.h"
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

void session_config(lm_config *c, int argc, char **argv, int (*is_flag)(const char *arg, int *nargs)) {
    char err[LM_ERRLEN];
    if (argc < 1 || argv[0][0] == '-') lm_fail(LM_ERR_INPUT, "missing DECK (usage: lamina help train)");
    char **ov = lm_alloc(sizeof(char *) * (size_t)argc);
    int nov = 0;
    for (int i = 1; i < argc; i++) {
        int nargs = 0;
        if (is_flag && is_flag(argv[i], &nargs)) {
            i += nargs;
            continue;
        }
        ov[nov++] = argv[i];
    }
    int rc = deck_load(c, argv[0], nov, ov, err, sizeof err);
    lm_free(ov);
    if (rc) lm_fail(LM_ERR_INPUT, "%s", err);

    /* What this version runs: data parallelism with ZeRO 0-2 on the CPU
     * backend. The other keys exist so that decks written for later versions
     * parse; asking for them is a clear input error, not a silent fallback. */
    int world = comm_world()->size, dp = 0;
    if (c->tp != 1) lm_fail(LM_ERR_INPUT, "parallel.tp = %d: tensor parallelism is not in this version (use 1)", c->tp);
    if (c->pp != 1) lm_fail(LM_ERR_INPUT, "parallel.pp = %d: pipeline parallelism is not in this version (use 1)", c->pp);
    if (topo_sizes(world, c->tp, c->pp, c->dp, &dp, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    if (c->zero > 2) lm_fail(LM_ERR_INPUT, "parallel.zero = %d: ZeRO-3 is not in this version (use 0, 1 or 2)", c->zero);
    if (strcmp(c->offload, "none"))
        lm_fail(LM_ERR_INPUT, "parallel.offload = %s: offload is not in this version (use none)", c->offload);
    if (!strcmp(c->device, "cuda") && !strcmp(c->precision, "fp32"))
        lm_fail(LM_ERR_INPUT, "train.precision = fp32 with train.device = cuda: the CUDA backend computes in bf16 "
                              "(fp32 master weights and optimizer state); use bf16 or auto");
    if (!strcmp(c->device, "cuda") && c->dim / c->n_heads != 64 && c->dim / c->n_heads != 128)
        lm_fail(LM_ERR_INPUT, "model.dim / model.n_heads = %d: the CUDA backend's flash attention has head_dim 64 "
                              "and 128 (train.device = cuda)", c->dim / c->n_heads);
    if (!strcmp(c->device, "cpu") && !strcmp(c->comm, "nccl"))
        lm_fail(LM_ERR_INPUT, "parallel.comm = nccl needs train.device = cuda (use auto or mpi)");
    if (c->global_batch % (dp * c->micro_batch))
        lm_fail(LM_ERR_INPUT,
                "train.global_batch = %d is not a multiple of dp (%d) x train.micro_batch (%d): each of the %d "
                "data-parallel rank(s) takes global_batch/dp samples in micro-batches of micro_batch",
                c->global_batch, dp, c->micro_batch, dp);
    c->dp = dp;
}

/* The device of this rank: the CPU backend (float32, or its bf16 emulation),
 * or the GPU of index local rank % GPUs on the node. A GPU that is missing
 * or unusable on any rank stops every rank with exit 1. */
static lm_device *open_device(const lm_config *c) {
    if (!strcmp(c->device, "cpu"))
        return !strcmp(c->precision, "bf16") ? device_cpu_bf16_create(0) : device_cpu_create(0);
    char why[512] = {0};
    lm_device *d = device_cuda_create(comm_local_rank(), why, sizeof why);
    char err[LM_ERRLEN];
    snprintf(err, sizeof err, "train.device = cuda: rank %d: %s", comm_world()->rank, why);
    if (comm_agree(comm_world(), d ? 0 : 1, err, sizeof err)) lm_fail(LM_ERR_RUNTIME, "%s", err);
    return d;
}

/* Device collectives of the data-parallel group: NCCL on CUDA unless
 * parallel.comm = mpi (host staging). */
static void bind_comm(lm_session *s) {
    lm_config *c = &s->cfg;
    int nccl = !strcmp(c->device, "cuda") && strcmp(c->comm, "mpi");
    char why[512] = {0};
    int rc = comm_attach_device(s->topo.dp_group, s->dev, nccl, why, sizeof why);
    char err[LM_ERRLEN];
    snprintf(err, sizeof err, "parallel.comm: NCCL bootstrap failed on rank %d: %s", comm_world()->rank, why);
    if (comm_agree(comm_world(), rc ? 1 : 0, err, sizeof err)) lm_fail(LM_ERR_RUNTIME, "%s", err);
}

void session_open(lm_session *s, int B, int T, int recompute, int train) {
    lm_config *c = &s->cfg;
    lm_shape sh;
    shape_from_config(&sh, c);
    topo_create(&s->topo, c->dp, c->tp, c->pp);
    s->dev = open_device(c);
    bind_comm(s);
    /* chunks split into dp equal, 64-byte-aligned shards */
    s->model = model_create(s->dev, &sh, B, T, recompute, (size_t)16 * (size_t)s->topo.dp);
    if (train) {
        s->zero = zero_create(&s->model->params, s->dev, s->topo.dp_group, c->zero, c->overlap_comm);
        s->model->hooks = zero_hooks(s->zero);
    }
}


void session_ckpt_tensors(lm_session *s, ckpt_tensor *w, ckpt_tensor *m, ckpt_tensor *v) {
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
        ckpt_tensor t = {p->name, p->ndim, p->rows, p->cols, 0, (int64_t)p->numel, s->host_w + p->offset};
        if (w) w[i] = t;
        t.count = 0;
        t.data = NULL;
        if (m) m[i] = t;
        if (v) v[i] = t;
    }
}

/* The checkpoint's /config must describe the deck's model. */
static void check_meta(const lm_config *c, const ckpt_meta *m, const char *path) {
    struct { const char *key; long have, want; } k[] = {
        {"model.dim", m->dim, c->dim},
        {"model.n_layers", m->n_layers, c->n_layers},
        {"model.n_heads", m->n_heads, c->n_heads},
        {"model.n_kv_heads", m->n_kv_heads, c->n_kv_heads},
        {"model.ffn_dim", m->ffn_dim, c->ffn_dim},
        {"model.vocab_size", m->vocab_size, c->vocab_size},
        {"model.tie_embeddings", m->tie_embeddings, c->tie_embeddings},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (k[i].have != k[i].want)
            lm_fail(LM_ERR_INPUT, "%s: /config: %s = %ld does not match the deck's %ld", path, k[i].key, k[i].have,
                    k[i].want);
}

void session_load(lm_session *s, int with_optim) {
    lm_config *c = &s->cfg;
    lm_group *w = comm_world();
    char err[LM_ERRLEN] = {0}, path[LM_PATHLEN] = {0};
    int found = 0;
    if (!strcmp(c->restart, "auto")) {
        found = ckpt_find_latest(c->ckpt_dir, path, sizeof path, err, sizeof err);
        if (found < 0) lm_fail(LM_ERR_INPUT, "checkpoint.restart = auto: %s", err);
    } else if (strcmp(c->restart, "none")) {
        snprintf(path, sizeof path, "%s", c->restart);
        if (access(path, R_OK)) lm_fail(LM_ERR_INPUT, "checkpoint.restart: cannot read %s", path);
        found = 1;
    }
    int n = s->model->params.n;
    ckpt_tensor *tw = lm_alloc(sizeof(ckpt_tensor) * (size_t)n), *tm = lm_alloc(sizeof(ckpt_tensor) * (size_t)n),
                *tv = lm_alloc(sizeof(ckpt_tensor) * (size_t)n);
    session_ckpt_tensors(s, tw, tm, tv);
    const char *from = found ? path : strcmp(c->init, "random") ? c->init : NULL;
    if (from) {
        ckpt_meta meta;
        memset(&meta, 0, sizeof meta);
        if (ckpt_read_meta(comm_mpi(w), from, &meta, err, sizeof err))
            lm_fail(LM_ERR_INPUT, "%s%s", found ? "" : "train.init: ", err);
        check_meta(c, &meta, from);
        int resume = found && with_optim;
        if (ckpt_load(comm_mpi(w), from, tw, resume ? tm : NULL, resume ? tv : NULL, n, err, sizeof err))
            lm_fail(LM_ERR_INPUT, "%s%s", found ? "" : "train.init: ", err);
        if (s->zero) {
            zero_gather_loaded(s->zero, resume); /* each rank read its shards */
        } else {
            lm_params *ps = &s->model->params;
            for (int i = 0; i < n; i++) params_set_tensor(ps, i, s->host_w + ps->p[i].offset);
        }
        if (found) {
            snprintf(s->resumed_from, sizeof s->resumed_from, "%s", from);
            s->start_step = meta.step;
            s->tokens_seen = meta.tokens_seen;
            s->consumed_samples = meta.consumed_samples;
        }
        free((void *)meta.deck_text);
        lm_log("%s %s (step %ld)\n", resume ? "resuming from" : "model weights from", from, meta.step);
    } else {
        model_init_random(s->model, c->seed, c->init_std);
        if (s->zero) zero_weights_changed(s->zero);
    }
    lm_free(s->host_w);
    s->host_w = NULL;
    lm_free(tw);
    lm_free(tm);
    lm_free(tv);
}

void session_close(lm_session *s) {
    comm_detach_device(s->topo.dp_group);
    zero_destroy(s->zero);
    s->zero = NULL;
    model_destroy(s->model);
    device_destroy(s->dev);
    topo_destroy(&s->topo);
    s->model = NULL;
    s->dev = NULL;
}
