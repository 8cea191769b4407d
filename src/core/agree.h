/* agree.h — the one "agree on an error" collective. It works on a raw
 * MPI_Comm and lives in core so that both io/ (checkpoints, below dist/) and
 * dist/comm.c (comm_agree, for everyone above) can call it. */
#ifndef LAMINA_AGREE_H
#define LAMINA_AGREE_H
#include <mpi.h>
#include <stddef.h>

/* Deadline for a rank that has failed locally: it waits for the others at
 * most `secs` seconds, then calls timeout (which must not return: it ends
 * the job). secs <= 0 or no struct: wait for ever, like every healthy rank. */
typedef struct {
    double secs;
    void (*timeout)(void *ctx, const char *err, double waited);
    void *ctx;
} lm_agree_wait;

/* Every rank of comm passes its status (0 = ok, anything else failed, a
 * negative code too). Returns, on every rank, the status of the lowest
 * failing rank (0 if none); that rank's err is copied into err (if not
 * NULL) on the others, and *largest (if not NULL) gets the largest status.
 * err of a rank is left as it was when nobody failed. */
int lm_agree(MPI_Comm comm, int status, char *err, size_t errlen, const lm_agree_wait *wait, int *largest);

#endif
