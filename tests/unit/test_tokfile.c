/* test_tokfile.c — the token data file (io/tokfile.c, SPEC §4): round trip,
 * every validation rule (bad files built with the HDF5 C API), token range
 * checks on read, no HDF5 error stack on stderr, and a truncation/bit-flip
 * fuzz loop over a file with every optional dataset of SPEC §9 (run it
 * under ASan via build/san/tests/test_tokfile); the
 * recorded tokenizer (/tokenizer/model): round trip and corrupt records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "tokfile.h"
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"

static char g_dir[64];

static void path_in(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", g_dir, name); }

static void capture_begin(void) { capture_begin_in(g_dir); }

/* ---- a bad-file builder over the raw HDF5 API ---- */
typedef struct {
    const char *format;   /* NULL: no attribute */
    int format_vlen;      /* variable-length string attribute */
    int64_t version;      /* < 0: no attribute */
    int64_t vocab;        /* < -1000: no attribute */
    int no_tokens;
    hid_t tok_type;       /* file type of /tokens (0: uint32) */
    int tok_2d;
    const int64_t *toks;  /* values (converted by HDF5) */
    int64_t n_tok;
    const int64_t *offs;  /* NULL: no /samples/offsets */
    int64_t n_off;
    hid_t off_type;       /* 0: int64 */
} spec;

static void put_attr_i64(hid_t f, const char *name, int64_t v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

static void build(const char *path, const spec *sp) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (sp->format) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, sp->format_vlen ? H5T_VARIABLE : strlen(sp->format));
        if (!sp->format_vlen) H5Tset_strpad(t, H5T_STR_NULLPAD);
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
        if (sp->format_vlen) H5Awrite(a, t, &sp->format);
        else H5Awrite(a, t, sp->format);
        H5Aclose(a);
        H5Sclose(s);
        H5Tclose(t);
    }
    if (sp->version >= 0) put_attr_i64(f, "version", sp->version);
    if (sp->vocab >= -1000) put_attr_i64(f, "vocab_size", sp->vocab);
    if (!sp->no_tokens) {
        hsize_t d1[1] = {(hsize_t)sp->n_tok}, d2[2] = {(hsize_t)sp->n_tok, 1};
        hid_t s = sp->tok_2d ? H5Screate_simple(2, d2, NULL) : H5Screate_simple(1, d1, NULL);
        hid_t d = H5Dcreate2(f, "tokens", sp->tok_type ? sp->tok_type : H5T_STD_U32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (sp->n_tok) H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sp->toks);
        H5Dclose(d);
        H5Sclose(s);
    }
    if (sp->offs) {
        hid_t g = H5Gcreate2(f, "samples", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t d1[1] = {(hsize_t)sp->n_off};
        hid_t s = H5Screate_simple(1, d1, NULL);
        hid_t d = H5Dcreate2(g, "offsets", sp->off_type ? sp->off_type : H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
        if (sp->n_off) H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sp->offs);
        H5Dclose(d);
        H5Sclose(s);
        H5Gclose(g);
    }
    H5Fclose(f);
}

static const int64_t TOKS[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0};
static const int64_t OFFS[4] = {0, 3, 3, 10};

static spec good_spec(void) {
    spec s = {.format = "lamina-tokens", .version = 1, .vocab = 16, .toks = TOKS, .n_tok = 10, .offs = OFFS,
              .n_off = 4};
    return s;
}

/* open must fail, print nothing, and name the file and `what` (and `rule`) */
static void expect_bad(const char *name, const spec *sp, const char *what, const char *rule) {
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, name);
    build(p, sp);
    capture_begin();
    tokfile *f = tokfile_open(p, err, sizeof err);
    long printed = capture_end();
    if (f) fail_msg("%s: opened but should fail (%s)", name, what);
    assert_int_equal(printed, 0);
    if (!strstr(err, p) || !strstr(err, what) || (rule && !strstr(err, rule)))
        fail_msg("message \"%s\" should name %s, %s and %s", err, p, what, rule ? rule : "");
}

/* ---- tests ---- */

