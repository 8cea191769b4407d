/* test_ckpt.c — checkpoint files (io/ckpt.c, SPEC §5) on one rank: round
 * trip of tensors, moments and metadata, the stored layout and checksum
 * formula, element ranges that start and end inside rows (every range of
 * every tensor read back, transfer blocks that cut rows on write and read,
 * ranges outside the tensor refused), latest/keep pruning, stale .tmp
 * removal, the pause hook, every
 * corruption class (exit class 2 naming the file and dataset), and a
 * truncation/bit-flip fuzz loop that must never crash (run it under ASan via
 * build/san/tests/test_ckpt). The multi-rank cases are in test_ckpt_mpi.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ckpt.h"
#include "common.h"
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"

static char g_dir[64];
static const char *DECK = "[model]\ndim = 5\nn_layers = 1\n# resolved deck text\n";

enum { NT = 3 };
static const char *NAMES[NT] = {"model.embed_tokens.weight", "model.norm.weight",
                                "model.layers.0.mlp.up_proj.weight"};
static const int NDIM[NT] = {2, 1, 2};
static const int64_t ROWS[NT] = {7, 5, 3}, COLS[NT] = {5, 1, 4};

/* three sets (weights, exp_avg, exp_avg_sq) of NT tensors with distinct values */
typedef struct {
    ckpt_tensor t[3][NT];
    float *buf[3][NT];
} tset;

static float value(int set, int k, int64_t i) { return (float)(set * 100 + k * 10) + 0.001f * (float)i - 0.37f; }

static void tset_init(tset *s, int fill) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) {
            int64_t n = ROWS[k] * COLS[k];
            s->buf[set][k] = calloc((size_t)n, sizeof(float));
            for (int64_t i = 0; i < n && fill; i++) s->buf[set][k][i] = value(set, k, i);
            ckpt_tensor t = {NAMES[k], NDIM[k], ROWS[k], COLS[k], 0, ROWS[k] * COLS[k], s->buf[set][k], 0, 0, 0, 0, NULL, NULL, NULL};
            s->t[set][k] = t;
        }
}
static void tset_free(tset *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) free(s->buf[set][k]);
}
static void tset_check(const tset *s, int nsets) {
    for (int set = 0; set < nsets; set++)
        for (int k = 0; k < NT; k++)
            for (int64_t i = 0; i < ROWS[k] * COLS[k]; i++)
                if (s->buf[set][k][i] != value(set, k, i))
                    fail_msg("set %d tensor %s element %lld: %g != %g", set, NAMES[k], (long long)i,
                             (double)s->buf[set][k][i], (double)value(set, k, i));
}

static ckpt_meta meta_for(long step) {
    ckpt_meta m = {.step = step, .tokens_seen = 1000 * step + 7, .consumed_samples = 4 * step, .seed = 0xF00DBEEFCAFE1234ull,
                   .dim = 5, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .ffn_dim = 4, .vocab_size = 7,
                   .max_seq_len = 16, .tie_embeddings = 1, .norm_eps = 1e-5, .rope_theta = 10000.0, .deck_text = DECK};
    return m;
}

static void save_step(const char *dir, long step, int keep) {
    tset s;
    tset_init(&s, 1);
    ckpt_meta m = meta_for(step);
    char err[LM_ERRLEN] = {0};
    int rc = ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NT, keep, err, sizeof err);
    if (rc) fail_msg("ckpt_save: %s", err);
    tset_free(&s);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void read_text(const char *p, char *buf, size_t n) {
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    size_t got = fread(buf, 1, n - 1, fp);
    buf[got] = 0;
    fclose(fp);
}

static void copy_file(const char *from, const char *to, long len) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t r;
    long done = 0;
    while ((len < 0 || done < len) && (r = fread(buf, 1, sizeof buf, a)) > 0) {
        if (len >= 0 && done + (long)r > len) r = (size_t)(len - done);
        fwrite(buf, 1, r, b);
        done += (long)r;
    }
    fclose(a);
    fclose(b);
}

static void flip_byte(const char *p, long at) {
    int fd = open(p, O_RDWR);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* The checksum of ckpt.h, written out independently of io/ckpt.c. */
static uint64_t ref_checksum(const float *x, int64_t n) {
    uint64_t s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull + b;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        s += z ^ (z >> 31);
    }
    return s;
}

/* The stored layout of a checkpoint written by save_step, read with plain
 * serial HDF5: every dataset has the full logical shape, float32 LE, the
 * values of value(), and a uint64 checksum equal to ref_checksum. */
static void check_stored(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) {
            static const char *G[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};
            char dp[256];
            snprintf(dp, sizeof dp, "%s/%s", G[set], NAMES[k]);
            hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
            assert_true(d >= 0);
            hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
            hsize_t dims[2] = {0, 0};
            assert_int_equal(H5Sget_simple_extent_ndims(sp), NDIM[k]);
            H5Sget_simple_extent_dims(sp, dims, NULL);
            assert_int_equal(dims[0], ROWS[k]);
            if (NDIM[k] == 2) assert_int_equal(dims[1], COLS[k]);
            assert_true(H5Tequal(ty, H5T_IEEE_F32LE) > 0);
            int64_t n = ROWS[k] * COLS[k];
            float *x = malloc(sizeof(float) * (size_t)n);
            assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
            for (int64_t i = 0; i < n; i++)
                if (x[i] != value(set, k, i)) fail_msg("%s: %s element %lld: %g", path, dp, (long long)i, (double)x[i]);
            uint64_t cs = 0;
            hid_t a = H5Aopen(d, "checksum", H5P_DEFAULT);
            hid_t at = H5Aget_type(a);
            assert_true(H5Tequal(at, H5T_STD_U64LE) > 0);
            H5Aread(a, H5T_NATIVE_UINT64, &cs);
            assert_true(cs == ref_checksum(x, n));
            free(x);
            H5Tclose(at);
            H5Aclose(a);
            H5Tclose(ty);
            H5Sclose(sp);
            H5Dclose(d);
        }
    H5Fclose(f);
}

