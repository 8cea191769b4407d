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
 * train.device = cuda: the device interface does not report free device
 * memory, so only host memory is checked (the model's bytes are counted as
 * host bytes, an over-estimate there). */
#ifndef LAMINA_MEMCHECK_H
#define LAMINA_MEMCHECK_H
#include "deck.h"
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
    double total;     /* (model + acts + batch + tables) * (1 + margin) + reserve */
    int stage;        /* the pipeline stage that needs the most */
} lm_memneed;

/* 0, or 2 with a message naming the keys whose sizes overflow or exceed
 * lamina's limits (dp: data-parallel ranks). */
int memcheck_sizes(const lm_config *c, int dp, char *err, size_t errlen);

/* The bytes one rank needs (c must pass memcheck_sizes). */
void memcheck_need(const lm_config *c, int dp, lm_memneed *out);

/* Bytes available to this process now and where the number comes from
 * ("LAMINA_MEM_AVAILABLE", "cgroup v2 /sys/fs/cgroup/...: memory.max ...",
 * "/proc/meminfo MemAvailable"); 0 when nothing could be read. */
uint64_t memcheck_available(char *src, size_t srclen);

/* Collective over the world: memcheck_sizes, then the needs of each node's
 * ranks against its available memory; exits 2 on every rank when the deck
 * is impossible or does not fit, else logs the estimate (rank 0). */
void memcheck_run(const lm_config *c, int dp);

#endif
