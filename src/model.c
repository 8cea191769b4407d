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
}

static void add_params(lm_model *m, size_t granule) {
    const lm_shape *s = &m->s;
    lm_params *ps = &m->params;
    int64_t D = s->dim, KVD = (int64_t)s->n_kv_heads * s->head_dim, F = s->ffn_dim;
    char name[LM_NAMELEN];
    /* Indices first, pointers after chunks_build (params_add reallocates). */
    params_add(ps, "model.embed_tokens.weight", 2, s->vocab_size, D);
    for (int l = 0; l < s->n_layers; l++) {
#define P(suffix, nd, r, c)                                               \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);         \
    params_add(ps, name, nd, r, c)
        P("input_layernorm.weight", 1, D, 1);
        P("self_attn.q_proj.weight", 2, D, D);
        P("self_attn.k_proj.weight", 2, KVD, D);
        P("self_attn.v_proj.weight", 2, KVD, D);
        P("self_attn.o_proj.weight", 2, D, D);
        P("post_attention_layernorm.weight", 1, D, 1);
        P("mlp.gate_proj.weight", 2, F, D);
        P("mlp.up_proj.weight", 2, F, D);
        P("mlp.down_proj.weight", 2, D, F);
#undef P
    }
    params_add(ps, "model.norm.weight", 1, D, 1);
    if (!s->tied) params_add(ps, "lm_head.weight", 2, s->vocab_size, D);
    chunks_build_on(ps, granule, m->dev);

    m->embed = &ps->p[0];
    m->layer = lm_alloc(sizeof(lm_layer_params) * (size_t)s->n_layers);
    for (int l = 0; l < s->n_layers; l++) {
        lm_param *p = &ps->p[1 + 9 * l];
        m->layer[l] = (lm_layer_params){p, p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8};
    }
    m->norm = &ps->p[1 + 9 * s->n_layers];
    m->lm_head = s->tied ? m->embed : &ps->p[2 + 9 * s->n_layers];
    m->n_matmul_params = 0;
    for (int i = 1; i < ps->n; i++) m->n_matmul_params += (int64_t)ps->p[i].numel;
    if (s->tied) m->n_matmul_params += (int64_t)m->embed->numel;
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

static void alloc_layer_acts(lm_model *m, lm_layer_acts *a, int with_x, int rest) {
    size_t R = (size_t)m->R, D = (size_t)m->s.dim, F = (size_t)m->s.ffn_dim;
    size_t KVD = (size_t)m->s.n_kv_heads * (size_t)m->s.head_dim;
    if (with_x) a->x = dalloc(m, R * D);
    if (!rest) return;
    a->rstd1 = falloc(m, R);
    a->q = dalloc(m, R * D);
    a->k = dalloc(m, R * KVD);
    a->v = dalloc(m, R * KVD);
    a->att = dalloc(m, R * D);
    a->lse = falloc(m, (size_t)m->B * (size_t)m->s.n_heads * (size_t)m->T);
    a->a = dalloc(m, R * D);
    a->rstd2 = falloc(m, R);
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

lm_model *model_create(lm_device *dev, const lm_shape *s, int B, int T, int recompute, size_t granule) {
    lm_model *m = lm_alloc(sizeof *m);
    m->s = *s;
    m->dev = dev;
    m->B = B;
    m->T = T;
    m->R = B * T;
    m->recompute = recompute;
    add_params(m, granule);

    size_t R = (size_t)m->R, D = (size_t)s->dim, F = (size_t)s->ffn_dim;
    size_t KVD = (size_t)s->n_kv_heads * (size_t)s->head_dim;
    m->acts = lm_alloc(sizeof(lm_layer_acts) * (size_t)s->n_layers);
    for (int l = 0; l < s->n_layers; l++) alloc_layer_acts(m, &m->acts[l], 1, !recompute);
    if (recompute) alloc_layer_acts(m, &m->scratch_acts, 0, 1);
    m->h_final = dalloc(m, R * D);
    m->rstd_final = falloc(m, R);
    m->n = dalloc(m, R * D);
    m->dn = dalloc(m, R * D);
    m->dh = dalloc(m, R * D);
    m->f1 = dalloc(m, R * F);
    m->f2 = dalloc(m, R * F);
    m->f3 = dalloc(m, R * F);
    m->dq = dalloc(m, R * D);
    m->dk = dalloc(m, R * KVD);
    m->dv = dalloc(m, R * KVD);
    m->datt = dalloc(m, R * D);
    /* The head works on blocks of rows so that logits never exceed ~16 MiB. */
    size_t rows = ((size_t)16 << 20) / (lm_dtype_size(dev->dtype) * (size_t)s->vocab_size);
    if (rows < 16) rows = 16;
    if (rows > R) rows = R;
    m->head_rows = (int)rows;
    m->logits = dalloc(m, rows * (size_t)s->vocab_size);
    rope_tables(m);
    return m;
}

void model_destroy(lm_model *m) {
    if (!m) return;
    lm_device *d = m->dev;
    lm_layer_acts *sets[2] = {m->acts, &m->scratch_acts};
    for (int l = 0; l < m->s.n_layers; l++) d->free(d, m->acts[l].x);
    for (int k = 0; k < 2; k++) {
        int n = k == 0 ? (m->recompute ? 0 : m->s.n_layers) : (m->recompute ? 1 : 0);
        for (int l = 0; l < n; l++) {
            lm_layer_acts *a = &sets[k][l];
            void *bufs[] = {a->rstd1, a->q, a->k, a->v, a->att, a->lse, a->a, a->rstd2, a->g, a->u};
            for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) d->free(d, bufs[i]);
        }
    }
    void *ws[] = {m->h_final, m->rstd_final, m->n, m->dn, m->dh, m->f1, m->f2, m->f3,
                   m->dq, m->dk, m->dv, m->datt, m->logits, m->rope_cos, m->rope_sin};
    for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) d->free(d, ws[i]);
    lm_free(m->acts);
    lm_free(m->layer);
    params_free(&m->params);
    lm_free(m);
}

