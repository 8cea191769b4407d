/* test_chunks.c — chunk-size search and tensor placement (src/dist/chunks.h).
 *
 * chunk_search is checked against a brute force written here: for every
 * candidate size, the fewest chunks an in-order packing without splitting can
 * use, by dynamic programming over prefixes (a different algorithm from the
 * module's greedy one; both are optimal for order-preserving packing). */
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

/* Fewest chunks of `chunk` elements holding sizes[0..n) (each rounded up to
 * align) in order, each chunk a contiguous run: best[j] = min over i < j with
 * sum(i..j) <= chunk of best[i] + 1. */
static size_t min_chunks_dp(const size_t *sizes, int n, size_t align, size_t chunk) {
    size_t *best = calloc((size_t)n + 1, sizeof *best);
    best[0] = 0;
    for (int j = 1; j <= n; j++) {
        best[j] = (size_t)-1;
        size_t run = 0;
        for (int i = j - 1; i >= 0; i--) {
            run += rup(sizes[i], align);
            if (run > chunk) break;
            if (best[i] != (size_t)-1 && best[i] + 1 < best[j]) best[j] = best[i] + 1;
        }
    }
    size_t r = best[n];
    free(best);
    return r;
}

/* Brute force: least padding n_chunks*c - used over c = largest + k*step
 * (k = 0, 1, ... while <= largest + range); the first (smallest) wins ties. */
static size_t search_brute(const size_t *sizes, int n, size_t align, size_t range, size_t step, size_t *waste_out) {
    size_t largest = 0, used = 0;
    for (int i = 0; i < n; i++) {
        size_t s = rup(sizes[i], align);
        if (s > largest) largest = s;
        used += s;
    }
    size_t best = 0, best_waste = (size_t)-1;
    for (size_t c = largest; c <= largest + range; c += step) {
        size_t w = min_chunks_dp(sizes, n, align, c) * c - used;
        if (w < best_waste) {
            best_waste = w;
            best = c;
        }
    }
    if (waste_out) *waste_out = best_waste;
    return best;
}

static size_t padding_of(const size_t *sizes, int n, size_t align, size_t c) {
    size_t used = 0;
    for (int i = 0; i < n; i++) used += rup(sizes[i], align);
    return min_chunks_dp(sizes, n, align, c) * c - used;
}

static void test_search_vs_brute(void **state) {
    (void)state;
    uint64_t key = rng_stream(2024, "test.chunks.search");
    uint64_t idx = 0;
    int nonzero_best = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)rng_below(key, idx++, 40);
        size_t sizes[40];
        /* a mix like a model's: a few big matrices, many medium, small vectors */
        for (int i = 0; i < n; i++) {
            uint64_t kind = rng_below(key, idx++, 4);
            size_t hi = kind == 0 ? 20000 : kind == 1 ? 5000 : kind == 2 ? 600 : 40;
            sizes[i] = 1 + rng_below(key, idx++, hi);
        }
        size_t align = trial % 3 == 0 ? 1 : 16;
        size_t step = align * (1 + rng_below(key, idx++, 8));
        size_t range = rng_below(key, idx++, 30000);
        size_t w_brute;
        size_t want = search_brute(sizes, n, align, range, step, &w_brute);
        size_t got = chunk_search(sizes, n, align, range, step);
        if (got != want) {
            fprintf(stderr, "# trial %d: n %d align %zu step %zu range %zu: got %zu (padding %zu), want %zu (padding %zu)\n",
                    trial, n, align, step, range, got, padding_of(sizes, n, align, got), want, w_brute);
        }
        assert_true(got == want);
        if (w_brute > 0) nonzero_best++;
    }
    /* the trials are not all trivial (a zero-padding size at the first candidate) */
    assert_true(nonzero_best > 50);
}

