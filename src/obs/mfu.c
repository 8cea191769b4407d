/* mfu.c — model FLOPs per token, the GPU peak table and the choice of the
 * MFU denominator (mfu.h). */
#include "mfu.h"
#include "common.h"
#include "cpu_peak.h"
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#ifdef LAMINA_CUDA
#include "gpu_props.h"
#endif

/* PaLM/Megatron model FLOPs per token (SPEC §6). A matrix product with N
 * weights costs 2N FLOPs per token forward and 4N backward (input and weight
 * gradients): 6N. Attention adds, per layer, QK^T and PV over seq_len keys:
 * 2 * 2*dim*seq forward, twice that backward, = 12*dim*seq per layer
 * (causal masking not halved, recomputation not counted). */
double metrics_flops_per_token(int64_t n_matmul_params, int n_layers, int dim, int seq_len) {
    return 6.0 * (double)n_matmul_params + 12.0 * (double)n_layers * (double)dim * (double)seq_len;
}


/* ------------------------------------------------------ GPU peak table */

/* How a board of a GPU model is built: the name says "PCIe" or "NVL", or
 * neither (SXM modules, and the Grace Hopper superchip). */
enum { FORM_SXM, FORM_PCIE, FORM_NVL };

/* Dense (no 2:4 sparsity) peak TFLOP/s from NVIDIA's data sheets, which
 * print tensor-core rates with sparsity ("*") next to or instead of the
 * dense ones; the dense rate is half the sparse one. The data sheets give
 * the numbers at the boost clock; boost_mhz is that clock as
 * cudaDevAttrClockRate reports it on a stock board, so a stock board scales
 * by exactly 1 and one whose maximum clock is set lower scales down.
 * Sources:
 *   A100 SXM4/PCIe 40 GB and 80 GB: "NVIDIA A100 Tensor Core GPU" data sheet
 *     (nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/
 *     nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf): FP32 19.5,
 *     TF32 156 | 312*, BF16 312 | 624*, FP16 312 | 624*; boost 1410 MHz.
 *   A800 SXM4/PCIe: "NVIDIA A800" data sheets (same GA100 rates as A100).
 *   H100 SXM, PCIe, NVL: "NVIDIA H100 Tensor Core GPU" data sheet
 *     (resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet):
 *     SXM FP32 67, TF32 989*, BF16 1979*, FP16 1979*; PCIe 51, 756*, 1513*,
 *     1513*; NVL 60, 835*, 1671*, 1671*. Boost 1980 (SXM), 1755 (PCIe),
 *     1785 (NVL) MHz.
 *   H800 SXM/PCIe: "NVIDIA H800" product brief (the H100 rates).
 *   H200 SXM, NVL: "NVIDIA H200 Tensor Core GPU" data sheet
 *     (nvidia.com/en-us/data-center/h200): SXM FP32 67, TF32 989*,
 *     BF16 1979*, FP16 1979*; NVL 60, 835*, 1671*, 1671*.
 *   GH200: "NVIDIA GH200 Grace Hopper Superchip" data sheet (the GPU's
 *     rates: FP32 67, TF32 989*, BF16 1979*, FP16 1979*).
 *   L40S: "NVIDIA L40S" data sheet (nvidia.com/en-us/data-center/l40s):
 *     FP32 91.6, TF32 183 | 366*, BF16 362.05 | 733*, FP16 362.05 | 733*;
 *     boost 2520 MHz.
 * Hopper's numbers are rounded in the data sheets (the H100 SXM's dense BF16
 * is 989.4 in NVIDIA's Hopper architecture white paper). */
static const struct {
    const char *model; /* a whole word of the CUDA device name */
    int form;
    const char *part;  /* for the log */
    double boost_mhz;
    double tflops[LM_PEAK_N]; /* fp32, tf32, fp16, bf16 */
} g_gpus[] = {
    {"A100", FORM_SXM, "A100 SXM4", 1410, {19.5, 156, 312, 312}},
    {"A100", FORM_PCIE, "A100 PCIe", 1410, {19.5, 156, 312, 312}},
    {"A800", FORM_SXM, "A800 SXM4", 1410, {19.5, 156, 312, 312}},
    {"A800", FORM_PCIE, "A800 PCIe", 1410, {19.5, 156, 312, 312}},
    {"H100", FORM_SXM, "H100 SXM", 1980, {67, 494.5, 989.5, 989.5}},
    {"H100", FORM_PCIE, "H100 PCIe", 1755, {51, 378, 756.5, 756.5}},
    {"H100", FORM_NVL, "H100 NVL", 1785, {60, 417.5, 835.5, 835.5}},
    {"H800", FORM_SXM, "H800 SXM", 1980, {67, 494.5, 989.5, 989.5}},
    {"H800", FORM_PCIE, "H800 PCIe", 1755, {51, 378, 756.5, 756.5}},
    {"H200", FORM_SXM, "H200 SXM", 1980, {67, 494.5, 989.5, 989.5}},
    {"H200", FORM_NVL, "H200 NVL", 1785, {60, 417.5, 835.5, 835.5}},
    {"GH200", FORM_SXM, "GH200", 1980, {67, 494.5, 989.5, 989.5}},
    {"L40S", FORM_PCIE, "L40S", 2520, {91.6, 183, 362.05, 362.05}},
};
#define N_GPUS ((int)(sizeof g_gpus / sizeof g_gpus[0]))

