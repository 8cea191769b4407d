/* test_tokfile_mpi.c — the collective token-file writer (tokfile_write_par,
 * io/tokfile_write.c) across ranks, run under `mpirun -np 4`: a file with
 * every optional dataset written by 3 ranks of uneven slices (one of them
 * without samples or documents) holds the same bytes as the one written by
 * one rank, and reads back on every rank; the same with 4 ranks where a
 * sample spans two ranks and one rank holds nothing at all; errors found on
 * one rank (a category out of range, arguments that differ between ranks,
 * a first sample that does not start at token 0) end the call on every rank
 * with the same message, and leave neither the file nor a temporary behind.
 * Prints TAP by hand from rank 0 (no cmocka: one plan, all ranks). */
#include "common.h"
#include "tokfile.h"
#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank, g_size, g_test;
static char g_dir[64];
static char g_err[LM_ERRLEN];

/* TAP line from rank 0; a test passes only if it passed on every rank */
static void report(int ok_local, const char *what) {
    int ok = 0;
    MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    g_test++;
    if (g_rank == 0) {
        printf("%sok %d - %s\n", ok ? "" : "not ", g_test, what);
        fflush(stdout);
    }
}

/* ---- the data: 10 samples, 3 categories, 4 buckets, 7 documents ---- */

enum { NS = 10, ND = 7, PERM = 4, NB = 4 };
static const int64_t LEN[NS] = {3, 5, 0, 4, 6, 2, 7, 1, 3, 5};
static int64_t OFF[NS + 1];
static int64_t NT;
static uint32_t *TOK;
static uint8_t *MASK;
static int32_t CAT[NS];
static int64_t BYTES[NS];
static uint64_t HASH[ND];
static uint32_t MH[ND * PERM];
static const char *const CATS[3] = {"web", "books", "code"};
static const int64_t BUCKETS[NB + 1] = {0, 3, 3, 7, 10};

static void make_data(void) {
    OFF[0] = 0;
    for (int i = 0; i < NS; i++) OFF[i + 1] = OFF[i] + LEN[i];
    NT = OFF[NS];
    TOK = malloc(sizeof(uint32_t) * (size_t)NT);
    MASK = malloc((size_t)NT);
    for (int64_t t = 0; t < NT; t++) {
        TOK[t] = (uint32_t)((t * 37 + 11) % 300);
        MASK[t] = (uint8_t)(t % 4 != 0);
    }
    for (int i = 0; i < NS; i++) {
        CAT[i] = (int32_t)((i * 7) % 3);
        BYTES[i] = 3 * LEN[i] + i;
    }
    for (int d = 0; d < ND; d++) {
        HASH[d] = 0x8000000000000000ull | ((uint64_t)d * 0x9E3779B97F4A7C15ull >> 1);
        for (int k = 0; k < PERM; k++) MH[d * PERM + k] = 0xffff0000u + (uint32_t)(d * 16 + k);
    }
}

/* One rank's slice: samples [s0, s1), tokens [t0, t1), documents [d0, d1). */
typedef struct {
    int64_t s0, s1, t0, t1, d0, d1;
} slice;

static int write_slice(MPI_Comm comm, const char *path, const slice *sl, int64_t vocab, int bad_cat) {
    int64_t ns = sl->s1 - sl->s0, nt = sl->t1 - sl->t0, nd = sl->d1 - sl->d0;
    int64_t *starts = malloc(sizeof(int64_t) * (size_t)(ns + 1));
    for (int64_t i = 0; i < ns; i++) starts[i] = OFF[sl->s0 + i] - sl->t0;
    int32_t *cat = malloc(sizeof(int32_t) * (size_t)(ns + 1));
    memcpy(cat, CAT + sl->s0, sizeof(int32_t) * (size_t)ns);
    if (bad_cat && ns > 0) cat[0] = 3;
    tokfile_extra x = {0};
    x.n_categories = 3;
    x.categories = CATS;
    x.n_buckets = NB;
    x.bucket_offsets = BUCKETS;
    x.sample_category = ns ? cat : NULL;
    x.sample_bytes = ns ? BYTES + sl->s0 : NULL;
    x.loss_mask = nt ? MASK + sl->t0 : NULL;
    x.n_docs_local = nd;
    x.doc_hash = nd ? HASH + sl->d0 : NULL;
    x.doc_minhash = nd ? MH + sl->d0 * PERM : NULL;
    x.minhash_perm = PERM;
    x.minhash_bands = 2;
    x.minhash_ngram = 3;
    x.minhash_words = 1;
    x.minhash_seed = 42;
    const char *names[1] = {"seq_len"};
    int64_t vals[1] = {16};
    int rc = tokfile_write_par(comm, path, nt ? TOK + sl->t0 : NULL, nt, ns ? starts : NULL, ns, vocab, 1, names, vals,
                               NULL, &x, g_err, sizeof g_err);
    free(starts);
    free(cat);
    return rc;
}

