/* test_chunks.c — chunk layout search and tensor placement (src/dist/chunks.h).
 *
 * chunk_layout_of is checked against a brute force written here: for every
 * candidate regular length of the documented rule, the fewest chunks an
 * in-order packing without splitting can use between outsized tensors and
 * frozen/trained switches, by dynamic programming over prefixes (a
 * different algorithm from the module's next-fit; both are optimal for
 * order-preserving packing), plus the outsized tensors' own chunks. Every
 * layout is checked for its invariants (check_layout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "chunks.h"
#include "common.h"
#include "rng.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t rup(size_t x, size_t a) { return (x + a - 1) / a * a; }
static size_t gran(size_t granule) { return rup(granule < 16 ? 16 : granule, 16); }

/* Fewest chunks of `chunk` elements holding a[0..n) (already aligned) in
 * order, each chunk a contiguous run: best[j] = min over i < j with
 * sum(i..j) <= chunk of best[i] + 1. */
static size_t min_chunks_dp(const size_t *a, int n, size_t chunk) {
    size_t *best = calloc((size_t)n + 1, sizeof *best);
    best[0] = 0;
    for (int j = 1; j <= n; j++) {
        best[j] = (size_t)-1;
        size_t run = 0;
        for (int i = j - 1; i >= 0; i--) {
            run += a[i];
            if (run > chunk) break;
            if (best[i] != (size_t)-1 && best[i] + 1 < best[j]) best[j] = best[i] + 1;
        }
    }
    size_t r = best[n];
    free(best);
    return r;
}

/* The arena and chunk count at regular length c: runs of regular tensors
 * (cut at outsized tensors and where grp changes) packed by the DP, each
 * outsized tensor in a chunk of round_up(a, G). */
static size_t eval_dp(const size_t *a, const int *grp, int n, size_t G, size_t c, int *nc_out) {
    size_t arena = 0;
    int nc = 0;
    for (int i = 0; i < n;) {
        if (a[i] > c) {
            arena += rup(a[i], G);
            nc++;
            i++;
            continue;
        }
        int j = i + 1;
        while (j < n && a[j] <= c && (!grp || grp[j] == grp[i])) j++;
        size_t m = min_chunks_dp(a + i, j - i, c);
        arena += m * c;
        nc += (int)m;
        i = j;
    }
    *nc_out = nc;
    return arena;
}

/* Brute force over the documented candidates: caps = distinct aligned
 * sizes >= half the mean; for each, c = round_up(s + j*step, G) over
 * [s, s + min(16M, max(total_s/8 - s, s/4))], total_s summing the tensors
 * <= s; least arena, then fewest chunks, then smallest c. */
static size_t layout_brute(const size_t *sizes, const int *grp, int n, size_t granule, size_t step, size_t *arena_out,
                           int *nc_out) {
    size_t G = gran(granule), *a = malloc(sizeof(size_t) * (size_t)n), all = 0;
    for (int i = 0; i < n; i++) all += a[i] = rup(sizes[i], 16);
    size_t st = rup(step < 16 ? 16 : step, 16), best = 0, best_ar = 0;
    int best_nc = 0;
    for (int i = 0; i < n; i++) {
        size_t s = a[i], total = 0;
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= a[j] == s;
        if (seen || s < all / (size_t)n / 2) continue;
        for (int j = 0; j < n; j++)
            if (a[j] <= s) total += a[j];
        size_t range = total / 8 > s ? total / 8 - s : 0;
        if (range < s / 4) range = s / 4;
        if (range > ((size_t)16 << 20)) range = (size_t)16 << 20;
        for (size_t k = 0; k <= range; k += st) {
            size_t c = rup(s + k, G);
            int nc;
            size_t ar = eval_dp(a, grp, n, G, c, &nc);
            if (!best || ar < best_ar || (ar == best_ar && (nc < best_nc || (nc == best_nc && c < best)))) {
                best = c;
                best_ar = ar;
                best_nc = nc;
            }
        }
    }
    free(a);
    *arena_out = best_ar;
    *nc_out = best_nc;
    return best;
}

