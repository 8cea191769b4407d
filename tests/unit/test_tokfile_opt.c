/* test_tokfile_opt.c — the optional datasets of the token file (io/tokfile_opt.c,
 * io/tokfile_write.c; SPEC §4, §9): a round trip of every one of them through
 * tokfile_write_par on one rank (buckets, categories, sample bytes, loss
 * mask, document hashes and MinHash signatures), the same bytes from the
 * serial writer and from tokfile_write_par, the other accepted spellings of
 * the categories attribute, each validation rule at open on files changed
 * by hand with the HDF5 API (the message names the file and the dataset or
 * attribute, nothing on stderr), loss-mask values checked on read, and the
 * writer's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "tokfile.h"
#include <ftw.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

static char g_dir[64];
static char g_err[LM_ERRLEN];

static void path_in(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", g_dir, name); }

/* ---- the reference file: 6 samples in 3 buckets, 3 categories ---- */

enum { NS = 6, NT = 20, ND = 5, PERM = 8 };
static const int64_t OFF[NS + 1] = {0, 3, 3, 7, 8, 13, 20};
static const char *const CATS[3] = {"web", "books", "code"};
static const int64_t BUCKETS[4] = {0, 2, 2, 6}; /* an empty bucket in the middle */
static const int32_t CAT[NS] = {0, 2, 1, 1, 0, 2};
static const int64_t BYTES[NS] = {12, 0, 30, 5, 17, 44};
static uint32_t g_tok[NT];
static uint8_t g_mask[NT];
static uint64_t g_hash[ND];
static uint32_t g_mh[ND * PERM];

static void make_data(void) {
    for (int i = 0; i < NT; i++) {
        g_tok[i] = (uint32_t)(i * 7 % 50);
        g_mask[i] = (uint8_t)(i % 3 != 1);
    }
    for (int d = 0; d < ND; d++) {
        g_hash[d] = 0xfedcba9876543210ull ^ (uint64_t)d * 0x9E3779B97F4A7C15ull; /* top bit set: unsigned */
        for (int k = 0; k < PERM; k++) g_mh[d * PERM + k] = 0xfffffff0u - (uint32_t)(d * 31 + k);
    }
}

static tokfile_extra full_extra(void) {
    tokfile_extra x = {0};
    x.n_categories = 3;
    x.categories = CATS;
    x.n_buckets = 3;
    x.bucket_offsets = BUCKETS;
    x.sample_category = CAT;
    x.sample_bytes = BYTES;
    x.loss_mask = g_mask;
    x.n_docs_local = ND;
    x.doc_hash = g_hash;
    x.doc_minhash = g_mh;
    x.minhash_perm = PERM;
    x.minhash_bands = 4;
    x.minhash_ngram = 5;
    x.minhash_words = 0;
    x.minhash_seed = 0x8000000000000123ull;
    return x;
}

static int write_x(const char *p, const tokfile_extra *x) {
    const char *names[1] = {"seq_len"};
    int64_t vals[1] = {8};
    return tokfile_write_par(MPI_COMM_SELF, p, g_tok, NT, OFF, NS, 50, 1, names, vals, NULL, x, g_err, sizeof g_err);
}

static tokfile *open_ok(const char *p) {
    tokfile *f = tokfile_open(p, g_err, sizeof g_err);
    if (!f) fail_msg("%s", g_err);
    return f;
}

