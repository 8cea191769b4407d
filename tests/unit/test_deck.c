/* test_deck.c — the input deck parser (src/core/deck.c, SPEC §2): defaults,
 * presets, override precedence, every error class, long lines and comments,
 * deck_to_text round trips, the decks in inputs/, and a mutation fuzz loop
 * (run it under ASan via build/san/tests/test_deck). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "deck.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A minimal valid deck: the required keys only. Line numbers matter to the
 * error tests: text appended after it starts at line 15. */
static const char *BASE_LINES[] = {
    "[model]",        "dim = 64",         "n_layers = 2",     "n_heads = 4",      "ffn_dim = 176",
    "vocab_size = 258", "[train]",        "steps = 10",       "seq_len = 32",     "micro_batch = 2",
    "global_batch = 4", "lr = 0.001",     "[data]",           "train = d.h5",
};
#define NBASE (int)(sizeof BASE_LINES / sizeof BASE_LINES[0])

/* BASE without the line whose key is `drop` (NULL: none), then `extra`. */
static char *base_text(const char *drop, const char *extra) {
    size_t n = strlen(extra ? extra : "") + 1;
    for (int i = 0; i < NBASE; i++) n += strlen(BASE_LINES[i]) + 1;
    char *t = malloc(n);
    t[0] = 0;
    for (int i = 0; i < NBASE; i++) {
        size_t kl = drop ? strlen(drop) : 0;
        if (drop && !strncmp(BASE_LINES[i], drop, kl) && BASE_LINES[i][kl] == ' ') continue;
        strcat(t, BASE_LINES[i]);
        strcat(t, "\n");
    }
    if (extra) strcat(t, extra);
    return t;
}

static int load1(lm_config *c, const char *text, const char *ov, char *err) {
    char *ovs[1] = {(char *)ov};
    return deck_load_string(c, text, "t.in", ov ? 1 : 0, ovs, err, LM_ERRLEN);
}

/* Field-by-field equality of two configs (every key of SPEC §2), then the
 * whole struct (deck_defaults zeroes it, so padding compares equal too). */
static void assert_cfg_eq(const lm_config *a, const lm_config *b) {
#define S(f) assert_string_equal(a->f, b->f)
#define I(f) assert_int_equal(a->f, b->f)
#define D(f) assert_memory_equal(&a->f, &b->f, sizeof(double))
    S(preset); I(dim); I(n_layers); I(n_heads); I(n_kv_heads); I(ffn_dim); I(vocab_size); I(max_seq_len);
    D(norm_eps); D(rope_theta); I(tie_embeddings);
    I(tp); I(pp); I(dp); I(zero); I(overlap_comm); I(sp); S(schedule); I(virtual_stages); S(stage_layers); S(offload);
    S(device); I(seed); I(steps); I(seq_len); I(micro_batch); I(global_batch); D(lr); D(min_lr);
    I(warmup_steps); S(lr_schedule); D(weight_decay); D(beta1); D(beta2); D(eps); D(grad_clip);
    I(recompute); S(init); D(init_std); D(max_minutes); I(eval_every); I(eval_batches);
    S(train_files); S(valid_files); I(shuffle);
    S(ckpt_dir); I(ckpt_every); I(ckpt_keep); S(restart);
    I(log_every); S(metrics); D(peak_tflops); S(papi_events); I(kernel_timers);
    I(n_stages);
    for (int i = 0; i < a->n_stages; i++) {
        I(stage[i].steps); S(stage[i].train_files); S(stage[i].valid_files); D(stage[i].lr); D(stage[i].min_lr);
        I(stage[i].warmup_steps); S(stage[i].lr_schedule); S(stage[i].trainable); I(stage[i].reset_optimizer);
    }
#undef S
#undef I
#undef D
    assert_memory_equal(a, b, sizeof *a);
}

/* deck_to_text, then parse that text back: must give the same config. */
static void assert_round_trip(const lm_config *c) {
    size_t need = deck_to_text(c, NULL, 0);
    char *t = malloc(need + 1);
    assert_int_equal(deck_to_text(c, t, need + 1), need);
    assert_int_equal(strlen(t), need);
    lm_config back;
    char err[LM_ERRLEN];
    int rc = deck_load_string(&back, t, "resolved", 0, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "round trip failed: %s\n--\n%s--\n", err, t);
    assert_int_equal(rc, 0);
    assert_cfg_eq(c, &back);
    /* and the text is a fixed point */
    char *t2 = malloc(need + 1);
    deck_to_text(&back, t2, need + 1);
    assert_string_equal(t, t2);
    free(t);
    free(t2);
}

static void test_defaults(void **state) {
    (void)state;
    lm_config c;
    memset(&c, 0x5a, sizeof c);
    deck_defaults(&c);
    assert_string_equal(c.preset, "");
    assert_int_equal(c.max_seq_len, 2048);
    assert_true(c.norm_eps == 1e-5 && c.rope_theta == 10000.0);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.tp, 1);
    assert_int_equal(c.pp, 1);
    assert_int_equal(c.dp, 0);
    assert_int_equal(c.zero, 0);
    assert_string_equal(c.schedule, "1f1b");
    assert_int_equal(c.virtual_stages, 1);
    assert_string_equal(c.offload, "none");
    assert_string_equal(c.device, "cpu");
    assert_int_equal(c.seed, 1234);
    assert_true(c.min_lr == 0 && c.weight_decay == 0 && c.beta1 == 0.9 && c.beta2 == 0.95 && c.eps == 1e-8 &&
                c.grad_clip == 1.0 && c.init_std == 0.02 && c.peak_tflops == 0);
    assert_int_equal(c.warmup_steps, 0);
    assert_string_equal(c.lr_schedule, "cosine");
    assert_int_equal(c.recompute, 0);
    assert_string_equal(c.init, "random");
    assert_int_equal(c.shuffle, 1);
    assert_string_equal(c.ckpt_dir, "ckpt");
    assert_int_equal(c.ckpt_every, 0);
    assert_int_equal(c.ckpt_keep, 2);
    assert_string_equal(c.restart, "auto");
    assert_int_equal(c.log_every, 1);
    assert_string_equal(c.metrics, "metrics.jsonl");
    assert_string_equal(c.papi_events, "PAPI_TOT_CYC,PAPI_TOT_INS");
    /* required keys are left empty */
    assert_int_equal(c.dim, 0);
    assert_int_equal(c.steps, 0);
    assert_string_equal(c.train_files, "");
}

