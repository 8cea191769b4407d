/* model.c — LLaMA forward/backward over the device interface (SPEC §3).
 *
 * Per layer, with n = rmsnorm(.):
 *   a = x + Wo . attn(rope(Wq n1), rope(Wk n1), Wv n1),  n1 = rmsnorm(x; ln1)
 *   y = a + Wdown . (silu(Wgate n2) * Wup n2),           n2 = rmsnorm(a; ln2)
 * Backward runs the same graph in reverse with one residual-gradient buffer
 * dh: each branch's rmsnorm backward adds its input gradient into dh in place,
 * which turns d(y) into d(a) and then d(a) into d(x).
 * The normalised activations n1, n2 and the SwiGLU output are not kept: they
 * are one cheap elementwise pass to recompute, and keeping them would cost
 * 2*D + F floats per token per layer. */
#include "model.h"
#include "common.h"
#include "rng.h"
#include <math.h>
#include <string.h>

void shape_from_config(lm_shape *s, const lm_config *c) {
    s->dim = c->dim;
    s->n_layers = c->n_layers;
    s->n_heads = c->n_heads;
    s->n_kv_heads = c->n_kv_heads;
    s->head_dim = c->dim / c->n_heads;
    s->ffn_dim = c->ffn_dim;
    s->vocab_size = c->vocab_size;
    s->norm_eps = (float)c->norm_eps;
    s->rope_theta = c->rope_theta;
    s->tied = c->tie_embeddings;
    s->embeddings_only = !strcmp(c->trainable, "embeddings");
}

void model_full_tensors(const lm_shape *s, lm_params *ps) {
    int64_t D = s->dim, KVD = (int64_t)s->n_kv_heads * s->head_dim, F = s->ffn_dim;
    char name[LM_NAMELEN];
    params_add(ps, "model.embed_tokens.weight", 2, s->vocab_size, D);
    for (int l = 0; l < s->n_layers; l++) {
        struct { const char *n; int nd; int64_t r, c; } t[9] = {
            {"input_layernorm.weight", 1, D, 1},        {"self_attn.q_proj.weight", 2, D, D},
            {"self_attn.k_proj.weight", 2, KVD, D},     {"self_attn.v_proj.weight", 2, KVD, D},
            {"self_attn.o_proj.weight", 2, D, D},       {"post_attention_layernorm.weight", 1, D, 1},
            {"mlp.gate_proj.weight", 2, F, D},          {"mlp.up_proj.weight", 2, F, D},
            {"mlp.down_proj.weight", 2, D, F}};
        for (int i = 0; i < 9; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, t[i].n);
            params_add(ps, name, t[i].nd, t[i].r, t[i].c);
        }
    }
    params_add(ps, "model.norm.weight", 1, D, 1);
    if (!s->tied) params_add(ps, "lm_head.weight", 2, s->vocab_size, D);
}

/* Tensor-parallel split (Megatron-LM): column-parallel q/k/v/gate/up hold a
 * slice of output rows, row-parallel o/down a slice of input columns;
 * attention heads split with them. Key/value heads split when there are at
 * least tp of them; with fewer, each rank holds (a replica of) the one its
 * query heads read. Embedding and lm_head hold a slice of vocabulary rows,
 * the vocabulary padded to a multiple of tp. */
int tp_dims(const lm_shape *s, int tp, lm_tp_dims *o, char *err, size_t errlen) {
    if (s->n_heads % tp)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.n_heads = %d is not divisible by parallel.tp = %d: attention heads are split across "
                      "the tensor-parallel ranks", s->n_heads, tp);
    if (s->ffn_dim % tp)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.ffn_dim = %d is not divisible by parallel.tp = %d: the MLP's columns are split across "
                      "the tensor-parallel ranks", s->ffn_dim, tp);
    if (s->n_kv_heads >= tp ? s->n_kv_heads % tp : tp % s->n_kv_heads)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.n_kv_heads = %d with parallel.tp = %d: key/value heads are split when n_kv_heads >= tp "
                      "(tp must divide it) and replicated when fewer (n_kv_heads must divide tp)", s->n_kv_heads, tp);
    o->H = s->n_heads / tp;
    o->kv_replicas = s->n_kv_heads >= tp ? 1 : tp / s->n_kv_heads;
    o->KV = s->n_kv_heads >= tp ? s->n_kv_heads / tp : 1;
    o->F = s->ffn_dim / tp;
    o->Vp = (s->vocab_size + tp - 1) / tp * tp;
    o->V = o->Vp / tp;
    return 0;
}

/* Mark p as this rank's block of a full [full_rows, full_cols] tensor. */
static void split(lm_param *p, int how, int64_t full_rows, int64_t full_cols, int64_t row0, int64_t col0,
                  int64_t valid_rows) {
    p->tp_split = how;
    p->full_rows = full_rows;
    p->full_cols = full_cols;
    p->row0 = row0;
    p->col0 = col0;
    p->valid_rows = valid_rows;
}

