/* plan_model.c — see plan_model.h; the equations are derived in perf/PLAN.md.
 * Two small caches (the pipeline split per (L, pp, v) and the chunk layout
 * per stage tensor list and granule) keep the search over thousands of layouts
 * fast; they change no result. */
#include "plan_model.h"
#include "chunks.h"
#include "pipeline.h"
#include "common.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>



const char *plan_reject_name(int why) {
    static const char *const N[PLAN_R_N] = {
        "ok",
        "tp does not split the heads, kv heads or ffn columns",
        "tp > gpus per node: tensor parallelism would cross nodes",
        "fewer layers than pp x v model chunks",
        "global batch not a multiple of dp x micro_batch",
        "interleaved schedule needs the micro-batch count a multiple of pp",
        "sp: micro_batch x seq_len not divisible by tp",
        "does not fit in device memory, even with everything offloaded",
        "host memory cannot hold the offload the device needs",
        "parameter offload needs ZeRO-3",
    };
    return why >= 0 && why < PLAN_R_N ? N[why] : "?";
}

/* ---- FLOPs (SPEC §6) ----
 * A layer holds P = 2 D^2 + 2 KVD D + 3 F D + 2 D parameters (q, o; k, v;
 * gate, up, down; two norms); N = L P + D + V D (final norm, lm_head; the
 * input embedding is a lookup). Per token: 6 N + 12 L D T. */
static double layer_params(const plan_shape *s) {
    double D = s->dim, KVD = (double)s->n_kv_heads * (s->dim / s->n_heads), F = s->ffn_dim;
    return 2 * D * D + 2 * KVD * D + 3 * F * D + 2 * D;
}

double plan_n_params(const plan_shape *s) {
    return (double)s->n_layers * layer_params(s) + s->dim + (double)s->vocab * s->dim;
}

double plan_flops_per_token(const plan_shape *s) {
    return 6.0 * plan_n_params(s) + 12.0 * s->n_layers * (double)s->dim * s->seq_len;
}

double plan_bubble(int pp, int v, int m) { return pp <= 1 ? 0.0 : (double)(pp - 1) / ((double)v * m); }

double plan_gemm_eff(const plan_calib *c, double k) { return c->gemm_eff_max * k / (k + c->gemm_k_half); }

/* ---- the chunk arena: chunks.c's own layout functions ---- */

/* *chunk: the longest chunk (an outsized tensor's own, or the regular
 * length), what a chunk buffer (ZeRO-3 gather, ZeRO-2 bucket) must hold. */
double plan_arena(const size_t *sizes, int n, size_t granule, double *chunk) {
    chunk_layout L = chunk_layout_of(sizes, NULL, n, granule, 0, NULL, NULL, NULL);
    if (chunk) *chunk = (double)L.chunk_max;
    return (double)L.arena;
}

/* ---- local sizes under tp (model.c tp_dims) ---- */

typedef struct {
    int H, KV, F, V, hd;
} tp_local;

static int tp_split(const plan_shape *s, int tp, tp_local *o) {
    if (s->n_heads % tp || s->ffn_dim % tp) return -1;
    if (s->n_kv_heads >= tp ? s->n_kv_heads % tp : tp % s->n_kv_heads) return -1;
    o->H = s->n_heads / tp;
    o->KV = s->n_kv_heads >= tp ? s->n_kv_heads / tp : 1;
    o->F = s->ffn_dim / tp;
    o->V = (s->vocab + tp - 1) / tp;
    o->hd = s->dim / s->n_heads;
    return 0;
}

/* The chunk layout of a stage as the ZeRO manager (zero.c) sees it, cached
 * per stage tensor list (its sizes are fixed by the local dims, whether the
 * stage holds the embedding and the head, and its layer count) and dp (the
 * granule is 16 dp): chunk_layout_of is the expensive part of the search.
 * With k the chunks offloaded from the last one backwards (zero.c
 * place_frac), k = 0 .. nch:
 *   tail[k]  elements of the last k chunks (what k offloaded chunks move);
 *   tmax[k]  the longest of them;
 *   gath[k]  zero.c min_slots, in elements: over the fetch groups (each
 *            layer's 9 tensors, the embedding alone, the final norm with
 *            lm_head, which is the embedding when tied at pp 1), the largest
 *            sum of the lengths of the distinct chunks a group touches that
 *            are not their own home: all of them at dp > 1; at dp 1 those
 *            whose parameters are offloaded (the last k).
 * wc: the most distinct chunks one fetch group touches. */
typedef struct {
    long key[10];
    double psi, cmax;
    int nch, wc;
    double *tail, *tmax, *gath; /* [nch + 1] each */
} stage_lay;
#define CS_CACHE 512
static stage_lay cs_cache[CS_CACHE];
static int cs_n, cs_next;

