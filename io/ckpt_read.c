/* ckpt_read.c — reading and validating a checkpoint (SPEC §5): root and
 * /config attributes, dataset shapes and types, collective read of each
 * rank's pieces and the checksums. Shared helpers: ckpt.c (ckpt_int.h). */
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

static int attr_fail(const char *path, const char *obj, const char *name, int rc, const char *want, char *err,
                     size_t errlen) {
    if (rc == -1) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: missing", path, obj, name);
    if (rc == -2) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: must be %s", path, obj, name, want);
    return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s attribute %s: unreadable", path, obj, name);
}

/* ---- read ---- */

/* The largest step a checkpoint may claim: far beyond any run, and small
 * enough that step + 1 and the step_NNNNNNNN.h5 name (16 digits at most,
 * see ck_parse_step) cannot overflow. */
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
    /* a multi-stage run's position (lamina's own attributes) */
    struct { const char *k; long *dst; long lo, hi, absent; } sk[] = {
        {"stage", &m->stage, 1, 1000000, 0}, {"stage_data_start", &m->stage_data_start, 0, cs < 0 ? 0 : cs, -1}};
    for (size_t i = 0; i < 2; i++) {
        *sk[i].dst = sk[i].absent;
        rc = h5_attr_num(f, sk[i].k, H5T_INTEGER, H5T_NATIVE_INT64, &v);
        if (rc == 0 && (v < sk[i].lo || v > sk[i].hi))
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: root attribute %s = %lld must be in [%ld, %ld]", path, sk[i].k,
                          (long long)v, sk[i].lo, sk[i].hi);
        if (rc == 0) *sk[i].dst = (long)v;
        else if (rc != -1) return attr_fail(path, "root", sk[i].k, rc, "an integer", err, errlen);
    }
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
    if (ck_regular_file(path, 2, err, errlen)) return 2;
    if (access(path, R_OK)) return lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
    hid_t fapl = h5_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    if (f < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: not an HDF5 file, or truncated/damaged", path);
    int rc = read_meta_h5(f, path, m, err, errlen);
    lm_tokrec tr;
    if (!rc) rc = tokrec_read(f, path, "checkpoint", 0, &tr, err, errlen) ? 2 : 0; /* a recorded tokenizer's shape */
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) rc = check_dataset(f, path, CK_SET_PATH[s], &sets[s][i], err, errlen);
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
    long long iv[14] = {m->step, m->tokens_seen, m->consumed_samples, (long long)m->seed, m->dim, m->n_layers,
                        m->n_heads, m->n_kv_heads, m->ffn_dim, m->vocab_size, m->max_seq_len, m->tie_embeddings,
                        m->stage, m->stage_data_start};
    double dv[2] = {m->norm_eps, m->rope_theta};
    long long dl = m->deck_text ? (long long)strlen(m->deck_text) + 1 : 0;
    MPI_Bcast(iv, 14, MPI_LONG_LONG, 0, comm);
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
    m->stage = (long)iv[12];
    m->stage_data_start = (long)iv[13];
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
    if (ck_agree(comm, rc, err, errlen)) return 2;
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
    /* checksum terms of the plan's pieces and value counts of the whole
     * piece, tallied block by block as the values come in (into data, or
     * into the staging block before they are pushed) */
    ck_tally tl = {pl.pieces, pl.npieces, 1, !strcmp(set, CK_SET_PATH[2]), 0, 0, 0, 0};
    if (anybad || ck_transfer(comm, d, t, &pl.g, dxpl, 0, whole, t->count > 0, 0, &tl)) loc[1] = 1;
    if (d >= 0) {
        int r = h5_attr_num(d, "checksum", H5T_INTEGER, H5T_NATIVE_UINT64, &want);
        if (r == 0) has_sum = 1;
        else if (r != -1) loc[1] = 2;
    }
    if (!loc[1]) {
        loc[0] = tl.sum;
        loc[2] = tl.nan;
        loc[3] = tl.inf;
        loc[4] = tl.neg;
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
            if (ckpt_piece_check(&sets[s][i], CK_SET_PATH[s], 0, err, errlen)) {
                char tmp[LM_ERRLEN];
                snprintf(tmp, sizeof tmp, "%s", err);
                rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s", path, tmp);
            }
    if (!rc && rank == 0) {
        ckpt_meta m;
        rc = validate_serial(path, &m, sets, nsets, n, err, errlen);
        if (!rc) free((void *)m.deck_text);
    }
    if (ck_agree(comm, rc, err, errlen)) {
        h5_quiet_end(&q, 1);
        return 2;
    }

    hid_t fapl = h5_fapl();
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    rc = f < 0 ? lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot open with MPI-IO", path) : 0;
    if (ck_agree(comm, rc, err, errlen)) {
        if (f >= 0) H5Fclose(f);
        h5_quiet_end(&q, 1);
        return 2;
    }
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    for (int s = 0; s < nsets && !rc; s++)
        for (int i = 0; i < n && !rc; i++) rc = read_tensor(comm, f, path, CK_SET_PATH[s], &sets[s][i], dxpl, err, errlen);
    h5_close(dxpl);
    if (H5Fclose(f) < 0 && !rc) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: damaged (close failed)", path);
    h5_quiet_end(&q, rc);
    return ck_agree(comm, rc, err, errlen) ? 2 : 0;
}


/* Serial, read-only, sec2 driver (as validate_serial): no MPI. */
int ckpt_tokenizer(const char *path, lm_tokrec *rec, char *err, size_t errlen) {
    memset(rec, 0, sizeof *rec);
    rec->bos_id = rec->eos_id = -1;
    if (ck_regular_file(path, 2, err, errlen)) return 2;
    if (access(path, R_OK)) return lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t fapl = h5_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    int rc = f < 0 ? lm_err(err, errlen, LM_ERR_INPUT, "%s: not an HDF5 file, or truncated/damaged", path)
                   : tokrec_read(f, path, "checkpoint", 1, rec, err, errlen);
    if (f >= 0 && H5Fclose(f) < 0 && !rc) {
        tokrec_free(rec);
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: damaged (close failed)", path);
    }
    h5_quiet_end(&q, rc);
    return rc;
}