static void add_params(lm_model *m, size_t granule) {
    const lm_shape *s = &m->s;
    const lm_tp_dims *L = &m->ld;
    lm_params *ps = &m->params;
    int tp = m->tp.size, tr = m->tp.rank, on = tp > 1 ? LM_TP_COLUMN_PARALLEL : LM_TP_NONE;
    int oc = tp > 1 ? LM_TP_ROW_PARALLEL : LM_TP_NONE;
    int64_t D = s->dim, hd = s->head_dim, KVD = (int64_t)s->n_kv_heads * hd, F = s->ffn_dim, V = s->vocab_size;
    int64_t Hl = (int64_t)L->H * hd, KVl = (int64_t)L->KV * hd, Fl = L->F, Vl = L->V;
    int64_t kv0 = (s->n_kv_heads >= tp ? (int64_t)tr * L->KV : (int64_t)(tr / L->kv_replicas)) * hd;
    int64_t v0 = (int64_t)tr * Vl, vvalid = V - v0 < 0 ? 0 : V - v0 > Vl ? Vl : V - v0;
    /* replicas with partial gradients: kv heads shared by several ranks;
     * norm weights under sequence parallelism (each rank sees its rows) */
    lm_group *kv_sum = L->kv_replicas > 1 ? m->tp.kv : NULL, *norm_sum = m->tp.sp && tp > 1 ? m->tp.g : NULL;
    int kv_here = tr % L->kv_replicas == 0, norm_here = tr == 0;
    char name[LM_NAMELEN];
    lm_param *p;
    /* Indices first, pointers after chunks_build (params_add reallocates). */
    int *at = lm_alloc(sizeof(int) * (size_t)(s->n_layers + 3)); /* layer l's first index; embed, norm, head */
    for (int l = 0; l < s->n_layers + 3; l++) at[l] = -1;
    int *E = &at[s->n_layers], *N = &at[s->n_layers + 1], *HD = &at[s->n_layers + 2];
    /* Tied embeddings split over stages: the last stage holds a copy of the
     * table as its lm_head, its gradient summed with the first stage's. */
    int tied_copy = s->tied && m->pp.size > 1;
    if (m->first_chunk) {
        *E = ps->n;
        p = params_add(ps, "model.embed_tokens.weight", 2, Vl, D);
        split(p, on, V, D, v0, 0, vvalid);
        if (tied_copy) p->gsum = m->pp.emb;
    }
    for (int l = 0; l < s->n_layers; l++) {
        if (!m->owns[l]) continue;
        at[l] = ps->n;
#define P(suffix, nd, r, c)                                               \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);         \
    p = params_add(ps, name, nd, r, c)
        P("input_layernorm.weight", 1, D, 1);
        p->gsum = norm_sum, p->norm_here = norm_here;
        P("self_attn.q_proj.weight", 2, Hl, D);
        split(p, on, D, D, tr * Hl, 0, Hl);
        P("self_attn.k_proj.weight", 2, KVl, D);
        split(p, on, KVD, D, kv0, 0, KVl);
        p->gsum = kv_sum, p->norm_here = kv_here;
        P("self_attn.v_proj.weight", 2, KVl, D);
        split(p, on, KVD, D, kv0, 0, KVl);
        p->gsum = kv_sum, p->norm_here = kv_here;
        P("self_attn.o_proj.weight", 2, D, Hl);
        split(p, oc, D, D, 0, tr * Hl, D);
        P("post_attention_layernorm.weight", 1, D, 1);
        p->gsum = norm_sum, p->norm_here = norm_here;
        P("mlp.gate_proj.weight", 2, Fl, D);
        split(p, on, F, D, tr * Fl, 0, Fl);
        P("mlp.up_proj.weight", 2, Fl, D);
        split(p, on, F, D, tr * Fl, 0, Fl);
        P("mlp.down_proj.weight", 2, D, Fl);
        split(p, oc, D, F, 0, tr * Fl, D);
#undef P
    }
    if (m->last_chunk) {
        *N = ps->n;
        p = params_add(ps, "model.norm.weight", 1, D, 1);
        p->gsum = norm_sum, p->norm_here = norm_here;
        if (!s->tied || tied_copy) {
            *HD = ps->n;
            p = params_add(ps, s->tied ? "model.embed_tokens.weight" : "lm_head.weight", 2, Vl, D);
            split(p, on, V, D, v0, 0, vvalid);
            if (tied_copy) p->gsum = m->pp.emb, p->norm_here = 0; /* the first stage counts it */
        }
    }
    /* train.trainable = embeddings (Colossal-LLaMA-2's freeze_non_embeds_params):
     * everything but the embedding table and lm_head is frozen */
    if (s->embeddings_only)
        for (int i = 0; i < ps->n; i++)
            ps->p[i].frozen = strcmp(ps->p[i].name, "model.embed_tokens.weight") && strcmp(ps->p[i].name, "lm_head.weight");
    chunks_build_on(ps, granule, m->dev);

    m->embed = *E >= 0 ? &ps->p[*E] : NULL;
    m->layer = lm_alloc(sizeof(lm_layer_params) * (size_t)s->n_layers);
    for (int l = 0; l < s->n_layers; l++) {
        if (at[l] < 0) continue;
        lm_param *q = &ps->p[at[l]];
        m->layer[l] = (lm_layer_params){q, q + 1, q + 2, q + 3, q + 4, q + 5, q + 6, q + 7, q + 8};
    }
    m->norm = *N >= 0 ? &ps->p[*N] : NULL;
    m->lm_head = *HD >= 0 ? &ps->p[*HD] : m->last_chunk ? m->embed : NULL;
    lm_free(at);
    /* N of SPEC §6, of the full model: everything but the input embedding,
     * lm_head counted also when tied */
    m->n_matmul_params = (int64_t)s->n_layers * (2 * D * D + 2 * KVD * D + 3 * F * D + 2 * D) + D + V * D;
}

/* n elements of the compute dtype, or of float32 (statistics, tables). */
static void *dalloc(lm_model *m, size_t n) {
    size_t bytes = n * lm_dtype_size(m->dev->dtype);
    m->act_bytes += bytes;
    return m->dev->alloc(m->dev, bytes);
}

static float *falloc(lm_model *m, size_t n) {
    m->act_bytes += n * sizeof(float);
    return m->dev->alloc(m->dev, n * sizeof(float));
}

