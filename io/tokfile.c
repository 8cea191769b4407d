/* tokfile.c — the token data file (SPEC §4): open with full validation,
 * read samples by hyperslab. Writers: tokfile_write.c; the optional
 * datasets of SPEC §9: tokfile_opt.c.
 *
 * Every HDF5 call runs with HDF5's automatic error printing switched off
 * (h5_quiet_begin/h5_quiet_end): a bad file becomes one message naming the file,
 * the dataset or attribute and the rule, never an error stack on stderr. */
#include "tokfile_int.h"
#include "h5attr.h"
#include "tokrec.h"
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* Integer attribute of any integer type, one element, converted to int64. */
static int attr_int64(hid_t obj, const char *name, int64_t *v) {
    return h5_attr_num(obj, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
}

static int attr_fail(const char *path, const char *name, int rc, const char *want, char *err, size_t errlen) {
    if (rc == -1) return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute %s: missing", path, name);
    if (rc == -2) return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute %s: must be %s", path, name, want);
    return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute %s: unreadable", path, name);
}

/* Open a 1-D integer dataset; returns its length or -1 with err. */
int64_t tokfile_open_int_1d(hid_t f, const char *path, const char *dpath, hid_t *d, hid_t *type, char *err,
                            size_t errlen) {
    *d = H5Dopen2(f, dpath, H5P_DEFAULT);
    if (*d < 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: not a dataset, or its header is damaged", path, dpath);
        return -1;
    }
    hid_t s = H5Dget_space(*d);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[1] = {0};
    if (nd == 1) H5Sget_simple_extent_dims(s, dims, NULL);
    h5_close(s);
    if (nd != 1) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: must be 1-D (has %d dimensions)", path, dpath, nd);
        return -1;
    }
    *type = H5Dget_type(*d);
    if (*type < 0 || H5Tget_class(*type) != H5T_INTEGER) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: must have an integer type", path, dpath);
        return -1;
    }
    /* an element count the file cannot hold is damage, not a size to allocate */
    struct stat st;
    size_t esz = H5Tget_size(*type);
    hid_t dcpl = H5Dget_create_plist(*d);
    int nfilt = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    h5_close(dcpl);
    double limit = (stat(path, &st) == 0 ? (double)st.st_size : 0.0) * (nfilt > 0 ? 1000.0 : 1.0);
    if ((double)dims[0] * (double)(esz ? esz : 1) > limit + 4096.0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %llu elements do not fit in the file", path, dpath, (unsigned long long)dims[0]);
        return -1;
    }
    return (int64_t)dims[0];
}

static tokfile *open_fail(tokfile *f) {
    tokfile_close(f);
    return NULL;
}

/* Identity of the file as it stands: device, inode, size, mtime. */
static int same_file(const struct stat *a, const tokfile *f) {
    return a->st_dev == f->dev && a->st_ino == f->ino;
}

