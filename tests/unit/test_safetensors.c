/* test_safetensors.c — io/safetensors.c: conversions, writer/reader round
 * trip, hand-made bad files, and a deterministic fuzz.
 *
 * Conversions: every one of the 65536 F16 patterns widens exactly and
 * narrows back to itself (a NaN to the quiet NaN of the same payload);
 * every float halfway between two neighbouring halves rounds to the even
 * one; 100000 random floats over the whole half range narrow to a nearest
 * half (no neighbour is closer); overflow to inf from 65520 on.
 *
 * Fuzz: a small valid file (three tensors F32 / BF16 / F16, metadata) is
 * mutated 6000 times, deterministically (xorshift, fixed seed): random
 * bytes flipped anywhere, the header length changed (by a little, or to a
 * random 64-bit value), the file truncated, a digit or letter of the JSON
 * header replaced, a header byte inserted or deleted (length adjusted or
 * not). st_open must return 0 or LM_ERR_INPUT; when it opens, every tensor
 * lies inside the data section, tensors do not overlap, and reading all of
 * each readable tensor (and a random range of it) must succeed; nothing may
 * crash or read out of bounds (the 11-san wrapper runs this under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "common.h"
#include "safetensors.h"

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    /* in memory where there is /dev/shm: the fuzz writes 6000 small files */
    snprintf(g_dir, sizeof g_dir, "%s/lamina-st.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd);
}

static uint16_t f16_of(float f) { return st_f32_to_f16(f); }

static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        uint16_t back = f16_of(f);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan) {
            assert_true(isnan(f));
            assert_int_equal(back, h | 0x200);
        } else {
            assert_int_equal(back, h);
        }
    }
    /* subnormals widen to man x 2^-24 exactly */
    assert_true(st_f16_to_f32(1) == ldexpf(1, -24));
    assert_true(st_f16_to_f32(0x3ff) == ldexpf(1023, -24));
    assert_true(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0xfc00) < 0);
}

static void test_f16_rounding(void **state) {
    (void)state;
    /* ties: the midpoint of neighbours a, a+1 (exact in float) goes to the even one */
    for (uint32_t a = 0; a < 0x7bff; a++) {
        float lo = st_f16_to_f32((uint16_t)a), hi = st_f16_to_f32((uint16_t)(a + 1));
        float mid = (float)(((double)lo + (double)hi) / 2);
        assert_true((double)mid == ((double)lo + (double)hi) / 2);
        uint16_t want = (a & 1) ? (uint16_t)(a + 1) : (uint16_t)a;
        assert_int_equal(f16_of(mid), want);
        assert_int_equal(f16_of(-mid), want | 0x8000);
    }
    assert_int_equal(f16_of(65504.0f), 0x7bff);
    assert_int_equal(f16_of(65519.996f), 0x7bff);
    assert_int_equal(f16_of(65520.0f), 0x7c00);
    assert_int_equal(f16_of(1e10f), 0x7c00);
    assert_int_equal(f16_of(-INFINITY), 0xfc00);
    assert_int_equal(f16_of(ldexpf(1, -25)), 0);           /* tie with 0 and 2^-24: 0 is even */
    assert_int_equal(f16_of(ldexpf(1.0001f, -25)), 1);
    assert_int_equal(f16_of(ldexpf(3, -25)), 2);           /* 1.5 x 2^-24: tie, 2 is even */
    assert_int_equal(f16_of(ldexpf(3, -26)), 1);           /* 0.75 x 2^-24 */
    assert_int_equal(f16_of(ldexpf(1, -30)), 0);
    assert_int_equal(f16_of(-0.0f), 0x8000);
    assert_int_equal(f16_of(ldexpf(1023.5f, -24)), 0x400); /* rounds up into the smallest normal */
    /* random floats: no neighbour of the result is closer */
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float x = ldexpf((float)(s % 1000003) / 1000003.0f + 0.5f, (int)((s >> 32) % 42) - 26);
        if (s >> 63) x = -x;
        uint16_t h = f16_of(x);
        double d = fabs((double)x - st_f16_to_f32(h));
        if ((h & 0x7fff) < 0x7c00) {
            if ((h & 0x7fff) < 0x7bff) assert_true(d <= fabs((double)x - st_f16_to_f32((uint16_t)(h + 1))));
            if ((h & 0x7fff) > 0) assert_true(d <= fabs((double)x - st_f16_to_f32((uint16_t)(h - 1))));
        } else {
            assert_true(fabsf(x) >= 65520.0f);
        }
    }
}

