/* chunk_padding.c — chunk-arena padding of LLaMA-shaped parameter tables
 * (tp 1, pp 1: every tensor on one rank, in model.c's order) at dp 1 and 8
 * (granule 16 x dp), as chunks_build lays them out.
 * Built by perf/chunk_padding.sh; with -DCHUNKS_OLD it uses the single
 * chunk-size API of lamina before per-tensor outsized chunks
 * (chunk_searched / chunk_round / chunk_pack), for the before/after table. */
#include "chunks.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t D, L, H, KV, F, V;
} shape;

static const shape SHAPES[] = {
    {"llama2-7b", 4096, 32, 32, 32, 11008, 32000},
    {"llama2-13b", 5120, 40, 40, 40, 13824, 32000},
    {"llama2-70b", 8192, 80, 64, 8, 28672, 32000},
    {"llama2-7b-v69104", 4096, 32, 32, 32, 11008, 69104},
};

/* embed, per layer (input norm, q, k, v, o, post norm, gate, up, down),
 * final norm, lm_head */
static int tensors(const shape *s, size_t *z) {
    size_t D = s->D, hd = D / s->H, KVd = s->KV * hd;
    int n = 0;
    z[n++] = s->V * D;
    for (size_t l = 0; l < s->L; l++) {
        size_t t[9] = {D, D * D, KVd * D, KVd * D, D * D, D, s->F * D, s->F * D, D * s->F};
        memcpy(z + n, t, sizeof t);
        n += 9;
    }
    z[n++] = D;
    z[n++] = s->V * D;
    return n;
}

int main(void) {
#ifdef CHUNKS_OLD
    const char *api = "before (one chunk size)";
#else
    const char *api = "after (outsized tensors alone)";
#endif
    printf("# %s\n", api);
    printf("%-18s %3s %14s %6s %5s %12s %12s %14s %12s %8s\n", "model", "dp", "params", "chunks", "alone", "chunk",
           "chunk_max", "arena", "padding", "pad %");
    for (size_t k = 0; k < sizeof SHAPES / sizeof SHAPES[0]; k++) {
        const shape *s = &SHAPES[k];
        size_t *z = malloc(sizeof(size_t) * (9 * s->L + 3)), numel = 0;
        int n = tensors(s, z);
        for (int i = 0; i < n; i++) numel += z[i];
        for (int dp = 1; dp <= 8; dp *= 8) {
            size_t g = (size_t)16 * (size_t)dp, arena, cs, cmax;
            int nc, alone = 0;
#ifdef CHUNKS_OLD
            cs = chunk_round(chunk_searched(z, n), g);
            nc = (int)chunk_pack(z, n, cs, NULL, NULL);
            arena = (size_t)nc * cs;
            cmax = cs;
#else
            chunk_layout L = chunk_layout_of(z, NULL, n, g, 0, NULL, NULL, NULL);
            cs = L.chunk_size;
            nc = L.n_chunks;
            arena = L.arena;
            cmax = L.chunk_max;
            alone = L.n_alone;
#endif
            printf("%-18s %3d %14zu %6d %5d %12zu %12zu %14zu %12zu %8.3f\n", s->name, dp, numel, nc, alone, cs, cmax,
                   arena, arena - numel, 100.0 * (double)(arena - numel) / (double)arena);
        }
        free(z);
    }
    return 0;
}