/* Per-layer activations: the residual stream (x, a) and its statistics on
 * Rx rows (sharded with sequence parallelism), the rest on all R rows with
 * this rank's heads and ffn columns. */
static void alloc_layer_acts(lm_model *m, lm_layer_acts *a, int with_x, int rest) {
    size_t R = (size_t)m->R, Rx = (size_t)m->Rx, D = (size_t)m->s.dim, F = (size_t)m->ld.F;
    size_t HD = (size_t)m->ld.H * (size_t)m->s.head_dim, KVD = (size_t)m->ld.KV * (size_t)m->s.head_dim;
    if (with_x) a->x = dalloc(m, Rx * D);
    if (!rest) return;
    a->rstd1 = falloc(m, Rx);
    a->q = dalloc(m, R * HD);
    a->k = dalloc(m, R * KVD);
    a->v = dalloc(m, R * KVD);
    a->att = dalloc(m, R * HD);
    a->lse = falloc(m, (size_t)m->B * (size_t)m->ld.H * (size_t)m->T);
    a->a = dalloc(m, Rx * D);
    a->rstd2 = falloc(m, Rx);
    a->g = dalloc(m, R * F);
    a->u = dalloc(m, R * F);
}

/* RoPE tables in double, rounded once: angle(p, i) = p * theta^(-2i/hd). */
static void rope_tables(lm_model *m) {
    int half = m->s.head_dim / 2;
    float *c = lm_alloc(sizeof(float) * (size_t)m->T * (size_t)half);
    float *s = lm_alloc(sizeof(float) * (size_t)m->T * (size_t)half);
    for (int p = 0; p < m->T; p++)
        for (int i = 0; i < half; i++) {
            double inv = pow(m->s.rope_theta, -2.0 * i / m->s.head_dim);
            double ang = (double)p * inv;
            c[p * half + i] = (float)cos(ang);
            s[p * half + i] = (float)sin(ang);
        }
    m->rope_cos = falloc(m, (size_t)m->T * (size_t)half);
    m->rope_sin = falloc(m, (size_t)m->T * (size_t)half);
    m->dev->to_device(m->dev, m->rope_cos, c, sizeof(float) * (size_t)m->T * (size_t)half);
    m->dev->to_device(m->dev, m->rope_sin, s, sizeof(float) * (size_t)m->T * (size_t)half);
    lm_free(c);
    lm_free(s);
}

/* Which local chunk holds each layer (pp: model chunk j * pp + stage). */
static void pipeline_place(lm_model *m) {
    int L = m->s.n_layers;
    m->owns = lm_alloc(sizeof(int) * (size_t)L);
    if (m->pp.size == 1) {
        for (int l = 0; l < L; l++) m->owns[l] = 1;
        m->first_chunk = m->last_chunk = 1;
        return;
    }
    const lm_pp_split *sp = m->pp.split;
    for (int j = 0; j < m->pp.v; j++) {
        int c = j * m->pp.size + m->pp.rank;
        for (int l = sp->first[c]; l < sp->first[c] + sp->count[c]; l++) m->owns[l] = j + 1;
    }
    m->first_chunk = m->pp.rank == 0;
    m->last_chunk = m->pp.rank == m->pp.size - 1;
}

/* Layers [*lo, *hi) of local chunk j. */
static void chunk_layers(const lm_model *m, int j, int *lo, int *hi) {
    if (m->pp.size == 1) {
        *lo = 0;
        *hi = m->s.n_layers;
        return;
    }
    int c = j * m->pp.size + m->pp.rank;
    *lo = m->pp.split->first[c];
    *hi = *lo + m->pp.split->count[c];
}

/* Is local chunk j the model's last chunk? */
static int is_last(const lm_model *m, int j) { return m->last_chunk && j == m->pp.v - 1; }

static lm_layer_acts *ACTS(lm_model *m, int k, int l) { return &m->acts[(size_t)k * (size_t)m->s.n_layers + (size_t)l]; }

