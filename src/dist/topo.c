/* topo.c — see topo.h. */
#include "topo.h"
#include "common.h"
#include <stdio.h>
#include <string.h>

int topo_sizes(int world, int tp, int pp, int dp_in, int *dp_out, char *err, size_t errlen) {
    if (tp < 1 || pp < 1 || dp_in < 0) {
        snprintf(err, errlen, "parallel sizes must be positive (tp = %d, pp = %d, dp = %d)", tp, pp, dp_in);
        return 2;
    }
    if (world % (tp * pp)) {
        snprintf(err, errlen,
                 "parallel.tp = %d x parallel.pp = %d does not divide the %d ranks launched (world = pp x dp x tp): "
                 "launch a multiple of %d ranks", tp, pp, world, tp * pp);
        return 2;
    }
    int dp = dp_in ? dp_in : world / (tp * pp);
    if (dp * tp * pp != world) {
        snprintf(err, errlen, "parallel.dp = %d x tp = %d x pp = %d = %d does not match the %d ranks launched", dp,
                 tp, pp, dp * tp * pp, world);
        return 2;
    }
    *dp_out = dp;
    return 0;
}

void topo_coords(int r, int dp, int tp, int pp, int *dp_rank, int *tp_rank, int *pp_rank) {
    (void)pp;
    *tp_rank = r % tp;
    *dp_rank = (r / tp) % dp;
    *pp_rank = r / (tp * dp);
}

void topo_create(lm_topo *t, int dp, int tp, int pp) {
    lm_group *w = comm_world();
    memset(t, 0, sizeof *t);
    t->world = w->size;
    t->dp = dp;
    t->tp = tp;
    t->pp = pp;
    t->rank = w->rank;
    topo_coords(w->rank, dp, tp, pp, &t->dp_rank, &t->tp_rank, &t->pp_rank);
    /* colour = the coordinates the group shares; key = the coordinate it spans */
    t->dp_group = comm_split(w, t->pp_rank * tp + t->tp_rank, t->dp_rank);
    t->tp_group = comm_split(w, t->pp_rank * dp + t->dp_rank, t->tp_rank);
    t->pp_group = comm_split(w, t->dp_rank * tp + t->tp_rank, t->pp_rank);
}

void topo_destroy(lm_topo *t) {
    comm_free(t->dp_group);
    comm_free(t->tp_group);
    comm_free(t->pp_group);
    memset(t, 0, sizeof *t);
}
