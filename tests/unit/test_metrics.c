/* test_metrics.c — analytic FLOPs, CPU peak, the GPU peak table and the MFU
 * denominator, PAPI counters, JSONL log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "deck.h"
#include "device.h"
#include "cpu_peak.h"
#include "jsonl.h"
#include "mfu.h"
#include "papi_counters.h"
#include "papi_lib.h"
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <papi.h>
#include <sde_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* Runs papi_start with fd 1 redirected to a file, so the rank-0 messages
 * can be checked. Returns the handle; the output goes into out. */
static lm_papi *papi_start_captured(const char *events, char *out, size_t outlen) {
    char tmpl[] = "/tmp/lamina_papi_out_XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    lm_papi *p = papi_start(events);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    return p;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static char *make_tmpdir(void) {
    static char dir[64];
    strcpy(dir, "/tmp/lamina_metrics_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

/* ---- FLOPs per token ---- */

/* llama2-7b: dim 4096, 32 layers, 32 heads (n_kv_heads = n_heads), ffn
 * 11008, vocab 32000, untied. Per layer: q,k,v,o 4*4096^2 = 67108864,
 * w1,w2,w3 3*4096*11008 = 135266304, two norms 8192 -> 202383360; x32 =
 * 6476267520; + final norm 4096 + lm_head 32000*4096 = 131072000 ->
 * N = 6607343616 (the 6738415616 total minus the 131072000 embedding).
 * seq 4096: 6N = 39644061696, 12*32*4096*4096 = 6442450944,
 * sum 46086512640. seq 2048: 39644061696 + 3221225472 = 42865287168. */
static void test_flops_llama2_7b(void **state) {
    (void)state;
    const int64_t dim = 4096, L = 32, ffn = 11008, vocab = 32000;
    int64_t per_layer = 4 * dim * dim + 3 * dim * ffn + 2 * dim;
    int64_t n = L * per_layer + dim + vocab * dim;
    assert_int_equal(per_layer, 202383360);
    assert_int_equal(n, 6607343616LL);
    assert_int_equal(n + vocab * dim, 6738415616LL); /* published 7B count */
    assert_true(metrics_flops_per_token(n, 32, 4096, 4096) == 46086512640.0);
    assert_true(metrics_flops_per_token(n, 32, 4096, 2048) == 42865287168.0);
    /* attention term alone, and linearity in N */
    assert_true(metrics_flops_per_token(0, 32, 4096, 4096) == 6442450944.0);
    assert_true(metrics_flops_per_token(1000, 0, 4096, 4096) == 6000.0);
}

/* ---- CPU peak ---- */

static void test_cpu_peak(void **state) {
    (void)state;
    char d1[256] = "", d2[256] = "", d8[256] = "";
    double p1 = metrics_cpu_peak_flops(1, d1, sizeof d1);
    double p2 = metrics_cpu_peak_flops(2, d2, sizeof d2);
    double p8 = metrics_cpu_peak_flops(8, d8, sizeof d8);
    assert_true(p1 > 0.0 && isfinite(p1));
    /* FLOP/s, not TFLOP/s or GFLOP/s: one core is somewhere in 1e9..1e12 */
    assert_true(p1 >= 1e9 && p1 <= 1e12);
    assert_true(fabs(p2 - 2 * p1) <= 1e-9 * p2);
    assert_true(fabs(p8 - 8 * p1) <= 1e-9 * p8);
    assert_true(strlen(d1) > 0 && strlen(d2) > 0);
    assert_non_null(strstr(d2, "2 threads"));
    assert_non_null(strstr(d1, "1 thread"));
    assert_non_null(strstr(d2, "GHz"));
    assert_non_null(strstr(d2, "FLOP/cycle"));
    /* the description's numbers multiply out to the returned peak */
    int th = 0, fpc = 0;
    double ghz = 0;
    const char *x = strstr(d2, " x ");
    assert_int_equal(sscanf(d2, "%d", &th), 1);
    assert_int_equal(sscanf(x, " x %lf", &ghz), 1);
    const char *fp = strstr(d2, "FLOP/cycle");
    while (fp > d2 && fp[-1] == ' ') fp--;
    while (fp > d2 && fp[-1] >= '0' && fp[-1] <= '9') fp--;
    fpc = atoi(fp);
    assert_int_equal(th, 2);
    assert_true(fpc == 8 || fpc == 16 || fpc == 32 || fpc == 64);
    assert_true(fabs(th * ghz * 1e9 * fpc - p2) <= 1e-3 * p2); /* GHz printed to 3 decimals */
    /* the FLOP/cycle follows the vector unit */
    __builtin_cpu_init();
    int want = __builtin_cpu_supports("avx512f") ? 64
             : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 32
             : __builtin_cpu_supports("avx") ? 16 : 8;
    assert_int_equal(fpc, want);
    if (want == 64) assert_non_null(strstr(d2, "assumed"));
    /* a tiny buffer is not overrun and a NULL one is allowed */
    char tiny[4] = "zzz";
    assert_true(metrics_cpu_peak_flops(2, tiny, 3) == p2);
    assert_int_equal(tiny[2], '\0');
    assert_int_equal(tiny[3], '\0');
    assert_true(metrics_cpu_peak_flops(2, NULL, 0) == p2);
}

/* ---- GPU peak table ---- */

/* CUDA device names (cudaDeviceProp.name) to dense peaks; the board's form
 * from "PCIe"/"NVL" in the name; whole-word model matches only. */
static void test_gpu_peaks(void **state) {
    (void)state;
    static const struct {
        const char *name, *part;
        lm_peak_prec prec;
        double tflops;
    } cases[] = {
        {"NVIDIA A100-SXM4-40GB", "A100 SXM4", LM_PEAK_BF16, 312},
        {"NVIDIA A100-SXM4-80GB", "A100 SXM4", LM_PEAK_TF32, 156},
        {"NVIDIA A100-PCIE-40GB", "A100 PCIe", LM_PEAK_FP16, 312},
        {"NVIDIA A100 80GB PCIe", "A100 PCIe", LM_PEAK_FP32, 19.5},
        {"NVIDIA A800-SXM4-80GB", "A800 SXM4", LM_PEAK_BF16, 312},
        {"NVIDIA A800 80GB PCIe", "A800 PCIe", LM_PEAK_BF16, 312},
        {"NVIDIA H100 80GB HBM3", "H100 SXM", LM_PEAK_BF16, 989.5},
        {"NVIDIA H100 80GB HBM3", "H100 SXM", LM_PEAK_TF32, 494.5},
        {"NVIDIA H100 80GB HBM3", "H100 SXM", LM_PEAK_FP32, 67},
        {"NVIDIA H100 PCIe", "H100 PCIe", LM_PEAK_BF16, 756.5},
        {"NVIDIA H100 PCIe", "H100 PCIe", LM_PEAK_TF32, 378},
        {"NVIDIA H100 NVL", "H100 NVL", LM_PEAK_BF16, 835.5},
        {"NVIDIA H800", "H800 SXM", LM_PEAK_BF16, 989.5},
        {"NVIDIA H800 PCIe", "H800 PCIe", LM_PEAK_BF16, 756.5},
        {"NVIDIA H200", "H200 SXM", LM_PEAK_BF16, 989.5},
        {"NVIDIA H200 NVL", "H200 NVL", LM_PEAK_FP16, 835.5},
        {"NVIDIA GH200 480GB", "GH200", LM_PEAK_BF16, 989.5},
        {"NVIDIA L40S", "L40S", LM_PEAK_BF16, 362.05},
        {"NVIDIA L40S", "L40S", LM_PEAK_FP32, 91.6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char desc[256] = "";
        double p = mfu_gpu_peak_flops(cases[i].name, cases[i].prec, 0, desc, sizeof desc);
        if (fabs(p - cases[i].tflops * 1e12) > 1e-9 * p) fail_msg("%s: %g, want %g TFLOP/s", cases[i].name, p / 1e12, cases[i].tflops);
        assert_true(strncmp(desc, cases[i].part, strlen(cases[i].part)) == 0);
        assert_non_null(strstr(desc, cases[i].name));
        assert_non_null(strstr(desc, "dense"));
    }
    /* not in the table: 0, and said so */
    const char *unknown[] = {"NVIDIA L40", "NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB", "NVIDIA H1000", "",
                             "NVIDIA XH100"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        char desc[256] = "";
        assert_true(mfu_gpu_peak_flops(unknown[i], LM_PEAK_BF16, 0, desc, sizeof desc) == 0.0);
        assert_non_null(strstr(desc, "not in the peak table"));
    }
    assert_true(mfu_gpu_peak_flops(NULL, LM_PEAK_BF16, 0, NULL, 0) == 0.0);
    assert_true(mfu_gpu_peak_flops("NVIDIA H100 PCIe", LM_PEAK_N, 0, NULL, 0) == 0.0);
    /* scaled by the GPU's peak SM clock against the boost clock */
    char desc[256];
    assert_true(mfu_gpu_peak_flops("NVIDIA H100 80GB HBM3", LM_PEAK_BF16, 1980, desc, sizeof desc) == 989.5e12);
    assert_non_null(strstr(desc, "dense bf16 989.5 TFLOP/s at 1980 MHz, scaled to this GPU's peak SM clock 1980 MHz"));
    assert_true(fabs(mfu_gpu_peak_flops("NVIDIA H100 80GB HBM3", LM_PEAK_BF16, 990, NULL, 0) - 989.5e12 / 2) < 1e3);
    assert_true(fabs(mfu_gpu_peak_flops("NVIDIA A100-SXM4-80GB", LM_PEAK_BF16, 1275, NULL, 0) - 312e12 * 1275 / 1410) < 1e3);
    /* a tiny buffer is not overrun */
    char tiny[8] = "zzzzzzz";
    assert_true(mfu_gpu_peak_flops("NVIDIA L40S", LM_PEAK_BF16, 2520, tiny, 5) == 362.05e12);
    assert_int_equal(tiny[4], '\0');
    assert_int_equal(tiny[5], 'z');
}

/* The MFU denominator: log.peak_tflops wins; a CPU device takes the CPU's
 * peak; a GPU device that the CUDA runtime cannot name (no GPU here, or no
 * CUDA in this build) gets 0 and the hint to set log.peak_tflops. */
static void test_mfu_peak_choice(void **state) {
    (void)state;
    lm_config c;
    memset(&c, 0, sizeof c);
    lm_device cpu = {.name = "cpu", .dtype = LM_F32, .host_visible = 1};
    lm_device gpu = {.name = "cuda", .dtype = LM_BF16, .host_visible = 0};
    char d[512], want[512];
    c.peak_tflops = 123.5;
    assert_true(mfu_peak_flops(&c, &gpu, 4, d, sizeof d) == 123.5e12);
    assert_string_equal(d, "log.peak_tflops = 123.5");
    assert_true(mfu_peak_flops(&c, &cpu, 4, d, sizeof d) == 123.5e12);
    c.peak_tflops = 0;
    double p = mfu_peak_flops(&c, &cpu, 3, d, sizeof d);
    assert_true(p == metrics_cpu_peak_flops(3, want, sizeof want));
    assert_string_equal(d, want);
    assert_true(mfu_peak_flops(&c, &gpu, 3, d, sizeof d) == 0.0);
    assert_non_null(strstr(d, "MFU needs log.peak_tflops"));
    assert_non_null(strstr(d, "bf16"));
}

/* ---- PAPI ---- */

static void test_papi_default_list(void **state) {
    (void)state;
    char out[4096];
    lm_papi *p = papi_start_captured("PAPI_TOT_CYC,PAPI_TOT_INS", out, sizeof out);
    assert_non_null(p);
    int n = papi_n_events(p);
    assert_true(n >= 0 && n <= 2);
    for (int i = 0; i < n; i++) {
        const char *nm = papi_event_name(p, i);
        assert_non_null(nm);
        assert_true(strcmp(nm, "PAPI_TOT_CYC") == 0 || strcmp(nm, "PAPI_TOT_INS") == 0);
    }
    assert_null(papi_event_name(p, n));
    assert_null(papi_event_name(p, -1));
    if (n == 2) {
        assert_string_equal(out, "");
    } else {
        /* one line, naming exactly the dropped events */
        assert_true(count_lines(out) == 1);
        assert_true(strncmp(out, "PAPI: ", 6) == 0);
        if (!strstr(out, "unavailable")) {
            assert_non_null(strstr(out, "not available on this machine: "));
            int has_cyc = 0, has_ins = 0;
            for (int i = 0; i < n; i++) {
                has_cyc |= strcmp(papi_event_name(p, i), "PAPI_TOT_CYC") == 0;
                has_ins |= strcmp(papi_event_name(p, i), "PAPI_TOT_INS") == 0;
            }
            assert_int_equal(strstr(out, "PAPI_TOT_CYC") != NULL, !has_cyc);
            assert_int_equal(strstr(out, "PAPI_TOT_INS") != NULL, !has_ins);
        } else {
            assert_int_equal(n, 0);
        }
    }
    long long v[2] = {-1, -1};
    papi_read_delta(p, v);
    for (int i = 0; i < n; i++) assert_true(v[i] >= 0);
    papi_stop(p);
}

static void test_papi_bogus_and_empty(void **state) {
    (void)state;
    char out[4096];
    /* an event no machine has is dropped and named in the one line */
    lm_papi *p = papi_start_captured(" NO_SUCH_EVENT_XYZ , ALSO_NOT_AN_EVENT", out, sizeof out);
    assert_int_equal(papi_n_events(p), 0);
    if (PAPI_is_initialized() != PAPI_NOT_INITED)  /* else reported once, earlier */
        assert_string_equal(out, "PAPI: not available on this machine: NO_SUCH_EVENT_XYZ, ALSO_NOT_AN_EVENT\n");
    papi_read_delta(p, NULL); /* nothing counted: vals untouched */
    papi_stop(p);
    /* empty list: nothing counted, nothing said */
    p = papi_start_captured("", out, sizeof out);
    assert_int_equal(papi_n_events(p), 0);
    assert_string_equal(out, "");
    papi_stop(p);
    p = papi_start_captured(" , ", out, sizeof out);
    assert_int_equal(papi_n_events(p), 0);
    assert_string_equal(out, "");
    papi_stop(p);
    papi_stop(NULL);
    assert_int_equal(papi_n_events(NULL), 0);
}

static volatile double g_sink;
static void busy(double seconds) {
    double t0 = lm_now(), acc = 0;
    while (lm_now() - t0 < seconds)
        for (int i = 0; i < 10000; i++) acc += 1e-9 * i;
    g_sink = acc;
}

static void test_papi_task_clock(void **state) {
    (void)state;
    char out[4096];
    lm_papi *p = papi_start_captured("perf::TASK-CLOCK,NO_SUCH_EVENT_XYZ", out, sizeof out);
    if (papi_n_events(p) == 0) {
        /* no skip(): cmocka's TAP writes "not ok # SKIP", which prove fails */
        print_message("# perf::TASK-CLOCK unavailable here, not checked: %s", out);
        papi_stop(p);
        return;
    }
    assert_int_equal(papi_n_events(p), 1);
    assert_string_equal(papi_event_name(p, 0), "perf::TASK-CLOCK");
    assert_string_equal(out, "PAPI: not available on this machine: NO_SUCH_EVENT_XYZ\n");
    long long v = -1;
    papi_read_delta(p, &v);                /* drop the start-up time */
    busy(0.10);
    papi_read_delta(p, &v);
    /* TASK-CLOCK counts ns of CPU time: ~1e8 for the 0.1 s loop */
    assert_true(v > 30000000LL);
    assert_true(v < 2000000000LL);
    long long w = -1;
    papi_read_delta(p, &w);                /* right after: a delta, not a total */
    assert_true(w >= 0 && w < v / 2);
    papi_stop(p);
}

/* The counting path (PAPI_start, read-and-reset) on any machine: a
 * software-defined counter registered by the test itself, read through
 * papi_start like any other named event. */
static long long g_sde_count;
static void test_papi_sde_counts(void **state) {
    (void)state;
    papi_handle_t h = papi_sde_init("LMTEST");
    assert_non_null(h);
    assert_int_equal(papi_sde_register_counter(h, "COUNT", PAPI_SDE_RO | PAPI_SDE_DELTA,
                                               PAPI_SDE_long_long, &g_sde_count), 0);
    char out[4096];
    lm_papi *p = papi_start_captured("sde:::LMTEST::COUNT", out, sizeof out);
    if (PAPI_is_initialized() == PAPI_NOT_INITED) {  /* library itself unavailable */
        assert_int_equal(papi_n_events(p), 0);
        papi_stop(p);
        papi_sde_shutdown(h);
        return;
    }
    assert_string_equal(out, "");
    assert_int_equal(papi_n_events(p), 1);
    assert_string_equal(papi_event_name(p, 0), "sde:::LMTEST::COUNT");
    long long v = -1;
    g_sde_count += 5;
    papi_read_delta(p, &v);
    assert_true(v == 5);
    g_sde_count += 1000;
    papi_read_delta(p, &v);
    assert_true(v == 1000);                 /* a delta, not the running total */
    papi_read_delta(p, &v);
    assert_true(v == 0);
    papi_stop(p);
    papi_sde_shutdown(h);
}

static void test_papi_version(void **state) {
    (void)state;
    const char *v = papi_version_string();
    assert_non_null(v);
    int a = -1, b = -1, c = -1;
    assert_int_equal(sscanf(v, "%d.%d.%d", &a, &b, &c), 3);
    assert_int_equal(a, PAPI_VERSION_MAJOR(PAPI_VERSION));
    assert_int_equal(b, PAPI_VERSION_MINOR(PAPI_VERSION));
    assert_int_equal(c, PAPI_VERSION_REVISION(PAPI_VERSION));
}

/* ---- JSONL ---- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void check_real(json_t *o, const char *k, double want) {
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    assert_true(json_is_real(v) || json_is_integer(v));
    assert_true(json_number_value(v) == want);
}

static void check_int(json_t *o, const char *k, long long want) {
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    assert_true(json_integer_value(v) == want);
}

static void test_jsonl(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    char err[LM_ERRLEN] = "";
    lm_metrics_log *m = metrics_open(path, err, sizeof err);
    assert_non_null(m);
    const char *names[2] = {"perf::TASK-CLOCK", "PAPI_TOT_INS"};
    long long vals[2] = {123456789012LL, 42};
    lm_step_metrics s = {.step = 1, .loss = 10.375, .lr = 3e-4, .grad_norm = 1.5, .tokens = 4096,
                         .tokens_per_s = 2048.25, .tflops = 0.0625, .mfu = 0.4, .step_ms = 2000.5, .comm_ms = 12.25,
                         .mem_bytes = (size_t)5000000000ULL, .mem_device_peak = 6e9, .mem_host_peak = 7e9,
                         .h2d_bytes = 123456, .d2h_bytes = 654321, .n_papi = 0};
    metrics_write(m, &s);
    s.step = 2; s.loss = NAN; s.grad_norm = INFINITY; s.tokens = 8192;
    s.n_papi = 2; s.papi_names = names; s.papi_vals = vals;
    metrics_write(m, &s);
    s.step = 3; s.loss = 9.0; s.grad_norm = -INFINITY; s.tokens = 12288; s.mfu = 0.1 + 0.2;
    s.n_papi = 1;
    metrics_write(m, &s);
    /* flushed after each line: readable before close */
    char *txt = slurp(path);
    assert_non_null(txt);
    assert_int_equal(count_lines(txt), 3);
    metrics_close(m);

    txt = slurp(path);
    assert_int_equal(count_lines(txt), 3);
    assert_null(strstr(txt, " "));        /* compact */
    assert_null(strstr(txt, "NaN"));
    assert_null(strstr(txt, "nan"));
    assert_null(strstr(txt, "inf"));
    const char *keys[] = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s",
                          "tflops", "mfu", "step_ms", "comm_ms", "mem_bytes", "mem_device_peak", "mem_host_peak",
                          "h2d_bytes", "d2h_bytes"};
    char *line = txt;
    for (int r = 0; r < 3; r++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        assert_true(json_is_object(o));
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) assert_non_null(json_object_get(o, keys[k]));
        check_int(o, "step", r + 1);
        check_int(o, "tokens", 4096 * (r + 1));
        check_int(o, "mem_bytes", 5000000000LL);
        check_int(o, "mem_device_peak", 6000000000LL);
        check_int(o, "mem_host_peak", 7000000000LL);
        check_int(o, "h2d_bytes", 123456);
        check_int(o, "d2h_bytes", 654321);
        check_real(o, "lr", 3e-4);
        check_real(o, "tokens_per_s", 2048.25);
        check_real(o, "tflops", 0.0625);
        check_real(o, "step_ms", 2000.5);
        check_real(o, "comm_ms", 12.25);
        json_t *papi = json_object_get(o, "papi");
        if (r == 0) {
            check_real(o, "loss", 10.375);
            check_real(o, "grad_norm", 1.5);
            check_real(o, "mfu", 0.4);
            assert_null(papi);
            assert_int_equal(json_object_size(o), 15);
        } else if (r == 1) {
            assert_true(json_is_null(json_object_get(o, "loss")));
            assert_true(json_is_null(json_object_get(o, "grad_norm")));
            assert_non_null(papi);
            assert_int_equal(json_object_size(papi), 2);
            check_int(papi, "perf::TASK-CLOCK", 123456789012LL);
            check_int(papi, "PAPI_TOT_INS", 42);
            assert_int_equal(json_object_size(o), 16);
        } else {
            check_real(o, "loss", 9.0);
            assert_true(json_is_null(json_object_get(o, "grad_norm")));
            check_real(o, "mfu", 0.1 + 0.2);   /* round-trips exactly */
            assert_non_null(papi);
            assert_int_equal(json_object_size(papi), 1);
            check_int(papi, "perf::TASK-CLOCK", 123456789012LL);
        }
        json_decref(o);
        line = nl + 1;
    }

    /* append mode: reopening keeps the old lines */
    m = metrics_open(path, err, sizeof err);
    assert_non_null(m);
    s.step = 4; s.n_papi = 0;
    metrics_write(m, &s);
    metrics_close(m);
    txt = slurp(path);
    assert_int_equal(count_lines(txt), 4);
    assert_non_null(strstr(txt, "{\"step\":4,"));
    assert_non_null(strstr(txt, "{\"step\":1,"));
    unlink(path);
    rmdir(dir);
}