void model_init_random(lm_model *m, uint64_t seed, double std) {
    size_t most = 0;
    for (int i = 0; i < m->params.n; i++)
        if (m->params.p[i].numel > most) most = m->params.p[i].numel;
    float *h = lm_alloc(sizeof(float) * most);
    for (int i = 0; i < m->params.n; i++) {
        lm_param *p = &m->params.p[i];
        uint64_t key = rng_stream(seed, p->name);
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < p->numel; j++) h[j] = p->ndim == 1 ? 1.0f : (float)(std * rng_normal(key, j));
        params_set_tensor(&m->params, i, h);
    }
    lm_free(h);
}

/* The layer's activations for backward: its own set, or the scratch set. */
static lm_layer_acts *acts_of(lm_model *m, int l) {
    if (!m->recompute) return &m->acts[l];
    lm_layer_acts *a = &m->scratch_acts;
    a->x = m->acts[l].x;
    return a;
}

/* The gradient buffer of p for this backward, and the signal that it is
 * complete (see lm_grad_hooks). */
static void *G(lm_model *m, lm_param *p) { return m->hooks ? m->hooks->grad(m->hooks->ctx, p) : p->g; }
static void DONE(lm_model *m, lm_param *p) {
    if (m->hooks) m->hooks->done(m->hooks->ctx, p);
}

/* One layer forward from a->x, filling a's activations; writes the layer
 * output (the next residual) to out. */