static long file_bytes(const char *p, unsigned char **out) {
    FILE *fp = fopen(p, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    if (fread(*out, 1, (size_t)n, fp) != (size_t)n) n = -1;
    fclose(fp);
    return n;
}

/* rank 0: the two files hold the same bytes */
static int same_bytes(const char *a, const char *b) {
    unsigned char *ba = NULL, *bb = NULL;
    long na = file_bytes(a, &ba), nb = file_bytes(b, &bb);
    int ok = na > 0 && na == nb && !memcmp(ba, bb, (size_t)na);
    if (!ok) fprintf(stderr, "# %s (%ld bytes) and %s (%ld bytes) differ\n", a, na, b, nb);
    free(ba);
    free(bb);
    return ok;
}

/* every rank: the file holds the reference data */
static int check_content(const char *p) {
    tokfile *f = tokfile_open(p, g_err, sizeof g_err);
    if (!f) {
        fprintf(stderr, "# rank %d: %s\n", g_rank, g_err);
        return 0;
    }
    int ok = tokfile_n_samples(f) == NS && tokfile_n_tokens(f) == NT && tokfile_n_categories(f) == 3 &&
             tokfile_n_buckets(f) == NB && tokfile_has_loss_mask(f) && tokfile_n_docs(f) == ND;
    for (int k = 0; k < 3 && ok; k++) ok = !strcmp(tokfile_category(f, k), CATS[k]);
    for (int b = 0; b <= NB && ok; b++) ok = tokfile_bucket_start(f, b) == BUCKETS[b];
    uint32_t buf[16];
    uint8_t mask[16];
    for (int i = 0; i < NS && ok; i++) {
        ok = tokfile_sample_category(f, i) == CAT[i] && tokfile_sample_bytes(f, i) == BYTES[i] &&
             tokfile_read_sample_mask(f, i, buf, mask, 16, g_err, sizeof g_err) == LEN[i] &&
             !memcmp(buf, TOK + OFF[i], sizeof(uint32_t) * (size_t)LEN[i]) && !memcmp(mask, MASK + OFF[i], (size_t)LEN[i]);
    }
    uint64_t h[ND];
    uint32_t mh[ND * PERM];
    int perm = 0, bands = 0, ngram = 0, words = 0;
    uint64_t seed = 0;
    ok = ok && tokfile_read_docs(f, 0, ND, h, mh, g_err, sizeof g_err) == 0 && !memcmp(h, HASH, sizeof h) &&
         !memcmp(mh, MH, sizeof mh) && tokfile_minhash_cfg(f, &perm, &bands, &ngram, &words, &seed) == 1 && perm == PERM &&
         bands == 2 && ngram == 3 && words == 1 && seed == 42;
    tokfile_close(f);
    return ok;
}

/* no PATH and no PATH.tmp.* in the directory */
static int nothing_left(const char *name) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int ok = 1;
    size_t n = strlen(name);
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, name, n)) {
            fprintf(stderr, "# left behind: %s\n", e->d_name);
            ok = 0;
        }
    closedir(d);
    return ok;
}

