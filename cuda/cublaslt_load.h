/* cublaslt_load.h — cuBLASLt, opened when the first GPU device is created.
 *
 * libcublasLt is half a gigabyte; linked at build time, the dynamic loader
 * maps and initialises it before main on every rank, GPU run or not (about
 * 0.35 s on the CI machine, during which no signal handler of lamina's can
 * exist yet). It is therefore opened with dlopen by cuda_device_create and
 * called through this table; the CPU backend never loads it. */
#ifndef LAMINA_CUBLASLT_LOAD_H
#define LAMINA_CUBLASLT_LOAD_H
#include <cublasLt.h>
#include <stddef.h>

/* Every cuBLASLt entry point lamina calls. */
#define LM_CUBLASLT_FUNCS(X)                                                                                     \
    X(cublasLtCreate)                                                                                            \
    X(cublasLtDestroy)                                                                                           \
    X(cublasLtMatmul)                                                                                            \
    X(cublasLtMatmulAlgoGetHeuristic)                                                                            \
    X(cublasLtMatmulDescCreate)                                                                                  \
    X(cublasLtMatmulDescDestroy)                                                                                 \
    X(cublasLtMatmulDescSetAttribute)                                                                            \
    X(cublasLtMatmulPreferenceCreate)                                                                            \
    X(cublasLtMatmulPreferenceDestroy)                                                                           \
    X(cublasLtMatmulPreferenceSetAttribute)                                                                      \
    X(cublasLtMatrixLayoutCreate)                                                                                \
    X(cublasLtMatrixLayoutDestroy)

/* One pointer per function, with the function's own type. */
typedef struct {
#define LM_CUBLASLT_MEMBER(f) __typeof__(f) *f;
    LM_CUBLASLT_FUNCS(LM_CUBLASLT_MEMBER)
#undef LM_CUBLASLT_MEMBER
} lm_cublaslt;

/* Filled by cublaslt_load; valid after it returned 0. */
extern lm_cublaslt lm_lt;

/* Opens libcublasLt.so.<major of the headers built against> (found through
 * the binary's RUNPATH, then LD_LIBRARY_PATH) and resolves every function;
 * idempotent. 0, or -1 with the reason (dlerror) in why. */
int cublaslt_load(char *why, size_t whylen);

#endif
