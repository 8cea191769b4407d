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

#include "chunks.h"
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
/* the same with the host side of a DGX H100 (inputs/clusters/h100-sxm.ini) */
static const char *H100_HOST = "[cluster]\nname = h100-sxm\ngpu = H100\npeak_tflops = 989\nmem_gib = 80\n"
                               "gpus_per_node = 8\nintra_node_gbs = 450\ninter_node_gbs = 50\nlatency_us = 5\n"
                               "mem_bw_gbs = 3000\nprecision = bf16\nhost_mem_gib = 2048\nlink_gbs = 55\n"
                               "host_adamw_rate = 0\nhost_mem_bw_gbs = 460\n";
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

/* zero.c place_frac over a layout's chunk starts coff[0..nch]: chunks from
 * the last one backwards while their elements are below f x all - 0.5;
 * the count, *el their elements. */
static int place_frac_ref(const size_t *coff, int nch, double f, double *el) {
    size_t got = 0;
    int k = 0;
    for (int c = nch - 1; c >= 0; c--, k++) {
        if ((double)got >= f * (double)coff[nch] - 0.5) break;
        got += coff[c + 1] - coff[c];
    }
    *el = (double)got;
    return k;
}

/* zero.c min_slots over the model's fetch groups (each layer's 9 tensors,
 * the embedding, the final norm with lm_head): the largest sum of the
 * lengths of the distinct chunks a group touches that are not their own
 * home (dp > 1: all; dp 1: those whose parameters are offloaded, the last
 * kp); *wc the most distinct chunks of a group. Elements. */
static double min_slots_ref(const lm_model *m, int dp, int kp, int *wc) {
    const lm_params *ps = &m->params;
    double best = 0;
    *wc = 0;
    for (int gi = 0; gi < m->s.n_layers + 2; gi++) {
        lm_param *grp[9];
        int n = 0;
        if (gi < m->s.n_layers) {
            if (!m->layer[gi].q) continue;
            memcpy(grp, &m->layer[gi], sizeof(lm_layer_params));
            n = 9;
        } else if (gi == m->s.n_layers) {
            if (m->embed) grp[n++] = m->embed;
        } else {
            if (m->norm) grp[n++] = m->norm;
            if (m->lm_head) grp[n++] = m->lm_head;
        }
        int seen[10], ns = 0;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            int c = grp[i]->chunk, dup = 0;
            for (int j = 0; j < ns; j++) dup |= seen[j] == c;
            if (dup) continue;
            seen[ns++] = c;
            if (dp > 1 || c >= ps->n_chunks - kp) sum += (double)chunk_len(ps, c);
        }
        if (ns > *wc) *wc = ns;
        if (sum > best) best = sum;
    }
    return best;
}

