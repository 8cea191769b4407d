/* ckpt.c — checkpoint files (SPEC §5): collective write and read with
 * parallel HDF5, checksums, atomic publish through `latest`.
 *
 * Error discipline: any step that may fail on one rank only is followed by
 * an agreement (agree(): the lowest failing rank's message goes to all), so
 * every rank takes the same path through the collective HDF5 calls and no
 * rank is left waiting in one. HDF5's automatic error printing is off for
 * the duration of each public call. The geometry of the ranks' pieces (flat
 * ranges, row and column slices: who writes what, file selections,
 * checksum terms) is in ckpt_piece.c. */
#include "ckpt.h"
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

#define CKPT_FORMAT "lamina-ckpt"
#define CKPT_VERSION 1
/* Elements per H5Dwrite/H5Dread call are capped so that one transfer stays
 * far below MPI-IO's 2 GiB count limit: 64 Mi floats = 256 MiB (a block may
 * start and end inside rows like any piece). Test hook: the
 * environment variable LAMINA_CKPT_PIECE_ELEMS lowers the cap, so that small
 * tensors exercise the multi-piece path (test_ckpt_mpi). */
static int64_t piece_elems(void) {
    const char *s = getenv("LAMINA_CKPT_PIECE_ELEMS");
    long long v = s ? atoll(s) : 0;
    return v > 0 ? (int64_t)v : ((int64_t)64 << 20);
}

/* ---- small helpers ---- */

/* Every rank passes its status; if any failed, all return the code and the
 * message of the lowest-numbered failing rank (lm_agree, src/core/agree.c). */
static int agree(MPI_Comm comm, int rc, char *err, size_t errlen) {
    return lm_agree(comm, rc, err, errlen, NULL, NULL);
}

/* ---- save-side failure handling: deadlines and fault injection ---- */

/* Longest successful ckpt_save of this process so far (seconds): the
 * deadline below scales with it, so that a slow but healthy rank of a large
 * checkpoint is not mistaken for a stuck one. */
static double g_longest_save;

/* How long a rank that failed locally waits for the others at an error
 * agreement: LAMINA_CKPT_DEADLINE_S when set (tests), else the larger of
 * 60 s and 4 x the longest save so far. */
static double deadline_s(void) {
    const char *e = getenv("LAMINA_CKPT_DEADLINE_S");
    double v = e ? atof(e) : 0;
    if (v > 0) return v;
    return 4 * g_longest_save > 60 ? 4 * g_longest_save : 60;
}

/* The save in progress: its communicator, rank and the .tmp path to remove
 * if the job has to be aborted. */
typedef struct {
    MPI_Comm comm;
    int rank, size;
    const char *tmp;
} save_ctx;

/* Last resort: the other ranks never reached the agreement (they are stuck
 * in a collective HDF5 call that this rank's failure left them in). Remove
 * the .tmp, say why, and end the whole job with exit code 1. */
static _Noreturn void save_abort(const save_ctx *c, const char *err, double waited) {
    if (c->tmp) unlink(c->tmp);
    lm_abort(LM_ERR_RUNTIME,
             "checkpoint: %s (the other ranks did not reach the error agreement within %.0f s: they are stuck in a "
             "collective HDF5 call; %s removed, aborting the job)",
             err, waited, c->tmp ? c->tmp : "nothing");
}

/* lm_agree's deadline hook: the context is the save in progress. */
static void save_timeout(void *ctx, const char *err, double waited) { save_abort(ctx, err, waited); }

/* agree() for the save path: same result, but a rank that has already
 * failed waits for the others at most deadline_s() and then aborts the job
 * (save_abort) instead of waiting forever for ranks that cannot arrive; a
 * healthy rank simply waits. */
static int agree_dl(const save_ctx *c, int rc, char *err, size_t errlen) {
    lm_agree_wait w = {deadline_s(), save_timeout, (void *)c};
    return lm_agree(c->comm, rc, err, errlen, &w, NULL);
}

/* Watchdog for the error path: once a save has failed, every rank still
 * makes collective HDF5 calls to close the file, and a rank whose earlier
 * failure left a peer inside another collective call could wait in them
 * forever. While armed, a helper thread ends the job (remove the .tmp,
 * print the message, MPI_Abort with exit code 1) if the main thread has not
 * disarmed it within the deadline. Never armed on a healthy save, so a slow
 * but healthy file system cannot trip it. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, armed;
    struct timespec until;
    double secs;
    char tmp[4096 + 80], msg[LM_ERRLEN];
} g_wd = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0, 0}, 0, "", ""};

static void *watchdog_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_wd.mu);
    for (;;) {
        while (!g_wd.armed) pthread_cond_wait(&g_wd.cv, &g_wd.mu);
        if (pthread_cond_timedwait(&g_wd.cv, &g_wd.mu, &g_wd.until) == ETIMEDOUT && g_wd.armed) {
            if (g_wd.tmp[0]) unlink(g_wd.tmp);
            fprintf(stderr,
                    "lamina: error (rank %d): checkpoint: %s (the ranks did not finish closing the failed checkpoint "
                    "within %.0f s: stuck in a collective HDF5 call; %s removed, aborting the job)\n",
                    lm_world_rank(), g_wd.msg, g_wd.secs, g_wd.tmp[0] ? g_wd.tmp : "nothing");
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, LM_ERR_RUNTIME);
            _exit(LM_ERR_RUNTIME);
        }
    }
    return NULL;
}

static void watchdog_arm(const char *tmp, const char *msg) {
    pthread_mutex_lock(&g_wd.mu);
    if (!g_wd.started) {
        pthread_t th;
        if (pthread_create(&th, NULL, watchdog_main, NULL) == 0) {
            pthread_detach(th);
            g_wd.started = 1;
        }
    }
    snprintf(g_wd.tmp, sizeof g_wd.tmp, "%s", tmp ? tmp : "");
    snprintf(g_wd.msg, sizeof g_wd.msg, "%s", msg);
    g_wd.secs = deadline_s();
    clock_gettime(CLOCK_REALTIME, &g_wd.until);
    g_wd.until.tv_sec += (time_t)g_wd.secs;
    g_wd.armed = 1;
    pthread_cond_signal(&g_wd.cv);
    pthread_mutex_unlock(&g_wd.mu);
}

static void watchdog_disarm(void) {
    pthread_mutex_lock(&g_wd.mu);
    g_wd.armed = 0;
    pthread_cond_signal(&g_wd.cv);
    pthread_mutex_unlock(&g_wd.mu);
}

/* Fault injection (test hook, see ckpt.h): LAMINA_CKPT_FAIL =
 * POINT[.SET.INDEX][:RANK][@STEP]. Parsed at the start of each save. */