lm_model *model_create_3d(lm_device *dev, const lm_shape *s, const lm_tp *tp, const lm_pp *pp, int B, int T,
                          int recompute, size_t granule, int managed) {
    lm_model *m = lm_alloc(sizeof *m);
    m->params.managed = managed;
    m->s = *s;
    m->tp = tp && tp->size > 1 ? *tp : (lm_tp){.size = 1};
    m->pp = pp && pp->size > 1 ? *pp : (lm_pp){.size = 1, .v = 1, .n_slots = 1};
    char err[LM_ERRLEN];
    if (tp_dims(s, m->tp.size, &m->ld, err, sizeof err)) lm_abort(LM_ERR_INPUT, "%s", err);
    m->dev = dev;
    m->B = B;
    m->T = T;
    m->R = B * T;
    if (m->tp.sp && m->R % m->tp.size)
        lm_abort(LM_ERR_INPUT, "sequence parallelism: %d rows per micro-batch do not split over tp = %d", m->R,
                 m->tp.size);
    m->Rx = m->tp.sp ? m->R / m->tp.size : m->R;
    m->r0 = m->tp.sp ? m->tp.rank * m->Rx : 0;
    m->recompute = recompute;
    pipeline_place(m);
    add_params(m, granule);

    size_t R = (size_t)m->R, Rx = (size_t)m->Rx, D = (size_t)s->dim, F = (size_t)m->ld.F;
    size_t HD = (size_t)m->ld.H * (size_t)s->head_dim, KVD = (size_t)m->ld.KV * (size_t)s->head_dim;
    int K = m->pp.n_slots;
    m->acts = lm_alloc(sizeof(lm_layer_acts) * (size_t)K * (size_t)s->n_layers);
    for (int k = 0; k < K; k++)
        for (int l = 0; l < s->n_layers; l++)
            if (m->owns[l]) alloc_layer_acts(m, ACTS(m, k, l), 1, !recompute);
    m->act_kept = m->act_bytes; /* the per-layer activations */
    m->h_final = lm_alloc(sizeof(void *) * (size_t)K);
    if (m->last_chunk)
        for (int k = 0; k < K; k++) m->h_final[k] = dalloc(m, Rx * D);
    if (recompute) {
        alloc_layer_acts(m, &m->scratch_acts, 0, 1);
        m->scratch_out = dalloc(m, Rx * D);
    }
    m->rstd_final = falloc(m, Rx);
    m->n = dalloc(m, R * D);
    m->dn = dalloc(m, R * D);
    if (m->tp.sp) { /* dh is this rank's block of the gathered gradient */
        m->dhf = dalloc(m, R * D);
        m->dh = lm_at(dev, m->dhf, (size_t)m->r0 * D);
    } else {
        m->dh = dalloc(m, R * D);
    }
    m->f1 = dalloc(m, R * F);
    m->f2 = dalloc(m, R * F);
    m->f3 = dalloc(m, R * F);
    m->dq = dalloc(m, R * HD);
    m->dk = dalloc(m, R * KVD);
    m->dv = dalloc(m, R * KVD);
    m->datt = dalloc(m, R * HD);
    if (s->embeddings_only) m->dw_frozen = dalloc(m, D);
    /* The head works on blocks of rows so that logits never exceed ~16 MiB. */
    size_t V = (size_t)m->ld.V;
    size_t rows = ((size_t)16 << 20) / (lm_dtype_size(dev->dtype) * V);
    if (rows < 16) rows = 16;
    if (rows > R) rows = R;
    m->head_rows = (int)rows;
    if (m->last_chunk) m->logits = dalloc(m, rows * V);
    if (m->tp.size > 1) {
        m->lids = lm_alloc(sizeof(int32_t) * R);
        m->tloc = lm_alloc(sizeof(int32_t) * rows);
        m->xstats = lm_alloc(sizeof(float) * 3 * rows * (size_t)m->tp.size);
        m->lse = lm_alloc(sizeof(float) * rows);
    }
    rope_tables(m);
    return m;
}

lm_model *model_create_tp(lm_device *dev, const lm_shape *s, const lm_tp *tp, int B, int T, int recompute,
                          size_t granule) {
    return model_create_3d(dev, s, tp, NULL, B, T, recompute, granule, 0);
}

lm_model *model_create(lm_device *dev, const lm_shape *s, int B, int T, int recompute, size_t granule) {
    return model_create_3d(dev, s, NULL, NULL, B, T, recompute, granule, 0);
}

static void free_layer_acts(lm_device *d, lm_layer_acts *a) {
    void *bufs[] = {a->x, a->rstd1, a->q, a->k, a->v, a->att, a->lse, a->a, a->rstd2, a->g, a->u};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) d->free(d, bufs[i]);
}

void model_destroy(lm_model *m) {
    if (!m) return;
    lm_device *d = m->dev;
    for (int k = 0; k < m->pp.n_slots; k++) {
        for (int l = 0; l < m->s.n_layers; l++) free_layer_acts(d, ACTS(m, k, l));
        if (m->h_final[k]) d->free(d, m->h_final[k]);
    }
    m->scratch_acts.x = NULL; /* a view of a slot's x */
    free_layer_acts(d, &m->scratch_acts);
    void *ws[] = {m->scratch_out, m->rstd_final, m->n, m->dn, m->dhf ? m->dhf : m->dh, m->f1, m->f2, m->f3,
                   m->dq, m->dk, m->dv, m->datt, m->logits, m->rope_cos, m->rope_sin, m->dw_frozen};
    for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
        if (ws[i]) d->free(d, ws[i]);
    lm_free(m->h_final);
    lm_free(m->lids);
    lm_free(m->tloc);
    lm_free(m->xstats);
    lm_free(m->lse);
    lm_free(m->acts);
    lm_free(m->layer);
    lm_free(m->owns);
    params_free(&m->params);
    lm_free(m);
}

void model_init_values(const lm_param *p, uint64_t seed, double std, size_t a, size_t b, float *out) {
    uint64_t key = rng_stream(seed, p->name);
#pragma omp parallel for schedule(static)
    for (size_t j = a; j < b; j++) {
        int64_t gi = params_full_index(p, j); /* layout-independent: by full-tensor index */
        out[j - a] = gi < 0 ? 0.0f : p->ndim == 1 ? 1.0f : (float)(std * rng_normal(key, (uint64_t)gi));
    }
}

void model_init_random(lm_model *m, uint64_t seed, double std) {
    size_t most = 0;
    for (int i = 0; i < m->params.n; i++)
        if (m->params.p[i].numel > most) most = m->params.p[i].numel;
    float *h = lm_alloc(sizeof(float) * most);
    for (int i = 0; i < m->params.n; i++) {
        lm_param *p = &m->params.p[i];
        model_init_values(p, seed, std, 0, p->numel, h);
        params_set_tensor(&m->params, i, h);
    }
    lm_free(h);
}

/* Layer l's activations in slot k for backward: its own set, or the
 * scratch set (recompute) around the slot's kept input. */
static lm_layer_acts *acts_of(lm_model *m, int k, int l) {
    if (!m->recompute) return ACTS(m, k, l);
    lm_layer_acts *a = &m->scratch_acts;
    a->x = ACTS(m, k, l)->x;
    return a;
}

/* The gradient buffer of p for this backward, and the signal that it is
 * complete (see lm_grad_hooks). NULL for a frozen tensor: its weight
 * gradient is not computed (activation gradients still flow through it). */