static void check_against_model(const plan_shape *s, const plan_cluster *cl, const plan_layout *l, int bf16) {
    lm_pp_split *split = malloc(sizeof *split);
    double e = cl->esz;
    for (int st = 0; st < l->pp; st++) {
        lm_model *m = build(s, l, st, bf16, split);
        const lm_params *ps = &m->params;
        plan_mem pm;
        plan_stage_memory(s, cl, l, st, &pm);
        assert_true(pm.psi == (double)ps->arena);
        assert_true(pm.chunk == (double)ps->chunk_max); /* the longest chunk: what a chunk buffer holds */
        assert_true(pm.acts_kept == (double)m->act_kept);
        assert_true(pm.acts_kept + pm.acts_ws == (double)m->act_bytes);
        assert_int_equal(pm.slots, m->pp.n_slots);
        assert_int_equal(pm.nch, ps->n_chunks);
        int wc;
        min_slots_ref(m, l->dp, 0, &wc);
        assert_int_equal(pm.wc, wc);
        /* optimizer offload: whole chunks from the last one until their
         * elements reach f of the arena (zero.c place_frac) */
        double fr[] = {0, 0.1, 0.35, 0.5, 0.77, 0.999, 1};
        for (size_t i = 0; i < sizeof fr / sizeof *fr; i++) {
            plan_layout lo = *l;
            plan_set_offload(&lo, PLAN_OFF_OPTIM, fr[i]);
            plan_mem po;
            plan_stage_memory(s, cl, &lo, st, &po);
            double el;
            assert_int_equal(po.ko, place_frac_ref(ps->coff, ps->n_chunks, fr[i], &el));
            assert_true(po.off_opt == el && po.kp == 0 && po.off_par == 0);
            /* ZeRO-3 with the parameters of the same chunks on the host: the
             * gathered slots are min_slots of the model's fetch groups, plus
             * prefetch x the longest chunk that needs a slot */
            plan_layout lz = *l;
            lz.zero = 3;
            plan_set_offload(&lz, PLAN_OFF_PARAM, fr[i]);
            plan_mem pz;
            plan_stage_memory(s, cl, &lz, st, &pz);
            assert_true(pz.kp == po.ko && pz.off_par == el);
            double g = min_slots_ref(m, l->dp, pz.kp, &wc), longest = 0;
            for (int c = 0; c < ps->n_chunks; c++)
                if (l->dp > 1 || c >= ps->n_chunks - pz.kp) longest = fmax(longest, (double)chunk_len(ps, c));
            assert_true(pz.gather == g);
            assert_true(pz.managed == e * (g + lz.prefetch * longest));
            assert_true(pz.weights == e * (ps->arena - el) / l->dp + pz.managed);
            assert_true(pz.buckets == 2 * e * (double)ps->chunk_max);
        }
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
        {2, 1, 1, 1, 0, 1, 2, 0, 0, 0, 0, 2}, {1, 1, 1, 1, 0, 0, 4, 1, 0, 0, 0, 2}, {4, 1, 1, 1, 0, 2, 1, 0, 0, 0, 0, 2},
        {1, 1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 2}, {1, 1, 2, 1, 0, 0, 2, 1, 0, 0, 0, 2}, {2, 1, 1, 1, 0, 3, 2, 0, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
        check_against_model(&t, &cpu, &ls[i], 0);
        check_against_model(&t, &gpu, &ls[i], 1);
    }
    /* interleaved on a 4-layer model, tied embeddings across stages */
    plan_shape t4 = tiny(32, 8);
    t4.n_layers = 4;
    plan_layout il = {1, 1, 2, 2, 0, 0, 1, 0, 0, 0, 0, 2};
    check_against_model(&t4, &cpu, &il, 0);
    t4.tied = 1;
    check_against_model(&t4, &cpu, &il, 0);
    plan_layout one = {1, 1, 1, 1, 0, 0, 2, 0, 0, 0, 0, 2};
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
    plan_layout l = {2, 1, 1, 1, 0, 1, 2, 0, 0, 0, 0, 2};
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
        plan_layout l = {8 / tp, tp, 1, 1, 0, 1, 1, 0, 0, 0, 0, 2};
        assert_int_equal(plan_check(&s, &gpu, &l), PLAN_OK);
        plan_result r;
        plan_evaluate(&s, &gpu, &c, &l, &r);
        assert_true(r.mem.total < prev);
        prev = r.mem.total;
    }
    prev = INFINITY;
    for (int z = 0; z <= 3; z++) { /* each ZeRO stage holds less */
        plan_layout l = {8, 1, 1, 1, 0, z, 1, 1, 0, 0, 0, 2};
        plan_result r;
        plan_evaluate(&s, &gpu, &c, &l, &r);
        assert_true(r.mem.total < prev);
        prev = r.mem.total;
    }
    /* recompute keeps less; sp keeps less at tp > 1 */
    plan_layout a = {4, 2, 1, 1, 0, 1, 2, 0, 0, 0, 0, 2}, b = a;
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
    plan_layout l = {8, 4, 4, 2, 1, 1, 1, 1, 0, 0, 0, 2};
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
    plan_fix free_ = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1.0};
    plan_result out[8];
    plan_rejects rej;
    plan_shape s = llama7b();
    int n = plan_search(&s, &gpu, &c, 8, &free_, out, 8, &rej);
    assert_true(n > 8);
    double limit = (gpu.mem_gib - c.reserve_gib) * 1073741824.0;
    for (int i = 0; i < 8; i++) {
        assert_true(out[i].fits && out[i].mem.total <= limit && out[i].l.offload == PLAN_OFF_NONE);
        assert_true(out[i].l.dp * out[i].l.tp * out[i].l.pp == 8);
        if (i) assert_true(out[i].t_step >= out[i - 1].t_step);
    }
    assert_true(rej.count[PLAN_R_MEMORY] > 0 && rej.min_mem > limit);
    /* a fixed dimension is honoured */
    plan_fix tp8 = free_;
    tp8.tp = 8;
    n = plan_search(&s, &gpu, &c, 8, &tp8, out, 8, &rej);
    assert_true(n > 0);
    for (int i = 0; i < n && i < 8; i++) assert_int_equal(out[i].l.tp, 8);
    /* 64 GPUs: tp 16 would cross nodes */
    n = plan_search(&s, &gpu, &c, 64, &free_, out, 1, &rej);
    assert_true(n > 0 && rej.count[PLAN_R_TP_NODE] > 0);
    /* 70B on 8 x 80 GB: 16 bytes per parameter over 8 GPUs is 138 GB even
     * fully sharded: nothing fits without offload (no link_gbs: not searched) */
    plan_shape b = llama70b();
    n = plan_search(&b, &gpu, &c, 8, &free_, out, 8, &rej);
    assert_int_equal(n, 0);
    assert_true(rej.min_mem > 16.0 * 6.9e10 / 8);
    /* with the host link, offloading the optimizer state fits and is recommended */
    plan_cluster host = cluster(H100_HOST);
    n = plan_search(&b, &host, &c, 8, &free_, out, 8, &rej);
    assert_true(n > 0 && out[0].fits && out[0].l.offload != PLAN_OFF_NONE && out[0].host_max > 0);
    assert_true(out[0].mem.total <= limit && out[0].t_host > 0 && out[0].t_xfer > 0);
    /* 7B on 8 still needs none: the fastest layout does not offload */
    n = plan_search(&s, &host, &c, 8, &free_, out, 1, &rej);
    assert_true(n > 0 && out[0].l.offload == PLAN_OFF_NONE);
    /* offload fixed to optim: every layout offloads, the smallest fitting fraction */
    plan_fix opt = free_;
    opt.offload = PLAN_OFF_OPTIM;
    n = plan_search(&s, &host, &c, 8, &opt, out, 8, &rej);
    assert_true(n > 0);
    for (int i = 0; i < n && i < 8; i++) assert_true(out[i].l.offload == PLAN_OFF_OPTIM && out[i].fits);
    /* parameter offload needs ZeRO-3: fixed to param, every layout is ZeRO-3 (on
     * one GPU too: the dp 1 search tries ZeRO-3 for it); with ZeRO-2 fixed, none */
    plan_fix par = free_;
    par.offload = PLAN_OFF_PARAM;
    n = plan_search(&s, &host, &c, 1, &par, out, 8, &rej);
    assert_true(n > 0);
    for (int i = 0; i < n && i < 8; i++)
        assert_true(out[i].l.offload == PLAN_OFF_PARAM && out[i].l.zero == 3 && out[i].fits && out[i].mem.kp > 0);
    par.zero = 2;
    n = plan_search(&s, &host, &c, 8, &par, out, 8, &rej);
    assert_true(n == 0 && rej.count[PLAN_R_PARAM_ZERO] > 0);
    /* the free search on one GPU: whatever it offloads, parameters only at ZeRO-3 */
    n = plan_search(&s, &host, &c, 1, &free_, out, 8, &rej);
    assert_true(n > 0 && out[0].fits);
    for (int i = 0; i < n && i < 8; i++) assert_true(out[i].l.fp == 0 || out[i].l.zero == 3);
    /* the host bounds the offload: 70B on 8 with 100 GiB of host memory per node does not fit */
    host.host_mem_gib = 100;
    n = plan_search(&b, &host, &c, 8, &free_, out, 8, &rej);
    assert_int_equal(n, 0);
    assert_true(rej.count[PLAN_R_HOST] > 0 && rej.min_host > 100 * 1073741824.0);
    /* 70B on 64 does */
    n = plan_search(&b, &gpu, &c, 64, &free_, out, 1, &rej);
    assert_true(n > 0 && out[0].fits);
}

