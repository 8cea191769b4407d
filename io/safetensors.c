/* safetensors.c — see safetensors.h: header parsing and validation,
 * streamed reads with conversion to float32, and the streaming writer. */
#include "safetensors.h"
#include "bf16.h"
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ---- */

/* Every dtype name the format defines, with its element size; only the
 * first three are read and written by lamina. */
static const struct { const char *name; int size; st_dtype d; } DTYPES[] = {
    {"F32", 4, ST_F32},  {"BF16", 2, ST_BF16}, {"F16", 2, ST_F16},   {"F64", 8, ST_OTHER}, {"I64", 8, ST_OTHER},
    {"U64", 8, ST_OTHER}, {"I32", 4, ST_OTHER}, {"U32", 4, ST_OTHER}, {"I16", 2, ST_OTHER}, {"U16", 2, ST_OTHER},
    {"I8", 1, ST_OTHER},  {"U8", 1, ST_OTHER},  {"BOOL", 1, ST_OTHER}, {"F8_E4M3", 1, ST_OTHER},
    {"F8_E5M2", 1, ST_OTHER},
};

int st_dtype_size(st_dtype d) { return d == ST_F32 ? 4 : d == ST_OTHER ? 0 : 2; }
const char *st_dtype_str(st_dtype d) { return d == ST_F32 ? "F32" : d == ST_BF16 ? "BF16" : d == ST_F16 ? "F16" : "?"; }

/* IEEE binary16 -> binary32, exact: normals rebias the exponent (15 -> 127)
 * and widen the mantissa; subnormals are man x 2^-24 (exact in float);
 * exponent 31 is inf (man 0) or NaN (payload kept, shifted up). */
float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    float f;
    if (e == 0) {
        f = (float)man * (1.0f / 16777216.0f); /* man x 2^-24 */
        return sign ? -f : f;
    }
    if (e == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((e - 15 + 127) << 23) | (man << 13);
    memcpy(&f, &u, sizeof f);
    return f;
}

/* binary32 -> binary16, round to nearest, ties to even. |x| >= 65520 (half
 * way between the largest half, 65504, and 2^16; the tie goes to the even
 * neighbour, which is 2^16) becomes inf; below 2^-14 the value is
 * rounded to a multiple of 2^-24 (a subnormal; the integer rounding can
 * carry into the smallest normal, whose encoding follows on); NaN stays a
 * quiet NaN with the top payload bits. */
