/* tokfile_opt.c — the optional datasets of a token file (SPEC §4, §9):
 * validated at open, then read through the accessors of tokfile.h.
 *
 *   /buckets/offsets   sample ranges of the buckets: 0 first, non-decreasing,
 *                      n_samples last
 *   /samples/category  a category index per sample, in [0, n_categories);
 *                      only with the root attribute `categories` (and it
 *                      only with the dataset)
 *   /samples/bytes     UTF-8 bytes per sample, >= 0
 *   /loss_mask         0/1 per token (values checked as samples are read,
 *                      like token ids: it is as long as /tokens)
 *   /docs/hash, /docs/minhash and the minhash_* root attributes
 *
 * Every inconsistency is LM_ERR_INPUT naming the file and the dataset or
 * attribute. The per-sample arrays are small next to /tokens (12 bytes a
 * sample against hundreds of tokens), so they are loaded at open. */
#include "tokfile_int.h"
#include "h5attr.h"
#include "common.h"
#include <stdlib.h>
#include <string.h>

/* At most this many categories, each name 1 .. 1024 bytes. */
enum { MAX_CATEGORIES = 65536, MAX_CATEGORY_NAME = 1024 };

/* Does path exist in the file? 1 yes, 0 no, -1 unreadable (damaged). A
 * missing parent group is "no". */
static int exists(hid_t f, const char *grp, const char *path) {
    htri_t e = H5Lexists(f, grp, H5P_DEFAULT);
    if (e <= 0 || !path) return e < 0 ? -1 : (int)e;
    e = H5Lexists(f, path, H5P_DEFAULT);
    return e < 0 ? -1 : (int)e;
}

static int missing_or_damaged(const tokfile *f, const char *dpath, int e, char *err, size_t errlen) {
    return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %s", f->path, dpath, e < 0 ? "unreadable (damaged file)" : "missing");
}

/* A whole 1-D integer dataset of n elements, read as int64 (values
 * converted by HDF5; lengths checked by the caller). */
static int64_t *read_i64(const tokfile *f, hid_t d, int64_t n, const char *dpath, char *err, size_t errlen) {
    int64_t *v = lm_alloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (n > 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        lm_free(v);
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: unreadable", f->path, dpath);
        return NULL;
    }
    return v;
}

/* Opens dpath (1-D integer) and checks its length against want; returns the
 * values as int64, or NULL with err. */
static int64_t *load_1d(const tokfile *f, const char *dpath, int64_t want, const char *want_name, int64_t *n_out,
                        char *err, size_t errlen) {
    hid_t d = -1, t = -1;
    int64_t n = tokfile_open_int_1d(f->file, f->path, dpath, &d, &t, err, errlen);
    int64_t *v = NULL;
    if (n >= 0 && want >= 0 && n != want)
        lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %lld entries, must be %s = %lld", f->path, dpath, (long long)n, want_name,
               (long long)want);
    else if (n >= 0)
        v = read_i64(f, d, n, dpath, err, errlen);
    h5_close(t);
    h5_close(d);
    if (v && n_out) *n_out = n;
    return v;
}

