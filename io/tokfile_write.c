/* tokfile_write.c — writing a token file (SPEC §4, §9): serially
 * (tokfile_write, tokfile_write_tok) or collectively over MPI-IO
 * (tokfile_write_par). Both are one code path: the serial writer is the
 * collective one on a single process without MPI (the sec2 driver), so a
 * file written by any number of ranks holds the same bytes.
 *
 * The file is made as PATH.tmp.<pid of rank 0> beside its destination and
 * renamed onto it only once complete and synced (as checkpoints are): a
 * failed write never destroys an existing file, and a reader of the old
 * file sees a new inode rather than a file rewritten under it. A
 * destination that is a symlink is replaced at its target.
 *
 * Reproducible bytes: objects carry no timestamps (H5Pset_obj_track_times
 * off) and space is allocated at dataset creation (parallel HDF5 requires
 * early allocation; the serial path asks for it too, so both lay the file
 * out alike). Each dataset is created by all ranks together and written in
 * one collective H5Dwrite where every rank selects its own contiguous slice
 * (a rank with nothing selects none). Every local failure is agreed on
 * (lm_agree) before the next collective call, so all ranks return the same
 * result and message. */
#include "tokfile.h"
#include "agree.h"
#include "common.h"
#include "h5attr.h"
#include "hash.h"
#include "tokrec.h"
#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The writers' context: comm MPI_COMM_NULL = serial (no MPI call at all). */
typedef struct {
    MPI_Comm comm;
    int rank, size;
    hid_t dxpl;
} wctx;

static int agree(const wctx *w, int rc, char *err, size_t errlen) {
    return w->comm == MPI_COMM_NULL ? rc : lm_agree(w->comm, rc, err, errlen, NULL, NULL);
}

static const char *const RESERVED[] = {"format", "version", "vocab_size", "categories", "minhash_perm",
                                       "minhash_bands", "minhash_ngram", "minhash_words", "minhash_seed"};

/* ---- argument checks (before any file is made) ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* What must be the same on every rank: a fingerprint of it. */
static uint64_t fingerprint(int64_t vocab, int n_extra, const char *const *names, const int64_t *vals,
                            const lm_tokrec *tok, const tokfile_extra *x) {
    uint64_t h = LM_FNV1A_INIT;
    h = lm_fnv1a(h, &vocab, sizeof vocab);
    h = lm_fnv1a(h, &n_extra, sizeof n_extra);
    for (int k = 0; k < n_extra; k++) {
        h = lm_fnv1a(h, names[k], strlen(names[k]) + 1);
        h = lm_fnv1a(h, &vals[k], sizeof vals[k]);
    }
    int64_t tl = tok ? (int64_t)tok->len : -1;
    h = lm_fnv1a(h, &tl, sizeof tl);
    if (tok) {
        h = lm_fnv1a(h, &tok->bos_id, sizeof tok->bos_id);
        h = lm_fnv1a(h, &tok->eos_id, sizeof tok->eos_id);
        if (tok->model) h = lm_fnv1a(h, tok->model, tok->len);
    }
    if (x) {
        h = lm_fnv1a(h, &x->n_categories, sizeof x->n_categories);
        for (int k = 0; k < x->n_categories; k++) h = lm_fnv1a(h, x->categories[k], strlen(x->categories[k]) + 1);
        h = lm_fnv1a(h, &x->n_buckets, sizeof x->n_buckets);
        if (x->n_buckets > 0) h = lm_fnv1a(h, x->bucket_offsets, sizeof(int64_t) * (size_t)(x->n_buckets + 1));
        int mh[4] = {x->minhash_perm, x->minhash_bands, x->minhash_ngram, x->minhash_words};
        h = lm_fnv1a(h, mh, sizeof mh);
        h = lm_fnv1a(h, &x->minhash_seed, sizeof x->minhash_seed);
    }
    return h;
}

