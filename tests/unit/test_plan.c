/* test_plan.c — the performance model of `lamina plan` (src/plan/plan_model.h):
 * its memory accounting against lamina's own (model_create_3d's arena and
 * activation bytes, built here on the CPU backends; the ZeRO bytes that
 * report_memory printed for a real run), hand-computed values, the FLOP
 * count of metrics.c, monotonicity in tp and the ZeRO stage, the bubble,
 * the search (the recommended layout fits; 70B on 8 x 80 GB does not), and
 * the cluster / calibration file parsers' errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "device.h"
#include "metrics.h"
#include "model.h"
#include "pipeline.h"
#include "plan_model.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *H100 = "[cluster]\nname = h100-sxm\ngpu = H100\npeak_tflops = 989\nmem_gib = 80\n"
                          "gpus_per_node = 8\nintra_node_gbs = 450\ninter_node_gbs = 50\nlatency_us = 5\n"
                          "mem_bw_gbs = 3000\nprecision = bf16\n";
static const char *CPU = "[cluster]\nname = local-cpu\ngpu = core\npeak_tflops = 0.134\nmem_gib = 11\n"
                         "gpus_per_node = 2\nintra_node_gbs = 5\ninter_node_gbs = 5\nlatency_us = 2\n"
                         "mem_bw_gbs = 20\nprecision = fp32\noversubscribe = true\n";

static plan_cluster cluster(const char *text) {
    plan_cluster c;
    char err[LM_ERRLEN];
    assert_int_equal(plan_cluster_parse(text, "test", &c, err, sizeof err), 0);
    return c;
}

static plan_shape tiny(int T, int gb) { return (plan_shape){64, 2, 4, 2, 176, 258, 0, T, gb}; }
static plan_shape llama7b(void) { return (plan_shape){4096, 32, 32, 32, 11008, 32000, 0, 4096, 1024}; }
static plan_shape llama70b(void) { return (plan_shape){8192, 80, 64, 8, 28672, 32000, 0, 4096, 1024}; }

/* ---- FLOPs: the convention of metrics.c with N of model.c ---- */
static void test_flops(void **st) {
    (void)st;
    plan_shape s[3] = {tiny(64, 8), llama7b(), llama70b()};
    for (int i = 0; i < 3; i++) {
        lm_shape sh = {s[i].dim, s[i].n_layers, s[i].n_heads, s[i].n_kv_heads, s[i].dim / s[i].n_heads,
                       s[i].ffn_dim, s[i].vocab, 1e-5f, 1e4, 0, 0};
        lm_device *d = device_cpu_create(0);
        if (i == 0) { /* the model itself for the small one */
            lm_model *m = model_create(d, &sh, 1, s[i].seq_len, 0, 16);
            assert_true(fabs(plan_n_params(&s[i]) - (double)m->n_matmul_params) < 0.5);
            model_destroy(m);
        }
        device_destroy(d);
        double D = sh.dim, KVD = (double)sh.n_kv_heads * sh.head_dim, F = sh.ffn_dim, V = sh.vocab_size;
        double N = sh.n_layers * (2 * D * D + 2 * KVD * D + 3 * F * D + 2 * D) + D + V * D;
        double want = metrics_flops_per_token((int64_t)N, sh.n_layers, sh.dim, s[i].seq_len);
        assert_true(fabs(plan_flops_per_token(&s[i]) - want) <= 1e-9 * want);
    }
    /* LLaMA-2 7B: 6.74e9 parameters with the input embedding */
    plan_shape b = llama7b();
    assert_true(fabs(plan_n_params(&b) + 32000.0 * 4096 - 6.738e9) < 0.001e9);
}

/* ---- memory against model_create_3d (arena, act_kept, act_bytes) ---- */

/* The model lamina would build for stage `stage` of layout l (tp 1), on
 * the float32 or the bf16 CPU backend. */