static void capture_begin(void) { capture_begin_in(g_dir); }

/* ---- tests ---- */

static void test_roundtrip(void **state) {
    (void)state;
    char dir[128], path[256], err[LM_ERRLEN] = {0};
    snprintf(dir, sizeof dir, "%s/rt/nested", g_dir); /* created with mkdir -p semantics */
    assert_int_equal(ckpt_find_latest(dir, path, sizeof path, err, sizeof err), 0);
    save_step(dir, 12, 3);
    assert_int_equal(ckpt_find_latest(dir, path, sizeof path, err, sizeof err), 1);
    char want[256];
    snprintf(want, sizeof want, "%s/step_00000012.h5", dir);
    assert_string_equal(path, want);

    ckpt_meta m;
    assert_int_equal(ckpt_read_meta(MPI_COMM_WORLD, path, &m, err, sizeof err), 0);
    ckpt_meta w = meta_for(12);
    assert_int_equal(m.step, 12);
    assert_int_equal(m.tokens_seen, w.tokens_seen);
    assert_int_equal(m.consumed_samples, w.consumed_samples);
    assert_true(m.seed == w.seed);
    assert_int_equal(m.dim, 5);
    assert_int_equal(m.n_layers, 1);
    assert_int_equal(m.n_heads, 1);
    assert_int_equal(m.n_kv_heads, 1);
    assert_int_equal(m.ffn_dim, 4);
    assert_int_equal(m.vocab_size, 7);
    assert_int_equal(m.max_seq_len, 16);
    assert_int_equal(m.tie_embeddings, 1);
    assert_true(m.norm_eps == 1e-5 && m.rope_theta == 10000.0);
    assert_string_equal(m.deck_text, DECK);
    free((void *)m.deck_text);

    tset s;
    tset_init(&s, 0);
    int rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NT, err, sizeof err);
    if (rc) fail_msg("%s", err);
    tset_check(&s, 3);
    /* weights only */
    memset(s.buf[0][0], 0, sizeof(float) * 35);
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, path, s.t[0], NULL, NULL, NT, err, sizeof err), 0);
    tset_check(&s, 1);
    /* rows [2,5) of the embedding only */
    ckpt_tensor part = s.t[0][0];
    float slab[15] = {0};
    part.off = 10;
    part.count = 15;
    part.data = slab;
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, path, &part, NULL, NULL, 1, err, sizeof err), 0);
    for (int i = 0; i < 15; i++) assert_true(slab[i] == value(0, 0, 10 + i));
    /* pieces that start and end inside rows: [7,18) (tail, a whole row, a
     * head), [3,4) (inside one row), [21,35) (tail to the end) */
    const int64_t cuts[3][2] = {{7, 11}, {3, 1}, {21, 14}};
    for (int c = 0; c < 3; c++) {
        memset(slab, 0, sizeof slab);
        part.off = cuts[c][0];
        part.count = cuts[c][1];
        assert_int_equal(ckpt_load(MPI_COMM_WORLD, path, &part, NULL, NULL, 1, err, sizeof err), 0);
        for (int i = 0; i < cuts[c][1]; i++) assert_true(slab[i] == value(0, 0, cuts[c][0] + i));
        assert_true(cuts[c][1] == 15 || slab[cuts[c][1]] == 0.0f); /* nothing beyond the piece */
    }
    tset_free(&s);

    /* the stored layout, read with plain serial HDF5 */
    check_stored(path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    uint64_t seed = 0;
    hid_t a = H5Aopen(f, "seed", H5P_DEFAULT), at = H5Aget_type(a);
    assert_int_equal(H5Tget_sign(at), H5T_SGN_NONE);
    H5Aread(a, H5T_NATIVE_UINT64, &seed);
    assert_true(seed == 0xF00DBEEFCAFE1234ull);
    H5Tclose(at);
    H5Aclose(a);
    int64_t v = 0;
    a = H5Aopen_by_name(f, "/config", "tie_embeddings", H5P_DEFAULT, H5P_DEFAULT);
    at = H5Aget_type(a);
    assert_true(H5Tequal(at, H5T_STD_I64LE) > 0);
    H5Aread(a, H5T_NATIVE_INT64, &v);
    assert_int_equal(v, 1);
    H5Tclose(at);
    H5Aclose(a);
    H5Fclose(f);
}

/* A file made by another tool (no checksums, no optional attributes,
 * variable-length format string) loads. */