static void *G(lm_model *m, lm_param *p) {
    if (p->frozen) return NULL;
    return m->hooks ? m->hooks->grad(m->hooks->ctx, p) : p->g;
}

/* dW += A^T B (gemm_tn), skipped for a frozen tensor. */
static void WGRAD(lm_model *m, lm_param *p, const void *a, const void *b, int M, int N, int K) {
    void *g = G(m, p);
    if (g) m->dev->gemm_tn(m->dev, g, a, b, M, N, K, 1.0f);
}

/* A norm's weight gradient buffer: its own, or for a frozen norm a scratch
 * that is never read (rmsnorm_bwd computes the input gradient with it). */
static void *NGRAD(lm_model *m, lm_param *p) {
    void *g = G(m, p);
    return g ? g : m->dw_frozen;
}
static void DONE(lm_model *m, lm_param *p) {
    if (m->hooks) m->hooks->done(m->hooks->ctx, p);
}

/* The weights of n tensors in place around their use (lm_param_hooks). */
static void FETCH(lm_model *m, lm_param *const *ps, int n) {
    if (m->phooks) m->phooks->fetch(m->phooks->ctx, ps, n);
}
static void RELEASE(lm_model *m, lm_param *const *ps, int n) {
    if (m->phooks) m->phooks->release(m->phooks->ctx, ps, n);
}
/* Layer l's nine tensors (lm_layer_params is nine pointers). */
static lm_param *const *LAYER_PS(lm_model *m, int l) { return (lm_param *const *)&m->layer[l]; }
#define LAYER_NP ((int)(sizeof(lm_layer_params) / sizeof(lm_param *)))

/* ------------------------------------------------ tensor-parallel pieces */

static size_t ES(const lm_model *m) { return lm_dtype_size(m->dev->dtype); }

static void tp_wait_coll(lm_model *m, int kind, void *x, size_t n) {
    lm_req q;
    if (kind == 0) comm_dev_iallreduce_sum(m->tp.g, x, n, m->dev->dtype, &q);
    if (kind == 1) comm_dev_ireduce_scatter_sum(m->tp.g, x, n, m->dev->dtype, &q);
    if (kind == 2) comm_dev_iallgather(m->tp.g, x, n, m->dev->dtype, &q);
    comm_wait(&q);
}

/* m->n = rmsnorm(x) on all R rows. With sequence parallelism each rank
 * normalises its Rx rows into its block of n and the blocks are
 * all-gathered (Megatron's all-gather before the column-parallel linears). */
static void norm_full(lm_model *m, const void *x, float *rstd, const void *w) {
    lm_device *d = m->dev;
    size_t D = (size_t)m->s.dim;
    d->rmsnorm_fwd(d, lm_at(d, m->n, (size_t)m->r0 * D), rstd, x, w, m->Rx, (int)D, m->s.norm_eps);
    if (m->tp.sp) tp_wait_coll(m, 2, m->n, (size_t)m->Rx * D);
}

/* out = res + x W^T for a row-parallel linear (x [R, K] holds this rank's
 * columns of the input, W its columns): the ranks' partial products are
 * summed by an all-reduce (rank 0 adds the residual first), or with
 * sequence parallelism by a reduce-scatter that leaves each rank its rows,
 * its residual rows added to its block beforehand. res and out are
 * residual-stream buffers of Rx rows; dn is the scratch. */
static void row_parallel(lm_model *m, void *out, const void *res, const void *x, const void *w, int K) {
    lm_device *d = m->dev;
    int R = m->R, D = m->s.dim;
    size_t RD = (size_t)m->Rx * (size_t)D;
    if (m->tp.size == 1) {
        d->gemm_nt_add(d, out, res, x, w, R, D, K);
    } else if (!m->tp.sp) {
        if (m->tp.rank == 0)
            d->gemm_nt_add(d, out, res, x, w, R, D, K);
        else
            d->gemm_nt(d, out, x, w, R, D, K, 0.0f);
        tp_wait_coll(m, 0, out, RD);
    } else {
        d->gemm_nt(d, m->dn, x, w, R, D, K, 0.0f);
        d->add(d, lm_at(d, m->dn, (size_t)m->r0 * D), res, RD);
        tp_wait_coll(m, 1, m->dn, RD);
        d->copy(d, out, m->dn, RD * ES(m));
    }
}

/* The input gradient of the column-parallel linears: dn holds this rank's
 * partial sums [R, D] (over its output columns); the full sums are
 * all-reduced, or with sequence parallelism reduce-scattered (this rank's
 * Rx rows then in dn's first rows). */
static void col_parallel_bwd(lm_model *m, void *dn) {
    if (m->tp.size == 1) return;
    size_t RD = (size_t)m->Rx * (size_t)m->s.dim;
    tp_wait_coll(m, m->tp.sp ? 1 : 0, dn, RD);
}

/* The residual stream's gradient on all R rows (row-parallel backward reads
 * every row): dh itself, or with sequence parallelism the blocks of dhf
 * (dh is this rank's block of it) all-gathered. */
static void *dh_full(lm_model *m) {
    if (!m->tp.sp) return m->dh;
    tp_wait_coll(m, 2, m->dhf, (size_t)m->Rx * (size_t)m->s.dim);
    return m->dhf;
}

/* Token ids as this rank's embedding rows: id - v0 inside its vocabulary
 * slice, -1 elsewhere (that row then comes from another rank's sum). */
static const int32_t *local_ids(lm_model *m, const int32_t *ids) {
    if (m->tp.size == 1) return ids;
    int64_t v0 = m->embed->row0, vv = m->embed->valid_rows;
    for (int r = 0; r < m->R; r++) m->lids[r] = ids[r] >= v0 && ids[r] < v0 + vv ? (int32_t)(ids[r] - v0) : -1;
    return m->lids;
}