/* ---- categories: a 1-D string attribute (fixed or variable length), or
 * one string with the names joined by "\n" ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_name(tokfile *f, const char *s, size_t len, char *err, size_t errlen) {
    if (len == 0 || len > MAX_CATEGORY_NAME)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: name %d is %zu bytes, must be 1 .. %d", f->path,
                      f->n_cat, len, MAX_CATEGORY_NAME);
    if (memchr(s, '\n', len))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: name %d holds a newline", f->path, f->n_cat);
    if (f->n_cat >= MAX_CATEGORIES)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: more than %d names", f->path, MAX_CATEGORIES);
    char *c = lm_alloc(len + 1);
    memcpy(c, s, len);
    c[len] = 0;
    f->cat = lm_realloc(f->cat, sizeof(char *) * (size_t)(f->n_cat + 1));
    f->cat[f->n_cat++] = c;
    return 0;
}

static int read_categories(tokfile *f, char *err, size_t errlen) {
    hid_t a = -1;
    int rc = h5_attr_open(f->file, "categories", &a);
    if (rc == -1) return 0;
    if (rc) return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: unreadable", f->path);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a), mt = -1;
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t n = 1;
    if (nd == 1) H5Sget_simple_extent_dims(s, &n, NULL);
    if (t < 0 || H5Tget_class(t) != H5T_STRING || (nd != 0 && nd != 1)) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: must be a string or a 1-D array of strings", f->path);
    } else if (n < 1 || n > MAX_CATEGORIES) {
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: %llu names, must be 1 .. %d", f->path,
                    (unsigned long long)n, MAX_CATEGORIES);
    } else if (nd == 0) {
        /* one string, names joined by "\n" (one trailing newline allowed) */
        char *joined = NULL;
        rc = h5_attr_string(f->file, "categories", &joined);
        if (rc) {
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: unreadable", f->path);
        } else {
            size_t len = strlen(joined);
            if (len && joined[len - 1] == '\n') joined[--len] = 0;
            for (char *p = joined; !rc;) {
                char *nl = strchr(p, '\n');
                size_t l = nl ? (size_t)(nl - p) : strlen(p);
                rc = add_name(f, p, l, err, errlen);
                if (!nl) break;
                p = nl + 1;
            }
        }
        free(joined);
    } else if (H5Tis_variable_str(t) > 0) {
        char **v = lm_calloc((size_t)n, sizeof(char *));
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, v) < 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: unreadable", f->path);
        for (hsize_t k = 0; k < n && !rc; k++) rc = add_name(f, v[k] ? v[k] : "", v[k] ? strlen(v[k]) : 0, err, errlen);
        for (hsize_t k = 0; k < n; k++)
            if (v[k]) H5free_memory(v[k]);
        lm_free(v);
    } else {
        size_t sz = H5Tget_size(t);
        char *buf = lm_calloc((size_t)n * sz + 1, 1);
        if (H5Aread(a, t, buf) < 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: unreadable", f->path);
        for (hsize_t k = 0; k < n && !rc; k++) {
            const char *p = buf + k * sz;
            size_t l = strnlen(p, sz);
            if (H5Tget_strpad(t) == H5T_STR_SPACEPAD)
                while (l && p[l - 1] == ' ') l--;
            rc = add_name(f, p, l, err, errlen);
        }
        lm_free(buf);
    }
    h5_close(mt);
    h5_close(s);
    h5_close(t);
    h5_close(a);
    if (rc) return rc;
    /* names are unique: the loader unites the files' categories by name */
    char **sorted = lm_alloc(sizeof(char *) * (size_t)f->n_cat);
    memcpy(sorted, f->cat, sizeof(char *) * (size_t)f->n_cat);
    qsort(sorted, (size_t)f->n_cat, sizeof(char *), cmp_str);
    for (int k = 1; k < f->n_cat && !rc; k++)
        if (!strcmp(sorted[k - 1], sorted[k]))
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: the name \"%.64s\" appears twice", f->path,
                        sorted[k]);
    lm_free(sorted);
    return rc;
}

/* ---- per-sample arrays and buckets ---- */

