/* test_tp.c — the tensor-parallel split of the model (src/model/model.h): the
 * shape checks of tp_dims, the blocks every rank's parameters hold, random
 * init by full-tensor index, checkpoint pieces without vocabulary padding,
 * and the communication formula.
 *
 * The split is built for every rank of tp = 1, 2, 4 in one process (the
 * parameter table needs no communication); the checks are that the ranks'
 * blocks tile each full tensor exactly (split tensors once, replicas on
 * every rank that shares them), which one rank counts each replica in the
 * gradient norm, and that init gives every rank the single-rank values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "model.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static lm_shape shape(int dim, int heads, int kv, int ffn, int vocab, int tied) {
    lm_shape s = {.dim = dim, .n_layers = 2, .n_heads = heads, .n_kv_heads = kv, .head_dim = dim / heads,
                  .ffn_dim = ffn, .vocab_size = vocab, .norm_eps = 1e-5f, .rope_theta = 10000.0, .tied = tied};
    return s;
}

static void test_dims_errors(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    lm_tp_dims d;
    lm_shape s = shape(64, 4, 2, 176, 258, 0);
    assert_int_equal(tp_dims(&s, 3, &d, err, sizeof err), 2);
    assert_non_null(strstr(err, "model.n_heads = 4 is not divisible by parallel.tp = 3"));
    s = shape(64, 4, 4, 170, 258, 0);
    assert_int_equal(tp_dims(&s, 4, &d, err, sizeof err), 2);
    assert_non_null(strstr(err, "model.ffn_dim = 170"));
    s = shape(96, 12, 3, 96, 258, 0); /* 3 kv heads: not split by 2, do not divide 4 */
    assert_int_equal(tp_dims(&s, 2, &d, err, sizeof err), 2);
    assert_non_null(strstr(err, "model.n_kv_heads = 3 with parallel.tp = 2"));
    assert_int_equal(tp_dims(&s, 4, &d, err, sizeof err), 2);
    s = shape(96, 12, 6, 96, 258, 0); /* 6 kv heads at tp 4: neither */
    assert_int_equal(tp_dims(&s, 4, &d, err, sizeof err), 2);
    assert_int_equal(tp_dims(&s, 3, &d, err, sizeof err), 0);
    assert_int_equal(d.KV, 2);
    assert_int_equal(d.kv_replicas, 1);
}

static void test_dims_values(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    lm_tp_dims d;
    lm_shape s = shape(64, 4, 2, 176, 258, 0);
    assert_int_equal(tp_dims(&s, 1, &d, err, sizeof err), 0);
    assert_true(d.H == 4 && d.KV == 2 && d.F == 176 && d.V == 258 && d.Vp == 258 && d.kv_replicas == 1);
    assert_int_equal(tp_dims(&s, 2, &d, err, sizeof err), 0);
    assert_true(d.H == 2 && d.KV == 1 && d.F == 88 && d.V == 129 && d.Vp == 258 && d.kv_replicas == 1);
    assert_int_equal(tp_dims(&s, 4, &d, err, sizeof err), 0); /* kv replicated, vocab padded */
    assert_true(d.H == 1 && d.KV == 1 && d.F == 44 && d.V == 65 && d.Vp == 260 && d.kv_replicas == 2);
    s = shape(48, 4, 1, 72, 97, 1);
    assert_int_equal(tp_dims(&s, 4, &d, err, sizeof err), 0);
    assert_true(d.KV == 1 && d.kv_replicas == 4 && d.V == 25 && d.Vp == 100);
}

/* Every rank's model for tp ranks, on the CPU backend, random init. */
static lm_model **build(lm_device *dev, const lm_shape *s, int tp, int sp, lm_group *fake) {
    lm_model **m = calloc((size_t)tp, sizeof *m);
    for (int r = 0; r < tp; r++) {
        lm_tp t = {.size = tp, .rank = r, .sp = sp, .g = fake, .kv = fake};
        m[r] = model_create_tp(dev, s, &t, 2, 8, 0, 16);
        model_init_random(m[r], 42, 0.02);
    }
    return m;
}

/* The full tensors of the single-rank model, and how often each element of
 * each is held (and counted in the norm) over the ranks of a tp split. */
