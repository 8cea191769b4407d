/* kernels.h — launchers of lamina's own CUDA kernels, callable from C.
 *
 * bf16 buffers are `void *` (__nv_bfloat16 on the device side); float32
 * buffers are `float *`. Every kernel widens bf16 to float32, computes in
 * float32 (sums and statistics too) and rounds its outputs to bf16 once, round
 * to nearest even. `stream` is a cudaStream_t. All pointers are device
 * pointers. Launchers never allocate and never synchronise; a launcher that
 * needs scratch takes `ws` of at least the bytes its *_ws function returns.
 * Shapes and semantics are those of src/device/device.h. Return value: 0, or the
 * cudaError_t of the launch. */
#ifndef LAMINA_CUDA_KERNELS_H
#define LAMINA_CUDA_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes of lmk_convert (as lm_dtype): 0 float32, 1 bf16 */
int lmk_convert(void *dst, int dt, const void *src, int st, size_t n, void *stream);

/* out[r,:] = table[ids[r],:], zeros where ids[r] < 0 */
int lmk_embedding_fwd(void *out, const void *table, const int32_t *ids, int R, int D, void *stream);
/* dtable[ids[r],:] += dout[r,:] over the rows with ids[r] >= 0,
 * deterministic: `order` lists those rows (Rk of them) sorted by id (stable)
 * and `starts` the first position in `order` of each run of equal ids, nruns
 * runs (starts[nruns] = Rk); the host builds both. Each run is summed in
 * float32 and added to its row once. */
int lmk_embedding_bwd(void *dtable, const void *dout, const int32_t *ids, const int32_t *order,
                      const int32_t *starts, int nruns, int R, int D, void *stream);

/* y = x * rstd * w, rstd[r] = 1/sqrt(mean(x^2)+eps) */
int lmk_rmsnorm_fwd(void *y, float *rstd, const void *x, const void *w, int R, int D, float eps, void *stream);
/* dx += (w*dy - x*rstd^2*mean(w*dy*x)) * rstd; dw += sum_r dy*x*rstd */
size_t lmk_rmsnorm_bwd_ws(int R, int D);
int lmk_rmsnorm_bwd(void *dx, void *dw, const void *dy, const void *x, const void *w, const float *rstd, int R,
                    int D, void *ws, void *stream);

/* sign +1 forward, -1 backward (the transpose) */
int lmk_rope(void *x, const float *cos, const float *sin, int R, int T, int nh, int hd, int sign, void *stream);

int lmk_swiglu_fwd(void *out, const void *g, const void *u, size_t n, void *stream);
int lmk_swiglu_bwd(void *dg, void *du, const void *dout, const void *g, const void *u, size_t n, void *stream);

/* logits [R,V] bf16 in place -> scale*(softmax - onehot(target)), zeros for
 * target < 0; row_loss[r] = -log softmax[target] (0 for padding), float32. */
int lmk_xent(void *logits, const int32_t *targets, float *row_loss, int R, int V, float scale, void *stream);
/* Vocab-parallel cross-entropy over a slice [R,V] of which columns [0,Vv)
 * are real (src/device/device.h): stats[3r..3r+2] = {max, sum exp(x - max), x[tloc]
 * or 0} over the real columns (device float32 [3R]); grad in place with
 * lse[R] (device float32): scale*(exp(x - lse) - onehot(tloc)) on the real
 * columns, zeros on padding columns and on rows with tloc < -1. The caller
 * checks tloc < Vv; 0 <= Vv <= V (else cudaErrorInvalidValue). */
int lmk_xent_part_stats(const void *logits, const int32_t *tloc, float *stats, int R, int V, int Vv, void *stream);
int lmk_xent_part_grad(void *logits, const int32_t *tloc, const float *lse, int R, int V, int Vv, float scale,
                       void *stream);

/* y += x and x *= s on bf16 (dtype 1) or float32 (dtype 0) */
int lmk_add(void *y, const void *x, size_t n, int dtype, void *stream);
int lmk_scale(void *x, size_t n, float s, int dtype, void *stream);
/* *out (device double) = sum of x^2 */
size_t lmk_sumsq_ws(size_t n);
int lmk_sumsq(double *out, const void *x, size_t n, int dtype, void *ws, void *stream);

/* AdamW over nseg segments in one launch. `segs` is a device array (layout
 * lmk_adamw_seg below), `prefix` a device array of nseg+1 running element
 * counts (prefix[0] = 0). g is bf16 (dtype 1) or float32 (0); w is bf16 or
 * equal to master. Math of src/device/device.h. */
typedef struct {
    float *master;
    void *w;
    const void *g;
    float *m, *v;
    size_t n;
    float wd;
} lmk_adamw_seg;
int lmk_adamw(const lmk_adamw_seg *segs, const size_t *prefix, int nseg, size_t total, int gdtype, float gscale,
              float lr, float b1, float b2, float eps, long step, void *stream);

/* Flash attention (FlashAttention-2: tiled, online softmax; backward
 * recomputes the probabilities from lse). bf16 q, k, v, o, dout, dq, dk, dv in
 * the layouts of src/device/device.h; lse float32 [B,H,T]. Causal, grouped-query
 * (H % KV == 0), head_dim 64 or 128 (others: returns cudaErrorInvalidValue). */
int lmk_flash_fwd(void *o, float *lse, const void *q, const void *k, const void *v, int B, int T, int H, int KV,
                  int hd, void *stream);
size_t lmk_flash_bwd_ws(int B, int T, int H, int KV, int hd);
int lmk_flash_bwd(void *dq, void *dk, void *dv, const void *dout, const void *o, const float *lse, const void *q,
                  const void *k, const void *v, int B, int T, int H, int KV, int hd, void *ws, void *stream);

#ifdef __cplusplus
}
#endif
#endif
