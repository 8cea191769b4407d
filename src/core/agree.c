/* agree.c — see agree.h. */
#include "agree.h"
#include "common.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Wait for request rq; a rank that failed (failed != 0) with a deadline
 * polls it instead, every millisecond, and hands over to wait->timeout
 * once the deadline has passed (the others may never arrive). */
static void wait_req(MPI_Request *rq, int failed, const char *err, const lm_agree_wait *wait) {
    if (!failed || !wait || wait->secs <= 0) {
        MPI_Wait(rq, MPI_STATUS_IGNORE);
        return;
    }
    double t0 = MPI_Wtime();
    for (;;) {
        int done = 0;
        MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (done) return;
        if (MPI_Wtime() - t0 > wait->secs) wait->timeout(wait->ctx, err, wait->secs);
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* One MIN-reduction over {lowest failing rank, -status} finds both the first
 * failing rank and the largest status; that rank then broadcasts its status
 * and message. A single process needs no messages at all. */
int lm_agree(MPI_Comm comm, int status, char *err, size_t errlen, const lm_agree_wait *wait, int *largest) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (size == 1) {
        if (largest) *largest = status;
        return status;
    }
    int in[2] = {status ? rank : INT_MAX, status == INT_MIN ? INT_MAX : -status}, out[2];
    MPI_Request rq;
    MPI_Iallreduce(in, out, 2, MPI_INT, MPI_MIN, comm, &rq);
    wait_req(&rq, status, err, wait);
    int first = out[0];
    if (largest) *largest = first == INT_MAX ? 0 : -out[1];
    if (first == INT_MAX) return 0;
    struct { int rc; char msg[LM_ERRLEN]; } m;
    memset(&m, 0, sizeof m);
    if (rank == first) {
        m.rc = status;
        snprintf(m.msg, sizeof m.msg, "%s", err ? err : "");
    }
    MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, comm);
    if (rank != first && err && errlen) snprintf(err, errlen, "%s", m.msg);
    return m.rc;
}
