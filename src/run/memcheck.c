/* memcheck.c — impossible decks and memory checked before allocating (see
 * memcheck.h). */
#include "memcheck.h"
#include "chunks.h"
#include "comm.h"
#include "common.h"
#include "plan_model.h"
#ifdef LAMINA_CUDA
#include "gpu_props.h"
#endif
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- checked 64-bit arithmetic: a result that overflows saturates at
 * UINT64_MAX and sets *ovf, so one test at the end covers a whole formula ---- */

static uint64_t mul(uint64_t a, uint64_t b, int *ovf) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        *ovf = 1;
        return UINT64_MAX;
    }
    return r;
}

static uint64_t add(uint64_t a, uint64_t b, int *ovf) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        *ovf = 1;
        return UINT64_MAX;
    }
    return r;
}

/* Tensors the full model has: 9 per layer, the embedding, the final norm
 * and the lm_head. params_add's table is int-indexed and doubles, so at
 * most INT_MAX / 2 tensors. */
#define MAX_TENSORS ((uint64_t)INT_MAX / 2)

/* Bytes per element of the compute dtype. */
static int elem_bytes(const lm_config *c) {
    return !strcmp(c->precision, "bf16") || (!strcmp(c->precision, "auto") && !strcmp(c->device, "cuda")) ? 2 : 4;
}

int memcheck_sizes(const lm_config *c, int dp, char *err, size_t errlen) {
    int ovf = 0;
    uint64_t L = (uint64_t)c->n_layers, D = (uint64_t)c->dim, F = (uint64_t)c->ffn_dim, V = (uint64_t)c->vocab_size;
    uint64_t hd = D / (uint64_t)c->n_heads, KVd = (uint64_t)c->n_kv_heads * hd, tp = (uint64_t)c->tp;
    uint64_t T = (uint64_t)c->seq_len, mb = (uint64_t)c->micro_batch, gb = (uint64_t)c->global_batch;

    uint64_t nt = add(mul(9, L, &ovf), 3, &ovf);
    if (ovf || nt > MAX_TENSORS)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.n_layers = %d: the model would have %llu tensors (9 per layer + 3); lamina's tensor "
                      "tables hold at most %llu (model.n_layers <= %llu)", c->n_layers, (unsigned long long)nt,
                      (unsigned long long)MAX_TENSORS, (unsigned long long)((MAX_TENSORS - 3) / 9));

    /* Parameters and their bytes (weights, gradients, two moments, master:
     * at most 20 bytes each); a 64-bit overflow here is a deck no machine
     * can hold. */
    uint64_t per_layer = add(add(mul(2, D, &ovf), mul(2, mul(D, D, &ovf), &ovf), &ovf),
                             add(mul(2, mul(KVd, D, &ovf), &ovf), mul(3, mul(F, D, &ovf), &ovf), &ovf), &ovf);
    uint64_t params = add(add(mul(L, per_layer, &ovf), mul(c->tie_embeddings ? 1 : 2, mul(V, D, &ovf), &ovf), &ovf),
                          D, &ovf);
    uint64_t pbytes = mul(params, 20, &ovf);
    if (ovf || pbytes > (uint64_t)INT64_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.n_layers = %d, model.dim = %d, model.ffn_dim = %d, model.vocab_size = %d: %s parameters "
                      "whose weights and optimizer state need more than 2^63 bytes (64-bit overflow): impossible on "
                      "any machine", c->n_layers, c->dim, c->ffn_dim, c->vocab_size,
                      ovf ? "more than 2^64" : "so many");

    /* A micro-batch's rows: model_create_3d indexes its buffers (rows x
     * width elements, the logits block rows x vocabulary) with int. */
    uint64_t R = mul(mb, T, &ovf);
    uint64_t Fl = F / tp, Dl = D, Vl = (V + tp - 1) / tp, widest = Fl > Dl ? Fl : Dl;
    if (KVd > widest) widest = KVd;
    uint64_t rowsw = mul(R, widest, &ovf), logit_rows = R < 16 ? R : 16;
    uint64_t logits = mul(logit_rows, Vl, &ovf);
    if (ovf || R > INT_MAX || rowsw > INT_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "train.micro_batch = %d x train.seq_len = %d = %llu rows per micro-batch, times the widest "
                      "activation (%llu: model.dim / model.ffn_dim / parallel.tp) = %s elements: lamina's activation "
                      "buffers hold at most %d elements (use a smaller train.micro_batch or train.seq_len, or more "
                      "parallel.tp)", c->micro_batch, c->seq_len, (unsigned long long)R, (unsigned long long)widest,
                      ovf ? "more than 2^64" : "too many", INT_MAX);
    if (logits > INT_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "model.vocab_size = %d: a block of %llu logit rows of %llu vocabulary entries per rank exceeds "
                      "lamina's %d-element buffers (use a smaller model.vocab_size or more parallel.tp)",
                      c->vocab_size, (unsigned long long)logit_rows, (unsigned long long)Vl, INT_MAX);

    /* The step's token buffers (ids and targets of this rank's samples)
     * and the tokens of the whole run (a 64-bit counter). */
    uint64_t samples = gb / (uint64_t)(dp > 0 ? dp : 1);
    uint64_t tokbytes = mul(mul(samples, T, &ovf), 8, &ovf);
    if (ovf || tokbytes > (uint64_t)INT64_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "train.global_batch = %d x train.seq_len = %d: the token buffers of one step overflow 64 bits",
                      c->global_batch, c->seq_len);
    uint64_t run_tokens = mul(mul((uint64_t)c->steps, gb, &ovf), T + 1, &ovf);
    if (ovf || run_tokens > (uint64_t)INT64_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "train.steps = %ld x train.global_batch = %d x (train.seq_len + 1) = more than 2^63 tokens: the "
                      "run's token and sample counters (64-bit) would overflow; use fewer train.steps",
                      c->steps, c->global_batch);
    return 0;
}