static void test_foreign_file(void **state) {
    (void)state;
    char p[128], err[LM_ERRLEN] = {0};
    snprintf(p, sizeof p, "%s/foreign.h5", g_dir);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sc = H5Screate(H5S_SCALAR);
    const char *fmt = "lamina-ckpt";
    hid_t a = H5Acreate2(f, "format", t, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &fmt);
    H5Aclose(a);
    int32_t one = 1, zero = 0;
    a = H5Acreate2(f, "version", H5T_STD_I32LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &one);
    H5Aclose(a);
    a = H5Acreate2(f, "step", H5T_STD_I32LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &zero);
    H5Aclose(a);
    hid_t g = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    tset s;
    tset_init(&s, 1);
    for (int k = 0; k < NT; k++) {
        hsize_t dims[2] = {(hsize_t)ROWS[k], (hsize_t)COLS[k]};
        hid_t sp = H5Screate_simple(NDIM[k], dims, NULL);
        hid_t d = H5Dcreate2(g, NAMES[k], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.buf[0][k]);
        H5Dclose(d);
        H5Sclose(sp);
    }
    H5Gclose(g);
    H5Sclose(sc);
    H5Tclose(t);
    H5Fclose(f);
    tset_free(&s);

    ckpt_meta m;
    if (ckpt_read_meta(MPI_COMM_WORLD, p, &m, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(m.step, 0);
    assert_null(m.deck_text);
    tset_init(&s, 0);
    if (ckpt_load(MPI_COMM_WORLD, p, s.t[0], NULL, NULL, NT, err, sizeof err)) fail_msg("%s", err);
    tset_check(&s, 1);
    /* asking for moments the file does not have */
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, p, s.t[0], s.t[1], s.t[2], NT, err, sizeof err), 2);
    assert_non_null(strstr(err, "/optim/exp_avg/model.embed_tokens.weight: missing"));
    tset_free(&s);
}

static void test_keep_and_latest(void **state) {
    (void)state;
    char dir[128], p[256], err[LM_ERRLEN] = {0}, text[256];
    snprintf(dir, sizeof dir, "%s/keep", g_dir);
    for (long s = 1; s <= 4; s++) save_step(dir, s, 2);
    for (long s = 1; s <= 4; s++) {
        snprintf(p, sizeof p, "%s/step_%08ld.h5", dir, s);
        assert_int_equal(file_exists(p), s >= 3);
    }
    snprintf(p, sizeof p, "%s/latest", dir);
    read_text(p, text, sizeof text);
    assert_string_equal(text, "step_00000004.h5\n");
    assert_false(file_exists(strcat(strcpy(text, dir), "/latest.tmp")));

    /* a restart from an older step: the file latest names survives even
     * though newer-numbered files fill `keep` */
    save_step(dir, 2, 1);
    snprintf(p, sizeof p, "%s/step_00000002.h5", dir);
    assert_true(file_exists(p));
    snprintf(p, sizeof p, "%s/step_00000004.h5", dir);
    assert_true(file_exists(p));
    snprintf(p, sizeof p, "%s/step_00000003.h5", dir);
    assert_false(file_exists(p));
    assert_int_equal(ckpt_find_latest(dir, p, sizeof p, err, sizeof err), 1);
    assert_non_null(strstr(p, "step_00000002.h5"));

    /* latest naming a missing file; an empty latest */
    snprintf(p, sizeof p, "%s/step_00000002.h5", dir);
    unlink(p);
    assert_int_equal(ckpt_find_latest(dir, p, sizeof p, err, sizeof err), -1);
    assert_non_null(strstr(err, "step_00000002.h5"));
    snprintf(p, sizeof p, "%s/latest", dir);
    FILE *fp = fopen(p, "w");
    fclose(fp);
    assert_int_equal(ckpt_find_latest(dir, p, sizeof p, err, sizeof err), -1);
    assert_non_null(strstr(err, "latest"));
}

static void test_stale_tmp(void **state) {
    (void)state;
    char dir[128], p[256], q[256], r[256];
    snprintf(dir, sizeof dir, "%s/stale", g_dir);
    save_step(dir, 1, 5);
    /* a crash mid-write of step 2 left its .tmp; an unrelated file stays */
    snprintf(p, sizeof p, "%s/step_00000002.h5.tmp", dir);
    snprintf(q, sizeof q, "%s/notes.txt", dir);
    FILE *fp = fopen(p, "w");
    fputs("partial", fp);
    fclose(fp);
    fp = fopen(q, "w");
    fclose(fp);
    save_step(dir, 3, 5);
    assert_false(file_exists(p));
    assert_true(file_exists(q));
    snprintf(r, sizeof r, "%s/step_00000001.h5", dir);
    assert_true(file_exists(r));
    snprintf(r, sizeof r, "%s/step_00000003.h5.tmp", dir);
    assert_false(file_exists(r));
}

static void test_unwritable_dir(void **state) {
    (void)state;
    char f[128], dir[192], err[LM_ERRLEN] = {0};
    snprintf(f, sizeof f, "%s/plainfile", g_dir);
    FILE *fp = fopen(f, "w");
    fclose(fp);
    snprintf(dir, sizeof dir, "%s/sub", f); /* a directory under a regular file */
    tset s;
    tset_init(&s, 1);
    ckpt_meta m = meta_for(1);
    assert_int_equal(ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], NULL, NULL, NT, 2, err, sizeof err), 1);
    assert_non_null(strstr(err, dir));
    /* a slab outside the tensor is refused before anything is written */
    char ok[128];
    snprintf(ok, sizeof ok, "%s/badslab", g_dir);
    s.t[0][1].off = 3; /* [3, 8) of a 5-element tensor */
    assert_int_equal(ckpt_save(MPI_COMM_WORLD, ok, &m, s.t[0], NULL, NULL, NT, 2, err, sizeof err), 1);
    assert_non_null(strstr(err, "model.norm.weight"));
    tset_free(&s);
}

static void test_pause_hook(void **state) {
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/pause", g_dir);
    setenv("LAMINA_CKPT_PAUSE_MS", "25", 1);
    double t0 = lm_now();
    save_step(dir, 1, 1);
    double dt = lm_now() - t0;
    unsetenv("LAMINA_CKPT_PAUSE_MS");
    assert_true(dt >= 9 * 0.025); /* 9 datasets */
}

/* The corruption cases: each must return 2 naming the file and dataset. */
static char g_good[256];