static lm_model *build(const plan_shape *s, const plan_layout *l, int stage, int bf16, lm_pp_split *split) {
    lm_shape sh = {s->dim, s->n_layers, s->n_heads, s->n_kv_heads, s->dim / s->n_heads, s->ffn_dim, s->vocab,
                   1e-5f, 1e4, s->tied, 0};
    lm_device *d = bf16 ? device_cpu_bf16_create(0) : device_cpu_create(0);
    int m = s->global_batch / (l->dp * l->mb), kind = l->v > 1 ? LM_PP_INTERLEAVED : LM_PP_1F1B;
    double D = s->dim, KVD = (double)s->n_kv_heads * (s->dim / s->n_heads), F = s->ffn_dim, V = s->vocab;
    double hc = 2 * V * D / (2 * (2 * D * D + 2 * KVD * D + 3 * F * D) + 4.0 * s->seq_len * D);
    lm_pp pp = {.size = l->pp, .rank = stage, .v = l->v, .split = split, .n_slots = 1};
    if (l->pp > 1) {
        assert_int_equal(pp_split_layers(s->n_layers, l->pp, l->v, NULL, 0, 0.0, hc, split, NULL, 0), 0);
        pp.n_slots = pp_max_inflight(kind, l->pp, l->v, m, stage);
    }
    return model_create_3d(d, &sh, NULL, &pp, l->mb, s->seq_len, l->recompute, (size_t)16 * (size_t)l->dp, 0);
}

static void check_against_model(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, int bf16) {
    lm_pp_split *split = malloc(sizeof *split);
    for (int st = 0; st < l->pp; st++) {
        lm_model *m = build(s, l, st, bf16, split);
        plan_mem pm;
        plan_stage_memory(s, cl, l, st, &pm);
        assert_true(pm.psi == (double)m->params.arena);
        assert_true(pm.chunk == (double)m->params.chunk_max); /* the longest chunk: what a chunk buffer holds */
        assert_true(pm.acts_kept == (double)m->act_kept);
        assert_true(pm.acts_kept + pm.acts_ws == (double)m->act_bytes);
        assert_int_equal(pm.slots, m->pp.n_slots);
        lm_device *d = m->dev;
        model_destroy(m);
        device_destroy(d);
    }
    free(split);
}

static void test_memory_vs_model(void **st) {
    (void)st;
    plan_cluster cpu = cluster(CPU), gpu = cluster(H100);
    plan_shape t = tiny(32, 8);
    /* dp, tp, pp, v, sp, zero, mb, recompute, offload */
    plan_layout ls[] = {
        {2, 1, 1, 1, 0, 1, 2, 0, 0}, {1, 1, 1, 1, 0, 0, 4, 1, 0}, {4, 1, 1, 1, 0, 2, 1, 0, 0},
        {1, 1, 2, 1, 0, 0, 1, 0, 0}, {1, 1, 2, 1, 0, 0, 2, 1, 0},
    };
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
        check_against_model(&t, &cpu, &ls[i], 0);
        check_against_model(&t, &gpu, &ls[i], 1);
    }
    /* interleaved on a 4-layer model, tied embeddings across stages */
    plan_shape t4 = tiny(32, 8);
    t4.n_layers = 4;
    plan_layout il = {1, 1, 2, 2, 0, 0, 1, 0, 0};
    check_against_model(&t4, &cpu, &il, 0);
    t4.tied = 1;
    check_against_model(&t4, &cpu, &il, 0);
    plan_layout one = {1, 1, 1, 1, 0, 0, 2, 0, 0};
    check_against_model(&t4, &gpu, &one, 1);
}

/* The memory of a run of the tiny preset (seq_len 32, micro_batch 2, dp 2,
 * ZeRO-1; tests/lib.sh's deck: mpirun -np 2 build/lamina train tiny.in
 * parallel.zero=1): 125504 parameters in 21 tensors, laid out by
 * chunk_layout_of at granule 32 in 15 chunks (8 of them an outsized
 * tensor's own), regular 5120 elements, the longest 16512, Psi = 136448
 * elements with padding (8.02%; 157824 = 9 x 17536, 20.48%, with one chunk
 * size), so weights, gradients and optimizer state 545792 B each;
 * test_memory_vs_model checks Psi and the longest chunk against the model.
 * The activations, from the run's report:
 *   activation memory per rank: 347136 B kept for backward, 665344 B with workspace
 * and by hand: 125504 parameters; per layer and token-row the kept
 * activations are 4 (2 D + 2 D + 2 KVD + 2 F) + 4 (2 + 2 H T / R) bytes:
 * R = 64 rows, D 64, KVD 32, F 176, H 4, T 32: 173568 per layer, 347136. */