/* The invariants of a layout of n tensors: chunk starts coff[0] = 0 < ... <
 * coff[nc] = arena, every chunk a multiple of the granule and holding at
 * least one tensor, tensors in model order (chunks non-decreasing, offsets
 * increasing, no overlap), 16-aligned, each inside its chunk; regular chunks
 * exactly chunk_size long; a chunk of another length holds one tensor
 * longer than chunk_size, of length round_up(numel, G); no chunk mixes grp
 * values; chunk_max the longest. */
static void check_layout(const size_t *sizes, const int *grp, int n, size_t granule, const chunk_layout *L,
                         const int *chunk_of, const size_t *off_of, const size_t *coff) {
    size_t G = gran(granule), mx = 0;
    int nc = L->n_chunks, alone = 0;
    assert_true(nc >= 0 && nc <= n);
    assert_true(coff[0] == 0 && coff[nc] == L->arena);
    assert_true(L->chunk_size > 0 && L->chunk_size % G == 0);
    int *count = calloc((size_t)nc + 1, sizeof *count);
    for (int c = 0; c < nc; c++) {
        size_t len = coff[c + 1] - coff[c];
        assert_true(coff[c + 1] > coff[c] && len % G == 0);
        if (len > mx) mx = len;
    }
    assert_true(mx == L->chunk_max);
    size_t prev_end = 0, numel = 0;
    for (int i = 0; i < n; i++) {
        int c = chunk_of[i];
        numel += sizes[i];
        assert_true(c >= 0 && c < nc);
        assert_true(off_of[i] % 16 == 0);
        assert_true(off_of[i] >= coff[c] && off_of[i] + sizes[i] <= coff[c + 1]); /* inside, not split */
        assert_true(off_of[i] >= prev_end);
        prev_end = off_of[i] + sizes[i];
        if (i > 0)
            assert_true(c == chunk_of[i - 1] || c == chunk_of[i - 1] + 1);
        else
            assert_int_equal(c, 0);
        if (i > 0 && c == chunk_of[i - 1] && grp) assert_int_equal(grp[i], grp[i - 1]);
        count[c]++;
    }
    for (int c = 0; c < nc; c++) {
        assert_true(count[c] >= 1); /* no empty chunk */
        if (coff[c + 1] - coff[c] != L->chunk_size) { /* an outsized tensor's own chunk */
            assert_int_equal(count[c], 1);
            alone++;
        }
    }
    for (int i = 0; i < n; i++) {
        size_t len = coff[chunk_of[i] + 1] - coff[chunk_of[i]];
        if (rup(sizes[i], 16) > L->chunk_size) { /* outsized: alone, round_up(numel, G) */
            assert_int_equal(count[chunk_of[i]], 1);
            assert_true(len == rup(sizes[i], G) && off_of[i] == coff[chunk_of[i]]);
        } else
            assert_true(len == L->chunk_size);
    }
    assert_int_equal(alone, L->n_alone);
    assert_true(L->arena >= numel);
    free(count);
}

/* chunk_layout_of with every output array, checked (check_layout). */
static chunk_layout layout_checked(const size_t *sizes, const int *grp, int n, size_t granule, size_t step) {
    int *chunk_of = malloc(sizeof(int) * (size_t)(n ? n : 1));
    size_t *off_of = malloc(sizeof(size_t) * (size_t)(n ? n : 1)), *coff = malloc(sizeof(size_t) * (size_t)(n + 1));
    chunk_layout L = chunk_layout_of(sizes, grp, n, granule, step, chunk_of, off_of, coff);
    check_layout(sizes, grp, n, granule, &L, chunk_of, off_of, coff);
    /* the arrays change nothing in the result */
    chunk_layout M = chunk_layout_of(sizes, grp, n, granule, step, NULL, NULL, NULL);
    assert_true(M.chunk_size == L.chunk_size && M.arena == L.arena && M.n_chunks == L.n_chunks &&
                M.chunk_max == L.chunk_max && M.n_alone == L.n_alone);
    free(chunk_of);
    free(off_of);
    free(coff);
    return L;
}