static void test_minimal_deck(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    char *t = base_text(NULL, NULL);
    assert_int_equal(load1(&c, t, NULL, err), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.dim, 64);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 4); /* defaults to n_heads */
    assert_int_equal(c.ffn_dim, 176);
    assert_int_equal(c.vocab_size, 258);
    assert_int_equal(c.steps, 10);
    assert_int_equal(c.seq_len, 32);
    assert_int_equal(c.micro_batch, 2);
    assert_int_equal(c.global_batch, 4);
    assert_true(c.lr == 0.001);
    assert_string_equal(c.train_files, "d.h5");
    /* everything else is the default */
    lm_config d;
    deck_defaults(&d);
    assert_int_equal(c.max_seq_len, d.max_seq_len);
    assert_string_equal(c.lr_schedule, d.lr_schedule);
    assert_string_equal(c.restart, d.restart);
    assert_round_trip(&c);
    free(t);
}

static const char *TRAIN_KEYS =
    "[train]\nsteps = 10\nseq_len = 32\nmicro_batch = 2\nglobal_batch = 4\nlr = 0.001\n[data]\ntrain = d.h5\n";

static void test_presets(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int dim, nl, nh, nkv, ffn, vocab, maxseq;
    } P[] = {
        {"tiny", 64, 2, 4, 2, 176, 258, 256},
        {"llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096},
        {"llama2-13b", 5120, 40, 40, 40, 13824, 32000, 4096},
        {"llama2-70b", 8192, 80, 64, 8, 28672, 32000, 4096},
    };
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
        char text[1024], err[LM_ERRLEN];
        snprintf(text, sizeof text, "[model]\npreset = %s\n%s", P[i].name, TRAIN_KEYS);
        lm_config c;
        assert_int_equal(load1(&c, text, NULL, err), 0);
        assert_string_equal(c.preset, P[i].name);
        assert_int_equal(c.dim, P[i].dim);
        assert_int_equal(c.n_layers, P[i].nl);
        assert_int_equal(c.n_heads, P[i].nh);
        assert_int_equal(c.n_kv_heads, P[i].nkv);
        assert_int_equal(c.ffn_dim, P[i].ffn);
        assert_int_equal(c.vocab_size, P[i].vocab);
        assert_int_equal(c.max_seq_len, P[i].maxseq);
        assert_true(c.norm_eps == 1e-5 && c.rope_theta == 10000.0);
        assert_int_equal(c.tie_embeddings, 0);
        assert_round_trip(&c);
        /* deck_apply_preset directly */
        lm_config d;
        deck_defaults(&d);
        assert_int_equal(deck_apply_preset(&d, P[i].name, err, sizeof err), 0);
        assert_int_equal(d.dim, P[i].dim);
        assert_int_equal(d.n_kv_heads, P[i].nkv);
        assert_string_equal(d.preset, P[i].name);
    }
    lm_config d;
    char err[LM_ERRLEN] = "";
    deck_defaults(&d);
    assert_int_equal(deck_apply_preset(&d, "llama3-8b", err, sizeof err), 2);
    assert_non_null(strstr(err, "model.preset"));
    assert_non_null(strstr(err, "llama3-8b"));
    assert_non_null(strstr(err, "tiny"));
    assert_non_null(strstr(err, "llama2-70b"));
}

static void test_override_precedence(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN], text[2048];
    /* an explicit key before the preset line still wins */
    snprintf(text, sizeof text, "[model]\ndim = 128\npreset = tiny\n%s", TRAIN_KEYS);
    assert_int_equal(load1(&c, text, NULL, err), 0);
    assert_int_equal(c.dim, 128);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_kv_heads, 2);
    assert_round_trip(&c);
    /* a preset from the command line does not beat explicit file keys */
    snprintf(text, sizeof text, "[model]\ndim = 128\n%s", TRAIN_KEYS);
    assert_int_equal(load1(&c, text, "model.preset=llama2-7b", err), 0);
    assert_int_equal(c.dim, 128);
    assert_int_equal(c.n_layers, 32);
    assert_string_equal(c.preset, "llama2-7b");
    assert_round_trip(&c);
    /* an override preset replaces the file's preset */
    snprintf(text, sizeof text, "[model]\npreset = llama2-7b\n%s", TRAIN_KEYS);
    assert_int_equal(load1(&c, text, "model.preset=tiny", err), 0);
    assert_int_equal(c.dim, 64);
    assert_string_equal(c.preset, "tiny");
    /* explicit n_heads over a preset keeps the preset's n_kv_heads */
    snprintf(text, sizeof text, "[model]\npreset = tiny\nn_heads = 8\n%s", TRAIN_KEYS);
    assert_int_equal(load1(&c, text, NULL, err), 0);
    assert_int_equal(c.n_heads, 8);
    assert_int_equal(c.n_kv_heads, 2);
    /* override beats file; later overrides beat earlier ones */
    char *t = base_text(NULL, NULL);
    char *ovs[] = {"train.steps=7", "model.dim=128", "train.steps = 9 ", "log.metrics="};
    assert_int_equal(deck_load_string(&c, t, "t.in", 4, ovs, err, sizeof err), 0);
    assert_int_equal(c.steps, 9);
    assert_int_equal(c.dim, 128);
    assert_string_equal(c.metrics, "");
    assert_round_trip(&c);
    free(t);
    /* no file at all: overrides only */
    char *only[] = {"model.preset=tiny", "train.steps=3",        "train.seq_len=16", "train.micro_batch=1",
                    "train.global_batch=2", "train.lr=1e-3", "data.train=x.h5"};
    assert_int_equal(deck_load(&c, NULL, 7, only, err, sizeof err), 0);
    assert_int_equal(c.steps, 3);
    assert_int_equal(c.dim, 64);
    assert_int_equal(deck_load_string(&c, NULL, NULL, 7, only, err, sizeof err), 0);
    assert_int_equal(c.global_batch, 2);
}