/* The reference file of the round trip and the fuzz: 3 tensors. */
static void write_ref(const char *path) {
    float a[6] = {1.5f, -2.25f, 3.0e-3f, 65504.0f, -0.0f, 1e-7f}, b[4] = {0.1f, -0.2f, 0.3f, 7.0f}, c[3] = {1, 2, 3};
    st_spec sp[3] = {
        {.name = "a.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}},
        {.name = "b.weight", .dtype = ST_BF16, .ndim = 2, .shape = {2, 2}},
        {.name = "c", .dtype = ST_F16, .ndim = 1, .shape = {3}},
    };
    const char *meta[2] = {"format", "pt"};
    st_writer *w;
    char err[LM_ERRLEN];
    assert_int_equal(st_writer_open(&w, path, sp, 3, meta, 1, err, sizeof err), 0);
    assert_int_equal(st_writer_put(w, a, 5, err, sizeof err), 0); /* calls may end inside a tensor */
    assert_int_equal(st_writer_put(w, a + 5, 1, err, sizeof err), 0);
    float bc[7];
    memcpy(bc, b, sizeof b);
    memcpy(bc + 4, c, sizeof c);
    assert_int_equal(st_writer_put(w, bc, 7, err, sizeof err), 0); /* ... or span several */
    assert_int_equal(st_writer_finish(w, err, sizeof err), 0);
}

static void test_roundtrip(void **state) {
    (void)state;
    char path[128], err[LM_ERRLEN];
    snprintf(path, sizeof path, "%s/ref.safetensors", g_dir);
    write_ref(path);
    st_file f;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(f.n, 3);
    assert_int_equal(f.data_start % 8, 0);
    const st_tensor *a = st_find(&f, "a.weight"), *b = st_find(&f, "b.weight"), *c = st_find(&f, "c");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_null(st_find(&f, "d"));
    float out[6];
    assert_int_equal(st_read_elems(&f, a, 3, 3, out, err, sizeof err), 0); /* row 1 */
    assert_true(out[0] == 65504.0f && out[1] == 0 && signbit(out[1]) && out[2] == 1e-7f);
    assert_int_equal(st_read_elems(&f, b, 0, 4, out, err, sizeof err), 0);
    assert_true(out[0] == lm_bf16_to_f32(lm_f32_to_bf16(0.1f)) && out[3] == 7.0f);
    assert_int_equal(st_read_elems(&f, c, 0, 3, out, err, sizeof err), 0);
    assert_true(out[0] == 1 && out[1] == 2 && out[2] == 3);
    assert_int_equal(st_read_elems(&f, c, 2, 2, out, err, sizeof err), LM_ERR_INPUT);
    assert_non_null(strstr(err, "tensor c"));
    st_close(&f);
    /* an incomplete writer leaves nothing */
    char p2[160], tmp[170];
    snprintf(p2, sizeof p2, "%s/short.safetensors", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", p2);
    st_spec one = {.name = "x", .dtype = ST_F32, .ndim = 1, .shape = {4}};
    st_writer *w;
    assert_int_equal(st_writer_open(&w, p2, &one, 1, NULL, 0, err, sizeof err), 0);
    assert_int_equal(st_writer_put(w, out, 2, err, sizeof err), 0);
    assert_int_equal(st_writer_finish(w, err, sizeof err), LM_ERR_RUNTIME);
    assert_int_not_equal(access(p2, F_OK), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 64);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

/* A hand-made file: header text h (length field = its length + adj), then
 * nd data bytes. Returns st_open's code; err in err. */
static int open_made(const char *h, long adj, size_t nd, char *err, size_t errlen) {
    char path[128];
    snprintf(path, sizeof path, "%s/made.safetensors", g_dir);
    size_t hl = strlen(h);
    unsigned char *b = calloc(1, 8 + hl + nd);
    uint64_t n = (uint64_t)((long)hl + adj);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, h, hl);
    spit(path, b, 8 + hl + nd);
    free(b);
    st_file f;
    int rc = st_open(&f, path, err, errlen);
    if (!rc) st_close(&f);
    return rc;
}

static void test_bad_files(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    const char *ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assert_int_equal(open_made(ok, 0, 8, err, sizeof err), 0);
    struct { const char *h; long adj; size_t nd; const char *want; } c[] = {
        {ok, 100, 8, "header length"},                                             /* beyond the file */
        {ok, 0, 4, "tensor t: data_offsets [0, 8] end beyond"},                    /* truncated */
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 0, 8, "not valid JSON"},
        {"[1,2]", 0, 0, "not a JSON object"},
        {"{\"t\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "tensor t: unknown dtype Q8"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8, "tensor t: shape x dtype size"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8, "tensor t: \"shape\""},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8, "begin > end"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 0, 8, "data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8, "overflow"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"u\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 0, 8, "overlap"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[0,8]}}", 0, 8, "not valid JSON"},                    /* duplicate key */
        {"{\"__metadata__\":{\"a\":1}}", 0, 0, "__metadata__"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        err[0] = 0;
        int rc = open_made(c[i].h, c[i].adj, c[i].nd, err, sizeof err);
        if (rc != LM_ERR_INPUT || !strstr(err, c[i].want) || !strstr(err, "made.safetensors"))
            fail_msg("case %zu: rc %d, err '%s' (want '%s')", i, rc, err, c[i].want);
    }
    /* known non-float dtypes parse, but do not read */
    char path[128];
    snprintf(path, sizeof path, "%s/made.safetensors", g_dir);
    assert_int_equal(open_made("{\"t\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, err, sizeof err), 0);
    st_file f;
    float o[2];
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_read_elems(&f, &f.t[0], 0, 2, o, err, sizeof err), LM_ERR_INPUT);
    assert_non_null(strstr(err, "dtype I32"));
    st_close(&f);
    /* a file of 3 bytes, a missing file */
    spit(path, (const unsigned char *)"abc", 3);
    assert_int_equal(st_open(&f, path, err, sizeof err), LM_ERR_INPUT);
    snprintf(path, sizeof path, "%s/absent.safetensors", g_dir);
    assert_int_equal(st_open(&f, path, err, sizeof err), LM_ERR_INPUT);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void test_fuzz(void **state) {
    (void)state;
    char ref[128], path[128], err[LM_ERRLEN];
    snprintf(ref, sizeof ref, "%s/fuzz-ref.safetensors", g_dir);
    snprintf(path, sizeof path, "%s/fuzz.safetensors", g_dir);
    write_ref(ref);
    size_t n0;
    unsigned char *orig = slurp(ref, &n0);
    uint64_t hl0 = 0;
    for (int i = 7; i >= 0; i--) hl0 = (hl0 << 8) | orig[i];
    unsigned char *b = malloc(n0 + 64);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int opened = 0, iters = 6000;
    for (int it = 0; it < iters; it++) {
        memcpy(b, orig, n0);
        size_t n = n0;
        int kind = (int)(rng_next(&s) % 6), reps = 1 + (int)(rng_next(&s) % 3);
        for (int r = 0; r < reps; r++) {
            uint64_t x = rng_next(&s);
            if (kind == 0) { /* flip bits anywhere */
                b[x % n] ^= (unsigned char)(1u << ((x >> 32) % 8));
            } else if (kind == 1) { /* header length: a little off, or anything */
                uint64_t v = (x >> 40) % 2 ? hl0 + (x % 17) - 8 : rng_next(&s);
                for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
            } else if (kind == 2) { /* truncation */
                n = x % (n0 + 1);
            } else if (kind == 3) { /* a digit or letter of the header replaced */
                size_t p = 8 + x % hl0;
                const char *rep = "0123456789-\"[]{},:eE.FBI";
                if (p < n) b[p] = (unsigned char)rep[(x >> 32) % strlen(rep)];
            } else if (kind == 4) { /* a header byte inserted, length fixed up or not */
                size_t p = 8 + x % hl0;
                memmove(b + p + 1, b + p, n - p);
                b[p] = (unsigned char)(x >> 24);
                n++;
                if ((x >> 50) & 1) {
                    uint64_t v = hl0 + 1;
                    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
                }
            } else { /* a header byte deleted */
                size_t p = 8 + x % hl0;
                memmove(b + p, b + p + 1, n - p - 1);
                n--;
                if ((x >> 50) & 1) {
                    uint64_t v = hl0 - 1;
                    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
                }
            }
        }
        spit(path, b, n);
        st_file f;
        int rc = st_open(&f, path, err, sizeof err);
        if (rc) {
            assert_int_equal(rc, LM_ERR_INPUT);
            assert_non_null(strstr(err, "fuzz.safetensors"));
            continue;
        }
        opened++;
        assert_true(f.data_start + f.data_size == (uint64_t)n);
        for (int i = 0; i < f.n; i++) {
            const st_tensor *t = &f.t[i];
            assert_true(t->begin <= t->end && t->end <= f.data_size);
            assert_true((uint64_t)t->numel * (uint64_t)t->elem_size == t->end - t->begin);
            for (int j = 0; j < i; j++) {
                const st_tensor *u = &f.t[j];
                if (t->begin < t->end && u->begin < u->end) assert_true(t->end <= u->begin || u->end <= t->begin);
            }
            if (t->dtype == ST_OTHER) continue;
            float *out = malloc(sizeof(float) * (size_t)(t->numel + 1));
            assert_int_equal(st_read_elems(&f, t, 0, t->numel, out, err, sizeof err), 0);
            int64_t e0 = t->numel ? (int64_t)(rng_next(&s) % (uint64_t)t->numel) : 0;
            assert_int_equal(st_read_elems(&f, t, e0, t->numel - e0, out, err, sizeof err), 0);
            free(out);
        }
        st_close(&f);
    }
    print_message("# fuzz: %d mutations, %d still valid files, the rest rejected with exit code 2\n", iters, opened);
    assert_true(opened > 0 && opened < iters);
    free(b);
    free(orig);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