/* Checks of this rank's arguments that need nothing from the others. */
static int check_local(const char *path, const uint32_t *tokens, int64_t ntok, const int64_t *starts, int64_t nsamp,
                       int64_t vocab, int n_extra, const char *const *names, const lm_tokrec *tok, const tokfile_extra *x,
                       char *err, size_t errlen) {
    /* refuse to write a file that tokfile_open would reject */
    if (tok && (!tok->model || tok->len < 1 || tok->len > LM_TOKREC_MAX))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: tokenizer model of %zu bytes: must be 1 .. %zu", path, tok->len,
                      LM_TOKREC_MAX);
    if (tok && (tok->bos_id < -1 || tok->bos_id >= vocab || tok->eos_id < -1 || tok->eos_id >= vocab))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: tokenizer bos_id %lld / eos_id %lld: must be -1 or below vocab_size %lld",
                      path, (long long)tok->bos_id, (long long)tok->eos_id, (long long)vocab);
    if (vocab < 1) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: vocab_size %lld must be > 0", path, (long long)vocab);
    if (ntok < 0 || nsamp < 0 || (ntok > 0 && !tokens) || (nsamp > 0 && !starts))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %lld tokens / %lld samples: bad counts or missing arrays", path,
                      (long long)ntok, (long long)nsamp);
    for (int k = 0; k < n_extra; k++) {
        if (!names[k] || !*names[k]) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: extra attribute %d has no name", path, k);
        for (size_t r = 0; r < sizeof RESERVED / sizeof *RESERVED; r++)
            if (!strcmp(names[k], RESERVED[r]))
                return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: extra attribute %s: a reserved name", path, names[k]);
    }
    for (int64_t i = 0; i < nsamp; i++)
        if (starts[i] < 0 || starts[i] > ntok || (i > 0 && starts[i] < starts[i - 1]))
            return lm_err(err, errlen, LM_ERR_RUNTIME,
                          "%s: offsets not non-decreasing within [0, %lld] at index %lld (%lld)", path, (long long)ntok,
                          (long long)i, (long long)starts[i]);
    for (int64_t i = 0; i < ntok; i++)
        if ((int64_t)tokens[i] >= vocab)
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: token %u at %lld >= vocab_size %lld", path, tokens[i], (long long)i,
                          (long long)vocab);
    if (!x) return 0;
    if (x->n_categories < 0 || (x->n_categories > 0 && !x->categories))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %d categories: bad count or no names", path, x->n_categories);
    for (int k = 0; k < x->n_categories; k++) {
        const char *c = x->categories[k];
        if (!c || !*c || strlen(c) > 1024 || strchr(c, '\n'))
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: category %d: a name must be 1 .. 1024 bytes without newlines", path, k);
    }
    if (x->n_categories > 1) {
        const char **s = lm_alloc(sizeof(char *) * (size_t)x->n_categories);
        memcpy(s, x->categories, sizeof(char *) * (size_t)x->n_categories);
        qsort(s, (size_t)x->n_categories, sizeof(char *), cmp_str);
        int dup = -1;
        for (int k = 1; k < x->n_categories && dup < 0; k++)
            if (!strcmp(s[k - 1], s[k])) dup = k;
        int rc = dup >= 0 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: category \"%.64s\" named twice", path, s[dup]) : 0;
        lm_free(s);
        if (rc) return rc;
    }
    if (x->n_categories == 0 && x->sample_category)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: sample categories given without category names", path);
    if (x->n_categories > 0 && nsamp > 0 && !x->sample_category)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %d categories but no sample categories", path, x->n_categories);
    for (int64_t i = 0; x->n_categories > 0 && i < nsamp; i++)
        if (x->sample_category[i] < 0 || x->sample_category[i] >= x->n_categories)
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: sample %lld: category %d outside [0, %d)", path, (long long)i,
                          (int)x->sample_category[i], x->n_categories);
    for (int64_t i = 0; x->sample_bytes && i < nsamp; i++)
        if (x->sample_bytes[i] < 0)
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: sample %lld: %lld bytes", path, (long long)i,
                          (long long)x->sample_bytes[i]);
    for (int64_t i = 0; x->loss_mask && i < ntok; i++)
        if (x->loss_mask[i] > 1)
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: loss mask value %u at token %lld: must be 0 or 1", path,
                          x->loss_mask[i], (long long)i);
    if (x->n_buckets < 0 || (x->n_buckets > 0 && !x->bucket_offsets))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %lld buckets: bad count or no offsets", path, (long long)x->n_buckets);
    if (x->n_buckets > 0 && x->bucket_offsets[0] != 0)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: bucket offsets must start at 0", path);
    for (int64_t b = 1; b <= x->n_buckets; b++)
        if (x->bucket_offsets[b] < x->bucket_offsets[b - 1])
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: bucket offsets not non-decreasing at index %lld", path, (long long)b);
    if (x->n_docs_local < 0 || (x->n_docs_local > 0 && !x->doc_hash))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %lld documents: bad count or no hashes", path, (long long)x->n_docs_local);
    if (x->minhash_perm < 0 || (x->minhash_perm == 0 && x->doc_minhash))
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: minhash signatures given with minhash_perm %d", path, x->minhash_perm);
    if (x->minhash_perm > 0) {
        if (x->minhash_perm > 65536 || x->minhash_bands < 1 || x->minhash_perm % x->minhash_bands || x->minhash_ngram < 1 ||
            x->minhash_ngram > 1024 || (x->minhash_words != 0 && x->minhash_words != 1))
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: minhash perm %d, bands %d, ngram %d, words %d: out of range", path,
                          x->minhash_perm, x->minhash_bands, x->minhash_ngram, x->minhash_words);
        if (x->n_docs_local > 0 && !x->doc_minhash)
            return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: minhash_perm %d but no signatures", path, x->minhash_perm);
    }
    return 0;
}