static void prepare_good(void) {
    char dir[128], err[LM_ERRLEN];
    snprintf(dir, sizeof dir, "%s/good", g_dir);
    if (!file_exists(dir)) save_step(dir, 7, 2);
    assert_int_equal(ckpt_find_latest(dir, g_good, sizeof g_good, err, sizeof err), 1);
}

static void expect_load_fail(const char *p, int meta_too, const char *what) {
    char err[LM_ERRLEN] = {0};
    tset s;
    tset_init(&s, 0);
    capture_begin();
    int rc = ckpt_load(MPI_COMM_WORLD, p, s.t[0], s.t[1], s.t[2], NT, err, sizeof err);
    long printed = capture_end();
    tset_free(&s);
    assert_int_equal(printed, 0);
    if (rc != 2 || !strstr(err, p) || !strstr(err, what)) fail_msg("load rc %d: \"%s\" should name %s", rc, err, what);
    if (meta_too) {
        ckpt_meta m;
        err[0] = 0;
        capture_begin();
        rc = ckpt_read_meta(MPI_COMM_WORLD, p, &m, err, sizeof err);
        printed = capture_end();
        assert_int_equal(printed, 0);
        if (rc != 2 || !strstr(err, p) || !strstr(err, what))
            fail_msg("read_meta rc %d: \"%s\" should name %s", rc, err, what);
    }
}

/* rewrite one root attribute of a copy */
static void set_root_attr(const char *p, const char *name, const char *sval, int64_t ival) {
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    H5Adelete(f, name);
    hid_t sc = H5Screate(H5S_SCALAR);
    if (sval) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(sval) + 1);
        hid_t a = H5Acreate2(f, name, t, sc, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, sval);
        H5Aclose(a);
        H5Tclose(t);
    } else {
        hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &ival);
        H5Aclose(a);
    }
    H5Sclose(sc);
    H5Fclose(f);
}

static long data_offset(const char *p, const char *dp) {
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    assert_true(off != HADDR_UNDEF);
    return (long)off;
}