/* ---- ZeRO-3 and offload: the bytes zero.c allocates for them ----
 * (which chunks, and the gathered slots, against the model's own layout:
 * check_against_model) */
static void test_offload_memory(void **st) {
    (void)st;
    plan_cluster cpu = cluster(CPU), gpu = cluster(H100_HOST);
    plan_shape t = tiny(32, 8);
    for (int k = 0; k < 2; k++) {
        plan_cluster *cl = k ? &gpu : &cpu;
        double e = cl->esz;
        for (int z = 0; z <= 3; z++) {
            int dp = z ? 2 : 1;
            plan_layout none = {dp, 1, 1, 1, 0, z, 2, 0, PLAN_OFF_NONE, 0, 0, 2}, opt = none;
            plan_set_offload(&opt, PLAN_OFF_OPTIM, 0.5);
            plan_mem a, b;
            plan_stage_memory(&t, cl, &none, 0, &a);
            plan_stage_memory(&t, cl, &opt, 0, &b);
            /* half of the elements: whole chunks from the last one, the last of
             * them (at most the longest chunk) passing half */
            assert_true(b.ko >= 1 && b.ko < a.nch && b.kp == 0 && b.off_par == 0);
            assert_true(b.off_opt >= 0.5 * a.psi - 0.5 && b.off_opt - a.chunk < 0.5 * a.psi - 0.5);
            double owned = z ? a.psi / dp : a.psi, off = z ? b.off_opt / dp : b.off_opt; /* owned, offloaded */
            assert_true(a.owned == owned && b.owned == owned);
            /* optim moves the fp32 master (bf16 only: in fp32 the weights are the
             * master) and the moments of the offloaded owned elements off the device:
             * 12 bytes each in bf16, 8 in fp32, exactly */
            double moved = (e == 2 ? 12 : 8) * off;
            assert_true(fabs((a.total - b.total) - moved) < 1e-6);
            /* the host holds master and moments (12 bytes, fp32 too), gradient staging,
             * parameter staging (bf16) */
            assert_true(b.host_master + b.host_optim == 12 * off);
            assert_true(b.host_grad == e * off && b.host_pstage == (e == 2 ? e * off : 0) && b.host_params == 0);
            assert_true(b.host_total == (12 + e + (e == 2 ? e : 0)) * off && a.host_total == 0);
            /* the link per step: gradients down, updated parameters up */
            assert_true(b.d2h == e * off && b.h2d == e * off && a.h2d == 0 && a.d2h == 0);
            /* weights: e Psi, or at ZeRO-3 e Psi/dp + the gathered slots: the largest
             * fetch group's chunks (all need a slot at dp 2) + prefetch x the longest */
            double w = z == 3 ? e * a.psi / dp + e * (a.gather + 2 * a.chunk) : e * a.psi;
            assert_true(a.weights == w && b.weights == w);
            assert_true(a.managed == (z == 3 ? e * (a.gather + 2 * a.chunk) : 0));
            assert_true(z == 3 ? a.gather >= a.chunk / 2 && a.gather <= a.wc * a.chunk : a.gather == 0);
            assert_true(a.wc >= 1 && a.wc <= 9);
            /* gradients: e Psi at ZeRO 0, 1; e Psi/dp + 2 buckets of the longest chunk at 2, 3 */
            assert_true(a.grads == (z >= 2 ? e * a.psi / dp : e * a.psi));
            assert_true(a.buckets == (z >= 2 ? 2 * e * a.chunk : 0));

            /* param (ZeRO-3 only: below it none is offloaded): fo = fp; the home
             * shards of the same chunks live on the host and are uploaded for
             * forward and backward of each of the m micro-batches */
            plan_layout par = none;
            plan_set_offload(&par, PLAN_OFF_PARAM, 0.5);
            assert_int_equal(plan_check(&t, cl, &par), z == 3 ? PLAN_OK : PLAN_R_PARAM_ZERO);
            plan_mem c;
            plan_stage_memory(&t, cl, &par, 0, &c);
            int m = t.global_batch / (dp * 2);
            assert_int_equal(c.ko, b.ko);
            assert_true(c.d2h == e * off);
            if (z < 3) {
                assert_true(c.kp == 0 && c.host_params == 0 && c.weights == a.weights);
                continue;
            }
            double op = c.off_par / dp;
            assert_true(c.kp == c.ko && c.off_par == b.off_opt);
            assert_true(fabs(c.weights - (e * (a.psi - c.off_par) / dp + e * (c.gather + 2 * a.chunk))) < 1e-6);
            assert_true(c.host_params == e * op && c.host_pstage == 0);
            /* fp32: the master of a chunk whose parameters are on the host is its home shard */
            assert_true(c.host_master == (e == 4 ? 0 : 4 * off));
            assert_true(fabs(c.h2d - 2.0 * m * e * op) < 1e-6);
        }
    }
    /* ZeRO-3 at dp 1: a chunk whose parameters stay on the device is its own
     * slot: nothing gathered; with parameters offloaded, the slots of those */
    plan_layout z1 = {1, 1, 1, 1, 0, 3, 2, 0, PLAN_OFF_NONE, 0, 0, 2};
    plan_mem q;
    plan_stage_memory(&t, &gpu, &z1, 0, &q);
    assert_true(q.gather == 0 && q.managed == 0 && q.weights == 2 * q.psi);
    plan_set_offload(&z1, PLAN_OFF_PARAM, 0.3);
    plan_stage_memory(&t, &gpu, &z1, 0, &q);
    assert_true(q.kp > 0 && q.gather > 0 && q.managed > 0 && q.managed <= 2 * (q.gather + 2 * q.chunk));
    /* ZeRO-3 weights at dp 8 on LLaMA-2 7B: e Psi / dp + e (gather + P cs) */
    plan_shape s = llama7b();
    plan_layout l = {8, 1, 1, 1, 0, 3, 1, 1, PLAN_OFF_NONE, 0, 0, 2};
    plan_mem m;
    plan_stage_memory(&s, &gpu, &l, 0, &m);
    assert_true(m.weights == 2 * m.psi / 8 + 2 * (m.gather + 2 * m.chunk) && m.master == 4 * m.psi / 8);
    l.prefetch = 0;
    plan_mem m0;
    plan_stage_memory(&s, &gpu, &l, 0, &m0);
    assert_true(m.weights - m0.weights == 2 * 2 * m.chunk);
}