/* ---- the collective dataset write ---- */

/* Dataset creation list: no fill pass (every element is written), space at
 * creation, no timestamps. */
static hid_t make_dcpl(void) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_obj_track_times(dcpl, 0);
    return dcpl;
}

static hid_t make_group(hid_t f, const char *name) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    h5_close(gcpl);
    return g;
}

/* Create `name` in loc, [total] or [total, cols] (cols > 0), file type ft,
 * and write rows [lo, lo+n) of it from data (memory type mt) on this rank.
 * Every rank calls (collective); a rank with n = 0 selects nothing. */
static int put(const wctx *w, hid_t loc, const char *name, hid_t ft, hid_t mt, const void *data, int64_t lo, int64_t n,
               int64_t total, int64_t cols) {
    int nd = cols > 0 ? 2 : 1;
    hsize_t dims[2] = {(hsize_t)total, (hsize_t)(cols > 0 ? cols : 1)};
    hid_t fs = H5Screate_simple(nd, dims, NULL), dcpl = make_dcpl();
    hid_t d = H5Dcreate2(loc, name, ft, fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = d < 0 ? -1 : 0;
    if (!rc && total > 0) {
        hsize_t start[2] = {(hsize_t)lo, 0}, count[2] = {(hsize_t)n, dims[1]}, one[2] = {1, 1};
        hid_t ms = H5Screate_simple(nd, n > 0 ? count : one, NULL);
        static const uint64_t dummy[2] = {0, 0}; /* a rank with nothing still passes a buffer */
        if (n > 0) {
            rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ? -1 : 0;
        } else {
            H5Sselect_none(fs);
            H5Sselect_none(ms);
        }
        if (!rc && H5Dwrite(d, mt, ms, fs, w->dxpl, n > 0 ? data : (const void *)dummy) < 0) rc = -1;
        h5_close(ms);
    }
    h5_close(d);
    h5_close(dcpl);
    h5_close(fs);
    return rc;
}

/* Root attribute `categories`: a 1-D variable-length UTF-8 string array. */
static int write_categories(hid_t f, int n, const char *const *names) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(f, "categories", t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, t, names) < 0) ? -1 : 0;
    h5_close(a);
    h5_close(s);
    h5_close(t);
    return rc;
}

/* The whole file body; `what` names the part that failed. Counts and
 * offsets: this rank's slices start at tok_lo / samp_lo / doc_lo of the
 * totals; gstarts: this rank's global sample offsets (the last rank adds
 * the final n_tokens). */
typedef struct {
    int64_t tok_lo, ntok, tok_total, samp_lo, nsamp, samp_total, doc_lo, ndocs, doc_total;
    int has_bytes, has_mask;
    const int64_t *gstarts;
    int64_t n_gstarts;
} wlayout;

