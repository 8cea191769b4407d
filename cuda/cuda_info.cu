// cuda_info.cu — device enumeration through the CUDA runtime. Without a GPU
// (or a driver) cudaGetDeviceCount fails, e.g. cudaErrorInsufficientDriver:
// that is reported, never fatal here.
#include "cuda_info.h"
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>

extern "C" int lm_cuda_devices(char *desc, size_t desclen, char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (desc && desclen) desc[0] = 0;
    if (e != cudaSuccess) {
        if (why && whylen) snprintf(why, whylen, "%s", cudaGetErrorString(e));
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < n && desc && off < desclen; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        int w = snprintf(desc + off, desclen - off, "  gpu %d: %s, sm_%d%d, %.1f GiB\n", i, p.name, p.major, p.minor,
                         (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
        if (w < 0) break;
        off += (size_t)w;
    }
    return n;
}

extern "C" void lm_cuda_runtime_version(char *buf, size_t len) {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    snprintf(buf, len, "%d.%d", v / 1000, (v % 1000) / 10);
}

extern "C" int lm_nccl_version(void) {
    int v = 0;
    ncclGetVersion(&v);
    return v;
}
