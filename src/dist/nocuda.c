/* nocuda.c — every stub a build without CUDA needs (CUDA=0, no nvcc found,
 * or the sanitizer build), in one file: the device backend's constructor
 * (device.h) and the NCCL binding of the comm layer (comm_dev.h). It sits in
 * dist/, the highest layer whose functions it stands in for, so that it may
 * include both headers (src/LAYERS.md: device < dist). With CUDA, cuda/
 * provides the real functions and this file compiles to nothing. */
#ifndef LAMINA_CUDA
#include "comm_dev.h"
#include "common.h"
#include "device.h"
#include <stdio.h>

/* No CUDA device: say why, so that --device cuda fails with a reason. */
lm_device *device_cuda_create(int gpu, char *why, size_t whylen) {
    (void)gpu;
    snprintf(why, whylen, "this lamina was built without the CUDA backend (rebuild with nvcc present, CUDA=1)");
    return NULL;
}

/* No NCCL: attach fails with a reason and groups stay on MPI; the other
 * binding calls are unreachable once attach has failed. */
int lm_nccl_attach(lm_group *g, lm_device *d, char *why, size_t whylen) {
    (void)g;
    (void)d;
    snprintf(why, whylen, "this build has no CUDA/NCCL");
    return -1;
}
void lm_nccl_detach(lm_group *g) { (void)g; }
void lm_nccl_launch(const lm_group *g, int kind, void *x, size_t n, lm_dtype t, void **event) {
    (void)g, (void)kind, (void)x, (void)n, (void)t, (void)event;
    lm_abort(LM_ERR_RUNTIME, "comm: NCCL is not in this build");
}
int lm_nccl_query(void *event) {
    (void)event;
    return 1;
}
void lm_nccl_order(void *event) { (void)event; }
#else
typedef int lm_nocuda_unused; /* ISO C: a translation unit is not empty */
#endif