static void test_memory_report(void **st) {
    (void)st;
    plan_cluster cpu = cluster(CPU);
    plan_shape t = tiny(32, 4);
    plan_layout l = {2, 1, 1, 1, 0, 1, 2, 0, 0};
    plan_mem m;
    plan_stage_memory(&t, &cpu, &l, 0, &m);
    assert_true(m.psi == 136448 && m.chunk == 16512);
    assert_true(m.weights == 545792 && m.grads == 545792 && m.optim == 545792 && m.master == 0);
    assert_true(m.acts_kept == 347136);
    assert_true(m.acts_kept + m.acts_ws == 665344);
    /* the same in bf16 (CUDA backend): weights and gradients 2 Psi, fp32
     * master 4 Psi / dp, moments 8 Psi / dp */
    plan_cluster gpu = cluster(H100);
    plan_stage_memory(&t, &gpu, &l, 0, &m);
    assert_true(m.weights == 2 * m.psi && m.grads == 2 * m.psi && m.master == 2 * m.psi && m.optim == 4 * m.psi);
    /* ZeRO-2: gradients e Psi / dp plus two chunk buckets */
    l.zero = 2;
    plan_stage_memory(&t, &gpu, &l, 0, &m);
    assert_true(m.grads == m.psi && m.buckets == 4 * m.chunk);
}

/* ---- monotonicity ---- */
static void test_monotonic(void **st) {
    (void)st;
    plan_cluster gpu = cluster(H100);
    plan_calib c;
    plan_calib_defaults(&c);
    plan_shape s = llama7b();
    double prev = INFINITY;
    for (int tp = 1; tp <= 8; tp *= 2) { /* more tp: less memory per GPU */
        plan_layout l = {8 / tp, tp, 1, 1, 0, 1, 1, 0, 0};
        assert_int_equal(plan_check(&s, &gpu, &l), PLAN_OK);
        plan_result r;
        plan_evaluate(&s, &gpu, &c, &l, &r);
        assert_true(r.mem.total < prev);
        prev = r.mem.total;
    }
    prev = INFINITY;
    for (int z = 0; z <= 3; z++) { /* each ZeRO stage holds less */
        plan_layout l = {8, 1, 1, 1, 0, z, 1, 1, 0};
        plan_result r;
        plan_evaluate(&s, &gpu, &c, &l, &r);
        assert_true(r.mem.total < prev);
        prev = r.mem.total;
    }
    /* recompute keeps less; sp keeps less at tp > 1 */
    plan_layout a = {4, 2, 1, 1, 0, 1, 2, 0, 0}, b = a;
    b.recompute = 1;
    plan_result ra, rb;
    plan_evaluate(&s, &gpu, &c, &a, &ra);
    plan_evaluate(&s, &gpu, &c, &b, &rb);
    assert_true(rb.mem.acts_kept < ra.mem.acts_kept && rb.t_compute > ra.t_compute);
    b = a;
    b.sp = 1;
    plan_evaluate(&s, &gpu, &c, &b, &rb);
    assert_true(rb.mem.acts_kept < ra.mem.acts_kept);
    /* GEMM efficiency saturates with the width */
    assert_true(plan_gemm_eff(&c, 512) < plan_gemm_eff(&c, 4096) && plan_gemm_eff(&c, 4096) < c.gemm_eff_max);
}