uint16_t st_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    uint32_t e = a >> 23;
    if (a < 0x38800000u) { /* below 2^-14: value = m x 2^(e-150) -> q = round(m x 2^(e-126)) */
        if (e == 0) return sign;
        uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
        if (shift > 24) return sign;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((e - 112) << 10) | ((a >> 13) & 0x3ffu), rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

/* ---- reader ---- */

static int fail(char *err, size_t errlen, const char *path, const char *name, const char *fmt, const char *detail) {
    if (name) return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: %s%s", path, name, fmt, detail ? detail : "");
    return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s%s", path, fmt, detail ? detail : "");
}

/* Read exactly len bytes at off; 0 or -1 (errno, or EIO for a short file). */
static int pread_all(int fd, void *buf, size_t len, uint64_t off) {
    char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        p += r, len -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

/* A non-negative JSON integer into *v; 0, or -1. */
static int json_u64(json_t *j, uint64_t *v) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

/* One tensor entry of the header into t (name already set). */
static int parse_entry(const char *path, const char *name, json_t *o, st_tensor *t, char *err, size_t errlen) {
    char buf[64];
    if (!json_is_object(o)) return fail(err, errlen, path, name, "header entry is not an object", NULL);
    json_t *dt = json_object_get(o, "dtype"), *sh = json_object_get(o, "shape"), *of = json_object_get(o, "data_offsets");
    if (!json_is_string(dt)) return fail(err, errlen, path, name, "\"dtype\" missing or not a string", NULL);
    const char *ds = json_string_value(dt);
    t->elem_size = 0;
    for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
        if (!strcmp(ds, DTYPES[i].name)) {
            t->dtype = DTYPES[i].d;
            t->elem_size = DTYPES[i].size;
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", DTYPES[i].name);
        }
    if (!t->elem_size) {
        snprintf(buf, sizeof buf, "%.40s", ds);
        return fail(err, errlen, path, name, "unknown dtype ", buf);
    }
    if (!json_is_array(sh) || json_array_size(sh) > ST_MAX_DIMS)
        return fail(err, errlen, path, name, "\"shape\" missing, not an array, or more than 8 dimensions", NULL);
    t->ndim = (int)json_array_size(sh);
    uint64_t numel = 1, bytes;
    for (int k = 0; k < t->ndim; k++) {
        uint64_t d;
        if (json_u64(json_array_get(sh, (size_t)k), &d) || d > (uint64_t)INT64_MAX)
            return fail(err, errlen, path, name, "\"shape\" holds a value that is not a non-negative integer", NULL);
        t->shape[k] = (int64_t)d;
        if (__builtin_mul_overflow(numel, d, &numel) || numel > (uint64_t)INT64_MAX)
            return fail(err, errlen, path, name, "shape product overflows", NULL);
    }
    t->numel = (int64_t)numel;
    if (!json_is_array(of) || json_array_size(of) != 2 || json_u64(json_array_get(of, 0), &t->begin) ||
        json_u64(json_array_get(of, 1), &t->end))
        return fail(err, errlen, path, name, "\"data_offsets\" must be two non-negative integers", NULL);
    if (t->begin > t->end) return fail(err, errlen, path, name, "data_offsets begin > end", NULL);
    if (__builtin_mul_overflow(numel, (uint64_t)t->elem_size, &bytes) || bytes != t->end - t->begin) {
        snprintf(buf, sizeof buf, " (%llu bytes for %s)", (unsigned long long)(t->end - t->begin), t->dtype_name);
        return fail(err, errlen, path, name, "shape x dtype size does not match data_offsets", buf);
    }
    return 0;
}

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Tensors within the data section (END beyond it: truncated file or bad
 * offsets) and pairwise disjoint (sorted by BEGIN, each starts at or after
 * the previous END; empty tensors overlap nothing). */
static int check_ranges(st_file *f, char *err, size_t errlen) {
    char buf[400];
    for (int i = 0; i < f->n; i++)
        if (f->t[i].end > f->data_size) {
            snprintf(buf, sizeof buf, "data_offsets [%llu, %llu] end beyond the %llu-byte data section (file truncated?)",
                     (unsigned long long)f->t[i].begin, (unsigned long long)f->t[i].end, (unsigned long long)f->data_size);
            return fail(err, errlen, f->path, f->t[i].name, buf, NULL);
        }
    if (f->n < 2) return 0;
    const st_tensor **s = lm_alloc(sizeof *s * (size_t)f->n);
    for (int i = 0; i < f->n; i++) s[i] = &f->t[i];
    qsort(s, (size_t)f->n, sizeof *s, by_begin);
    int rc = 0;
    const st_tensor *prev = NULL;
    for (int i = 0; i < f->n && !rc; i++) {
        if (s[i]->begin == s[i]->end) continue;
        if (prev && s[i]->begin < prev->end) {
            snprintf(buf, sizeof buf, "data_offsets [%llu, %llu] overlap those of tensor %.200s", (unsigned long long)s[i]->begin,
                     (unsigned long long)s[i]->end, prev->name);
            rc = fail(err, errlen, f->path, s[i]->name, buf, NULL);
        }
        prev = s[i];
    }
    lm_free(s);
    return rc;
}

/* The header: parse, then every entry and "__metadata__" (an object of
 * strings). */
static int parse_header(st_file *f, const char *hdr, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &je);
    char buf[300];
    if (!root) {
        snprintf(buf, sizeof buf, "%.200s (header byte %d)", je.text, je.position);
        return fail(err, errlen, f->path, NULL, "header is not valid JSON: ", buf);
    }
    int rc = 0;
    if (!json_is_object(root)) rc = fail(err, errlen, f->path, NULL, "header is not a JSON object", NULL);
    size_t cap = rc ? 0 : json_object_size(root);
    f->t = lm_calloc(cap ? cap : 1, sizeof *f->t);
    const char *key;
    json_t *val;
    if (!rc) json_object_foreach(root, key, val) {
            if (!strcmp(key, "__metadata__")) {
                const char *mk;
                json_t *mv;
                if (!json_is_object(val)) rc = fail(err, errlen, f->path, NULL, "\"__metadata__\" is not an object", NULL);
                else json_object_foreach(val, mk, mv) if (!rc && !json_is_string(mv)) {
                        snprintf(buf, sizeof buf, "%.200s is not a string", mk);
                        rc = fail(err, errlen, f->path, NULL, "\"__metadata__\" value ", buf);
                    }
                if (rc) break;
                continue;
            }
            st_tensor *t = &f->t[f->n++];
            t->name = lm_strdup(key);
            if ((rc = parse_entry(f->path, key, val, t, err, errlen))) break;
        }
    json_decref(root);
    return rc ? rc : check_ranges(f, err, errlen);
}

int st_open(st_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = lm_strdup(path);
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
        st_close(f);
        return rc;
    }
    f->fd = fd;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        st_close(f);
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: not a regular file", path);
    }
    f->file_size = (uint64_t)st.st_size;
    unsigned char lb[8];
    if (f->file_size < 8 || pread_all(fd, lb, 8, 0)) {
        st_close(f);
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: shorter than the 8-byte header length (truncated)", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lb[i];
    if (n > ST_MAX_HEADER || n > f->file_size - 8) {
        st_close(f);
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: header length %llu is beyond the file's %llu bytes or above %llu (truncated "
                      "or not a safetensors file)", path, (unsigned long long)n, (unsigned long long)f->file_size,
                      (unsigned long long)ST_MAX_HEADER);
    }
    char *hdr = lm_alloc((size_t)n + 1);
    int rc = 0;
    if (pread_all(fd, hdr, (size_t)n, 8)) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read the header (%s)", path, strerror(errno));
    f->data_start = 8 + n;
    f->data_size = f->file_size - f->data_start;
    if (!rc) rc = parse_header(f, hdr, (size_t)n, err, errlen);
    lm_free(hdr);
    if (rc) st_close(f);
    return rc;
}