static void test_corruption(void **state) {
    (void)state;
    prepare_good();
    char p[256], err[LM_ERRLEN];
    struct stat st;
    assert_int_equal(stat(g_good, &st), 0);

    snprintf(p, sizeof p, "%s/trunc.h5", g_dir);
    copy_file(g_good, p, st.st_size / 2);
    expect_load_fail(p, 1, "truncated");

    snprintf(p, sizeof p, "%s/flip.h5", g_dir);
    copy_file(g_good, p, -1);
    flip_byte(p, data_offset(p, "/model/model.embed_tokens.weight") + 13);
    expect_load_fail(p, 0, "/model/model.embed_tokens.weight: checksum mismatch (file corrupted)");
    copy_file(g_good, p, -1);
    flip_byte(p, data_offset(p, "/optim/exp_avg_sq/model.norm.weight") + 2);
    expect_load_fail(p, 0, "/optim/exp_avg_sq/model.norm.weight: checksum mismatch");
    /* without its checksum attribute the same damage is accepted (other tools) */
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete_by_name(f, "/optim/exp_avg_sq/model.norm.weight", "checksum", H5P_DEFAULT);
    H5Fclose(f);
    tset s;
    tset_init(&s, 0);
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, p, s.t[0], s.t[1], s.t[2], NT, err, sizeof err), 0);
    tset_free(&s);

    snprintf(p, sizeof p, "%s/fmt.h5", g_dir);
    copy_file(g_good, p, -1);
    set_root_attr(p, "format", "lamina-tokens", 0);
    expect_load_fail(p, 1, "format");

    snprintf(p, sizeof p, "%s/ver.h5", g_dir);
    copy_file(g_good, p, -1);
    set_root_attr(p, "version", NULL, 2);
    expect_load_fail(p, 1, "version = 2");

    snprintf(p, sizeof p, "%s/nostep.h5", g_dir);
    copy_file(g_good, p, -1);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "step");
    H5Fclose(f);
    expect_load_fail(p, 1, "step: missing");

    snprintf(p, sizeof p, "%s/missing.h5", g_dir);
    copy_file(g_good, p, -1);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "/model/model.norm.weight", H5P_DEFAULT);
    H5Fclose(f);
    expect_load_fail(p, 0, "/model/model.norm.weight: missing");

    /* wrong shape: the model asks for 8 rows of the embedding */
    tset_init(&s, 0);
    float big[40];
    s.t[0][0].rows = 8;
    s.t[0][0].count = 40;
    s.t[0][0].data = big;
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, g_good, s.t[0], NULL, NULL, NT, err, sizeof err), 2);
    assert_non_null(strstr(err, g_good));
    assert_non_null(strstr(err, "/model/model.embed_tokens.weight: shape [7,5] does not match the model [8,5]"));
    /* a 1-D tensor asked for as 2-D */
    s.t[0][0] = (ckpt_tensor){NAMES[0], 2, 7, 5, 0, 35, s.buf[0][0], 0, 0, 0, 0, NULL, NULL, NULL};
    s.t[0][1].ndim = 2;
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, g_good, s.t[0], NULL, NULL, NT, err, sizeof err), 2);
    assert_non_null(strstr(err, "/model/model.norm.weight: shape [5] does not match the model [5,1]"));
    tset_free(&s);

    /* not HDF5 at all, and no file */
    snprintf(p, sizeof p, "%s/garbage.h5", g_dir);
    FILE *fp = fopen(p, "wb");
    for (int i = 0; i < 3000; i++) fputc(i * 37 & 0xff, fp);
    fclose(fp);
    expect_load_fail(p, 1, "not an HDF5 file");
    snprintf(p, sizeof p, "%s/nothere.h5", g_dir);
    expect_load_fail(p, 1, "cannot read");
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_fuzz(void **state) {
    (void)state;
    prepare_good();
    char p[256], err[LM_ERRLEN];
    snprintf(p, sizeof p, "%s/fuzz.h5", g_dir);
    FILE *fp = fopen(g_good, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *orig = malloc((size_t)size), *cur = malloc((size_t)size);
    assert_int_equal(fread(orig, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    uint64_t seed = 0xC0FFEE12345ull;
    int refused = 0, loaded = 0;
    tset s;
    tset_init(&s, 0);
    capture_begin();
    for (int c = 0; c < 100; c++) {
        long len = size;
        memcpy(cur, orig, (size_t)size);
        if (c < 30) {
            len = (long)(rng_next(&seed) % (uint64_t)size);
        } else {
            int flips = 1 + (int)(rng_next(&seed) % 3);
            for (int k = 0; k < flips; k++)
                cur[rng_next(&seed) % (uint64_t)size] ^= (unsigned char)(1u << (rng_next(&seed) % 8));
        }
        fp = fopen(p, "wb");
        fwrite(cur, 1, (size_t)len, fp);
        fclose(fp);
        ckpt_meta m;
        err[0] = 0;
        int rc1 = ckpt_read_meta(MPI_COMM_WORLD, p, &m, err, sizeof err);
        if (rc1 == 0) free((void *)m.deck_text);
        else if (rc1 != 2 || !strstr(err, p)) {
            capture_end();
            fail_msg("case %d: read_meta rc %d \"%s\"", c, rc1, err);
        }
        err[0] = 0;
        int rc2 = ckpt_load(MPI_COMM_WORLD, p, s.t[0], s.t[1], s.t[2], NT, err, sizeof err);
        if (rc2 != 0 && (rc2 != 2 || !strstr(err, p))) {
            capture_end();
            fail_msg("case %d: load rc %d \"%s\"", c, rc2, err);
        }
        if (rc2) refused++;
        else loaded++;
    }
    long printed = capture_end();
    tset_free(&s);
    free(orig);
    free(cur);
    print_message("fuzz: %d refused, %d loaded\n", refused, loaded);
    assert_int_equal(printed, 0);
    assert_true(refused >= 30);
}

/* Every element range [a,b) of every tensor of a saved file, read on one
 * rank into buffers with guard cells on both sides: exactly the range's
 * values land, in order, and nothing outside it. Ranges that start and end
 * inside rows select the tail of a row, whole rows and the head of a row.
 * Pass 0 moves each range in one block; pass 1 sets LAMINA_CKPT_PIECE_ELEMS=3
 * so the blocks themselves start and end anywhere in rows. The ranges go in
 * batches of BATCH entries per ckpt_load (the same dataset named by several
 * entries, each read independently), which keeps the ASan run short. */
static void test_cut_ranges(void **state) {
    (void)state;
    prepare_good();
    enum { BATCH = 64, W = 40 }; /* W: 35 elements at most, a guard each side */
    const float GUARD = -12345.0f;
    char err[LM_ERRLEN] = {0};
    float *buf = malloc(sizeof(float) * BATCH * W);
    ckpt_tensor t[BATCH];
    int64_t lo[BATCH], hi[BATCH];
    int kk[BATCH];
    long loads = 0, ranges = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) setenv("LAMINA_CKPT_PIECE_ELEMS", "3", 1);
        int m = 0;
        for (int k = 0; k < NT; k++) {
            int64_t n = ROWS[k] * COLS[k];
            for (int64_t a = 0; a < n; a++)
                for (int64_t b = a + 1; b <= n; b++) {
                    float *x = buf + (size_t)m * W;
                    for (int i = 0; i < W; i++) x[i] = GUARD;
                    t[m] = (ckpt_tensor){NAMES[k], NDIM[k], ROWS[k], COLS[k], a, b - a, x + 1, 0, 0, 0, 0, NULL, NULL, NULL};
                    lo[m] = a, hi[m] = b, kk[m] = k;
                    m++;
                    int last = k == NT - 1 && a == n - 1;
                    if (m < BATCH && !last) continue;
                    int rc = ckpt_load(MPI_COMM_WORLD, g_good, t, NULL, NULL, m, err, sizeof err);
                    if (rc) fail_msg("pass %d: rc %d %s", pass, rc, err);
                    loads++;
                    for (int j = 0; j < m; j++) {
                        const float *y = buf + (size_t)j * W;
                        for (int64_t i = 0; i < hi[j] - lo[j]; i++)
                            if (y[1 + i] != value(0, kk[j], lo[j] + i))
                                fail_msg("%s [%lld,%lld) pass %d: element %lld = %g, want %g", NAMES[kk[j]],
                                         (long long)lo[j], (long long)hi[j], pass, (long long)(lo[j] + i),
                                         (double)y[1 + i], (double)value(0, kk[j], lo[j] + i));
                        if (y[0] != GUARD) fail_msg("%s [%lld,%lld): wrote before the buffer", NAMES[kk[j]], (long long)lo[j], (long long)hi[j]);
                        for (int64_t i = hi[j] - lo[j] + 1; i < W; i++)
                            if (y[i] != GUARD) fail_msg("%s [%lld,%lld): wrote past the buffer", NAMES[kk[j]], (long long)lo[j], (long long)hi[j]);
                    }
                    ranges += m;
                    m = 0;
                }
        }
        unsetenv("LAMINA_CKPT_PIECE_ELEMS");
    }
    free(buf);
    print_message("cut ranges: %ld ranges in %ld loads\n", ranges, loads);
    assert_int_equal(ranges, 2 * (35 * 36 / 2 + 5 * 6 / 2 + 12 * 13 / 2));
}

/* A one-rank save whose transfer blocks (LAMINA_CKPT_PIECE_ELEMS=3) start
 * and end inside rows stores the same tensors and checksums as a whole
 * write, and loads back verified; a flipped byte in a block that started
 * mid-row is then caught by the checksum. */
static void test_cut_blocks_save(void **state) {
    (void)state;
    char dir[128], path[256], err[LM_ERRLEN] = {0};
    snprintf(dir, sizeof dir, "%s/cutblocks", g_dir);
    setenv("LAMINA_CKPT_PIECE_ELEMS", "3", 1);
    save_step(dir, 3, 2);
    unsetenv("LAMINA_CKPT_PIECE_ELEMS");
    assert_int_equal(ckpt_find_latest(dir, path, sizeof path, err, sizeof err), 1);
    check_stored(path);
    tset s;
    tset_init(&s, 0);
    if (ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NT, err, sizeof err)) fail_msg("%s", err);
    tset_check(&s, 3);
    tset_free(&s);
    /* element 13 of the [7,5] (row 2, column 3) was in the block [12,15) */
    char p[256];
    snprintf(p, sizeof p, "%s/cutflip.h5", g_dir);
    copy_file(path, p, -1);
    flip_byte(p, data_offset(p, "/model/model.embed_tokens.weight") + 4 * 13 + 2);
    expect_load_fail(p, 0, "/model/model.embed_tokens.weight: checksum mismatch");
}