/* The stage's tensors in model order (model.c add_params). */
static int stage_tensors(const plan_shape *s, const tp_local *L, int first, int head, int layers, size_t **out) {
    size_t D = (size_t)s->dim, Hd = (size_t)L->H * L->hd, KVd = (size_t)L->KV * L->hd, F = (size_t)L->F,
           V = (size_t)L->V;
    int n = 0;
    size_t *z = lm_alloc(sizeof(size_t) * (size_t)(9 * layers + 3));
    if (first) z[n++] = V * D;
    for (int l = 0; l < layers; l++) {
        size_t t[9] = {D, Hd * D, KVd * D, KVd * D, D * Hd, D, F * D, F * D, D * F};
        memcpy(z + n, t, sizeof t);
        n += 9;
    }
    if (head) {
        z[n++] = D;         /* final norm */
        if (head > 1) z[n++] = V * D; /* lm_head (or the tied table's copy) */
    }
    *out = z;
    return n;
}

static void stage_lay_fill(const plan_shape *s, const tp_local *L, int first, int head, int layers, int dp,
                           stage_lay *e);

/* The layout of a stage. head: 0 none, 1 final norm only (tied, pp 1),
 * 2 norm and lm_head. The entry stays valid until CS_CACHE other stage
 * layouts were looked up. */
static const stage_lay *stage_layout(const plan_shape *s, const tp_local *L, int first, int head, int layers,
                                     int dp) {
    long key[10] = {s->dim, L->hd, L->H, L->KV, L->F, L->V, first, head, layers, dp};
    for (int i = 0; i < cs_n; i++)
        if (!memcmp(cs_cache[i].key, key, sizeof key)) return &cs_cache[i];
    int at = cs_n < CS_CACHE ? cs_n++ : (cs_next++ % CS_CACHE);
    stage_lay *e = &cs_cache[at];
    lm_free(e->tail);
    lm_free(e->tmax);
    lm_free(e->gath);
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, sizeof key);
    stage_lay_fill(s, L, first, head, layers, dp, e);
    return e;
}

static void stage_lay_fill(const plan_shape *s, const tp_local *L, int first, int head, int layers, int dp,
                           stage_lay *e) {
    size_t *z;
    int n = stage_tensors(s, L, first, head, layers, &z);
    int *co = lm_alloc(sizeof(int) * (size_t)(n ? n : 1));
    size_t *coff = lm_alloc(sizeof(size_t) * (size_t)(n + 1));
    chunk_layout C = chunk_layout_of(z, NULL, n, (size_t)16 * (size_t)dp, 0, co, NULL, coff);
    int nc = C.n_chunks;
    e->psi = (double)C.arena;
    e->cmax = (double)C.chunk_max;
    e->nch = nc;
    e->tail = lm_calloc((size_t)nc + 1, sizeof(double));
    e->tmax = lm_calloc((size_t)nc + 1, sizeof(double));
    e->gath = lm_calloc((size_t)nc + 1, sizeof(double));
    for (int k = 1; k <= nc; k++) {
        double len = (double)(coff[nc - k + 1] - coff[nc - k]);
        e->tail[k] = e->tail[k - 1] + len;
        e->tmax[k] = fmax(e->tmax[k - 1], len);
    }
    /* the fetch groups' distinct chunks, one row of at most 10 each */
    int b = first ? 1 : 0, ng = layers + first + (head > 0);
    int *gc = lm_alloc(sizeof(int) * 10 * (size_t)(ng ? ng : 1)), *gn = lm_calloc((size_t)(ng ? ng : 1), sizeof(int));
    int g = 0;
    for (int l = 0; l <= layers; l++) {
        int idx[10], cnt = 0;
        if (l < layers) {
            for (int k = 0; k < 9; k++) idx[cnt++] = b + 9 * l + k;
        } else if (head) {
            idx[cnt++] = b + 9 * layers; /* final norm */
            idx[cnt++] = head > 1 ? b + 9 * layers + 1 : 0; /* lm_head, or the tied embedding */
        } else continue;
        for (int k = 0; k < cnt; k++) {
            int c = co[idx[k]], dup = 0;
            for (int j = 0; j < gn[g]; j++) dup |= gc[10 * g + j] == c;
            if (!dup) gc[10 * g + gn[g]++] = c;
        }
        g++;
    }
    if (first) gc[10 * g] = co[0], gn[g++] = 1; /* the embedding */
    for (g = 0; g < ng; g++)
        if (gn[g] > e->wc) e->wc = gn[g];
    for (int k = 0; k <= nc; k++) {
        if (dp > 1 && k > 0) { /* every chunk needs a slot: the same for all k */
            e->gath[k] = e->gath[0];
            continue;
        }
        double best = 0;
        for (g = 0; g < ng; g++) {
            double sum = 0;
            for (int j = 0; j < gn[g]; j++) {
                int c = gc[10 * g + j];
                if (dp > 1 || c >= nc - k) sum += (double)(coff[c + 1] - coff[c]);
            }
            best = fmax(best, sum);
        }
        e->gath[k] = best;
    }
    lm_free(gc);
    lm_free(gn);
    lm_free(coff);
    lm_free(co);
    lm_free(z);
}

/* ---- the pipeline: layers per stage and activation sets kept ---- */