static void test_roundtrip(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "rt.h5");
    enum { NS = 6 };
    int64_t off[NS + 1] = {0, 3, 3, 7, 8, 13, 20};
    uint32_t tok[20];
    for (int i = 0; i < 20; i++) tok[i] = (uint32_t)(i * 7 % 50);
    const char *names[2] = {"seq_len", "bos_id"};
    int64_t vals[2] = {8, 1};
    assert_int_equal(tokfile_write(p, tok, 20, off, NS, 50, 2, names, vals, err, sizeof err), 0);

    tokfile *f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(tokfile_n_samples(f), NS);
    assert_int_equal(tokfile_n_tokens(f), 20);
    assert_int_equal(tokfile_vocab_size(f), 50);
    assert_string_equal(tokfile_path(f), p);
    uint32_t buf[32];
    for (int i = 0; i < NS; i++) {
        int64_t L = off[i + 1] - off[i];
        assert_int_equal(tokfile_sample_len(f, i), L);
        memset(buf, 0xff, sizeof buf);
        assert_int_equal(tokfile_read_sample(f, i, buf, 32, err, sizeof err), L);
        assert_memory_equal(buf, tok + off[i], (size_t)L * 4);
        assert_int_equal(buf[L], 0xffffffffu); /* nothing past the sample */
    }
    /* maxlen cuts the sample */
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(tokfile_read_sample(f, 5, buf, 3, err, sizeof err), 3);
    assert_memory_equal(buf, tok + 13, 12);
    assert_int_equal(buf[3], 0xffffffffu);
    /* out of range sample */
    assert_int_equal(tokfile_read_sample(f, NS, buf, 32, err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(tokfile_sample_len(f, -1), -1);
    tokfile_close(f);

    /* the stored layout: uint32 /tokens, int64 offsets, the attributes */
    hid_t h = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(h >= 0);
    hid_t d = H5Dopen2(h, "/tokens", H5P_DEFAULT), t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_STD_U32LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    d = H5Dopen2(h, "/samples/offsets", H5P_DEFAULT);
    t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_STD_I64LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    int64_t v = 0;
    hid_t a = H5Aopen(h, "seq_len", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    assert_int_equal(v, 8);
    a = H5Aopen(h, "version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    assert_int_equal(v, 1);
    H5Fclose(h);

    /* writing an invalid set is refused */
    int64_t bad_off[3] = {0, 5, 4};
    assert_int_equal(tokfile_write(p, tok, 4, bad_off, 2, 50, 0, NULL, NULL, err, sizeof err), 1);
    assert_int_equal(tokfile_write(p, tok, 20, off, NS, 10, 0, NULL, NULL, err, sizeof err), 1);
    assert_int_equal(tokfile_write(p, tok, 0, off, 0, 50, 0, NULL, NULL, err, sizeof err), 1);
}

/* Other writers: variable-length format string, int32 tokens and int32
 * offsets are accepted. */
static void test_other_writers(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "vlen.h5");
    spec s = good_spec();
    s.format_vlen = 1;
    s.tok_type = H5T_STD_I32LE;
    s.off_type = H5T_STD_U32LE;
    build(p, &s);
    tokfile *f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    uint32_t buf[16];
    assert_int_equal(tokfile_read_sample(f, 2, buf, 16, err, sizeof err), 7);
    for (int i = 0; i < 7; i++) assert_int_equal(buf[i], TOKS[3 + i]);
    assert_int_equal(tokfile_read_sample(f, 1, buf, 16, err, sizeof err), 0);
    tokfile_close(f);

    /* a negative id in a signed file is an error, not a clamped 0 */
    int64_t neg[10] = {1, 2, -3, 4, 5, 6, 7, 8, 9, 0};
    s.toks = neg;
    build(p, &s);
    f = tokfile_open(p, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(tokfile_read_sample(f, 0, buf, 16, err, sizeof err), -1);
    assert_non_null(strstr(err, "-3"));
    assert_int_equal(tokfile_read_sample(f, 2, buf, 16, err, sizeof err), 7);
    tokfile_close(f);
}

static void test_bad_attributes(void **state) {
    (void)state;
    spec s = good_spec();
    s.format = "lamina-tokenz";
    expect_bad("fmt.h5", &s, "format", "lamina-tokens");
    s = good_spec();
    s.format = NULL;
    expect_bad("nofmt.h5", &s, "format", "missing");
    s = good_spec();
    s.version = 2;
    expect_bad("ver.h5", &s, "version", "= 2");
    s = good_spec();
    s.version = -1;
    expect_bad("nover.h5", &s, "version", "missing");
    s = good_spec();
    s.vocab = 0;
    expect_bad("voc0.h5", &s, "vocab_size", "> 0");
    s = good_spec();
    s.vocab = -5000;
    expect_bad("novoc.h5", &s, "vocab_size", "missing");
}

static void test_bad_datasets(void **state) {
    (void)state;
    spec s = good_spec();
    s.no_tokens = 1;
    expect_bad("notok.h5", &s, "/tokens", "missing");
    s = good_spec();
    s.tok_2d = 1;
    expect_bad("tok2d.h5", &s, "/tokens", "1-D");
    s = good_spec();
    s.tok_type = H5T_IEEE_F32LE;
    expect_bad("tokf.h5", &s, "/tokens", "integer");
    s = good_spec();
    s.offs = NULL;
    expect_bad("nooff.h5", &s, "/samples/offsets", "missing");

    int64_t dec[4] = {0, 6, 3, 10};
    s = good_spec();
    s.offs = dec;
    expect_bad("dec.h5", &s, "/samples/offsets", "not non-decreasing at index 2");
    int64_t last[4] = {0, 3, 3, 9};
    s.offs = last;
    expect_bad("last.h5", &s, "/samples/offsets", "last offset 9 != length of /tokens 10");
    int64_t first[4] = {1, 3, 3, 10};
    s.offs = first;
    expect_bad("first.h5", &s, "/samples/offsets", "offsets[0]");
    int64_t zero[1] = {0};
    s.offs = zero;
    s.n_off = 1;
    s.n_tok = 0;
    expect_bad("zero.h5", &s, "/samples/offsets", "no samples");
    s.n_off = 0;
    expect_bad("empty.h5", &s, "/samples/offsets", "no samples");
}

static void test_token_out_of_vocab(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "oov.h5");
    int64_t toks[10] = {1, 2, 3, 4, 5, 16, 7, 8, 9, 0}; /* 16 == vocab */
    spec s = good_spec();
    s.toks = toks;
    build(p, &s);
    tokfile *f = tokfile_open(p, err, sizeof err);
    assert_non_null(f);
    uint32_t buf[16];
    assert_int_equal(tokfile_read_sample(f, 0, buf, 16, err, sizeof err), 3);
    assert_int_equal(tokfile_read_sample(f, 2, buf, 16, err, sizeof err), -1);
    if (!strstr(err, p) || !strstr(err, "sample 2") || !strstr(err, "16"))
        fail_msg("message \"%s\" should name file, sample and id", err);
    /* a cut read that stops before the bad id is fine */
    assert_int_equal(tokfile_read_sample(f, 2, buf, 2, err, sizeof err), 2);
    tokfile_close(f);
}

static void test_not_hdf5(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "garbage.h5");
    FILE *fp = fopen(p, "wb");
    for (int i = 0; i < 4096; i++) fputc((i * 131 + 7) & 0xff, fp);
    fclose(fp);
    capture_begin();
    tokfile *f = tokfile_open(p, err, sizeof err);
    long printed = capture_end();
    assert_null(f);
    assert_int_equal(printed, 0);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "not an HDF5 file"));
    path_in(p, sizeof p, "does-not-exist.h5");
    assert_null(tokfile_open(p, err, sizeof err));
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "cannot read"));
}