/* Ranges outside [0, rows*cols) are refused naming the tensor (save: 1,
 * load: 2 naming the file too), including offsets so large that off+count
 * would overflow; an empty range (count 0, no buffer) anywhere in [0, n]
 * is accepted on load, and on save it leaves the tensor uncovered (1). */
static void test_range_errors(void **state) {
    (void)state;
    prepare_good();
    char err[LM_ERRLEN] = {0};
    float buf[40] = {0};
    const int64_t bad[][2] = {{30, 6}, {35, 1}, {-1, 2}, {0, -1}, {INT64_MAX - 2, 5}, {INT64_MAX, 1}, {0, 36}};
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        ckpt_tensor t = {NAMES[0], 2, 7, 5, bad[c][0], bad[c][1], buf, 0, 0, 0, 0, NULL, NULL, NULL};
        err[0] = 0;
        assert_int_equal(ckpt_load(MPI_COMM_WORLD, g_good, &t, NULL, NULL, 1, err, sizeof err), 2);
        if (!strstr(err, g_good) || !strstr(err, "/model/model.embed_tokens.weight") || !strstr(err, "outside"))
            fail_msg("load [%lld +%lld): \"%s\"", (long long)bad[c][0], (long long)bad[c][1], err);
        tset s;
        tset_init(&s, 1);
        s.t[1][0].off = bad[c][0]; /* in the exp_avg set */
        s.t[1][0].count = bad[c][1];
        ckpt_meta m = meta_for(1);
        char dir[128];
        snprintf(dir, sizeof dir, "%s/badrange", g_dir);
        err[0] = 0;
        assert_int_equal(ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NT, 2, err, sizeof err), 1);
        if (!strstr(err, "/optim/exp_avg/model.embed_tokens.weight") || !strstr(err, "outside"))
            fail_msg("save [%lld +%lld): \"%s\"", (long long)bad[c][0], (long long)bad[c][1], err);
        tset_free(&s);
        char lp[256];
        assert_int_equal(ckpt_find_latest(dir, lp, sizeof lp, err, sizeof err), 0); /* nothing published */
    }
    /* a piece with elements but no buffer */
    ckpt_tensor t = {NAMES[0], 2, 7, 5, 0, 35, NULL, 0, 0, 0, 0, NULL, NULL, NULL};
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, g_good, &t, NULL, NULL, 1, err, sizeof err), 2);
    assert_non_null(strstr(err, "no data"));
    /* empty ranges: nothing read, nothing to verify */
    const int64_t empty[] = {0, 17, 35};
    for (int c = 0; c < 3; c++) {
        ckpt_tensor e = {NAMES[0], 2, 7, 5, empty[c], 0, NULL, 0, 0, 0, 0, NULL, NULL, NULL};
        if (ckpt_load(MPI_COMM_WORLD, g_good, &e, NULL, NULL, 1, err, sizeof err)) fail_msg("empty at %lld: %s", (long long)empty[c], err);
    }
    /* on save one rank alone passing nothing leaves every element unwritten */
    tset s;
    tset_init(&s, 1);
    s.t[0][2].off = 12;
    s.t[0][2].count = 0;
    ckpt_meta m = meta_for(1);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/emptysave", g_dir);
    assert_int_equal(ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], NULL, NULL, NT, 2, err, sizeof err), 1);
    assert_non_null(strstr(err, "/model/model.layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(err, "do not cover all 12 elements"));
    /* and a piece that stops one element short */
    s.t[0][2].off = 0;
    s.t[0][2].count = 11;
    assert_int_equal(ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], NULL, NULL, NT, 2, err, sizeof err), 1);
    assert_non_null(strstr(err, "do not cover all 12 elements"));
    tset_free(&s);
}

/* Blocks (tensor-parallel slices, ckpt_tensor.row0 ..): every range [a,b)
 * of every column slice [c0, c0+w) (w < 5) of the [7,5] embedding, of
 * every row slice of the [3,4] up_proj and of the 5-element norm, read on
 * one rank into buffers with guard cells: exactly the block's elements
 * (row0 + l / w, col0 + l % w) land, in the block's row-major order, and
 * nothing outside the buffer. Pass 1 cuts transfers into blocks of 3
 * elements (LAMINA_CKPT_PIECE_ELEMS), so they start and end anywhere in
 * the slice's rows. */