/* session.c's weight of the lm_head and loss in layers (forward FLOPs). */
static double head_cost(const plan_shape *s) {
    double D = s->dim, KVD = (double)s->n_kv_heads * (s->dim / s->n_heads), F = s->ffn_dim, V = s->vocab;
    return 2 * V * D / (2 * (2 * D * D + 2 * KVD * D + 3 * F * D) + 4.0 * s->seq_len * D);
}

typedef struct {
    int L, pp, v;
    double hc;
    int layers[LM_PP_MAX_CHUNKS]; /* per stage */
} split_entry;
#define SPLIT_CACHE 16
static split_entry split_cache[SPLIT_CACHE];
static int split_n, split_next;

/* Layers of each stage (pp_split_layers, as the run would cut them). */
static const int *stage_layers(const plan_shape *s, int pp, int v) {
    double hc = head_cost(s);
    for (int i = 0; i < split_n; i++) {
        split_entry *e = &split_cache[i];
        if (e->L == s->n_layers && e->pp == pp && e->v == v && e->hc == hc) return e->layers;
    }
    int at = split_n < SPLIT_CACHE ? split_n++ : (split_next++ % SPLIT_CACHE);
    split_entry *e = &split_cache[at];
    e->L = s->n_layers, e->pp = pp, e->v = v, e->hc = hc;
    if (pp == 1) {
        e->layers[0] = s->n_layers;
        return e->layers;
    }
    lm_pp_split *sp = lm_alloc(sizeof *sp);
    pp_split_layers(s->n_layers, pp, v, NULL, 0, 0.0, hc, sp, NULL, 0);
    for (int st = 0; st < pp; st++) {
        e->layers[st] = 0;
        for (int j = 0; j < v; j++) e->layers[st] += sp->count[j * pp + st];
    }
    lm_free(sp);
    return e->layers;
}

/* Activation sets stage `stage` keeps (pp_max_inflight), cached per
 * (pp, v, m). */
typedef struct {
    int pp, v, m;
    int *slots;
} slot_entry;
#define SLOT_CACHE 32
static slot_entry slot_cache[SLOT_CACHE];
static int slot_n, slot_next;

static int stage_slots(int pp, int v, int m, int stage) {
    if (pp <= 1) return 1;
    for (int i = 0; i < slot_n; i++)
        if (slot_cache[i].pp == pp && slot_cache[i].v == v && slot_cache[i].m == m) return slot_cache[i].slots[stage];
    int at = slot_n < SLOT_CACHE ? slot_n++ : (slot_next++ % SLOT_CACHE);
    slot_entry *e = &slot_cache[at];
    free(e->slots);
    e->pp = pp, e->v = v, e->m = m;
    e->slots = malloc(sizeof(int) * (size_t)pp);
    int kind = v > 1 ? LM_PP_INTERLEAVED : LM_PP_1F1B;
    for (int st = 0; st < pp; st++) e->slots[st] = pp_max_inflight(kind, pp, v, m, st);
    return e->slots[stage];
}

/* ---- checks ---- */

int plan_check(const plan_shape *s, const plan_cluster *cl, const plan_layout *l) {
    tp_local L;
    if (tp_split(s, l->tp, &L)) return PLAN_R_TP_SHAPE;
    if (l->tp > cl->gpus_per_node && !cl->oversubscribe) return PLAN_R_TP_NODE;
    if (l->pp * l->v > s->n_layers || l->pp * l->v > LM_PP_MAX_CHUNKS) return PLAN_R_PP_LAYERS;
    if (s->global_batch % (l->dp * l->mb)) return PLAN_R_BATCH;
    int m = s->global_batch / (l->dp * l->mb);
    if (l->pp > 1 && l->v > 1 && m % l->pp) return PLAN_R_SCHEDULE;
    if (l->sp && l->tp > 1 && ((long)l->mb * s->seq_len) % l->tp) return PLAN_R_SP_ROWS;
    if (l->offload == PLAN_OFF_PARAM && l->zero != 3) return PLAN_R_PARAM_ZERO;
    return PLAN_OK;
}

/* ---- memory (zero.h, model.c model_create_3d) ----
 * Per layer and activation set, R = mb T rows, Rx = R/tp with sp (else R),
 * local widths Hd = H hd / tp, KVd, F/tp, e bytes per element:
 *   kept: x, a: 2 Rx D e; q, att: 2 R Hd e; k, v: 2 R KVd e; g, u: 2 R F e;
 *         rstd1, rstd2: 2 Rx 4; lse: mb (H/tp) T 4;  (recompute: x only)
 * times slots x layers of the stage; workspace: n, dn, dh: 3 R D e;
 * f1..f3: 3 R F e; dq, datt: 2 R Hd e; dk, dv: 2 R KVd e; rstd_final Rx 4;
 * RoPE tables T hd 4; the last stage's final residuals slots Rx D e and
 * logits block rows V e (rows = 16 MiB / (e V), 16 .. R); recompute adds
 * one layer's full set. */
static double layer_full(double R, double Rx, double D, double Hd, double KVd, double F, double Hl, double mb,
                         double T, double e) {
    return e * (2 * Rx * D + 2 * R * Hd + 2 * R * KVd + 2 * R * F) + 4 * (2 * Rx + mb * Hl * T);
}

