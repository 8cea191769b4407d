/* device_cuda.h — what the CUDA backend shares with the NCCL binding. */
#ifndef LAMINA_DEVICE_CUDA_H
#define LAMINA_DEVICE_CUDA_H
#include "common.h"
#include "device.h"
#include <cuda_runtime_api.h>

/* A failed CUDA runtime call ends the job with exit 1, naming the call. */
#define CK(call)                                                                                                  \
    do {                                                                                                         \
        cudaError_t e_ = (call);                                                                                 \
        if (e_ != cudaSuccess) lm_abort(LM_ERR_RUNTIME, "cuda: %s: %s", #call, cudaGetErrorString(e_));        \
    } while (0)

/* The compute stream (a cudaStream_t) and the GPU index of a "cuda" device. */
void *device_cuda_stream(lm_device *d);
int device_cuda_gpu(lm_device *d);

#endif