/* every rank got the same message */
static int same_message(void) {
    char m0[LM_ERRLEN];
    memcpy(m0, g_err, sizeof m0);
    MPI_Bcast(m0, (int)sizeof m0, MPI_CHAR, 0, MPI_COMM_WORLD);
    return !strcmp(m0, g_err);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size != 4) {
        if (g_rank == 0) printf("1..0 # SKIP needs 4 ranks\n");
        MPI_Finalize();
        return 0;
    }
    if (g_rank == 0) {
        snprintf(g_dir, sizeof g_dir, "/tmp/lamina_tokmpi_XXXXXX");
        if (!mkdtemp(g_dir)) MPI_Abort(MPI_COMM_WORLD, 1);
        printf("1..8\n");
    }
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    make_data();
    char serial[128], three[128], four[128], bad[128];
    snprintf(serial, sizeof serial, "%s/serial.h5", g_dir);
    snprintf(three, sizeof three, "%s/three.h5", g_dir);
    snprintf(four, sizeof four, "%s/four.h5", g_dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", g_dir);

    /* the reference: everything from one rank */
    slice all = {0, NS, 0, NT, 0, ND};
    int ok = 1;
    if (g_rank == 0) {
        ok = write_slice(MPI_COMM_SELF, serial, &all, 300, 0) == 0;
        if (!ok) fprintf(stderr, "# %s\n", g_err);
    }
    report(ok, "one rank writes the reference file");

    /* 3 ranks, uneven: samples 5 / 1 / 4, documents 3 / 0 / 4 */
    MPI_Comm c3;
    MPI_Comm_split(MPI_COMM_WORLD, g_rank < 3 ? 0 : MPI_UNDEFINED, g_rank, &c3);
    ok = 1;
    if (g_rank < 3) {
        slice s3[3] = {{0, 5, 0, OFF[5], 0, 3}, {5, 6, OFF[5], OFF[6], 3, 3}, {6, NS, OFF[6], NT, 3, ND}};
        ok = write_slice(c3, three, &s3[g_rank], 300, 0) == 0;
        if (!ok) fprintf(stderr, "# rank %d: %s\n", g_rank, g_err);
        MPI_Comm_free(&c3);
    }
    report(ok, "3 ranks with uneven slices write the file");
    MPI_Barrier(MPI_COMM_WORLD);
    report(g_rank ? 1 : same_bytes(serial, three), "3 ranks: the same bytes as one rank");
    report(check_content(three), "3 ranks: every rank reads the data back");

    /* 4 ranks: sample 3 spans ranks 0 and 1 (rank 1 holds tokens only), rank 3 holds nothing */
    slice s4[4] = {{0, 4, 0, OFF[3] + 2, 0, 0}, {4, 4, OFF[3] + 2, OFF[4], 0, 3}, {4, NS, OFF[4], NT, 3, ND}, {NS, NS, NT, NT, ND, ND}};
    ok = write_slice(MPI_COMM_WORLD, four, &s4[g_rank], 300, 0) == 0;
    if (!ok) fprintf(stderr, "# rank %d: %s\n", g_rank, g_err);
    MPI_Barrier(MPI_COMM_WORLD);
    report(ok && (g_rank ? 1 : same_bytes(serial, four)) && check_content(four),
           "4 ranks, a sample across two ranks, an empty rank: the same bytes");

    /* a category out of range on rank 2 only: all ranks fail alike */
    slice q[4] = {{0, 3, 0, OFF[3], 0, 2}, {3, 5, OFF[3], OFF[5], 2, 4}, {5, 8, OFF[5], OFF[8], 4, 6}, {8, NS, OFF[8], NT, 6, ND}};
    g_err[0] = 0;
    int rc = write_slice(MPI_COMM_WORLD, bad, &q[g_rank], 300, g_rank == 2);
    MPI_Barrier(MPI_COMM_WORLD);
    ok = rc == 1 && strstr(g_err, bad) && strstr(g_err, "category 3 outside [0, 3)") && same_message();
    if (!ok) fprintf(stderr, "# rank %d: rc %d: %s\n", g_rank, rc, g_err);
    report(ok && (g_rank ? 1 : nothing_left("bad.h5")), "an error on one rank: every rank fails with its message, no file");

    /* vocab_size differs on rank 1 */
    g_err[0] = 0;
    rc = write_slice(MPI_COMM_WORLD, bad, &q[g_rank], g_rank == 1 ? 301 : 300, 0);
    MPI_Barrier(MPI_COMM_WORLD);
    ok = rc == 1 && strstr(g_err, "disagree") && same_message();
    if (!ok) fprintf(stderr, "# rank %d: rc %d: %s\n", g_rank, rc, g_err);
    report(ok && (g_rank ? 1 : nothing_left("bad.h5")), "ranks that disagree on vocab_size: every rank fails");

    /* rank 0 has tokens but no sample: the first sample would not start at 0 */
    slice z[4] = {{0, 0, 0, 2, 0, 0}, {0, 5, 0, OFF[5], 0, 3}, {5, NS, OFF[5], NT, 3, ND}, {NS, NS, NT, NT, ND, ND}};
    g_err[0] = 0;
    rc = write_slice(MPI_COMM_WORLD, bad, &z[g_rank], 300, 0);
    MPI_Barrier(MPI_COMM_WORLD);
    ok = rc == 1 && strstr(g_err, "first sample starts at") && same_message();
    if (!ok) fprintf(stderr, "# rank %d: rc %d: %s\n", g_rank, rc, g_err);
    report(ok && (g_rank ? 1 : nothing_left("bad.h5")), "a first sample not at token 0: every rank fails");

    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        const char *names[3] = {serial, three, four};
        for (int k = 0; k < 3; k++) unlink(names[k]);
        rmdir(g_dir);
    }
    free(TOK);
    free(MASK);
    MPI_Finalize();
    return 0;
}