static struct {
    int on, rank;
    long step;
    char point[32], set[16], index[16];
} g_fault;
static int g_fault_rank;
static long g_fault_step;

static void fault_parse(int rank, long step) {
    memset(&g_fault, 0, sizeof g_fault);
    g_fault_rank = rank;
    g_fault_step = step;
    const char *e = getenv("LAMINA_CKPT_FAIL");
    if (!e || !*e) return;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", e);
    g_fault.rank = -1;
    g_fault.step = -1;
    char *at = strchr(buf, '@');
    if (at) {
        *at = 0;
        g_fault.step = atol(at + 1);
    }
    char *colon = strchr(buf, ':');
    if (colon) {
        *colon = 0;
        g_fault.rank = atoi(colon + 1);
    }
    char *dot = strchr(buf, '.');
    if (dot) {
        *dot++ = 0;
        char *dot2 = strchr(dot, '.');
        if (dot2) {
            *dot2++ = 0;
            snprintf(g_fault.index, sizeof g_fault.index, "%.15s", dot2);
        }
        snprintf(g_fault.set, sizeof g_fault.set, "%.15s", dot);
    }
    snprintf(g_fault.point, sizeof g_fault.point, "%.31s", buf);
    g_fault.on = 1;
}

/* Does the injected fault fire at this point on this rank and step? */
static int fault_at(const char *point) {
    return g_fault.on && !strcmp(g_fault.point, point) && (g_fault.rank < 0 || g_fault.rank == g_fault_rank) &&
           (g_fault.step < 0 || g_fault.step == g_fault_step);
}

static const char *const SET_NAME[3] = {"model", "exp_avg", "exp_avg_sq"};

/* fault_at for a dataset point: tensor i of n in set s; SET and INDEX
 * (first, mid = n/2, last, or a number) narrow it when given. */
static int fault_ds(const char *point, int s, int i, int n) {
    if (!fault_at(point)) return 0;
    if (g_fault.set[0] && strcmp(g_fault.set, SET_NAME[s])) return 0;
    if (!g_fault.index[0]) return 1;
    int want = !strcmp(g_fault.index, "first") ? 0
             : !strcmp(g_fault.index, "mid")   ? n / 2
             : !strcmp(g_fault.index, "last")  ? n - 1
                                               : atoi(g_fault.index);
    return i == want;
}

static int attr_fail(const char *path, const char *obj, const char *name, int rc, const char *want, char *err,
                     size_t errlen) {
    if (rc == -1) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: missing", path, obj, name);
    if (rc == -2) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: must be %s", path, obj, name, want);
    return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: unreadable", path, obj, name);
}

/* ---- the three tensor sets ---- */

static const char *const SET_PATH[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};

/* Collective transfer of v-intervals [ranges[2j], ranges[2j+1]) of this
 * rank's piece (ckpt_piece.h), each cut into blocks of at most
 * piece_elems() floats; a block is consecutive in the rank's buffer (buffer
 * index v - vbase - off) and selected in the file by ckpt_piece_select.
 * Every rank makes the same number of H5Dwrite/H5Dread calls (ranks with no
 * block left join with an empty selection). Returns 0 or -1 (local failure).
 * A write that failed stops this rank's calls: HDF5 may have failed before
 * the collective part, the others then wait inside that call, and a further
 * collective call from this rank would be matched against it (undefined);
 * the caller's deadline agreement ends the job instead. `inject` (fault
 * hook) makes this rank fail its first write without calling HDF5, as such
 * a failure would. */
static int transfer_ex(MPI_Comm comm, hid_t d, const ckpt_tensor *t, const ckpt_geom *g, hid_t dxpl, int write,
                       const int64_t *ranges, int nranges, int inject) {
    hid_t fs = H5Dget_space(d);
    int64_t per = piece_elems();
    long long mine = 0, npieces = 0;
    for (int j = 0; j < nranges; j++) mine += (ranges[2 * j + 1] - ranges[2 * j] + per - 1) / per;
    MPI_Allreduce(&mine, &npieces, 1, MPI_LONG_LONG, MPI_MAX, comm);
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
        if (rn > 0) {
            buf = t->data + (r0 - g->vbase - t->off);
            /* a selection that failed, or does not hold rn elements, would
             * fail this rank's call before the collective part and leave the
             * others waiting in it: join with nothing selected instead */
            if (fs >= 0 && (ckpt_piece_select(fs, t, g, r0, rn) < 0 || H5Sget_select_npoints(fs) != (hssize_t)rn)) {
                rc = -1;
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
    }
    h5_close(fs);
    return rc;
}

static int transfer(MPI_Comm comm, hid_t d, const ckpt_tensor *t, const ckpt_geom *g, hid_t dxpl, int write,
                    const int64_t *ranges, int nranges) {
    return transfer_ex(comm, d, t, g, dxpl, write, ranges, nranges, 0);
}

/* ---- save ---- */

static int mkdir_p(const char *dir, char *err, size_t errlen) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: path too long", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create directory %s (%s)", dir, p, strerror(errno));
            *s = '/';
        }
    if (mkdir(p, 0755) && errno != EEXIST)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create directory (%s)", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: not a directory", dir);
    if (access(dir, W_OK | X_OK)) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: checkpoint directory not writable", dir);
    return 0;
}

/* step number of "step_<digits>.h5" (with suffix ".h5" + extra), else -1 */
static long parse_step(const char *name, const char *suffix) {
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

typedef struct { long step; char name[256]; } entry;
static int by_step_desc(const void *a, const void *b) {
    long x = ((const entry *)a)->step, y = ((const entry *)b)->step;
    return (x < y) - (x > y);
}

/* Delete step_*.h5 beyond the newest `keep` (by step number), never `current`
 * (the file latest names), and step_*.h5.tmp left by a crashed save. */
static void prune(const char *dir, const char *current, int keep) {
    DIR *dh = opendir(dir);
    if (!dh) return;
    entry *e = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    char p[4096 + 256];
    while ((de = readdir(dh))) {
        if (parse_step(de->d_name, ".h5.tmp") >= 0) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (unlink(p)) fprintf(stderr, "lamina: warning: cannot remove stale %s (%s)\n", p, strerror(errno));
            continue;
        }
        long s = parse_step(de->d_name, ".h5");
        if (s < 0 || strlen(de->d_name) >= sizeof e->name) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            e = lm_realloc(e, cap * sizeof *e);
        }
        e[n].step = s;
        snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
        n++;
    }
    closedir(dh);
    if (keep > 0 && n > 0) {
        qsort(e, n, sizeof *e, by_step_desc);
        for (size_t i = (size_t)keep; i < n; i++) {
            if (!strcmp(e[i].name, current)) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e[i].name);
            if (unlink(p)) fprintf(stderr, "lamina: warning: cannot remove old checkpoint %s (%s)\n", p, strerror(errno));
        }
    }
    lm_free(e);
}