/* One layer forward from a->x, filling a's activations; writes the layer
 * output (the next residual) to out. */
static void layer_forward(lm_model *m, int l, lm_layer_acts *a, void *out) {
    lm_device *d = m->dev;
    const lm_shape *s = &m->s;
    const lm_layer_params *P = &m->layer[l];
    int R = m->R, D = s->dim, F = m->ld.F, H = m->ld.H, KV = m->ld.KV, hd = s->head_dim;
    int HD = H * hd, KVD = KV * hd;

    norm_full(m, a->x, a->rstd1, P->ln1->w);
    d->gemm_nt(d, a->q, m->n, P->q->w, R, HD, D, 0.0f);
    d->gemm_nt(d, a->k, m->n, P->k->w, R, KVD, D, 0.0f);
    d->gemm_nt(d, a->v, m->n, P->v->w, R, KVD, D, 0.0f);
    d->rope_fwd(d, a->q, m->rope_cos, m->rope_sin, R, m->T, H, hd);
    d->rope_fwd(d, a->k, m->rope_cos, m->rope_sin, R, m->T, KV, hd);
    d->attention_fwd(d, a->att, a->lse, a->q, a->k, a->v, m->B, m->T, H, KV, hd);
    row_parallel(m, a->a, a->x, a->att, P->o->w, HD);  /* a = x + Wo att */

    norm_full(m, a->a, a->rstd2, P->ln2->w);
    d->gemm_nt(d, a->g, m->n, P->gate->w, R, F, D, 0.0f);
    d->gemm_nt(d, a->u, m->n, P->up->w, R, F, D, 0.0f);
    d->swiglu_fwd(d, m->f1, a->g, a->u, (size_t)R * (size_t)F);
    row_parallel(m, out, a->a, m->f1, P->down->w, F); /* out = a + Wdown f1 */
}

/* Backward of one layer: on entry dh = d(layer output); on exit dh = d(x).
 * Parameter gradients accumulate. */
static void layer_backward(lm_model *m, int l, lm_layer_acts *a) {
    lm_device *d = m->dev;
    const lm_shape *s = &m->s;
    const lm_layer_params *P = &m->layer[l];
    int R = m->R, Rx = m->Rx, D = s->dim, F = m->ld.F, H = m->ld.H, KV = m->ld.KV, hd = s->head_dim;
    int HD = H * hd, KVD = KV * hd;
    size_t RF = (size_t)R * (size_t)F;

    /* MLP branch: y = a + Wdown (silu(g) * u) */
    void *dy = dh_full(m);
    norm_full(m, a->a, a->rstd2, P->ln2->w);                                 /* n2 again */
    d->swiglu_fwd(d, m->f1, a->g, a->u, RF);                                 /* f1 = swiglu */
    WGRAD(m, P->down, dy, m->f1, R, D, F);
    DONE(m, P->down);
    d->gemm_nn(d, m->f2, dy, P->down->w, R, D, F, 0.0f);                     /* f2 = d swiglu */
    d->swiglu_bwd(d, m->f1, m->f3, m->f2, a->g, a->u, RF);                   /* f1 = dg, f3 = du */
    WGRAD(m, P->gate, m->f1, m->n, R, F, D);
    DONE(m, P->gate);
    WGRAD(m, P->up, m->f3, m->n, R, F, D);
    DONE(m, P->up);
    d->gemm_nn(d, m->dn, m->f1, P->gate->w, R, F, D, 0.0f);
    d->gemm_nn(d, m->dn, m->f3, P->up->w, R, F, D, 1.0f);
    col_parallel_bwd(m, m->dn);
    d->rmsnorm_bwd(d, m->dh, NGRAD(m, P->ln2), m->dn, a->a, P->ln2->w, a->rstd2, Rx, D); /* dh = d(a) */
    DONE(m, P->ln2);

    /* Attention branch: a = x + Wo att */
    dy = dh_full(m);
    WGRAD(m, P->o, dy, a->att, R, D, HD);
    DONE(m, P->o);
    d->gemm_nn(d, m->datt, dy, P->o->w, R, D, HD, 0.0f);
    d->attention_bwd(d, m->dq, m->dk, m->dv, m->datt, a->att, a->lse, a->q, a->k, a->v, m->B, m->T, H, KV, hd);
    d->rope_bwd(d, m->dq, m->rope_cos, m->rope_sin, R, m->T, H, hd);
    d->rope_bwd(d, m->dk, m->rope_cos, m->rope_sin, R, m->T, KV, hd);
    norm_full(m, a->x, a->rstd1, P->ln1->w);                                 /* n1 again */
    WGRAD(m, P->q, m->dq, m->n, R, HD, D);
    DONE(m, P->q);
    WGRAD(m, P->k, m->dk, m->n, R, KVD, D);
    DONE(m, P->k);
    WGRAD(m, P->v, m->dv, m->n, R, KVD, D);
    DONE(m, P->v);
    d->gemm_nn(d, m->dn, m->dq, P->q->w, R, HD, D, 0.0f);
    d->gemm_nn(d, m->dn, m->dk, P->k->w, R, KVD, D, 1.0f);
    d->gemm_nn(d, m->dn, m->dv, P->v->w, R, KVD, D, 1.0f);
    col_parallel_bwd(m, m->dn);
    d->rmsnorm_bwd(d, m->dh, NGRAD(m, P->ln1), m->dn, a->x, P->ln1->w, a->rstd1, Rx, D); /* dh = d(x) */
    DONE(m, P->ln1);
}