static int open_samples(tokfile *f, char *err, size_t errlen) {
    int e = exists(f->file, "samples", "samples/category");
    if (e < 0) return missing_or_damaged(f, "/samples/category", e, err, errlen);
    if (e && f->n_cat == 0)
        return lm_err(err, errlen, LM_ERR_INPUT,
                      "%s: /samples/category: present without the root attribute categories (the names of the indices)",
                      f->path);
    if (!e && f->n_cat > 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute categories: present without /samples/category", f->path);
    if (e) {
        int64_t *v = load_1d(f, "/samples/category", f->n_samples, "n_samples", NULL, err, errlen);
        if (!v) return LM_ERR_INPUT;
        f->category = lm_alloc(sizeof(int32_t) * (size_t)f->n_samples);
        for (int64_t i = 0; i < f->n_samples; i++) {
            if (v[i] < 0 || v[i] >= f->n_cat) {
                int64_t bad = v[i];
                lm_free(v);
                return lm_err(err, errlen, LM_ERR_INPUT,
                              "%s: /samples/category: sample %lld has category %lld, outside [0, %d) (the names in "
                              "attribute categories)",
                              f->path, (long long)i, (long long)bad, f->n_cat);
            }
            f->category[i] = (int32_t)v[i];
        }
        lm_free(v);
    }
    e = exists(f->file, "samples", "samples/bytes");
    if (e < 0) return missing_or_damaged(f, "/samples/bytes", e, err, errlen);
    if (e) {
        f->bytes = load_1d(f, "/samples/bytes", f->n_samples, "n_samples", NULL, err, errlen);
        if (!f->bytes) return LM_ERR_INPUT;
        for (int64_t i = 0; i < f->n_samples; i++)
            if (f->bytes[i] < 0)
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: /samples/bytes: sample %lld has %lld bytes, must be >= 0",
                              f->path, (long long)i, (long long)f->bytes[i]);
    }
    return 0;
}

static int open_buckets(tokfile *f, char *err, size_t errlen) {
    int e = exists(f->file, "buckets", NULL);
    if (e == 0) return 0;
    e = e < 0 ? e : exists(f->file, "buckets", "buckets/offsets");
    if (e <= 0) return missing_or_damaged(f, "/buckets/offsets", e, err, errlen);
    int64_t n = 0;
    f->bucket_off = load_1d(f, "/buckets/offsets", -1, NULL, &n, err, errlen);
    if (!f->bucket_off) return LM_ERR_INPUT;
    const char *bp = "/buckets/offsets";
    if (n < 2)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %lld entries, need n_buckets+1 >= 2", f->path, bp, (long long)n);
    if (f->bucket_off[0] != 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: offsets[0] = %lld, must be 0", f->path, bp,
                      (long long)f->bucket_off[0]);
    for (int64_t i = 1; i < n; i++)
        if (f->bucket_off[i] < f->bucket_off[i - 1])
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: not non-decreasing at index %lld (%lld after %lld)", f->path, bp,
                          (long long)i, (long long)f->bucket_off[i], (long long)f->bucket_off[i - 1]);
    if (f->bucket_off[n - 1] != f->n_samples)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: last offset %lld != n_samples %lld", f->path, bp,
                      (long long)f->bucket_off[n - 1], (long long)f->n_samples);
    f->n_buckets = n - 1;
    return 0;
}

static int open_mask(tokfile *f, char *err, size_t errlen) {
    int e = exists(f->file, "loss_mask", NULL);
    if (e < 0) return missing_or_damaged(f, "/loss_mask", e, err, errlen);
    if (!e) return 0;
    hid_t t = -1;
    int64_t n = tokfile_open_int_1d(f->file, f->path, "/loss_mask", &f->mask, &t, err, errlen);
    if (n >= 0) {
        f->mask_esz = H5Tget_size(t);
        f->mask_u8 = f->mask_esz == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
    }
    h5_close(t);
    if (n < 0) return LM_ERR_INPUT;
    if (n != f->n_tokens)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /loss_mask: %lld entries, must be n_tokens = %lld (the length of /tokens)",
                      f->path, (long long)n, (long long)f->n_tokens);
    f->mask_addr = n > 0 ? H5Dget_offset(f->mask) : HADDR_UNDEF;
    if (f->mask_addr != HADDR_UNDEF && (double)f->mask_addr + (double)n * (double)f->mask_esz > (double)f->size)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /loss_mask: its %lld entries run past the end of the file (%lld bytes): "
                      "truncated", f->path, (long long)n, (long long)f->size);
    f->mspace = H5Dget_space(f->mask);
    if (f->mspace < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: /loss_mask: unreadable dataspace", f->path);
    return 0;
}

/* ---- dedup keys ---- */