/* Rank 0, after the collective close: release the space reserved past the
 * file's end, make the file durable, publish it under its final name, then
 * point `latest` at it, syncing the directory after each rename so that a
 * crash leaves either the old or the new state. A failure before `latest`
 * is renamed removes what this save made (the .tmp or the renamed file,
 * latest.tmp): `latest` and the file it names stay as they were. A failure
 * of the last directory sync is reported with the new checkpoint already
 * complete and named by `latest`. Fault points: fsync, rename, dirsync,
 * latest, latest_fsync, latest_rename, latest_dirsync. */
static int publish(const char *dir, const char *fname, int keep, char *err, size_t errlen) {
    char tmp[4096 + 64], fin[4096 + 64], lt[4096 + 64], lf[4096 + 64];
    snprintf(fin, sizeof fin, "%s/%s", dir, fname);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, fname);
    snprintf(lt, sizeof lt, "%s/latest.tmp", dir);
    snprintf(lf, sizeof lf, "%s/latest", dir);
    int rc = 0;
    struct stat st;
    /* truncating to its own size frees the blocks fallocate kept past the end */
    if (stat(tmp, &st) == 0 && truncate(tmp, st.st_size))
        fprintf(stderr, "lamina: warning: %s: cannot release the reserved space (%s)\n", tmp, strerror(errno));
    if (fault_at("fsync") ? (errno = EIO, 1) : lm_fsync_path(tmp, 0)) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync failed (%s)", tmp, strerror(errno));
        unlink(tmp);
        return rc;
    }
    if (fault_at("rename") ? (errno = EIO, 1) : rename(tmp, fin)) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: rename to %s failed (%s)", tmp, fin, strerror(errno));
        unlink(tmp);
        return rc;
    }
    if (fault_at("dirsync") ? (errno = EIO, 1) : lm_fsync_path(dir, 1)) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync of the directory failed after renaming %s (%s); %s removed", dir, fname,
                    strerror(errno), fin);
        unlink(fin);
        return rc;
    }
    int fd = fault_at("latest") ? (errno = ENOSPC, -1) : open(lt, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create (%s); %s removed", lt, strerror(errno), fin);
        unlink(fin);
        return rc;
    }
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", fname);
    int wrote = write(fd, line, (size_t)len) == len;
    int e = errno;
    int synced = wrote && (fault_at("latest_fsync") ? (e = EIO, 0) : (fsync(fd) == 0 || ((e = errno), 0)));
    close(fd);
    if (!wrote || !synced) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s failed (%s); %s removed", lt, wrote ? "fsync" : "write", strerror(e), fin);
        unlink(lt);
        unlink(fin);
        return rc;
    }
    if (fault_at("latest_rename") ? (errno = EIO, 1) : rename(lt, lf)) {
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: rename to %s failed (%s); %s removed", lt, lf, strerror(errno), fin);
        unlink(lt);
        unlink(fin);
        return rc;
    }
    if (fault_at("latest_dirsync") ? (errno = EIO, 1) : lm_fsync_path(dir, 1))
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s: fsync of the directory failed after publishing %s (%s); %s is complete and named by "
                      "latest, but the rename may not survive a crash",
                      dir, fname, strerror(errno), fname);
    prune(dir, fname, keep);
    return 0;
}

static void pause_hook(void) {
    const char *s = getenv("LAMINA_CKPT_PAUSE_MS");
    long ms = s ? atol(s) : 0;
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Root attributes (returns 1 if one failed) and the /config group with the
 * model shape and the deck (returns 2). Fault points: attrs, config. */
static int write_meta(hid_t f, const ckpt_meta *m) {
    int rc = 0;
    uint64_t seed = m->seed;
    if (fault_at("attrs")) return 1;
    rc |= h5_write_str(f, "format", CKPT_FORMAT);
    rc |= h5_write_i64(f, "version", CKPT_VERSION);
    rc |= h5_write_i64(f, "step", m->step);
    rc |= h5_write_i64(f, "tokens_seen", m->tokens_seen);
    rc |= h5_write_i64(f, "consumed_samples", m->consumed_samples);
    rc |= h5_write_attr(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed);
    if (rc) return 1;
    if (fault_at("config")) return 2;
    hid_t g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return 2;
    rc |= h5_write_i64(g, "dim", m->dim);
    rc |= h5_write_i64(g, "n_layers", m->n_layers);
    rc |= h5_write_i64(g, "n_heads", m->n_heads);
    rc |= h5_write_i64(g, "n_kv_heads", m->n_kv_heads);
    rc |= h5_write_i64(g, "ffn_dim", m->ffn_dim);
    rc |= h5_write_i64(g, "vocab_size", m->vocab_size);
    rc |= h5_write_i64(g, "max_seq_len", m->max_seq_len);
    rc |= h5_write_i64(g, "tie_embeddings", m->tie_embeddings);
    rc |= h5_write_f64(g, "norm_eps", m->norm_eps);
    rc |= h5_write_f64(g, "rope_theta", m->rope_theta);
    rc |= h5_write_str(g, "deck", m->deck_text ? m->deck_text : "");
    h5_close(g);
    return rc ? 2 : 0;
}

/* Rank 0, right after the file is created and before anything is written:
 * reserve `bytes` for it (fallocate with KEEP_SIZE: blocks allocated, size
 * unchanged, so HDF5 still sees an empty file). The collective writes then
 * cannot run out of space half-way on one rank only, which would leave the
 * others waiting inside HDF5. Where fallocate is unsupported the free space
 * (statvfs) is compared instead. A quota (EDQUOT) fails here the same way.
 * Fault point: reserve (as ENOSPC). */
static int reserve(const char *tmp, long long bytes, char *err, size_t errlen) {
    int fd = open(tmp, O_WRONLY);
    if (fd < 0) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot open to reserve space (%s)", tmp, strerror(errno));
    int r = fault_at("reserve") ? (errno = ENOSPC, -1) : fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes);
    int e = errno;
    close(fd);
    if (r == 0) return 0;
    struct statvfs sv;
    long long avail = statvfs(tmp, &sv) == 0 ? (long long)sv.f_bavail * (long long)sv.f_frsize : -1;
    if (e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) {
        if (avail < 0 || avail >= bytes) return 0;
        e = ENOSPC;
    }
    if (e == ENOSPC)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: no space left on device: the checkpoint needs %lld bytes, %lld free", tmp,
                      bytes, avail);
    if (e == EDQUOT)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: disk quota exceeded: the checkpoint needs %lld bytes", tmp, bytes);
    return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot reserve %lld bytes (%s)", tmp, bytes, strerror(e));
}