/* Everything of a stage but the offloadable bytes: arena, chunks,
 * activations (plan_stage_memory then stage_bytes); returns the stage's
 * chunk layout. */
static const stage_lay *stage_base(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, int stage,
                                   plan_mem *o) {
    memset(o, 0, sizeof *o);
    tp_local L = {0};
    tp_split(s, l->tp, &L);
    int pp = l->pp, v = pp > 1 ? l->v : 1, m = s->global_batch / (l->dp * l->mb);
    int first = stage == 0, last = stage == pp - 1;
    int head = last ? (!s->tied || pp > 1 ? 2 : 1) : 0;
    o->layers = stage_layers(s, pp, v)[stage];
    o->slots = stage_slots(pp, v, m, stage);
    double e = cl->esz;
    const stage_lay *y = stage_layout(s, &L, first, head, o->layers, l->dp);
    o->psi = y->psi;
    o->chunk = y->cmax;
    o->nch = y->nch;
    o->wc = y->wc;

    double R = (double)l->mb * s->seq_len, Rx = l->sp && l->tp > 1 ? R / l->tp : R, D = s->dim, T = s->seq_len;
    double Hd = (double)L.H * L.hd, KVd = (double)L.KV * L.hd, F = L.F, V = L.V;
    double full = layer_full(R, Rx, D, Hd, KVd, F, L.H, l->mb, T, e);
    double per_layer = l->recompute ? e * Rx * D : full;
    o->acts_kept = (double)o->slots * o->layers * per_layer;
    double ws = 3 * R * D * e + 3 * R * F * e + 2 * R * Hd * e + 2 * R * KVd * e + 4 * Rx + T * L.hd * 4.0;
    if (l->recompute) ws += full;
    if (last) {
        double rows = floor((double)(16 << 20) / (e * V));
        if (rows < 16) rows = 16;
        if (rows > R) rows = R;
        ws += o->slots * Rx * D * e + rows * V * e;
    }
    o->acts_ws = ws;
    return y;
}

/* Chunks a fraction f offloads (zero.c place_frac): from the last one
 * backwards while the offloaded elements are below f x all - 0.5, i.e. the
 * fewest last chunks whose elements reach f of the arena. */
static int frac_chunks(double f, const stage_lay *y) {
    double want = f * y->psi - 0.5;
    int k = 0;
    while (k < y->nch && y->tail[k] < want) k++;
    return k;
}

/* The ZeRO and offload bytes of a stage whose last ko chunks have their
 * optimizer state and last kp chunks their parameters in host memory
 * (perf/PLAN.md "Offload"; zero.c device_bytes); o from stage_base, y its
 * layout. Per rank, with E_o, E_p the elements of those chunks (tail[ko],
 * tail[kp]), s = 1 (ZeRO-0) or 1/dp, owned = s Psi, o_o = s E_o (the owned
 * offloaded elements), o_p = E_p / dp (ZeRO-3 only: parameter offload needs
 * it, kp = 0 otherwise):
 *   weights  e Psi (ZeRO 0-2), e (Psi - E_p) / dp (ZeRO-3 home shards) +
 *            e (G + P l) gathered slots at ZeRO-3: G = gath[kp] (zero.c
 *            min_slots), P = prefetch, l the longest chunk that needs a
 *            slot (any at dp > 1; the offloaded ones at dp 1) - the
 *            planner's margin for the chunks prefetched ahead
 *   master   4 (owned - o_o) (bf16 only)     moments 8 (owned - o_o)
 *   grads    e Psi (ZeRO 0, 1), e Psi/dp + two e cmax buckets (ZeRO 2, 3)
 *   host     master 4 o_o (fp32: 4 (o_o - o_p), the master of a chunk whose
 *            parameters are on the host is its home shard), moments 8 o_o,
 *            gradient staging e o_o, parameter staging e (o_o - o_p)
 *            (bf16), parameters e o_p
 *   link     D2H e o_o (the gradients), H2D e (o_o - o_p) (the updated
 *            parameters of chunks whose home is the device) + 2 m e o_p
 *            (each offloaded home shard uploaded for forward and backward
 *            of each micro-batch). */