static int write_body(const wctx *w, hid_t f, const uint32_t *tokens, const wlayout *L, int64_t vocab, int n_extra,
                      const char *const *names, const int64_t *vals, const lm_tokrec *tok, const tokfile_extra *x,
                      const char *tmp, char *err, size_t errlen) {
    static const tokfile_extra none;
    if (!x) x = &none;
    hid_t g = -1;
    int rc = 0;
    const char *what = "/tokens";
#define STEP(expr, name)                                                  \
    do {                                                                  \
        what = name;                                                      \
        rc = (expr) ? 1 : 0;                                              \
        if (agree(w, rc, NULL, 0)) goto fail;                             \
    } while (0)
    STEP(put(w, f, "tokens", H5T_STD_U32LE, H5T_NATIVE_UINT32, tokens, L->tok_lo, L->ntok, L->tok_total, 0), "/tokens");
    STEP((g = make_group(f, "samples")) < 0, "/samples");
    STEP(put(w, g, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, L->gstarts, L->samp_lo, L->n_gstarts, L->samp_total + 1, 0),
         "/samples/offsets");
    if (x->n_categories > 0)
        STEP(put(w, g, "category", H5T_STD_I32LE, H5T_NATIVE_INT32, x->sample_category, L->samp_lo, L->nsamp, L->samp_total, 0),
             "/samples/category");
    if (L->has_bytes)
        STEP(put(w, g, "bytes", H5T_STD_I64LE, H5T_NATIVE_INT64, x->sample_bytes, L->samp_lo, L->nsamp, L->samp_total, 0),
             "/samples/bytes");
    h5_close(g);
    g = -1;
    if (x->n_buckets > 0) {
        STEP((g = make_group(f, "buckets")) < 0, "/buckets");
        STEP(put(w, g, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, x->bucket_offsets, 0, w->rank == 0 ? x->n_buckets + 1 : 0,
                 x->n_buckets + 1, 0),
             "/buckets/offsets");
        h5_close(g);
        g = -1;
    }
    if (L->has_mask)
        STEP(put(w, f, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, x->loss_mask, L->tok_lo, L->ntok, L->tok_total, 0),
             "/loss_mask");
    if (L->doc_total > 0) {
        STEP((g = make_group(f, "docs")) < 0, "/docs");
        STEP(put(w, g, "hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, x->doc_hash, L->doc_lo, L->ndocs, L->doc_total, 0),
             "/docs/hash");
        if (x->minhash_perm > 0)
            STEP(put(w, g, "minhash", H5T_STD_U32LE, H5T_NATIVE_UINT32, x->doc_minhash, L->doc_lo, L->ndocs, L->doc_total,
                     x->minhash_perm),
                 "/docs/minhash");
        h5_close(g);
        g = -1;
    }
    /* attributes: metadata, written alike by every rank */
    int arc = h5_write_str(f, "format", "lamina-tokens") | h5_write_i64(f, "version", 1) | h5_write_i64(f, "vocab_size", vocab);
    for (int k = 0; k < n_extra; k++) arc |= h5_write_i64(f, names[k], vals[k]);
    if (x->n_categories > 0) arc |= write_categories(f, x->n_categories, x->categories);
    if (x->minhash_perm > 0 && L->doc_total > 0) {
        uint64_t seed = x->minhash_seed;
        arc |= h5_write_i64(f, "minhash_perm", x->minhash_perm) | h5_write_i64(f, "minhash_bands", x->minhash_bands) |
               h5_write_i64(f, "minhash_ngram", x->minhash_ngram) | h5_write_i64(f, "minhash_words", x->minhash_words) |
               h5_write_attr(f, "minhash_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed);
    }
    STEP(arc, "root attributes");
    if (tok) {
        lm_tokrec t = *tok;
        t.vocab_size = 0; /* the root attribute says it */
        STEP(tokrec_write(f, &t, w->rank == 0, w->dxpl), "/tokenizer/model");
    }
    if (w->comm != MPI_COMM_NULL) STEP(H5Fflush(f, H5F_SCOPE_GLOBAL) < 0, "flush");
#undef STEP
    return 0;
fail:
    h5_close(g);
    return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: write failed at %s", tmp, what);
}

/* ---- the writer ---- */

static int write_any(MPI_Comm comm, const char *path, const uint32_t *tokens, int64_t ntok, const int64_t *starts,
                     int64_t nsamp, int64_t vocab, int n_extra, const char *const *names, const int64_t *vals,
                     const lm_tokrec *tok, const tokfile_extra *x, char *err, size_t errlen) {
    wctx w = {comm, 0, 1, H5P_DEFAULT};
    if (comm != MPI_COMM_NULL) {
        MPI_Comm_rank(comm, &w.rank);
        MPI_Comm_size(comm, &w.size);
    }
    int rc = check_local(path, tokens, ntok, starts, nsamp, vocab, n_extra, names, tok, x, err, errlen);
    if (agree(&w, rc, err, errlen)) return 1;

    /* the slices: each rank's counts, in rank order */
    int64_t ndocs = x ? x->n_docs_local : 0;
    int64_t mine[5] = {ntok, nsamp, ndocs, x && x->sample_bytes ? 1 : 0, x && x->loss_mask ? 1 : 0};
    int64_t *all = lm_alloc(sizeof(int64_t) * 5 * (size_t)w.size);
    uint64_t fp = fingerprint(vocab, n_extra, names, vals, tok, x), fp_min = fp, fp_max = fp;
    if (comm != MPI_COMM_NULL) {
        MPI_Allgather(mine, 5, MPI_INT64_T, all, 5, MPI_INT64_T, comm);
        MPI_Allreduce(&fp, &fp_min, 1, MPI_UINT64_T, MPI_MIN, comm);
        MPI_Allreduce(&fp, &fp_max, 1, MPI_UINT64_T, MPI_MAX, comm);
    } else {
        memcpy(all, mine, sizeof mine);
    }
    wlayout L = {0};
    int first_with_samples = -1;
    for (int r = 0; r < w.size; r++) {
        const int64_t *a = all + 5 * r;
        if (r < w.rank) {
            L.tok_lo += a[0];
            L.samp_lo += a[1];
            L.doc_lo += a[2];
        }
        L.tok_total += a[0];
        L.samp_total += a[1];
        L.doc_total += a[2];
        L.has_bytes |= (int)a[3];
        L.has_mask |= (int)a[4];
        if (first_with_samples < 0 && a[1] > 0) first_with_samples = r;
    }
    lm_free(all);
    L.ntok = ntok;
    L.nsamp = nsamp;
    L.ndocs = ndocs;
    if (fp_min != fp_max)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME,
                    "%s: the ranks disagree on what must be the same everywhere (vocab_size, attributes, tokenizer, "
                    "categories, bucket offsets, minhash settings)", path);
    else if (L.samp_total < 1)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: no samples to write", path);
    else if (w.rank == first_with_samples && L.tok_lo + starts[0] != 0)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: offsets must run from 0 to n_tokens (%lld): the first sample starts at %lld",
                    path, (long long)L.tok_total, (long long)(L.tok_lo + starts[0]));
    else if (x && x->n_buckets > 0 && x->bucket_offsets[x->n_buckets] != L.samp_total)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: the last bucket offset %lld must be n_samples %lld", path,
                    (long long)x->bucket_offsets[x->n_buckets], (long long)L.samp_total);
    else if (L.has_bytes && nsamp > 0 && !x->sample_bytes)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: sample bytes given on some ranks only", path);
    else if (L.has_mask && ntok > 0 && !x->loss_mask)
        rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: a loss mask given on some ranks only", path);
    if (agree(&w, rc, err, errlen)) return 1;

    /* global sample offsets of this rank; the last rank appends n_tokens */
    int last = w.rank == w.size - 1;
    L.n_gstarts = nsamp + last;
    int64_t *gs = lm_alloc(sizeof(int64_t) * (size_t)(L.n_gstarts + 1));
    for (int64_t i = 0; i < nsamp; i++) gs[i] = L.tok_lo + starts[i];
    if (last) gs[nsamp] = L.tok_total;
    L.gstarts = gs;

    /* PATH.tmp.<pid of rank 0> beside the destination (a symlink's target) */
    char dest[PATH_MAX], tmp[PATH_MAX + 32], dir[PATH_MAX];
    if (w.rank == 0) {
        struct stat lst;
        if (lstat(path, &lst) || !S_ISLNK(lst.st_mode) || !realpath(path, dest)) snprintf(dest, sizeof dest, "%s", path);
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dest, (long)getpid());
    }
    if (comm != MPI_COMM_NULL) MPI_Bcast(tmp, (int)sizeof tmp, MPI_CHAR, 0, comm);

    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t fapl = h5_fapl();
    if (comm != MPI_COMM_NULL) H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    /* v1.8 object format: object headers and superblock carry checksums, so a
     * damaged header is refused instead of misread */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0); /* the root group: no timestamps either */
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    h5_close(fcpl);
    h5_close(fapl);
    rc = f < 0 ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create the file %s (missing directory or no write permission)",
                        path, tmp)
               : 0;
    if (agree(&w, rc, err, errlen)) {
        h5_quiet_end(&q, 1);
        if (f >= 0) H5Fclose(f);
        if (w.rank == 0) unlink(tmp);
        lm_free(gs);
        return 1;
    }
    if (comm != MPI_COMM_NULL) {
        w.dxpl = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_dxpl_mpio(w.dxpl, H5FD_MPIO_COLLECTIVE);
    }
    rc = write_body(&w, f, tokens, &L, vocab, n_extra, names, vals, tok, x, tmp, err, errlen);
    lm_free(gs);
    if (w.dxpl != H5P_DEFAULT) h5_close(w.dxpl);
    int crc = H5Fclose(f) < 0;
    if (!rc && crc) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: write failed at file close", tmp);
    h5_quiet_end(&q, rc);
    if (agree(&w, rc, err, errlen)) {
        if (w.rank == 0) unlink(tmp);
        char why[LM_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: %s (%s removed; the destination is untouched)", path, why, tmp);
    }

    /* rank 0: durable, then published under its name */
    if (w.rank == 0) {
        snprintf(dir, sizeof dir, "%s", dest);
        char *dname = dirname(dir);
        if (lm_fsync_path(tmp, 0)) {
            int e = errno;
            unlink(tmp);
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync failed (%s); the destination is untouched", tmp, strerror(e));
        } else if (rename(tmp, dest)) {
            int e = errno;
            unlink(tmp);
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: rename to %s failed (%s); the destination is untouched", tmp, dest,
                        strerror(e));
        } else if (lm_fsync_path(dname, 1)) {
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync of the directory failed (%s)", dname, strerror(errno));
        }
    }
    return agree(&w, rc, err, errlen) ? 1 : 0;
}