typedef struct {
    const char *drop;  /* BASE line key to leave out */
    const char *extra; /* text appended to BASE (starts at line 15) */
    const char *ov;    /* one override */
    const char *want1, *want2;
} ecase;

static const ecase ERRORS[] = {
    /* structure */
    {NULL, "[bogus]\n", NULL, "unknown section [bogus]", "t.in:15"},
    {NULL, "[bogus]\nx = 1\n", NULL, "unknown section [bogus]", "t.in:15"},
    {NULL, "[model]\nfoo = 1\n", NULL, "unknown key model.foo", "t.in:16"},
    {NULL, "[train]\nseed = 1\n[model]\ndim = 64\n", NULL, "duplicate key model.dim", "t.in:18"},
    {NULL, "[train]\nno equals sign here\n", NULL, "syntax error", "t.in:16"},
    {NULL, "[train\n", NULL, "syntax error", "t.in:15"},
    /* malformed numbers */
    {NULL, "[parallel]\ntp = 2x\n", NULL, "parallel.tp = '2x': not an integer", "t.in:16"},
    {NULL, NULL, "model.dim=12x", "model.dim = '12x': not an integer", "override"},
    {NULL, NULL, "model.dim=1.5", "model.dim", "not an integer"},
    {NULL, NULL, "model.dim=", "model.dim", "not an integer"},
    {NULL, NULL, "model.dim=99999999999999999999", "model.dim", "out of range"},
    {NULL, NULL, "model.n_layers=3000000000", "model.n_layers", "out of range"},
    {NULL, NULL, "train.steps=99999999999999999999", "train.steps", "out of range"},
    {NULL, NULL, "train.lr=1e-3x", "train.lr", "not a number"},
    {NULL, NULL, "train.lr=nan", "train.lr", "finite"},
    {NULL, NULL, "train.lr=1e999", "train.lr", "finite"},
    {NULL, NULL, "train.seed=-1", "train.seed", "unsigned"},
    {NULL, NULL, "train.seed=18446744073709551616", "train.seed", "out of range"},
    {NULL, "[model]\ntie_embeddings = maybe\n", NULL, "model.tie_embeddings", "not a boolean"},
    {NULL, NULL, "data.shuffle=2", "data.shuffle", "not a boolean"},
    /* enums */
    {NULL, NULL, "parallel.schedule=gpipe", "parallel.schedule", "1f1b/interleaved"},
    {NULL, NULL, "parallel.offload=disk", "parallel.offload", "none/optim/param/auto"},
    {NULL, "[train]\ndevice = tpu\n", NULL, "train.device", "t.in:16"},
    {NULL, NULL, "train.lr_schedule=step", "train.lr_schedule", "constant/linear/cosine"},
    /* ranges */
    {NULL, NULL, "model.dim=0", "model.dim", ">= 1"},
    {NULL, NULL, "model.n_kv_heads=0", "model.n_kv_heads", ">= 1"},
    {NULL, NULL, "model.vocab_size=-3", "model.vocab_size", ">= 1"},
    {NULL, NULL, "model.max_seq_len=0", "model.max_seq_len", ">= 1"},
    {NULL, NULL, "model.norm_eps=0", "model.norm_eps", "> 0"},
    {NULL, NULL, "model.rope_theta=-1", "model.rope_theta", "> 0"},
    {NULL, NULL, "parallel.tp=0", "parallel.tp", ">= 1"},
    {NULL, NULL, "parallel.pp=0", "parallel.pp", ">= 1"},
    {NULL, NULL, "parallel.dp=0", "parallel.dp", "auto or an integer >= 1"},
    {NULL, NULL, "parallel.zero=4", "parallel.zero", "between 0 and 3"},
    {NULL, NULL, "parallel.zero=-1", "parallel.zero", "between 0 and 3"},
    {NULL, NULL, "parallel.virtual_stages=0", "parallel.virtual_stages", ">= 1"},
    {NULL, NULL, "train.steps=0", "train.steps", ">= 1"},
    {NULL, NULL, "train.seq_len=0", "train.seq_len", ">= 1"},
    {NULL, NULL, "train.micro_batch=0", "train.micro_batch", ">= 1"},
    {NULL, NULL, "train.global_batch=-4", "train.global_batch", ">= 1"},
    {NULL, NULL, "train.lr=0", "train.lr", "> 0"},
    {NULL, NULL, "train.min_lr=-1e-5", "train.min_lr", ">= 0"},
    {NULL, NULL, "train.warmup_steps=-1", "train.warmup_steps", ">= 0"},
    {NULL, NULL, "train.weight_decay=-0.1", "train.weight_decay", "[0, 10]"},
    {NULL, NULL, "train.weight_decay=1e30", "train.weight_decay", "[0, 10]"},
    {NULL, "[train]\nbeta1 = 1\n", NULL, "train.beta1", "[0, 1)"},
    {NULL, NULL, "train.beta2=-0.5", "train.beta2", "[0, 1)"},
    {NULL, NULL, "train.eps=0", "train.eps", "> 0"},
    {NULL, NULL, "train.grad_clip=-1", "train.grad_clip", ">= 0"},
    {NULL, NULL, "train.init_std=0", "train.init_std", "(0, 1]"},
    {NULL, NULL, "train.init_std=2", "train.init_std", "(0, 1]"},
    {NULL, NULL, "checkpoint.every=-1", "checkpoint.every", ">= 0"},
    {NULL, NULL, "checkpoint.keep=0", "checkpoint.keep", ">= 1"},
    {NULL, NULL, "log.every=0", "log.every", ">= 1"},
    {NULL, NULL, "log.peak_tflops=-1", "log.peak_tflops", ">= 0"},
    /* strings */
    {NULL, NULL, "data.train=", "data.train", "must not be empty"},
    {NULL, NULL, "checkpoint.dir=", "checkpoint.dir", "must not be empty"},
    {NULL, NULL, "checkpoint.restart=", "checkpoint.restart", "must not be empty"},
    {NULL, NULL, "train.init=", "train.init", "must not be empty"},
    {NULL, NULL, "log.metrics=a ;b", "log.metrics", "comment marker"},
    {NULL, NULL, "log.metrics=a\tb", "log.metrics", "control character"},
    {NULL, NULL, "model.preset=llama3", "model.preset", "tiny, llama2-7b"},
    {NULL, "[model]\npreset = gpt2\n", NULL, "model.preset", "t.in:16"},
    /* missing required keys */
    {"dim", NULL, NULL, "model.dim is required", "t.in"},
    {"n_layers", NULL, NULL, "model.n_layers is required", NULL},
    {"n_heads", NULL, NULL, "model.n_heads is required", NULL},
    {"ffn_dim", NULL, NULL, "model.ffn_dim is required", NULL},
    {"vocab_size", NULL, NULL, "model.vocab_size is required", NULL},
    {"steps", NULL, NULL, "train.steps is required", NULL},
    {"seq_len", NULL, NULL, "train.seq_len is required", NULL},
    {"micro_batch", NULL, NULL, "train.micro_batch is required", NULL},
    {"global_batch", NULL, NULL, "train.global_batch is required", NULL},
    {"lr", NULL, NULL, "train.lr is required", NULL},
    {"train", NULL, NULL, "data.train is required", NULL},
    /* consistency */
    {NULL, NULL, "model.n_kv_heads=3", "model.n_kv_heads", "override"},
    {NULL, "[model]\nn_kv_heads = 3\n", NULL, "model.n_kv_heads", "t.in:16"},
    {NULL, NULL, "model.dim=66", "model.dim", "multiple of model.n_heads"},
    {NULL, NULL, "model.dim=12", "model.dim", "even"},
    {NULL, NULL, "train.seq_len=4096", "train.seq_len", "model.max_seq_len"},
    {"seq_len", "[train]\nseq_len = 300\n[model]\npreset = tiny\n", NULL, "train.seq_len", "t.in:15"},
    {NULL, NULL, "train.global_batch=5", "train.global_batch", "multiple of train.micro_batch"},
    {NULL, NULL, "train.min_lr=0.01", "train.min_lr", "train.lr"},
    /* overrides */
    {NULL, NULL, "foo", "override 'foo': expected section.key=value", NULL},
    {NULL, NULL, "model.dim", "override 'model.dim': expected section.key=value", NULL},
    {NULL, NULL, "dim=64", "override 'dim=64': expected section.key=value", NULL},
    {NULL, NULL, "model.=64", "expected section.key=value", NULL},
    {NULL, NULL, "model.foo=1", "unknown key model.foo", "override"},
    {NULL, NULL, "bogus.dim=1", "unknown key bogus.dim", "override"},
    /* [stage.N] (BASE has train.steps = 10) */
    {NULL, "[stage.1]\nsteps = 4\n[stage.2]\nsteps = 5\n", NULL, "train.steps = 10 must equal the sum of the stages' "
     "steps (stage.1.steps + stage.2.steps = 9)", "t.in:8"},
    {"steps", "[stage.1]\nsteps = 4\n[stage.3]\nsteps = 5\n", NULL, "t.in:16: [stage.3] without [stage.2]", "gaps"},
    {"steps", "[stage.0]\nsteps = 4\n", NULL, "t.in:14: section [stage.0]", "[stage.1], [stage.2]"},
    {"steps", "[stage.1]\nsteps = 4\n[stage.02]\nsteps = 5\n", NULL, "t.in:16: section [stage.02]", "leading zeros"},
    {"steps", "[stage.17]\nsteps = 4\n", NULL, "section [stage.17]: at most 16 [stage.N] sections", "t.in:14"},
    {"steps", "[stage.1]\nsteps = 4\n[stage.2]\n; nothing\n", NULL, "t.in:16: [stage.2] has no steps",
     "stage.2.steps is required"},
    {"steps", "[stage.1]\nlr = 0.1\n", NULL, "t.in:14: [stage.1] has no steps", NULL},
    {"steps", "[stage.1]\nsteps = 0\n", NULL, "t.in:15: stage.1.steps = '0': must be >= 1", NULL},
    {"steps", "[stage.1]\nsteps = -3\n", NULL, "stage.1.steps", ">= 1"},
    {"steps", "[stage.1]\nsteps = 2\nepochs = 1\n", NULL, "t.in:16: unknown key stage.1.epochs", "reset_optimizer"},
    {"steps", "[stage.1]\nsteps = 2\nsteps = 3\n", NULL, "t.in:16: duplicate key stage.1.steps", NULL},
    {"steps", "[stage.1]\nsteps = 2\nlr_schedule = step\n", NULL, "stage.1.lr_schedule", "constant/linear/cosine"},
    {"steps", "[stage.1]\nsteps = 2\ntrainable = layers\n", NULL, "stage.1.trainable", "all/embeddings"},
    {"steps", "[stage.1]\nsteps = 2\nreset_optimizer = maybe\n", NULL, "stage.1.reset_optimizer", "boolean"},
    {"steps", "[stage.1]\nsteps = 2\nlr = 0\n", NULL, "stage.1.lr", "> 0"},
    {"steps", "[stage.1]\nsteps = 2\nmin_lr = 0.5\n", NULL, "t.in:16: stage.1.min_lr = 0.5 must be <= stage.1.lr", NULL},
    {"steps", "[stage.1]\nsteps = 2\ntrain =\n", NULL, "stage.1.train", "must not be empty"},
    {"train", "[stage.1]\nsteps = 2\ntrain = a.h5\n[stage.2]\nsteps = 2\n", "train.steps=4",
     "t.in:17: [stage.2] has no training data", "stage.2.train"},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.3.steps=1", "override: [stage.3] without [stage.2]", NULL},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.1.bogus=1", "unknown key stage.1.bogus", "override"},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.0.lr=1", "override 'stage.0.lr=1': section [stage.0]", NULL},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.1.steps=x", "override: stage.1.steps = 'x': not an integer", NULL},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.x.steps=1", "unknown key stage.x.steps", NULL},
    {"steps", "[stage.#]\nsteps = 2\n", NULL, "unknown section [stage.#]", "stage.N"},
    {"steps", "[stage.1]\nsteps = 2\n", "stage.#.steps=1", "unknown key stage.#.steps", NULL},
    {NULL, NULL, "train.eval_every=-1", "train.eval_every", ">= 0"},
    {NULL, NULL, "train.eval_batches=x", "train.eval_batches", "not an integer"},
    {NULL, NULL, "data.valid=a ;b", "data.valid", "comment marker"},
    {NULL, NULL, NULL, NULL, NULL}, /* end */
};