static void test_block_ranges(void **state) {
    (void)state;
    prepare_good();
    enum { BATCH = 64, W = 40 };
    const float GUARD = -12345.0f;
    char err[LM_ERRLEN] = {0};
    float *buf = malloc(sizeof(float) * BATCH * W);
    ckpt_tensor t[BATCH];
    int kk[BATCH];
    long ranges = 0, want = 0;
    /* the blocks: {k, row0, col0, brows, bcols} */
    int64_t blocks[64][5];
    int nb = 0;
    for (int64_t c0 = 0; c0 < 5; c0++)
        for (int64_t w = 1; c0 + w <= 5; w++)
            if (w < 5) blocks[nb][0] = 0, blocks[nb][1] = 0, blocks[nb][2] = c0, blocks[nb][3] = 7, blocks[nb++][4] = w;
    for (int k = 1; k <= 2; k++)
        for (int64_t r0 = 0; r0 < ROWS[k]; r0++)
            for (int64_t br = 1; r0 + br <= ROWS[k]; br++)
                blocks[nb][0] = k, blocks[nb][1] = r0, blocks[nb][2] = 0, blocks[nb][3] = br, blocks[nb++][4] = COLS[k];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) setenv("LAMINA_CKPT_PIECE_ELEMS", "3", 1);
        int m = 0;
        for (int q = 0; q < nb; q++) {
            int k = (int)blocks[q][0];
            int64_t r0 = blocks[q][1], c0 = blocks[q][2], br = blocks[q][3], bc = blocks[q][4], n = br * bc;
            for (int64_t a = 0; a < n; a++)
                for (int64_t b = a + 1; b <= n; b++) {
                    float *x = buf + (size_t)m * W;
                    for (int i = 0; i < W; i++) x[i] = GUARD;
                    t[m] = (ckpt_tensor){NAMES[k], NDIM[k], ROWS[k], COLS[k], a, b - a, x + 1, r0, c0, br, bc, NULL, NULL, NULL};
                    kk[m] = k;
                    m++;
                    want++;
                    if (m < BATCH && !(q == nb - 1 && a == n - 1)) continue;
                    int rc = ckpt_load(MPI_COMM_WORLD, g_good, t, NULL, NULL, m, err, sizeof err);
                    if (rc) fail_msg("pass %d: rc %d %s", pass, rc, err);
                    for (int j = 0; j < m; j++) {
                        const ckpt_tensor *p = &t[j];
                        const float *y = p->data - 1;
                        for (int64_t i = 0; i < p->count; i++) {
                            int64_t l = p->off + i;
                            int64_t full = (p->row0 + l / p->bcols) * p->cols + p->col0 + l % p->bcols;
                            if (y[1 + i] != value(0, kk[j], full))
                                fail_msg("%s block rows [%lld,+%lld) cols [%lld,+%lld) range [%lld,+%lld) pass %d: "
                                         "element %lld = %g, want %g (full %lld)",
                                         NAMES[kk[j]], (long long)p->row0, (long long)p->brows, (long long)p->col0,
                                         (long long)p->bcols, (long long)p->off, (long long)p->count, pass,
                                         (long long)i, (double)y[1 + i], (double)value(0, kk[j], full), (long long)full);
                        }
                        if (y[0] != GUARD) fail_msg("%s: wrote before the buffer", NAMES[kk[j]]);
                        for (int64_t i = p->count + 1; i < W; i++)
                            if (y[i] != GUARD) fail_msg("%s: wrote past the buffer", NAMES[kk[j]]);
                    }
                    ranges += m;
                    m = 0;
                }
        }
        unsetenv("LAMINA_CKPT_PIECE_ELEMS");
    }
    free(buf);
    print_message("block ranges: %ld ranges of %d blocks\n", ranges, nb);
    assert_int_equal(ranges, want);
    assert_int_equal(ranges, 2 * (2065 + 180 + 70));
}

/* Bad blocks are refused naming the tensor (load: 2 with the file; save: 1,
 * nothing published); empty slices with count 0 are accepted; whole-tensor
 * blocks (a row slice of all rows, a column slice of all columns) are the
 * whole tensor: a one-rank save from them stores what a flat save stores,
 * and their loads verify the checksum. A column slice alone on one rank
 * leaves elements uncovered (save: 1). */