static void test_jsonl_none_and_errors(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    char err[LM_ERRLEN] = "";
    /* "" = a valid handle that writes nothing */
    lm_metrics_log *m = metrics_open("", err, sizeof err);
    assert_non_null(m);
    lm_step_metrics s = {.step = 1, .loss = 1.0};
    metrics_write(m, &s);
    metrics_close(m);
    metrics_close(NULL);
    metrics_write(NULL, &s);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0);     /* fails if anything was written there */

    /* missing directory */
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/m.jsonl", dir);
    err[0] = '\0';
    assert_null(metrics_open(path, err, sizeof err));
    assert_non_null(strstr(err, "log.metrics"));
    assert_non_null(strstr(err, path));
    /* unwritable: parent is a regular file (root ignores permission bits) */
    dir = make_tmpdir();
    char file[256];
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/m.jsonl", file);
    err[0] = '\0';
    assert_null(metrics_open(path, err, sizeof err));
    assert_non_null(strstr(err, "log.metrics"));
    assert_non_null(strstr(err, path));
    unlink(file);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flops_llama2_7b),
        cmocka_unit_test(test_cpu_peak),
        cmocka_unit_test(test_gpu_peaks),
        cmocka_unit_test(test_mfu_peak_choice),
        cmocka_unit_test(test_papi_default_list),
        cmocka_unit_test(test_papi_bogus_and_empty),
        cmocka_unit_test(test_papi_task_clock),
        cmocka_unit_test(test_papi_sde_counts),
        cmocka_unit_test(test_papi_version),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_none_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