/* The embedding of ids into x (vocab-parallel: each rank looks up the ids
 * of its slice, zeros elsewhere, and the ranks' rows are summed: all-reduce,
 * or reduce-scatter with sequence parallelism). */
static void embed_forward(lm_model *m, const int32_t *ids, void *x) {
    lm_device *d = m->dev;
    int D = m->s.dim;
    size_t RD = (size_t)m->Rx * (size_t)D;
    const int32_t *li = local_ids(m, ids);
    if (m->tp.size == 1) {
        d->embedding_fwd(d, x, m->embed->w, ids, m->R, D);
    } else if (!m->tp.sp) {
        d->embedding_fwd(d, x, m->embed->w, li, m->R, D);
        tp_wait_coll(m, 0, x, RD);
    } else {
        d->embedding_fwd(d, m->dn, m->embed->w, li, m->R, D);
        tp_wait_coll(m, 1, m->dn, RD);
        d->copy(d, x, m->dn, RD * ES(m));
    }
}

void *model_chunk_input(lm_model *m, int j, int k) {
    int lo, hi;
    chunk_layers(m, j, &lo, &hi);
    return ACTS(m, k, lo)->x;
}

void *model_chunk_grad(lm_model *m) { return m->dh; }

void model_chunk_forward(lm_model *m, int j, int k, const int32_t *ids, void *out) {
    int lo, hi;
    chunk_layers(m, j, &lo, &hi);
    if (m->first_chunk && j == 0) {
        FETCH(m, &m->embed, 1);
        embed_forward(m, ids, ACTS(m, k, lo)->x);
        RELEASE(m, &m->embed, 1);
    }
    if (is_last(m, j)) out = m->h_final[k];
    for (int l = lo; l < hi; l++) {
        FETCH(m, LAYER_PS(m, l), LAYER_NP);
        layer_forward(m, l, acts_of(m, k, l), l + 1 < hi ? ACTS(m, k, l + 1)->x : out);
        RELEASE(m, LAYER_PS(m, l), LAYER_NP);
    }
}

/* Vocab-parallel cross-entropy of rb rows (Megatron-LM): logits hold this
 * rank's vocabulary slice. Per row each rank finds m_k = max, s_k = sum
 * exp(x - m_k) over its real columns and zt_k = the target's logit if it
 * holds the target (else 0); the 3 floats per row and rank are all-gathered
 * and combined alike on every rank: M = max m_k, S = sum s_k exp(m_k - M),
 * lse = M + log S, loss = lse - sum zt_k. Each rank then turns its slice
 * into scale * (softmax - onehot) with the global lse. The logits of the
 * whole vocabulary never exist on one rank. */
static double xent_vocab_parallel(lm_model *m, const int32_t *t, int rb, float scale) {
    lm_device *d = m->dev;
    int tp = m->tp.size, Vl = m->ld.V, vv = (int)m->lm_head->valid_rows;
    int64_t v0 = m->lm_head->row0;
    for (int r = 0; r < rb; r++)
        m->tloc[r] = t[r] < 0 ? LM_XENT_PAD : t[r] >= v0 && t[r] < v0 + vv ? (int32_t)(t[r] - v0) : -1;
    size_t blk = 3 * (size_t)rb;
    d->xent_part_stats(d, m->logits, m->tloc, rb, Vl, vv, m->xstats + (size_t)m->tp.rank * blk);
    comm_allgather_f32(m->tp.g, m->xstats, blk);
    double loss = 0.0;
    for (int r = 0; r < rb; r++) {
        m->lse[r] = 0.0f;
        if (t[r] < 0) continue;
        double M = -INFINITY, S = 0.0, zt = 0.0;
        for (int k = 0; k < tp; k++)
            if (m->xstats[k * blk + 3 * r] > M) M = m->xstats[k * blk + 3 * r];
        for (int k = 0; k < tp; k++) {
            const float *st = m->xstats + k * blk + 3 * r;
            if (st[1] > 0.0f) S += (double)st[1] * exp((double)st[0] - M);
            zt += st[2];
        }
        double lse = M + log(S);
        m->lse[r] = (float)lse;
        loss += lse - zt;
    }
    d->xent_part_grad(d, m->logits, m->tloc, m->lse, rb, Vl, vv, scale);
    return loss;
}

/* lm_head and cross-entropy fused, over the final norm of every row in m->n,
 * block of rows by block: logits for the
 * block, in place into scale*(softmax - onehot), then the head's input
 * gradient (into dn; partial over the vocabulary slices under tensor
 * parallelism, summed after the last block) and weight gradient, so the
 * logits of the whole micro-batch never exist at once. */
static double head_forward_backward(lm_model *m, const int32_t *targets, float scale) {
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->ld.V;
    double loss = 0.0;
    for (int r0 = 0; r0 < m->R; r0 += m->head_rows) {
        int rb = m->R - r0 < m->head_rows ? m->R - r0 : m->head_rows;
        const void *x = lm_at(d, m->n, (size_t)r0 * D);
        d->gemm_nt(d, m->logits, x, m->lm_head->w, rb, V, D, 0.0f);
        if (m->tp.size == 1)
            loss += d->xent_fwd_bwd(d, m->logits, targets + r0, rb, V, scale);
        else
            loss += xent_vocab_parallel(m, targets + r0, rb, scale);
        d->gemm_nn(d, lm_at(d, m->dn, (size_t)r0 * D), m->logits, m->lm_head->w, rb, V, D, 0.0f);
        WGRAD(m, m->lm_head, m->logits, x, rb, V, D);
    }
    col_parallel_bwd(m, m->dn);
    if (m->lm_head != m->embed) DONE(m, m->lm_head); /* the same tensor: the embedding's backward adds more */
    return loss;
}