void st_close(st_file *f) {
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) lm_free(f->t[i].name);
    lm_free(f->t);
    lm_free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

/* Little-endian element loads, whatever the host order. */
static inline uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

int st_read_elems(const st_file *f, const st_tensor *t, int64_t e0, int64_t n, float *out, char *err, size_t errlen) {
    if (t->dtype == ST_OTHER)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: dtype %s; lamina reads F32, BF16 and F16", f->path, t->name,
                      t->dtype_name);
    if (e0 < 0 || n < 0 || e0 > t->numel - n)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: elements [%lld, %lld) outside its %lld", f->path, t->name,
                      (long long)e0, (long long)(e0 + n), (long long)t->numel);
    enum { BUF = 65536 };
    unsigned char buf[BUF];
    int es = t->elem_size;
    int64_t per = BUF / es, done = 0;
    while (done < n) {
        int64_t k = n - done < per ? n - done : per;
        uint64_t off = f->data_start + t->begin + (uint64_t)(e0 + done) * (uint64_t)es;
        if (pread_all(f->fd, buf, (size_t)(k * es), off))
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: read failed (%s; file truncated?)", f->path, t->name,
                          strerror(errno));
        float *o = out + done;
        if (t->dtype == ST_F32)
            for (int64_t i = 0; i < k; i++) {
                uint32_t u = le32(buf + 4 * i);
                memcpy(&o[i], &u, 4);
            }
        else if (t->dtype == ST_BF16)
            for (int64_t i = 0; i < k; i++) o[i] = lm_bf16_to_f32(le16(buf + 2 * i));
        else
            for (int64_t i = 0; i < k; i++) o[i] = st_f16_to_f32(le16(buf + 2 * i));
        done += k;
    }
    return 0;
}

/* ---- writer ---- */

struct st_writer {
    char *path, *tmp;
    int fd;
    st_spec *specs;
    int n, cur;           /* tensor being written */
    int64_t cur_done;     /* its elements written */
    unsigned char *buf;   /* conversion buffer */
    size_t fill;
};

enum { WBUF = 1 << 20 };

uint64_t st_specs_bytes(const st_spec *specs, int n) {
    uint64_t b = 0;
    for (int i = 0; i < n; i++) {
        uint64_t e = 1;
        for (int k = 0; k < specs[i].ndim; k++) e *= (uint64_t)specs[i].shape[k];
        b += e * (uint64_t)st_dtype_size(specs[i].dtype);
    }
    return b;
}

static int64_t spec_numel(const st_spec *s) {
    int64_t e = 1;
    for (int k = 0; k < s->ndim; k++) e *= s->shape[k];
    return e;
}

