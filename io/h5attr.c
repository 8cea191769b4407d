/* h5attr.c — see h5attr.h. */
#include "h5attr.h"
#include <stdlib.h>
#include <string.h>

void h5_quiet_begin(h5_quiet *q) {
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
/* After a failure, printing stays off: HDF5 1.10.8 leaks an internal
 * reference when it fails to load a damaged object header, and reports the
 * leak at library shutdown ("infinite loop closing library") on stderr unless
 * automatic printing is off by then. */
void h5_quiet_end(const h5_quiet *q, int failed) {
    if (!failed) H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

/* File access list: file locks where the file system has them, no failure
 * where it does not (parallel file systems often run without flock). */
hid_t h5_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 1, 1);
    return fapl;
}

void h5_close(hid_t id) {
    if (id >= 0) H5Idec_ref(id);
}

int h5_write_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, mtype, v) < 0) ? -1 : 0;
    h5_close(a);
    h5_close(s);
    return rc;
}
int h5_write_i64(hid_t obj, const char *name, int64_t v) {
    return h5_write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
int h5_write_f64(hid_t obj, const char *name, double v) {
    return h5_write_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
int h5_write_str(hid_t obj, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    int rc = h5_write_attr(obj, name, t, t, v);
    h5_close(t);
    return rc;
}


int h5_attr_open(hid_t obj, const char *name, hid_t *a) {
    htri_t ex = H5Aexists(obj, name);
    if (ex <= 0) return ex == 0 ? -1 : -3;
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    return *a < 0 ? -3 : 0;
}

int h5_attr_scalar(hid_t a) {
    hid_t s = H5Aget_space(a);
    hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    h5_close(s);
    return np == 1;
}

/* Numeric attribute of class `cls` (H5T_INTEGER or H5T_FLOAT; for
 * H5T_FLOAT integers are accepted too), read as `mtype` into v. */
int h5_attr_num(hid_t obj, const char *name, H5T_class_t cls, hid_t mtype, void *v) {
    hid_t a = -1;
    int rc = h5_attr_open(obj, name, &a);
    if (rc) return rc;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (!(c == cls || (cls == H5T_FLOAT && c == H5T_INTEGER)) || !h5_attr_scalar(a)) rc = -2;
    else if (H5Aread(a, mtype, v) < 0) rc = -3;
    h5_close(t);
    h5_close(a);
    return rc;
}

int h5_attr_string(hid_t obj, const char *name, char **out) {
    hid_t a = -1;
    int rc = h5_attr_open(obj, name, &a);
    if (rc) return rc;
    hid_t t = H5Aget_type(a), mt = -1;
    *out = NULL;
    if (t < 0 || H5Tget_class(t) != H5T_STRING || !h5_attr_scalar(a)) {
        rc = -2;
    } else if (H5Tis_variable_str(t) > 0) {
        char *p = NULL;
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &p) < 0) rc = -3;
        else *out = strdup(p ? p : "");
        if (p) H5free_memory(p);
    } else {
        size_t n = H5Tget_size(t);
        char *buf = calloc(n + 1, 1);
        if (!buf || H5Aread(a, t, buf) < 0) {
            free(buf);
            rc = -3;
        } else {
            if (H5Tget_strpad(t) == H5T_STR_SPACEPAD)
                for (size_t k = strlen(buf); k > 0 && buf[k - 1] == ' '; k--) buf[k - 1] = 0;
            *out = buf;
        }
    }
    if (rc == 0 && !*out) rc = -3;
    h5_close(mt);
    h5_close(t);
    h5_close(a);
    return rc;
}