/* Bytes to reserve: every dataset's floats, plus a margin for HDF5's
 * metadata (object headers, the deck attribute) and for latest.tmp, which is
 * written after the unused tail of the reservation is released. */
static long long reserve_bytes(const ckpt_meta *m, const ckpt_tensor *const *sets, int nsets, int n) {
    long long b = 0;
    for (int s = 0; s < nsets; s++)
        for (int i = 0; i < n; i++) b += (long long)sets[s][i].rows * sets[s][i].cols * (long long)sizeof(float);
    long long deck = m->deck_text ? (long long)strlen(m->deck_text) : 0;
    return b + 65536 + 1024LL * nsets * n + 2 * deck + 4096;
}

/* Create one dataset, write it collectively, then its checksum. Each element
 * is written (and summed) once, by the lowest rank whose piece holds it, so
 * replicated or overlapping pieces (e.g. every dp rank passing the whole
 * tensor) cost one write; pieces that leave elements uncovered are an error.
 * Every local failure is agreed on (with a deadline: agree_dl) before the
 * next collective call. Fault points: dcreate, dwrite, dsum (tensor i of n
 * in set s). */
static int write_tensor(const save_ctx *c, hid_t g, int s, int i, int n, const ckpt_tensor *t, hid_t dxpl,
                        char *err, size_t errlen) {
    const char *set = SET_PATH[s], *tmp = c->tmp;
    ckpt_plan pl;
    char why[LM_ERRLEN];
    /* the plan is the same on every rank (allgather): all return together */
    if (ckpt_plan_make(c->comm, t, &pl, why, sizeof why))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: %s", tmp, set, t->name, why);
    if (!pl.cover) {
        ckpt_plan_free(&pl);
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: the ranks' pieces do not cover all %lld elements", tmp, set,
                      t->name, (long long)(t->rows * t->cols));
    }
    hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
    hid_t fs = H5Screate_simple(t->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every element is written: skip the fill pass */
    hid_t d = fault_ds("dcreate", s, i, n) ? -1 : H5Dcreate2(g, t->name, H5T_IEEE_F32LE, fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    h5_close(dcpl);
    h5_close(fs);
    /* a create that failed anywhere must stop everyone before the collective write */
    int rc = d < 0 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: cannot create the dataset", tmp, set, t->name) : 0;
    rc = agree_dl(c, rc, err, errlen);
    if (!rc && transfer_ex(c->comm, d, t, &pl.g, dxpl, 1, pl.pieces, pl.npieces, fault_ds("dwrite", s, i, n)))
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: write failed", tmp, set, t->name);
    uint64_t loc = 0, tot = 0;
    for (int k = 0; k < pl.npieces && !rc; k++) loc += ckpt_piece_sum(t, &pl.g, pl.pieces[2 * k], pl.pieces[2 * k + 1]);
    ckpt_plan_free(&pl);
    rc = agree_dl(c, rc, err, errlen);
    if (!rc) {
        MPI_Allreduce(&loc, &tot, 1, MPI_UINT64_T, MPI_SUM, c->comm);
        if (fault_ds("dsum", s, i, n) || h5_write_attr(d, "checksum", H5T_STD_U64LE, H5T_NATIVE_UINT64, &tot))
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: checksum attribute not written", tmp, set, t->name);
        rc = agree_dl(c, rc, err, errlen);
    }
    h5_close(d);
    return rc;
}

/* The error path of a save whose failure every rank has agreed on: close
 * what is open and the file (collectively, under the watchdog), remove the
 * .tmp. Rank 0 first truncates the .tmp to nothing, so that the close's
 * final metadata writes find room on a full disk: a failed H5Fclose leaves
 * HDF5 unable to shut down (it crashes in MPI_Finalize). Returns 1. */
static int save_fail(const save_ctx *c, hid_t f, hid_t *groups, hid_t optim, hid_t dxpl, const char *err) {
    watchdog_arm(c->tmp, err);
    for (int s = 0; s < 3; s++) h5_close(groups[s]);
    h5_close(optim);
    h5_close(dxpl);
    if (c->rank == 0 && truncate(c->tmp, 0) && errno != ENOENT)
        fprintf(stderr, "lamina: warning: %s: cannot truncate (%s)\n", c->tmp, strerror(errno));
    MPI_Barrier(c->comm);
    if (f >= 0 && H5Fclose(f) < 0) {
        unlink(c->tmp);
        lm_abort(LM_ERR_RUNTIME, "checkpoint: %s (closing the failed file %s failed too: HDF5 cannot shut down "
                                 "cleanly, aborting the job)", err, c->tmp);
    }
    if (c->rank == 0) unlink(c->tmp);
    MPI_Barrier(c->comm);
    watchdog_disarm();
    return 1;
}

int ckpt_save(MPI_Comm comm, const char *dir, const ckpt_meta *meta, const ckpt_tensor *model,
              const ckpt_tensor *exp_avg, const ckpt_tensor *exp_avg_sq, int n, int keep, char *err,
              size_t errlen) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double t_start = MPI_Wtime();
    char fname[64], tmp[4096 + 80];
    snprintf(fname, sizeof fname, "step_%08ld.h5", meta->step);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, fname);
    const ckpt_tensor *sets[3] = {model, exp_avg, exp_avg_sq};
    int nsets = (exp_avg && exp_avg_sq) ? 3 : 1;
    fault_parse(rank, meta->step);
    save_ctx c = {comm, rank, size, tmp};

    if (strlen(dir) > 4000) return lm_err(err, errlen, LM_ERR_RUNTIME, "checkpoint directory path too long");
    int rc = rank == 0 ? mkdir_p(dir, err, errlen) : 0;
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) rc = ckpt_piece_check(&sets[s][i], SET_PATH[s], err, errlen);
    if (agree(comm, rc, err, errlen)) return 1;

    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t fapl = h5_fapl();
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    /* v1.8 object format: checksummed metadata, large attributes (deck) allowed */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t f = fault_at("create") ? -1 : H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    h5_close(fapl);
    hid_t groups[3] = {-1, -1, -1}, optim = -1, dxpl = -1;
    rc = f < 0 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create the checkpoint file", tmp) : 0;
    if (!agree_dl(&c, rc, err, errlen) && rank == 0)
        rc = reserve(tmp, reserve_bytes(meta, sets, nsets, n), err, errlen);
    if (agree_dl(&c, rc, err, errlen)) {
        h5_quiet_end(&q, 1);
        return save_fail(&c, f, groups, optim, dxpl, err);
    }

    dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    int wm = write_meta(f, meta);
    rc = wm == 1 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: writing the root attributes failed", tmp)
       : wm == 2 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: writing /config (model shape and deck) failed", tmp)
                 : 0;
    if (!rc) {
        if (fault_at("group")) {
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create group %s", tmp, SET_PATH[0]);
        } else {
            groups[0] = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (nsets == 3) {
                optim = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                groups[1] = H5Gcreate2(optim, "exp_avg", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                groups[2] = H5Gcreate2(optim, "exp_avg_sq", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            }
            for (int s = 0; s < nsets; s++)
                if (groups[s] < 0) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create group %s", tmp, SET_PATH[s]);
        }
    }
    rc = agree_dl(&c, rc, err, errlen);
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) {
            rc = write_tensor(&c, groups[s], s, i, n, &sets[s][i], dxpl, err, errlen);
            pause_hook();
        }
    /* MPI_File_sync on every rank: each rank's own writes reach stable
     * storage (rank 0's fsync below covers only what its node caches) */
    if (!rc) {
        if (fault_at("flush") || H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: flush failed", tmp);
        rc = agree_dl(&c, rc, err, errlen);
    }
    if (rc) {
        h5_quiet_end(&q, 1);
        return save_fail(&c, f, groups, optim, dxpl, err);
    }
    for (int s = 0; s < 3; s++) h5_close(groups[s]);
    h5_close(optim);
    h5_close(dxpl);
    /* a failed H5Fclose leaves HDF5 unable to shut down (it would crash in
     * MPI_Finalize), and may leave the others inside the close: end the job */
    if (fault_at("close") || H5Fclose(f) < 0) {
        unlink(tmp);
        lm_abort(LM_ERR_RUNTIME, "checkpoint: %s: closing the checkpoint file failed (HDF5 cannot shut down "
                                 "cleanly; %s removed, aborting the job)", tmp, tmp);
    }
    h5_quiet_end(&q, 0);
    rc = rank == 0 ? publish(dir, fname, keep, err, errlen) : 0;
    /* no rank returns before `latest` names the new file */
    MPI_Barrier(comm);
    if (agree(comm, rc, err, errlen)) return 1;
    double dt = MPI_Wtime() - t_start;
    if (dt > g_longest_save) g_longest_save = dt;
    return 0;
}

/* ---- latest ---- */

/* What a non-regular file is, for messages. */
static const char *file_kind(mode_t m) {
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
static int regular_file(const char *path, int code, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st)) return lm_err(err, errlen, code, "%s: cannot read (%s)", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, code, "%s: not a regular file (%s); a checkpoint must be a regular HDF5 file", path,
                      file_kind(st.st_mode));
    return 0;
}