/* xorshift64: the fuzz loop's fixed-seed generator */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Damaged copies of a valid file: open fails with a message naming the file,
 * or succeeds and every sample reads (or fails cleanly); never a crash, never
 * an HDF5 stack on stderr. */
static void test_fuzz(void **state) {
    (void)state;
    char p[128], q[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "fuzz_src.h5");
    path_in(q, sizeof q, "fuzz.h5");
    enum { NS = 40, NT = 900 };
    int64_t off[NS + 1];
    uint32_t tok[NT];
    for (int i = 0; i <= NS; i++) off[i] = (int64_t)i * NT / NS;
    for (int i = 0; i < NT; i++) tok[i] = (uint32_t)((i * 2654435761u) % 300);
    /* with every optional dataset (SPEC §9): 4 buckets, 3 categories,
     * bytes, a loss mask, document hashes and signatures */
    enum { ND = 12, PERM = 8 };
    static const char *const cats[3] = {"web", "books", "code"};
    int64_t buckets[5] = {0, 10, 10, 25, NS}, bytes[NS];
    int32_t cat[NS];
    uint8_t mask[NT];
    uint64_t hash[ND];
    uint32_t mh[ND * PERM];
    for (int i = 0; i < NS; i++) {
        cat[i] = (int32_t)(i % 3);
        bytes[i] = 4 * (off[i + 1] - off[i]);
    }
    for (int i = 0; i < NT; i++) mask[i] = (uint8_t)(i % 5 != 0);
    for (int d = 0; d < ND; d++) hash[d] = (uint64_t)d * 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < ND * PERM; k++) mh[k] = (uint32_t)k * 2654435761u;
    tokfile_extra x = {3, cats, 4, buckets, cat, bytes, mask, ND, hash, mh, PERM, 4, 5, 0, 7};
    assert_int_equal(tokfile_write_par(MPI_COMM_SELF, p, tok, NT, off, NS, 300, 0, NULL, NULL, NULL, &x, err, sizeof err), 0);
    FILE *fp = fopen(p, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *orig = malloc((size_t)size), *cur = malloc((size_t)size);
    assert_int_equal(fread(orig, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);

    uint64_t seed = 0x5eed1234abcdull;
    int opened = 0, refused = 0, read_err = 0;
    uint32_t *buf = malloc(sizeof(uint32_t) * NT);
    uint8_t *mbuf = malloc(NT);
    uint64_t hbuf[ND];
    uint32_t mhbuf[ND * PERM];
    capture_begin();
    for (int c = 0; c < 200; c++) {
        long len = size;
        memcpy(cur, orig, (size_t)size);
        if (c < 70) {
            len = (long)(rng_next(&seed) % (uint64_t)size); /* truncation */
        } else {
            int flips = 1 + (int)(rng_next(&seed) % 4);
            for (int k = 0; k < flips; k++) {
                /* a quarter of the flips land in the first 2 KiB (metadata), the
                 * others anywhere: some cases damage only the raw data, which
                 * open must validate (offsets, buckets, categories, bytes) or
                 * reads must check (ids, mask values) */
                int meta = rng_next(&seed) % 4 == 0;
                long at = (long)(rng_next(&seed) % (uint64_t)(meta ? (size < 2048 ? size : 2048) : size));
                cur[at] ^= (unsigned char)(1u << (rng_next(&seed) % 8));
            }
        }
        fp = fopen(q, "wb");
        fwrite(cur, 1, (size_t)len, fp);
        fclose(fp);
        err[0] = 0;
        tokfile *f = tokfile_open(q, err, sizeof err);
        if (!f) {
            refused++;
            if (!strstr(err, q)) {
                capture_end();
                fail_msg("case %d: message \"%s\" does not name the file", c, err);
            }
            continue;
        }
        opened++;
        for (int64_t i = 0; i < tokfile_n_samples(f); i++) {
            int64_t L = tokfile_sample_len(f, i);
            if (L < 0 || L > tokfile_n_tokens(f)) {
                capture_end();
                fail_msg("case %d: sample %lld has length %lld", c, (long long)i, (long long)L);
            }
            int64_t m = L < NT ? L : NT;
            int64_t got = tokfile_read_sample_mask(f, i, buf, mbuf, m, err, sizeof err);
            if (got < 0) read_err++;
            else if (got != m) {
                capture_end();
                fail_msg("case %d: read %lld of %lld", c, (long long)got, (long long)m);
            }
            /* what open accepted is in range */
            int32_t k = tokfile_sample_category(f, i);
            if ((tokfile_n_categories(f) ? k >= tokfile_n_categories(f) : k != 0) || k < 0 || tokfile_sample_bytes(f, i) < -1) {
                capture_end();
                fail_msg("case %d: sample %lld: category %d, bytes %lld", c, (long long)i, k,
                         (long long)tokfile_sample_bytes(f, i));
            }
        }
        for (int64_t b = 1; b <= tokfile_n_buckets(f); b++)
            if (tokfile_bucket_start(f, b) < tokfile_bucket_start(f, b - 1) ||
                tokfile_bucket_start(f, tokfile_n_buckets(f)) != tokfile_n_samples(f)) {
                capture_end();
                fail_msg("case %d: bucket %lld", c, (long long)b);
            }
        int64_t nd = tokfile_n_docs(f);
        int has_mh = tokfile_minhash_cfg(f, NULL, NULL, NULL, NULL, NULL);
        if (nd > ND || (has_mh && nd > 0 && tokfile_read_docs(f, 0, nd, hbuf, mhbuf, err, sizeof err) == 2) ||
            (!has_mh && nd > 0 && tokfile_read_docs(f, 0, nd, hbuf, NULL, err, sizeof err) == 2)) {
            capture_end();
            fail_msg("case %d: %lld documents: %s", c, (long long)nd, err);
        }
        tokfile_close(f);
    }
    long printed = capture_end();
    free(buf);
    free(mbuf);
    free(orig);
    free(cur);
    print_message("fuzz: %d refused, %d opened, %d sample reads refused\n", refused, opened, read_err);
    assert_int_equal(printed, 0);
    assert_true(refused >= 70); /* every truncation is caught */
    assert_true(opened > 0);
}

/* A file changed under an open reader: truncated (and a read that would
 * cross the new end), replaced by rename, modified in place, removed; each is
 * a runtime failure (1 / -2) naming the file; a FIFO is refused at open. */
static void write_big(const char *p, int64_t ns, int64_t len) {
    char err[LM_ERRLEN] = {0};
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(ns + 1));
    uint32_t *tok = malloc(sizeof(uint32_t) * (size_t)(ns * len));
    for (int64_t i = 0; i <= ns; i++) off[i] = i * len;
    for (int64_t i = 0; i < ns * len; i++) tok[i] = (uint32_t)(i % 50);
    if (tokfile_write(p, tok, ns * len, off, ns, 50, 0, NULL, NULL, err, sizeof err)) fail_msg("%s", err);
    free(off);
    free(tok);
}

