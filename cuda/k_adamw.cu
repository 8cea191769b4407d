// k_adamw.cu — torch.optim.AdamW over every parameter segment in one launch:
// float32 master weights and moments, bf16 or float32 gradients, and the
// bf16 compute copy of the weights refreshed from the master.
#include "k_common.cuh"
#include "kernels.h"
#include <math.h>

#define ADAM_T 256 // threads of the kernel

// Element i of the concatenation of all segments belongs to segment s with
// prefix[s] <= i < prefix[s+1] (the last s with prefix[s] <= i, so empty
// segments are skipped), at index j = i - prefix[s] within it. With
// g = grad * gscale and, per segment, decay = 1 - lr*wd (in double, unfused):
//   p = p * decay;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g;
//   p -= step_size * m / (sqrt(v) * inv_bc2s + eps)
// with step_size = lr / (1 - b1^t) and inv_bc2s = 1 / sqrt(1 - b2^t)
// computed on the host in double, as src/device_cpu.c does. Every float32
// operation is an explicit round-to-nearest intrinsic, in the CPU loop's
// order and never fused into an FMA, so master, m and v come out bit for bit
// those of the CPU reference on the same gradients. Then w = bf16(p) unless
// w is NULL or the master itself.
__global__ void __launch_bounds__(ADAM_T) adamw_k(const lmk_adamw_seg *__restrict__ segs,
                                                  const size_t *__restrict__ prefix, int nseg, size_t total,
                                                  int g_bf16, float gscale, float lr, float b1, float b2, float eps,
                                                  float step_size, float inv_bc2s) {
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = gtid(); i < total; i += gstride()) {
        int lo = 0, hi = nseg - 1; // invariant: prefix[lo] <= i (prefix[0] = 0), answer in [lo, hi]
        while (lo < hi) {
            const int mid = lo + (hi - lo + 1) / 2;
            if (prefix[mid] <= i) lo = mid;
            else hi = mid - 1;
        }
        const lmk_adamw_seg sg = segs[lo];
        const size_t j = i - prefix[lo];
        const float decay = (float)__dsub_rn(1.0, __dmul_rn((double)lr, (double)sg.wd));
        const float graw = g_bf16 ? ld1((const bf16 *)sg.g + j) : ((const float *)sg.g)[j];
        const float g = __fmul_rn(graw, gscale);
        const float m = __fadd_rn(__fmul_rn(b1, sg.m[j]), __fmul_rn(c1, g));
        const float v = __fadd_rn(__fmul_rn(b2, sg.v[j]), __fmul_rn(__fmul_rn(c2, g), g));
        sg.m[j] = m;
        sg.v[j] = v;
        const float den = __fadd_rn(__fmul_rn(__fsqrt_rn(v), inv_bc2s), eps);
        const float p = __fsub_rn(__fmul_rn(sg.master[j], decay), __fdiv_rn(__fmul_rn(step_size, m), den));
        sg.master[j] = p;
        if (sg.w && sg.w != (void *)sg.master) st1((bf16 *)sg.w + j, p);
    }
}

extern "C" int lmk_adamw(const lmk_adamw_seg *segs, const size_t *prefix, int nseg, size_t total, int gdtype,
                         float gscale, float lr, float b1, float b2, float eps, long step, void *stream) {
    if (nseg <= 0 || total == 0) return 0;
    if (gdtype != 0 && gdtype != 1) return (int)cudaErrorInvalidValue;
    const double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    const float step_size = (float)((double)lr / bc1);
    const float inv_bc2s = (float)(1.0 / sqrt(bc2));
    adamw_k<<<lmk_blocks(total, ADAM_T), ADAM_T, 0, (cudaStream_t)stream>>>(
        segs, prefix, nseg, total, gdtype == 1, gscale, lr, b1, b2, eps, step_size, inv_bc2s);
    return lmk_status();
}