static void layer_forward(lm_model *m, int l, lm_layer_acts *a, void *out) {
    lm_device *d = m->dev;
    const lm_shape *s = &m->s;
    const lm_layer_params *P = &m->layer[l];
    int R = m->R, D = s->dim, F = s->ffn_dim, H = s->n_heads, KV = s->n_kv_heads, hd = s->head_dim;
    int KVD = KV * hd;

    d->rmsnorm_fwd(d, m->n, a->rstd1, a->x, P->ln1->w, R, D, s->norm_eps);
    d->gemm_nt(d, a->q, m->n, P->q->w, R, D, D, 0.0f);
    d->gemm_nt(d, a->k, m->n, P->k->w, R, KVD, D, 0.0f);
    d->gemm_nt(d, a->v, m->n, P->v->w, R, KVD, D, 0.0f);
    d->rope_fwd(d, a->q, m->rope_cos, m->rope_sin, R, m->T, H, hd);
    d->rope_fwd(d, a->k, m->rope_cos, m->rope_sin, R, m->T, KV, hd);
    d->attention_fwd(d, a->att, a->lse, a->q, a->k, a->v, m->B, m->T, H, KV, hd);
    d->gemm_nt_add(d, a->a, a->x, a->att, P->o->w, R, D, D);  /* a = x + Wo att */

    d->rmsnorm_fwd(d, m->n, a->rstd2, a->a, P->ln2->w, R, D, s->norm_eps);
    d->gemm_nt(d, a->g, m->n, P->gate->w, R, F, D, 0.0f);
    d->gemm_nt(d, a->u, m->n, P->up->w, R, F, D, 0.0f);
    d->swiglu_fwd(d, m->f1, a->g, a->u, (size_t)R * (size_t)F);
    d->gemm_nt_add(d, out, a->a, m->f1, P->down->w, R, D, F);  /* out = a + Wdown f1 */
}

/* Backward of one layer: on entry dh = d(layer output); on exit dh = d(x).
 * Parameter gradients accumulate. */
static void layer_backward(lm_model *m, int l, lm_layer_acts *a) {
    lm_device *d = m->dev;
    const lm_shape *s = &m->s;
    const lm_layer_params *P = &m->layer[l];
    int R = m->R, D = s->dim, F = s->ffn_dim, H = s->n_heads, KV = s->n_kv_heads, hd = s->head_dim;
    int KVD = KV * hd;
    size_t RF = (size_t)R * (size_t)F;

    /* MLP branch: y = a + Wdown (silu(g) * u) */
    d->rmsnorm_fwd(d, m->n, a->rstd2, a->a, P->ln2->w, R, D, s->norm_eps);  /* n2 again */
    d->swiglu_fwd(d, m->f1, a->g, a->u, RF);                                 /* f1 = swiglu */
    d->gemm_tn(d, G(m, P->down), m->dh, m->f1, R, D, F, 1.0f);
    DONE(m, P->down);
    d->gemm_nn(d, m->f2, m->dh, P->down->w, R, D, F, 0.0f);                  /* f2 = d swiglu */
    d->swiglu_bwd(d, m->f1, m->f3, m->f2, a->g, a->u, RF);                   /* f1 = dg, f3 = du */
    d->gemm_tn(d, G(m, P->gate), m->f1, m->n, R, F, D, 1.0f);
    DONE(m, P->gate);
    d->gemm_tn(d, G(m, P->up), m->f3, m->n, R, F, D, 1.0f);
    DONE(m, P->up);
    d->gemm_nn(d, m->dn, m->f1, P->gate->w, R, F, D, 0.0f);
    d->gemm_nn(d, m->dn, m->f3, P->up->w, R, F, D, 1.0f);
    d->rmsnorm_bwd(d, m->dh, G(m, P->ln2), m->dn, a->a, P->ln2->w, a->rstd2, R, D); /* dh = d(a) */
    DONE(m, P->ln2);

    /* Attention branch: a = x + Wo att */
    d->gemm_tn(d, G(m, P->o), m->dh, a->att, R, D, D, 1.0f);
    DONE(m, P->o);
    d->gemm_nn(d, m->datt, m->dh, P->o->w, R, D, D, 0.0f);
    d->attention_bwd(d, m->dq, m->dk, m->dv, m->datt, a->att, a->lse, a->q, a->k, a->v, m->B, m->T, H, KV, hd);
    d->rope_bwd(d, m->dq, m->rope_cos, m->rope_sin, R, m->T, H, hd);
    d->rope_bwd(d, m->dk, m->rope_cos, m->rope_sin, R, m->T, KV, hd);
    d->rmsnorm_fwd(d, m->n, a->rstd1, a->x, P->ln1->w, R, D, s->norm_eps);  /* n1 again */
    d->gemm_tn(d, G(m, P->q), m->dq, m->n, R, D, D, 1.0f);
    DONE(m, P->q);
    d->gemm_tn(d, G(m, P->k), m->dk, m->n, R, KVD, D, 1.0f);
    DONE(m, P->k);
    d->gemm_tn(d, G(m, P->v), m->dv, m->n, R, KVD, D, 1.0f);
    DONE(m, P->v);
    d->gemm_nn(d, m->dn, m->dq, P->q->w, R, D, D, 0.0f);
    d->gemm_nn(d, m->dn, m->dk, P->k->w, R, KVD, D, 1.0f);
    d->gemm_nn(d, m->dn, m->dv, P->v->w, R, KVD, D, 1.0f);
    d->rmsnorm_bwd(d, m->dh, G(m, P->ln1), m->dn, a->x, P->ln1->w, a->rstd1, R, D); /* dh = d(x) */
    DONE(m, P->ln1);
}