static void stage_bytes(const plan_cluster *cl, const plan_layout *l, int m, const stage_lay *y, int ko, int kp,
                        plan_mem *o) {
    double e = cl->esz, dp = l->dp, psi = o->psi;
    int z = l->zero;
    if (z != 3) kp = 0; /* parameter offload needs ZeRO-3 (session.c: exit 2) */
    o->ko = ko, o->kp = kp;
    o->off_opt = y->tail[ko];
    o->off_par = y->tail[kp];
    double sc = z == 0 ? 1 : 1 / dp, oo = sc * o->off_opt, op = o->off_par / dp;
    o->owned = sc * psi;
    o->owned_t = o->owned; /* the plan trains every tensor */
    o->gather = z == 3 ? y->gath[kp] : 0;
    double pl = z == 3 ? (l->dp > 1 ? y->cmax : y->tmax[kp]) : 0;
    o->managed = e * (o->gather + l->prefetch * pl);
    o->weights = (z == 3 ? e * (psi - o->off_par) / dp : e * psi) + o->managed;
    o->master = e == 4 ? 0 : 4 * (o->owned - oo);
    o->optim = 8 * (o->owned_t - oo);
    o->grads = z >= 2 ? e * psi / dp : e * psi;
    o->buckets = z >= 2 ? 2 * e * o->chunk : 0; /* zero.c: MAX_BUCKETS_SOFT = 2 buffers of the longest chunk */
    o->total = o->weights + o->master + o->grads + o->buckets + o->optim + o->acts_kept + o->acts_ws;
    o->host_master = 4 * (e == 4 ? oo - op : oo);
    o->host_optim = 8 * oo;
    o->host_grad = e * oo;
    o->host_pstage = e == 2 ? e * (oo - op) : 0;
    o->host_params = e * op;
    o->host_total = o->host_master + o->host_optim + o->host_grad + o->host_pstage + o->host_params;
    o->d2h = e * oo;
    o->h2d = e * (oo - op) + 2.0 * m * e * op;
}

void plan_stage_memory(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, int stage, plan_mem *o) {
    const stage_lay *y = stage_base(s, cl, l, stage, o);
    int m = s->global_batch / (l->dp * l->mb);
    stage_bytes(cl, l, m, y, frac_chunks(l->fo, y), frac_chunks(l->fp, y), o);
}

double plan_device_limit(const plan_cluster *cl, const plan_calib *c) {
    return cl->dev_limit > 0 ? cl->dev_limit : (cl->mem_gib - c->reserve_gib) * 1073741824.0;
}

double plan_host_limit(const plan_cluster *cl) {
    return cl->host_mem_gib > 0 ? cl->host_mem_gib * 1073741824.0 : INFINITY;
}

int plan_ranks_per_node(const plan_cluster *cl, int gpus) {
    return cl->oversubscribe || gpus < cl->gpus_per_node ? gpus : cl->gpus_per_node;
}

void plan_set_offload(plan_layout *l, int mode, double frac) {
    l->offload = mode;
    l->fo = mode == PLAN_OFF_OPTIM || mode == PLAN_OFF_PARAM ? frac : 0;
    l->fp = mode == PLAN_OFF_PARAM ? frac : 0;
}