static void test_layout_vs_brute(void **state) {
    (void)state;
    uint64_t key = rng_stream(2026, "test.chunks.layout");
    uint64_t idx = 0;
    int nonzero_best = 0, with_alone = 0, without_alone = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)rng_below(key, idx++, 30);
        size_t sizes[30];
        int grp[30];
        /* a mix like a model's: a few big matrices, many medium, small vectors */
        for (int i = 0; i < n; i++) {
            uint64_t kind = rng_below(key, idx++, 5);
            size_t hi = kind == 0 ? 20000 : kind == 1 ? 5000 : kind == 2 ? 2000 : kind == 3 ? 600 : 40;
            sizes[i] = 1 + rng_below(key, idx++, hi);
            grp[i] = i < n / 4; /* a frozen prefix (embeddings) */
        }
        int use_grp = trial % 4 == 1;
        size_t granule = trial % 3 == 0 ? 16 : trial % 3 == 1 ? 48 : 128;
        size_t step = 16 * (1 + rng_below(key, idx++, 16));
        size_t w_ar;
        int w_nc;
        size_t want = layout_brute(sizes, use_grp ? grp : NULL, n, granule, step, &w_ar, &w_nc);
        chunk_layout L = layout_checked(sizes, use_grp ? grp : NULL, n, granule, step);
        if (L.chunk_size != want || L.arena != w_ar || L.n_chunks != w_nc)
            fprintf(stderr, "# trial %d: n %d granule %zu step %zu: got c %zu arena %zu chunks %d, want %zu %zu %d\n",
                    trial, n, granule, step, L.chunk_size, L.arena, L.n_chunks, want, w_ar, w_nc);
        assert_true(L.chunk_size == want && L.arena == w_ar && L.n_chunks == w_nc);
        size_t used = 0;
        for (int i = 0; i < n; i++) used += rup(sizes[i], 16);
        if (w_ar > used) nonzero_best++;
        if (L.n_alone)
            with_alone++;
        else
            without_alone++;
    }
    /* the trials are not all trivial, and take both kinds of layout */
    printf("# %d trials with padding beyond alignment, %d with outsized tensors, %d without\n", nonzero_best,
           with_alone, without_alone);
    assert_true(nonzero_best > 50 && with_alone > 30 && without_alone > 30);
}