tokfile *tokfile_open(const char *path, char *err, size_t errlen) {
    /* only a regular file: open() of a FIFO would block until a writer
     * appears, and a device or directory is never a token file */
    struct stat st0;
    if (stat(path, &st0)) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st0.st_mode)) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: not a regular file (%s): a token file must be a regular HDF5 file", path,
               S_ISDIR(st0.st_mode) ? "a directory" : S_ISFIFO(st0.st_mode) ? "a FIFO" : "a device or socket");
        return NULL;
    }
    if (access(path, R_OK)) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
        return NULL;
    }
    h5_quiet q;
    h5_quiet_begin(&q);
    tokfile *f = lm_calloc(1, sizeof *f);
    f->path = lm_strdup(path);
    f->file = f->tokens = f->tspace = -1;
    f->mask = f->mspace = f->dhash = f->dmin = -1;
    f->tok_addr = f->mask_addr = HADDR_UNDEF;
    hid_t od = -1, ot = -1;
    char *fmt = NULL;
    int64_t v = 0;
    int rc;

    hid_t fapl = h5_fapl();
    f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    if (f->file < 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: not an HDF5 file, or truncated/damaged", path);
        goto fail;
    }
    /* record the identity of what HDF5 actually opened (its descriptor),
     * falling back to the path's for a driver without one */
    {
        void *h = NULL;
        struct stat st = st0;
        if (H5Fget_vfd_handle(f->file, H5P_DEFAULT, &h) >= 0 && h) fstat(*(int *)h, &st);
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->size = f->cur_size = st.st_size;
        f->mtime = st.st_mtim;
    }
    if ((rc = h5_attr_string(f->file, "format", &fmt))) {
        attr_fail(path, "format", rc, "a string", err, errlen);
        goto fail;
    }
    if (strcmp(fmt, "lamina-tokens")) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute format = \"%.64s\", expected \"lamina-tokens\"", path, fmt);
        goto fail;
    }
    if ((rc = attr_int64(f->file, "version", &v))) {
        attr_fail(path, "version", rc, "an integer", err, errlen);
        goto fail;
    }
    if (v != 1) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute version = %lld, this build reads version 1", path, (long long)v);
        goto fail;
    }
    if ((rc = attr_int64(f->file, "vocab_size", &f->vocab_size))) {
        attr_fail(path, "vocab_size", rc, "an integer", err, errlen);
        goto fail;
    }
    if (f->vocab_size <= 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute vocab_size = %lld must be > 0", path, (long long)f->vocab_size);
        goto fail;
    }

    htri_t ex = H5Lexists(f->file, "tokens", H5P_DEFAULT);
    if (ex <= 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /tokens: %s", path, ex < 0 ? "unreadable (damaged file)" : "missing");
        goto fail;
    }
    hid_t tt = -1;
    f->n_tokens = tokfile_open_int_1d(f->file, path, "/tokens", &f->tokens, &tt, err, errlen);
    if (f->n_tokens >= 0) {
        f->tok_wide = H5Tget_sign(tt) != H5T_SGN_NONE || H5Tget_size(tt) > 4;
        f->tok_esz = H5Tget_size(tt);
    }
    h5_close(tt);
    if (f->n_tokens < 0) goto fail;
    /* contiguous /tokens: its raw data must lie inside the file, and each
     * read is checked against the file's current end (tokfile_read_sample) */
    f->tok_addr = f->n_tokens > 0 ? H5Dget_offset(f->tokens) : HADDR_UNDEF;
    if (f->tok_addr != HADDR_UNDEF &&
        (double)f->tok_addr + (double)f->n_tokens * (double)f->tok_esz > (double)f->size) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /tokens: its %lld tokens run past the end of the file (%lld bytes): truncated",
               path, (long long)f->n_tokens, (long long)f->size);
        goto fail;
    }
    f->tspace = H5Dget_space(f->tokens);
    if (f->tspace < 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /tokens: unreadable dataspace", path);
        goto fail;
    }

    ex = H5Lexists(f->file, "samples", H5P_DEFAULT);
    if (ex > 0) ex = H5Lexists(f->file, "samples/offsets", H5P_DEFAULT);
    if (ex <= 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: %s", path, ex < 0 ? "unreadable (damaged file)" : "missing");
        goto fail;
    }
    int64_t no = tokfile_open_int_1d(f->file, path, "/samples/offsets", &od, &ot, err, errlen);
    if (no < 0) goto fail;
    if (no < 2) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: %lld entries, need n_samples+1 >= 2 (no samples)", path,
               (long long)no);
        goto fail;
    }
    f->n_samples = no - 1;
    f->offsets = lm_alloc((size_t)no * sizeof(int64_t));
    if (H5Dread(od, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, f->offsets) < 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: unreadable", path);
        goto fail;
    }
    if (f->offsets[0] != 0) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: offsets[0] = %lld, must be 0", path, (long long)f->offsets[0]);
        goto fail;
    }
    for (int64_t i = 1; i < no; i++)
        if (f->offsets[i] < f->offsets[i - 1]) {
            lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: not non-decreasing at index %lld", path, (long long)i);
            goto fail;
        }
    if (f->offsets[no - 1] != f->n_tokens) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/offsets: last offset %lld != length of /tokens %lld", path,
               (long long)f->offsets[no - 1], (long long)f->n_tokens);
        goto fail;
    }
    {
        lm_tokrec tr;
        int trc = tokrec_read(f->file, path, "token file", 0, &tr, err, errlen);
        if (trc) goto fail;
        f->has_tok = tr.len > 0;
        if (f->has_tok && (tr.bos_id >= f->vocab_size || tr.eos_id >= f->vocab_size)) {
            lm_err(err, errlen, LM_ERR_INPUT, "%s: token file dataset /tokenizer/model: bos_id %lld / eos_id %lld must be below "
                   "the file's vocab_size %lld", path, (long long)tr.bos_id, (long long)tr.eos_id, (long long)f->vocab_size);
            goto fail;
        }
    }
    if (tokfile_open_opt(f, err, errlen)) goto fail;
    h5_close(od);
    h5_close(ot);
    free(fmt);
    h5_quiet_end(&q, 0);
    return f;
fail:
    h5_close(od);
    h5_close(ot);
    free(fmt);
    open_fail(f);
    h5_quiet_end(&q, 1);
    return NULL;
}

void tokfile_close(tokfile *f) {
    if (!f) return;
    h5_quiet q;
    h5_quiet_begin(&q);
    tokfile_close_opt(f);
    h5_close(f->tspace);
    h5_close(f->tokens);
    if (f->file >= 0) H5Fclose(f->file);
    h5_quiet_end(&q, 0);
    lm_free(f->offsets);
    lm_free(f->wide);
    lm_free(f->path);
    lm_free(f);
}

int64_t tokfile_n_samples(const tokfile *f) { return f->n_samples; }
int64_t tokfile_n_tokens(const tokfile *f) { return f->n_tokens; }
int64_t tokfile_vocab_size(const tokfile *f) { return f->vocab_size; }