/* The chunk starts of LLaMA-2 7B's one-stage layout at dp 1, as
 * chunks_build lays out model.c's tensors (embedding, 32 x 9, norm,
 * lm_head); returns the chunk count. */
static int llama7b_layout(size_t **coff) {
    size_t D = 4096, F = 11008, V = 32000, z[3 + 9 * 32];
    int n = 0;
    z[n++] = V * D;
    for (int l = 0; l < 32; l++) {
        size_t t[9] = {D, D * D, D * D, D * D, D * D, D, F * D, F * D, D * F};
        memcpy(z + n, t, sizeof t);
        n += 9;
    }
    z[n++] = D;
    z[n++] = V * D;
    *coff = malloc(sizeof(size_t) * (size_t)(n + 1));
    return chunk_layout_of(z, NULL, n, 16, 0, NULL, NULL, *coff).n_chunks;
}

/* ---- auto: the smallest fraction that fits, chunk by chunk from the end ---- */
static void test_offload_fit(void **st) {
    (void)st;
    plan_cluster gpu = cluster(H100_HOST);
    plan_calib c;
    plan_calib_defaults(&c);
    plan_shape s = llama7b();
    s.global_batch = 64;
    plan_layout l = {1, 1, 1, 1, 0, 0, 1, 1, PLAN_OFF_NONE, 0, 0, 2};
    plan_mem none;
    plan_stage_memory(&s, &gpu, &l, 0, &none);
    size_t *coff;
    int n = llama7b_layout(&coff);
    assert_int_equal(n, none.nch);
    assert_true((double)coff[n] == none.psi);
    /* tail(k): the elements of the last k chunks */
#define TAIL(k) ((double)(coff[n] - coff[n - (k)]))
    /* a limit between k and k-1 offloaded chunks picks k (each offloaded
     * element takes 12 bytes off the device); the fraction reported is of
     * the elements, tail(k) / Psi */
    int k = 17;
    assert_true(TAIL(k) > TAIL(k - 1));
    gpu.dev_limit = none.total - 12 * (TAIL(k) + TAIL(k - 1)) / 2;
    plan_layout a = l;
    a.offload = PLAN_OFF_AUTO;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &a), 1);
    assert_true(a.fo == TAIL(k) / none.psi && a.fp == 0);
    plan_mem got;
    plan_stage_memory(&s, &gpu, &a, 0, &got);
    assert_true(got.ko == k && got.off_opt == TAIL(k) && got.total <= gpu.dev_limit);
    plan_layout fewer = a;
    fewer.fo = TAIL(k - 1) / none.psi;
    plan_stage_memory(&s, &gpu, &fewer, 0, &got);
    assert_true(got.ko == k - 1 && got.total > gpu.dev_limit);
    /* optim: the same fraction */
    plan_layout o = l;
    o.offload = PLAN_OFF_OPTIM;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &o), 1);
    assert_true(o.fo == a.fo);
    /* a device too small for even none of the optimizer state: at ZeRO-2 auto
     * cannot offload parameters (ZeRO-3 only): 0, all of the optimizer state */
    gpu.dev_limit = none.total - 12 * none.psi - 2 * none.psi * 0.3;
    a = l;
    a.zero = 2;
    a.offload = PLAN_OFF_AUTO;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &a), 0);
    assert_true(a.fo == 1 && a.fp == 0);
    a.offload = PLAN_OFF_PARAM;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &a), 0);
    /* at ZeRO-3 it offloads parameters too, the fewest last chunks that fit */
    a = l;
    a.zero = 3;
    a.offload = PLAN_OFF_AUTO;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &a), 1);
    assert_true(a.fo == 1 && a.fp > 0.3 && a.fp < 0.5);
    plan_stage_memory(&s, &gpu, &a, 0, &got);
    assert_true(got.total <= gpu.dev_limit && a.fp == TAIL(got.kp) / none.psi);
    fewer = a;
    fewer.fp = TAIL(got.kp - 1) / none.psi;
    plan_stage_memory(&s, &gpu, &fewer, 0, &got);
    assert_true(got.total > gpu.dev_limit);
    /* too small for anything: 0, at the most offload */
    gpu.dev_limit = 1 << 20;
    a = l;
    a.zero = 3;
    a.offload = PLAN_OFF_AUTO;
    assert_int_equal(plan_fit_offload(&s, &gpu, &c, &a), 0);
    assert_true(a.fo == 1 && a.fp == 1);
