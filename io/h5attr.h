/* h5attr.h — small HDF5 helpers shared by the file formats in io/: quiet
 * error handling, file access lists, and scalar attributes read and written
 * with type and shape checks.
 * Attribute readers return 0 ok, -1 absent, -2 wrong class or shape,
 * -3 unreadable. */
#ifndef LAMINA_H5ATTR_H
#define LAMINA_H5ATTR_H
#include <hdf5.h>
#include <stdint.h>

/* Automatic HDF5 error printing off for the duration of a public call. */
typedef struct { H5E_auto2_t fn; void *data; } h5_quiet;
void h5_quiet_begin(h5_quiet *q);
/* Restores printing after a success only: HDF5 1.10.8 leaks an internal
 * reference when it fails to load a damaged object header, and reports the
 * leak at library shutdown ("infinite loop closing library") on stderr
 * unless automatic printing is off by then. */
void h5_quiet_end(const h5_quiet *q, int failed);

/* File access list with file locks where the file system has them, and no
 * failure where it does not (parallel file systems often lack flock). */
hid_t h5_fapl(void);
void h5_close(hid_t id);

int h5_attr_open(hid_t obj, const char *name, hid_t *a);
int h5_attr_scalar(hid_t a);
/* Numeric attribute of class cls (for H5T_FLOAT integers are accepted too),
 * one element, read as mtype into v. */
int h5_attr_num(hid_t obj, const char *name, H5T_class_t cls, hid_t mtype, void *v);
/* String attribute, fixed or variable length, one element; malloc'd copy. */
int h5_attr_string(hid_t obj, const char *name, char **out);

/* Scalar attribute writers; 0 ok, -1 on failure. */
int h5_write_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v);
int h5_write_i64(hid_t obj, const char *name, int64_t v);
int h5_write_f64(hid_t obj, const char *name, double v);
int h5_write_str(hid_t obj, const char *name, const char *v);

#endif
