/* device.h — the device interface: memory and the compute ops the model needs.
 *
 * A backend computes in its compute dtype `d->dtype` (LM_F32 on the CPU
 * reference backend, LM_BF16 on CUDA and on the CPU bf16 emulation): the
 * buffers typed `void *` below — activations, the weights the ops read,
 * gradients, logits — hold elements of that dtype. Buffers typed `float *`
 * are always float32: RMSNorm and softmax statistics (rstd, lse), RoPE
 * tables, and the optimizer's master weights and moments. Arithmetic inside
 * every op is float32 (bf16 inputs are widened, outputs rounded to nearest
 * even once).
 *
 * All buffers live on the device (CPU backends: host memory). Token ids and
 * targets are host arrays; the backend copies them over itself.
 * Shapes: R rows (tokens = B*T), D model dim, H query heads, KV key/value
 * heads, hd head dim, F ffn dim, V vocab. Ops that say "accumulates" add into
 * their output (gradients across micro-steps and across branches of the
 * residual stream); the others overwrite it. */
#ifndef LAMINA_DEVICE_H
#define LAMINA_DEVICE_H
#include <stddef.h>
#include <stdint.h>

typedef enum { LM_F32 = 0, LM_BF16 = 1 } lm_dtype;
static inline size_t lm_dtype_size(lm_dtype t) { return t == LM_BF16 ? 2 : 4; }
static inline const char *lm_dtype_name(lm_dtype t) { return t == LM_BF16 ? "bf16" : "fp32"; }

/* One AdamW segment: n elements at these addresses, with weight decay wd.
 * w is the compute-dtype copy the model reads; it may equal master (fp32
 * backends), else it receives master rounded to the compute dtype. */
typedef struct {
    float *master;
    void *w;
    const void *g;
    float *m, *v;
    size_t n;
    float wd;
} lm_adamw_seg;

typedef struct lm_device lm_device;

/* tloc value of a padding row in the vocab-parallel cross-entropy */
#define LM_XENT_PAD (-2)

struct lm_device {
    const char *name;        /* "cpu", "cpu-bf16", "cuda" */
    lm_dtype dtype;          /* compute dtype */
    int host_visible;        /* device buffers are plain host memory */
    size_t capacity;         /* bytes the device may hold (0 = unlimited) */

    /* memory: raw bytes */
    void *(*alloc)(lm_device *d, size_t bytes);   /* zeroed */
    void (*free)(lm_device *d, void *p);
    void (*to_device)(lm_device *d, void *dst, const void *src, size_t bytes);
    void (*to_host)(lm_device *d, void *dst, const void *src, size_t bytes);
    void (*copy)(lm_device *d, void *dst, const void *src, size_t bytes); /* device to device */
    void (*sync)(lm_device *d);
    void (*zero)(lm_device *d, void *p, size_t bytes);                  /* all-zero bits (= 0.0) */
    /* Bytes allocated through alloc now (returned) and the most there have
     * been (*peak, when not NULL) since creation or the last reset; reset = 1
     * starts a new peak window at the current use after reading it. */
    size_t (*mem_info)(lm_device *d, size_t *peak, int reset);

    /* Host memory that the asynchronous copies below read and write:
     * page-locked (pinned) on CUDA, plain 64-byte-aligned memory on the CPU
     * backends; zeroed. Not counted in mem_used. */
    void *(*host_alloc)(lm_device *d, size_t bytes);
    void (*host_free)(lm_device *d, void *p);
    /* Asynchronous copies between host memory (host_alloc'ed) and device
     * memory, on the device's copy stream, in issue order, overlapping
     * compute: to_host = 0 uploads src (host) to dst (device), 1 downloads
     * src (device) to dst (host). A download first waits for the compute
     * issued before it (its source is ready); an upload does not (the caller
     * must not upload into memory that queued compute still reads). Returns
     * a ticket (increasing; 0 is never returned). copy_done: has the copy of
     * ticket t and every earlier one completed (non-blocking); copy_wait:
     * the host blocks until it has; compute_wait: compute issued after this
     * call waits for it (no host sync on a GPU; the CPU backends block). */
    uint64_t (*copy_async)(lm_device *d, void *dst, const void *src, size_t bytes, int to_host);
    int (*copy_done)(lm_device *d, uint64_t ticket);
    void (*copy_wait)(lm_device *d, uint64_t ticket);
    void (*compute_wait)(lm_device *d, uint64_t ticket);
    /* Seconds the copy stream has spent copying so far (NULL: not known). */
    double (*copy_busy)(lm_device *d);

