/* gpu_props.c — what the CUDA runtime says of the current device, for the
 * GPU peak table (gpu_props.h). */
#include "gpu_props.h"
#include <cuda_runtime_api.h>
#include <stdio.h>

/* cudaGetDevice gives the device device_cuda_create selected for this rank. */
int lm_cuda_gpu_props(char *name, size_t len, double *clock_mhz) {
    int dev = 0, khz = 0;
    struct cudaDeviceProp p;
    if (len) name[0] = '\0';
    *clock_mhz = 0.0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return -1;
    snprintf(name, len, "%s", p.name);
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev) == cudaSuccess && khz > 0) *clock_mhz = khz / 1e3;
    return 0;
}

size_t lm_cuda_mem_total(void) {
    int dev = 0;
    struct cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return 0;
    return p.totalGlobalMem;
}