static void test_block_errors(void **state) {
    (void)state;
    prepare_good();
    char err[LM_ERRLEN] = {0}, dir[128], lp[256];
    float buf[40] = {0};
    snprintf(dir, sizeof dir, "%s/badblock", g_dir);
    /* {k, row0, col0, brows, bcols, off, count} of the [7,5] (k 0) or the [5] (k 1) */
    const int64_t bad[][7] = {
        {0, -1, 0, 2, 5, 0, 10},        {0, 0, -1, 7, 2, 0, 14},     {0, 0, 0, -1, 5, 0, 0},
        {0, 0, 0, 7, -2, 0, 0},         {0, 2, 0, 0, 0, 0, 10},      {0, 0, 3, 0, 0, 0, 10},
        {0, 5, 0, 4, 5, 0, 20},         {0, 0, 3, 7, 3, 0, 21},      {0, 0, 6, 7, 0, 0, 0},
        {0, 8, 0, 0, 5, 0, 0},          {0, 0, 0, 3, 2, 0, 6},       {0, 0, 1, 7, 5, 0, 35},
        {0, 1, 0, 6, 4, 0, 24},         {1, 0, 0, 5, 0, 0, 0},       {1, 0, 1, 5, 1, 0, 5},
        {0, 0, 1, 7, 2, 10, 5},         {0, 0, 1, 7, 2, INT64_MAX, 1}, {0, 2, 0, 3, 5, 14, 2},
        {0, INT64_MAX, 0, 1, 5, 0, 0},  {0, 1, 0, INT64_MAX, 5, 0, 0}, {0, 0, INT64_MAX, 7, 1, 0, 0},
        {0, 0, 1, 7, INT64_MAX, 0, 0},
    };
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        const int64_t *b = bad[c];
        int k = (int)b[0];
        ckpt_tensor t = {NAMES[k], NDIM[k], ROWS[k], COLS[k], b[5], b[6], buf, b[1], b[2], b[3], b[4], NULL, NULL, NULL};
        err[0] = 0;
        assert_int_equal(ckpt_load(MPI_COMM_WORLD, g_good, &t, NULL, NULL, 1, err, sizeof err), 2);
        char dp[128];
        snprintf(dp, sizeof dp, "/model/%s", NAMES[k]);
        if (!strstr(err, g_good) || !strstr(err, dp) || !strstr(err, "block"))
            fail_msg("load case %zu: \"%s\"", c, err);
        if (k == 1 && b[3] == 5 && !strstr(err, "1-D")) fail_msg("load case %zu: \"%s\" should say 1-D", c, err);
        tset s;
        tset_init(&s, 1);
        s.t[2][k] = t; /* in the exp_avg_sq set */
        ckpt_meta m = meta_for(1);
        err[0] = 0;
        assert_int_equal(ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NT, 2, err, sizeof err), 1);
        snprintf(dp, sizeof dp, "/optim/exp_avg_sq/%s", NAMES[k]);
        if (!strstr(err, dp) || !strstr(err, "block")) fail_msg("save case %zu: \"%s\"", c, err);
        tset_free(&s);
        assert_int_equal(ckpt_find_latest(dir, lp, sizeof lp, err, sizeof err), 0); /* nothing published */
    }

    /* empty slices: the row slice after the last row, the column slice after
     * the last column, an empty row slice of the 1-D norm */
    ckpt_tensor e[3] = {{NAMES[0], 2, 7, 5, 0, 0, NULL, 7, 0, 0, 5, NULL, NULL, NULL},
                        {NAMES[0], 2, 7, 5, 0, 0, NULL, 0, 5, 7, 0, NULL, NULL, NULL},
                        {NAMES[1], 1, 5, 1, 0, 0, NULL, 5, 0, 0, 1, NULL, NULL, NULL}};
    if (ckpt_load(MPI_COMM_WORLD, g_good, e, NULL, NULL, 3, err, sizeof err)) fail_msg("empty slices: %s", err);

    /* whole-tensor blocks: saved as a flat save is, loads verified */
    tset s;
    tset_init(&s, 1);
    for (int set = 0; set < 3; set++) {
        ckpt_tensor *t = s.t[set];
        t[0].row0 = 0, t[0].col0 = 0, t[0].brows = 7, t[0].bcols = 5; /* all columns: a column slice too */
        t[1].row0 = 0, t[1].brows = 5, t[1].bcols = 1;                /* all rows of the 1-D norm */
        t[2].row0 = 0, t[2].brows = 3, t[2].bcols = 4;
    }
    char bdir[128], path[256];
    snprintf(bdir, sizeof bdir, "%s/wholeblock", g_dir);
    ckpt_meta m = meta_for(7);
    if (ckpt_save(MPI_COMM_WORLD, bdir, &m, s.t[0], s.t[1], s.t[2], NT, 2, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(ckpt_find_latest(bdir, path, sizeof path, err, sizeof err), 1);
    check_stored(path);
    /* the same tensors on one rank as row slices [0,3) and [3,7) cannot be
     * passed at once; a damaged element read through whole blocks is caught */
    char p[256];
    snprintf(p, sizeof p, "%s/blockflip.h5", g_dir);
    copy_file(path, p, -1);
    flip_byte(p, data_offset(p, "/model/model.embed_tokens.weight") + 4 * 23 + 1); /* (4, 3) */
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, p, s.t[0], NULL, NULL, NT, err, sizeof err), 2);
    assert_non_null(strstr(err, "/model/model.embed_tokens.weight: checksum mismatch"));
    /* a narrower column slice alone: rows of its columns only, other
     * elements unread, so the same damage passes unchecked (documented) */
    float col[21];
    ckpt_tensor c3 = {NAMES[0], 2, 7, 5, 0, 21, col, 0, 0, 7, 3, NULL, NULL, NULL};
    assert_int_equal(ckpt_load(MPI_COMM_WORLD, p, &c3, NULL, NULL, 1, err, sizeof err), 0);
    for (int i = 0; i < 21; i++) assert_true(col[i] == value(0, 0, (i / 3) * 5 + i % 3));
    /* ... and on save leaves the tensor uncovered */
    s.t[0][0] = c3;
    m.step = 8;
    assert_int_equal(ckpt_save(MPI_COMM_WORLD, bdir, &m, s.t[0], NULL, NULL, NT, 2, err, sizeof err), 1);
    assert_non_null(strstr(err, "/model/model.embed_tokens.weight: the ranks' pieces do not cover all 35 elements"));
    s.t[0][0].data = s.buf[0][0];
    tset_free(&s);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina_ckpt_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_foreign_file),
        cmocka_unit_test(test_keep_and_latest), cmocka_unit_test(test_stale_tmp),
        cmocka_unit_test(test_unwritable_dir), cmocka_unit_test(test_pause_hook),
        cmocka_unit_test(test_corruption),     cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_cut_ranges),     cmocka_unit_test(test_cut_blocks_save),
        cmocka_unit_test(test_range_errors),   cmocka_unit_test(test_block_ranges),
        cmocka_unit_test(test_block_errors),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return rc;
}
