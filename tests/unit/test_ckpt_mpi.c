/* test_ckpt_mpi.c — checkpoints across ranks (io/ckpt.c, SPEC §5), run by
 * tests/t/12-mpi-ckpt.t under `mpirun -np 4`. Pieces are flat element
 * ranges that start and end inside rows, as ZeRO shards do: a file written
 * from 4 such pieces (one rank owning nothing of a tensor, pieces moved in
 * several collective blocks) holds exactly the tensors and the checksums of
 * ckpt.h's formula, and is read back element by element in other
 * decompositions (2 pieces on ranks 0-1, 3 pieces with other cut points,
 * rank 0 alone, every rank the full tensor, overlapping pieces); a
 * corrupted copy is refused by every rank under each decomposition that
 * covers the tensor; overlapping cut writers, writers with empty ranks, and
 * writers that miss elements or pass a range past the end; errors seen by
 * one rank end the call on all ranks; pruning with several ranks. Streamed
 * pieces (data NULL, pull on save, push on load; ckpt.h): the same bytes and
 * checksums as from data for uneven, empty, overlapping and tensor-parallel
 * pieces, loads by push in other decompositions, callbacks never asked for
 * more than the transfer block nor holding more than it (lm_alloc), NaN /
 * Inf / negative second moments and corruption still refused, missing
 * callbacks refused, injected write faults leaving `latest` unchanged.
 * Prints TAP by hand from rank 0 (no cmocka: one plan, all ranks). */
#include "ckpt.h"
#include "comm.h"
#include "common.h"
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank, g_size, g_test;
static char g_dir[64];

enum { NT = 4 };
static const char *NAMES[NT] = {"model.embed_tokens.weight", "model.norm.weight",
                                "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"};
static const int NDIM[NT] = {2, 1, 2, 2};
static const int64_t ROWS[NT] = {10, 3, 5, 7}, COLS[NT] = {6, 1, 4, 5};
/* the writing decomposition, [tensor][rank] = {off, count} in elements */
static const int64_t WRITE_SLAB[NT][4][2] = {
    {{0, 17}, {17, 20}, {37, 9}, {46, 14}}, /* uneven pieces, cut inside rows (6 columns) */
    {{0, 1}, {1, 1}, {2, 1}, {3, 0}},       /* rank 3 owns nothing */
    {{0, 20}, {20, 0}, {20, 0}, {20, 0}},   /* rank 0 owns all */
    {{0, 9}, {9, 8}, {17, 13}, {30, 5}},    /* [0,9) [9,17) [17,30) [30,35) of a [7,5]: rows 1, 3, 5 cut */
};
static int64_t numel(int k) { return ROWS[k] * COLS[k]; }

static float value(int set, int k, int64_t i) { return (float)(set * 1000 + k * 100) + 0.25f * (float)i + 0.125f; }

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

typedef struct {
    ckpt_tensor t[3][NT];
} tset;

/* this rank's tensors for pieces slab[k] = {off, count}, filled or zero;
 * a rank that owns nothing passes count 0 and no buffer at all */
static void tset_make(tset *s, const int64_t slab[NT][2], int fill) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) {
            int64_t off = slab[k][0], cnt = slab[k][1];
            float *b = cnt > 0 ? calloc((size_t)cnt, sizeof(float)) : NULL;
            for (int64_t i = 0; i < cnt && fill; i++) b[i] = value(set, k, off + i);
            s->t[set][k] = (ckpt_tensor){NAMES[k], NDIM[k], ROWS[k], COLS[k], off, cnt, b, 0, 0, 0, 0, NULL, NULL, NULL};
        }
}
static void tset_free(tset *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) free(s->t[set][k].data);
}
static int tset_ok(const tset *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) {
            const ckpt_tensor *t = &s->t[set][k];
            for (int64_t i = 0; i < t->count; i++)
                if (t->data[i] != value(set, k, t->off + i)) {
                    fprintf(stderr, "rank %d: set %d %s element %lld: %g\n", g_rank, set, t->name,
                            (long long)(t->off + i), (double)t->data[i]);
                    return 0;
                }
        }
    return 1;
}

static ckpt_meta meta_for(long step) {
    return (ckpt_meta){.step = step, .tokens_seen = 640 * step, .consumed_samples = 8 * step, .seed = 42,
                       .dim = 6, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .ffn_dim = 4, .vocab_size = 10,
                       .max_seq_len = 8, .tie_embeddings = 1, .norm_eps = 1e-6, .rope_theta = 500000.0,
                       .deck_text = "[model]\ndim = 6\n"};
}

static int save_slabs(long step, int keep, const int64_t slab[NT][2], char *err) {
    tset s;
    tset_make(&s, slab, 1);
    ckpt_meta m = meta_for(step);
    err[0] = 0;
    int rc = ckpt_save(MPI_COMM_WORLD, g_dir, &m, s.t[0], s.t[1], s.t[2], NT, keep, err, LM_ERRLEN);
    tset_free(&s);
    return rc;
}

static int save(long step, int keep) {
    int64_t slab[NT][2];
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    tset s;
    tset_make(&s, slab, 1);
    ckpt_meta m = meta_for(step);
    char err[LM_ERRLEN] = {0};
    int rc = ckpt_save(MPI_COMM_WORLD, g_dir, &m, s.t[0], s.t[1], s.t[2], NT, keep, err, sizeof err);
    if (rc) fprintf(stderr, "rank %d: save: %s\n", g_rank, err);
    tset_free(&s);
    return rc;
}

/* load `path` with slabs slab[k]; returns rc, err filled, *values_ok set */
static int load(const char *path, const int64_t slab[NT][2], int *values_ok, char *err) {
    tset s;
    tset_make(&s, slab, 0);
    err[0] = 0;
    int rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NT, err, LM_ERRLEN);
    *values_ok = rc == 0 && tset_ok(&s);
    tset_free(&s);
    return rc;
}

/* decompositions for reading */
static void slabs_half(int64_t slab[NT][2]) { /* ranks 0-1 split rows, 2-3 nothing */
    for (int k = 0; k < NT; k++) {
        int64_t h = numel(k) / 2 + 1; /* cuts a row */
        slab[k][0] = g_rank == 1 ? h : 0;
        slab[k][1] = g_rank == 0 ? h : g_rank == 1 ? numel(k) - h : 0;
    }
}
static void slabs_full(int64_t slab[NT][2]) {
    for (int k = 0; k < NT; k++) {
        slab[k][0] = 0;
        slab[k][1] = numel(k);
    }
}
static void slabs_overlap(int64_t slab[NT][2]) { /* overlapping, covering everything */
    for (int k = 0; k < NT; k++) {
        int64_t r = numel(k), a[4][2] = {{0, r * 2 / 3}, {r / 3, r - r / 3}, {r / 2, 1}, {0, r}};
        slab[k][0] = a[g_rank][0];
        slab[k][1] = a[g_rank][1];
    }
}
/* ranks 0-2 split every tensor at N/3 and 2N/3 + 1 (inside rows), rank 3 nothing */
static void slabs_cut3(int64_t slab[NT][2]) {
    for (int k = 0; k < NT; k++) {
        int64_t n = numel(k), c[4] = {0, n / 3, 2 * n / 3 + 1, n};
        if (c[2] > n) c[2] = n;
        slab[k][0] = g_rank < 3 ? c[g_rank] : n;
        slab[k][1] = g_rank < 3 ? c[g_rank + 1] - c[g_rank] : 0;
    }
}
static void slabs_partial(int64_t slab[NT][2]) { /* only rank 0, the first 2 rows but one element */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = 0;
        slab[k][1] = g_rank == 0 ? 2 * COLS[k] - 1 : 0;
    }
}

static void slabs_rank0(int64_t slab[NT][2]) { /* rank 0 reads everything, ranks 1-3 nothing */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = 0;
        slab[k][1] = g_rank == 0 ? numel(k) : 0;
    }
}
/* overlapping pieces cut inside rows, no rank holding a whole tensor:
 * rank r holds [r*n/4 - 2, (r+1)*n/4 + 1) clipped to [0, n), rank 3 to the end */