/* `latest` is a text file naming the checkpoint (what ckpt_save writes), or
 * a symbolic link to a step_*.h5 file (what a person may make by hand). A
 * dangling link, a FIFO, a directory, an empty file or a name that is
 * missing is reported (-1), never read as "no checkpoint". */
int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen) {
    char lf[4096 + 16], name[512] = {0};
    snprintf(lf, sizeof lf, "%s/latest", dir);
    struct stat st;
    if (lstat(lf, &st)) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return lm_err(err, errlen, -1, "%s: unreadable (%s)", lf, strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
        char to[512];
        ssize_t k = readlink(lf, to, sizeof to - 1);
        if (k < 0) return lm_err(err, errlen, -1, "%s: unreadable symbolic link (%s)", lf, strerror(errno));
        to[k] = 0;
        const char *base = strrchr(to, '/') ? strrchr(to, '/') + 1 : to;
        if (stat(lf, &st))
            return lm_err(err, errlen, -1, "%s: a symbolic link to %s, which is missing (%s)", lf, to, strerror(errno));
        if (parse_step(base, ".h5") >= 0) { /* a link to the checkpoint itself */
            if ((size_t)snprintf(path, pathlen, "%s%s%s", to[0] == '/' ? "" : dir, to[0] == '/' ? "" : "/", to) >= pathlen)
                return lm_err(err, errlen, -1, "%s: path too long", lf);
            if (regular_file(path, -1, err, errlen)) {
                char why[LM_ERRLEN];
                snprintf(why, sizeof why, "%s", err);
                return lm_err(err, errlen, -1, "%s: a symbolic link to %s", lf, why);
            }
            return 1;
        }
    }
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, -1, "%s: not a regular file (%s)", lf, file_kind(st.st_mode));
    FILE *fp = fopen(lf, "r");
    if (!fp) return lm_err(err, errlen, -1, "%s: unreadable (%s)", lf, strerror(errno));
    size_t got = fread(name, 1, sizeof name - 1, fp);
    fclose(fp);
    name[got] = 0;
    size_t len = strcspn(name, "\r\n");
    name[len] = 0;
    if (len == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return lm_err(err, errlen, -1, "%s: does not name a checkpoint file", lf);
    if ((size_t)snprintf(path, pathlen, "%s/%s", dir, name) >= pathlen)
        return lm_err(err, errlen, -1, "%s: path too long", lf);
    if (stat(path, &st) || access(path, R_OK))
        return lm_err(err, errlen, -1, "%s names %s, which is missing or unreadable", lf, name);
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, -1, "%s names %s, which is not a regular file (%s)", lf, name, file_kind(st.st_mode));
    return 1;
}

/* Restart candidates (see ckpt.h): rank 0 reads `latest` and lists the
 * directory; the list travels to every rank as one block of
 * newline-separated paths, so that all ranks try the same files in the same
 * order even where a file system shows a directory late to some nodes. */