/* Fixed bytes per rank outside lamina's own buffers: the C, MPI, HDF5,
 * OpenBLAS and OpenMP libraries and their buffers. Measured on the tiny
 * deck (2 layers, dim 64; lamina's buffers about 3 MiB): peak RSS 33.7 MiB
 * with 1 OpenMP thread, 41 MiB with 2. */
#define RESERVE_BASE (40.0 * 1024 * 1024)
#define RESERVE_PER_THREAD (8.0 * 1024 * 1024)
/* Margin on lamina's own bytes: allocator headers and rounding, the data
 * loader, page-cache-backed I/O buffers of checkpoints. */
#define MARGIN 0.10
/* On CUDA without train.device_memory: what the GPU keeps outside lamina's
 * buffers (context, cuBLASLt and NCCL workspaces), as plan's calibration
 * reserve_gib. */
#define GPU_RESERVE ((size_t)4 << 30)

/* A quick lower bound of memcheck_need's total (weights only, and the
 * full tensor table): memcheck_run uses it to refuse a model far too large
 * without building its tensor list (plan_stage_memory lists every tensor
 * of a stage). */
static double need_lower_bound(const lm_config *c) {
    double D = c->dim, hd = D / c->n_heads, KVd = c->n_kv_heads * hd, F = c->ffn_dim, V = c->vocab_size;
    double params = (double)c->n_layers * (2 * D + 2 * D * D + 2 * KVd * D + 3 * F * D) + V * D + D;
    return params * elem_bytes(c) / ((double)c->tp * c->pp) + (9.0 * c->n_layers + 3) * sizeof(lm_param);
}

static int offload_mode(const char *s) {
    return !strcmp(s, "optim") ? PLAN_OFF_OPTIM : !strcmp(s, "param") ? PLAN_OFF_PARAM
           : !strcmp(s, "auto") ? PLAN_OFF_AUTO : PLAN_OFF_NONE;
}

/* The deck as plan_model sees it: shape, "cluster" (the compute dtype; one
 * node), layout. */