static void slabs_overlap_cut(int64_t slab[NT][2]) {
    for (int k = 0; k < NT; k++) {
        int64_t n = numel(k), a = g_rank * n / 4 - 2, b = g_rank == 3 ? n : (g_rank + 1) * n / 4 + 1;
        if (a < 0) a = 0;
        if (b > n) b = n;
        slab[k][0] = a;
        slab[k][1] = b - a;
    }
}

/* Rank 0, serial HDF5: every dataset of `path` (3 sets) holds value() at
 * every element and carries the checksum of ckpt.h's formula, computed here
 * independently of io/ckpt.c. Other ranks return 1. */
static int file_matches(const char *path) {
    if (g_rank != 0) return 1;
    static const char *G[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    int ok = 1;
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NT; k++) {
            char dp[256];
            snprintf(dp, sizeof dp, "%s/%s", G[set], NAMES[k]);
            hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
            float x[64] = {0};
            uint64_t cs = 1, ref = 0;
            hid_t a = d >= 0 ? H5Aopen(d, "checksum", H5P_DEFAULT) : -1;
            if (d < 0 || a < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 ||
                H5Aread(a, H5T_NATIVE_UINT64, &cs) < 0)
                ok = 0;
            if (a >= 0) H5Aclose(a);
            if (d >= 0) H5Dclose(d);
            for (uint64_t i = 0; i < (uint64_t)numel(k); i++) {
                uint32_t b;
                memcpy(&b, &x[i], 4);
                uint64_t z = i * 0x9E3779B97F4A7C15ull + b;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                ref += z ^ (z >> 31);
                if (x[i] != value(set, k, (int64_t)i)) {
                    fprintf(stderr, "%s: %s element %llu: %g\n", path, dp, (unsigned long long)i, (double)x[i]);
                    ok = 0;
                }
            }
            if (cs != ref) {
                fprintf(stderr, "%s: %s: checksum %llx, formula %llx\n", path, dp, (unsigned long long)cs,
                        (unsigned long long)ref);
                ok = 0;
            }
        }
    H5Fclose(f);
    return ok;
}

/* Rank 0: copy `from` to `to` and flip a bit of element `elem` of dataset dp */
static void corrupt_copy(const char *from, const char *to, const char *dp, long elem) {
    if (g_rank == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "cp %s %s", from, to);
        if (system(cmd)) fprintf(stderr, "cp failed\n");
        hid_t f = H5Fopen(to, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
        long off = (long)H5Dget_offset(d) + 4 * elem + 1;
        H5Dclose(d);
        H5Fclose(f);
        int fd = open(to, O_RDWR);
        unsigned char c = 0;
        if (pread(fd, &c, 1, off) != 1) fprintf(stderr, "pread failed\n");
        c ^= 0x40;
        if (pwrite(fd, &c, 1, off) != 1) fprintf(stderr, "pwrite failed\n");
        close(fd);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

static int same_everywhere(const char *s) {
    char mine[LM_ERRLEN] = {0}, root[LM_ERRLEN] = {0};
    snprintf(mine, sizeof mine, "%s", s);
    memcpy(root, mine, sizeof root);
    MPI_Bcast(root, LM_ERRLEN, MPI_CHAR, 0, MPI_COMM_WORLD);
    return strcmp(root, mine) == 0;
}

/* ---- tensor-parallel blocks: row and column slices (ckpt_tensor.row0 ..) ---- */

enum { NB = 4 };
static const char *BNAMES[NB] = {"model.layers.1.mlp.down_proj.weight", "model.layers.1.mlp.gate_proj.weight",
                                 "model.layers.1.self_attn.o_proj.weight", "model.layers.1.input_layernorm.weight"};
static const int BNDIM[NB] = {2, 2, 2, 1};
static const int64_t BROWS[NB] = {6, 7, 5, 11}, BCOLS[NB] = {8, 5, 6, 1};
static int64_t bnumel(int k) { return BROWS[k] * BCOLS[k]; }
static float bvalue(int set, int k, int64_t i) { return (float)(set * 1000 + k * 100 + 50) + 0.25f * (float)i + 0.0625f; }

/* one rank's piece of a tensor: block (0,0,0,0 = the whole tensor) and the
 * range [off, off+count) of it */
typedef struct { int64_t row0, col0, brows, bcols, off, count; } bpiece;
typedef struct { ckpt_tensor t[3][NB]; } bset;

/* full row-major index of element i of piece p of tensor k, computed here
 * independently of io/ckpt_piece.c */
static int64_t bfull(int k, const bpiece *p, int64_t i) {
    int64_t w = (p->brows || p->bcols) ? p->bcols : BCOLS[k], l = p->off + i;
    return (p->row0 + l / w) * BCOLS[k] + p->col0 + l % w;
}
static void bset_make(bset *s, const bpiece d[NB], int fill) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NB; k++) {
            const bpiece *p = &d[k];
            float *b = p->count > 0 ? calloc((size_t)p->count, sizeof(float)) : NULL;
            for (int64_t i = 0; i < p->count && fill; i++) b[i] = bvalue(set, k, bfull(k, p, i));
            s->t[set][k] = (ckpt_tensor){BNAMES[k], BNDIM[k], BROWS[k], BCOLS[k], p->off, p->count, b,
                                         p->row0, p->col0, p->brows, p->bcols, NULL, NULL, NULL};
        }
}
static void bset_free(bset *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NB; k++) free(s->t[set][k].data);
}
static int bset_ok(const bset *s, const bpiece d[NB], int nsets) {
    for (int set = 0; set < nsets; set++)
        for (int k = 0; k < NB; k++)
            for (int64_t i = 0; i < d[k].count; i++) {
                int64_t f = bfull(k, &d[k], i);
                if (s->t[set][k].data[i] != bvalue(set, k, f)) {
                    fprintf(stderr, "rank %d: set %d %s piece element %lld (full %lld): %g, want %g\n", g_rank, set,
                            BNAMES[k], (long long)i, (long long)f, (double)s->t[set][k].data[i],
                            (double)bvalue(set, k, f));
                    return 0;
                }
            }
    return 1;
}
static int bsave(const char *dir, long step, const bpiece d[NB], char *err) {
    bset s;
    bset_make(&s, d, 1);
    ckpt_meta m = meta_for(step);
    err[0] = 0;
    int rc = ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NB, 5, err, LM_ERRLEN);
    bset_free(&s);
    return rc;
}
static int bload(const char *path, const bpiece d[NB], int *values_ok, char *err) {
    bset s;
    bset_make(&s, d, 0);
    err[0] = 0;
    int rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NB, err, LM_ERRLEN);
    *values_ok = rc == 0 && bset_ok(&s, d, 3);
    bset_free(&s);
    return rc;
}

/* The writing decomposition (tensor parallelism x ZeRO-like cuts):
 *  [6,8] row-parallel: column slices [0,4) on ranks 0-1, [4,8) on ranks 2-3,
 *        each slice (a [6,4] block of 24) split into two flat pieces that cut
 *        rows: [0,10) | [10,24) and [0,13) | [13,24);
 *  [7,5] column-parallel: row slices of 2 rows, the last clipped to 1 row;
 *  [5,6] column slices [0,3) on ranks 0-1 (both whole: replicas), [3,6) on
 *        ranks 2-3 as overlapping cut pieces [0,10) and [7,15);
 *  [11]  row slices of 3, the last clipped to 2. */
