/* cuda_info.h — what the CUDA runtime sees, for `lamina --version` and device
 * checks. C linkage; built only when nvcc is present (LAMINA_CUDA). */
#ifndef LAMINA_CUDA_INFO_H
#define LAMINA_CUDA_INFO_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable GPUs (>= 0), or -1 with the runtime's reason in `why`.
 * `desc` gets one line per GPU: name, compute capability, memory. */
int lm_cuda_devices(char *desc, size_t desclen, char *why, size_t whylen);

/* NCCL's version code (major*10000 + minor*100 + patch). */
int lm_nccl_version(void);

/* CUDA runtime version as "major.minor". */
void lm_cuda_runtime_version(char *buf, size_t len);

/* Whether cuBLASLt (opened at run time, cublaslt_load.h) can be loaded: 1, or
 * 0 with the reason in `why`. Defined in cublaslt_load.c. */
int lm_cublaslt_available(char *why, size_t whylen);

#ifdef __cplusplus
}
#endif
#endif