static void deck_plan(const lm_config *c, int dp, double dev_limit, plan_shape *s, plan_cluster *cl,
                      plan_layout *l) {
    *s = (plan_shape){.dim = c->dim, .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                      .ffn_dim = c->ffn_dim, .vocab = c->vocab_size, .tied = c->tie_embeddings,
                      .seq_len = c->seq_len, .global_batch = c->global_batch};
    memset(cl, 0, sizeof *cl);
    cl->esz = elem_bytes(c);
    cl->gpus_per_node = INT_MAX;
    cl->oversubscribe = 1;
    cl->dev_limit = dev_limit;
    *l = (plan_layout){.dp = dp, .tp = c->tp, .pp = c->pp, .v = c->pp > 1 ? c->virtual_stages : 1,
                       .sp = c->sp && c->tp > 1, .zero = c->zero, .mb = c->micro_batch,
                       .recompute = c->recompute, .prefetch = c->prefetch};
    plan_set_offload(l, offload_mode(c->offload), c->offload_frac);
}

/* The device limit as plan_device_limit reads it: no calibration reserve
 * (dev_limit is already net of it). */
static plan_calib no_reserve(void) {
    plan_calib k;
    plan_calib_defaults(&k);
    k.reserve_gib = 0;
    return k;
}

/* The largest stage's device bytes of layout l. */
static double device_bytes(const plan_shape *s, const plan_cluster *cl, const plan_layout *l) {
    double best = 0;
    for (int st = 0; st < l->pp; st++) {
        plan_mem m;
        plan_stage_memory(s, cl, l, st, &m);
        if (m.total > best) best = m.total;
    }
    return best;
}

void memcheck_need(const lm_config *c, int dp, double dev_limit, lm_memneed *o) {
    memset(o, 0, sizeof *o);
    plan_shape s;
    plan_cluster cl;
    plan_layout l;
    deck_plan(c, dp, dev_limit, &s, &cl, &l);
    if (l.offload == PLAN_OFF_AUTO) { /* the smallest offload that fits; none on an unbounded device */
        if (dev_limit > 0) {
            plan_calib k = no_reserve();
            plan_fit_offload(&s, &cl, &k, &l);
        } else l.fo = l.fp = 0;
    }
    o->layout = l;
    double best = -1;
    for (int st = 0; st < c->pp; st++) {
        plan_mem m;
        plan_stage_memory(&s, &cl, &l, st, &m);
        if (m.host_total > o->offload) o->offload = m.host_total;
        if (m.total > best) {
            best = m.total;
            o->stage = st;
            o->mem = m;
            o->model = m.weights + m.master + m.grads + m.buckets + m.optim;
            o->acts = m.acts_kept + m.acts_ws;
            /* the stage's tensor table (params_add doubles it: up to 2x) and
             * per layer and activation set the model's bookkeeping */
            o->tables = (9.0 * m.layers + 3) * sizeof(lm_param) * 2 + (double)m.layers * m.slots * 512.0;
        }
    }
    o->device = o->model + o->acts;
    o->dev_limit = dev_limit;
    o->dev_is_host = strcmp(c->device, "cuda") != 0;
    /* every rank also holds the full model's tensor table (session.c) */
    o->tables += (9.0 * c->n_layers + 3) * (sizeof(lm_param) * 2 + 8.0);
    o->batch = 8.0 * ((double)c->global_batch / dp) * c->seq_len;
    int threads = 1;
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) > 0) threads = atoi(e);
    o->reserve = RESERVE_BASE + RESERVE_PER_THREAD * threads;
    o->margin = MARGIN;
    double host_dev = o->dev_is_host ? o->device : 0;
    o->total = (host_dev + o->offload + o->batch + o->tables) * (1.0 + MARGIN) + o->reserve;
}

/* Bytes as GiB/MiB text. */
static const char *human(double b, char *buf, size_t n) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024));
    return buf;
}

/* A fraction rounded up to 3 decimals (a bound that still fits). */
static double up3(double f) { return ceil(f * 1000 - 1e-6) / 1000; }