static void dec_write(bpiece d[NB]) {
    int r = g_rank, s = r / 2;
    static const int64_t cut0[4][2] = {{0, 10}, {10, 14}, {0, 13}, {13, 11}};
    d[0] = (bpiece){0, 4 * s, 6, 4, cut0[r][0], cut0[r][1]};
    int64_t br = 7 - 2 * r < 2 ? 7 - 2 * r : 2;
    d[1] = (bpiece){2 * r, 0, br, 5, 0, br * 5};
    static const int64_t cut2[4][2] = {{0, 15}, {0, 15}, {0, 10}, {7, 8}};
    d[2] = (bpiece){0, 3 * s, 5, 3, cut2[r][0], cut2[r][1]};
    br = 11 - 3 * r < 3 ? 11 - 3 * r : 3;
    d[3] = (bpiece){3 * r, 0, br, 1, 0, br};
}
/* flat pieces cut inside rows, as ZeRO shards: [r*n/4, (r+1)*n/4) */
static void dec_flat_cut(bpiece d[NB]) {
    for (int k = 0; k < NB; k++) {
        int64_t n = bnumel(k), a = g_rank * n / 4, b = (g_rank + 1) * n / 4;
        d[k] = (bpiece){0, 0, 0, 0, a, b - a};
    }
}
static void dec_flat_whole(bpiece d[NB]) {
    for (int k = 0; k < NB; k++) d[k] = (bpiece){0, 0, 0, 0, 0, bnumel(k)};
}
/* another block decomposition:
 *  [6,8] 4 column slices of 2 columns, whole;
 *  [7,5] as column slices instead of rows: [0,3) on ranks 0-1 as
 *        overlapping cut pieces [0,11) and [9,21), [3,5) on ranks 2-3 (rank
 *        2 whole, rank 3 the cut piece [5,9) inside it);
 *  [5,6] as row slices instead of columns: 2, 2, 1 rows, and on rank 3 the
 *        empty slice at row 5;
 *  [11]  row slices of 4, 4, 3 and an empty one at the end. */
static void dec_r1(bpiece d[NB]) {
    int r = g_rank, s = r / 2;
    d[0] = (bpiece){0, 2 * r, 6, 2, 0, 12};
    static const int64_t cut1[4][2] = {{0, 11}, {9, 12}, {0, 14}, {5, 4}};
    d[1] = (bpiece){0, 3 * s, 7, s ? 2 : 3, cut1[r][0], cut1[r][1]};
    int64_t r0 = 2 * r < 5 ? 2 * r : 5, br = 5 - r0 < 2 ? 5 - r0 : 2;
    d[2] = (bpiece){r0, 0, br, 6, 0, br * 6};
    r0 = 4 * r < 11 ? 4 * r : 11;
    br = 11 - r0 < 4 ? 11 - r0 : 4;
    d[3] = (bpiece){r0, 0, br, 1, 0, br};
}
/* and a third:
 *  [6,8] uneven column slices [0,5) (ranks 0-1: [0,17) | [17,30)) and
 *        [5,8) (ranks 2-3: [0,4) | [4,18));
 *  [7,5] flat pieces and row slices mixed: rank 0 the flat [0,12), rank 1
 *        rows [2,5), rank 2 rows [5,7), rank 3 nothing;
 *  [5,6] column slices of 1, 2, 3 columns on ranks 0-2, whole, and on
 *        rank 3 the empty slice at column 6;
 *  [11]  one row slice [2,11) on rank 1 cut to [1,9) of it, the rest flat
 *        on rank 0: [0,3). */
static void dec_r2(bpiece d[NB]) {
    int r = g_rank;
    static const bpiece p0[4] = {{0, 0, 6, 5, 0, 17}, {0, 0, 6, 5, 17, 13}, {0, 5, 6, 3, 0, 4}, {0, 5, 6, 3, 4, 14}};
    static const bpiece p1[4] = {{0, 0, 0, 0, 0, 12}, {2, 0, 3, 5, 0, 15}, {5, 0, 2, 5, 0, 10}, {0, 0, 0, 0, 0, 0}};
    static const bpiece p2[4] = {{0, 0, 5, 1, 0, 5}, {0, 1, 5, 2, 0, 10}, {0, 3, 5, 3, 0, 15}, {0, 6, 5, 0, 0, 0}};
    static const bpiece p3[4] = {{0, 0, 0, 0, 0, 3}, {2, 0, 9, 1, 1, 8}, {0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 11, 0}};
    d[0] = p0[r];
    d[1] = p1[r];
    d[2] = p2[r];
    d[3] = p3[r];
}
/* column slices that leave elements unread: rank 0 reads columns [0,4) of
 * the [6,8] and [0,3) of the [5,6], rank 1 columns [4,6) of the [6,8];
 * nothing else of those two; the other tensors whole on rank 2 */
static void dec_partial_cols(bpiece d[NB]) {
    int r = g_rank;
    d[0] = r == 0 ? (bpiece){0, 0, 6, 4, 0, 24} : r == 1 ? (bpiece){0, 4, 6, 2, 0, 12} : (bpiece){0, 0, 0, 0, 0, 0};
    d[1] = (bpiece){0, 0, 0, 0, 0, r == 2 ? 35 : 0};
    d[2] = r == 0 ? (bpiece){0, 0, 5, 3, 0, 15} : (bpiece){0, 0, 0, 0, 0, 0};
    d[3] = (bpiece){0, 0, 0, 0, 0, r == 2 ? 11 : 0};
}

/* Rank 0, serial HDF5 (H5Dread of whole datasets): every dataset of `path`
 * holds bvalue() at every element with the checksum of ckpt.h's formula;
 * if ref != NULL, its checksum attribute and its stored bytes equal those
 * of the same dataset in ref. Other ranks return 1. */
static int bfile_matches(const char *path, const char *ref) {
    if (g_rank != 0) return 1;
    static const char *G[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), fr = ref ? H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f < 0 || (ref && fr < 0)) return 0;
    int ok = 1;
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < NB; k++) {
            char dp[256];
            snprintf(dp, sizeof dp, "%s/%s", G[set], BNAMES[k]);
            float x[64] = {0}, y[64] = {0};
            uint64_t cs = 1, ref_cs = 0, formula = 0;
            hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
            hid_t a = d >= 0 ? H5Aopen(d, "checksum", H5P_DEFAULT) : -1;
            if (d < 0 || a < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 ||
                H5Aread(a, H5T_NATIVE_UINT64, &cs) < 0)
                ok = 0;
            long off = d >= 0 ? (long)H5Dget_offset(d) : -1;
            if (a >= 0) H5Aclose(a);
            if (d >= 0) H5Dclose(d);
            for (uint64_t i = 0; i < (uint64_t)bnumel(k); i++) {
                uint32_t b;
                memcpy(&b, &x[i], 4);
                uint64_t z = i * 0x9E3779B97F4A7C15ull + b;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                formula += z ^ (z >> 31);
                if (x[i] != bvalue(set, k, (int64_t)i)) {
                    fprintf(stderr, "%s: %s element %llu: %g\n", path, dp, (unsigned long long)i, (double)x[i]);
                    ok = 0;
                }
            }
            if (cs != formula) {
                fprintf(stderr, "%s: %s: checksum %llx, formula %llx\n", path, dp, (unsigned long long)cs,
                        (unsigned long long)formula);
                ok = 0;
            }
            if (!ref) continue;
            d = H5Dopen2(fr, dp, H5P_DEFAULT);
            a = d >= 0 ? H5Aopen(d, "checksum", H5P_DEFAULT) : -1;
            if (d < 0 || a < 0 || H5Aread(a, H5T_NATIVE_UINT64, &ref_cs) < 0) ok = 0;
            long roff = d >= 0 ? (long)H5Dget_offset(d) : -1;
            if (a >= 0) H5Aclose(a);
            if (d >= 0) H5Dclose(d);
            /* the stored bytes of both datasets, read from the files */
            int fa = open(path, O_RDONLY), fb = open(ref, O_RDONLY);
            size_t nb = 4 * (size_t)bnumel(k);
            if (off < 0 || roff < 0 || pread(fa, x, nb, off) != (ssize_t)nb || pread(fb, y, nb, roff) != (ssize_t)nb ||
                memcmp(x, y, nb) || cs != ref_cs) {
                fprintf(stderr, "%s: %s: differs from %s (checksums %llx, %llx)\n", path, dp, ref,
                        (unsigned long long)cs, (unsigned long long)ref_cs);
                ok = 0;
            }
            close(fa);
            close(fb);
        }
    H5Fclose(f);
    if (fr >= 0) H5Fclose(fr);
    return ok;
}