static void check_tiling(const lm_shape *s, int tp, int sp) {
    lm_device *dev = device_cpu_create(0);
    lm_group fake = {0};
    lm_model **one = build(dev, s, 1, 0, NULL), **m = build(dev, s, tp, sp, &fake);
    lm_tp_dims d;
    char err[LM_ERRLEN];
    assert_int_equal(tp_dims(s, tp, &d, err, sizeof err), 0);
    lm_params *ref = &one[0]->params;
    for (int i = 0; i < ref->n; i++) {
        lm_param *full = &ref->p[i];
        size_t n = full->numel;
        int *held = calloc(n, sizeof *held), *counted = calloc(n, sizeof *counted);
        for (int r = 0; r < tp; r++) {
            lm_param *p = &m[r]->params.p[i];
            assert_string_equal(p->name, full->name);
            assert_int_equal(p->full_rows, full->rows);
            assert_int_equal(p->full_cols, full->cols);
            const float *w = p->w, *fw = full->w;
            for (size_t j = 0; j < p->numel; j++) {
                int64_t g = params_full_index(p, j);
                if (g < 0) { /* vocabulary padding: zero, and only in the last rows */
                    assert_true(w[j] == 0.0f);
                    assert_true((int64_t)(j / (size_t)p->cols) >= p->valid_rows);
                    continue;
                }
                assert_true(g < (int64_t)n);
                held[g]++;
                counted[g] += p->norm_here;
                assert_true(w[j] == fw[g]); /* init by full index: the single-rank values */
            }
            /* the checkpoint piece of the whole block leaves the padding out */
            ckpt_tensor t = params_piece(p, 0, p->numel, (float *)p->w);
            assert_int_equal(t.count, p->valid_rows * p->cols);
            assert_int_equal(t.rows, full->rows);
            if (tp > 1 && p->tp_split != LM_TP_NONE) {
                assert_int_equal(t.row0, p->row0);
                assert_int_equal(t.col0, p->col0);
                assert_int_equal(t.brows, p->valid_rows);
                assert_int_equal(t.bcols, p->cols);
            }
            /* which replicas sum their gradients over a group */
            int is_kv = strstr(p->name, "k_proj") || strstr(p->name, "v_proj");
            if (p->ndim == 1)
                assert_true(p->gsum == (sp && tp > 1 ? &fake : NULL));
            else if (is_kv)
                assert_true(p->gsum == (d.kv_replicas > 1 ? &fake : NULL));
            else
                assert_null(p->gsum);
        }
        int want = full->ndim == 1 ? tp : strstr(full->name, "k_proj") || strstr(full->name, "v_proj") ? d.kv_replicas : 1;
        for (size_t g = 0; g < n; g++) {
            if (held[g] != want || counted[g] != 1)
                fail_msg("%s at tp %d: element %zu held %d times (want %d), counted %d times", full->name, tp, g,
                         held[g], want, counted[g]);
        }
        free(held);
        free(counted);
    }
    assert_int_equal(m[0]->n_matmul_params, one[0]->n_matmul_params);
    for (int r = 0; r < tp; r++) model_destroy(m[r]);
    model_destroy(one[0]);
    free(m);
    free(one);
    device_destroy(dev);
}

static void test_tiling(void **state) {
    (void)state;
    lm_shape shapes[] = {
        shape(64, 4, 2, 176, 258, 0),  /* kv split at 2, replicated at 4; vocab padded at 4 */
        shape(48, 4, 1, 72, 97, 1),    /* one kv head, tied, odd vocab */
        shape(64, 8, 8, 64, 61, 0),    /* MHA, vocab smaller than a padded slice multiple */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
        for (int tp = 1; tp <= 4; tp *= 2)
            for (int sp = 0; sp < 2; sp++) check_tiling(&shapes[k], tp, sp);
}

/* The formula by hand for one shape: R = 16 rows, D = 64, L = 2, e = 4,
 * 3 micro-batches, tp 2. */
static void test_comm_formula(void **state) {
    (void)state;
    lm_device *dev = device_cpu_create(0);
    lm_group fake = {0};
    lm_shape s = shape(64, 4, 2, 176, 258, 0);
    for (int sp = 0; sp < 2; sp++)
        for (int rc = 0; rc < 2; rc++) {
            lm_tp t = {.size = 2, .rank = 0, .sp = sp, .g = &fake, .kv = &fake};
            lm_model *m = model_create_tp(dev, &s, &t, 2, 8, rc, 16);
            lm_comm_stats f;
            tp_comm_formula(m, 3, 4.0, &f);
            double RD = 16.0 * 64 * 4, L = 2, stats = 3 * 12.0 * 16 * 2;
            double ar = sp ? 5 * 64 * 4 + 8 : 3 * (2 + 4 * L + 2 * L * rc) * RD + 8;
            double rs = sp ? 3 * (2 + 4 * L + 2 * L * rc) * RD : 0;
            double ag = (sp ? 3 * (2 + 6 * L + 2 * L * rc) * RD : 0) + stats;
            assert_true(f.allreduce_bytes == ar && f.reduce_scatter_bytes == rs && f.allgather_bytes == ag);
            assert_true(fabs(f.sent - 0.5 * (2 * ar + rs + ag)) < 1e-6);
            model_destroy(m);
        }
    lm_comm_stats f;
    lm_model *m = model_create(dev, &s, 2, 8, 0, 16);
    tp_comm_formula(m, 3, 4.0, &f);
    assert_true(f.allreduce_bytes == 0 && f.sent == 0); /* tp 1: nothing */
    model_destroy(m);
    device_destroy(dev);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dims_errors),
        cmocka_unit_test(test_dims_values),
        cmocka_unit_test(test_tiling),
        cmocka_unit_test(test_comm_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