/* Embedding and every layer forward, then the final norm into m->n. */
static void forward_body(lm_model *m, const int32_t *ids) {
    lm_device *d = m->dev;
    int L = m->s.n_layers;
    d->embedding_fwd(d, m->acts[0].x, m->embed->w, ids, m->R, m->s.dim);
    for (int l = 0; l < L; l++) {
        void *out = l + 1 < L ? m->acts[l + 1].x : m->h_final;
        layer_forward(m, l, acts_of(m, l), out);
    }
    d->rmsnorm_fwd(d, m->n, m->rstd_final, m->h_final, m->norm->w, m->R, m->s.dim, m->s.norm_eps);
}

/* lm_head and cross-entropy fused, block of rows by block: logits for the
 * block, in place into scale*(softmax - onehot), then the head's input
 * gradient (into dn) and weight gradient, so the logits of the whole
 * micro-batch never exist at once. */
static double head_forward_backward(lm_model *m, const int32_t *targets, float scale) {
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->s.vocab_size;
    double loss = 0.0;
    for (int r0 = 0; r0 < m->R; r0 += m->head_rows) {
        int rb = m->R - r0 < m->head_rows ? m->R - r0 : m->head_rows;
        const void *x = lm_at(d, m->n, (size_t)r0 * D);
        d->gemm_nt(d, m->logits, x, m->lm_head->w, rb, V, D, 0.0f);
        loss += d->xent_fwd_bwd(d, m->logits, targets + r0, rb, V, scale);
        d->gemm_nn(d, lm_at(d, m->dn, (size_t)r0 * D), m->logits, m->lm_head->w, rb, V, D, 0.0f);
        d->gemm_tn(d, G(m, m->lm_head), m->logits, x, rb, V, D, 1.0f);
    }
    if (!m->s.tied) DONE(m, m->lm_head); /* tied: the embedding's backward adds more */
    return loss;
}

double model_forward_backward(lm_model *m, const int32_t *ids, const int32_t *targets, float scale) {
    lm_device *d = m->dev;
    int R = m->R, D = m->s.dim;
    forward_body(m, ids);
    double loss = head_forward_backward(m, targets, scale);

    /* final norm backward into a fresh dh */
    d->zero(d, m->dh, lm_dtype_size(d->dtype) * (size_t)R * (size_t)D);
    d->rmsnorm_bwd(d, m->dh, G(m, m->norm), m->dn, m->h_final, m->norm->w, m->rstd_final, R, D);
    DONE(m, m->norm);
    for (int l = m->s.n_layers - 1; l >= 0; l--) {
        lm_layer_acts *a = acts_of(m, l);
        if (m->recompute) {
            /* Re-run the layer to refill its activations; its output is not
             * needed again, so it goes to the h_final buffer, now free. */
            layer_forward(m, l, a, m->h_final);
        }
        layer_backward(m, l, a);
    }
    d->embedding_bwd(d, G(m, m->embed), m->dh, ids, R, D);
    DONE(m, m->embed);
    return loss;
}

void model_forward(lm_model *m, const int32_t *ids) { forward_body(m, ids); }

void model_logits_row(lm_model *m, int r, float *out) {
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->s.vocab_size;
    d->gemm_nt(d, m->logits, lm_at(d, m->n, (size_t)r * D), m->lm_head->w, 1, V, D, 0.0f);
    d->download_f32(d, out, m->logits, (size_t)V);
}
