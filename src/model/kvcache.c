/* kvcache.c — a step of incremental inference over a KV cache (kvcache.h).
 *
 * A step of n tokens at positions p0 .. p0+n-1 is the full forward of
 * model.c restricted to those rows, per layer:
 *   n1 = rmsnorm(x; ln1);  q = rope(Wq n1);  K[p0..] = rope(Wk n1);  V[p0..] = Wv n1
 *   a = x + Wo attn(q; K[0 .. p0+n), V[0 .. p0+n))       (causal: row i sees keys <= p0+i)
 *   x = a + Wdown (silu(Wgate n2) * Wup n2),  n2 = rmsnorm(a; ln2)
 * then the final norm. Rows before p0 are exactly what the full forward
 * computes for them (causal attention: later rows never change earlier
 * ones), so a cached step gives the full forward's values of its rows up to
 * float summation order. RoPE at position p uses row p of the model's
 * tables (rope_fwd on n rows with T = n, the tables offset by p0).
 * Under tensor parallelism each rank holds its query and kv heads' slices
 * (column-parallel q, k, v, gate, up) and the row-parallel o and down
 * products are all-reduced, rank 0 adding the residual, as in model.c. */
#include "kvcache.h"
#include "common.h"
#include <string.h>

struct lm_kv_cache {
    lm_model *m;
    int cap, len;          /* positions: capacity (m->T) and held */
    int last;              /* rows of the last step (its last row has the logits) */
    void **k, **v;         /* [layer]: [cap, KV*hd] after RoPE (k) */
    void *x, *a, *nrm;     /* [cap, D]: residual, after attention, normalised */
    void *q, *att;         /* [cap, H*hd] */
    void *g, *u, *f;       /* [cap, F] */
    float *rstd;           /* [cap] */
    void *logits;          /* [V/tp] */
    int32_t *lids;         /* host: local vocabulary ids [cap] */
    float *all;            /* host: the gathered logits [Vp] */
};

int kv_supported(const lm_model *m, char *why, size_t whylen) {
    const char *no = !m->dev->attention_decode ? "the device has no decode attention (attention_decode)"
                     : m->pp.size != 1 ? "the model is split over pipeline stages"
                     : m->tp.sp        ? "sequence parallelism shards the rows"
                     : m->B != 1       ? "the model is built for more than one sequence"
                                       : NULL;
    if (no) snprintf(why, whylen, "device %s: %s", m->dev->name, no);
    return !no;
}

static void *dnew(lm_model *m, size_t n) { return m->dev->alloc(m->dev, n * lm_dtype_size(m->dev->dtype)); }

lm_kv_cache *kv_create(lm_model *m) {
    char why[LM_ERRLEN];
    if (!kv_supported(m, why, sizeof why)) lm_abort(LM_ERR_RUNTIME, "kv_create: %s", why);
    lm_kv_cache *c = lm_alloc(sizeof *c);
    c->m = m;
    c->cap = m->T;
    size_t T = (size_t)c->cap, D = (size_t)m->s.dim, hd = (size_t)m->s.head_dim, L = (size_t)m->s.n_layers;
    size_t HD = (size_t)m->ld.H * hd, KVD = (size_t)m->ld.KV * hd, F = (size_t)m->ld.F;
    c->k = lm_alloc(sizeof(void *) * L);
    c->v = lm_alloc(sizeof(void *) * L);
    for (size_t l = 0; l < L; l++) {
        c->k[l] = dnew(m, T * KVD);
        c->v[l] = dnew(m, T * KVD);
    }
    c->x = dnew(m, T * D);
    c->a = dnew(m, T * D);
    c->nrm = dnew(m, T * D);
    c->q = dnew(m, T * HD);
    c->att = dnew(m, T * HD);
    c->g = dnew(m, T * F);
    c->u = dnew(m, T * F);
    c->f = dnew(m, T * F);
    c->rstd = m->dev->alloc(m->dev, T * sizeof(float));
    c->logits = dnew(m, (size_t)m->ld.V);
    c->lids = lm_alloc(sizeof(int32_t) * T);
    c->all = lm_alloc(sizeof(float) * (size_t)m->ld.Vp);
    return c;
}

void kv_destroy(lm_kv_cache *c) {
    if (!c) return;
    lm_device *d = c->m->dev;
    for (int l = 0; l < c->m->s.n_layers; l++) {
        d->free(d, c->k[l]);
        d->free(d, c->v[l]);
    }
    void *bufs[] = {c->x, c->a, c->nrm, c->q, c->att, c->g, c->u, c->f, c->rstd, c->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) d->free(d, bufs[i]);
    lm_free(c->k);
    lm_free(c->v);
    lm_free(c->lids);
    lm_free(c->all);
    lm_free(c);
}

int kv_len(const lm_kv_cache *c) { return c->len; }
int kv_capacity(const lm_kv_cache *c) { return c->cap; }
void kv_reset(lm_kv_cache *c) { c->len = c->last = 0; }

