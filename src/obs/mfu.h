/* mfu.h — model FLOPs per token and the peak FLOP/s that MFU divides by
 * (SPEC §6): log.peak_tflops when the deck sets it, else the GPU's dense
 * peak from a table of NVIDIA's data sheets, else the CPU's peak. */
#ifndef LAMINA_MFU_H
#define LAMINA_MFU_H
#include "deck.h"
#include "device.h"
#include <stddef.h>
#include <stdint.h>

/* Model FLOPs per token, PaLM/Megatron convention (SPEC §6):
 * 6*N + 12*n_layers*dim*seq_len, where N counts every parameter that enters a
 * matrix product: all but the input embedding table, lm_head counted also when
 * tied (so N = n_params - vocab*dim + vocab*dim*tied). */
double metrics_flops_per_token(int64_t n_matmul_params, int n_layers, int dim, int seq_len);

/* The precisions of the GPU table (dense tensor-core rates; fp32 is the
 * CUDA cores' non-tensor rate). */
typedef enum { LM_PEAK_FP32, LM_PEAK_TF32, LM_PEAK_FP16, LM_PEAK_BF16, LM_PEAK_N } lm_peak_prec;

/* Dense peak FLOP/s of the GPU whose CUDA device name (cudaDeviceProp.name,
 * e.g. "NVIDIA H100 80GB HBM3") is `name`, in precision `prec`: the data
 * sheet's number, times clock_mhz / the part's boost clock when clock_mhz >
 * 0. 0 when the name is not in the table. desc (may be NULL) gets the
 * matched part, the number and the clocks. Pure: no CUDA, no I/O. */
double mfu_gpu_peak_flops(const char *name, lm_peak_prec prec, double clock_mhz, char *desc, size_t desclen);

/* The peak FLOP/s per rank for MFU on this run's device d: log.peak_tflops
 * if set, else the table's (GPU devices) or the CPU's peak over `threads`
 * threads; desc says which. An unknown GPU gives 0 (MFU not computed) and
 * desc says that MFU needs log.peak_tflops. */
double mfu_peak_flops(const lm_config *c, const lm_device *d, int threads, char *desc, size_t desclen);

#endif