static const char *const MH_ATTR[5] = {"minhash_perm", "minhash_bands", "minhash_ngram", "minhash_words", "minhash_seed"};

static int open_docs(tokfile *f, char *err, size_t errlen) {
    int any_attr = 0;
    for (int k = 0; k < 5; k++) any_attr |= H5Aexists(f->file, MH_ATTR[k]) > 0;
    int e = exists(f->file, "docs", NULL);
    if (e < 0) return missing_or_damaged(f, "/docs/hash", e, err, errlen);
    if (!e) {
        if (any_attr)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_*: present without /docs/minhash", f->path);
        return 0;
    }
    e = exists(f->file, "docs", "docs/hash");
    if (e <= 0) return missing_or_damaged(f, "/docs/hash", e, err, errlen);
    hid_t t = -1;
    f->n_docs = tokfile_open_int_1d(f->file, f->path, "/docs/hash", &f->dhash, &t, err, errlen);
    size_t esz = f->n_docs >= 0 ? H5Tget_size(t) : 0;
    h5_close(t);
    if (f->n_docs < 0) return LM_ERR_INPUT;
    if (esz != 8) return lm_err(err, errlen, LM_ERR_INPUT, "%s: /docs/hash: must be 64-bit integers (has %zu bytes)", f->path, esz);

    e = exists(f->file, "docs", "docs/minhash");
    if (e < 0) return missing_or_damaged(f, "/docs/minhash", e, err, errlen);
    if (!e) {
        if (any_attr)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_*: present without /docs/minhash", f->path);
        return 0;
    }
    const char *mp = "/docs/minhash";
    f->dmin = H5Dopen2(f->file, mp, H5P_DEFAULT);
    if (f->dmin < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: not a dataset, or its header is damaged", f->path, mp);
    hid_t s = H5Dget_space(f->dmin);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[2] = {0, 0};
    if (nd == 2) H5Sget_simple_extent_dims(s, dims, NULL);
    h5_close(s);
    if (nd != 2) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: must be 2-D [n_docs, perm] (has %d dimensions)", f->path, mp, nd);
    t = H5Dget_type(f->dmin);
    int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 4;
    h5_close(t);
    if (!ok) return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: must be 32-bit integers", f->path, mp);
    if ((int64_t)dims[0] != f->n_docs)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %llu rows, must be n_docs = %lld (the length of /docs/hash)", f->path,
                      mp, (unsigned long long)dims[0], (long long)f->n_docs);
    /* an element count the file cannot hold is damage, not a size to allocate */
    hid_t dcpl = H5Dget_create_plist(f->dmin);
    int nfilt = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    h5_close(dcpl);
    if ((double)dims[0] * (double)dims[1] * 4.0 > (double)f->size * (nfilt > 0 ? 1000.0 : 1.0) + 4096.0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: %s: %llu x %llu elements do not fit in the file", f->path, mp,
                      (unsigned long long)dims[0], (unsigned long long)dims[1]);
    int64_t v[4];
    for (int k = 0; k < 4; k++) {
        int rc = h5_attr_num(f->file, MH_ATTR[k], H5T_INTEGER, H5T_NATIVE_INT64, &v[k]);
        if (rc)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute %s: %s (required with %s)", f->path, MH_ATTR[k],
                          rc == -1 ? "missing" : rc == -2 ? "must be one integer" : "unreadable", mp);
    }
    int rc = h5_attr_num(f->file, MH_ATTR[4], H5T_INTEGER, H5T_NATIVE_UINT64, &f->mh_seed);
    if (rc)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_seed: %s (required with %s)", f->path,
                      rc == -1 ? "missing" : rc == -2 ? "must be one integer" : "unreadable", mp);
    if (v[0] != (int64_t)dims[1] || v[0] < 1 || v[0] > 65536)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_perm = %lld: must equal the columns of %s (%llu), 1 .. 65536",
                      f->path, (long long)v[0], mp, (unsigned long long)dims[1]);
    if (v[1] < 1 || v[0] % v[1])
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_bands = %lld: must be >= 1 and divide minhash_perm %lld",
                      f->path, (long long)v[1], (long long)v[0]);
    if (v[2] < 1 || v[2] > 1024)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_ngram = %lld: must be 1 .. 1024", f->path, (long long)v[2]);
    if (v[3] != 0 && v[3] != 1)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: attribute minhash_words = %lld: must be 0 or 1", f->path, (long long)v[3]);
    f->mh_perm = (int)v[0];
    f->mh_bands = (int)v[1];
    f->mh_ngram = (int)v[2];
    f->mh_words = (int)v[3];
    return 0;
}