/* Hand-made cases. */
static void test_layout_cases(void **state) {
    (void)state;
    /* one tensor: its size rounded up to the granule, one chunk */
    size_t one[] = {100};
    chunk_layout L = layout_checked(one, NULL, 1, 16, 0);
    assert_true(L.chunk_size == 112 && L.arena == 112 && L.n_chunks == 1 && L.n_alone == 0);
    L = layout_checked(one, NULL, 1, 48, 0);
    assert_true(L.chunk_size == 144 && L.arena == 144 && L.n_chunks == 1);
    /* 16 x 64: range max(1024/8 - 64, 64/4) = 64; sizes 64 (16 chunks) and
     * 128 (8 chunks) both pad 0: fewer chunks win; 3 x 64: the range (16)
     * holds no size with fewer chunks */
    size_t sixteen[16];
    for (int i = 0; i < 16; i++) sixteen[i] = 64;
    L = layout_checked(sixteen, NULL, 16, 16, 16);
    assert_true(L.chunk_size == 128 && L.n_chunks == 8 && L.arena == 1024);
    L = layout_checked(sixteen, NULL, 3, 16, 16);
    assert_true(L.chunk_size == 64 && L.n_chunks == 3 && L.arena == 192);
    /* one big tensor and six near the mean (2200 / 7 = 314; caps 1008 and
     * 208): at cap 1008 the best is two chunks of 1248 ([1000, 200], 5 x
     * 200: arena 2496); at cap 208 (candidates 208 .. 256, range 208/4), c =
     * 208 gives the big one its own chunk of 1008 and six chunks of 208:
     * arena 2256, padding only the 16-alignment */
    size_t big[] = {1000, 200, 200, 200, 200, 200, 200};
    L = layout_checked(big, NULL, 7, 16, 16);
    assert_true(L.chunk_size == 208 && L.n_chunks == 7 && L.n_alone == 1 && L.chunk_max == 1008 && L.arena == 2256);
    /* granule 48: the regular chunks become 240 (6 x 240 + 1008 = 2448 <
     * 2 x 1248 = 2496) */
    L = layout_checked(big, NULL, 7, 48, 16);
    assert_true(L.chunk_size == 240 && L.n_alone == 1 && L.arena == 2448);
    /* vectors below half the mean never set the regular length: {600, 10 x
     * 40} (mean 99) keeps one chunk size: [600] [10 x 48] */
    size_t vec[] = {600, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40};
    L = layout_checked(vec, NULL, 11, 16, 16);
    assert_true(L.n_alone == 0 && L.chunk_size >= 608 && L.n_chunks == 2);
    /* frozen / trained: a new chunk where the flag changes, counted in the padding */
    size_t fz[] = {64, 64, 64, 64};
    int g[] = {1, 0, 0, 0};
    L = layout_checked(fz, g, 4, 16, 16);
    assert_true(L.n_chunks >= 2 && L.arena == 256 && L.chunk_size == 64);
    /* no tensors */
    size_t coff[1] = {99};
    L = chunk_layout_of(NULL, NULL, 0, 16, 0, NULL, NULL, coff);
    assert_true(L.n_chunks == 0 && L.arena == 0 && coff[0] == 0);
}

/* LLaMA-2-7B's tensor sizes (model.c's order): the 32000 x 4096 embedding
 * and lm_head go alone, and the padding is under 1%: before outsized
 * chunks, one chunk size >= 131M elements padded 11%. By hand: the regular
 * length is 4096 + 4096^2 (input norm + q, then k, v, o + post norm, each
 * in a chunk; gate, up, down alone), 2 x 4096 padding per layer, and the
 * final norm alone in a regular chunk between down and lm_head. */
static int llama_sizes(size_t *z, size_t D, int L, size_t KVd, size_t F, size_t V) {
    int n = 0;
    z[n++] = V * D;
    for (int l = 0; l < L; l++) {
        size_t t[9] = {D, D * D, KVd * D, KVd * D, D * D, D, F * D, F * D, D * F};
        memcpy(z + n, t, sizeof t);
        n += 9;
    }
    z[n++] = D;
    z[n++] = V * D;
    return n;
}

static void test_llama7b(void **state) {
    (void)state;
    size_t z[9 * 32 + 3], numel = 0;
    int n = llama_sizes(z, 4096, 32, 4096, 11008, 32000);
    for (int i = 0; i < n; i++) numel += z[i];
    assert_true(numel == 6738415616ull);
    for (size_t dp = 1; dp <= 8; dp *= 8) {
        chunk_layout L = layout_checked(z, NULL, n, 16 * dp, 0);
        size_t pad = L.arena - numel;
        printf("# llama-2-7b dp %zu: %d chunks, regular %zu, longest %zu, %d alone, padding %zu (%.3f%%)\n", dp,
               L.n_chunks, L.chunk_size, L.chunk_max, L.n_alone, pad, 100.0 * (double)pad / (double)L.arena);
        assert_true((double)pad < 0.01 * (double)L.arena);
        assert_true(L.chunk_size == 4096 + 4096 * 4096 && L.chunk_max == 32000 * 4096);
        assert_true(pad == 32 * 2 * 4096 + (L.chunk_size - 4096));
        assert_int_equal(L.n_alone, 2 + 3 * 32);
    }
    /* the embeddings frozen (train.trainable): still alone, nothing mixed */
    int grp[9 * 32 + 3] = {0};
    grp[0] = 1;
    chunk_layout F = layout_checked(z, grp, n, 16, 0);
    assert_true(F.arena - numel < numel / 100);
}

