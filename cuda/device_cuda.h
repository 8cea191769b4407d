/* device_cuda.h — what the CUDA backend shares with the NCCL binding. */
#ifndef LAMINA_DEVICE_CUDA_H
#define LAMINA_DEVICE_CUDA_H
#include "device.h"

/* The compute stream (a cudaStream_t) and the GPU index of a "cuda" device. */
void *device_cuda_stream(lm_device *d);
int device_cuda_gpu(lm_device *d);

#endif