static void check_error(const char *text, const char *ov, const char *w1, const char *w2) {
    lm_config c;
    char err[LM_ERRLEN] = "";
    int rc = load1(&c, text, ov, err);
    if (rc != 2 || !strstr(err, w1) || (w2 && !strstr(err, w2)))
        fprintf(stderr, "case ov=%s want '%s' '%s': rc %d err '%s'\n", ov ? ov : "-", w1, w2 ? w2 : "", rc, err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, w1));
    if (w2) assert_non_null(strstr(err, w2));
}

static void test_errors(void **state) {
    (void)state;
    int n = 0;
    for (const ecase *e = ERRORS; e->want1; e++, n++) {
        char *t = base_text(e->drop, e->extra);
        check_error(t, e->ov, e->want1, e->want2);
        free(t);
    }
    assert_true(n > 80);
    /* a key before any section */
    char *t = base_text(NULL, NULL);
    char *u = malloc(strlen(t) + 32);
    sprintf(u, "dim = 64\n%s", t);
    check_error(u, NULL, "outside any [section]", "t.in:1");
    /* an over-long line that is no key = value line */
    char *v = malloc(strlen(t) + 600);
    sprintf(v, "%s%0500d\n", t, 7);
    check_error(v, NULL, "t.in:15", "line too long");
    /* an over-long section header without its ']' */
    sprintf(v, "%s[%0300d\n", t, 7);
    check_error(v, NULL, "t.in:15", "line too long");
    /* a string longer than its field */
    char *w = malloc(strlen(t) + 6000);
    sprintf(w, "%s[log]\nmetrics = ", t);
    size_t wl = strlen(w);
    memset(w + wl, 'm', 4500);
    strcpy(w + wl + 4500, "\n");
    check_error(w, NULL, "log.metrics", "too long");
    free(t);
    free(u);
    free(v);
    free(w);
}