/* The tensor-parallel sum of x [n, D] (no-op on one rank). */
static void tp_sum(lm_model *m, void *x, int n) {
    if (m->tp.size == 1) return;
    lm_req q;
    comm_dev_iallreduce_sum(m->tp.g, x, (size_t)n * (size_t)m->s.dim, m->dev->dtype, &q);
    comm_wait(&q);
}

/* out = res + x W^T of a row-parallel linear over n rows (W [D, K] holds
 * this rank's K input columns): the partial products summed over the
 * group, the residual added once (rank 0). */
static void row_linear(lm_model *m, void *out, const void *res, const void *x, const void *w, int n, int K) {
    lm_device *d = m->dev;
    if (m->tp.size == 1 || m->tp.rank == 0)
        d->gemm_nt_add(d, out, res, x, w, n, m->s.dim, K);
    else
        d->gemm_nt(d, out, x, w, n, m->s.dim, K, 0.0f);
    tp_sum(m, out, n);
}

/* One layer on the n rows in c->x (positions p0 ..), in place. */
static void layer_step(lm_kv_cache *c, int l, int n, int p0) {
    lm_model *m = c->m;
    lm_device *d = m->dev;
    const lm_layer_params *P = &m->layer[l];
    int D = m->s.dim, F = m->ld.F, H = m->ld.H, KV = m->ld.KV, hd = m->s.head_dim, half = hd / 2;
    int HD = H * hd, KVD = KV * hd;
    void *kn = lm_at(d, c->k[l], (size_t)p0 * KVD), *vn = lm_at(d, c->v[l], (size_t)p0 * KVD);
    const float *cs = m->rope_cos + (size_t)p0 * half, *sn = m->rope_sin + (size_t)p0 * half;

    d->rmsnorm_fwd(d, c->nrm, c->rstd, c->x, P->ln1->w, n, D, m->s.norm_eps);
    d->gemm_nt(d, c->q, c->nrm, P->q->w, n, HD, D, 0.0f);
    d->gemm_nt(d, kn, c->nrm, P->k->w, n, KVD, D, 0.0f);
    d->gemm_nt(d, vn, c->nrm, P->v->w, n, KVD, D, 0.0f);
    d->rope_fwd(d, c->q, cs, sn, n, n, H, hd);
    d->rope_fwd(d, kn, cs, sn, n, n, KV, hd);
    d->attention_decode(d, c->att, c->q, c->k[l], c->v[l], n, p0, H, KV, hd);
    row_linear(m, c->a, c->x, c->att, P->o->w, n, HD); /* a = x + Wo att */

    d->rmsnorm_fwd(d, c->nrm, c->rstd, c->a, P->ln2->w, n, D, m->s.norm_eps);
    d->gemm_nt(d, c->g, c->nrm, P->gate->w, n, F, D, 0.0f);
    d->gemm_nt(d, c->u, c->nrm, P->up->w, n, F, D, 0.0f);
    d->swiglu_fwd(d, c->f, c->g, c->u, (size_t)n * (size_t)F);
    row_linear(m, c->x, c->a, c->f, P->down->w, n, F); /* x = a + Wdown f */
}

void kv_forward(lm_kv_cache *c, const int32_t *ids, int n) {
    lm_model *m = c->m;
    lm_device *d = m->dev;
    int D = m->s.dim, p0 = c->len;
    if (n <= 0 || p0 + n > c->cap)
        lm_abort(LM_ERR_RUNTIME, "kv_forward: %d tokens at position %d exceed the cache's %d positions", n, p0,
                 c->cap);
    /* the embedding: vocab-parallel ranks look up the ids of their slice */
    const int32_t *li = ids;
    if (m->tp.size > 1) {
        int64_t v0 = m->embed->row0, vv = m->embed->valid_rows;
        for (int r = 0; r < n; r++) c->lids[r] = ids[r] >= v0 && ids[r] < v0 + vv ? (int32_t)(ids[r] - v0) : -1;
        li = c->lids;
    }
    d->embedding_fwd(d, c->x, m->embed->w, li, n, D);
    tp_sum(m, c->x, n);
    for (int l = 0; l < m->s.n_layers; l++) layer_step(c, l, n, p0);
    d->rmsnorm_fwd(d, c->nrm, c->rstd, c->x, m->norm->w, n, D, m->s.norm_eps);
    c->len += n;
    c->last = n;
}

void kv_logits(lm_kv_cache *c, float *out) {
    lm_model *m = c->m;
    lm_device *d = m->dev;
    int D = m->s.dim, V = m->ld.V, tp = m->tp.size;
    if (c->last <= 0) lm_abort(LM_ERR_RUNTIME, "kv_logits: no step has run since the cache was reset");
    d->gemm_nt(d, c->logits, lm_at(d, c->nrm, (size_t)(c->last - 1) * D), m->lm_head->w, 1, V, D, 0.0f);
    if (tp == 1) {
        d->download_f32(d, out, c->logits, (size_t)V);
        return;
    }
    d->download_f32(d, c->all + (size_t)m->tp.rank * V, c->logits, (size_t)V);
    comm_allgather_f32(m->tp.g, c->all, (size_t)V);
    memcpy(out, c->all, sizeof(float) * (size_t)m->s.vocab_size);
}
