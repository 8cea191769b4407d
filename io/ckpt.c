/* ckpt.c — what the checkpoint files share (ckpt_int.h): the tensor sets,
 * the collective transfer of pieces, the error agreement, step names and
 * the regular-file check. The jobs are in ckpt_write.c (save and publish),
 * ckpt_pick.c (which file to restart from) and ckpt_read.c (read and
 * validate), SPEC §5.
 *
 * Error discipline: any step that may fail on one rank only is followed by
 * an agreement (ck_agree(): the lowest failing rank's message goes to all), so
 * every rank takes the same path through the collective HDF5 calls and no
 * rank is left waiting in one. HDF5's automatic error printing is off for
 * the duration of each public call. The geometry of the ranks' pieces (flat
 * ranges, row and column slices: who writes what, file selections,
 * checksum terms) is in ckpt_piece.c. */
#include "ckpt_int.h"
#include "ckpt_piece.h"
#include "h5attr.h"
#include "common.h"
#include "agree.h"
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Elements per H5Dwrite/H5Dread call are capped so that one transfer stays
 * far below MPI-IO's 2 GiB count limit: 64 Mi floats = 256 MiB (a block may
 * start and end inside rows like any piece). Test hook: the
 * environment variable LAMINA_CKPT_PIECE_ELEMS lowers the cap, so that small
 * tensors exercise the multi-piece path (test_ckpt_mpi). */
int64_t ck_piece_elems(void) {
    const char *s = getenv("LAMINA_CKPT_PIECE_ELEMS");
    long long v = s ? atoll(s) : 0;
    return v > 0 ? (int64_t)v : ((int64_t)64 << 20);
}

/* ---- small helpers ---- */

/* Every rank passes its status; if any failed, all return the code and the
 * message of the lowest-numbered failing rank (lm_agree, src/core/agree.c). */
int ck_agree(MPI_Comm comm, int rc, char *err, size_t errlen) {
    return lm_agree(comm, rc, err, errlen, NULL, NULL);
}

/* ---- the three tensor sets ---- */

const char *const CK_SET_PATH[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};

/* Tally block [v, v+n) of this rank's piece, x[j] the value of v + j (see
 * ck_tally): checksum terms of its intersection with each own interval,
 * then the value counts. */
static void tally_block(ck_tally *tl, const ckpt_tensor *t, const ckpt_geom *g, int64_t v, int64_t n, const float *x) {
    for (int j = 0; j < tl->nown; j++) {
        int64_t a = tl->own[2 * j] > v ? tl->own[2 * j] : v;
        int64_t b = tl->own[2 * j + 1] < v + n ? tl->own[2 * j + 1] : v + n;
        if (a < b) tl->sum += ckpt_piece_sum(t, g, a, b, x + (a - v));
    }
    if (!tl->values) return;
    uint64_t nan = 0, inf = 0, neg = 0;
    for (int64_t i = 0; i < n; i++) {
        float y = x[i];
        nan += isnan(y) != 0;
        inf += isinf(y) != 0;
        neg += tl->second && y < 0;
    }
    tl->nan += nan;
    tl->inf += inf;
    tl->neg += neg;
}

/* Collective transfer of v-intervals [ranges[2j], ranges[2j+1]) of this
 * rank's piece (ckpt_piece.h), each cut into blocks of at most
 * ck_piece_elems() floats; a block is consecutive in the rank's piece (piece
 * index v - vbase - off) and selected in the file by ckpt_piece_select. Its
 * memory is the piece's data there, or for a streamed piece (data NULL) one
 * staging buffer of min(ck_piece_elems(), longest range) floats reused by
 * every block: pull fills it before the write, push takes it after the read.
 * Every rank makes the same number of H5Dwrite/H5Dread calls (ranks with no
 * block left join with an empty selection). Returns 0 or -1 (local failure).
 * A write that failed stops this rank's calls: HDF5 may have failed before
 * the collective part, the others then wait inside that call, and a further
 * collective call from this rank would be matched against it (undefined);
 * the caller's deadline agreement ends the job instead. `inject` (fault
 * hook) makes this rank fail its first write without calling HDF5, as such
 * a failure would. */