static long file_bytes(const char *p, unsigned char **out) {
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc((size_t)n);
    assert_int_equal(fread(*out, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return n;
}

static void test_roundtrip(void **state) {
    (void)state;
    char p[128];
    path_in(p, sizeof p, "full.h5");
    tokfile_extra x = full_extra();
    if (write_x(p, &x)) fail_msg("%s", g_err);
    tokfile *f = open_ok(p);
    assert_int_equal(tokfile_n_samples(f), NS);
    assert_int_equal(tokfile_n_tokens(f), NT);
    assert_int_equal(tokfile_n_categories(f), 3);
    for (int k = 0; k < 3; k++) assert_string_equal(tokfile_category(f, k), CATS[k]);
    assert_null(tokfile_category(f, 3));
    assert_null(tokfile_category(f, -1));
    assert_int_equal(tokfile_n_buckets(f), 3);
    for (int b = 0; b <= 3; b++) assert_int_equal(tokfile_bucket_start(f, b), BUCKETS[b]);
    for (int i = 0; i < NS; i++) {
        assert_int_equal(tokfile_sample_category(f, i), CAT[i]);
        assert_int_equal(tokfile_sample_bytes(f, i), BYTES[i]);
    }
    assert_true(tokfile_has_loss_mask(f));
    uint32_t buf[32];
    uint8_t mask[32];
    for (int i = 0; i < NS; i++) {
        int64_t L = OFF[i + 1] - OFF[i];
        memset(mask, 7, sizeof mask);
        assert_int_equal(tokfile_read_sample_mask(f, i, buf, mask, 32, g_err, sizeof g_err), L);
        assert_memory_equal(buf, g_tok + OFF[i], (size_t)L * 4);
        if (L) assert_memory_equal(mask, g_mask + OFF[i], (size_t)L);
        assert_int_equal(mask[L], 7); /* nothing past the sample */
    }
    /* cut by maxlen: tokens and mask alike */
    memset(mask, 7, sizeof mask);
    assert_int_equal(tokfile_read_sample_mask(f, 5, buf, mask, 3, g_err, sizeof g_err), 3);
    assert_memory_equal(mask, g_mask + 13, 3);
    assert_int_equal(mask[3], 7);
    /* mask NULL: only tokens */
    assert_int_equal(tokfile_read_sample_mask(f, 2, buf, NULL, 32, g_err, sizeof g_err), 4);
    /* documents */
    assert_int_equal(tokfile_n_docs(f), ND);
    int perm, bands, ngram, words;
    uint64_t seed;
    assert_int_equal(tokfile_minhash_cfg(f, &perm, &bands, &ngram, &words, &seed), 1);
    assert_int_equal(perm, PERM);
    assert_int_equal(bands, 4);
    assert_int_equal(ngram, 5);
    assert_int_equal(words, 0);
    assert_true(seed == 0x8000000000000123ull);
    uint64_t h[ND];
    uint32_t mh[ND * PERM];
    assert_int_equal(tokfile_read_docs(f, 0, ND, h, mh, g_err, sizeof g_err), 0);
    assert_memory_equal(h, g_hash, sizeof h);
    assert_memory_equal(mh, g_mh, sizeof mh);
    memset(h, 0, sizeof h);
    memset(mh, 0, sizeof mh);
    assert_int_equal(tokfile_read_docs(f, 2, 2, h, mh, g_err, sizeof g_err), 0);
    assert_memory_equal(h, g_hash + 2, 2 * sizeof *h);
    assert_memory_equal(mh, g_mh + 2 * PERM, 2 * PERM * sizeof *mh);
    assert_int_equal(tokfile_read_docs(f, 1, 3, h, NULL, g_err, sizeof g_err), 0);
    assert_memory_equal(h, g_hash + 1, 3 * sizeof *h);
    assert_int_equal(tokfile_read_docs(f, 4, 2, h, NULL, g_err, sizeof g_err), 2);
    if (!strstr(g_err, p) || !strstr(g_err, "/docs/hash")) fail_msg("message: %s", g_err);
    assert_int_equal(tokfile_read_docs(f, ND, 0, h, mh, g_err, sizeof g_err), 0);
    tokfile_close(f);

    /* the stored types: uint8 mask, int32 category, uint64 hash, uint32 minhash */
    hid_t hf = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    const char *ds[6] = {"/loss_mask", "/samples/category", "/samples/bytes", "/buckets/offsets", "/docs/hash", "/docs/minhash"};
    hid_t want[6] = {H5T_STD_U8LE, H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_I64LE, H5T_STD_U64LE, H5T_STD_U32LE};
    for (int k = 0; k < 6; k++) {
        hid_t d = H5Dopen2(hf, ds[k], H5P_DEFAULT), t = H5Dget_type(d);
        if (H5Tequal(t, want[k]) <= 0) fail_msg("%s has another type", ds[k]);
        H5Tclose(t);
        H5Dclose(d);
    }
    H5Fclose(hf);

    /* none of them: the defaults */
    path_in(p, sizeof p, "plain.h5");
    if (write_x(p, NULL)) fail_msg("%s", g_err);
    f = open_ok(p);
    assert_int_equal(tokfile_n_categories(f), 0);
    assert_null(tokfile_category(f, 0));
    assert_int_equal(tokfile_sample_category(f, 3), 0);
    assert_int_equal(tokfile_sample_bytes(f, 3), -1);
    assert_int_equal(tokfile_n_buckets(f), 1);
    assert_int_equal(tokfile_bucket_start(f, 0), 0);
    assert_int_equal(tokfile_bucket_start(f, 1), NS);
    assert_false(tokfile_has_loss_mask(f));
    memset(mask, 0, sizeof mask);
    assert_int_equal(tokfile_read_sample_mask(f, 2, buf, mask, 32, g_err, sizeof g_err), 4);
    for (int k = 0; k < 4; k++) assert_int_equal(mask[k], 1);
    assert_int_equal(tokfile_n_docs(f), 0);
    assert_int_equal(tokfile_minhash_cfg(f, &perm, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(tokfile_read_docs(f, 0, 1, h, NULL, g_err, sizeof g_err), 2);
    tokfile_close(f);

    /* exact dedup only: /docs/hash without minhash */
    x = full_extra();
    x.minhash_perm = 0;
    x.doc_minhash = NULL;
    path_in(p, sizeof p, "hashonly.h5");
    if (write_x(p, &x)) fail_msg("%s", g_err);
    f = open_ok(p);
    assert_int_equal(tokfile_n_docs(f), ND);
    assert_int_equal(tokfile_minhash_cfg(f, NULL, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(tokfile_read_docs(f, 0, ND, h, NULL, g_err, sizeof g_err), 0);
    assert_memory_equal(h, g_hash, sizeof h);
    assert_int_equal(tokfile_read_docs(f, 0, 1, h, mh, g_err, sizeof g_err), 2);
    if (!strstr(g_err, "/docs/minhash")) fail_msg("message: %s", g_err);
    tokfile_close(f);
}

/* The serial writer and tokfile_write_par on one rank: the same bytes. */
static void test_same_bytes(void **state) {
    (void)state;
    char a[128], b[128];
    path_in(a, sizeof a, "serial.h5");
    path_in(b, sizeof b, "par1.h5");
    const char *names[1] = {"seq_len"};
    int64_t vals[1] = {8};
    assert_int_equal(tokfile_write(a, g_tok, NT, OFF, NS, 50, 1, names, vals, g_err, sizeof g_err), 0);
    assert_int_equal(write_x(b, NULL), 0);
    unsigned char *ba, *bb;
    long na = file_bytes(a, &ba), nb = file_bytes(b, &bb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, (size_t)na);
    free(ba);
    free(bb);
    /* and a second write of the full file is the same bytes as the first */
    tokfile_extra x = full_extra();
    assert_int_equal(write_x(a, &x), 0);
    sleep(1); /* a timestamp in an object header would now differ */
    assert_int_equal(write_x(b, &x), 0);
    na = file_bytes(a, &ba);
    nb = file_bytes(b, &bb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, (size_t)na);
    free(ba);
    free(bb);
}

/* ---- hand-made damage ---- */

static void h_del(hid_t f, const char *path) { assert_true(H5Ldelete(f, path, H5P_DEFAULT) >= 0); }

/* dataset `path` (intermediate groups made) of file type ft, [n] or [n][cols] */
static void h_put(hid_t f, const char *path, hid_t ft, int64_t n, int64_t cols, const int64_t *vals) {
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
    hid_t s = H5Screate_simple(cols ? 2 : 1, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, path, ft, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (n * (cols ? cols : 1) > 0) assert_true(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) >= 0);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(s);
}

static void h_attr_i64(hid_t f, const char *name, int64_t v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

/* categories as a 1-D string array: vlen or fixed length (size 8, null padded) */
static void h_attr_names(hid_t f, int n, const char *const *names, int vlen) {
    if (H5Aexists(f, "categories") > 0) H5Adelete(f, "categories");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : 8);
    if (!vlen) H5Tset_strpad(t, H5T_STR_NULLPAD);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(f, "categories", t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (vlen) {
        H5Awrite(a, t, names);
    } else {
        char buf[8 * 8] = {0};
        for (int k = 0; k < n; k++) strncpy(buf + 8 * k, names[k], 8);
        H5Awrite(a, t, buf);
    }
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void h_attr_joined(hid_t f, const char *joined) {
    if (H5Aexists(f, "categories") > 0) H5Adelete(f, "categories");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(joined) + 1);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "categories", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, joined);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

/* A copy of the full reference file opened for writing. */
static hid_t start(const char *name, char *p, size_t plen) {
    path_in(p, plen, name);
    tokfile_extra x = full_extra();
    if (write_x(p, &x)) fail_msg("%s", g_err);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* close f; open must fail, print nothing, and name the file, what and rule */
static void finish_bad(hid_t f, const char *p, const char *what, const char *rule) {
    assert_true(H5Fclose(f) >= 0);
    g_err[0] = 0;
    capture_begin_in(g_dir);
    tokfile *t = tokfile_open(p, g_err, sizeof g_err);
    long printed = capture_end();
    if (t) fail_msg("%s: opened but should fail (%s)", p, what);
    assert_int_equal(printed, 0);
    if (!strstr(g_err, p) || !strstr(g_err, what) || (rule && !strstr(g_err, rule)))
        fail_msg("message \"%s\" should name %s, %s and %s", g_err, p, what, rule ? rule : "");
}

static void finish_ok(hid_t f, const char *p) {
    assert_true(H5Fclose(f) >= 0);
    tokfile_close(open_ok(p));
}

static void test_bad_buckets(void **state) {
    (void)state;
    char p[128];
    struct {
        const char *name;
        int64_t n;
        int64_t v[5];
        const char *rule;
    } c[] = {
        {"b_first.h5", 3, {1, 2, 6}, "offsets[0] = 1, must be 0"},
        {"b_dec.h5", 4, {0, 4, 2, 6}, "not non-decreasing at index 2"},
        {"b_last.h5", 3, {0, 3, 5}, "last offset 5 != n_samples 6"},
        {"b_over.h5", 3, {0, 3, 7}, "last offset 7 != n_samples 6"},
        {"b_one.h5", 1, {0}, "need n_buckets+1 >= 2"},
        {"b_none.h5", 0, {0}, "need n_buckets+1 >= 2"},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        hid_t f = start(c[k].name, p, sizeof p);
        h_del(f, "/buckets/offsets");
        h_put(f, "/buckets/offsets", H5T_STD_I64LE, c[k].n, 0, c[k].v);
        finish_bad(f, p, "/buckets/offsets", c[k].rule);
    }
    hid_t f = start("b_missing.h5", p, sizeof p);
    h_del(f, "/buckets/offsets");
    finish_bad(f, p, "/buckets/offsets", "missing");
    int64_t v[3] = {0, 3, 6};
    f = start("b_2d.h5", p, sizeof p);
    h_del(f, "/buckets/offsets");
    h_put(f, "/buckets/offsets", H5T_STD_I64LE, 3, 1, v);
    finish_bad(f, p, "/buckets/offsets", "1-D");
    f = start("b_float.h5", p, sizeof p);
    h_del(f, "/buckets/offsets");
    h_put(f, "/buckets/offsets", H5T_IEEE_F64LE, 3, 0, v);
    finish_bad(f, p, "/buckets/offsets", "integer");
    /* another integer type is fine */
    f = start("b_u32.h5", p, sizeof p);
    h_del(f, "/buckets/offsets");
    h_put(f, "/buckets/offsets", H5T_STD_U32LE, 3, 0, v);
    finish_ok(f, p);
}

static void test_bad_categories(void **state) {
    (void)state;
    char p[128];
    int64_t cat[NS] = {0, 2, 1, 1, 0, 2};
    hid_t f = start("c_noattr.h5", p, sizeof p);
    H5Adelete(f, "categories");
    finish_bad(f, p, "/samples/category", "without the root attribute categories");
    f = start("c_nods.h5", p, sizeof p);
    h_del(f, "/samples/category");
    finish_bad(f, p, "attribute categories", "present without /samples/category");
    cat[4] = 3;
    f = start("c_range.h5", p, sizeof p);
    h_del(f, "/samples/category");
    h_put(f, "/samples/category", H5T_STD_I32LE, NS, 0, cat);
    finish_bad(f, p, "/samples/category", "sample 4 has category 3, outside [0, 3)");
    cat[4] = -1;
    f = start("c_neg.h5", p, sizeof p);
    h_del(f, "/samples/category");
    h_put(f, "/samples/category", H5T_STD_I32LE, NS, 0, cat);
    finish_bad(f, p, "/samples/category", "category -1");
    cat[4] = 0;
    f = start("c_len.h5", p, sizeof p);
    h_del(f, "/samples/category");
    h_put(f, "/samples/category", H5T_STD_I32LE, NS - 1, 0, cat);
    finish_bad(f, p, "/samples/category", "5 entries, must be n_samples = 6");
    const char *dup[3] = {"web", "code", "web"};
    f = start("c_dup.h5", p, sizeof p);
    h_attr_names(f, 3, dup, 1);
    finish_bad(f, p, "attribute categories", "\"web\" appears twice");
    const char *empty[3] = {"web", "", "code"};
    f = start("c_empty.h5", p, sizeof p);
    h_attr_names(f, 3, empty, 1);
    finish_bad(f, p, "attribute categories", "name 1 is 0 bytes");
    /* two names for indices up to 2 */
    f = start("c_short.h5", p, sizeof p);
    h_attr_names(f, 2, CATS, 1);
    finish_bad(f, p, "/samples/category", "outside [0, 2)");
    f = start("c_num.h5", p, sizeof p);
    H5Adelete(f, "categories");
    h_attr_i64(f, "categories", 3);
    finish_bad(f, p, "attribute categories", "must be a string");
    f = start("c_joined_dup.h5", p, sizeof p);
    h_attr_joined(f, "web\nbooks\nweb");
    finish_bad(f, p, "attribute categories", "appears twice");
    f = start("c_joined_empty.h5", p, sizeof p);
    h_attr_joined(f, "web\n\ncode");
    finish_bad(f, p, "attribute categories", "name 1 is 0 bytes");

    /* accepted spellings: fixed-length array, one joined string (a trailing newline allowed) */
    const char *const *names[2] = {CATS, CATS};
    for (int form = 0; form < 3; form++) {
        char name[32];
        snprintf(name, sizeof name, "c_form%d.h5", form);
        f = start(name, p, sizeof p);
        if (form == 0) h_attr_names(f, 3, names[0], 0);
        else h_attr_joined(f, form == 1 ? "web\nbooks\ncode" : "web\nbooks\ncode\n");
        assert_true(H5Fclose(f) >= 0);
        tokfile *t = open_ok(p);
        assert_int_equal(tokfile_n_categories(t), 3);
        for (int k = 0; k < 3; k++) assert_string_equal(tokfile_category(t, k), CATS[k]);
        tokfile_close(t);
    }
}

static void test_bad_bytes_mask(void **state) {
    (void)state;
    char p[128];
    int64_t b[NS] = {1, 2, 3, -4, 5, 6};
    hid_t f = start("y_neg.h5", p, sizeof p);
    h_del(f, "/samples/bytes");
    h_put(f, "/samples/bytes", H5T_STD_I64LE, NS, 0, b);
    finish_bad(f, p, "/samples/bytes", "sample 3 has -4 bytes");
    f = start("y_len.h5", p, sizeof p);
    h_del(f, "/samples/bytes");
    h_put(f, "/samples/bytes", H5T_STD_I64LE, NS + 1, 0, (int64_t[7]){1, 2, 3, 4, 5, 6, 7});
    finish_bad(f, p, "/samples/bytes", "7 entries, must be n_samples = 6");

    int64_t m[NT];
    for (int i = 0; i < NT; i++) m[i] = 1;
    f = start("m_len.h5", p, sizeof p);
    h_del(f, "/loss_mask");
    h_put(f, "/loss_mask", H5T_STD_U8LE, NT - 1, 0, m);
    finish_bad(f, p, "/loss_mask", "19 entries, must be n_tokens = 20");
    f = start("m_float.h5", p, sizeof p);
    h_del(f, "/loss_mask");
    h_put(f, "/loss_mask", H5T_IEEE_F32LE, NT, 0, m);
    finish_bad(f, p, "/loss_mask", "integer");

    /* values are checked as samples are read; a wider type is fine */
    m[9] = 2;
    for (int wide = 0; wide <= 1; wide++) {
        f = start(wide ? "m_val32.h5" : "m_val.h5", p, sizeof p);
        h_del(f, "/loss_mask");
        h_put(f, "/loss_mask", wide ? H5T_STD_I32LE : H5T_STD_U8LE, NT, 0, m);
        assert_true(H5Fclose(f) >= 0);
        tokfile *t = open_ok(p);
        uint32_t buf[16];
        uint8_t mask[16];
        assert_int_equal(tokfile_read_sample_mask(t, 2, buf, mask, 16, g_err, sizeof g_err), 4);
        for (int k = 0; k < 4; k++) assert_int_equal(mask[k], 1);
        assert_int_equal(tokfile_read_sample_mask(t, 4, buf, mask, 16, g_err, sizeof g_err), -1);
        if (!strstr(g_err, p) || !strstr(g_err, "/loss_mask") || !strstr(g_err, "sample 4") || !strstr(g_err, "value 2"))
            fail_msg("message: %s", g_err);
        /* a cut read that stops before the bad value is fine */
        assert_int_equal(tokfile_read_sample_mask(t, 4, buf, mask, 1, g_err, sizeof g_err), 1);
        tokfile_close(t);
    }
}

static void test_bad_docs(void **state) {
    (void)state;
    char p[128];
    int64_t h[ND] = {1, 2, 3, 4, 5}, mh[ND * PERM];
    for (int i = 0; i < ND * PERM; i++) mh[i] = i;
    hid_t f = start("d_h32.h5", p, sizeof p);
    h_del(f, "/docs/hash");
    h_put(f, "/docs/hash", H5T_STD_U32LE, ND, 0, h);
    finish_bad(f, p, "/docs/hash", "64-bit");
    f = start("d_nohash.h5", p, sizeof p);
    h_del(f, "/docs/hash");
    finish_bad(f, p, "/docs/hash", "missing");
    f = start("d_rows.h5", p, sizeof p);
    h_del(f, "/docs/minhash");
    h_put(f, "/docs/minhash", H5T_STD_U32LE, ND - 1, PERM, mh);
    finish_bad(f, p, "/docs/minhash", "4 rows, must be n_docs = 5");
    f = start("d_1d.h5", p, sizeof p);
    h_del(f, "/docs/minhash");
    h_put(f, "/docs/minhash", H5T_STD_U32LE, ND, 0, mh);
    finish_bad(f, p, "/docs/minhash", "2-D");
    f = start("d_u64.h5", p, sizeof p);
    h_del(f, "/docs/minhash");
    h_put(f, "/docs/minhash", H5T_STD_U64LE, ND, PERM, mh);
    finish_bad(f, p, "/docs/minhash", "32-bit");
    f = start("d_perm.h5", p, sizeof p);
    h_attr_i64(f, "minhash_perm", 16);
    finish_bad(f, p, "attribute minhash_perm", "must equal the columns of /docs/minhash (8)");
    f = start("d_bands.h5", p, sizeof p);
    h_attr_i64(f, "minhash_bands", 3);
    finish_bad(f, p, "attribute minhash_bands", "divide minhash_perm 8");
    f = start("d_words.h5", p, sizeof p);
    h_attr_i64(f, "minhash_words", 2);
    finish_bad(f, p, "attribute minhash_words", "0 or 1");
    f = start("d_ngram.h5", p, sizeof p);
    h_attr_i64(f, "minhash_ngram", 0);
    finish_bad(f, p, "attribute minhash_ngram", "1 .. 1024");
    f = start("d_noseed.h5", p, sizeof p);
    H5Adelete(f, "minhash_seed");
    finish_bad(f, p, "attribute minhash_seed", "missing");
    f = start("d_nobands.h5", p, sizeof p);
    H5Adelete(f, "minhash_bands");
    finish_bad(f, p, "attribute minhash_bands", "missing");
    /* the attributes without the signatures */
    f = start("d_attrs.h5", p, sizeof p);
    h_del(f, "/docs/minhash");
    finish_bad(f, p, "attribute minhash_", "without /docs/minhash");
    f = start("d_attrs2.h5", p, sizeof p);
    h_del(f, "/docs/minhash");
    h_del(f, "/docs/hash");
    h_del(f, "/docs");
    finish_bad(f, p, "attribute minhash_", "without /docs/minhash");
}

/* The writer refuses what open would reject, writes nothing and leaves an
 * existing destination alone. */
static void test_writer_refuses(void **state) {
    (void)state;
    char p[128];
    path_in(p, sizeof p, "refused.h5");
    tokfile_extra x = full_extra();
    assert_int_equal(write_x(p, &x), 0);
    unsigned char *orig, *now;
    long n0 = file_bytes(p, &orig);
    int32_t cat[NS] = {0, 2, 1, 3, 0, 2};
    int64_t b_last[4] = {0, 2, 2, 5}, b_first[4] = {1, 2, 2, 6}, b_dec[4] = {0, 3, 2, 6};
    const char *dup[3] = {"web", "books", "web"}, *nl[3] = {"web", "bo\nks", "code"};
    const char *resv[1] = {"categories"};
    uint8_t mask[NT];
    memcpy(mask, g_mask, sizeof mask);
    mask[5] = 2;
    for (int c = 0; c < 11; c++) {
        x = full_extra();
        const char *want = NULL;
        switch (c) {
        case 0: x.sample_category = cat; want = "category 3 outside [0, 3)"; break;
        case 1: x.bucket_offsets = b_last; want = "last bucket offset 5 must be n_samples 6"; break;
        case 2: x.bucket_offsets = b_first; want = "start at 0"; break;
        case 3: x.bucket_offsets = b_dec; want = "not non-decreasing"; break;
        case 4: x.categories = dup; want = "named twice"; break;
        case 5: x.categories = nl; want = "without newlines"; break;
        case 6: x.loss_mask = mask; want = "loss mask value 2"; break;
        case 7: x.minhash_bands = 3; want = "out of range"; break;
        case 8: x.sample_category = NULL; want = "no sample categories"; break;
        case 9: x.n_categories = 0; x.categories = NULL; want = "without category names"; break;
        case 10: break;
        }
        int rc;
        if (c == 10) {
            int64_t v = 1;
            rc = tokfile_write_par(MPI_COMM_SELF, p, g_tok, NT, OFF, NS, 50, 1, resv, &v, NULL, &x, g_err, sizeof g_err);
            want = "reserved name";
        } else {
            rc = write_x(p, &x);
        }
        assert_int_equal(rc, 1);
        if (!strstr(g_err, p) || !strstr(g_err, want)) fail_msg("case %d: message \"%s\" lacks \"%s\"", c, g_err, want);
    }
    long n1 = file_bytes(p, &now);
    assert_int_equal(n0, n1);
    assert_memory_equal(orig, now, (size_t)n0);
    free(orig);
    free(now);
    tokfile_close(open_ok(p));
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state) {
    (void)state;
    make_data();
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina_tokopt_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_same_bytes),
        cmocka_unit_test(test_bad_buckets),    cmocka_unit_test(test_bad_categories),
        cmocka_unit_test(test_bad_bytes_mask), cmocka_unit_test(test_bad_docs),
        cmocka_unit_test(test_writer_refuses),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return rc;
}
