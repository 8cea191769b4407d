/* tokrec.c — see tokrec.h. */
#include "tokrec.h"
#include "common.h"
#include "h5attr.h"
#include <string.h>

/* One int64 attribute of the dataset, in [lo, hi). */
static int id_attr(hid_t d, const char *path, const char *kind, const char *name, int64_t lo, int64_t hi, int need,
                   int64_t *v, char *err, size_t errlen) {
    int rc = h5_attr_num(d, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
    if (rc == -1 && !need) return 0;
    if (rc == -1)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: attribute %s: missing (SPEC §4)", path,
                      kind, name);
    if (rc)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: attribute %s: must be one integer", path,
                      kind, name);
    if (*v < lo || *v >= hi)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: attribute %s = %lld: out of range [%lld, %lld)",
                      path, kind, name, (long long)*v, (long long)lo, (long long)hi);
    return 0;
}

int tokrec_read(hid_t f, const char *path, const char *kind, int bytes, lm_tokrec *rec, char *err, size_t errlen) {
    memset(rec, 0, sizeof *rec);
    rec->bos_id = rec->eos_id = -1;
    if (H5Lexists(f, "tokenizer", H5P_DEFAULT) <= 0) return 0;
    if (H5Lexists(f, "tokenizer/model", H5P_DEFAULT) <= 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s group /tokenizer without its dataset /tokenizer/model (SPEC §4)", path,
                      kind);
    hid_t d = H5Dopen2(f, "tokenizer/model", H5P_DEFAULT), t = -1, s = -1;
    int rc = 0;
    if (d < 0) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s /tokenizer/model: not a dataset, or unreadable", path, kind);
        goto out;
    }
    t = H5Dget_type(d);
    s = H5Dget_space(d);
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 1 || H5Tget_sign(t) != H5T_SGN_NONE) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: must be uint8 (the tokenizer model's bytes)",
                    path, kind);
        goto out;
    }
    hsize_t n = 0;
    if (s < 0 || H5Sget_simple_extent_ndims(s) != 1 || H5Sget_simple_extent_dims(s, &n, NULL) != 1) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: must be 1-D", path, kind);
        goto out;
    }
    if (n < 1 || n > LM_TOKREC_MAX) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: %s dataset /tokenizer/model: %llu bytes, must be 1 .. %zu", path, kind,
                    (unsigned long long)n, LM_TOKREC_MAX);
        goto out;
    }
    rec->len = (size_t)n;
    if ((rc = id_attr(d, path, kind, "bos_id", -1, INT32_MAX, 1, &rec->bos_id, err, errlen)) ||
        (rc = id_attr(d, path, kind, "eos_id", -1, INT32_MAX, 1, &rec->eos_id, err, errlen)) ||
        (rc = id_attr(d, path, kind, "vocab_size", 1, INT32_MAX, 0, &rec->vocab_size, err, errlen)))
        goto out;
    if (bytes) {
        rec->model = lm_alloc(rec->len);
        if (H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, rec->model) < 0) {
            tokrec_free(rec);
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s dataset /tokenizer/model: read failed", path, kind);
        }
    }
out:
    h5_close(s);
    h5_close(t);
    h5_close(d);
    if (rc) tokrec_free(rec);
    return rc;
}

int tokrec_write(hid_t f, const lm_tokrec *rec, int writer, hid_t dxpl) {
    hsize_t n = rec->len;
    /* no object timestamps: the same inputs give the same file bytes */
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    h5_close(gcpl);
    hid_t s = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), ms = -1;
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t d = g < 0 ? -1 : H5Dcreate2(g, "model", H5T_STD_U8LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = d < 0 ? -1 : 0;
    if (!rc) {
        /* the other ranks of a collective write take part with nothing selected */
        ms = H5Screate_simple(1, &n, NULL);
        if (!writer) {
            H5Sselect_none(ms);
            H5Sselect_none(s);
        }
        rc = H5Dwrite(d, H5T_NATIVE_UINT8, ms, s, dxpl, rec->model) < 0 ? -1 : 0;
    }
    if (!rc) rc = h5_write_i64(d, "bos_id", rec->bos_id) | h5_write_i64(d, "eos_id", rec->eos_id);
    if (!rc && rec->vocab_size > 0) rc = h5_write_i64(d, "vocab_size", rec->vocab_size);
    h5_close(ms);
    h5_close(d);
    h5_close(dcpl);
    h5_close(s);
    h5_close(g);
    return rc;
}

int tokrec_equal(const lm_tokrec *a, const lm_tokrec *b) {
    return a->len == b->len && a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
           (a->len == 0 || (a->model && b->model && !memcmp(a->model, b->model, a->len)));
}

void tokrec_free(lm_tokrec *rec) {
    lm_free(rec->model);
    rec->model = NULL;
}