/* Hand-made cases: exact fits, ties, the single-tensor case. */
static void test_search_cases(void **state) {
    (void)state;
    /* one tensor: its aligned size, zero padding */
    size_t one[] = {100};
    assert_true(chunk_search(one, 1, 16, 1000, 16) == 112);
    /* 3 x 64: size 64 (3 chunks) and 192 (1 chunk) both pad 0: the smaller wins */
    size_t three[] = {64, 64, 64};
    assert_true(chunk_search(three, 3, 16, 1000, 16) == 64);
    /* 48, 16, 48, 16: at 48 four chunks pad 64; at 64 two chunks pad 0 */
    size_t alt[] = {48, 16, 48, 16};
    assert_true(chunk_search(alt, 4, 16, 100, 16) == 64);
    /* the same with no range: only the largest is a candidate */
    assert_true(chunk_search(alt, 4, 16, 0, 16) == 48);
    /* sizes that are not multiples of align are rounded up before packing:
     * 17 -> 32, 1 -> 16: the largest candidate is 32, and 48 fits all in one */
    size_t odd[] = {17, 1};
    assert_true(chunk_search(odd, 2, 16, 100, 16) == 48);
    /* ties between two positive paddings also go to the smaller size:
     * {32, 32, 48} align 16: c=48 -> chunks [32][32][48] pad 32; c=64 ->
     * [32,32][48] pad 16; c=80 -> [32,32][48] pad 48; c=112 -> 1 chunk, pad 0 */
    size_t t[] = {32, 32, 48};
    /* the range's end is a candidate: [largest, largest + range] */
    assert_true(chunk_search(alt, 4, 16, 16, 16) == 64);
    /* an exact tie at positive padding: {64, 48, 48}, candidates 64 and 96:
     * 3 x 64 and 2 x 96 both pad 32; the smaller wins */
    size_t tie[] = {64, 48, 48};
    assert_true(chunk_search(tie, 3, 16, 32, 32) == 64);
    assert_true(chunk_search(t, 3, 16, 40, 16) == 64);
    assert_true(chunk_search(t, 3, 16, 200, 16) == 112);
}

/* Result is a multiple of align whatever the step (each chunk must start on
 * an aligned element), and never smaller than the largest tensor. */
static void test_search_alignment(void **state) {
    (void)state;
    uint64_t key = rng_stream(5, "test.chunks.align");
    for (int trial = 0; trial < 200; trial++) {
        size_t sizes[12];
        int n = 1 + (int)rng_below(key, (uint64_t)trial * 100, 12);
        size_t largest = 0;
        for (int i = 0; i < n; i++) {
            sizes[i] = 1 + rng_below(key, (uint64_t)trial * 100 + 1 + (uint64_t)i, 3000);
            if (rup(sizes[i], 16) > largest) largest = rup(sizes[i], 16);
        }
        size_t step = rng_below(key, (uint64_t)trial * 100 + 50, 40); /* 0 .. 39: often unaligned */
        size_t c = chunk_search(sizes, n, 16, 5000, step);
        assert_true(c % 16 == 0);
        assert_true(c >= largest && c <= largest + 5000);
    }
}