/* The block tests; returns nothing, reports 11 TAP lines. */
static void block_tests(void) {
    char dir[128], fdir[128], path[256], fpath[256], corrupt[256], err[LM_ERRLEN], lp[256], e2[LM_ERRLEN];
    bpiece d[NB];
    int vok = 0, rc, rc2;
    snprintf(dir, sizeof dir, "%s/../tp", g_dir);
    snprintf(fdir, sizeof fdir, "%s/../tpflat", g_dir);

    /* the save from row and column slices, and the same tensors from flat cut pieces */
    dec_write(d);
    rc = bsave(dir, 3, d, err);
    if (rc) fprintf(stderr, "rank %d: block save: %s\n", g_rank, err);
    int found = ckpt_find_latest(dir, path, sizeof path, err, sizeof err);
    dec_flat_cut(d);
    rc2 = bsave(fdir, 3, d, err);
    int found2 = ckpt_find_latest(fdir, fpath, sizeof fpath, err, sizeof err);
    report(rc == 0 && found == 1 && rc2 == 0 && found2 == 1,
           "save from column slices cut in ZeRO pieces, clipped row slices, replicated column slices, 1-D row slices");
    report(found == 1 && found2 == 1 && bfile_matches(path, NULL) && bfile_matches(fpath, NULL) &&
               bfile_matches(path, fpath),
           "block save: full tensors by plain H5Dread, formula checksums, same bytes and checksums as flat pieces");

    /* read back in other decompositions, every element compared; each of
     * these covers every tensor, so the checksums are verified too */
    dec_flat_whole(d);
    rc = bload(path, d, &vok, err);
    report(rc == 0 && vok, "block-written file loads as flat whole tensors on every rank");
    dec_r1(d);
    rc = bload(path, d, &vok, err);
    int vok2 = 0;
    rc2 = bload(fpath, d, &vok2, err);
    report(rc == 0 && vok && rc2 == 0 && vok2,
           "loads as 4 column slices, rows as columns, columns as rows (both files)");
    dec_r2(d);
    rc = bload(path, d, &vok, err);
    report(rc == 0 && vok, "loads as uneven cut column slices, flat pieces mixed with row slices");
    dec_write(d);
    rc = bload(path, d, &vok, err);
    report(rc == 0 && vok, "loads in the writing decomposition");

    /* a flipped bit at element (4, 6) of the [6,8] (full index 38): caught
     * by column-slice readers; slices that leave it unread load unchecked */
    snprintf(corrupt, sizeof corrupt, "%s/../tpcorrupt.h5", g_dir);
    corrupt_copy(path, corrupt, "/model/model.layers.1.mlp.down_proj.weight", 38);
    const char *want = "/model/model.layers.1.mlp.down_proj.weight: checksum mismatch";
    int caught = 1;
    void (*decs[3])(bpiece *) = {dec_write, dec_r1, dec_r2};
    for (int i = 0; i < 3; i++) {
        decs[i](d);
        rc = bload(corrupt, d, &vok, err);
        caught &= rc == 2 && strstr(err, want) && strstr(err, "tpcorrupt.h5") && same_everywhere(err);
    }
    report(caught, "corruption caught by three column-slice decompositions, same message on all ranks");
    dec_partial_cols(d);
    rc = bload(corrupt, d, &vok, err);
    report(rc == 0 && vok, "column slices that leave elements unread: load works without a checksum verdict");

    /* bad blocks on one rank only: refused on all ranks naming the tensor */
    static const bpiece bad[] = {
        {0, 6, 6, 4, 0, 0},  /* columns [6,10) of 8 */
        {1, 0, 5, 4, 0, 0},  /* neither whole rows nor whole columns */
        {0, 4, 6, 4, 0, 25}, /* 25 elements of a 24-element block */
        {0, -1, 6, 4, 0, 4}, /* negative column */
        {3, 0, 4, 8, 0, 8},  /* rows [3,7) of 6 */
    };
    int ok_save = 1, ok_load = 1;
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        dec_write(d);
        if (g_rank == 2) d[0] = bad[c];
        rc = bsave(dir, 4 + (long)c, d, err);
        found = ckpt_find_latest(dir, lp, sizeof lp, e2, sizeof e2);
        ok_save &= rc == 1 && strstr(err, "/model/model.layers.1.mlp.down_proj.weight") && strstr(err, "block") &&
                   same_everywhere(err) &&
                   found == 1 && strstr(lp, "step_00000003.h5");
        dec_r1(d);
        if (g_rank == 1) d[0] = bad[c];
        rc = bload(path, d, &vok, err);
        ok_load &= rc == 2 && strstr(err, path) && strstr(err, "/model/model.layers.1.mlp.down_proj.weight") &&
                   strstr(err, "block") && same_everywhere(err);
        if (g_rank == 0 && (!ok_save || !ok_load)) fprintf(stderr, "bad block %zu: %s\n", c, err);
    }
    report(ok_save, "a bad block on rank 2 only: save returns 1 on all ranks naming the tensor, nothing published");
    report(ok_load, "a bad block on rank 1 only: load returns 2 on all ranks naming the file and tensor");

    /* across ranks: column slices mixed with a flat piece (save), and two
     * column slices that overlap without being equal (load) */
    dec_write(d);
    if (g_rank == 0) d[2] = (bpiece){0, 0, 0, 0, 0, 30};
    rc = bsave(dir, 20, d, err);
    int mix = rc == 1 && strstr(err, "/model/model.layers.1.self_attn.o_proj.weight") && strstr(err, "column") &&
              same_everywhere(err);
    dec_r1(d);
    if (g_rank == 1) d[0] = (bpiece){0, 1, 6, 3, 0, 18}; /* [1,4) against rank 0's [0,2) */
    rc = bload(path, d, &vok, err);
    int ovl = rc == 2 && strstr(err, "/model/model.layers.1.mlp.down_proj.weight") && strstr(err, "overlap") &&
              same_everywhere(err);
    if (g_rank == 0 && !(mix && ovl)) fprintf(stderr, "mix/overlap: %s\n", err);
    report(mix && ovl, "column slices mixed with flat pieces, unequal overlapping column slices: refused everywhere");
}

/* ---- streamed pieces: data NULL, pull on save, push on load ---- */

/* One streamed piece. pull copies from src, push into dst. Every call is
 * checked: inside the piece, not empty, after the previous one (increasing
 * off, so no element twice); the largest block, the elements moved and the
 * lm_alloc bytes held during a call (above g_base) are recorded. */
typedef struct {
    const float *src;
    float *dst;
    int64_t count, next, elems, calls, maxblk;
    long long held;
    int bad;
} sctx;
typedef struct { sctx c[3][4]; } sctxs;
static size_t g_base;     /* lm_alloc_bytes() before the call under test */
static int g_poison = -1; /* pull: element g_poison_at of this set/tensor gets g_poison_val */
static int64_t g_poison_at;
static float g_poison_val;
static const sctx *g_poison_ctx;

static void sctx_note(sctx *c, int64_t off, int64_t n) {
    if (off < c->next || n <= 0 || off + n > c->count) c->bad = 1;
    c->next = off + n;
    c->elems += n;
    c->calls++;
    if (n > c->maxblk) c->maxblk = n;
    long long h = (long long)lm_alloc_bytes() - (long long)g_base;
    if (h > c->held) c->held = h;
}
static void s_pull(void *ctx, float *dst, int64_t off, int64_t n) {
    sctx *c = ctx;
    sctx_note(c, off, n);
    if (c->bad) return;
    memcpy(dst, c->src + off, sizeof(float) * (size_t)n);
    if (c == g_poison_ctx && g_poison_at >= off && g_poison_at < off + n) dst[g_poison_at - off] = g_poison_val;
}
static void s_push(void *ctx, const float *src, int64_t off, int64_t n) {
    sctx *c = ctx;
    sctx_note(c, off, n);
    if (!c->bad) memcpy(c->dst + off, src, sizeof(float) * (size_t)n);
}
/* turn the 3 x 4 pieces t into streamed ones (data NULL; pull and push set,
 * also on empty pieces) reading from / writing to their buffers */
static void stream_on(ckpt_tensor (*t)[4], sctxs *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < 4; k++) {
            ckpt_tensor *x = &t[set][k];
            s->c[set][k] = (sctx){.src = x->data, .dst = x->data, .count = x->count};
            x->data = NULL;
            x->pull = s_pull;
            x->push = s_push;
            x->ctx = &s->c[set][k];
        }
    g_poison_ctx = g_poison >= 0 ? &s->c[g_poison / 4][g_poison % 4] : NULL;
}
static void stream_off(ckpt_tensor (*t)[4], const sctxs *s) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < 4; k++) t[set][k].data = s->c[set][k].dst;
}
/* what the streamed calls saw, over the ranks: any bad call, the largest
 * block, the most bytes held, the elements moved per set and tensor (summed) */