int ckpt_candidates(MPI_Comm comm, const char *dir, char ***paths, char *note, size_t notelen) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    struct { int n, rc; long long len; char note[LM_ERRLEN]; } h;
    memset(&h, 0, sizeof h);
    char *buf = NULL;
    if (rank == 0) {
        size_t cap = 4096, len = 0;
        buf = lm_alloc(cap);
        char first[4096 + 512] = {0};
        int r = ckpt_find_latest(dir, first, sizeof first, h.note, sizeof h.note);
        if (r != -1) h.note[0] = 0;
        entry *e = NULL;
        size_t ne = 0, ecap = 0;
        DIR *dh = opendir(dir);
        if (!dh && errno != ENOENT && errno != ENOTDIR) {
            h.rc = -1;
            snprintf(h.note, sizeof h.note, "%s: cannot list the checkpoint directory (%s)", dir, strerror(errno));
        }
        struct dirent *de;
        while (dh && (de = readdir(dh))) {
            long st = parse_step(de->d_name, ".h5");
            if (st < 0 || strlen(de->d_name) >= sizeof e->name) continue;
            if (ne == ecap) {
                ecap = ecap ? 2 * ecap : 16;
                e = lm_realloc(e, ecap * sizeof *e);
            }
            e[ne].step = st;
            snprintf(e[ne].name, sizeof e[ne].name, "%s", de->d_name);
            ne++;
        }
        if (dh) closedir(dh);
        if (ne) qsort(e, ne, sizeof *e, by_step_desc);
        for (long i = r == 1 ? -1 : 0; i < (long)ne && !h.rc; i++) {
            char p[4096 + 512];
            if (i < 0) snprintf(p, sizeof p, "%s", first);
            else snprintf(p, sizeof p, "%s/%s", dir, e[i].name);
            if (i >= 0 && r == 1 && !strcmp(p, first)) continue; /* already first */
            size_t k = strlen(p) + 1;
            if (len + k > cap) {
                buf = lm_realloc(buf, cap = 2 * (len + k));
            }
            memcpy(buf + len, p, k);
            buf[len + k - 1] = '\n';
            len += k;
            h.n++;
        }
        lm_free(e);
        h.len = (long long)len;
    }
    MPI_Bcast(&h, (int)sizeof h, MPI_BYTE, 0, comm);
    snprintf(note, notelen, "%s", h.note);
    *paths = NULL;
    if (h.rc) {
        lm_free(buf);
        return -1;
    }
    /* one block: n+1 pointers, then the text with each '\n' made a '\0' */
    char **out = malloc(sizeof(char *) * (size_t)(h.n + 1) + (size_t)h.len + 1);
    if (!out) lm_abort(LM_ERR_RUNTIME, "out of memory");
    char *text = (char *)(out + h.n + 1);
    if (rank == 0) memcpy(text, buf, (size_t)h.len);
    lm_free(buf);
    if (h.len) MPI_Bcast(text, (int)h.len, MPI_CHAR, 0, comm);
    text[h.len] = 0;
    for (int i = 0; i < h.n; i++) {
        out[i] = text;
        text = strchr(text, '\n');
        *text++ = 0;
    }
    out[h.n] = NULL;
    *paths = out;
    return h.n;
}

/* ---- read ---- */

/* The largest step a checkpoint may claim: far beyond any run, and small
 * enough that step + 1 and the step_NNNNNNNN.h5 name (16 digits at most,
 * see parse_step) cannot overflow. */
#define CKPT_MAX_STEP 1000000000000000L

/* Root and /config attributes of an open file (any driver), each checked
 * for type and range, and the root counters for consistency (rules in
 * ckpt.h). Root format, version and step are required; tokens_seen,
 * consumed_samples, seed and each /config key are read when present (files
 * made by other tools may carry fewer): tokens_seen and consumed_samples
 * are -1 when absent, /config keys 0 (the caller decides what it needs).
 * deck_text is malloc'd (NULL if absent). */
static int read_meta_h5(hid_t f, const char *path, ckpt_meta *m, char *err, size_t errlen) {
    char *fmt = NULL;
    int64_t v = 0;
    int rc;
    memset(m, 0, sizeof *m);
    if ((rc = h5_attr_string(f, "format", &fmt))) return attr_fail(path, "root", "format", rc, "a string", err, errlen);
    int bad = strcmp(fmt, CKPT_FORMAT) != 0;
    if (bad) lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute format = \"%.64s\", expected \"" CKPT_FORMAT "\"", path, fmt);
    free(fmt);
    if (bad) return 2;
    if ((rc = h5_attr_num(f, "version", H5T_INTEGER, H5T_NATIVE_INT64, &v)))
        return attr_fail(path, "root", "version", rc, "an integer", err, errlen);
    if (v != CKPT_VERSION)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute version = %lld, this build reads version %d", path,
                      (long long)v, CKPT_VERSION);
    if ((rc = h5_attr_num(f, "step", H5T_INTEGER, H5T_NATIVE_INT64, &v)))
        return attr_fail(path, "root", "step", rc, "an integer", err, errlen);
    if (v < 0 || v > CKPT_MAX_STEP)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute step = %lld must be in [0, %ld]", path, (long long)v,
                      CKPT_MAX_STEP);
    m->step = (long)v;
    struct { const char *k; long *dst; } opt[] = {{"tokens_seen", &m->tokens_seen},
                                                   {"consumed_samples", &m->consumed_samples}};
    for (size_t i = 0; i < 2; i++) {
        *opt[i].dst = -1;
        rc = h5_attr_num(f, opt[i].k, H5T_INTEGER, H5T_NATIVE_INT64, &v);
        if (rc == 0 && v < 0)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute %s = %lld must be >= 0", path, opt[i].k, (long long)v);
        if (rc == 0) *opt[i].dst = (long)v;
        else if (rc != -1) return attr_fail(path, "root", opt[i].k, rc, "an integer", err, errlen);
    }
    /* Every step consumes global_batch samples, 1 <= global_batch <= INT_MAX
     * (global_batch may change between restarts); every sample gives at
     * most seq_len <= INT_MAX target tokens (fewer with padding). */
    long cs = m->consumed_samples, ts = m->tokens_seen;
    if (cs >= 0 && cs < m->step)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute consumed_samples = %ld is below step = %ld (each step consumes "
                      "train.global_batch >= 1 samples)", path, cs, m->step);
    if (cs >= 0 && cs / INT32_MAX + (cs % INT32_MAX != 0) > m->step)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute consumed_samples = %ld exceeds step (%ld) x the largest "
                      "train.global_batch (%d)", path, cs, m->step, INT32_MAX);
    if (cs >= 0 && ts >= 0 && ts / INT32_MAX + (ts % INT32_MAX != 0) > cs)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute tokens_seen = %ld exceeds consumed_samples (%ld) x the "
                      "largest train.seq_len (%d)", path, ts, cs, INT32_MAX);
    rc = h5_attr_num(f, "seed", H5T_INTEGER, H5T_NATIVE_UINT64, &m->seed);
    if (rc && rc != -1) return attr_fail(path, "root", "seed", rc, "an integer", err, errlen);

    htri_t has = H5Lexists(f, "config", H5P_DEFAULT);
    if (has <= 0) return has == 0 ? 0 : lm_err(err, errlen, LM_ERR_INPUT, "%s: /config: unreadable", path);
    hid_t g = H5Gopen2(f, "config", H5P_DEFAULT);
    if (g < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: /config: not a group", path);
    /* shape keys: >= 1 (tie_embeddings 0 or 1) when present */
    struct { const char *k; int *dst; int lo, hi; } ik[] = {
        {"dim", &m->dim, 1, INT32_MAX}, {"n_layers", &m->n_layers, 1, INT32_MAX},
        {"n_heads", &m->n_heads, 1, INT32_MAX}, {"n_kv_heads", &m->n_kv_heads, 1, INT32_MAX},
        {"ffn_dim", &m->ffn_dim, 1, INT32_MAX}, {"vocab_size", &m->vocab_size, 1, INT32_MAX},
        {"max_seq_len", &m->max_seq_len, 1, INT32_MAX}, {"tie_embeddings", &m->tie_embeddings, 0, 1}};
    rc = 0;
    for (size_t i = 0; i < sizeof ik / sizeof *ik && !rc; i++) {
        int r = h5_attr_num(g, ik[i].k, H5T_INTEGER, H5T_NATIVE_INT64, &v);
        if (r == 0 && (v < ik[i].lo || v > ik[i].hi)) {
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: /config attribute %s = %lld must be in [%d, %d]", path, ik[i].k,
                        (long long)v, ik[i].lo, ik[i].hi);
        } else if (r == 0) {
            *ik[i].dst = (int)v;
        } else if (r != -1) {
            rc = attr_fail(path, "/config", ik[i].k, r, "an integer", err, errlen);
        }
    }
    /* norm_eps and rope_theta: finite and > 0 when present */
    struct { const char *k; double *dst; } dk[] = {{"norm_eps", &m->norm_eps}, {"rope_theta", &m->rope_theta}};
    for (size_t i = 0; i < 2 && !rc; i++) {
        int r = h5_attr_num(g, dk[i].k, H5T_FLOAT, H5T_NATIVE_DOUBLE, dk[i].dst);
        if (r && r != -1) rc = attr_fail(path, "/config", dk[i].k, r, "a number", err, errlen);
        else if (r == 0 && !(*dk[i].dst > 0 && *dk[i].dst <= DBL_MAX))
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: /config attribute %s = %g must be finite and > 0", path, dk[i].k,
                        *dk[i].dst);
    }
    if (!rc) {
        char *deck = NULL;
        int r = h5_attr_string(g, "deck", &deck);
        if (r == 0) m->deck_text = deck;
        else if (r != -1) rc = attr_fail(path, "/config", "deck", r, "a string", err, errlen);
    }
    h5_close(g);
    if (rc) {
        free((void *)m->deck_text);
        m->deck_text = NULL;
    }
    return rc;
}

