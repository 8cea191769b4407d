/* gpu_props.h — the name and peak SM clock of the GPU this rank computes on,
 * for the MFU denominator (src/obs/mfu.c). C; built only with CUDA
 * (LAMINA_CUDA). */
#ifndef LAMINA_GPU_PROPS_H
#define LAMINA_GPU_PROPS_H
#include <stddef.h>

/* The current device's cudaDeviceProp.name into name, and its peak SM clock
 * (cudaDevAttrClockRate, the clock the device may boost to, not the clock
 * of this moment) in MHz into *clock_mhz. 0, or -1 when the runtime cannot
 * say (name empty, clock 0). */
int lm_cuda_gpu_props(char *name, size_t len, double *clock_mhz);

/* The current device's memory in bytes (cudaDeviceProp.totalGlobalMem:
 * device 0 before device_cuda_create picks one, the same model on a node);
 * 0 when the runtime sees no GPU. For the memory check (src/run/memcheck.c). */
size_t lm_cuda_mem_total(void);

#endif
