/* topo.h — the process grid (DESIGN §3): world = pp x dp x tp with tp
 * innermost (a tensor-parallel group is consecutive ranks, so it shares a
 * node) and pp outermost, Megatron's order:
 *     world rank = (pp_rank * dp + dp_rank) * tp + tp_rank.
 * Each rank belongs to one data-parallel group (same pp, tp ranks), one
 * tensor-parallel group (same pp, dp) and one pipeline group (same dp, tp). */
#ifndef LAMINA_TOPO_H
#define LAMINA_TOPO_H
#include "comm.h"

typedef struct {
    int world, dp, tp, pp;
    int rank, dp_rank, tp_rank, pp_rank;
    lm_group *dp_group, *tp_group, *pp_group;
} lm_topo;

/* Sizes of the grid for `world` ranks: dp = 0 means auto (world/(tp*pp)).
 * Returns 0, or 2 with err when the sizes do not factor the world. */
int topo_sizes(int world, int tp, int pp, int dp_in, int *dp_out, char *err, size_t errlen);

/* Coordinates of world rank r (pure; for tests and the grid). */
void topo_coords(int r, int dp, int tp, int pp, int *dp_rank, int *tp_rank, int *pp_rank);

/* Build the grid over the world group (collective). The sizes must factor. */
void topo_create(lm_topo *t, int dp, int tp, int pp);
void topo_destroy(lm_topo *t);

#endif