int tokfile_write_par(MPI_Comm comm, const char *path, const uint32_t *tokens, int64_t ntok_local,
                      const int64_t *starts_local, int64_t nsamp_local, int64_t vocab_size, int n_extra,
                      const char *const *extra_names, const int64_t *extra_values, const lm_tokrec *tok,
                      const tokfile_extra *x, char *err, size_t errlen) {
    return write_any(comm, path, tokens, ntok_local, starts_local, nsamp_local, vocab_size, n_extra, extra_names,
                     extra_values, tok, x, err, errlen);
}

int tokfile_write_tok(const char *path, const uint32_t *tokens, int64_t n_tokens, const int64_t *offsets,
                      int64_t n_samples, int64_t vocab_size, int n_extra, const char *const *extra_names,
                      const int64_t *extra_values, const lm_tokrec *tok, char *err, size_t errlen) {
    if (n_samples < 1) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: no samples to write", path);
    if (offsets[0] != 0 || offsets[n_samples] != n_tokens)
        return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: offsets must run from 0 to n_tokens (%lld)", path, (long long)n_tokens);
    return write_any(MPI_COMM_NULL, path, tokens, n_tokens, offsets, n_samples, vocab_size, n_extra, extra_names,
                     extra_values, tok, NULL, err, errlen);
}

int tokfile_write(const char *path, const uint32_t *tokens, int64_t n_tokens, const int64_t *offsets,
                  int64_t n_samples, int64_t vocab_size, int n_extra, const char *const *extra_names,
                  const int64_t *extra_values, char *err, size_t errlen) {
    return tokfile_write_tok(path, tokens, n_tokens, offsets, n_samples, vocab_size, n_extra, extra_names, extra_values,
                             NULL, err, errlen);
}