int tokfile_open_opt(tokfile *f, char *err, size_t errlen) {
    int rc = read_categories(f, err, errlen);
    if (!rc) rc = open_samples(f, err, errlen);
    if (!rc) rc = open_buckets(f, err, errlen);
    if (!rc) rc = open_mask(f, err, errlen);
    if (!rc) rc = open_docs(f, err, errlen);
    return rc;
}

void tokfile_close_opt(tokfile *f) {
    for (int k = 0; k < f->n_cat; k++) lm_free(f->cat[k]);
    lm_free(f->cat);
    lm_free(f->category);
    lm_free(f->bytes);
    lm_free(f->bucket_off);
    h5_close(f->mspace);
    h5_close(f->mask);
    h5_close(f->dhash);
    h5_close(f->dmin);
    f->cat = NULL;
    f->n_cat = 0;
    f->category = NULL;
    f->bytes = f->bucket_off = NULL;
    f->mask = f->mspace = f->dhash = f->dmin = -1;
}

/* ---- accessors ---- */

int tokfile_n_categories(const tokfile *f) { return f->n_cat; }
const char *tokfile_category(const tokfile *f, int k) { return k >= 0 && k < f->n_cat ? f->cat[k] : NULL; }
int32_t tokfile_sample_category(const tokfile *f, int64_t i) {
    return f->category && i >= 0 && i < f->n_samples ? f->category[i] : 0;
}
int64_t tokfile_sample_bytes(const tokfile *f, int64_t i) { return f->bytes && i >= 0 && i < f->n_samples ? f->bytes[i] : -1; }
int64_t tokfile_n_buckets(const tokfile *f) { return f->bucket_off ? f->n_buckets : 1; }
int64_t tokfile_bucket_start(const tokfile *f, int64_t b) {
    int64_t nb = tokfile_n_buckets(f);
    if (b <= 0) return 0;
    if (b >= nb) return f->n_samples;
    return f->bucket_off[b];
}
int tokfile_has_loss_mask(const tokfile *f) { return f->mask >= 0; }
int64_t tokfile_n_docs(const tokfile *f) { return f->dhash >= 0 ? f->n_docs : 0; }

int tokfile_minhash_cfg(const tokfile *f, int *perm, int *bands, int *ngram, int *words, uint64_t *seed) {
    if (f->dmin < 0) return 0;
    if (perm) *perm = f->mh_perm;
    if (bands) *bands = f->mh_bands;
    if (ngram) *ngram = f->mh_ngram;
    if (words) *words = f->mh_words;
    if (seed) *seed = f->mh_seed;
    return 1;
}