typedef struct {
    int bad;
    long long maxblk, held, elems[3][4], calls[3][4];
} sstat;
static sstat stream_stat(const sctxs *s) {
    sstat l = {0}, g = {0};
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < 4; k++) {
            const sctx *c = &s->c[set][k];
            l.bad |= c->bad;
            if (c->maxblk > l.maxblk) l.maxblk = c->maxblk;
            if (c->held > l.held) l.held = c->held;
            l.elems[set][k] = c->elems;
            l.calls[set][k] = c->calls;
        }
    MPI_Allreduce(&l.bad, &g.bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&l.maxblk, &g.maxblk, 2, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(l.elems, g.elems, 24, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return g;
}
/* pulled once per element over the ranks: every tensor's elements summed
 * over ranks equal its size, in every set */
static int pulled_once(const sstat *st, const int64_t *sizes) {
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < 4; k++)
            if (st->elems[set][k] != sizes[k]) {
                if (g_rank == 0)
                    fprintf(stderr, "set %d tensor %d: %lld elements pulled, %lld in the tensor\n", set, k,
                            st->elems[set][k], (long long)sizes[k]);
                return 0;
            }
    return 1;
}
/* each rank pushed exactly its pieces (and nothing for empty ones) */
static int pushed_all(const sctxs *s) {
    int ok = 1;
    for (int set = 0; set < 3; set++)
        for (int k = 0; k < 4; k++) {
            const sctx *c = &s->c[set][k];
            ok &= !c->bad && c->elems == c->count && (c->count > 0 || c->calls == 0);
        }
    return ok;
}

/* save the flat pieces slab (values value()) into dir, streamed or from data */
static int ssave(const char *dir, long step, const int64_t slab[NT][2], int stream, sstat *st, char *err) {
    tset s;
    sctxs c;
    tset_make(&s, slab, 1);
    if (stream) stream_on(s.t, &c);
    ckpt_meta m = meta_for(step);
    err[0] = 0;
    g_base = lm_alloc_bytes();
    int rc = ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NT, 0, err, LM_ERRLEN);
    if (stream) {
        stream_off(s.t, &c);
        *st = stream_stat(&c);
    }
    tset_free(&s);
    return rc;
}
/* load path into the flat pieces slab, streamed (each rank pushed exactly
 * its pieces) or into data; *values_ok as load() */
static int sload(const char *path, const int64_t slab[NT][2], int stream, int *values_ok, sstat *st, char *err) {
    tset s;
    sctxs c;
    tset_make(&s, slab, 0);
    if (stream) stream_on(s.t, &c);
    err[0] = 0;
    g_base = lm_alloc_bytes();
    int rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NT, err, LM_ERRLEN);
    int pushed = 1;
    if (stream) {
        stream_off(s.t, &c);
        *st = stream_stat(&c);
        pushed = pushed_all(&c);
    }
    *values_ok = rc == 0 && pushed && tset_ok(&s);
    tset_free(&s);
    return rc;
}
static int bsave_s(const char *dir, long step, const bpiece d[NB], sstat *st, char *err) {
    bset s;
    sctxs c;
    bset_make(&s, d, 1);
    stream_on(s.t, &c);
    ckpt_meta m = meta_for(step);
    err[0] = 0;
    int rc = ckpt_save(MPI_COMM_WORLD, dir, &m, s.t[0], s.t[1], s.t[2], NB, 0, err, LM_ERRLEN);
    stream_off(s.t, &c);
    *st = stream_stat(&c);
    bset_free(&s);
    return rc;
}
static int bload_s(const char *path, const bpiece d[NB], int *values_ok, char *err) {
    bset s;
    sctxs c;
    bset_make(&s, d, 0);
    stream_on(s.t, &c);
    err[0] = 0;
    int rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NB, err, LM_ERRLEN);
    stream_off(s.t, &c);
    int pushed = pushed_all(&c);
    *values_ok = rc == 0 && pushed && bset_ok(&s, d, 3);
    bset_free(&s);
    return rc;
}

/* Rank 0: every dataset of the 3 sets named names[0..n) holds the same
 * bytes (H5Dread as stored float32, compared with memcmp) and the same
 * checksum attribute in files a and b. Other ranks return 1. */
static int same_datasets(const char *a, const char *b, const char *const *names, const int64_t *sizes, int n) {
    if (g_rank != 0) return 1;
    static const char *G[3] = {"/model", "/optim/exp_avg", "/optim/exp_avg_sq"};
    hid_t f[2] = {H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT), H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT)};
    int ok = f[0] >= 0 && f[1] >= 0;
    for (int set = 0; set < 3 && ok; set++)
        for (int k = 0; k < n && ok; k++) {
            char dp[256];
            snprintf(dp, sizeof dp, "%s/%s", G[set], names[k]);
            uint64_t cs[2] = {0, 1};
            float *x[2] = {calloc((size_t)sizes[k] + 1, 4), calloc((size_t)sizes[k] + 1, 4)};
            for (int i = 0; i < 2; i++) {
                hid_t d = H5Dopen2(f[i], dp, H5P_DEFAULT);
                hid_t at = d >= 0 ? H5Aopen(d, "checksum", H5P_DEFAULT) : -1;
                if (d < 0 || at < 0 || H5Dread(d, H5T_IEEE_F32LE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x[i]) < 0 ||
                    H5Aread(at, H5T_NATIVE_UINT64, &cs[i]) < 0)
                    ok = 0;
                if (at >= 0) H5Aclose(at);
                if (d >= 0) H5Dclose(d);
            }
            if (!ok || cs[0] != cs[1] || memcmp(x[0], x[1], 4 * (size_t)sizes[k])) {
                fprintf(stderr, "%s and %s: %s differs (checksums %llx, %llx)\n", a, b, dp, (unsigned long long)cs[0],
                        (unsigned long long)cs[1]);
                ok = 0;
            }
            free(x[0]);
            free(x[1]);
        }
    for (int i = 0; i < 2; i++)
        if (f[i] >= 0) H5Fclose(f[i]);
    return ok;
}

/* one [200,100] tensor in 4 flat pieces of 5000 cut inside rows (rank 3's
 * piece 5000 + 0, i.e. [15000,20000)), moved in blocks of 64: how much the
 * streamed save and load hold (lm_alloc) while calling back */