    /* dtype conversions of n elements: device to device (dst and src may
     * not overlap unless equal and of one dtype), host float32 to device
     * compute dtype, device compute dtype to host float32. */
    void (*convert)(lm_device *d, void *dst, lm_dtype dt, const void *src, lm_dtype st, size_t n);
    void (*upload_f32)(lm_device *d, void *dst, const float *host, size_t n);
    void (*download_f32)(lm_device *d, float *host, const void *src, size_t n);

    /* GEMMs (fp32 accumulate). y = x W^T is a Linear layer with W [N,K].
     *   gemm_nt: y[M,N]  = x[M,K] . w[N,K]^T + beta*y
     *   gemm_nn: dx[M,K] = dy[M,N] . w[N,K]  + beta*dx
     *   gemm_tn: dw[N,K] = dy[M,N]^T . x[M,K] + beta*dw
     *   gemm_nt_add: y[M,N] = res[M,N] + x[M,K] . w[N,K]^T  (the residual add
     *   fused into the GEMM's epilogue; y may equal res) */
    void (*gemm_nt)(lm_device *d, void *y, const void *x, const void *w, int M, int N, int K, float beta);
    void (*gemm_nn)(lm_device *d, void *dx, const void *dy, const void *w, int M, int N, int K, float beta);
    void (*gemm_tn)(lm_device *d, void *dw, const void *dy, const void *x, int M, int N, int K, float beta);
    void (*gemm_nt_add)(lm_device *d, void *y, const void *res, const void *x, const void *w, int M, int N, int K);

    /* out[r,:] = table[ids[r],:], or zeros where ids[r] < 0 (a vocab-parallel
     * rank's rows it does not hold; ids < V checked by the caller; host ids) */
    void (*embedding_fwd)(lm_device *d, void *out, const void *table, const int32_t *ids, int R, int D);
    /* dtable[ids[r],:] += dout[r,:]  (accumulates; rows with ids[r] < 0 skipped) */
    void (*embedding_bwd)(lm_device *d, void *dtable, const void *dout, const int32_t *ids, int R, int D);

    /* y = x * rstd * w with rstd[r] = 1/sqrt(mean(x[r,:]^2) + eps); rstd saved. */
    void (*rmsnorm_fwd)(lm_device *d, void *y, float *rstd, const void *x, const void *w, int R, int D, float eps);
    /* dx += d/dx, dw += d/dw of the above (both accumulate: dx is the
     * residual stream's gradient, so the residual add of backward is fused
     * here). */
    void (*rmsnorm_bwd)(lm_device *d, void *dx, void *dw, const void *dy, const void *x, const void *w,
                        const float *rstd, int R, int D);

    /* Rotary embedding in place on x [R, nh, hd] where row r is position r % T.
     * cos/sin tables are [T, hd/2]. Pair (i, i+hd/2) rotates by +angle (fwd)
     * or -angle (bwd, the transpose). */
    void (*rope_fwd)(lm_device *d, void *x, const float *cos, const float *sin, int R, int T, int nh, int hd);
    void (*rope_bwd)(lm_device *d, void *dx, const float *cos, const float *sin, int R, int T, int nh, int hd);

    /* Causal grouped-query attention per sequence.
     * q [B*T, H*hd], k,v [B*T, KV*hd], o [B*T, H*hd], lse [B, H, T] (fp32).
     * Query head h reads kv head h / (H/KV); scale 1/sqrt(hd).
     * lse = log-sum-exp of the scaled, masked scores of each query row. */
    void (*attention_fwd)(lm_device *d, void *o, float *lse, const void *q, const void *k, const void *v,
                          int B, int T, int H, int KV, int hd);
    /* Overwrites dq, dk, dv; recomputes probabilities from q, k and lse. */
    void (*attention_bwd)(lm_device *d, void *dq, void *dk, void *dv, const void *dout, const void *o,
                          const float *lse, const void *q, const void *k, const void *v,
                          int B, int T, int H, int KV, int hd);