int64_t tokfile_read_mask(tokfile *f, int64_t i, uint8_t *mask, int64_t maxlen, char *err, size_t errlen) {
    if (i < 0 || i >= f->n_samples) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: sample %lld out of range [0, %lld)", f->path, (long long)i, (long long)f->n_samples);
        return -1;
    }
    int64_t len = f->offsets[i + 1] - f->offsets[i];
    if (maxlen < 0) maxlen = 0;
    int64_t n = len < maxlen ? len : maxlen;
    if (n == 0) return 0;
    if (f->mask < 0) {
        memset(mask, 1, (size_t)n);
        return n;
    }
    int64_t lo = f->offsets[i];
    if (tokfile_past_end(f, f->mask_addr, lo, n, f->mask_esz)) {
        lm_err(err, errlen, LM_ERR_RUNTIME, "%s: /loss_mask: sample %lld ends past the end of the file (%lld bytes): the file "
               "shrank during the run", f->path, (long long)i, (long long)f->cur_size);
        return -2;
    }
    if (!f->mask_u8 && n > f->wide_cap) {
        lm_free(f->wide);
        f->wide = lm_alloc((size_t)n * sizeof(int64_t));
        f->wide_cap = n;
    }
    h5_quiet q;
    h5_quiet_begin(&q);
    hsize_t start[1] = {(hsize_t)lo}, count[1] = {(hsize_t)n};
    hid_t ms = H5Screate_simple(1, count, NULL);
    herr_t st = H5Sselect_hyperslab(f->mspace, H5S_SELECT_SET, start, NULL, count, NULL);
    if (st >= 0) {
        if (f->mask_u8) st = H5Dread(f->mask, H5T_NATIVE_UINT8, ms, f->mspace, H5P_DEFAULT, mask);
        else st = H5Dread(f->mask, H5T_NATIVE_INT64, ms, f->mspace, H5P_DEFAULT, f->wide);
    }
    h5_close(ms);
    h5_quiet_end(&q, st < 0);
    if (st < 0) {
        lm_err(err, errlen, LM_ERR_RUNTIME, "%s: /loss_mask: read of sample %lld failed (I/O error)", f->path, (long long)i);
        return -2;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t v = f->mask_u8 ? (int64_t)mask[k] : f->wide[k];
        if (v != 0 && v != 1) {
            lm_err(err, errlen, LM_ERR_INPUT, "%s: /loss_mask: sample %lld holds mask value %lld (position %lld), must be 0 or 1",
                   f->path, (long long)i, (long long)v, (long long)k);
            return -1;
        }
        mask[k] = (uint8_t)v;
    }
    return n;
}

int64_t tokfile_read_sample_mask(tokfile *f, int64_t i, uint32_t *buf, uint8_t *mask, int64_t maxlen, char *err,
                                 size_t errlen) {
    int64_t n = tokfile_read_sample(f, i, buf, maxlen, err, errlen);
    if (n <= 0 || !mask) return n;
    return tokfile_read_mask(f, i, mask, n, err, errlen);
}

int tokfile_read_docs(tokfile *f, int64_t lo, int64_t n, uint64_t *hash, uint32_t *minhash, char *err, size_t errlen) {
    if (lo < 0 || n < 0 || lo + n > tokfile_n_docs(f))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /docs/hash: documents [%lld, %lld) outside [0, %lld)", f->path,
                      (long long)lo, (long long)(lo + n), (long long)tokfile_n_docs(f));
    if (minhash && f->dmin < 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: /docs/minhash: missing (the file was made without near-duplicate keys)",
                      f->path);
    if (n == 0) return 0;
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        hid_t d = k ? f->dmin : f->dhash;
        void *out = k ? (void *)minhash : (void *)hash;
        if (!out) continue;
        hid_t fs = H5Dget_space(d), t = H5Dget_type(d);
        /* the file's own signedness and width: the bits come back unchanged */
        int uns = t >= 0 && H5Tget_sign(t) == H5T_SGN_NONE;
        hid_t mt = k ? (uns ? H5T_NATIVE_UINT32 : H5T_NATIVE_INT32) : (uns ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64);
        hsize_t start[2] = {(hsize_t)lo, 0}, count[2] = {(hsize_t)n, (hsize_t)f->mh_perm};
        hid_t ms = H5Screate_simple(k ? 2 : 1, count, NULL);
        if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(d, mt, ms, fs, H5P_DEFAULT, out) < 0)
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s: read of documents [%lld, %lld) failed (I/O error)", f->path,
                        k ? "/docs/minhash" : "/docs/hash", (long long)lo, (long long)(lo + n));
        h5_close(ms);
        h5_close(t);
        h5_close(fs);
    }
    h5_quiet_end(&q, rc);
    return rc;
}