static int big_tensor(const char *dir, long step, char *err) {
    enum { R = 200, C = 100, PER = 5000, BLK = 64 };
    static const char *nm = "model.layers.2.mlp.down_proj.weight";
    setenv("LAMINA_CKPT_PIECE_ELEMS", "64", 1);
    float *buf = calloc(PER, sizeof(float));
    for (int64_t i = 0; i < PER; i++) buf[i] = 0.5f * (float)(g_rank * PER + i) - 7.0f;
    ckpt_tensor t[3][4];
    memset(t, 0, sizeof t);
    for (int set = 0; set < 3; set++) {
        t[set][0] = (ckpt_tensor){.name = nm, .ndim = 2, .rows = R, .cols = C, .off = g_rank * PER, .count = PER,
                                  .data = buf};
        if (set == 2) t[set][0].data = calloc(PER, sizeof(float)); /* zeros: a valid second moment */
    }
    float *v2 = t[2][0].data;
    ckpt_tensor w[3][4];
    memcpy(w, t, sizeof t);
    sctxs c;
    stream_on(w, &c);
    ckpt_meta m = meta_for(step);
    g_base = lm_alloc_bytes();
    int rc = ckpt_save(MPI_COMM_WORLD, dir, &m, w[0], w[1], w[2], 1, 0, err, LM_ERRLEN);
    stream_off(w, &c);
    long long held = 0, maxblk = 0, calls = 0;
    for (int set = 0; set < 3; set++) {
        if (c.c[set][0].held > held) held = c.c[set][0].held;
        if (c.c[set][0].maxblk > maxblk) maxblk = c.c[set][0].maxblk;
        calls += c.c[set][0].calls;
    }
    /* read back streamed into fresh buffers */
    float *back[3] = {calloc(PER, 4), calloc(PER, 4), calloc(PER, 4)};
    for (int set = 0; set < 3; set++) w[set][0].data = back[set];
    stream_on(w, &c);
    char path[300];
    snprintf(path, sizeof path, "%s/step_%08ld.h5", dir, step);
    g_base = lm_alloc_bytes();
    int rc2 = rc ? 1 : ckpt_load(MPI_COMM_WORLD, path, w[0], w[1], w[2], 1, err, LM_ERRLEN);
    stream_off(w, &c);
    long long lheld = 0, lmax = 0;
    for (int set = 0; set < 3; set++) {
        if (c.c[set][0].held > lheld) lheld = c.c[set][0].held;
        if (c.c[set][0].maxblk > lmax) lmax = c.c[set][0].maxblk;
    }
    int same = !memcmp(back[0], buf, 4 * PER) && !memcmp(back[1], buf, 4 * PER) && !memcmp(back[2], v2, 4 * PER);
    /* held during a call: the staging block and the plan's few intervals,
     * far below the 20000-byte piece */
    long long bound = BLK * 4 + 1024;
    int ok = rc == 0 && rc2 == 0 && same && maxblk == BLK && lmax == BLK && calls == 3 * ((PER + BLK - 1) / BLK) &&
             held >= BLK * 4 && held <= bound && lheld >= BLK * 4 && lheld <= bound;
    if (!ok || g_rank == 0)
        fprintf(stderr, "# rank %d big tensor: rc %d/%d same %d, blocks <= %lld/%lld, %lld pulls, lm_alloc held in a "
                "callback: save %lld B, load %lld B (piece %d B, bound %lld B)\n",
                g_rank, rc, rc2, same, maxblk, lmax, calls, held, lheld, 4 * PER, bound);
    free(buf);
    free(v2);
    for (int set = 0; set < 3; set++) free(back[set]);
    setenv("LAMINA_CKPT_PIECE_ELEMS", "7", 1);
    return ok;
}

enum { STREAM_TESTS = 11 };
static void stream_tests(void) {
    char sd[160], sp[160], path[300], ref[300], err[LM_ERRLEN], lp[300], e2[LM_ERRLEN];
    snprintf(sd, sizeof sd, "%s/../sdata", g_dir);
    snprintf(sp, sizeof sp, "%s/../spull", g_dir);
    int64_t slab[NT][2], sizes[NT], bsizes[NB];
    for (int k = 0; k < NT; k++) sizes[k] = numel(k);
    for (int k = 0; k < NB; k++) bsizes[k] = bnumel(k);
    sstat st, st2;
    int vok = 0, vok2 = 0, rc, rc2;

    /* flat pieces cut inside rows, uneven, one empty, one rank holding all */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    rc = ssave(sd, 1, slab, 0, &st, err);
    rc2 = ssave(sp, 1, slab, 1, &st, err);
    snprintf(ref, sizeof ref, "%s/step_00000001.h5", sd);
    snprintf(path, sizeof path, "%s/step_00000001.h5", sp);
    report(rc == 0 && rc2 == 0 && same_datasets(path, ref, NAMES, sizes, NT) && file_matches(path) && !st.bad &&
               pulled_once(&st, sizes) && st.maxblk == 7,
           "streamed save of uneven cut and empty pieces: the same bytes and checksums as from data, "
           "each element pulled once, blocks of at most 7");

    /* overlapping writers: only the elements a rank writes are pulled */
    slabs_overlap(slab);
    rc = ssave(sd, 2, slab, 0, &st, err);
    rc2 = ssave(sp, 2, slab, 1, &st, err);
    snprintf(ref, sizeof ref, "%s/step_00000002.h5", sd);
    snprintf(path, sizeof path, "%s/step_00000002.h5", sp);
    report(rc == 0 && rc2 == 0 && same_datasets(path, ref, NAMES, sizes, NT) && !st.bad && pulled_once(&st, sizes),
           "streamed save of overlapping pieces: same file as from data, each element pulled by one rank only");

    /* tensor-parallel blocks: column slices (replicas, overlapping cuts),
     * row slices */
    bpiece d[NB];
    dec_write(d);
    rc = bsave(sd, 3, d, err);
    rc2 = bsave_s(sp, 3, d, &st, err);
    snprintf(ref, sizeof ref, "%s/step_00000003.h5", sd);
    snprintf(path, sizeof path, "%s/step_00000003.h5", sp);
    report(rc == 0 && rc2 == 0 && bfile_matches(path, ref) && !st.bad && pulled_once(&st, bsizes) && st.maxblk <= 7,
           "streamed save of row and column slices: the same bytes and checksums as from data");

    /* load by push in other decompositions, against load into data */
    snprintf(path, sizeof path, "%s/step_00000001.h5", sp);
    void (*flat[4])(int64_t (*)[2]) = {slabs_cut3, slabs_overlap, slabs_full, slabs_rank0};
    int ok = 1;
    long long maxblk = 0;
    for (int i = 0; i < 4; i++) {
        flat[i](slab);
        rc = sload(path, slab, 1, &vok, &st, err);
        rc2 = sload(path, slab, 0, &vok2, &st2, err);
        ok &= rc == 0 && vok && rc2 == 0 && vok2 && !st.bad;
        if (st.maxblk > maxblk) maxblk = st.maxblk;
    }
    report(ok && maxblk == 7, "load by push as 3 cut pieces, overlapping, replicated, rank 0 alone: the values "
                              "loaded into data, each element pushed once in blocks of at most 7");
    snprintf(path, sizeof path, "%s/step_00000003.h5", sp);
    void (*decs[4])(bpiece *) = {dec_write, dec_r1, dec_r2, dec_flat_cut};
    ok = 1;
    for (int i = 0; i < 4; i++) {
        decs[i](d);
        rc = bload_s(path, d, &vok, err);
        ok &= rc == 0 && vok;
    }
    report(ok, "load by push as row and column slices (empty slices included) and flat cut pieces");

    /* the transfer block bounds every callback */
    setenv("LAMINA_CKPT_PIECE_ELEMS", "3", 1);
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    rc = ssave(sp, 4, slab, 1, &st, err);
    snprintf(path, sizeof path, "%s/step_00000004.h5", sp);
    snprintf(ref, sizeof ref, "%s/step_00000001.h5", sd);
    slabs_overlap_cut(slab);
    rc2 = sload(path, slab, 1, &vok, &st2, err);
    setenv("LAMINA_CKPT_PIECE_ELEMS", "7", 1);
    report(rc == 0 && rc2 == 0 && vok && same_datasets(path, ref, NAMES, sizes, NT) && st.maxblk == 3 &&
               st2.maxblk == 3 && !st.bad && !st2.bad,
           "LAMINA_CKPT_PIECE_ELEMS=3: no pull or push asked for more than 3 elements; same file");
    report(big_tensor(sp, 5, err), "a [200,100] tensor in blocks of 64: at most the block (+1 KiB) held by "
                                   "lm_alloc during any pull or push, never the 5000-element piece");

    /* non-finite and negative values still refused when loading by push:
     * written by a streamed save (which does not judge values), so the
     * checksum holds and the value check must catch them */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    g_poison = 1 * 4 + 3; /* exp_avg of the [7,5]: rank 2 writes [17,30) */
    g_poison_at = g_rank == 2 ? 5 : -1;
    g_poison_val = nanf("");
    rc = ssave(sp, 6, slab, 1, &st, err);
    g_poison = 0 * 4 + 0; /* model embedding: Inf, rank 1 */
    g_poison_at = g_rank == 1 ? 19 : -1;
    g_poison_val = INFINITY;
    rc |= ssave(sp, 7, slab, 1, &st, err);
    g_poison = 2 * 4 + 2; /* exp_avg_sq of the [5,4], all on rank 0 */
    g_poison_at = g_rank == 0 ? 11 : -1;
    g_poison_val = -0.5f;
    rc |= ssave(sp, 8, slab, 1, &st, err);
    g_poison = -1;
    static const char *want[3] = {"/optim/exp_avg/model.layers.0.mlp.up_proj.weight: holds NaN values",
                                  "/model/model.embed_tokens.weight: holds Inf values",
                                  "/optim/exp_avg_sq/model.layers.0.self_attn.q_proj.weight: holds negative values"};
    ok = rc == 0;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/step_%08d.h5", sp, 6 + i);
        slabs_cut3(slab);
        rc = sload(path, slab, 1, &vok, &st, err);
        char e_push[LM_ERRLEN];
        snprintf(e_push, sizeof e_push, "%s", err);
        rc2 = sload(path, slab, 0, &vok2, &st2, err);
        int good = rc == 2 && strstr(e_push, want[i]) && strstr(e_push, path) && same_everywhere(e_push) && rc2 == 2 &&
                   !strcmp(e_push, err);
        if (!good && g_rank == 0) fprintf(stderr, "value check %d: push \"%s\", data \"%s\"\n", i, e_push, err);
        ok &= good;
    }
    report(ok, "NaN, Inf and a negative second moment refused when loading by push, naming the file and "
               "dataset, with the message of a load into data");

    /* a flipped bit: the streamed checksum catches it */
    char corrupt[300];
    snprintf(corrupt, sizeof corrupt, "%s/../corrupt.h5", g_dir);
    slabs_half(slab);
    rc = sload(corrupt, slab, 1, &vok, &st, err);
    ok = rc == 2 && strstr(err, "/model/model.embed_tokens.weight: checksum mismatch") && same_everywhere(err);
    slabs_overlap_cut(slab);
    rc = sload(corrupt, slab, 1, &vok, &st, err);
    ok &= rc == 2 && strstr(err, "/model/model.embed_tokens.weight: checksum mismatch") && same_everywhere(err);
    report(ok, "a corrupted file refused when loading by push (2 slabs, overlapping cut pieces)");

    /* a piece with neither data nor the callback its direction needs */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    tset s;
    tset_make(&s, slab, 1);
    float *keep = s.t[1][0].data;
    if (g_rank == 1) {
        s.t[1][0].data = NULL;
        s.t[1][0].push = s_push; /* a push is no pull */
    }
    ckpt_meta m = meta_for(9);
    rc = ckpt_save(MPI_COMM_WORLD, sp, &m, s.t[0], s.t[1], s.t[2], NT, 0, err, sizeof err);
    ok = rc == 1 && strstr(err, "/optim/exp_avg/model.embed_tokens.weight") && strstr(err, "no pull callback") &&
         same_everywhere(err);
    s.t[1][0].data = keep;
    s.t[1][0].push = NULL;
    if (g_rank == 3) {
        keep = s.t[2][3].data;
        s.t[2][3].data = NULL;
        s.t[2][3].pull = s_pull;
    }
    snprintf(path, sizeof path, "%s/step_00000001.h5", sp);
    rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], s.t[1], s.t[2], NT, err, sizeof err);
    ok &= rc == 2 && strstr(err, "/optim/exp_avg_sq/model.layers.0.mlp.up_proj.weight") &&
          strstr(err, "no push callback") && same_everywhere(err);
    if (g_rank == 3) s.t[2][3].data = keep;
    tset_free(&s);
    report(ok, "data NULL without pull (save) or push (load) on one rank: refused on every rank naming the dataset");

    /* injected faults in a streamed save: nothing published, no .tmp */
    static const char *faults[2] = {"dwrite.exp_avg.mid", "dsum.model.last"};
    static const char *fwant[2] = {"/optim/exp_avg/model.layers.0.self_attn.q_proj.weight: write failed",
                                   "/model/model.layers.0.mlp.up_proj.weight: checksum attribute not written"};
    ok = 1;
    for (int i = 0; i < 2; i++) {
        setenv("LAMINA_CKPT_FAIL", faults[i], 1);
        rc = ssave(sp, 10 + i, slab, 1, &st, err);
        unsetenv("LAMINA_CKPT_FAIL");
        snprintf(path, sizeof path, "%s/step_%08d.h5", sp, 10 + i);
        char tp[320];
        snprintf(tp, sizeof tp, "%s.tmp", path);
        int found = ckpt_find_latest(sp, lp, sizeof lp, e2, sizeof e2);
        int good = rc == 1 && strstr(err, fwant[i]) && same_everywhere(err) && access(path, F_OK) != 0 &&
                   access(tp, F_OK) != 0 && found == 1 && strstr(lp, "step_00000008.h5");
        if (!good && g_rank == 0) fprintf(stderr, "fault %s: rc %d \"%s\", latest %s\n", faults[i], rc, err, lp);
        ok &= good;
    }
    rc = ssave(sp, 12, slab, 1, &st, err);
    snprintf(path, sizeof path, "%s/step_00000012.h5", sp);
    snprintf(ref, sizeof ref, "%s/step_00000001.h5", sd);
    ok &= rc == 0 && same_datasets(path, ref, NAMES, sizes, NT) && ckpt_find_latest(sp, lp, sizeof lp, e2, sizeof e2) == 1 &&
          strstr(lp, "step_00000012.h5");
    report(ok, "injected dwrite and dsum faults in a streamed save: refused everywhere, latest unchanged, no .tmp; "
               "the next streamed save publishes");
}