    /* Attention of n new query rows over a key/value cache (generation with
     * a KV cache; one sequence). Query row i is at position p0 + i and
     * attends to cache rows j <= p0 + i: q, o [n, H*hd]; kc, vc [p0+n, KV*hd]
     * (RoPE applied to q and kc); query head h reads kv head h / (H/KV):
     *   o[i,h] = sum_j softmax_j(q[i,h] . kc[j,g] / sqrt(hd)) vc[j,g].
     * NULL on a backend without it (generate then recomputes the window). */
    void (*attention_decode)(lm_device *d, void *o, const void *q, const void *kc, const void *vc, int n, int p0,
                             int H, int KV, int hd);

    /* out = silu(g) * u over n elements; bwd overwrites dg, du. */
    void (*swiglu_fwd)(lm_device *d, void *out, const void *g, const void *u, size_t n);
    void (*swiglu_bwd)(lm_device *d, void *dg, void *du, const void *dout, const void *g, const void *u, size_t n);

    /* Cross-entropy over logits [R, V] in place: each row with target >= 0
     * becomes scale * (softmax(row) - onehot(target)); a row with target < 0
     * (padding) becomes zeros. Returns the sum over valid rows of
     * -log softmax(row)[target] (not scaled), in double. Host targets. */
    double (*xent_fwd_bwd)(lm_device *d, void *logits, const int32_t *targets, int R, int V, float scale);

    /* Vocab-parallel cross-entropy (Megatron): logits [R, V] hold this rank's
     * slice of the vocabulary, of which the first Vv columns are real (the
     * rest is padding and never counts). Host tloc[r]: the target's column
     * in the slice when this rank holds it (0 <= tloc < Vv), -1 when another
     * rank does, LM_XENT_PAD (< -1) on a padding row.
     * xent_part_stats writes host stats[3r..3r+2] = {m, s, zt}: m = max over
     * the real columns (-inf when Vv = 0), s = sum of exp(x - m) over them,
     * zt = x[tloc] when 0 <= tloc < Vv, else 0. The caller combines the
     * ranks' stats into lse[r] = M + log(sum_k s_k exp(m_k - M)).
     * xent_part_grad overwrites logits in place: real columns become
     * scale * (exp(x - lse[r]) - [c == tloc]), padding columns and padding
     * rows (tloc == LM_XENT_PAD) become zeros. lse is a host array [R]. */
    void (*xent_part_stats)(lm_device *d, const void *logits, const int32_t *tloc, int R, int V, int Vv,
                            float *stats);
    void (*xent_part_grad)(lm_device *d, void *logits, const int32_t *tloc, const float *lse, int R, int V, int Vv,
                           float scale);

    /* y += x */
    void (*add)(lm_device *d, void *y, const void *x, size_t n);
    /* x *= s */
    void (*scale)(lm_device *d, void *x, size_t n, float s);
    /* sum of squares, accumulated in double */
    double (*sumsq)(lm_device *d, const void *x, size_t n);

    /* torch.optim.AdamW on every segment (one launch where the backend can),
     * `step` = updates done including this one (1-based): p *= 1 - lr*wd;
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps); then w = p in the
     * compute dtype. g is scaled by gscale first (the clipping coefficient). */
    void (*adamw)(lm_device *d, const lm_adamw_seg *segs, int nseg, float gscale, float lr, float b1, float b2,
                  float eps, long step);

    void *impl;               /* backend state */
    void (*destroy)(lm_device *d); /* frees impl and d (NULL: impl and d are plain lm_alloc blocks) */
};

/* The CPU reference backend (OpenBLAS + OpenMP, float32). capacity 0 =
 * unlimited. */
lm_device *device_cpu_create(size_t capacity);

/* The CPU backend computing like the CUDA one: bf16 buffers, float32
 * arithmetic inside each op, outputs rounded once. For testing mixed
 * precision (chunks, ZeRO, conversions, checkpoints) without a GPU. */
lm_device *device_cpu_bf16_create(size_t capacity);

/* The CUDA backend on GPU `gpu` (NULL with a reason in why when the build
 * has no CUDA or the GPU cannot be used). */
lm_device *device_cuda_create(int gpu, char *why, size_t whylen);

void device_destroy(lm_device *d);

/* The arguments of xent_part_stats / xent_part_grad every backend checks
 * (0 <= Vv <= V, every tloc below Vv); a violation aborts the job naming
 * the device and op. */
void device_check_xent_part(const lm_device *d, const char *op, const int32_t *tloc, int R, int V, int Vv);

/* Pointer to element i of a compute-dtype buffer. */
static inline void *lm_at(const lm_device *d, const void *p, size_t i) {
    return (char *)(uintptr_t)p + i * lm_dtype_size(d->dtype);
}

#endif