/* A small LLaMA-like table: 2 layers, dims chosen so tensors are not
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

static void test_build_layout(void **state) {
    (void)state;
    lm_params ps;
    build_model(&ps, 3);
    int n = ps.n;
    assert_int_equal(n, 1 + 3 * 9 + 2);
    size_t *sizes = malloc(sizeof(size_t) * (size_t)n);
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
        sizes[i] = ps.p[i].numel;
        sum += sizes[i];
    }
    chunks_build(&ps, 16);
    params_alloc_state(&ps);
    assert_true(ps.numel == sum);
    assert_true(ps.chunk_size > 0 && ps.chunk_size % 16 == 0);
    assert_true(ps.arena == (size_t)ps.n_chunks * ps.chunk_size);
    /* the size is the one the search gives over the documented candidate
     * range (largest .. largest + min(16M, total/8 - largest), steps of 1024) */
    size_t largest = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t r = (sizes[i] + 15) / 16 * 16;
        total += r;
        if (r > largest) largest = r;
    }
    size_t range = chunk_range(sizes, n);
    size_t want_range = total / 8 > largest ? total / 8 - largest : 0;
    if (want_range < largest / 4) want_range = largest / 4;
    assert_true(range == want_range);
    assert_true(ps.chunk_size == chunk_search(sizes, n, 16, range, 1024));
    /* bounded so the model has several chunks (buckets) when it can */
    if (total / 8 > largest + largest / 4) assert_true(ps.n_chunks >= 7);
    assert_true(ps.chunk_size <= largest + largest / 4 || ps.n_chunks >= 7);
    size_t w_brute;
    (void)search_brute(sizes, n, 16, range, 1024, &w_brute);
    assert_true(padding_of(sizes, n, 16, ps.chunk_size) == w_brute);
    /* a granule of 16 x dp (here dp 3) rounds the size up to a multiple of it */
    lm_params p3;
    build_model(&p3, 3);
    chunks_build(&p3, 48);
    assert_true(p3.chunk_size % 48 == 0 && p3.chunk_size >= ps.chunk_size && p3.chunk_size < ps.chunk_size + 48);
    assert_true(p3.arena == (size_t)p3.n_chunks * p3.chunk_size && p3.g == NULL && p3.p[0].g == NULL);
    params_free(&p3);
    /* arenas 64-byte aligned and zeroed */
    float *ar[4] = {ps.w, ps.g, ps.m, ps.v};
    for (int a = 0; a < 4; a++) {
        assert_non_null(ar[a]);
        assert_true(((uintptr_t)ar[a] & 63) == 0);
        for (size_t k = 0; k < ps.arena; k++) assert_true(ar[a][k] == 0.0f);
    }
    /* placement: aligned, inside its chunk, in model order, non-overlapping,
     * views at the same offset of every arena */
    unsigned char *owner = calloc(ps.arena, 1);
    size_t prev_end = 0;
    int used_chunks = 0;
    for (int i = 0; i < n; i++) {
        lm_param *p = &ps.p[i];
        assert_true(p->offset % 16 == 0);
        assert_true(p->chunk >= 0 && p->chunk < ps.n_chunks);
        assert_true(p->offset / ps.chunk_size == (size_t)p->chunk);
        assert_true(p->offset + p->numel <= (size_t)(p->chunk + 1) * ps.chunk_size); /* not split */
        assert_true(p->offset >= prev_end);
        prev_end = p->offset + p->numel;
        for (size_t k = p->offset; k < p->offset + p->numel; k++) {
            assert_int_equal(owner[k], 0);
            owner[k] = 1;
        }
        assert_true(p->w == (float *)ps.w + p->offset && p->g == (float *)ps.g + p->offset);
        assert_true(p->m == ps.m + p->offset && p->v == ps.v + p->offset);
        assert_true(((uintptr_t)p->w & 63) == 0);
        if (i > 0) assert_true(p->chunk == ps.p[i - 1].chunk || p->chunk == ps.p[i - 1].chunk + 1);
        if (p->chunk + 1 > used_chunks) used_chunks = p->chunk + 1;
    }
    assert_int_equal(used_chunks, ps.n_chunks); /* no empty chunk at the end */
    assert_int_equal(ps.p[0].chunk, 0);
    assert_true(ps.p[0].offset == 0);
    /* writing through one view touches only that tensor */
    lm_param *q = params_find(&ps, "model.layers.1.self_attn.q_proj.weight");
    assert_non_null(q);
    for (size_t k = 0; k < q->numel; k++) ((float *)q->g)[k] = 1.0f;
    size_t ones = 0;
    for (size_t k = 0; k < ps.arena; k++) ones += ((float *)ps.g)[k] == 1.0f;
    assert_true(ones == q->numel);
    free(owner);
    free(sizes);
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
 * one tensor far larger than the rest sets the smallest candidate size. */
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
    assert_true(ps.chunk_size >= 1000000);
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
    size_t cs = chunk_searched(sizes, ps.n);
    assert_true(cs >= 258 * 64);
    free(sizes);
    double t_all = lm_now() - t0;
    printf("# %d tensors: params_add %.2f s, params_find x %d %.2f s, chunk search %.2f s\n", ps.n, t_add, L, t_find,
           t_all - t_add - t_find);
    assert_true(t_all < 30.0);
    params_free(&ps);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_vs_brute), cmocka_unit_test(test_search_cases),
        cmocka_unit_test(test_search_alignment), cmocka_unit_test(test_build_layout),
        cmocka_unit_test(test_find_and_decay),  cmocka_unit_test(test_many_params), cmocka_unit_test(test_linear_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