/* Whether `word` occurs in s as a whole word: not inside a longer run of
 * letters and digits ("H200" is not in "GH200", "L40" not in "L40S"). */
static int has_word(const char *s, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word)) {
        int left = p == s || !isalnum((unsigned char)p[-1]), right = !isalnum((unsigned char)p[n]);
        if (left && right) return 1;
    }
    return 0;
}

/* Case-insensitive substring test. */
static int has_ci(const char *s, const char *sub) {
    size_t n = strlen(sub);
    for (; *s; s++)
        if (!strncasecmp(s, sub, n)) return 1;
    return 0;
}

/* The row of a device name: the model as a whole word, then the board's
 * form; a model whose form is not listed takes its first row (e.g. an
 * A100 PCIe row for a name without "PCIe"). -1: not in the table. */
static int gpu_row(const char *name) {
    int form = has_ci(name, "PCIe") ? FORM_PCIE : has_word(name, "NVL") ? FORM_NVL : FORM_SXM, first = -1;
    for (int i = 0; i < N_GPUS; i++) {
        if (!has_word(name, g_gpus[i].model)) continue;
        if (g_gpus[i].form == form) return i;
        if (first < 0) first = i;
    }
    return first;
}

double mfu_gpu_peak_flops(const char *name, lm_peak_prec prec, double clock_mhz, char *desc, size_t desclen) {
    static const char *prec_name[LM_PEAK_N] = {"fp32", "tf32", "fp16", "bf16"};
    int i = name && prec >= 0 && prec < LM_PEAK_N ? gpu_row(name) : -1;
    if (i < 0) {
        if (desc && desclen) snprintf(desc, desclen, "GPU \"%s\" is not in the peak table", name ? name : "");
        return 0.0;
    }
    double scale = clock_mhz > 0 ? clock_mhz / g_gpus[i].boost_mhz : 1.0;
    if (desc && desclen) {
        int w = snprintf(desc, desclen, "%s (\"%s\"): dense %s %g TFLOP/s at %g MHz", g_gpus[i].part, name,
                         prec_name[prec], g_gpus[i].tflops[prec], g_gpus[i].boost_mhz);
        if (clock_mhz > 0 && w > 0 && (size_t)w < desclen)
            snprintf(desc + w, desclen - (size_t)w, ", scaled to this GPU's peak SM clock %g MHz", clock_mhz);
    }
    return g_gpus[i].tflops[prec] * 1e12 * scale;
}

/* ------------------------------------------------- the MFU denominator */

/* The GPU this rank computes on: name and peak SM clock; -1 without CUDA. */
static int gpu_props(char *name, size_t len, double *clock_mhz) {
#ifdef LAMINA_CUDA
    return lm_cuda_gpu_props(name, len, clock_mhz);
#else
    if (len) name[0] = '\0';
    *clock_mhz = 0.0;
    return -1;
#endif
}

double mfu_peak_flops(const lm_config *c, const lm_device *d, int threads, char *desc, size_t desclen) {
    if (c->peak_tflops > 0) {
        snprintf(desc, desclen, "log.peak_tflops = %g", c->peak_tflops);
        return c->peak_tflops * 1e12;
    }
    if (d->host_visible) return metrics_cpu_peak_flops(threads, desc, desclen);
    char name[256];
    double mhz = 0.0;
    if (gpu_props(name, sizeof name, &mhz)) snprintf(name, sizeof name, "(unknown)");
    double peak = mfu_gpu_peak_flops(name, d->dtype == LM_BF16 ? LM_PEAK_BF16 : LM_PEAK_FP32, mhz, desc, desclen);
    if (peak <= 0)
        snprintf(desc, desclen, "GPU \"%s\" is not in lamina's peak table: MFU needs log.peak_tflops "
                 "(the GPU's dense peak TFLOP/s in %s)", name, lm_dtype_name(d->dtype));
    return peak;
}