/* Whether every stage fits the device at fractions (fo, fp). */
static int stages_fit(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, const plan_mem *base,
                      const stage_lay *const *lay, double lim, double fo, double fp) {
    int m = s->global_batch / (l->dp * l->mb);
    for (int st = 0; st < l->pp; st++) {
        plan_mem t = base[st];
        stage_bytes(cl, l, m, lay[st], frac_chunks(fo, lay[st]), frac_chunks(fp, lay[st]), &t);
        if (t.total > lim) return 0;
    }
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The smallest fraction f for which the stages fit, stepping chunk by chunk
 * from the last one of some stage: f in {tail_s[k] / Psi_s} (the fraction
 * of the elements that k offloaded chunks of stage s move), scanning up
 * from 0; which: 0 fo = f (fp fixed), 1 fp = f (fo fixed), 2 fo = fp = f.
 * -1 when none does. */
static double smallest_frac(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, const plan_mem *base,
                            const stage_lay *const *lay, double lim, int which, double fixed) {
    int total = 1;
    for (int st = 0; st < l->pp; st++) total += lay[st]->nch;
    double *cand = lm_alloc(sizeof(double) * (size_t)total);
    int nc = 0;
    cand[nc++] = 0;
    for (int st = 0; st < l->pp; st++)
        for (int k = 1; k <= lay[st]->nch; k++) cand[nc++] = lay[st]->tail[k] / lay[st]->psi;
    qsort(cand, (size_t)nc, sizeof *cand, cmp_double);
    double found = -1;
    for (int i = 0; i < nc && found < 0; i++) {
        if (i && cand[i] == cand[i - 1]) continue;
        double f = cand[i];
        double fo = which == 1 ? fixed : f, fp = which == 0 ? fixed : f;
        if (stages_fit(s, cl, l, base, lay, lim, fo, fp)) found = f;
    }
    lm_free(cand);
    return found;
}

int plan_fit_offload(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, plan_layout *l) {
    double lim = plan_device_limit(cl, c);
    plan_mem *base = lm_alloc(sizeof(plan_mem) * (size_t)l->pp);
    const stage_lay **lay = lm_alloc(sizeof(stage_lay *) * (size_t)l->pp);
    plan_layout b0 = *l;
    b0.fo = b0.fp = 0;
    for (int st = 0; st < l->pp; st++) lay[st] = stage_base(s, cl, &b0, st, &base[st]);
    double f;
    int ok = 1;
    switch (l->offload) {
    case PLAN_OFF_OPTIM:
        f = smallest_frac(s, cl, l, base, lay, lim, 0, 0.0);
        l->fo = f >= 0 ? f : 1, l->fp = 0;
        ok = f >= 0;
        break;
    case PLAN_OFF_PARAM: /* ZeRO-3 only (the run stops otherwise) */
        f = l->zero == 3 ? smallest_frac(s, cl, l, base, lay, lim, 2, 0.0) : -1;
        l->fo = l->fp = f >= 0 ? f : 1;
        ok = f >= 0;
        break;
    case PLAN_OFF_AUTO: /* zero.c plan_placement: optimizer state first, then (ZeRO-3) parameters */
        f = smallest_frac(s, cl, l, base, lay, lim, 0, 0.0);
        if (f >= 0) l->fo = f, l->fp = 0;
        else if (l->zero == 3) {
            f = smallest_frac(s, cl, l, base, lay, lim, 1, 1.0);
            l->fo = 1, l->fp = f >= 0 ? f : 1;
            ok = f >= 0;
        } else l->fo = 1, l->fp = 0, ok = 0;
        break;
    default: ok = stages_fit(s, cl, l, base, lay, lim, 0, 0); l->fo = l->fp = 0; break;
    }
    lm_free(lay);
    lm_free(base);
    return ok;
}

/* ---- time ----
 * Per micro-batch and stage s (L_s layers):
 *   compute  = mb T [L_s f_layer (1 + rc/3) + [last] f_head] / tp
 *              / (peak x gemm_eff(min(D/tp, mb T)) x e2e)
 *   tp comm  = sent / (B_intra comm_eff) + calls 2 (tp-1) latency, with
 *              tp_comm_formula's counts over the stage's layers;
 *   p2p      = 2 v (Rx D e / B_pp + latency);
 * pipeline   = (m + (pp-1)/v) max_s (compute + tp + p2p)  (bubble: the (pp-1)/v part);
 * dp comm    = the overlappable reduce-scatter / all-reduce (at dp_comm_eff
 *              of the link), hidden up to dp_hidden within backward, + the
 *              weights' all-gather (ZeRO >= 1; blocking, at comm_eff);
 * optimizer  = owned elements x (28 + 2e) bytes / memory bandwidth;
 * step       = pipeline + dp + optimizer + overhead. */

static double link_time(double bytes, double gbs, double eff) { return bytes / (gbs * 1e9 * eff); }

void plan_evaluate(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, const plan_layout *l,
                   plan_result *o) {
    memset(o, 0, sizeof *o);
    o->l = *l;
    int pp = l->pp, v = pp > 1 ? l->v : 1, tp = l->tp, dp = l->dp, gpus = dp * tp * pp;
    int m = s->global_batch / (dp * l->mb);
    o->n_micro = m;
    double e = cl->esz, D = s->dim, T = s->seq_len, R = (double)l->mb * T;
    double Rx = l->sp && tp > 1 ? R / tp : R, lat = cl->latency_us * 1e-6;
    int world_in_node = gpus <= cl->gpus_per_node || cl->oversubscribe;
    double B_tp = cl->intra_gbs;
    double B_pp = world_in_node ? cl->intra_gbs : cl->inter_gbs;
    double B_dp = world_in_node || dp * tp <= cl->gpus_per_node ? cl->intra_gbs
                  : fmin(cl->intra_gbs, cl->inter_gbs * cl->gpus_per_node / tp);
    double f_layer = 6.0 * layer_params(s) + 12.0 * D * T, f_head = 6.0 * ((double)s->vocab * D + D);
    double k = fmin(D / tp, R);
    double rate = cl->peak_tflops * 1e12 * plan_gemm_eff(c, k) * c->e2e;
    if (cl->oversubscribe && gpus > cl->gpus_per_node) rate *= (double)cl->gpus_per_node / gpus;
    const int *layers = stage_layers(s, pp, v);
    double worst_mb = 0, worst_c = 0, worst_tp = 0, worst_p2p = 0, t_dp = 0, t_opt = 0, t_x = 0, t_h = 0;
    double host_rate = cl->host_adamw_rate > 0 ? cl->host_adamw_rate
                       : cl->host_mem_bw_gbs * 1e9 / cl->gpus_per_node / 28.0; /* 0 when neither is given */
    double bwd_share = (2.0 + l->recompute) / (3.0 + l->recompute); /* backward's part of the compute */
    o->mem.total = -1;
    for (int st = 0; st < pp; st++) {
        plan_mem mem;
        plan_stage_memory(s, cl, l, st, &mem);
        if (mem.total > o->mem.total) {
            o->mem = mem;
            o->mem_stage = st;
        }
        if (mem.host_total > o->host_max) o->host_max = mem.host_total;
        int first = st == 0, last = st == pp - 1, Ls = layers[st];
        double rc = l->recompute;
        double t_c = R * (Ls * f_layer * (1 + rc / 3) + (last ? f_head : 0)) / tp / rate;
        /* tensor parallelism: collectives per micro-batch (tp_comm_formula) */
        double t_tp = 0;
        if (tp > 1) {
            double n_rs = 4 * Ls + 2 * Ls * rc + first + last, RD = R * D * e, p = tp;
            double sent, calls;
            if (!l->sp) {
                sent = 2 * (p - 1) / p * n_rs * RD;
                calls = n_rs;
            } else {
                double n_ag = 6 * Ls + 2 * Ls * rc + first + last;
                sent = (p - 1) / p * (n_rs + n_ag) * RD;
                calls = n_rs + n_ag;
            }
            if (last) sent += (p - 1) / p * 12.0 * R * p;
            t_tp = link_time(sent, B_tp, c->comm_eff) + calls * 2 * (p - 1) * lat;
        }
        double t_p2p = pp > 1 ? 2.0 * v * (link_time(Rx * D * e, B_pp, c->comm_eff) + lat) : 0;
        double t_mb = t_c + t_tp + t_p2p;
        if (t_mb > worst_mb) {
            worst_mb = t_mb;
            worst_c = t_c;
            worst_tp = t_tp;
            worst_p2p = t_p2p;
        }
        /* data parallelism over this stage's arena */
        double td = 0, to = 0;
        if (dp > 1) {
            double n = e * mem.psi, d = dp, nch = mem.nch, win = bwd_share * t_c;
            double t_ov, t_ex = 0;
            if (l->zero == 0) t_ov = link_time(2 * (d - 1) / d * n, B_dp, c->dp_comm_eff) + nch * 2 * (d - 1) * lat;
            else if (l->zero == 1) t_ov = link_time((d - 1) / d * n, B_dp, c->dp_comm_eff) + nch * (d - 1) * lat;
            else {
                t_ov = m * (link_time((d - 1) / d * n, B_dp, c->dp_comm_eff) + nch * (d - 1) * lat);
                win *= m;
                /* ZeRO-3: + every chunk gathered for forward and backward of each micro-batch,
                 * (d-1)/d e cs received per gather, prefetched (overlappable like the reductions) */
                if (l->zero == 3) {
                    t_ov *= 3;
                    win = m * t_c;
                }
            }
            /* the weights' all-gather after the update is a blocking collective (ZeRO-3 keeps
             * the weights sharded: none) */
            if (l->zero == 1 || l->zero == 2)
                t_ex = link_time((d - 1) / d * n, B_dp, c->comm_eff) + nch * (d - 1) * lat;
            double hid = fmax((1 - c->dp_hidden) * t_ov, t_ov - win);
            td = hid + t_ex;
        }
        /* AdamW on the device over the owned elements whose state stays there
         * (fo: the fraction of the arena's elements whose state is offloaded) */
        double fo = mem.psi > 0 ? mem.off_opt / mem.psi : 0;
        to = mem.owned * (1 - fo) * (28.0 + 2 * e) / (cl->mem_bw_gbs * 1e9);
        /* the host link: H2D and D2H overlap each other, and compute for offload_hidden of
         * their time (at most the stage's compute of the step) */
        double tx = 0, th = 0;
        if (cl->link_gbs > 0 && (mem.h2d > 0 || mem.d2h > 0)) {
            double raw = fmax(mem.h2d, mem.d2h) / (cl->link_gbs * 1e9);
            tx = fmax((1 - c->offload_hidden) * raw, raw - m * t_c);
        }
        /* the host AdamW over the offloaded owned elements, overlapped with nothing */
        if (host_rate > 0) th = mem.owned * fo / host_rate;
        if (td > t_dp) t_dp = td;
        if (to > t_opt) t_opt = to;
        if (tx > t_x) t_x = tx;
        if (th > t_h) t_h = th;
    }
    double fill = pp > 1 ? (double)(pp - 1) / v : 0;
    o->t_compute = m * worst_c;
    o->t_tp = m * worst_tp;
    o->t_pp = m * worst_p2p;
    o->t_bubble = fill * worst_mb;
    o->t_dp = t_dp;
    o->t_optim = t_opt;
    o->t_xfer = t_x;
    o->t_host = t_h;
    o->t_step = (m + fill) * worst_mb + t_dp + t_opt + t_x + t_h + c->step_overhead_ms * 1e-3;
    double tokens = (double)s->global_batch * T;
    o->tokens_per_s_gpu = tokens / o->t_step / gpus;
    o->mfu = plan_flops_per_token(s) * tokens / (o->t_step * gpus * cl->peak_tflops * 1e12);
    o->fits_device = o->mem.total <= plan_device_limit(cl, c);
    o->fits_host = o->host_max * plan_ranks_per_node(cl, gpus) <= plan_host_limit(cl);
    o->fits = o->fits_device && o->fits_host;
}

/* ---- the search ---- */

static int cmp_result(const void *a, const void *b) {
    const plan_result *x = a, *y = b;
    if (x->t_step != y->t_step) return x->t_step < y->t_step ? -1 : 1;
    return x->mem.total < y->mem.total ? -1 : x->mem.total > y->mem.total;
}

static void reject(plan_rejects *r, int why, const plan_layout *l) {
    if (!r->count[why]++) {
        r->example[why][0] = l->dp;
        r->example[why][1] = l->tp;
        r->example[why][2] = l->pp;
    }
}

/* The layout l (offload mode set) as the search takes it: fractions fixed
 * by fix->frac, else the smallest that fits; 1 when it fits the device. */
static int offload_layout(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, const plan_fix *fix,
                          plan_layout *l) {
    if (l->offload == PLAN_OFF_NONE) {
        l->fo = l->fp = 0;
        return -1; /* evaluate to know */
    }
    if (fix->frac >= 0 && l->offload != PLAN_OFF_AUTO) {
        plan_set_offload(l, l->offload, fix->frac);
        return -1;
    }
    return plan_fit_offload(s, cl, c, l);
}

int plan_search(const plan_shape *s, const plan_cluster *cl, const plan_calib *c, int gpus, const plan_fix *fix,
                plan_result *out, int max, plan_rejects *rej) {
    memset(rej, 0, sizeof *rej);
    rej->min_mem = rej->min_host = -1;
    int cap = 256, n = 0;
    plan_result *all = lm_alloc(sizeof(plan_result) * (size_t)cap);
    int P = fix->prefetch >= 0 ? fix->prefetch : 2;
#define FREE(f, x) ((f) < 0 || (f) == (x))
    for (int tp = 1; tp <= gpus; tp++) {
        if (gpus % tp || !FREE(fix->tp, tp)) continue;
        for (int pp = 1; pp <= gpus / tp; pp++) {
            if ((gpus / tp) % pp || !FREE(fix->pp, pp)) continue;
            int dp = gpus / (tp * pp);
            for (int v = 1; v <= (pp > 1 ? s->n_layers / pp : 1); v++) {
                /* v = 1, or interleaved chunks of equal layer counts */
                if (!FREE(fix->v, v) || (v > 1 && s->n_layers % (pp * v))) continue;
                for (int z = 0; z <= 3; z++) {
                    /* at dp 1 a ZeRO stage only when fixed, but ZeRO-3 with parameter offload
                     * (the one way to keep parameters on the host: the searched dp 1 layouts
                     * are ZeRO-0 and, when offload is searched, ZeRO-3 in param mode) */
                    int param3 = z == 3 && (fix->offload == PLAN_OFF_PARAM || (fix->offload < 0 && cl->link_gbs > 0));
                    if (!FREE(fix->zero, z) || (dp == 1 && z > 0 && fix->zero != z && !param3)) continue;
                    int only_param = dp == 1 && z > 0 && fix->zero != z;
                    for (int sp = 0; sp <= (tp > 1); sp++) {
                        if (!FREE(fix->sp, sp)) continue;
                        for (int mb = 1; mb <= 64 && mb * dp <= s->global_batch; mb *= 2) {
                            if (!FREE(fix->mb, mb)) continue;
                            for (int rc = 0; rc <= 1; rc++) {
                                if (!FREE(fix->recompute, rc)) continue;
                                plan_layout l = {dp, tp, pp, v, sp, z, mb, rc, PLAN_OFF_NONE, 0, 0, P};
                                int why = plan_check(s, cl, &l);
                                if (why) {
                                    reject(rej, why, &l);
                                    continue;
                                }
                                /* offload modes in the order of their cost: none, optim, param
                                 * (each only when the one before does not fit the device) */
                                plan_result r;
                                int placed = 0;
                                /* the last mode tried: a layout that does not fit with it is rejected */
                                int last = fix->offload >= 0 ? fix->offload
                                           : cl->link_gbs <= 0 ? PLAN_OFF_NONE
                                           : z == 3 ? PLAN_OFF_PARAM : PLAN_OFF_OPTIM;
                                for (int mode = PLAN_OFF_NONE; mode <= PLAN_OFF_AUTO && !placed; mode++) {
                                    if (fix->offload >= 0 ? mode != fix->offload
                                                          : (mode == PLAN_OFF_AUTO ||
                                                             (mode != PLAN_OFF_NONE && cl->link_gbs <= 0)))
                                        continue;
                                    if (only_param && mode != PLAN_OFF_PARAM) continue;
                                    if (mode == PLAN_OFF_PARAM && z != 3) { /* the run stops (session.c) */
                                        if (fix->offload == PLAN_OFF_PARAM && fix->zero == z)
                                            reject(rej, PLAN_R_PARAM_ZERO, &l);
                                        continue;
                                    }
                                    plan_layout t = l;
                                    t.offload = mode;
                                    offload_layout(s, cl, c, fix, &t);
                                    plan_evaluate(s, cl, c, &t, &r);
                                    rej->evaluated++;
                                    if (!r.fits_device) {
                                        if (mode == last) {
                                            reject(rej, PLAN_R_MEMORY, &t);
                                            if (rej->min_mem < 0 || r.mem.total < rej->min_mem)
                                                rej->min_mem = r.mem.total;
                                        }
                                        continue;
                                    }
                                    placed = 1;
                                    if (!r.fits_host) {
                                        double hb = r.host_max * plan_ranks_per_node(cl, gpus);
                                        reject(rej, PLAN_R_HOST, &t);
                                        if (rej->min_host < 0 || hb < rej->min_host) rej->min_host = hb;
                                        continue;
                                    }
                                    if (n == cap) all = lm_realloc(all, sizeof(plan_result) * (size_t)(cap *= 2));
                                    all[n++] = r;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
#undef FREE
    qsort(all, (size_t)n, sizeof *all, cmp_result);
    memcpy(out, all, sizeof(plan_result) * (size_t)(n < max ? n : max));
    lm_free(all);
    return n;
}