int memcheck_device(const lm_config *c, int dp, const lm_memneed *n, char *err, size_t errlen) {
    if (n->dev_limit <= 0 || n->device <= n->dev_limit) return 0;
    plan_shape s;
    plan_cluster cl;
    plan_layout l0;
    deck_plan(c, dp, n->dev_limit, &s, &cl, &l0);
    plan_calib k = no_reserve();
    char fix[1024] = "", h[10][32];
    size_t w = 0;
#define ADD(...) (w += (size_t)snprintf(fix + w, w < sizeof fix ? sizeof fix - w : 0, __VA_ARGS__))
    /* offload at the deck's ZeRO stage, then ZeRO-3 (with the deck's offload, then with optim offload) */
    for (int mode = PLAN_OFF_OPTIM; mode <= (n->layout.zero == 3 ? PLAN_OFF_PARAM : PLAN_OFF_OPTIM); mode++) {
        plan_layout t = n->layout; /* (parameter offload needs ZeRO-3: below) */
        t.offload = mode;
        if (plan_fit_offload(&s, &cl, &k, &t))
            ADD("%sparallel.offload = %s with parallel.offload_frac >= %.3g", w ? "; or " : "",
                mode == PLAN_OFF_OPTIM ? "optim" : "param", up3(mode == PLAN_OFF_OPTIM ? t.fo : t.fp));
    }
    if (n->layout.zero < 3) {
        plan_layout t = n->layout;
        t.zero = 3;
        double d3 = device_bytes(&s, &cl, &t);
        if (d3 <= n->dev_limit) ADD("%sparallel.zero = 3 (%s)", w ? "; or " : "", human(d3, h[0], 32));
        else {
            t.offload = PLAN_OFF_OPTIM;
            if (plan_fit_offload(&s, &cl, &k, &t)) {
                ADD("%sparallel.zero = 3 with parallel.offload = optim, offload_frac >= %.3g", w ? "; or " : "",
                    up3(t.fo));
            } else {
                t = n->layout;
                t.zero = 3;
                t.offload = PLAN_OFF_PARAM;
                if (plan_fit_offload(&s, &cl, &k, &t))
                    ADD("%sparallel.zero = 3 with parallel.offload = param, offload_frac >= %.3g", w ? "; or " : "",
                        up3(t.fp));
            }
        }
    }
    /* the need rounded up to what human() prints (0.01 GiB, 0.1 MiB) */
    double q = n->device >= 1073741824.0 ? 1073741824.0 / 100 : 1048576.0 / 10;
    ADD("%s%s >= %s", w ? "; or " : "", n->dev_from_gpu ? "a GPU with at least 4 GiB more than" : "train.device_memory",
        human(ceil(n->device / q) * q, h[1], 32));
#undef ADD
    const plan_mem *m = &n->mem;
    const plan_layout *l = &n->layout;
    char lim[128];
    if (n->dev_from_gpu)
        snprintf(lim, sizeof lim, "the GPU holds %s (train.device_memory = 0: its memory less 4 GiB reserved)",
                 human(n->dev_limit, h[2], 32));
    else snprintf(lim, sizeof lim, "train.device_memory = %s", human(n->dev_limit, h[2], 32));
    return lm_err(err, errlen, LM_ERR_INPUT,
                  "not enough device memory: each rank needs %s on the device (stage %d: weights %s, fp32 master "
                  "%s, moments %s, gradients %s + buckets %s, activations and workspace %s) with parallel.zero = %d, "
                  "parallel.offload = %s (optimizer state of %d and parameters of %d of %d chunks offloaded, "
                  "parallel.prefetch = %d), but %s. Would fit: %s",
                  human(n->device, h[3], 32), n->stage, human(m->weights, h[4], 32), human(m->master, h[5], 32),
                  human(m->optim, h[6], 32), human(m->grads, h[7], 32), human(m->buckets, h[8], 32),
                  human(n->acts, h[9], 32), l->zero, c->offload, m->ko, m->kp, m->nch, l->prefetch, lim, fix);
}

/* A decimal byte count with an optional K/M/G/T suffix (powers of 1024). */
static int parse_bytes(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || !isfinite(v)) return -1;
    double m = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': m = 1024.0, end++; break;
    case 'M': m = 1024.0 * 1024, end++; break;
    case 'G': m = 1024.0 * 1024 * 1024, end++; break;
    case 'T': m = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    v *= m;
    *out = v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
    return 0;
}

/* The first line of a small file as an unsigned number ("max" = none). */
static int read_u64(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = {0};
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    if (!strncmp(buf, "max", 3)) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || errno) return -1;
    *out = v;
    return 0;
}