#undef TAIL
    free(coff);
}

/* ---- offload time: the link and the host AdamW ---- */
static void test_offload_time(void **st) {
    (void)st;
    plan_cluster gpu = cluster(H100_HOST);
    plan_calib c;
    plan_calib_defaults(&c);
    assert_true(c.offload_hidden == 0.5);
    plan_shape s = llama7b();
    s.global_batch = 64;
    plan_layout l = {1, 1, 1, 1, 0, 2, 1, 1, PLAN_OFF_NONE, 0, 0, 2};
    plan_set_offload(&l, PLAN_OFF_OPTIM, 0.6);
    plan_result r, r0;
    plan_evaluate(&s, &gpu, &c, &l, &r);
    plan_layout n = l;
    plan_set_offload(&n, PLAN_OFF_NONE, 0);
    plan_evaluate(&s, &gpu, &c, &n, &r0);
    double off = r.mem.owned * r.mem.off_opt / r.mem.psi; /* owned elements whose state is offloaded */
    assert_true(r.mem.off_opt >= 0.6 * r.mem.psi - 0.5);
    /* host AdamW: owned f_o / (host_mem_bw_gbs / gpus_per_node / 28 B) */
    assert_true(fabs(r.t_host - off / (460e9 / 8 / 28)) < 1e-9 * r.t_host);
    /* transfers: max(H2D, D2H) / link, half hidden (well within the compute) */
    double raw = 2 * off / 55e9;
    assert_true(fabs(r.t_xfer - 0.5 * raw) < 1e-9);
    /* device AdamW over the rest only; the step adds both */
    assert_true(fabs(r.t_optim - r0.t_optim * (1 - r.mem.off_opt / r.mem.psi)) < 1e-9);
    assert_true(fabs((r.t_step - r0.t_step) - (r.t_xfer + r.t_host + r.t_optim - r0.t_optim)) < 1e-9);
    assert_true(r0.t_xfer == 0 && r0.t_host == 0);
    /* an explicit host rate wins */
    gpu.host_adamw_rate = 1e9;
    plan_evaluate(&s, &gpu, &c, &l, &r);
    assert_true(fabs(r.t_host - off / 1e9) < 1e-9);
    /* ZeRO-3 at dp 8: less memory than ZeRO-2, and it fits */
    plan_shape b = llama7b();
    plan_layout z2 = {8, 1, 1, 1, 0, 2, 1, 1, PLAN_OFF_NONE, 0, 0, 2}, z3 = z2;
    z3.zero = 3;
    plan_result a2, a3;
    plan_evaluate(&b, &gpu, &c, &z2, &a2);
    plan_evaluate(&b, &gpu, &c, &z3, &a3);
    assert_true(a3.mem.total < a2.mem.total && a3.fits);
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
    /* the offload keys are optional (0 = not given) */
    assert_true(c.host_mem_gib == 0 && c.link_gbs == 0 && c.host_adamw_rate == 0 && c.host_mem_bw_gbs == 0);
    c = cluster(H100_HOST);
    assert_true(c.host_mem_gib == 2048 && c.link_gbs == 55 && c.host_mem_bw_gbs == 460 && c.dev_limit == 0);
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
    snprintf(buf, sizeof buf, "%slink_gbs = -1\n", H100);
    bad_cluster(buf, "cluster.link_gbs = '-1'");
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
        cmocka_unit_test(test_offload_memory), cmocka_unit_test(test_offload_fit),
        cmocka_unit_test(test_offload_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