/* Values longer than inih's 200-byte line buffer, comments of both kinds,
 * empty values, CRLF line ends and a UTF-8 BOM. */
static void test_lines_and_comments(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    char files[3001];
    for (int i = 0; i < 3000; i++) files[i] = "abcdefgh/,_.0123"[i % 16];
    files[3000] = 0;
    files[0] = 'x';
    size_t n = 2 * sizeof files + 4096;
    char *text = malloc(n);
    char *t = base_text("train", NULL);
    snprintf(text, n,
             "\xEF\xBB\xBF; leading comment\n%s"
             "[data]\ntrain =   %s   ; the files\n"
             "; %s\n"
             "# another comment\n"
             "   [log]   ; indented header\n"
             "metrics =\n"
             "papi_events = ; nothing\n"
             "every = 3 # hash comment\n"
             "[checkpoint]\r\ndir = my;dir#x\r\nkeep=5\r\n",
             t, files, files);
    assert_int_equal(load1(&c, text, NULL, err), 0);
    assert_string_equal(c.train_files, files);
    assert_string_equal(c.metrics, "");
    assert_string_equal(c.papi_events, "");
    assert_int_equal(c.log_every, 3);
    assert_string_equal(c.ckpt_dir, "my;dir#x");
    assert_int_equal(c.ckpt_keep, 5);
    assert_round_trip(&c);
    /* a long value from an override, and the same through the text */
    char *ov = malloc(sizeof files + 32);
    sprintf(ov, "checkpoint.restart=%s", files);
    free(t);
    t = base_text(NULL, NULL);
    assert_int_equal(load1(&c, t, ov, err), 0);
    assert_string_equal(c.restart, files);
    assert_round_trip(&c);
    /* an indented line is a key, not a continuation of the one before */
    char *u = base_text(NULL, "[log]\nmetrics = m.jsonl\n   every = 4\n");
    assert_int_equal(load1(&c, u, NULL, err), 0);
    assert_string_equal(c.metrics, "m.jsonl");
    assert_int_equal(c.log_every, 4);
    /* booleans and enums are case-insensitive, stored canonical */
    char *b = base_text(NULL, "[data]\nshuffle = OFF\n[train]\nrecompute = Yes\ndevice = CUDA\n");
    assert_int_equal(load1(&c, b, NULL, err), 0);
    assert_int_equal(c.shuffle, 0);
    assert_int_equal(c.recompute, 1);
    assert_string_equal(c.device, "cuda");
    /* warmup longer than the run is allowed */
    free(t);
    t = base_text(NULL, "[train]\nwarmup_steps = 1000\n");
    assert_int_equal(load1(&c, t, NULL, err), 0);
    assert_int_equal(c.warmup_steps, 1000);
    free(t);
    free(text);
    free(ov);
    free(u);
    free(b);
}

static const char *FULL =
    "[model]\npreset = tiny\ndim = 128\nn_layers = 3\nn_heads = 8\nn_kv_heads = 4\nffn_dim = 300\n"
    "vocab_size = 1000\nmax_seq_len = 512\nnorm_eps = 1e-6\nrope_theta = 500000\ntie_embeddings = yes\n"
    "[parallel]\ntp = 2\npp = 2\ndp = 3\nzero = 3\nsp = true\nschedule = interleaved\nvirtual_stages = 2\nstage_layers = 3, 5,4 ,4\noffload = auto\n"
    "[train]\ndevice = cuda\nseed = 18446744073709551615\nsteps = 100\nseq_len = 512\nmicro_batch = 3\n"
    "global_batch = 9\nlr = 0.1\nmin_lr = 0.01\nwarmup_steps = 500\nlr_schedule = linear\n"
    "weight_decay = 0.05\nbeta1 = 0\nbeta2 = 0.999\neps = 1e-10\ngrad_clip = 0\nrecompute = on\n"
    "init = ckpt/step_00000010.h5\ninit_std = 0.006\n"
    "[data]\ntrain = a.h5,b.h5\nshuffle = off\n"
    "[checkpoint]\ndir = /tmp/x y\nevery = 7\nkeep = 1\nrestart = none\n"
    "[log]\nevery = 5\nmetrics =\npeak_tflops = 989.5\npapi_events = perf::TASK-CLOCK\n";