/* The dataset's element type, for messages: "float16", "int32", ... */
static void type_name(hid_t ty, char *out, size_t n) {
    H5T_class_t c = ty >= 0 ? H5Tget_class(ty) : H5T_NO_CLASS;
    size_t bits = ty >= 0 ? 8 * H5Tget_size(ty) : 0;
    if (c == H5T_FLOAT) snprintf(out, n, "float%zu", bits);
    else if (c == H5T_INTEGER) snprintf(out, n, "%sint%zu", H5Tget_sign(ty) == H5T_SGN_NONE ? "u" : "", bits);
    else if (c == H5T_STRING) snprintf(out, n, "a string");
    else snprintf(out, n, "not a number type");
}

/* Does dataset SET/NAME exist with type float32 and the tensor's shape? */
static int check_dataset(hid_t f, const char *path, const char *set, const ckpt_tensor *t, char *err, size_t errlen) {
    char dp[1024];
    snprintf(dp, sizeof dp, "%s/%s", set, t->name);
    /* walk the path one link at a time: H5Lexists fails on a missing parent */
    char walk[1024];
    for (const char *s = dp + 1;; s++)
        if (*s == '/' || *s == 0) {
            snprintf(walk, sizeof walk, "%.*s", (int)(s - dp), dp);
            htri_t ex = H5Lexists(f, walk, H5P_DEFAULT);
            if (ex < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: unreadable (damaged file)", path, walk);
            if (ex == 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: missing", path, dp);
            if (*s == 0) break;
        }
    hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
    if (d < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: not a dataset, or its header is damaged", path, dp);
    hid_t s = H5Dget_space(d), ty = H5Dget_type(d);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1, rc = 0;
    hsize_t dims[H5S_MAX_RANK] = {0};
    if (nd >= 0 && nd <= H5S_MAX_RANK) H5Sget_simple_extent_dims(s, dims, NULL);
    if (ty < 0 || H5Tget_class(ty) != H5T_FLOAT || H5Tget_size(ty) != 4) {
        char tn[32];
        type_name(ty, tn, sizeof tn);
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: is %s, must be float32", path, dp, tn);
    } else if (nd < 0 || nd > H5S_MAX_RANK) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: unreadable dataspace", path, dp);
    } else if (nd != t->ndim || (hsize_t)t->rows != dims[0] || (nd == 2 && (hsize_t)t->cols != dims[1])) {
        char have[128] = "[", want[64];
        for (int i = 0; i < nd && i < 4; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
        strcat(have, "]");
        if (t->ndim == 1) snprintf(want, sizeof want, "[%lld]", (long long)t->rows);
        else snprintf(want, sizeof want, "[%lld,%lld]", (long long)t->rows, (long long)t->cols);
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: shape %s does not match the model %s", path, dp, have, want);
    }
    h5_close(ty);
    h5_close(s);
    h5_close(d);
    return rc;
}

/* Rank 0's serial look at the file (sec2 driver): readable, HDF5, right
 * format and version, and (when sets != NULL) every dataset present with its
 * shape. Checked before any collective open so that a damaged file is
 * refused on one rank and the verdict broadcast. */
static int validate_serial(const char *path, ckpt_meta *m, ckpt_tensor *const *sets, int nsets, int n, char *err,
                           size_t errlen) {
    memset(m, 0, sizeof *m);
    if (regular_file(path, 2, err, errlen)) return 2;
    if (access(path, R_OK)) return lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
    hid_t fapl = h5_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    if (f < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: not an HDF5 file, or truncated/damaged", path);
    int rc = read_meta_h5(f, path, m, err, errlen);
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) rc = check_dataset(f, path, SET_PATH[s], &sets[s][i], err, errlen);
    if (H5Fclose(f) < 0 && !rc) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: damaged (close failed)", path);
    if (rc) {
        free((void *)m->deck_text);
        m->deck_text = NULL;
    }
    return rc;
}

static void bcast_meta(MPI_Comm comm, ckpt_meta *m) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    long long iv[12] = {m->step, m->tokens_seen, m->consumed_samples, (long long)m->seed, m->dim, m->n_layers,
                        m->n_heads, m->n_kv_heads, m->ffn_dim, m->vocab_size, m->max_seq_len, m->tie_embeddings};
    double dv[2] = {m->norm_eps, m->rope_theta};
    long long dl = m->deck_text ? (long long)strlen(m->deck_text) + 1 : 0;
    MPI_Bcast(iv, 12, MPI_LONG_LONG, 0, comm);
    MPI_Bcast(dv, 2, MPI_DOUBLE, 0, comm);
    MPI_Bcast(&dl, 1, MPI_LONG_LONG, 0, comm);
    char *deck = rank == 0 ? (char *)m->deck_text : NULL;
    if (rank != 0 && dl > 0) deck = malloc((size_t)dl);
    for (long long off = 0; off < dl; off += 1 << 30) {
        long long c = dl - off < (1 << 30) ? dl - off : (1 << 30);
        MPI_Bcast(deck + off, (int)c, MPI_CHAR, 0, comm);
    }
    m->step = (long)iv[0];
    m->tokens_seen = (long)iv[1];
    m->consumed_samples = (long)iv[2];
    m->seed = (uint64_t)iv[3];
    int *ip[8] = {&m->dim, &m->n_layers, &m->n_heads, &m->n_kv_heads, &m->ffn_dim, &m->vocab_size, &m->max_seq_len,
                  &m->tie_embeddings};
    for (int i = 0; i < 8; i++) *ip[i] = (int)iv[4 + i];
    m->norm_eps = dv[0];
    m->rope_theta = dv[1];
    m->deck_text = deck;
}

int ckpt_read_meta(MPI_Comm comm, const char *path, ckpt_meta *meta, char *err, size_t errlen) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    h5_quiet q;
    h5_quiet_begin(&q);
    memset(meta, 0, sizeof *meta);
    int rc = rank == 0 ? validate_serial(path, meta, NULL, 0, 0, err, errlen) : 0;
    h5_quiet_end(&q, rc);
    if (agree(comm, rc, err, errlen)) return 2;
    bcast_meta(comm, meta);
    return 0;
}

/* Read one tensor's pieces collectively and check the checksum and the
 * values (see ckpt.h): every element finite, and exp_avg_sq >= 0 (a second
 * moment is a running mean of squares; a negative one would give NaN in
 * the AdamW step). Each rank checks the piece it read; the counts are
 * summed, so every rank returns the same verdict. */
static int read_tensor(MPI_Comm comm, hid_t f, const char *path, const char *set, ckpt_tensor *t, hid_t dxpl,
                       char *err, size_t errlen) {
    char dp[1024];
    snprintf(dp, sizeof dp, "%s/%s", set, t->name);
    ckpt_plan pl;
    char why[LM_ERRLEN];
    /* the plan is the same on every rank (allgather): all return together */
    if (ckpt_plan_make(comm, t, &pl, why, sizeof why)) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %s", path, dp, why);
    /* each rank reads its whole piece, v = vbase + [off, off+count) */
    int64_t whole[2] = {pl.g.vbase + t->off, pl.g.vbase + t->off + t->count};
    hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
    /* loc: checksum term, read failure, NaN count, Inf count, negative count */
    uint64_t loc[5] = {0, 0, 0, 0, 0}, tot[5] = {0, 0, 0, 0, 0}, want = 0;
    int has_sum = 0, bad = d < 0, anybad = 0;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, comm);
    if (anybad || transfer(comm, d, t, &pl.g, dxpl, 0, whole, t->count > 0)) loc[1] = 1;
    if (d >= 0) {
        int r = h5_attr_num(d, "checksum", H5T_INTEGER, H5T_NATIVE_UINT64, &want);
        if (r == 0) has_sum = 1;
        else if (r != -1) loc[1] = 2;
    }
    if (!loc[1])
        for (int i = 0; i < pl.npieces; i++)
            loc[0] += ckpt_piece_sum(t, &pl.g, pl.pieces[2 * i], pl.pieces[2 * i + 1]);
    int second = !strcmp(set, SET_PATH[2]);
    if (!loc[1])
        for (int64_t i = 0; i < t->count; i++) {
            float x = t->data[i];
            loc[2] += isnan(x) != 0;
            loc[3] += isinf(x) != 0;
            loc[4] += second && x < 0;
        }
    h5_close(d);
    ckpt_plan_free(&pl);
    MPI_Allreduce(loc, tot, 5, MPI_UINT64_T, MPI_SUM, comm);
    if (tot[1]) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: read failed (damaged file or bad checksum attribute)", path, dp);
    if (has_sum && pl.cover && tot[0] != want)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: checksum mismatch (file corrupted)", path, dp);
    if (tot[2] || tot[3])
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: holds %s values; every weight and moment must be finite", path, dp,
                      tot[2] && tot[3] ? "NaN and Inf" : tot[2] ? "NaN" : "Inf");
    if (tot[4])
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: holds negative values; a second moment (mean of squares) must be >= 0",
                      path, dp);
    return 0;
}