/* A small LLaMA-like table: n_layers layers, dims chosen so tensors are not
 * multiples of 16. */
static void build_model(lm_params *ps, int n_layers) {
    memset(ps, 0, sizeof *ps);
    const int D = 40, F = 108, V = 97, KV = 20;
    params_add(ps, "model.embed_tokens.weight", 2, V, D);
    char name[LM_NAMELEN];
    for (int l = 0; l < n_layers; l++) {
#define ADD(suffix, nd, r, c)                                                                                          \
    do {                                                                                                               \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                  \
        params_add(ps, name, nd, r, c);                                                                                \
    } while (0)
        ADD("input_layernorm.weight", 1, D, 0);
        ADD("self_attn.q_proj.weight", 2, D, D);
        ADD("self_attn.k_proj.weight", 2, KV, D);
        ADD("self_attn.v_proj.weight", 2, KV, D);
        ADD("self_attn.o_proj.weight", 2, D, D);
        ADD("post_attention_layernorm.weight", 1, D, 0);
        ADD("mlp.gate_proj.weight", 2, F, D);
        ADD("mlp.up_proj.weight", 2, F, D);
        ADD("mlp.down_proj.weight", 2, D, F);
#undef ADD
    }
    params_add(ps, "model.norm.weight", 1, D, 0);
    params_add(ps, "lm_head.weight", 2, V, D);
}

/* The layout of a table against chunk_layout_of over its sizes (and frozen
 * flags), with the invariants of check_layout. */
static void check_table(lm_params *ps, size_t granule) {
    int n = ps->n, any = 0;
    size_t *sizes = malloc(sizeof(size_t) * (size_t)n), *off = malloc(sizeof(size_t) * (size_t)n), sum = 0;
    int *grp = malloc(sizeof(int) * (size_t)n), *ch = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        sizes[i] = ps->p[i].numel;
        sum += sizes[i];
        grp[i] = ps->p[i].frozen;
        any |= grp[i];
        ch[i] = ps->p[i].chunk;
        off[i] = ps->p[i].offset;
    }
    chunk_layout L = chunk_layout_of(sizes, any ? grp : NULL, n, granule, 0, NULL, NULL, NULL);
    assert_true(ps->numel == sum);
    assert_true(ps->chunk_size == L.chunk_size && ps->n_chunks == L.n_chunks && ps->chunk_max == L.chunk_max &&
                ps->arena == L.arena);
    assert_true(ps->arena == ps->coff[ps->n_chunks]);
    check_layout(sizes, any ? grp : NULL, n, granule, &L, ch, off, ps->coff);
    for (int c = 0; c < ps->n_chunks; c++) assert_true(chunk_lo(ps, c) == ps->coff[c] && chunk_len(ps, c) % granule == 0);
    free(sizes);
    free(off);
    free(grp);
    free(ch);
}