/* The three-stage recipe's shape (inputs/colossal-3stage.in): line
 * numbers matter to test_stages. */
static const char *STAGED =
    "[model]\npreset = tiny\n"                                                           /* 1-2 */
    "[train]\nseq_len = 32\nmicro_batch = 2\nglobal_batch = 4\nlr = 0.003\nmin_lr = 0.0003\n" /* 3-8 */
    "warmup_steps = 4\neval_every = 5\neval_batches = 2\n"                              /* 9-11 */
    "[data]\ntrain = inject.h5\nvalid = held.h5\n"                                      /* 12-14 */
    "[stage.1]\nsteps = 6\ntrainable = embeddings\nlr = 0.01\nlr_schedule = constant\n" /* 15-19 */
    "[stage.2]\nsteps = 10\n"                                                           /* 20-21 */
    "[stage.3]\nsteps = 8\ntrain = replay.h5:3,inject.h5:1\nreset_optimizer = true\nwarmup_steps = 0\n"
    "valid = held.h5,replay_valid.h5\n";

/* [stage.N]: inheritance, train.steps as the sum, overrides, the resolved
 * text with the stages (a fixed point), and the section at its place. */
static void test_stages(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    int rc = load1(&c, STAGED, NULL, err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n_stages, 3);
    assert_int_equal(c.steps, 24);
    assert_int_equal(c.eval_every, 5);
    assert_int_equal(c.eval_batches, 2);
    assert_string_equal(c.valid_files, "held.h5");
    const lm_stage *g = c.stage;
    assert_int_equal(g[0].steps, 6);
    assert_string_equal(g[0].trainable, "embeddings");
    assert_true(g[0].lr == 0.01 && g[0].min_lr == 0.0003 && g[0].warmup_steps == 4);
    assert_string_equal(g[0].lr_schedule, "constant");
    assert_string_equal(g[0].train_files, "inject.h5");
    assert_string_equal(g[0].valid_files, "held.h5");
    assert_int_equal(g[0].reset_optimizer, 0);
    /* stage 2 inherits everything but steps */
    assert_true(g[1].lr == 0.003 && g[1].min_lr == 0.0003 && g[1].warmup_steps == 4);
    assert_string_equal(g[1].lr_schedule, "cosine");
    assert_string_equal(g[1].trainable, "all");
    assert_string_equal(g[1].train_files, "inject.h5");
    assert_string_equal(g[2].train_files, "replay.h5:3,inject.h5:1");
    assert_string_equal(g[2].valid_files, "held.h5,replay_valid.h5");
    assert_int_equal(g[2].reset_optimizer, 1);
    assert_int_equal(g[2].warmup_steps, 0);
    for (int i = 3; i < LM_MAX_STAGES; i++) assert_int_equal(c.stage[i].steps, 0);
    assert_round_trip(&c);
    size_t need = deck_to_text(&c, NULL, 0);
    char *t = malloc(need + 1);
    deck_to_text(&c, t, need + 1);
    const char *s3 = strstr(t, "\n\n[stage.3]\nsteps = 8\ntrain = replay.h5:3,inject.h5:1\nvalid = held.h5,replay_valid.h5\n");
    assert_non_null(s3);
    assert_non_null(strstr(s3, "\nreset_optimizer = true\n"));
    assert_true(strstr(t, "[log]") < strstr(t, "[stage.1]"));
    assert_non_null(strstr(t, "[train]\n")); /* train.steps printed as the sum */
    assert_non_null(strstr(t, "\nsteps = 24\n"));
    /* a short buffer: the size needed and a NUL-terminated prefix */
    char small[64];
    for (size_t cut = need - 40; cut <= need + 1; cut += 7) {
        char *b = malloc(cut);
        assert_int_equal(deck_to_text(&c, b, cut), need);
        assert_int_equal(strlen(b), cut - 1 < need ? cut - 1 : need);
        assert_memory_equal(b, t, strlen(b));
        free(b);
    }
    (void)small;
    free(t);

    /* overrides reach a stage; train.steps equal to the sum is accepted */
    char *ovs[] = {"stage.2.lr=1e-3", "stage.3.trainable = embeddings", "train.steps=24", "stage.1.steps=7",
                   "train.steps=25", "data.valid="};
    rc = deck_load_string(&c, STAGED, "t.in", 6, ovs, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(c.stage[1].lr == 1e-3 && c.stage[0].lr == 0.01 && c.stage[2].lr == 0.003);
    assert_string_equal(c.stage[2].trainable, "embeddings");
    assert_int_equal(c.stage[0].steps, 7);
    assert_int_equal(c.steps, 25);
    assert_string_equal(c.stage[0].valid_files, ""); /* inherited from the overridden data.valid */
    assert_string_equal(c.stage[2].valid_files, "held.h5,replay_valid.h5");
    assert_round_trip(&c);
    /* a stage made by an override alone */
    char *more[] = {"stage.4.steps=2", "stage.4.train=x.h5"};
    assert_int_equal(deck_load_string(&c, STAGED, "t.in", 2, more, err, sizeof err), 0);
    assert_int_equal(c.n_stages, 4);
    assert_int_equal(c.steps, 26);
    assert_string_equal(c.stage[3].train_files, "x.h5");
    assert_round_trip(&c);
    /* data.train may be left out when every stage has its own */
    rc = load1(&c, "[model]\npreset = tiny\n[train]\nseq_len = 8\nmicro_batch = 1\nglobal_batch = 1\nlr = 1e-3\n"
               "[stage.1]\nsteps = 2\ntrain = a.h5\n[stage.2]\nsteps = 1\ntrain = b.h5\n", NULL, err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.train_files, "");
    assert_int_equal(c.steps, 3);
    assert_round_trip(&c);
    /* errors name the stage's line */
    rc = load1(&c, STAGED, "stage.3.min_lr=0.01", err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "override: stage.3.min_lr = 0.01 must be <= stage.3.lr = 0.003"));
    rc = load1(&c, STAGED, "stage.2.lr=1e-4", err); /* below the inherited min_lr */
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "override: stage.2.min_lr = 0.0003 (from train.min_lr) must be <= stage.2.lr = 0.0001"));
    rc = load1(&c, STAGED, "train.min_lr=0.005", err); /* stage 2 and 3 inherit lr 0.003 */
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "train.min_lr = 0.005 must be <= train.lr"));
    rc = load1(&c, STAGED, "stage.1.min_lr=0.02", err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "stage.1.min_lr = 0.02 must be <= stage.1.lr = 0.01"));
    rc = load1(&c, STAGED, "train.steps=23", err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "override: train.steps = 23 must equal the sum of the stages' steps (stage.1.steps + "
                            "stage.2.steps + stage.3.steps = 24)"));
}