/* ---- the bubble ---- */
static void test_bubble(void **st) {
    (void)st;
    assert_true(plan_bubble(1, 1, 8) == 0.0);
    assert_true(fabs(plan_bubble(4, 1, 8) - 3.0 / 8) < 1e-15);
    assert_true(fabs(plan_bubble(4, 2, 8) - 3.0 / 16) < 1e-15);
    /* the step's bubble is (p-1)/(v m) of the pipeline's per-micro-batch time x m */
    plan_cluster gpu = cluster(H100);
    plan_calib c;
    plan_calib_defaults(&c);
    plan_shape s = llama70b();
    plan_layout l = {8, 4, 4, 2, 1, 1, 1, 1, 0};
    assert_int_equal(plan_check(&s, &gpu, &l), PLAN_OK);
    plan_result r;
    plan_evaluate(&s, &gpu, &c, &l, &r);
    double busy = r.t_compute + r.t_tp + r.t_pp;
    assert_true(fabs(r.t_bubble / busy - plan_bubble(4, 2, r.n_micro)) < 1e-9);
    /* and against lamina's own replay of the schedule (equal chunks) */
    double idle[4];
    pp_simulate(LM_PP_INTERLEAVED, 4, 2, r.n_micro, 1.0, 2.0, idle);
    assert_true(fabs(idle[0] - plan_bubble(4, 2, r.n_micro)) < 1e-9);
}

/* ---- the search ---- */
static void test_search(void **st) {
    (void)st;
    plan_cluster gpu = cluster(H100);
    plan_calib c;
    plan_calib_defaults(&c);
    plan_fix free_ = {-1, -1, -1, -1, -1, -1, -1};
    plan_result out[8], mod;
    plan_rejects rej;
    plan_shape s = llama7b();
    int n = plan_search(&s, &gpu, &c, 8, &free_, out, 8, &mod, &rej);
    assert_true(n > 8);
    double limit = (gpu.mem_gib - c.reserve_gib) * 1073741824.0;
    for (int i = 0; i < 8; i++) {
        assert_true(out[i].fits && out[i].runnable && out[i].mem.total <= limit);
        assert_true(out[i].l.dp * out[i].l.tp * out[i].l.pp == 8);
        if (i) assert_true(out[i].t_step >= out[i - 1].t_step);
    }
    assert_true(rej.count[PLAN_R_MEMORY] > 0 && rej.min_mem > limit);
    /* a fixed dimension is honoured */
    plan_fix tp8 = free_;
    tp8.tp = 8;
    n = plan_search(&s, &gpu, &c, 8, &tp8, out, 8, &mod, &rej);
    assert_true(n > 0);
    for (int i = 0; i < n && i < 8; i++) assert_int_equal(out[i].l.tp, 8);
    /* 64 GPUs: tp 16 would cross nodes */
    n = plan_search(&s, &gpu, &c, 64, &free_, out, 1, &mod, &rej);
    assert_true(n > 0 && rej.count[PLAN_R_TP_NODE] > 0);
    /* 70B on 8 x 80 GB: 16 bytes per parameter over 8 GPUs is 138 GB even
     * fully sharded: nothing lamina runs fits; offloading the optimizer
     * (modelled only) would */
    plan_shape b = llama70b();
    n = plan_search(&b, &gpu, &c, 8, &free_, out, 8, &mod, &rej);
    assert_int_equal(n, 0);
    assert_true(rej.min_mem > 16.0 * 6.9e10 / 8);
    assert_true(mod.fits && !mod.runnable && mod.l.offload);
    /* 70B on 64 does */
    n = plan_search(&b, &gpu, &c, 64, &free_, out, 1, &mod, &rej);
    assert_true(n > 0 && out[0].fits);
}

/* ---- cluster and calibration files ---- */
static void bad_cluster(const char *text, const char *want) {
    plan_cluster c;
    char err[LM_ERRLEN];
    assert_int_equal(plan_cluster_parse(text, "x.ini", &c, err, sizeof err), LM_ERR_INPUT);
    if (!strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, "x.ini"));
}