static void test_changed_under_reader(void **state) {
    (void)state;
    char p[128], q[160], err[LM_ERRLEN] = {0};
    uint32_t buf[100];
    path_in(p, sizeof p, "live.h5");
    enum { NS = 1000, LEN = 100 }; /* 400 kB of tokens */
    write_big(p, NS, LEN);
    tokfile *f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(tokfile_check(f, err, sizeof err), 0);
    assert_int_equal(tokfile_read_sample(f, NS - 1, buf, LEN, err, sizeof err), LEN);
    /* shrink it: the check sees the new size; a sample before the new end
     * still reads, one past it is refused instead of coming back as zeros */
    assert_int_equal(truncate(p, 200000), 0);
    assert_int_equal(tokfile_check(f, err, sizeof err), 1);
    if (!strstr(err, p) || !strstr(err, "/tokens") || !strstr(err, "changed size")) fail_msg("message: %s", err);
    assert_int_equal(tokfile_read_sample(f, 0, buf, LEN, err, sizeof err), LEN);
    assert_int_equal(tokfile_read_sample(f, NS - 1, buf, LEN, err, sizeof err), -2);
    if (!strstr(err, p) || !strstr(err, "past the end of the file")) fail_msg("message: %s", err);
    tokfile_close(f);

    /* replaced: a new file written to the same name (tokfile_write renames a
     * complete temporary over it, so the reader sees a new inode) */
    write_big(p, NS, LEN);
    f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    write_big(p, NS, LEN);
    assert_int_equal(tokfile_check(f, err, sizeof err), 1);
    if (!strstr(err, p) || !strstr(err, "replaced")) fail_msg("message: %s", err);
    snprintf(q, sizeof q, "%s.tmp.%ld", p, (long)getpid());
    assert_int_equal(access(q, F_OK), -1); /* no temporary left */
    tokfile_close(f);

    /* modified in place (same size, new mtime), then removed */
    f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(tokfile_check(f, err, sizeof err), 1);
    if (!strstr(err, p) || !strstr(err, "modified")) fail_msg("message: %s", err);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(tokfile_check(f, err, sizeof err), 1);
    if (!strstr(err, p) || !strstr(err, "gone")) fail_msg("message: %s", err);
    tokfile_close(f);

    /* a FIFO is refused before any open() (which would block) */
    path_in(q, sizeof q, "fifo.h5");
    assert_int_equal(mkfifo(q, 0644), 0);
    assert_null(tokfile_open(q, err, sizeof err));
    if (!strstr(err, q) || !strstr(err, "not a regular file")) fail_msg("message: %s", err);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina_tok_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

/* ---- the recorded tokenizer (/tokenizer/model, SPEC §4) ---- */

static const uint32_t TK_TOK[6] = {1, 2, 3, 4, 5, 6};
static const int64_t TK_OFF[3] = {0, 3, 6};

/* A valid token file (vocab 50) without a tokenizer, then /tokenizer built
 * by hand: a dataset of type ft and ndim (1 or 2) holding n bytes, and the
 * attributes asked for (bos < -1000 or eos < -1000: left out; bos_float:
 * bos_id stored as a double). */
static void tk_build(const char *p, hid_t ft, int ndim, hsize_t n, int64_t bos, int64_t eos, int bos_float,
                     int no_dataset) {
    char err[LM_ERRLEN];
    assert_int_equal(tokfile_write(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, err, sizeof err), 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!no_dataset) {
        hsize_t dims[2] = {n, 2};
        hid_t sp = H5Screate_simple(ndim, dims, NULL);
        hid_t d = H5Dcreate2(g, "model", ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t as = H5Screate(H5S_SCALAR);
        if (bos > -1000) {
            double x = (double)bos;
            hid_t a = H5Acreate2(d, "bos_id", bos_float ? H5T_IEEE_F64LE : H5T_STD_I64LE, as, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, bos_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, bos_float ? (void *)&x : (void *)&bos);
            H5Aclose(a);
        }
        if (eos > -1000) {
            hid_t a = H5Acreate2(d, "eos_id", H5T_STD_I64LE, as, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, H5T_NATIVE_INT64, &eos);
            H5Aclose(a);
        }
        H5Sclose(as);
        H5Dclose(d);
        H5Sclose(sp);
    }
    H5Gclose(g);
    H5Fclose(f);
}

static void tk_bad(const char *name, hid_t ft, int ndim, hsize_t n, int64_t bos, int64_t eos, int bos_float,
                   int no_dataset, const char *rule) {
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, name);
    tk_build(p, ft, ndim, n, bos, eos, bos_float, no_dataset);
    capture_begin();
    tokfile *f = tokfile_open(p, err, sizeof err);
    long printed = capture_end();
    if (f) fail_msg("%s: opened but should fail (%s)", name, rule);
    assert_int_equal(printed, 0);
    if (!strstr(err, p) || !strstr(err, "/tokenizer") || !strstr(err, rule))
        fail_msg("message \"%s\" should name %s, /tokenizer and \"%s\"", err, p, rule);
}

static void test_tokenizer(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    path_in(p, sizeof p, "tok.h5");
    unsigned char model[300];
    for (int i = 0; i < 300; i++) model[i] = (unsigned char)(i * 37 + 11); /* every byte value, NULs included */
    lm_tokrec w = {model, sizeof model, 48, 49, 0};
    assert_int_equal(tokfile_write_tok(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, &w, err, sizeof err), 0);
    tokfile *f = tokfile_open(p, err, sizeof err);
    if (!f) fail_msg("%s", err);
    lm_tokrec r;
    assert_int_equal(tokfile_tokenizer(f, &r, err, sizeof err), 0);
    assert_non_null(r.model);
    assert_int_equal(r.len, sizeof model);
    assert_memory_equal(r.model, model, sizeof model);
    assert_int_equal(r.bos_id, 48);
    assert_int_equal(r.eos_id, 49);
    assert_int_equal(r.vocab_size, 50); /* the file's */
    assert_true(tokrec_equal(&r, &w));
    model[7] ^= 1;
    assert_false(tokrec_equal(&r, &w));
    model[7] ^= 1;
    tokrec_free(&r);
    assert_null(r.model);
    tokfile_close(f);
    /* stored as uint8 [300] under /tokenizer/model */
    hid_t h = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(h, "/tokenizer/model", H5P_DEFAULT), t = H5Dget_type(d);
    assert_true(H5Tequal(t, H5T_STD_U8LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(h);

    /* a file without one */
    path_in(p, sizeof p, "notok.h5");
    assert_int_equal(tokfile_write(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, err, sizeof err), 0);
    f = tokfile_open(p, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(tokfile_tokenizer(f, &r, err, sizeof err), 0);
    assert_null(r.model);
    assert_int_equal(r.len, 0);
    tokfile_close(f);

    /* the writer refuses what open would reject; -1 ids are allowed */
    lm_tokrec bad = {model, sizeof model, 50, 1, 0};
    assert_int_equal(tokfile_write_tok(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, &bad, err, sizeof err), 1);
    bad = (lm_tokrec){model, 0, 1, 2, 0};
    assert_int_equal(tokfile_write_tok(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, &bad, err, sizeof err), 1);
    bad = (lm_tokrec){model, 5, -1, -1, 0};
    assert_int_equal(tokfile_write_tok(p, TK_TOK, 6, TK_OFF, 2, 50, 0, NULL, NULL, &bad, err, sizeof err), 0);

    /* corrupt records: each refused at open, naming the file and dataset */
    tk_bad("tk_int32.h5", H5T_STD_I32LE, 1, 10, 1, 2, 0, 0, "must be uint8");
    tk_bad("tk_int8.h5", H5T_STD_I8LE, 1, 10, 1, 2, 0, 0, "must be uint8");
    tk_bad("tk_2d.h5", H5T_STD_U8LE, 2, 10, 1, 2, 0, 0, "must be 1-D");
    tk_bad("tk_empty.h5", H5T_STD_U8LE, 1, 0, 1, 2, 0, 0, "0 bytes");
    tk_bad("tk_nobos.h5", H5T_STD_U8LE, 1, 10, -5000, 2, 0, 0, "bos_id: missing");
    tk_bad("tk_noeos.h5", H5T_STD_U8LE, 1, 10, 1, -5000, 0, 0, "eos_id: missing");
    tk_bad("tk_fbos.h5", H5T_STD_U8LE, 1, 10, 1, 2, 1, 0, "bos_id: must be one integer");
    tk_bad("tk_negbos.h5", H5T_STD_U8LE, 1, 10, -2, 2, 0, 0, "out of range");
    tk_bad("tk_bigeos.h5", H5T_STD_U8LE, 1, 10, 1, 50, 0, 0, "below the file's vocab_size");
    tk_bad("tk_nods.h5", H5T_STD_U8LE, 1, 10, 1, 2, 0, 1, "without its dataset");
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* no system(): no fork after MPI_Init */
static int teardown(void **state) {
    (void)state;
    return nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv); /* tokfile_write_par on MPI_COMM_SELF */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_other_writers),
        cmocka_unit_test(test_bad_attributes), cmocka_unit_test(test_bad_datasets),
        cmocka_unit_test(test_token_out_of_vocab), cmocka_unit_test(test_not_hdf5),
        cmocka_unit_test(test_fuzz),           cmocka_unit_test(test_changed_under_reader),
        cmocka_unit_test(test_tokenizer),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return rc;
}