static void test_round_trip(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    assert_int_equal(load1(&c, FULL, NULL, err), 0);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.dp, 3);
    assert_int_equal(c.seed, UINT64_MAX);
    assert_true(c.lr == 0.1 && c.beta1 == 0 && c.peak_tflops == 989.5);
    assert_string_equal(c.ckpt_dir, "/tmp/x y");
    assert_string_equal(c.schedule, "interleaved");
    assert_int_equal(c.sp, 1);
    assert_round_trip(&c);
    /* every key printed, once, in SPEC order */
    char text[8192];
    size_t n = deck_to_text(&c, text, sizeof text);
    assert_int_equal(n, strlen(text));
    static const char *order[] = {"[model]", "\npreset = tiny\n", "\ndim = 128\n", "\ntie_embeddings = true\n",
                                  "[parallel]", "\ndp = 3\n", "\noffload = auto\n", "[train]", "\nseed = 18446744073709551615\n",
                                  "\nlr = 0.1\n", "\ninit_std = 0.006\n", "[data]", "\ntrain = a.h5,b.h5\n", "[checkpoint]",
                                  "\nrestart = none\n", "[log]", "\nmetrics =\n", "\npapi_events = perf::TASK-CLOCK\n"};
    const char *at = text;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *f = strstr(at, order[i]);
        if (!f) fprintf(stderr, "missing or out of order: %s\n%s", order[i], text);
        assert_non_null(f);
        at = f;
    }
    int lines = 0;
    for (const char *p = text; *p; p++) lines += (*p == '=');
    assert_int_equal(lines, 60);
    /* snprintf-like: the size needed, a NUL-terminated prefix when short */
    char small[40];
    memset(small, 'Z', sizeof small);
    assert_int_equal(deck_to_text(&c, small, sizeof small), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, text, sizeof small - 1);
    assert_int_equal(deck_to_text(&c, NULL, 0), n);

    /* awkward doubles and values set only by overrides */
    char *t = base_text(NULL, NULL);
    char *ovs[] = {"train.lr=0.30000000000000004", "train.min_lr=1e-300", "model.rope_theta=500000.25",
                   "train.eps=4.9406564584124654e-300", "log.peak_tflops=123456789012345678", "parallel.dp=auto",
                   "train.init=/abs/path with spaces/x.h5", "train.beta2=0.99999999999999989"};
    assert_int_equal(deck_load_string(&c, t, "t.in", 8, ovs, err, sizeof err), 0);
    assert_true(c.lr == 0.30000000000000004 && c.min_lr == 1e-300);
    assert_int_equal(c.dp, 0);
    assert_round_trip(&c);
    deck_to_text(&c, text, sizeof text);
    assert_non_null(strstr(text, "\ndp = auto\n"));
    assert_non_null(strstr(text, "\nlr = 0.30000000000000004\n"));
    assert_non_null(strstr(text, "\nrope_theta = 500000.25\n"));
    assert_non_null(strstr(text, "\npreset =\n"));
    free(t);
}

/* The decks shipped in inputs/ (prove runs from the repository root). */
static void test_input_decks(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    int rc = deck_load(&c, "inputs/tiny.in", 0, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.preset, "tiny");
    assert_int_equal(c.dim, 64);
    assert_int_equal(c.seq_len, 64);
    assert_int_equal(c.micro_batch, 4);
    assert_int_equal(c.global_batch, 8);
    assert_int_equal(c.steps, 20);
    assert_true(c.lr == 3e-3);
    assert_int_equal(c.warmup_steps, 2);
    assert_string_equal(c.lr_schedule, "cosine");
    assert_string_equal(c.train_files, "data/tiny.h5");
    assert_string_equal(c.ckpt_dir, "ckpt");
    assert_string_equal(c.metrics, "metrics.jsonl");
    assert_string_equal(c.device, "cpu");
    assert_round_trip(&c);
    static const char *big[] = {"llama2-7b", "llama2-13b", "llama2-70b"};
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "inputs/%s.in", big[i]);
        rc = deck_load(&c, path, 0, NULL, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        assert_string_equal(c.preset, big[i]);
        assert_int_equal(c.seq_len, 4096);
        assert_string_equal(c.device, "cuda");
        assert_true(c.lr == 1e-4 && c.weight_decay == 0.1 && c.grad_clip == 1.0);
        assert_string_equal(c.lr_schedule, "cosine");
        assert_true(c.warmup_steps > 0);
        assert_string_equal(c.train_files, "data/train.h5");
        assert_int_equal(c.n_heads % (c.tp), 0);
        assert_round_trip(&c);
    }
    /* the three-stage recipe */
    rc = deck_load(&c, "inputs/colossal-3stage.in", 0, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n_stages, 3);
    assert_int_equal(c.steps, 280);
    assert_string_equal(c.stage[0].trainable, "embeddings");
    assert_string_equal(c.stage[1].trainable, "all");
    assert_string_equal(c.stage[1].train_files, "data/inject.h5");
    assert_string_equal(c.stage[2].train_files, "data/inject.h5:1,data/general.h5:1");
    assert_int_equal(c.stage[2].reset_optimizer, 1);
    assert_true(c.stage[0].lr == 1e-2 && c.stage[1].lr == 3e-3 && c.stage[2].lr == 1e-3);
    for (int i = 0; i < 3; i++) assert_string_equal(c.stage[i].valid_files, "data/inject.valid.h5,data/general.valid.h5");
    assert_int_equal(c.eval_every, 20);
    assert_round_trip(&c);
}

