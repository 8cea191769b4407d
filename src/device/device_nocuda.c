/* device_nocuda.c — device_cuda_create in a build without CUDA (CUDA=0, or
 * no nvcc found, and the sanitizer build): it says so. */
#ifndef LAMINA_CUDA
#include "device.h"
#include <stdio.h>

lm_device *device_cuda_create(int gpu, char *why, size_t whylen) {
    (void)gpu;
    snprintf(why, whylen, "this lamina was built without the CUDA backend (rebuild with nvcc present, CUDA=1)");
    return NULL;
}
#else
typedef int lm_device_nocuda_unused; /* ISO C: a translation unit is not empty */
#endif