static void test_build_layout(void **state) {
    (void)state;
    lm_params ps;
    build_model(&ps, 3);
    int n = ps.n;
    assert_int_equal(n, 1 + 3 * 9 + 2);
    chunks_build(&ps, 16);
    params_alloc_state(&ps);
    check_table(&ps, 16);
    /* several chunks (buckets) */
    assert_true(ps.n_chunks >= 7);
    /* a granule of 16 x dp (here dp 3): every chunk a multiple of it */
    lm_params p3;
    build_model(&p3, 3);
    chunks_build(&p3, 48);
    check_table(&p3, 48);
    assert_true(p3.g == NULL && p3.p[0].g == NULL);
    params_free(&p3);
    /* frozen embeddings: never in a chunk with a trained tensor */
    lm_params pf;
    build_model(&pf, 3);
    pf.p[0].frozen = pf.p[n - 1].frozen = 1;
    chunks_build(&pf, 32);
    check_table(&pf, 32);
    for (int i = 1; i < n - 1; i++) assert_true(pf.p[i].chunk != pf.p[0].chunk && pf.p[i].chunk != pf.p[n - 1].chunk);
    params_free(&pf);
    /* arenas 64-byte aligned and zeroed */
    float *ar[4] = {ps.w, ps.g, ps.m, ps.v};
    for (int a = 0; a < 4; a++) {
        assert_non_null(ar[a]);
        assert_true(((uintptr_t)ar[a] & 63) == 0);
        for (size_t k = 0; k < ps.arena; k++) assert_true(ar[a][k] == 0.0f);
    }
    /* views at the same offset of every arena, non-overlapping */
    unsigned char *owner = calloc(ps.arena, 1);
    for (int i = 0; i < n; i++) {
        lm_param *p = &ps.p[i];
        for (size_t k = p->offset; k < p->offset + p->numel; k++) {
            assert_int_equal(owner[k], 0);
            owner[k] = 1;
        }
        assert_true(p->w == (float *)ps.w + p->offset && p->g == (float *)ps.g + p->offset);
        assert_true(p->m == ps.m + p->offset && p->v == ps.v + p->offset);
        assert_true(((uintptr_t)p->w & 63) == 0);
    }
    assert_true(ps.p[0].offset == 0);
    /* writing through one view touches only that tensor */
    lm_param *q = params_find(&ps, "model.layers.1.self_attn.q_proj.weight");
    assert_non_null(q);
    for (size_t k = 0; k < q->numel; k++) ((float *)q->g)[k] = 1.0f;
    size_t ones = 0;
    for (size_t k = 0; k < ps.arena; k++) ones += ((float *)ps.g)[k] == 1.0f;
    assert_true(ones == q->numel);
    free(owner);
    params_free(&ps);
    assert_null(ps.p);
    assert_int_equal(ps.n, 0);
}

static void test_find_and_decay(void **state) {
    (void)state;
    lm_params ps;
    build_model(&ps, 2);
    chunks_build(&ps, 16);
    params_alloc_state(&ps);
    lm_param *e = params_find(&ps, "model.embed_tokens.weight");
    assert_non_null(e);
    assert_true(e == &ps.p[0]);
    assert_int_equal(e->ndim, 2);
    assert_true(e->rows == 97 && e->cols == 40 && e->numel == 97 * 40);
    assert_int_equal(e->decay, 1);
    lm_param *nw = params_find(&ps, "model.layers.1.post_attention_layernorm.weight");
    assert_non_null(nw);
    assert_string_equal(nw->name, "model.layers.1.post_attention_layernorm.weight");
    assert_int_equal(nw->ndim, 1);
    assert_true(nw->rows == 40 && nw->cols == 1 && nw->numel == 40);
    assert_int_equal(nw->decay, 0);
    lm_param *dn = params_find(&ps, "model.layers.0.mlp.down_proj.weight");
    assert_non_null(dn);
    assert_true(dn->rows == 40 && dn->cols == 108 && dn->numel == 40 * 108);
    assert_null(params_find(&ps, "model.layers.2.mlp.down_proj.weight"));
    assert_null(params_find(&ps, "model.layers.0.mlp.down_proj"));
    assert_null(params_find(&ps, ""));
    for (int i = 0; i < ps.n; i++) {
        assert_true(params_find(&ps, ps.p[i].name) == &ps.p[i]);
        assert_int_equal(ps.p[i].decay, ps.p[i].ndim == 2);
        if (ps.p[i].ndim == 1) assert_true(ps.p[i].cols == 1);
    }
    /* a 1-D tensor ignores the cols argument */
    lm_params qs;
    memset(&qs, 0, sizeof qs);
    lm_param *v = params_add(&qs, "v", 1, 7, 99);
    assert_true(v->cols == 1 && v->numel == 7 && v->decay == 0);
    params_free(&qs);
    params_free(&ps);
}

/* Many tensors (the table grows by reallocation): names and shapes survive;
 * one tensor far larger than the rest, which are all below half the mean
 * tensor size (3400), sets the one chunk size: the rest never get chunks of
 * their own below it. */
