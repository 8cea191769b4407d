/* cublaslt_load.c — dlopen of cuBLASLt (see cublaslt_load.h for why). */
#include "cublaslt_load.h"
#include "cuda_info.h"
#include <dlfcn.h>
#include <stdio.h>

lm_cublaslt lm_lt;

int cublaslt_load(char *why, size_t whylen) {
    static void *handle;
    if (handle) return 0;
    char name[64];
    snprintf(name, sizeof name, "libcublasLt.so.%d", CUBLAS_VER_MAJOR);
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, whylen, "cannot load %s (the CUDA %d runtime libraries): %s", name, CUBLAS_VER_MAJOR,
                 dlerror());
        return -1;
    }
    lm_cublaslt t;
    /* POSIX's way to store dlsym's object pointer into a function pointer. */
#define LM_CUBLASLT_RESOLVE(f)                                                                                   \
    *(void **)&t.f = dlsym(h, #f);                                                                               \
    if (!t.f) {                                                                                                  \
        snprintf(why, whylen, "%s has no symbol %s (a cuBLASLt older than the headers lamina was built with?)",  \
                 name, #f);                                                                                      \
        dlclose(h);                                                                                              \
        return -1;                                                                                               \
    }
    LM_CUBLASLT_FUNCS(LM_CUBLASLT_RESOLVE)
#undef LM_CUBLASLT_RESOLVE
    lm_lt = t;
    handle = h;
    return 0;
}

int lm_cublaslt_available(char *why, size_t whylen) { return cublaslt_load(why, whylen) == 0; }
