/* device.h — the device interface: memory and the compute ops the model needs.
 *
 * Every op works on row-major float32 buffers that live on the device (for the
 * CPU backend: host memory). The model code calls only these, so a backend is
 * a table of function pointers. Shapes: R rows (tokens = B*T), D model dim,
 * H query heads, KV key/value heads, hd head dim, F ffn dim, V vocab.
 * Ops that say "accumulates" add into their output (gradients across
 * micro-steps and across branches of the residual stream); the others
 * overwrite it. */
#ifndef LAMINA_DEVICE_H
#define LAMINA_DEVICE_H
#include <stddef.h>
#include <stdint.h>

typedef struct lm_device lm_device;

struct lm_device {
    const char *name;        /* "cpu", "cuda" */
    size_t capacity;         /* bytes the device may hold (0 = unlimited) */

    /* memory */
    void *(*alloc)(lm_device *d, size_t bytes);   /* zeroed */
    void (*free)(lm_device *d, void *p);
    void (*to_device)(lm_device *d, void *dst, const void *src, size_t bytes);
    void (*to_host)(lm_device *d, void *dst, const void *src, size_t bytes);
    void (*copy)(lm_device *d, void *dst, const void *src, size_t bytes); /* device to device */
    void (*sync)(lm_device *d);
    void (*zero)(lm_device *d, void *p, size_t bytes);                  /* set to 0.0f bits */

    /* GEMMs (fp32 accumulate). y = x W^T is a Linear layer with W [N,K].
     *   gemm_nt: y[M,N]  = x[M,K] . w[N,K]^T + beta*y
     *   gemm_nn: dx[M,K] = dy[M,N] . w[N,K]  + beta*dx
     *   gemm_tn: dw[N,K] = dy[M,N]^T . x[M,K] + beta*dw */
    void (*gemm_nt)(lm_device *d, float *y, const float *x, const float *w, int M, int N, int K, float beta);
    void (*gemm_nn)(lm_device *d, float *dx, const float *dy, const float *w, int M, int N, int K, float beta);
    void (*gemm_tn)(lm_device *d, float *dw, const float *dy, const float *x, int M, int N, int K, float beta);

    /* out[r,:] = table[ids[r],:]  (ids < V checked by the caller) */
    void (*embedding_fwd)(lm_device *d, float *out, const float *table, const int32_t *ids, int R, int D);
    /* dtable[ids[r],:] += dout[r,:]  (accumulates) */
    void (*embedding_bwd)(lm_device *d, float *dtable, const float *dout, const int32_t *ids, int R, int D);

    /* y = x * rstd * w with rstd[r] = 1/sqrt(mean(x[r,:]^2) + eps); rstd saved. */
    void (*rmsnorm_fwd)(lm_device *d, float *y, float *rstd, const float *x, const float *w, int R, int D, float eps);
    /* dx += d/dx, dw += d/dw of the above (both accumulate). */
    void (*rmsnorm_bwd)(lm_device *d, float *dx, float *dw, const float *dy, const float *x, const float *w,
                        const float *rstd, int R, int D);

    /* Rotary embedding in place on x [R, nh, hd] where row r is position r % T.
     * cos/sin tables are [T, hd/2]. Pair (i, i+hd/2) rotates by +angle (fwd)
     * or -angle (bwd, the transpose). */
    void (*rope_fwd)(lm_device *d, float *x, const float *cos, const float *sin, int R, int T, int nh, int hd);
    void (*rope_bwd)(lm_device *d, float *dx, const float *cos, const float *sin, int R, int T, int nh, int hd);

    /* Causal grouped-query attention per sequence.
     * q [B*T, H*hd], k,v [B*T, KV*hd], o [B*T, H*hd], lse [B, H, T].
     * Query head h reads kv head h / (H/KV); scale 1/sqrt(hd).
     * lse = log-sum-exp of the scaled, masked scores of each query row. */
    void (*attention_fwd)(lm_device *d, float *o, float *lse, const float *q, const float *k, const float *v,
                          int B, int T, int H, int KV, int hd);
    /* Overwrites dq, dk, dv; recomputes probabilities from q, k and lse. */
    void (*attention_bwd)(lm_device *d, float *dq, float *dk, float *dv, const float *dout, const float *o,
                          const float *lse, const float *q, const float *k, const float *v,
                          int B, int T, int H, int KV, int hd);

    /* out = silu(g) * u over n elements; bwd overwrites dg, du. */
    void (*swiglu_fwd)(lm_device *d, float *out, const float *g, const float *u, size_t n);
    void (*swiglu_bwd)(lm_device *d, float *dg, float *du, const float *dout, const float *g, const float *u, size_t n);

    /* Cross-entropy over logits [R, V] in place: each row with target >= 0
     * becomes scale * (softmax(row) - onehot(target)); a row with target < 0
     * (padding) becomes zeros. Returns the sum over valid rows of
     * -log softmax(row)[target] (not scaled), in double. */
    double (*xent_fwd_bwd)(lm_device *d, float *logits, const int32_t *targets, int R, int V, float scale);

    /* y += x */
    void (*add)(lm_device *d, float *y, const float *x, size_t n);
    /* x *= s */
    void (*scale)(lm_device *d, float *x, size_t n, float s);
    /* sum of squares, in double */
    double (*sumsq)(lm_device *d, const float *x, size_t n);

    /* torch.optim.AdamW on n elements, `step` = updates done including this
     * one (1-based): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). g is scaled by
     * gscale first (the clipping coefficient). */
    void (*adamw)(lm_device *d, float *p, const float *g, float *m, float *v, size_t n, float gscale,
                  float lr, float b1, float b2, float eps, float wd, long step);

    void *impl;               /* backend state */
};

/* The CPU reference backend (OpenBLAS + OpenMP). capacity 0 = unlimited. */
lm_device *device_cpu_create(size_t capacity);
void device_destroy(lm_device *d);

#endif