double model_chunk_backward(lm_model *m, int j, int k, const int32_t *ids, const int32_t *targets, float scale) {
    lm_device *d = m->dev;
    int Rx = m->Rx, D = m->s.dim, lo, hi;
    chunk_layers(m, j, &lo, &hi);
    double loss = 0.0;
    if (is_last(m, j)) {
        lm_param *head[2] = {m->norm, m->lm_head};
        FETCH(m, head, 2);
        norm_full(m, m->h_final[k], m->rstd_final, m->norm->w);
        loss = head_forward_backward(m, targets, scale);
        /* final norm backward into a fresh dh */
        d->zero(d, m->dh, ES(m) * (size_t)Rx * (size_t)D);
        d->rmsnorm_bwd(d, m->dh, NGRAD(m, m->norm), m->dn, m->h_final[k], m->norm->w, m->rstd_final, Rx, D);
        RELEASE(m, head, 2);
        DONE(m, m->norm);
    }
    for (int l = hi - 1; l >= lo; l--) {
        lm_layer_acts *a = acts_of(m, k, l);
        FETCH(m, LAYER_PS(m, l), LAYER_NP);
        /* Re-run the layer to refill its activations; its output is not
         * needed again. */
        if (m->recompute) layer_forward(m, l, a, m->scratch_out);
        layer_backward(m, l, a);
        RELEASE(m, LAYER_PS(m, l), LAYER_NP);
    }
    if (m->first_chunk && j == 0) {
        const int32_t *li = local_ids(m, ids);
        d->embedding_bwd(d, G(m, m->embed), dh_full(m), li, m->R, D);
        DONE(m, m->embed);
    }
    return loss;
}

double model_forward_backward(lm_model *m, const int32_t *ids, const int32_t *targets, float scale) {
    model_chunk_forward(m, 0, 0, ids, NULL);
    return model_chunk_backward(m, 0, 0, ids, targets, scale);
}

double model_chunk_eval(lm_model *m, int k, const int32_t *targets, double *row_loss) {
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->ld.V, tp = m->tp.size;
    int vv = tp > 1 ? (int)m->lm_head->valid_rows : V;
    int64_t v0 = tp > 1 ? m->lm_head->row0 : 0;
    if (!m->tloc) { /* tp 1: the statistics buffers of the vocab-parallel path */
        m->tloc = lm_alloc(sizeof(int32_t) * (size_t)m->head_rows);
        m->xstats = lm_alloc(sizeof(float) * 3 * (size_t)m->head_rows);
        m->lse = lm_alloc(sizeof(float) * (size_t)m->head_rows);
    }
    lm_param *head[2] = {m->norm, m->lm_head};
    FETCH(m, head, 2);
    norm_full(m, m->h_final[k], m->rstd_final, m->norm->w);
    double loss = 0.0;
    for (int r0 = 0; r0 < m->R; r0 += m->head_rows) {
        int rb = m->R - r0 < m->head_rows ? m->R - r0 : m->head_rows;
        const int32_t *t = targets + r0;
        d->gemm_nt(d, m->logits, lm_at(d, m->n, (size_t)r0 * D), m->lm_head->w, rb, V, D, 0.0f);
        for (int r = 0; r < rb; r++)
            m->tloc[r] = t[r] < 0 ? LM_XENT_PAD : t[r] >= v0 && t[r] < v0 + vv ? (int32_t)(t[r] - v0) : -1;
        size_t blk = 3 * (size_t)rb;
        d->xent_part_stats(d, m->logits, m->tloc, rb, V, vv, m->xstats + (size_t)m->tp.rank * blk);
        if (tp > 1) comm_allgather_f32(m->tp.g, m->xstats, blk);
        for (int r = 0; r < rb; r++) {
            row_loss[r0 + r] = 0.0;
            if (t[r] < 0) continue;
            double M = -INFINITY, S = 0.0, zt = 0.0;
            for (int q = 0; q < tp; q++)
                if (m->xstats[q * blk + 3 * r] > M) M = m->xstats[q * blk + 3 * r];
            for (int q = 0; q < tp; q++) {
                const float *st = m->xstats + q * blk + 3 * r;
                if (st[1] > 0.0f) S += (double)st[1] * exp((double)st[0] - M);
                zt += st[2];
            }
            row_loss[r0 + r] = M + log(S) - zt;
            loss += row_loss[r0 + r];
        }
    }
    RELEASE(m, head, 2);
    return loss;
}

/* Forward only, to the final norm of every row (one stage holding the
 * whole model). */
void model_forward(lm_model *m, const int32_t *ids) {
    if (m->pp.size != 1) lm_abort(LM_ERR_RUNTIME, "model_forward: the whole model must be on one stage");
    model_chunk_forward(m, 0, 0, ids, NULL);
    norm_full(m, m->h_final[0], m->rstd_final, m->norm->w);
}

/* The logits of row r over the whole vocabulary: under tensor parallelism
 * each rank's slice, all-gathered (generation and evaluation only). */
void model_logits_row(lm_model *m, int r, float *out) {
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->ld.V, tp = m->tp.size;
    d->gemm_nt(d, m->logits, lm_at(d, m->n, (size_t)r * D), m->lm_head->w, 1, V, D, 0.0f);
    if (tp == 1) {
        d->download_f32(d, out, m->logits, (size_t)V);
        return;
    }
    float *all = lm_alloc(sizeof(float) * (size_t)V * (size_t)tp);
    d->download_f32(d, all + (size_t)m->tp.rank * V, m->logits, (size_t)V);
    comm_allgather_f32(m->tp.g, all, (size_t)V);
    memcpy(out, all, sizeof(float) * (size_t)m->s.vocab_size);
    lm_free(all);
}