int main(int argc, char **argv) {
    comm_init(&argc, &argv); /* as lamina starts MPI (MPI-IO component choice included) */
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size != 4) {
        if (g_rank == 0) printf("1..0 # SKIP needs exactly 4 ranks (mpirun -np 4)\n");
        MPI_Finalize();
        return 0;
    }
    setenv("LAMINA_CKPT_PIECE_ELEMS", "7", 1); /* several collective pieces per slab */
    if (g_rank == 0) {
        snprintf(g_dir, sizeof g_dir, "/tmp/lamina_ckmpi_XXXXXX");
        if (!mkdtemp(g_dir)) g_dir[0] = 0;
        strcat(g_dir, "/ck");
        printf("1..%d\n", 35 + STREAM_TESTS);
        fflush(stdout);
    }
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char err[LM_ERRLEN], path[256], corrupt[256];
    int vok = 0, rc;
    int64_t slab[NT][2];

    /* 1: the 4-rank save, and latest visible to every rank on return */
    rc = save(5, 3);
    int found = ckpt_find_latest(g_dir, path, sizeof path, err, sizeof err);
    report(rc == 0 && found == 1 && strstr(path, "step_00000005.h5") != NULL, "save from 4 pieces cut inside rows, latest published");
    /* 2: what the cut pieces wrote: the full tensors and the formula's checksums */
    report(found == 1 && file_matches(path), "cut-piece save: every element and checksum as the formula says");

    /* 3: metadata on every rank */
    ckpt_meta m;
    rc = ckpt_read_meta(MPI_COMM_WORLD, path, &m, err, sizeof err);
    report(rc == 0 && m.step == 5 && m.tokens_seen == 3200 && m.n_kv_heads == 1 && m.rope_theta == 500000.0 &&
               m.deck_text && !strcmp(m.deck_text, "[model]\ndim = 6\n"),
           "read_meta on all ranks");
    if (rc == 0) free((void *)m.deck_text);

    /* 4-8: other decompositions, compared element by element */
    slabs_half(slab);
    rc = load(path, slab, &vok, err);
    report(rc == 0 && vok, "load as 2 slabs on ranks 0-1, ranks 2-3 empty");
    slabs_full(slab);
    rc = load(path, slab, &vok, err);
    report(rc == 0 && vok, "load full tensors on every rank");
    slabs_overlap(slab);
    rc = load(path, slab, &vok, err);
    report(rc == 0 && vok, "load overlapping slabs");
    slabs_cut3(slab);
    rc = load(path, slab, &vok, err);
    report(rc == 0 && vok, "load as 3 pieces cut inside rows (written as 4 other cut pieces)");
    slabs_rank0(slab);
    rc = load(path, slab, &vok, err);
    report(rc == 0 && vok, "load everything on rank 0 alone, ranks 1-3 empty");

    /* 9-13: a flipped byte in the embedding's data */
    snprintf(corrupt, sizeof corrupt, "%s/../corrupt.h5", g_dir);
    /* element 50: row 8, owned by rank 3 when written */
    corrupt_copy(path, corrupt, "/model/model.embed_tokens.weight", 50);
    const char *want = "/model/model.embed_tokens.weight: checksum mismatch (file corrupted)";
    slabs_half(slab);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 2 && strstr(err, want) && strstr(err, "corrupt.h5") && same_everywhere(err),
           "corruption caught with 2 slabs, same message on all ranks");
    slabs_full(slab);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 2 && strstr(err, want) != NULL, "corruption caught with replicated full reads");
    slabs_overlap(slab);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 2 && strstr(err, want) != NULL, "corruption caught with overlapping slabs");
    /* documented limit: slabs that do not cover a tensor cannot verify it */
    slabs_partial(slab);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 0 && vok, "partial cover reads without checksum verdict (documented)");
    /* element 16 of the [7,5] (row 3, column 1): the last of rank 1's written
     * piece [9,17); read back as [0,11) [11,24) [24,35), the damaged term is
     * summed by rank 1 from the middle of another cut piece */
    snprintf(corrupt, sizeof corrupt, "%s/../corrupt2.h5", g_dir);
    corrupt_copy(path, corrupt, "/model/model.layers.0.mlp.up_proj.weight", 16);
    slabs_cut3(slab);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 2 && strstr(err, "/model/model.layers.0.mlp.up_proj.weight: checksum mismatch") && same_everywhere(err),
           "corruption inside a cut row caught by 3 other cut pieces");

    /* 14-15: an error one rank alone sees ends the call everywhere */
    slabs_half(slab);
    tset s;
    tset_make(&s, slab, 0);
    if (g_rank == 2) { /* [55,65) of 60 elements: past the end */
        s.t[0][0].off = 55;
        s.t[0][0].count = 10;
        s.t[0][0].data = calloc(10, sizeof(float));
    }
    rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], NULL, NULL, NT, err, sizeof err);
    tset_free(&s);
    report(rc == 2 && strstr(err, "model.embed_tokens.weight") && same_everywhere(err),
           "a range past the end on rank 2 only: all ranks return 2");
    snprintf(corrupt, sizeof corrupt, "%s/none.h5", g_dir);
    rc = load(corrupt, slab, &vok, err);
    report(rc == 2 && strstr(err, "none.h5") && same_everywhere(err), "missing file: all ranks return 2");

    /* 16: the shape check sees the model shape on every rank */
    slabs_full(slab);
    tset_make(&s, slab, 0);
    s.t[0][2].cols = 5;
    free(s.t[0][2].data);
    s.t[0][2].data = calloc(25, sizeof(float));
    rc = ckpt_load(MPI_COMM_WORLD, path, s.t[0], NULL, NULL, NT, err, sizeof err);
    tset_free(&s);
    report(rc == 2 && strstr(err, "shape [5,4] does not match the model [5,5]") && same_everywhere(err),
           "shape mismatch: all ranks return 2");

    /* 17-18: more saves with keep 2; latest seen by every rank on return */
    int ok = save(6, 2) == 0;
    ok &= ckpt_find_latest(g_dir, path, sizeof path, err, sizeof err) == 1 && strstr(path, "step_00000006.h5");
    ok &= save(7, 2) == 0;
    ok &= ckpt_find_latest(g_dir, path, sizeof path, err, sizeof err) == 1 && strstr(path, "step_00000007.h5");
    report(ok, "saves 6 and 7: latest updated before any rank returns");
    char p5[256], p6[256], p7[256];
    snprintf(p5, sizeof p5, "%s/step_00000005.h5", g_dir);
    snprintf(p6, sizeof p6, "%s/step_00000006.h5", g_dir);
    snprintf(p7, sizeof p7, "%s/step_00000007.h5", g_dir);
    slabs_overlap(slab);
    rc = load(p7, slab, &vok, err);
    report(access(p5, F_OK) != 0 && access(p6, F_OK) == 0 && rc == 0 && vok, "keep 2 pruned step 5; step 7 loads");

    /* 19: replicated writers (every rank passes the whole tensor, as a
     * data-parallel run does): the checksum counts each element once */
    slabs_full(slab);
    rc = save_slabs(8, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000008.h5", g_dir);
    int sum_ok = 1;
    if (g_rank == 0 && rc == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "/model/model.embed_tokens.weight", H5P_DEFAULT);
        float x[60];
        uint64_t cs = 0, ref = 0;
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
        hid_t a = H5Aopen(d, "checksum", H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_UINT64, &cs);
        H5Aclose(a);
        H5Dclose(d);
        H5Fclose(f);
        for (uint64_t i = 0; i < 60; i++) { /* the formula of ckpt.h */
            uint32_t b;
            memcpy(&b, &x[i], 4);
            uint64_t z = i * 0x9E3779B97F4A7C15ull + b;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            ref += z ^ (z >> 31);
            if (x[i] != value(0, 0, (int64_t)i)) sum_ok = 0;
        }
        sum_ok &= cs == ref;
    }
    slabs_half(slab);
    int rc2 = load(path, slab, &vok, err);
    report(rc == 0 && sum_ok && rc2 == 0 && vok, "replicated writers: one checksum, loads as 2 slabs");

    /* 20-21: overlapping writers (one of them holding everything), then
     * overlapping cut pieces with no whole holder: each element written and
     * summed once (the file matches the formula) */
    slabs_overlap(slab);
    rc = save_slabs(9, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000009.h5", g_dir);
    slabs_half(slab);
    rc2 = load(path, slab, &vok, err);
    report(rc == 0 && rc2 == 0 && vok, "overlapping writers, read back as 2 slabs");
    slabs_overlap_cut(slab);
    rc = save_slabs(11, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000011.h5", g_dir);
    int fm = rc == 0 && file_matches(path);
    slabs_cut3(slab);
    rc2 = load(path, slab, &vok, err);
    int vok2 = 0;
    slabs_rank0(slab);
    int rc3 = load(path, slab, &vok2, err);
    report(rc == 0 && fm && rc2 == 0 && vok && rc3 == 0 && vok2,
           "overlapping cut writers: file matches the formula, reads back as 3 cut pieces and whole");

    /* 22: ranks 2-3 own nothing (count 0, no buffer) of any tensor */
    slabs_half(slab);
    rc = save_slabs(12, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000012.h5", g_dir);
    fm = rc == 0 && file_matches(path);
    slabs_overlap_cut(slab);
    rc2 = load(path, slab, &vok, err);
    report(rc == 0 && fm && rc2 == 0 && vok, "writers with empty ranks: file matches, reads back as overlapping cut pieces");

    /* 23: writers that leave elements out: refused everywhere, nothing published */
    slabs_partial(slab);
    rc = save_slabs(10, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000010.h5", g_dir);
    char lp[256], e2[LM_ERRLEN];
    found = ckpt_find_latest(g_dir, lp, sizeof lp, e2, sizeof e2);
    report(rc == 1 && strstr(err, "model.embed_tokens.weight") && strstr(err, "do not cover") && same_everywhere(err) &&
               access(path, F_OK) != 0 && found == 1 && strstr(lp, "step_00000012.h5"),
           "pieces that miss elements: save refused on all ranks, latest unchanged");

    /* 24: one rank's piece runs past the end of the [7,5]: refused on all
     * ranks before anything is written, naming the tensor */
    for (int k = 0; k < NT; k++) {
        slab[k][0] = WRITE_SLAB[k][g_rank][0];
        slab[k][1] = WRITE_SLAB[k][g_rank][1];
    }
    if (g_rank == 3) slab[3][1] = 6; /* [30,36) */
    rc = save_slabs(13, 5, slab, err);
    snprintf(path, sizeof path, "%s/step_00000013.h5", g_dir);
    char tp[300];
    snprintf(tp, sizeof tp, "%s.tmp", path);
    found = ckpt_find_latest(g_dir, lp, sizeof lp, e2, sizeof e2);
    report(rc == 1 && strstr(err, "model.layers.0.mlp.up_proj.weight") && strstr(err, "outside") &&
               same_everywhere(err) && access(path, F_OK) != 0 && access(tp, F_OK) != 0 && found == 1 &&
               strstr(lp, "step_00000012.h5"),
           "a piece past the end on rank 3 only: save refused on all ranks, nothing written");

    /* 25-35: row and column slices */
    block_tests();
    /* 36-47: streamed pieces (pull and push) */
    stream_tests();

    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        char cmd[128];
        char *slash = strrchr(g_dir, '/');
        if (slash) *slash = 0;
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    }
    MPI_Finalize();
    return 0;
}
