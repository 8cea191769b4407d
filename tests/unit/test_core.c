/* test_core.c — the shared helpers of src/core written once: the hash module
 * (reference values, chaining), the checked allocator (lm_calloc /
 * lm_realloc / lm_strdup, the byte counter and its peak under threads), the
 * whole-file reader (past the old 16 MiB cut, errors naming the file),
 * lm_fsync_path, and lm_agree on a single process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agree.h"
#include "common.h"
#include "hash.h"
#include "rng.h"
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* splitmix64 from state 0 gives 0xE220A8397B1DCDAF first (its published
 * sequence); rng_mix64 is that step; the checkpoint term mixes i*phi + b. */
static void test_mix64(void **state) {
    (void)state;
    assert_true(lm_mix64(LM_PHI64) == 0xE220A8397B1DCDAFull);
    assert_true(rng_mix64(0) == 0xE220A8397B1DCDAFull);
    assert_true(lm_mix64(0) == 0);
}

/* FNV-1a reference vectors; a hash over pieces equals the hash of the whole. */
static void test_fnv1a(void **state) {
    (void)state;
    assert_true(lm_fnv1a_str("") == LM_FNV1A_INIT);
    assert_true(lm_fnv1a_str("foobar") == 0x85944171f73967e8ull);
    assert_true(lm_fnv1a(LM_FNV1A_INIT, "foobar", 6) == 0x85944171f73967e8ull);
    assert_true(lm_fnv1a(lm_fnv1a(LM_FNV1A_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ull);
}

/* Every helper counts its bytes and gives them back; lm_realloc keeps the
 * old contents and zeroes the new tail. */
static void test_alloc(void **state) {
    (void)state;
    size_t base = lm_alloc_bytes();
    int *a = lm_calloc(10, sizeof(int));
    for (int i = 0; i < 10; i++) assert_int_equal(a[i], 0), a[i] = i + 1;
    assert_true(lm_alloc_bytes() == base + 10 * sizeof(int));
    a = lm_realloc(a, 1000 * sizeof(int));
    assert_true(lm_alloc_bytes() == base + 1000 * sizeof(int));
    for (int i = 0; i < 10; i++) assert_int_equal(a[i], i + 1);
    for (int i = 10; i < 1000; i++) assert_int_equal(a[i], 0);
    assert_true(((uintptr_t)a & 63) == 0);
    a = lm_realloc(a, 4 * sizeof(int));
    assert_int_equal(a[3], 4);
    char *s = lm_strdup("hello");
    assert_string_equal(s, "hello");
    assert_true(lm_alloc_bytes() == base + 4 * sizeof(int) + 6);
    lm_free(s);
    lm_free(a);
    assert_true(lm_alloc_bytes() == base);
    assert_true(lm_alloc_peak() >= base + 1000 * sizeof(int));
}

/* Threads allocating at once: the total returns to where it was and the
 * peak is at least the largest total any one moment can have seen. */
static void test_alloc_threads(void **state) {
    (void)state;
    size_t base = lm_alloc_bytes();
#pragma omp parallel for num_threads(4) schedule(static)
    for (int i = 0; i < 4000; i++) {
        void *p = lm_alloc(1000);
        lm_free(p);
    }
    assert_true(lm_alloc_bytes() == base);
    assert_true(lm_alloc_peak() >= base + 1000);
}

/* A 20 MiB file (the old plan reader stopped at 16 MiB) comes back whole. */
static void test_read_file(void **state) {
    (void)state;
    char path[] = "/tmp/lamina_core_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = 20u << 20;
    char *w = malloc(n);
    for (size_t i = 0; i < n; i++) w[i] = (char)('a' + i % 26);
    assert_true(write(fd, w, n) == (ssize_t)n);
    close(fd);
    assert_int_equal(lm_fsync_path(path, 0), 0);
    assert_int_equal(lm_fsync_path("/tmp", 1), 0);
    size_t len = 0;
    char err[LM_ERRLEN] = "";
    char *r = lm_read_file(path, &len, err, sizeof err);
    assert_non_null(r);
    assert_true(len == n && r[n] == 0 && !memcmp(r, w, n));
    lm_free(r);
    free(w);
    unlink(path);
    assert_null(lm_read_file(path, &len, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot read"));
    assert_int_equal(lm_fsync_path(path, 0), -1);
}

/* One process: the status comes back, err and the largest as they were. */
static void test_agree_self(void **state) {
    (void)state;
    char err[64] = "mine";
    int big = -7;
    assert_int_equal(lm_agree(MPI_COMM_SELF, 0, err, sizeof err, NULL, &big), 0);
    assert_int_equal(big, 0);
    assert_int_equal(lm_agree(MPI_COMM_SELF, -1, err, sizeof err, NULL, &big), -1);
    assert_int_equal(big, -1);
    assert_string_equal(err, "mine");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mix64),         cmocka_unit_test(test_fnv1a),
        cmocka_unit_test(test_alloc),         cmocka_unit_test(test_alloc_threads),
        cmocka_unit_test(test_read_file),     cmocka_unit_test(test_agree_self),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
