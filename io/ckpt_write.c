/* ckpt_write.c — writing a checkpoint (SPEC §5): collective parallel-HDF5
 * save into a .tmp file, checksums, atomic publish through `latest`,
 * pruning of old files; on failure a deadline agreement and a watchdog so
 * that no rank is left in a collective call; fault injection for tests.
 * Shared helpers: ckpt.c (ckpt_int.h). */
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

/* ck_agree() for the save path: same result, but a rank that has already
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

/* Delete step_*.h5 beyond the newest `keep` (by step number), never `current`
 * (the file latest names), and step_*.h5.tmp left by a crashed save. */
static void prune(const char *dir, const char *current, int keep) {
    DIR *dh = opendir(dir);
    if (!dh) return;
    ck_entry *e = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    char p[4096 + 256];
    while ((de = readdir(dh))) {
        if (ck_parse_step(de->d_name, ".h5.tmp") >= 0) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (unlink(p)) fprintf(stderr, "lamina: warning: cannot remove stale %s (%s)\n", p, strerror(errno));
            continue;
        }
        ck_entry_add(&e, &n, &cap, de->d_name);
    }
    closedir(dh);
    if (keep > 0 && n > 0) {
        qsort(e, n, sizeof *e, ck_by_step_desc);
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
    if (m->stage > 0) {
        rc |= h5_write_i64(f, "stage", m->stage);
        rc |= h5_write_i64(f, "stage_data_start", m->stage_data_start);
    }
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
    long long tok = m->tok ? (long long)m->tok->len : 0;
    return b + 65536 + 1024LL * nsets * n + 2 * deck + tok + 4096;
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
    const char *set = CK_SET_PATH[s], *tmp = c->tmp;
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
    /* the checksum terms of what this rank writes, summed block by block as
     * the values go out (from data or pulled into the staging block) */
    ck_tally tl = {pl.pieces, pl.npieces, 0, 0, 0, 0, 0, 0};
    if (!rc && ck_transfer(c->comm, d, t, &pl.g, dxpl, 1, pl.pieces, pl.npieces, fault_ds("dwrite", s, i, n), &tl))
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s/%s: write failed", tmp, set, t->name);
    uint64_t loc = tl.sum, tot = 0;
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
        for (int i = 0; i < n && !rc; i++) rc = ckpt_piece_check(&sets[s][i], CK_SET_PATH[s], 1, err, errlen);
    if (ck_agree(comm, rc, err, errlen)) return 1;

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
    /* the recorded tokenizer: created collectively, its bytes written by rank 0 */
    if (!wm && meta->tok && meta->tok->len && tokrec_write(f, meta->tok, rank == 0, dxpl)) wm = 3;
    rc = wm == 1 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: writing the root attributes failed", tmp)
       : wm == 2 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: writing /config (model shape and deck) failed", tmp)
       : wm == 3 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: writing /tokenizer/model failed", tmp)
                 : 0;
    if (!rc) {
        if (fault_at("group")) {
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create group %s", tmp, CK_SET_PATH[0]);
        } else {
            groups[0] = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (nsets == 3) {
                optim = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                groups[1] = H5Gcreate2(optim, "exp_avg", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                groups[2] = H5Gcreate2(optim, "exp_avg_sq", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            }
            for (int s = 0; s < nsets; s++)
                if (groups[s] < 0) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create group %s", tmp, CK_SET_PATH[s]);
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
    if (ck_agree(comm, rc, err, errlen)) return 1;
    double dt = MPI_Wtime() - t_start;
    if (dt > g_longest_save) g_longest_save = dt;
    return 0;
}

