/* memcheck.h — is the deck possible, and does it fit in memory? Checked
 * before anything large is allocated (lamina issue 14, items 6 and 7).
 *
 * memcheck_sizes: the sizes the run will compute (tensor count, elements
 * per tensor, parameters, rows per micro-batch, activation and token-buffer
 * bytes, tokens over the whole run) in checked 64-bit arithmetic; a size
 * that overflows, or exceeds what lamina's int-indexed tables can hold, is
 * an impossible deck (exit 2 naming the keys).
 *
 * memcheck_need: the bytes one rank needs, from lamina's own accounting
 * (plan_model.c plan_stage_memory: the chunk arena, the ZeRO formulas and
 * model_create_3d's activation buffers, of the stage that needs the most),
 * plus the step's token buffers, the tensor tables and a fixed reserve for
 * the libraries, all with a margin.
 *
 * memcheck_run (collective): the needs of the ranks on each node (an
 * MPI_COMM_TYPE_SHARED split) summed and compared with the memory available
 * there: min(cgroup memory.max - memory.current over this process's cgroup
 * and its ancestors (v2), or memory.limit_in_bytes - usage (v1); MemAvailable
 * of /proc/meminfo). LAMINA_MEM_AVAILABLE=BYTES (suffix K, M, G, T: powers
 * of 1024) replaces the measurement (tests). Too little on any node: exit 2
 * on every rank with the numbers and the keys that would make it fit.
 *
 * The device (ZeRO-3 and offload included: parallel.zero, parallel.offload,
 * offload_frac, prefetch): plan_model's device bytes of the stage that needs
 * the most, against train.device_memory when set, else on CUDA the GPU's
 * memory less a 4 GiB reserve (context, cuBLASLt, NCCL); too little is exit
 * 2 before anything is allocated, naming train.device_memory,
 * parallel.offload and parallel.zero with the numbers and the smallest
 * setting of each that would fit. parallel.offload = auto takes the
 * smallest offload that fits (plan_fit_offload). Host memory holds the
 * pinned offload bytes, and on the CPU backends (whose device buffers are
 * host memory) the device bytes too; on CUDA the device bytes are not host
 * bytes. */
#ifndef LAMINA_MEMCHECK_H
#define LAMINA_MEMCHECK_H
#include "deck.h"
#include "plan_model.h"
#include <stddef.h>
#include <stdint.h>

/* Bytes per rank, by part. */
typedef struct {
    double model;     /* weights, fp32 master, gradients, ZeRO buckets, optimizer state */
    double acts;      /* activations kept for backward and workspace */
    double batch;     /* token ids and targets of one step */
    double tables;    /* tensor tables and per-layer bookkeeping */
    double reserve;   /* libraries, MPI, OpenBLAS and HDF5 buffers (fixed) */
    double margin;    /* fraction added on top of the sum */
    double offload;   /* pinned host bytes of the offload (optimizer state, staging, parameters) */
    double total;     /* host bytes: (model + acts [CPU backends] + offload + batch + tables) * (1 + margin)
                       * + reserve */
    int stage;        /* the pipeline stage that needs the most (device bytes) */
    /* the device */
    double device;    /* device bytes per rank (= model + acts) */
    double dev_limit; /* what it is checked against (0: not checked) */
    int dev_is_host;  /* the device's buffers are host memory (CPU backends) */
    int dev_from_gpu; /* dev_limit is the GPU's memory less the reserve (else train.device_memory) */
    plan_layout layout; /* the rank's layout; auto's fractions as chosen */
    plan_mem mem;     /* that stage's bytes by category */
} lm_memneed;

/* 0, or 2 with a message naming the keys whose sizes overflow or exceed
 * lamina's limits (dp: data-parallel ranks). */
int memcheck_sizes(const lm_config *c, int dp, char *err, size_t errlen);

/* The bytes one rank needs (c must pass memcheck_sizes); dev_limit: the
 * device's bytes (0 = unbounded), which parallel.offload = auto fits. */
void memcheck_need(const lm_config *c, int dp, double dev_limit, lm_memneed *out);

/* 0, or 2 with the message of a device that cannot hold need (naming
 * train.device_memory, parallel.offload and parallel.zero, the numbers and
 * the smallest setting of each that would fit). */
int memcheck_device(const lm_config *c, int dp, const lm_memneed *need, char *err, size_t errlen);

/* Bytes available to this process now and where the number comes from
 * ("LAMINA_MEM_AVAILABLE", "cgroup v2 /sys/fs/cgroup/...: memory.max ...",
 * "/proc/meminfo MemAvailable"); 0 when nothing could be read. */
uint64_t memcheck_available(char *src, size_t srclen);

/* Collective over the world: memcheck_sizes, then the needs of each node's
 * ranks against its available memory; exits 2 on every rank when the deck
 * is impossible or does not fit, else logs the estimate (rank 0). */
void memcheck_run(const lm_config *c, int dp);

#endif