int ck_transfer(MPI_Comm comm, hid_t d, const ckpt_tensor *t, const ckpt_geom *g, hid_t dxpl, int write,
                const int64_t *ranges, int nranges, int inject, ck_tally *tl) {
    hid_t fs = H5Dget_space(d);
    int64_t per = ck_piece_elems(), longest = 0;
    long long mine = 0, npieces = 0;
    for (int j = 0; j < nranges; j++) {
        int64_t len = ranges[2 * j + 1] - ranges[2 * j];
        mine += (len + per - 1) / per;
        if (len > longest) longest = len;
    }
    MPI_Allreduce(&mine, &npieces, 1, MPI_LONG_LONG, MPI_MAX, comm);
    /* the staging buffer of a streamed piece: one block at most */
    float *stage = !t->data && longest > 0 ? lm_alloc(sizeof(float) * (size_t)(longest < per ? longest : per)) : NULL;
    int rc = fs < 0 ? -1 : 0, j = 0;
    int64_t next = nranges > 0 ? ranges[0] : 0; /* first element of the next block */
    float dummy = 0;
    for (long long p = 0; p < npieces; p++) {
        while (j < nranges && next >= ranges[2 * j + 1])
            if (++j < nranges) next = ranges[2 * j];
        int64_t r0 = next, rn = 0;
        if (j < nranges) {
            rn = ranges[2 * j + 1] - r0;
            if (rn > per) rn = per;
            next += rn;
        }
        hsize_t one = 1, mcount = (hsize_t)rn;
        hid_t ms = H5Screate_simple(1, rn > 0 ? &mcount : &one, NULL);
        float *buf = &dummy;
        int sel = 1; /* the block is selected (nothing to read into it otherwise) */
        int64_t at = r0 - g->vbase - t->off; /* the block's offset in the piece */
        if (rn > 0) {
            buf = t->data ? t->data + at : stage;
            if (write && !t->data) t->pull(t->ctx, buf, at, rn);
            if (write && tl) tally_block(tl, t, g, r0, rn, buf);
            /* a selection that failed, or does not hold rn elements, would
             * fail this rank's call before the collective part and leave the
             * others waiting in it: join with nothing selected instead */
            if (fs >= 0 && (ckpt_piece_select(fs, t, g, r0, rn) < 0 || H5Sget_select_npoints(fs) != (hssize_t)rn)) {
                rc = -1;
                sel = 0;
                H5Sselect_none(fs);
                H5Sselect_none(ms);
            }
        } else {
            if (fs >= 0) H5Sselect_none(fs);
            H5Sselect_none(ms);
        }
        herr_t st;
        if (write && inject) st = -1;
        else if (write) st = H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf);
        else st = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf);
        if (st < 0) rc = -1;
        h5_close(ms);
        if (write && st < 0) break;
        if (!write && rn > 0 && st >= 0 && sel && fs >= 0) {
            if (tl) tally_block(tl, t, g, r0, rn, buf);
            if (!t->data) t->push(t->ctx, buf, at, rn);
        }
    }
    lm_free(stage);
    h5_close(fs);
    return rc;
}

/* step number of "step_<digits>.h5" (with suffix ".h5" + extra), else -1 */
long ck_parse_step(const char *name, const char *suffix) {
    if (strncmp(name, "step_", 5)) return -1;
    const char *p = name + 5, *q = p;
    long v = 0;
    while (*q >= '0' && *q <= '9') {
        if (v > (long)1e15) return -1;
        v = v * 10 + (*q++ - '0');
    }
    if (q == p || strcmp(q, suffix)) return -1;
    return v;
}

int ck_by_step_desc(const void *a, const void *b) {
    long x = ((const ck_entry *)a)->step, y = ((const ck_entry *)b)->step;
    return (x < y) - (x > y);
}

/* Append directory entry `name` to the list *e (n used, cap allocated) when
 * it names a step file (step_N.h5); 1 if it was added. */
int ck_entry_add(ck_entry **e, size_t *n, size_t *cap, const char *name) {
    long s = ck_parse_step(name, ".h5");
    if (s < 0 || strlen(name) >= sizeof(*e)->name) return 0;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *e = lm_realloc(*e, *cap * sizeof **e);
    }
    (*e)[*n].step = s;
    snprintf((*e)[*n].name, sizeof(*e)[*n].name, "%s", name);
    (*n)++;
    return 1;
}

/* ---- latest ---- */

/* What a non-regular file is, for messages. */
const char *ck_file_kind(mode_t m) {
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a plain file";
}

/* A checkpoint or `latest` is opened only when it is a regular file:
 * opening a FIFO blocks until a writer appears (a run that never ends), and
 * a directory or device is no checkpoint. stat() first, never open().
 * Returns 0, or `code` with err naming the path. */
int ck_regular_file(const char *path, int code, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st)) return lm_err(err, errlen, code, "%s: cannot read (%s)", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, code, "%s: not a regular file (%s); a checkpoint must be a regular HDF5 file", path,
                      ck_file_kind(st.st_mode));
    return 0;
}