int ckpt_load(MPI_Comm comm, const char *path, ckpt_tensor *model, ckpt_tensor *exp_avg, ckpt_tensor *exp_avg_sq,
              int n, char *err, size_t errlen) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    ckpt_tensor *sets[3] = {model, exp_avg, exp_avg_sq};
    int nsets = (exp_avg && exp_avg_sq) ? 3 : 1;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = 0;
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++)
            if (ckpt_piece_check(&sets[s][i], SET_PATH[s], err, errlen)) {
                char tmp[LM_ERRLEN];
                snprintf(tmp, sizeof tmp, "%s", err);
                rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s", path, tmp);
            }
    if (!rc && rank == 0) {
        ckpt_meta m;
        rc = validate_serial(path, &m, sets, nsets, n, err, errlen);
        if (!rc) free((void *)m.deck_text);
    }
    if (agree(comm, rc, err, errlen)) {
        h5_quiet_end(&q, 1);
        return 2;
    }

    hid_t fapl = h5_fapl();
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    rc = f < 0 ? lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot open with MPI-IO", path) : 0;
    if (agree(comm, rc, err, errlen)) {
        if (f >= 0) H5Fclose(f);
        h5_quiet_end(&q, 1);
        return 2;
    }
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) rc = read_tensor(comm, f, path, SET_PATH[s], &sets[s][i], dxpl, err, errlen);
    h5_close(dxpl);
    if (H5Fclose(f) < 0 && !rc) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: damaged (close failed)", path);
    h5_quiet_end(&q, rc);
    return agree(comm, rc, err, errlen) ? 2 : 0;
}