/* The least (limit - usage) over the cgroup `rel` and its ancestors under
 * `root`, with the files of that cgroup version; UINT64_MAX when no level
 * has a limit. `where` gets the level that limits. */
static uint64_t cgroup_room(const char *root, const char *rel, const char *limit_file, const char *usage_file,
                            char *where, size_t wlen) {
    char dir[LM_PATHLEN], p[LM_PATHLEN + 64];
    if (snprintf(dir, sizeof dir, "%s%s", root, rel) >= (int)sizeof dir) return UINT64_MAX;
    uint64_t best = UINT64_MAX;
    size_t rootlen = strlen(root);
    for (;;) {
        uint64_t lim, use = 0;
        snprintf(p, sizeof p, "%s/%s", dir, limit_file);
        /* cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages) */
        if (!read_u64(p, &lim) && lim < ((uint64_t)1 << 60)) {
            snprintf(p, sizeof p, "%s/%s", dir, usage_file);
            read_u64(p, &use);
            uint64_t room = lim > use ? lim - use : 0;
            if (room < best) {
                best = room;
                snprintf(where, wlen, "%s/%s %llu B - %s %llu B", dir, limit_file, (unsigned long long)lim,
                         usage_file, (unsigned long long)use);
            }
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < rootlen) break;
        *slash = 0;
    }
    return best;
}

uint64_t memcheck_available(char *src, size_t srclen) {
    const char *ov = getenv("LAMINA_MEM_AVAILABLE");
    uint64_t v;
    if (ov && *ov) {
        if (!parse_bytes(ov, &v)) {
            snprintf(src, srclen, "LAMINA_MEM_AVAILABLE=%s", ov);
            return v;
        }
    }
    uint64_t best = UINT64_MAX;
    snprintf(src, srclen, "nothing readable");
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                best = (uint64_t)kb * 1024;
                snprintf(src, srclen, "/proc/meminfo MemAvailable");
            }
        }
        fclose(f);
    }
    /* this process's cgroup: "0::/path" (v2) or "N:...memory...:/path" (v1) */
    f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[LM_PATHLEN + 64], where[LM_PATHLEN + 256] = "";
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) continue;
            *c1 = *c2 = 0;
            const char *ctrl = c1 + 1, *rel = c2 + 1;
            uint64_t room = UINT64_MAX;
            if (!strcmp(line, "0") && !*ctrl)
                room = cgroup_room("/sys/fs/cgroup", rel, "memory.max", "memory.current", where, sizeof where);
            else if (strstr(ctrl, "memory"))
                room = cgroup_room("/sys/fs/cgroup/memory", rel, "memory.limit_in_bytes", "memory.usage_in_bytes",
                                   where, sizeof where);
            if (room < best) {
                best = room;
                snprintf(src, srclen, "cgroup %s", where);
            }
        }
        fclose(f);
    }
    return best == UINT64_MAX ? 0 : best;
}