static int write_all(int fd, const void *p, size_t len) {
    const char *c = p;
    while (len) {
        ssize_t r = write(fd, c, len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        c += r, len -= (size_t)r;
    }
    return 0;
}

/* The header JSON: "__metadata__" first (when given), then the tensors in
 * order with consecutive offsets; compact, as HF writes it. Returns a
 * malloc'd string (json_dumps). */
static char *make_header(const st_spec *specs, int n, const char *const *meta, int nmeta) {
    json_t *root = json_object();
    if (nmeta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < nmeta; i++) json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *sh = json_array(), *of = json_array();
        json_object_set_new(e, "dtype", json_string(st_dtype_str(specs[i].dtype)));
        for (int k = 0; k < specs[i].ndim; k++) json_array_append_new(sh, json_integer(specs[i].shape[k]));
        json_object_set_new(e, "shape", sh);
        uint64_t b = (uint64_t)spec_numel(&specs[i]) * (uint64_t)st_dtype_size(specs[i].dtype);
        json_array_append_new(of, json_integer((json_int_t)off));
        json_array_append_new(of, json_integer((json_int_t)(off + b)));
        off += b;
        json_object_set_new(e, "data_offsets", of);
        json_object_set_new(root, specs[i].name, e);
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return s;
}

static void writer_free(st_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    lm_free(w->path);
    lm_free(w->tmp);
    lm_free(w->specs);
    lm_free(w->buf);
    lm_free(w);
}

void st_writer_abort(st_writer *w) {
    if (!w) return;
    unlink(w->tmp);
    writer_free(w);
}

int st_writer_open(st_writer **wp, const char *path, const st_spec *specs, int n, const char *const *meta, int nmeta,
                   char *err, size_t errlen) {
    *wp = NULL;
    for (int i = 0; i < n; i++) {
        if (specs[i].dtype == ST_OTHER || specs[i].ndim < 0 || specs[i].ndim > ST_MAX_DIMS)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: bad dtype or rank", path, specs[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(specs[i].name, specs[j].name))
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s given twice", path, specs[i].name);
    }
    st_writer *w = lm_calloc(1, sizeof *w);
    w->fd = -1;
    w->path = lm_strdup(path);
    size_t pl = strlen(path) + 5;
    w->tmp = lm_alloc(pl);
    snprintf(w->tmp, pl, "%s.tmp", path);
    w->specs = lm_calloc((size_t)(n ? n : 1), sizeof *specs);
    if (n) memcpy(w->specs, specs, sizeof *specs * (size_t)n);
    w->n = n;
    w->buf = lm_alloc(WBUF);
    char *h = make_header(specs, n, meta, nmeta);
    if (!h) {
        writer_free(w);
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot build the header", path);
    }
    /* pad with spaces so that 8 + N is a multiple of 8 (HF aligns the data) */
    size_t hl = strlen(h), pad = (8 - hl % 8) % 8, N = hl + pad;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (w->fd < 0) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create (%s)", w->tmp, strerror(errno));
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(((uint64_t)N >> (8 * i)) & 0xff);
    if (!rc && (write_all(w->fd, lb, 8) || write_all(w->fd, h, hl) || write_all(w->fd, "        ", pad)))
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: write failed (%s)", w->tmp, strerror(errno));
    free(h);
    if (rc) {
        st_writer_abort(w);
        return rc;
    }
    while (w->cur < w->n && spec_numel(&w->specs[w->cur]) == 0) w->cur++;
    *wp = w;
    return 0;
}

static int flush_buf(st_writer *w, char *err, size_t errlen) {
    if (w->fill && write_all(w->fd, w->buf, w->fill))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: write failed (%s)", w->tmp, strerror(errno));
    w->fill = 0;
    return 0;
}

int st_writer_put(st_writer *w, const float *data, int64_t count, char *err, size_t errlen) {
    while (count > 0) {
        if (w->cur >= w->n) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: more data than the header declares", w->tmp);
        const st_spec *s = &w->specs[w->cur];
        int es = st_dtype_size(s->dtype);
        int64_t left = spec_numel(s) - w->cur_done, room = (int64_t)((WBUF - w->fill) / (size_t)es);
        int64_t k = count < left ? count : left;
        if (k > room) k = room;
        if (k == 0) {
            if (flush_buf(w, err, errlen)) return LM_ERR_RUNTIME;
            continue;
        }
        unsigned char *o = w->buf + w->fill;
        for (int64_t i = 0; i < k; i++) {
            uint32_t u;
            if (s->dtype == ST_F32) memcpy(&u, &data[i], 4);
            else u = s->dtype == ST_BF16 ? lm_f32_to_bf16(data[i]) : st_f32_to_f16(data[i]);
            for (int b = 0; b < es; b++) o[es * i + b] = (unsigned char)(u >> (8 * b));
        }
        w->fill += (size_t)(k * es);
        data += k, count -= k, w->cur_done += k;
        if (w->cur_done == spec_numel(s)) {
            w->cur++;
            w->cur_done = 0;
            while (w->cur < w->n && spec_numel(&w->specs[w->cur]) == 0) w->cur++;
        }
    }
    return 0;
}

int st_writer_finish(st_writer *w, char *err, size_t errlen) {
    int rc = 0;
    if (w->cur < w->n)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: tensor %s: only %lld of its elements written", w->tmp,
                    w->specs[w->cur].name, (long long)w->cur_done);
    if (!rc) rc = flush_buf(w, err, errlen);
    if (!rc && fsync(w->fd)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync failed (%s)", w->tmp, strerror(errno));
    if (!rc && close(w->fd)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: close failed (%s)", w->tmp, strerror(errno));
    if (!rc) w->fd = -1;
    if (!rc && rename(w->tmp, w->path))
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: rename to %s failed (%s)", w->tmp, w->path, strerror(errno));
    if (rc) st_writer_abort(w);
    else writer_free(w);
    return rc;
}