static void test_file_errors(void **state) {
    (void)state;
    lm_config c;
    char err[LM_ERRLEN];
    assert_int_equal(deck_load(&c, "/nonexistent/dir/x.in", 0, NULL, err, sizeof err), 2);
    assert_non_null(strstr(err, "cannot read deck /nonexistent/dir/x.in"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(deck_load(&c, "/tmp", 0, NULL, err, sizeof err), 2);
    assert_non_null(strstr(err, "cannot read deck /tmp"));

    char path[] = "/tmp/test_deck_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *t = base_text(NULL, "[model]\nfoo = 1\n");
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    assert_int_equal(deck_load(&c, path, 0, NULL, err, sizeof err), 2);
    char want[64];
    snprintf(want, sizeof want, "%s:16: unknown key model.foo", path);
    assert_non_null(strstr(err, want));
    /* the file then the override: the override's error names "override" */
    free(t);
    t = base_text(NULL, NULL);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    assert_int_equal(write(fd, "\0x", 2), 2); /* a NUL byte: not a text file */
    close(fd);
    assert_int_equal(deck_load(&c, path, 0, NULL, err, sizeof err), 2);
    assert_non_null(strstr(err, "NUL"));
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    char *ovs[] = {"train.steps=abc"};
    assert_int_equal(deck_load(&c, path, 1, ovs, err, sizeof err), 2);
    assert_non_null(strstr(err, "override"));
    assert_non_null(strstr(err, "train.steps"));
    assert_int_equal(deck_load(&c, path, 0, NULL, err, sizeof err), 0);
    assert_int_equal(c.dim, 64);
    unlink(path);
    free(t);
}

/* ---- fuzz: mutate valid decks, the parser must answer 0 or 2, never crash,
 * always explain a 2, and round-trip whatever it accepts ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rndn(int n) { return (int)(rnd() % (uint64_t)n); }

static const char *TOKENS[] = {"=", "\n", "[", "]", ";", "#", " ", "\r\n", "model", "train", "dim", ".", ":",
                               "0", "-1", "1e999", "auto", "99999999999999999999", "\n[log]\nmetrics = ",
                               "\n[train]\nwarmup_steps = 3\n", "\n[parallel]\nzero = 2\n", "\xEF\xBB\xBF", "\x01",
                               "\n[stage.1]\nsteps = 2\n", "\n[stage.2]\nsteps = 3\n", "stage.", "\nreset_optimizer = 1\n",
                               "\ntrainable = embeddings\n", "\n[data]\nvalid = v.h5\n"};

static void test_fuzz(void **state) {
    (void)state;
    const char *seeds[4] = {FULL, NULL, NULL, STAGED};
    char *base = base_text(NULL, "[log]\nevery = 2\nmetrics = m.jsonl\n[parallel]\ntp = 2\n");
    char *commented = base_text(NULL, "; a comment line, long enough to be hit by many of the mutations\n"
                                      "[log] ; header comment\n# another comment of some length, to be mutated\n"
                                      "metrics = m.jsonl    ; inline comment that mutations may change freely\n"
                                      "papi_events = perf::TASK-CLOCK  # a hash comment after the value\n\n\n");
    seeds[1] = base;
    seeds[2] = commented;
    size_t cap = 1 << 16;
    char *buf = malloc(cap), err[LM_ERRLEN];
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 2000; it++) {
        const char *s = seeds[it % 4];
        size_t n = strlen(s);
        memcpy(buf, s, n + 1);
        int nmut = 1 + (rndn(4) == 0) + (rndn(8) == 0);
        for (int m = 0; m < nmut; m++) {
            size_t pos = n ? (size_t)rndn((int)n + 1) : 0;
            switch (rndn(7)) {
            case 0: /* flip a byte to any non-NUL value */
                if (n) buf[pos % n] = (char)(1 + rndn(255));
                break;
            case 1: /* insert a byte */
                memmove(buf + pos + 1, buf + pos, n - pos + 1);
                buf[pos] = (char)(1 + rndn(255));
                n++;
                break;
            case 2: /* delete a run */
                if (n) {
                    size_t k = 1 + (size_t)rndn(8);
                    if (pos + k > n) k = n - pos;
                    memmove(buf + pos, buf + pos + k, n - pos - k + 1);
                    n -= k;
                }
                break;
            case 3: /* truncate */
                buf[pos] = 0;
                n = pos;
                break;
            case 4: { /* a random long line */
                size_t k = 150 + (size_t)rndn(3000);
                memmove(buf + pos + k, buf + pos, n - pos + 1);
                for (size_t i = 0; i < k; i++) {
                    int r = rndn(20);
                    buf[pos + i] = r == 0 ? '=' : r == 1 ? ' ' : r == 2 ? ';' : (char)(32 + rndn(95));
                }
                if (rndn(2)) buf[pos + k - 1] = '\n';
                n += k;
                break;
            }
            default: { /* insert a token that means something to the parser */
                const char *tk = TOKENS[rndn((int)(sizeof TOKENS / sizeof TOKENS[0]))];
                size_t k = strlen(tk);
                memmove(buf + pos + k, buf + pos, n - pos + 1);
                memcpy(buf + pos, tk, k);
                n += k;
            }
            }
            assert_true(n + 4096 < cap);
        }
        lm_config c;
        err[0] = 0;
        int rc = deck_load_string(&c, buf, "fuzz", 0, NULL, err, sizeof err);
        assert_true(rc == 0 || rc == 2);
        if (rc == 2) {
            assert_true(err[0] != 0);
            rejected++;
            if (getenv("FUZZ_SHOW")) fprintf(stderr, "%s\n", err);
        } else {
            accepted++;
            assert_round_trip(&c);
        }
    }
    fprintf(stderr, "# fuzz: %d accepted, %d rejected\n", accepted, rejected);
    assert_true(accepted > 100 && rejected > 100);
    free(buf);
    free(base);
    free(commented);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_minimal_deck),
        cmocka_unit_test(test_presets),          cmocka_unit_test(test_override_precedence),
        cmocka_unit_test(test_errors),           cmocka_unit_test(test_lines_and_comments),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_stages),
        cmocka_unit_test(test_input_decks),
        cmocka_unit_test(test_file_errors),      cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