static void test_cluster_parse(void **st) {
    (void)st;
    plan_cluster c = cluster(H100);
    assert_string_equal(c.name, "h100-sxm");
    assert_true(c.peak_tflops == 989 && c.gpus_per_node == 8 && c.esz == 2 && !c.oversubscribe);
    c = cluster("; comment\n[cluster]\nname = x ; inline\n# another\ngpu = y\npeak_tflops = 1\nmem_gib = 2\n"
                "gpus_per_node = 3\nintra_node_gbs = 4\ninter_node_gbs = 5\nlatency_us = 0\nmem_bw_gbs = 6\n"
                "precision = fp32\noversubscribe = yes\n");
    assert_string_equal(c.name, "x");
    assert_true(c.esz == 4 && c.oversubscribe && c.latency_us == 0);
    char buf[1024];
    snprintf(buf, sizeof buf, "%sbogus = 1\n", H100);
    bad_cluster(buf, "unknown key cluster.bogus");
    bad_cluster(buf, "x.ini:12");
    snprintf(buf, sizeof buf, "%s", H100);
    *strstr(buf, "mem_bw_gbs") = '#';
    bad_cluster(buf, "cluster.mem_bw_gbs is required");
    snprintf(buf, sizeof buf, "%s", H100);
    memcpy(strstr(buf, "= 989"), "= 9x9", 5);
    bad_cluster(buf, "peak_tflops = '9x9': not a number");
    snprintf(buf, sizeof buf, "%s", H100);
    memcpy(strstr(buf, "= 8\n"), "= 0\n", 4);
    bad_cluster(buf, "cluster.gpus_per_node = '0': must be >= 1");
    snprintf(buf, sizeof buf, "%s", H100);
    memcpy(strstr(buf, "= bf16"), "= fp64", 6);
    bad_cluster(buf, "precision = 'fp64'");
    snprintf(buf, sizeof buf, "%speak_tflops = 1\n", H100);
    bad_cluster(buf, "duplicate key cluster.peak_tflops");
    bad_cluster("[gpus]\nname = a\n", "unknown section [gpus]");
    bad_cluster("[cluster]\nname\n", "syntax error");
    bad_cluster("", "no [cluster] section");
    snprintf(buf, sizeof buf, "%s", H100);
    memcpy(strstr(buf, "= 450"), "= -45", 5);
    bad_cluster(buf, "cluster.intra_node_gbs = '-45': must be in (0, 1e+09]");
}

static void test_calib_parse(void **st) {
    (void)st;
    const char *text = "[a100]\ngemm_eff_max = 0.5\ngemm_k_half = 1\ne2e = 0.5\ndp_hidden = 0\ncomm_eff = 1\n"
                       "dp_comm_eff = 1\nreserve_gib = 2\nstep_overhead_ms = 3\n[default]\ngemm_eff_max = 0.9\n"
                       "gemm_k_half = 2\ne2e = 0.9\ndp_hidden = 0.5\ncomm_eff = 0.5\ndp_comm_eff = 0.5\n"
                       "reserve_gib = 1\nstep_overhead_ms = 0\n";
    plan_calib c;
    int found;
    char err[LM_ERRLEN];
    assert_int_equal(plan_calib_parse(text, "cal", "a100", &c, &found, err, sizeof err), 0);
    assert_true(found == 1 && c.gemm_eff_max == 0.5 && c.step_overhead_ms == 3);
    assert_int_equal(plan_calib_parse(text, "cal", "h100", &c, &found, err, sizeof err), 0);
    assert_true(found == 2 && c.gemm_eff_max == 0.9);
    assert_int_equal(plan_calib_parse("[x]\ne2e = 0.5\n", "cal", "h100", &c, &found, err, sizeof err), 0);
    assert_int_equal(found, 0);
    assert_int_equal(plan_calib_parse("[h100]\ne2e = 1.5\n", "cal", "h100", &c, &found, err, sizeof err), 2);
    assert_non_null(strstr(err, "h100.e2e = '1.5': must be in (0, 1]"));
    assert_int_equal(plan_calib_parse("[other]\nfoo = 1\n", "cal", "h100", &c, &found, err, sizeof err), 2);
    assert_non_null(strstr(err, "cal:2: unknown key other.foo"));
    assert_int_equal(plan_calib_parse("[h100]\ne2e = 0.5\n", "cal", "h100", &c, &found, err, sizeof err), 2);
    assert_non_null(strstr(err, "cal: h100.gemm_eff_max is required"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flops),          cmocka_unit_test(test_memory_vs_model),
        cmocka_unit_test(test_memory_report),  cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_bubble),         cmocka_unit_test(test_search),
        cmocka_unit_test(test_cluster_parse),  cmocka_unit_test(test_calib_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