int tokfile_tokenizer(tokfile *f, lm_tokrec *rec, char *err, size_t errlen) {
    memset(rec, 0, sizeof *rec);
    rec->bos_id = rec->eos_id = -1;
    if (!f->has_tok) return 0;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = tokrec_read(f->file, f->path, "token file", 1, rec, err, errlen);
    h5_quiet_end(&q, rc);
    rec->vocab_size = f->vocab_size;
    return rc;
}
const char *tokfile_path(const tokfile *f) { return f->path; }

/* Cheap per-step guard (one stat): the path must still name the file that
 * was opened and validated, with the same size and modification time.
 * Returns 0, or 1 (runtime failure) with a message naming the file. */
int tokfile_check(tokfile *f, char *err, size_t errlen) {
    struct stat st;
    if (stat(f->path, &st))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: /tokens: the token file is gone during the run (%s)", f->path,
                      strerror(errno));
    if (!same_file(&st, f))
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s: /tokens: the token file was replaced during the run (another file now has its name): "
                      "a token file must not change while a run reads it",
                      f->path);
    f->cur_size = st.st_size;
    if (st.st_size != f->size)
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s: /tokens: the token file changed size during the run (%lld -> %lld bytes): a token file "
                      "must not change while a run reads it",
                      f->path, (long long)f->size, (long long)st.st_size);
    if (st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec)
        return lm_err(err, errlen, LM_ERR_RUNTIME,
                      "%s: /tokens: the token file was modified during the run (modification time changed): a token "
                      "file must not change while a run reads it",
                      f->path);
    return 0;
}

int tokfile_past_end(const tokfile *f, haddr_t addr, int64_t lo, int64_t n, size_t esz) {
    return addr != HADDR_UNDEF && (double)addr + (double)(lo + n) * (double)esz > (double)f->cur_size;
}

int64_t tokfile_sample_len(const tokfile *f, int64_t i) {
    if (i < 0 || i >= f->n_samples) return -1;
    return f->offsets[i + 1] - f->offsets[i];
}

int64_t tokfile_read_sample(tokfile *f, int64_t i, uint32_t *buf, int64_t maxlen, char *err, size_t errlen) {
    if (i < 0 || i >= f->n_samples) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: sample %lld out of range [0, %lld)", f->path, (long long)i, (long long)f->n_samples);
        return -1;
    }
    int64_t len = f->offsets[i + 1] - f->offsets[i];
    if (maxlen < 0) maxlen = 0;
    int64_t n = len < maxlen ? len : maxlen;
    if (n == 0) return 0;
    if (f->tok_wide && n > f->wide_cap) {
        lm_free(f->wide);
        f->wide = lm_alloc((size_t)n * sizeof(int64_t));
        f->wide_cap = n;
    }
    /* HDF5 zero-fills a read past the end of the file and reports success:
     * refuse a read that would cross the end as last seen by tokfile_check */
    if (tokfile_past_end(f, f->tok_addr, f->offsets[i], n, f->tok_esz)) {
        double end = (double)f->tok_addr + (double)(f->offsets[i] + n) * (double)f->tok_esz;
        lm_err(err, errlen, LM_ERR_RUNTIME,
               "%s: /tokens: sample %lld ends at byte %.0f, past the end of the file (%lld bytes): the file "
               "shrank during the run",
               f->path, (long long)i, end, (long long)f->cur_size);
        return -2;
    }
    h5_quiet q;
    h5_quiet_begin(&q);
    hsize_t start[1] = {(hsize_t)f->offsets[i]}, count[1] = {(hsize_t)n};
    hid_t ms = H5Screate_simple(1, count, NULL);
    herr_t st = H5Sselect_hyperslab(f->tspace, H5S_SELECT_SET, start, NULL, count, NULL);
    if (st >= 0) {
        if (f->tok_wide) st = H5Dread(f->tokens, H5T_NATIVE_INT64, ms, f->tspace, H5P_DEFAULT, f->wide);
        else st = H5Dread(f->tokens, H5T_NATIVE_UINT32, ms, f->tspace, H5P_DEFAULT, buf);
    }
    h5_close(ms);
    h5_quiet_end(&q, st < 0);
    if (st < 0) {
        lm_err(err, errlen, LM_ERR_RUNTIME, "%s: /tokens: read of sample %lld failed (I/O error)", f->path, (long long)i);
        return -2;
    }
    /* a signed or 64-bit file type may hold negatives or huge ids: check
     * before narrowing, so a bad id is never silently clamped */
    for (int64_t k = 0; k < n; k++) {
        int64_t t = f->tok_wide ? f->wide[k] : (int64_t)buf[k];
        if (t < 0 || t >= f->vocab_size) {
            lm_err(err, errlen, LM_ERR_INPUT, "%s: /tokens: sample %lld holds token id %lld (position %lld), outside [0, vocab_size %lld)",
                   f->path, (long long)i, (long long)t, (long long)k, (long long)f->vocab_size);
            return -1;
        }
        if (f->tok_wide) buf[k] = (uint32_t)t;
    }
    return n;
}