static void test_many_params(void **state) {
    (void)state;
    lm_params ps;
    memset(&ps, 0, sizeof ps);
    char name[LM_NAMELEN];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "t%d", i);
        params_add(&ps, name, i % 3 ? 2 : 1, 1 + i % 37, 1 + i % 11);
    }
    params_add(&ps, "big", 2, 1000, 1000); /* far above the rest */
    chunks_build(&ps, 16);
    params_alloc_state(&ps);
    assert_int_equal(ps.n, 301);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "t%d", i);
        lm_param *p = params_find(&ps, name);
        assert_true(p == &ps.p[i]);
        assert_true(p->rows == 1 + i % 37);
        assert_true(p->numel == (size_t)(1 + i % 37) * (size_t)(i % 3 ? 1 + i % 11 : 1));
        assert_true(p->offset % 16 == 0);
        if (i > 0) assert_true(p->offset >= ps.p[i - 1].offset + ps.p[i - 1].numel);
    }
    lm_param *b = params_find(&ps, "big");
    assert_true(b->offset + b->numel <= ps.arena);
    assert_true(ps.chunk_size >= 1000000 && ps.n_chunks <= 2 && ps.chunk_max == ps.chunk_size);
    check_table(&ps, 16);
    params_free(&ps);
}

/* Setup is linear in the tensor count (lamina issue 14, item 8): the table
 * of a 100000-layer model (900003 tensors) is built with params_add, every
 * tensor is found by name, and its chunk size searched, in well under 30 s.
 * Before, params_add copied the whole table on every add and params_find
 * scanned it (minutes at this size), and the search passed over all
 * tensors for each of up to 16384 candidate sizes. */
static void test_linear_setup(void **state) {
    (void)state;
    const int L = 100000;
    double t0 = lm_now();
    lm_params ps;
    memset(&ps, 0, sizeof ps);
    char name[LM_NAMELEN];
    params_add(&ps, "model.embed_tokens.weight", 2, 258, 64);
    for (int l = 0; l < L; l++) {
        static const char *const nm[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                          "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
                                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        for (int i = 0; i < 9; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, nm[i]);
            params_add(&ps, name, i == 0 || i == 5 ? 1 : 2, 64, 64);
        }
    }
    params_add(&ps, "model.norm.weight", 1, 64, 1);
    params_add(&ps, "lm_head.weight", 2, 258, 64);
    assert_int_equal(ps.n, 9 * L + 3);
    double t_add = lm_now() - t0;
    for (int l = 0; l < L; l += 1) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
        lm_param *p = params_find(&ps, name);
        assert_non_null(p);
        assert_int_equal(p - ps.p, 1 + 9 * l + 7);
    }
    assert_true(params_find(&ps, "lm_head.weight") == &ps.p[ps.n - 1]);
    assert_null(params_find(&ps, "model.layers.100000.mlp.up_proj.weight"));
    double t_find = lm_now() - t0 - t_add;
    size_t *sizes = malloc(sizeof(size_t) * (size_t)ps.n);
    for (int i = 0; i < ps.n; i++) sizes[i] = ps.p[i].numel;
    chunk_layout cl = chunk_layout_of(sizes, NULL, ps.n, 16, 0, NULL, NULL, NULL);
    assert_true(cl.chunk_size >= 64 * 64 && cl.arena >= (size_t)ps.n);
    free(sizes);
    double t_all = lm_now() - t0;
    printf("# %d tensors: params_add %.2f s, params_find x %d %.2f s, chunk layout %.2f s\n", ps.n, t_add, L, t_find,
           t_all - t_add - t_find);
    assert_true(t_all < 30.0);
    params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_vs_brute), cmocka_unit_test(test_layout_cases),
        cmocka_unit_test(test_llama7b),         cmocka_unit_test(test_build_layout),
        cmocka_unit_test(test_find_and_decay),  cmocka_unit_test(test_many_params),
        cmocka_unit_test(test_linear_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