void memcheck_run(const lm_config *c, int dp) {
    char err[LM_ERRLEN];
    if (memcheck_sizes(c, dp, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    lm_memneed need;
    char src[LM_PATHLEN + 300];
    uint64_t avail = memcheck_available(src, sizeof src);
    /* the device's bytes: train.device_memory, else on CUDA the GPU's memory less a reserve */
    double dev_limit = (double)c->device_memory;
    int from_gpu = 0;
#ifdef LAMINA_CUDA
    if (!dev_limit && !strcmp(c->device, "cuda")) {
        size_t t = lm_cuda_mem_total();
        if (t > GPU_RESERVE) dev_limit = (double)(t - GPU_RESERVE), from_gpu = 1;
    }
#endif
    int dev_is_host = strcmp(c->device, "cuda") != 0;
    double lb = need_lower_bound(c);
    if (dev_is_host && avail && lb > (double)avail) { /* far too large: the bound alone, no tensor list */
        memset(&need, 0, sizeof need);
        need.model = need.total = lb;
    } else {
        memcheck_need(c, dp, dev_limit, &need);
        need.dev_from_gpu = from_gpu;
        /* the same numbers on every rank (every rank weighs the stage that needs the most) */
        if (memcheck_device(c, dp, &need, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
    }
    MPI_Comm world = comm_mpi(comm_world()), node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int nranks = 1, wsize = 1;
    MPI_Comm_size(node, &nranks);
    MPI_Comm_size(world, &wsize);
    /* per node: the needs summed, the least available (the ranks read the
     * same node-wide numbers, or their own cgroup's) */
    double node_need = 0, v[2] = {avail ? -(double)avail : -1e300, 0};
    MPI_Allreduce(&need.total, &node_need, 1, MPI_DOUBLE, MPI_SUM, node);
    double mn = 0;
    MPI_Allreduce(&v[0], &mn, 1, MPI_DOUBLE, MPI_MAX, node); /* -max(-a) = min(a) */
    double node_avail = -mn;
    int short_here = avail && node_need > node_avail, any = 0;
    /* the node that is shortest, to report: (shortfall, its numbers) */
    double rep[4] = {short_here ? node_need - node_avail : -1, node_need, node_avail, (double)nranks};
    struct { double v; int r; } in = {rep[0], comm_world()->rank}, out;
    MPI_Allreduce(&in, &out, 1, MPI_DOUBLE_INT, MPI_MAXLOC, world);
    any = out.v > 0;
    MPI_Bcast(rep, 4, MPI_DOUBLE, out.r, world);
    int srclen = (int)strlen(src);
    MPI_Bcast(&srclen, 1, MPI_INT, out.r, world);
    MPI_Bcast(src, srclen + 1, MPI_CHAR, out.r, world);
    MPI_Comm_free(&node);
    char h[12][32];
    if (any)
        lm_fail(LM_ERR_INPUT,
                "not enough memory: each rank needs %s (weights, gradients and optimizer state %s; activations %s; "
                "token buffers %s; tensor tables %s; pinned offload %s; +%.0f%% margin; libraries %s), the %d "
                "rank(s) on the node %s, but %s is available there (%s). To fit: a smaller model (model.n_layers, "
                "model.dim, model.ffn_dim, model.vocab_size), fewer activations (train.micro_batch, train.seq_len, "
                "train.recompute = true; train.global_batch sizes the token buffers), or more ranks sharing the model "
                "(parallel.zero = 1, 2 or 3 with more data-parallel ranks, parallel.tp, parallel.pp), less host "
                "offload (parallel.offload_frac, parallel.offload = optim rather than param), or more memory per "
                "node%s",
                human(need.total, h[0], 32), human(need.dev_is_host ? need.model : 0, h[1], 32),
                human(need.dev_is_host ? need.acts : 0, h[2], 32), human(need.batch, h[3], 32),
                human(need.tables, h[4], 32), human(need.offload, h[8], 32), 100 * need.margin,
                human(need.reserve, h[5], 32), (int)rep[3], human(rep[1], h[6], 32), human(rep[2], h[7], 32), src,
                need.dev_is_host ? "" : " (the device's own bytes are not host bytes on CUDA: not counted here)");
    char dv[256];
    if (need.dev_limit > 0)
        snprintf(dv, sizeof dv, "; device: %s per rank of %s (%s), offload %s: optimizer state of %d and "
                 "parameters of %d of %d chunks in host memory", human(need.device, h[8], 32),
                 human(need.dev_limit, h[9], 32), need.dev_from_gpu ? "the GPU less 4 GiB" : "train.device_memory",
                 c->offload, need.mem.ko, need.mem.kp, need.mem.nch);
    else if (!need.dev_is_host)
        snprintf(dv, sizeof dv, "; device: %s per rank, not checked (no GPU seen and no train.device_memory)",
                 human(need.device, h[8], 32));
    else dv[0] = 0;
    lm_log("memory check: %s per rank (stage %d: model %s, activations %s, pinned offload %s, token buffers %s, "
           "tables %s, +%.0f%% margin, libraries %s); %s per node of %s available (%s)%s\n",
           human(need.total, h[0], 32), need.stage, human(need.model, h[1], 32), human(need.acts, h[2], 32),
           human(need.offload, h[10], 32), human(need.batch, h[3], 32), human(need.tables, h[4], 32),
           100 * need.margin, human(need.reserve, h[5], 32), human(node_need, h[6], 32),
           avail ? human(node_avail, h[7], 32) : "?", src, dv);
    (void)wsize;
}
