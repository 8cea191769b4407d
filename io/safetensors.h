/* safetensors.h — reading and writing safetensors files (the format of
 * Hugging Face weights), our own implementation.
 *
 * Layout: 8 bytes, little-endian uint64 N; N bytes of JSON header, an
 * object {NAME: {"dtype": D, "shape": [..], "data_offsets": [BEGIN, END]},
 * "__metadata__": {string: string}}; then the data section, in which tensor
 * NAME occupies bytes [BEGIN, END) (offsets relative to the section's
 * start), row-major, little-endian.
 *
 * Reading validates everything before any tensor is read, each failure an
 * input error (LM_ERR_INPUT, exit 2) naming the file and the tensor or
 * field: N beyond the file or above 100 MB (HF's own limit), a header that
 * is not a JSON object (duplicate keys included), a tensor entry without a
 * string dtype / an array shape of non-negative integers / two offsets, an
 * unknown dtype name, shape product x dtype size != END - BEGIN (overflow
 * checked), BEGIN > END, END beyond the data section (a truncated file), two
 * tensors whose byte ranges overlap. Known non-float dtypes (I32, F64, ...)
 * parse, with supported = 0: reading one is an error naming it.
 * Reading data is streamed: st_read_elems converts a range of elements to
 * float32 through a fixed 64 KiB buffer with pread, never the whole file.
 *
 * Writing: st_writer streams tensors in the order given, converting
 * float32 input to F32, BF16 (round to nearest even, NaN stays NaN) or F16
 * (round to nearest even, overflow to inf, subnormals rounded, NaN stays
 * NaN). The header is padded with spaces so the data starts at a multiple
 * of 8, as HF's writer does. The file is written as PATH.tmp, fsynced and
 * renamed to PATH by st_writer_finish; st_writer_abort removes the .tmp. */
#ifndef LAMINA_SAFETENSORS_H
#define LAMINA_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32 = 0, ST_BF16, ST_F16, ST_OTHER } st_dtype;

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ULL

typedef struct {
    char *name;
    st_dtype dtype;
    char dtype_name[8]; /* as in the file: "F32", "I32", ... */
    int elem_size;      /* bytes per element */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range in the data section */
} st_tensor;

typedef struct {
    char *path;
    int fd;
    uint64_t file_size, data_start, data_size;
    int n;
    st_tensor *t; /* in header order */
} st_file;

/* Open and validate path (rules above). Returns 0, or LM_ERR_INPUT with
 * err naming the file (and tensor); nothing stays open on failure. */
int st_open(st_file *f, const char *path, char *err, size_t errlen);
void st_close(st_file *f);

/* The tensor called name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);

/* Elements [e0, e0+n) of tensor t (row-major), converted to float32 into
 * out (n floats). A row range [r0, r1) of a 2-D tensor [R, C] is
 * e0 = r0*C, n = (r1-r0)*C. Returns 0, or LM_ERR_INPUT (unsupported dtype,
 * range outside the tensor, short read) with err naming file and tensor. */
int st_read_elems(const st_file *f, const st_tensor *t, int64_t e0, int64_t n, float *out, char *err, size_t errlen);

/* Scalar conversions (exact widening; narrowing as described above). */
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

/* Bytes per element of the three writable dtypes; their names. */
int st_dtype_size(st_dtype d);
const char *st_dtype_str(st_dtype d);

/* ---- writer ---- */
typedef struct {
    const char *name;
    st_dtype dtype; /* ST_F32, ST_BF16 or ST_F16 */
    int ndim;       /* 1..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
} st_spec;

typedef struct st_writer st_writer;

/* Create PATH.tmp and write the header for n tensors in this order; meta
 * is NULL or nmeta key/value string pairs for "__metadata__" (e.g.
 * {"format", "pt"}). Returns 0 with *w, or LM_ERR_RUNTIME (I/O) /
 * LM_ERR_INPUT (bad spec) with err. */
int st_writer_open(st_writer **w, const char *path, const st_spec *specs, int n, const char *const *meta, int nmeta,
                   char *err, size_t errlen);
/* Append the next count elements (float32) of the tensors, in order: a
 * call may end inside a tensor or span several. 0 or LM_ERR_RUNTIME. */
int st_writer_put(st_writer *w, const float *data, int64_t count, char *err, size_t errlen);
/* All elements written? fsync, close, rename PATH.tmp to PATH. On failure
 * the .tmp is removed. Frees w in every case. */
int st_writer_finish(st_writer *w, char *err, size_t errlen);
/* Remove PATH.tmp and free w (NULL is fine). */
void st_writer_abort(st_writer *w);
/* Bytes of the data section the specs take (sum of numel x dtype size). */
uint64_t st_specs_bytes(const st_spec *specs, int n);

#endif
