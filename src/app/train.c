/* train.c — `lamina train`: the training loop.
 *
 * A run is one or more stages (run/stages.h: the deck's [stage.N], or the
 * whole run as one): each stage opens a session from its view of the deck
 * (stage_open: its data, trainable set, schedule; weights and moments from
 * the checkpoint it resumes or starts from), runs its steps (run_stage) and
 * closes; the next stage starts from the checkpoint written at the previous
 * one's last step.
 *
 * One optimizer step: fill this rank's micro-batches, zero the gradients,
 * forward+backward each micro-batch with the loss scaled by 1/(target tokens
 * of the whole global batch) so the gradients sum to those of the global mean
 * (a batch without targets: scale 0, loss 0), take the global gradient norm,
 * clip, AdamW (train_step), evaluate on the held-out data when due
 * (run/valid.h), log, and checkpoint on the cadence, at each stage's end and
 * at the last step. The step's counters (time, regions, PAPI/SDE,
 * communication, memory) are gathered by the step probe (obs/step_probe.h)
 * around train_step; log_step and the JSONL writer report them; the run's
 * closing reports are in train_report.c. */
#include "cmds.h"
#include "common.h"
#include "data.h"
#include "memcheck.h"
#include "jsonl.h"
#include "mfu.h"
#include "optim.h"
#include "pipe_run.h"
#include "preempt.h"
#include "prof.h"
#include "sde.h"
#include "step_probe.h"
#include "session.h"
#include "stages.h"
#include "valid.h"
#include "tokrecord.h"
#include "train_report.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

/* Test hook: LAMINA_FAULT_NAN=RANK:STEP poisons one gradient element on
 * world rank RANK after the backward of step STEP (a fault only one rank
 * sees, to check that every rank stops). */
static long fault_step(void) {
    const char *e = getenv("LAMINA_FAULT_NAN");
    int r = -1;
    long st = -1;
    if (!e || sscanf(e, "%d:%ld", &r, &st) != 2 || r != comm_world()->rank) return -1;
    return st;
}

/* Test hook: LAMINA_FAULT_REPLICA=RANK changes the first element of the
 * first replicated tensor's checkpoint piece on world rank RANK (a norm
 * weight under tp, a shared kv head, the tied embedding's copy on the last
 * stage) before a checkpoint: the replica check must then refuse to write. */
static void replica_fault(lm_session *s, ckpt_tensor *w) {
    const char *e = getenv("LAMINA_FAULT_REPLICA");
    if (!e || atoi(e) != comm_world()->rank) return;
    for (int i = 0; i < s->full.n; i++) {
        const lm_param *p = s->local_of[i] >= 0 ? &s->model->params.p[s->local_of[i]] : NULL;
        if (p && w[i].count > 0 && (p->gsum || (p->tp_split == LM_TP_NONE && s->cfg.tp > 1))) {
            if (w[i].data) {
                w[i].data[0] += 1.0f;
            } else { /* streamed from the device: change it there */
                float x;
                w[i].pull(w[i].ctx, &x, 0, 1);
                x += 1.0f;
                w[i].push(w[i].ctx, &x, 0, 1);
            }
            return;
        }
    }
}

/* Writes the checkpoint of step `step` collectively; returns the seconds it took. */
static double save(lm_session *s, long step, long tokens, long consumed, const char *deck_text, const lm_tokrec *tok,
                   long stage, long stage_data_start) {
    prof_enter(PROF_CHECKPOINT);
    const lm_config *c = &s->cfg;
    int n = s->full.n;
    ckpt_tensor *tw = lm_alloc(sizeof(ckpt_tensor) * (size_t)n), *tm = lm_alloc(sizeof(ckpt_tensor) * (size_t)n),
                *tv = lm_alloc(sizeof(ckpt_tensor) * (size_t)n);
    session_ckpt_tensors(s, tw, tm, tv);
    zero_ckpt_pull(s->zero);
    replica_fault(s, tw);
    char why[LM_ERRLEN] = {0};
    if (session_check_replicas(s, tw, why, sizeof why)) lm_fail(LM_ERR_RUNTIME, "step %ld: %s", step, why);
    ckpt_meta meta = {
        .step = step, .tokens_seen = tokens, .consumed_samples = consumed, .seed = c->seed,
        .dim = c->dim, .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
        .ffn_dim = c->ffn_dim, .vocab_size = c->vocab_size, .max_seq_len = c->max_seq_len,
        .tie_embeddings = c->tie_embeddings, .norm_eps = c->norm_eps, .rope_theta = c->rope_theta,
        .deck_text = deck_text, .tok = tok && tok->model ? tok : NULL,
        .stage = stage, .stage_data_start = stage_data_start,
    };
    char err[LM_ERRLEN] = {0};
    double t0 = lm_now();
    int rc = ckpt_save(comm_mpi(comm_world()), c->ckpt_dir, &meta, tw, tm, tv, n, c->ckpt_keep, err, sizeof err);
    if (comm_agree(comm_world(), rc, err, sizeof err)) lm_fail(LM_ERR_RUNTIME, "checkpoint: %s", err);
    double dt = lm_now() - t0;
    lm_log("checkpoint: %s/step_%08ld.h5 written in %.2f s\n", c->ckpt_dir, step, dt);
    long long bytes = 0;
    for (int i = 0; i < n; i++) bytes += (long long)(tw[i].count + tm[i].count + tv[i].count) * (long long)sizeof(float);
    sde_add(LM_SDE_CKPT_BYTES_WRITTEN, bytes);
    lm_free(tw);
    lm_free(tm);
    lm_free(tv);
    prof_exit(PROF_CHECKPOINT);
    return dt;
}

/* ------------------------------------------------------------ the run */

/* What a training run holds from set-up to the end. */
typedef struct {
    lm_session S;           /* the current stage's session; S.cfg is the stage's view of the deck */
    lm_config deck;         /* the whole deck */
    int stage;              /* the current stage (0-based; 0 without stages) */
    long data_start;        /* consumed samples when the stage's data stream started (stages.h) */
    int opened;             /* the first stage's once-per-run set-up is done */
    int bucket;             /* the data bucket of the last step (-1: none yet, or one bucket) */
    lm_valid *valid;        /* the stage's held-out data (NULL: no evaluation) */
    lm_budget budget;
    char *deck_text;        /* the resolved deck, stored in each checkpoint */
    lm_data *data;
    lm_batch batch;         /* this rank's micro-batches of the step */
    int n_micro;
    lm_pipe *pipe;          /* pp > 1: the pipeline runtime */
    lm_metrics_log *mlog;
    lm_step_probe probe;
    lm_adamw_hp hp;         /* AdamW's hyper-parameters and the lr schedule, from the deck */
    lm_lr_sched sched;
    double fpt;             /* model FLOPs per token */
    double peak;            /* peak FLOP/s per rank for MFU; 0: unknown GPU */
    long poison_at;         /* LAMINA_FAULT_NAN's step on this rank, else -1 */
    long tokens, consumed;  /* input tokens and samples consumed so far */
    long tokens0;           /* tokens_seen when this process started (the done line's rate) */
    lm_tokrec tok;          /* the tokenizer recorded in every checkpoint (model NULL: none) */
    char tok_from[LM_PATHLEN]; /* the file it came from */
    double t_run;           /* when the run's timing starts (the done line) */
} trainer;

/* One step's outcome. */
typedef struct {
    double loss, gnorm, lr;
    /* the largest over the ranks: device bytes at the step's peak, lamina's
     * host allocations at their peak so far, bytes copied host to device
     * and back in the step */
    double mem[4];
} step_result;

/* The run's sums over the steps it ran, for the closing report. */
typedef struct {
    long steps, cut, masked;
    double first_loss, last_loss, comm_s;
    bubble bub;
} run_totals;

/* The tokenizer the checkpoints record (SPEC §5): the data's
 * (tokenizer_of_data, before the data is opened); when the data records
 * none, the one of the checkpoint the run starts from (restart, or a
 * train.init file or HF folder with a tokenizer.model), so that a run on
 * untagged data keeps it. Collective: every rank reads the file itself and
 * the ranks agree on the outcome. */
static void tokenizer_of_start(trainer *T) {
    lm_session *S = &T->S;
    const lm_config *c = &S->cfg;
    const char *from = S->resumed_from[0] ? S->resumed_from : strcmp(c->init, "random") ? c->init : NULL;
    if (from) {
        char err[LM_ERRLEN] = {0};
        lm_tokrec ck;
        int rc = tokrecord_from_start(c, from, &ck, err, sizeof err);
        if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "%s", err);
        if (!T->tok.model && ck.model) {
            T->tok = ck;
            snprintf(T->tok_from, sizeof T->tok_from, "%s", from);
        } else {
            if (ck.model && !tokrec_equal(&ck, &T->tok))
                lm_log("warning: %s records a different tokenizer than the data (%s); the checkpoints record the "
                       "data's\n", from, T->tok_from);
            tokrec_free(&ck);
        }
    }
    if (T->tok.model)
        lm_log("tokenizer: recorded from %s (%zu bytes, bos_id %lld, eos_id %lld, vocab_size %lld); stored in every "
               "checkpoint\n", T->tok_from, T->tok.len, (long long)T->tok.bos_id, (long long)T->tok.eos_id,
               (long long)T->tok.vocab_size);
}

/* Deck, metrics log and the opening log lines: the run's set-up before
 * its first stage. Exits 3 on a stop during start-up. */
static void train_open(trainer *T, int argc, char **argv) {
    memset(T, 0, sizeof *T);
    lm_config *c = &T->deck;
    preempt_install();
    session_config(c, "train", "lamina train DECK [section.key=value ...]", argc, argv);
    char why[256], err[LM_ERRLEN] = {0};
    if (preempt_any(comm_world(), why, sizeof why)) preempt_exit_before_step(1, why); /* a stop during start-up */
    memcheck_run(c, c->dp); /* an impossible deck, or too little memory: exit 2 before allocating */
    budget_init(&T->budget, c->max_minutes);
    lm_group *world = comm_world();
    prof_init();         /* regions: this thread, from here on */
    sde_reader_start();  /* lamina's SDE counters, read back through PAPI */

    size_t tlen = deck_to_text(c, NULL, 0) + 1;
    T->deck_text = lm_alloc(tlen);
    deck_to_text(c, T->deck_text, tlen);
    lm_log("lamina %s train: %d rank(s) = dp %d x tp %d x pp %d, ZeRO-%d, device %s, %d OpenMP thread(s) per rank\n"
           "--- resolved deck ---\n%s---\n",
           LAMINA_VERSION, world->size, c->dp, c->tp, c->pp, c->zero, c->device, omp_get_max_threads(),
           T->deck_text);
    if (c->n_stages)
        lm_log("stages: %d, %ld steps in all; a checkpoint at the end of each stage, from which the next one "
               "starts\n", c->n_stages, c->steps);
    T->mlog = metrics_open(c->metrics, err, sizeof err);
    if (comm_agree(world, T->mlog ? 0 : LM_ERR_INPUT, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);
}

/* Open stage k (0-based; 0 without stages) from checkpoint `restart`
 * (NULL: per the deck's checkpoint.restart): the stage's view of the deck,
 * its data, the session and its start state, the pipeline; the first time
 * also the tokenizer record, the MFU peak and the counters. Returns k, or
 * the stage that the loaded checkpoint's next step belongs to when that is
 * another (the peeked checkpoint was skipped: the caller reopens). */
static int stage_open(trainer *T, int k, const char *restart) {
    lm_session *S = &T->S;
    lm_config *c = &S->cfg;
    const lm_config *deck = &T->deck;
    char why[256], err[LM_ERRLEN] = {0};
    lm_group *world = comm_world();
    stage_view(deck, k, c);
    if (restart) snprintf(c->restart, sizeof c->restart, "%s", restart);
    T->stage = k;
    /* the data's tokenizer, checked before the loader's own checks (its
     * vocabulary rule names the tokenizer); a later stage's data must
     * record the same one as the run's, if any */
    lm_tokrec rec;
    char rfrom[LM_PATHLEN];
    int trc = tokrecord_from_data(c, &rec, rfrom, sizeof rfrom, err, sizeof err);
    if ((trc = comm_agree(world, trc, err, sizeof err))) lm_fail(trc, "%s", err);
    if (!T->opened || (rec.model && !T->tok.model)) {
        tokrec_free(&T->tok);
        T->tok = rec;
        snprintf(T->tok_from, sizeof T->tok_from, "%s", rfrom);
    } else {
        if (rec.model && !tokrec_equal(&rec, &T->tok))
            lm_fail(LM_ERR_INPUT, "stage %d: %s records a different tokenizer than %s, the run's: the stages of a run "
                    "must share one", k + 1, rfrom, T->tok_from);
        tokrec_free(&rec);
    }
    char key[64];
    stage_key(deck, k, "train", key, sizeof key);
    T->data = data_open_list(c->train_files, key, c, err, sizeof err);
    if (comm_agree(world, T->data ? 0 : LM_ERR_INPUT, err, sizeof err)) lm_fail(LM_ERR_INPUT, "%s", err);

    session_open(S, c->micro_batch, c->seq_len, c->recompute, 1);
    T->poison_at = fault_step();
    T->hp = adamw_hp_of(c);
    T->sched = lr_sched_stage(deck, k);
    report_memory(S);
    session_load(S, 1);
    if (deck->n_stages && S->start_step < deck->steps && deck_stage_of(deck, S->start_step + 1) != k)
        return deck_stage_of(deck, S->start_step + 1);
    if (!T->opened) {
        tokenizer_of_start(T);
        char peak_desc[512];
        T->peak = mfu_peak_flops(c, S->dev, omp_get_max_threads(), peak_desc, sizeof peak_desc);
        T->fpt = metrics_flops_per_token(S->model->n_matmul_params, c->n_layers, c->dim, c->seq_len);
        lm_log("MFU peak: %.3f TFLOP/s per rank (%s); model FLOPs per token %.0f\n", T->peak / 1e12, peak_desc, T->fpt);
        probe_open(&T->probe, c->papi_events, S->topo.tp_group);
        T->t_run = lm_now();
        T->tokens0 = S->tokens_seen;
        if (c->max_minutes > 0)
            lm_log("wall-clock budget: train.max_minutes = %g; SIGUSR1 or SIGTERM also stop the run after the current "
                   "step with a checkpoint (exit 3)\n", c->max_minutes);
    } else {
        T->probe.tp = S->topo.tp_group; /* this stage's session's group */
    }
    if (preempt_any(world, why, sizeof why)) preempt_exit_before_step(S->start_step + 1, why);
    T->n_micro = c->global_batch / (S->topo.dp * c->micro_batch);
    lm_log("data: %lld samples in %s; %d micro-step(s) of %d x %d tokens per step\n",
           (long long)data_n_samples(T->data), c->train_files, T->n_micro, c->micro_batch, c->seq_len);
    int guessed = 0;
    T->data_start = stage_data_start(deck, k, S->start_step, S->consumed_samples, S->ck_stage, S->ck_stage_data_start,
                                     &guessed);
    if (guessed)
        lm_log("warning: %s does not record where stage %d's data stream started (root attribute stage_data_start); "
               "assuming train.global_batch = %d throughout the stage: stream sample %ld\n", S->resumed_from, k + 1,
               c->global_batch, S->consumed_samples - T->data_start);
    stage_log_start(deck, k, S->start_step, S->consumed_samples, T->data_start);
    if (S->start_step >= deck->steps)
        lm_log("nothing to do: the checkpoint is at step %ld and train.steps = %ld\n", S->start_step, deck->steps);
    batch_alloc(&T->batch, T->n_micro, c->micro_batch, c->seq_len);
    T->tokens = S->tokens_seen;
    T->consumed = S->consumed_samples;
    if (c->tp > 1) tp_report(S->model, S->topo.tp_group);
    T->pipe = c->pp > 1 ? pipe_create(S) : NULL;
    if (T->pipe) pipe_report(S);
    stage_key(deck, k, "valid", key, sizeof key);
    T->valid = valid_open(S, c->valid_files, key);
    T->bucket = -1;
    T->opened = 1;
    return k;
}

/* Everything stage_open opened, in reverse (the session's fields cleared
 * for the next stage's). */
static void stage_close(trainer *T) {
    valid_close(T->valid);
    T->valid = NULL;
    pipe_destroy(T->pipe);
    T->pipe = NULL;
    batch_free(&T->batch);
    data_close(T->data);
    T->data = NULL;
    session_close(&T->S);
    memset(&T->S, 0, sizeof T->S);
}

/* Forward and backward over the step's micro-batches (or the pipeline's
 * schedule), the loss scaled by `scale`; returns this rank's loss sum. */
static double forward_backward(trainer *T, float scale) {
    lm_session *S = &T->S;
    const lm_batch *b = &T->batch;
    size_t R = (size_t)S->cfg.micro_batch * (size_t)S->cfg.seq_len;
    double loss_sum = 0.0;
    prof_enter(PROF_FORWARD_BACKWARD);
    if (T->pipe) {
        loss_sum = pipe_step(T->pipe, b->ids, b->targets, scale);
    } else {
        for (int k = 0; k < T->n_micro; k++) {
            zero_micro_begin(S->zero, k == T->n_micro - 1);
            loss_sum += model_forward_backward(S->model, b->ids + k * R, b->targets + k * R, scale);
            zero_micro_end(S->zero);
        }
    }
    if (!S->dev->host_visible) S->dev->sync(S->dev); /* a GPU's queued kernels are this region's */
    prof_exit(PROF_FORWARD_BACKWARD);
    return loss_sum;
}

/* The global gradient norm: this rank's sum of squares over its tensor- and
 * pipeline-parallel peers (the data-parallel ones hold the same gradients
 * after the reduction). */
static double grad_norm(lm_session *S) {
    prof_enter(PROF_GRAD_NORM);
    double ss = zero_reduced_grad_sumsq(S->zero);
    comm_allreduce_sum_f64(S->topo.tp_group, &ss, 1); /* the tensor-parallel slices */
    comm_allreduce_sum_f64(S->topo.pp_group, &ss, 1); /* the stages' layers */
    prof_exit(PROF_GRAD_NORM);
    return sqrt(ss < 0.0 ? 0.0 : ss); /* a NaN stays NaN */
}

/* With more than one data bucket: the log says when the step's first
 * sample starts a new bucket (SPEC §9). */
static void bucket_note(trainer *T, long step) {
    int nb = data_n_buckets(T->data);
    if (nb <= 1) return;
    int b = data_bucket_at(T->data, T->consumed - T->data_start);
    if (b != T->bucket)
        lm_log("data: bucket %d of %d starts at step %ld (stream sample %ld)\n", b, nb, step,
               T->consumed - T->data_start);
    T->bucket = b;
}

/* One optimizer step: read the step's data, zero the gradients, forward and
 * backward with the loss scaled by 1/(target tokens of the global batch),
 * the global loss and gradient norm, then AdamW with clipping. A NaN or
 * infinite loss or norm stops every rank (exit 1). */
static void train_step(trainer *T, long step, step_result *r) {
    lm_session *S = &T->S;
    const lm_config *c = &S->cfg;
    lm_batch *b = &T->batch;
    char err[LM_ERRLEN] = {0};
    prof_enter(PROF_DATA);
    int rc = data_fill(T->data, T->consumed - T->data_start, c->global_batch, S->topo.dp_rank, S->topo.dp, b, err,
                       sizeof err);
    prof_exit(PROF_DATA);
    /* 2: bad data; 1: a token file changed or a read failed (all ranks exit alike) */
    if ((rc = comm_agree(comm_world(), rc, err, sizeof err))) lm_fail(rc, "data: %s", err);
    bucket_note(T, step);
    probe_comm_begin(&T->probe);
    long long h2d0 = lm_sde_count[LM_SDE_BYTES_H2D], d2h0 = lm_sde_count[LM_SDE_BYTES_D2H];
    S->dev->mem_info(S->dev, NULL, 1); /* a new peak window */

    prof_enter(PROF_OPTIMIZER); /* zeroing the gradients */
    zero_step_begin(S->zero);
    prof_exit(PROF_OPTIMIZER);
    float scale = b->targets_global > 0 ? 1.0f / (float)b->targets_global : 0.0f;
    /* no clipping: offloaded chunks' host steps may run during backward */
    long t = adamw_t(&T->deck, step); /* Adam's bias correction restarts with a stage's reset */
    if (c->grad_clip == 0) zero_early_step(S->zero, &T->hp, lr_at(&T->sched, step), t);
    double loss_sum = forward_backward(T, scale);
    if (step == T->poison_at) zero_poison_grad(S->zero, 12345);
    comm_allreduce_sum_f64(S->topo.pp_group, &loss_sum, 1); /* the last stage's */
    comm_allreduce_sum_f64(S->topo.dp_group, &loss_sum, 1);
    r->loss = b->targets_global > 0 ? loss_sum / (double)b->targets_global : 0.0;
    r->gnorm = grad_norm(S);
    if (!isfinite(r->loss) || !isfinite(r->gnorm))
        lm_fail(LM_ERR_RUNTIME, "step %ld: %s is %s: training diverged (lower train.lr or check the data)", step,
                isfinite(r->loss) ? "gradient norm" : "loss",
                isnan(isfinite(r->loss) ? r->gnorm : r->loss) ? "NaN" : "infinite");
    r->lr = lr_at(&T->sched, step);
    prof_enter(PROF_OPTIMIZER);
    zero_update(S->zero, &T->hp, r->lr, clip_coef(r->gnorm, c->grad_clip), t);
    S->dev->sync(S->dev);
    prof_exit(PROF_OPTIMIZER);
    size_t peak = 0;
    S->dev->mem_info(S->dev, &peak, 0);
    r->mem[0] = (double)peak;
    r->mem[1] = (double)lm_alloc_peak();
    r->mem[2] = (double)(lm_sde_count[LM_SDE_BYTES_H2D] - h2d0);
    r->mem[3] = (double)(lm_sde_count[LM_SDE_BYTES_D2H] - d2h0);
    comm_allreduce_max_f64(comm_world(), r->mem, 4);
}

/* The step's data into the run's counts and sums; the pipeline's bubble
 * from the second step on (the first one's start-up is not the schedule's),
 * or of the only step. */
static void count_step(trainer *T, run_totals *tot, long step, const step_result *r) {
    T->tokens += T->batch.targets_global;
    T->consumed += T->S.cfg.global_batch;
    tot->cut += T->batch.n_cut_global;
    tot->masked += (long)T->batch.n_masked_global;
    tot->comm_s += T->probe.comm_s;
    if (tot->steps == 0) tot->first_loss = r->loss;
    tot->last_loss = r->loss;
    tot->steps++;
    if (T->pipe && (step > T->S.start_step + 1 || T->S.cfg.steps - T->S.start_step == 1)) bubble_add(&tot->bub, T->pipe);
}

/* "MFU 12.34%" for the log: the percentage, or n/a without a peak. */
static const char *mfu_text(char *buf, size_t len, double mfu, const char *fmt) {
    if (isfinite(mfu)) snprintf(buf, len, fmt, 100 * mfu);
    else snprintf(buf, len, "n/a");
    return buf;
}

/* The step's log line, and its JSONL record in *sm (written later, with the
 * checkpoint's time and the SDE counts). */
static void log_step(const trainer *T, long step, const step_result *r, lm_step_metrics *sm) {
    const lm_config *c = &T->S.cfg;
    const lm_step_probe *p = &T->probe;
    const lm_batch *b = &T->batch;
    double dt = p->seconds, comm_ms = p->comm_s * 1e3;
    double tps = (double)b->targets_global / dt;
    double tflops = T->fpt * tps / comm_world()->size / 1e12;
    *sm = (lm_step_metrics){.step = step, .loss = r->loss, .lr = r->lr, .grad_norm = r->gnorm, .tokens = T->tokens,
                            .tokens_per_s = tps, .tflops = tflops, .mfu = T->peak > 0 ? tflops * 1e12 / T->peak : NAN,
                            .step_ms = dt * 1e3, .comm_ms = comm_ms, .mem_bytes = p->mem_bytes,
                            .n_papi = p->n_papi, .papi_names = p->papi_names, .papi_vals = p->papi_vals,
                            .regions = &p->win, .mem_device_peak = r->mem[0], .mem_host_peak = r->mem[1],
                            .h2d_bytes = r->mem[2], .d2h_bytes = r->mem[3],
                            .stage = T->deck.n_stages ? T->stage + 1 : 0, .has_bucket = T->bucket >= 0,
                            .bucket = T->bucket, .masked_samples = (long)b->n_masked_global};
    char mfu[32], extra[160] = "";
    if (T->deck.n_stages) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " | stage %d", T->stage + 1);
    if (T->bucket >= 0) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " | bucket %d", T->bucket);
    if (b->n_cut_global)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " | %d sample(s) cut to seq_len+1", b->n_cut_global);
    if (b->n_masked_global)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " | %lld sample(s) with every target masked",
                 (long long)b->n_masked_global);
    lm_log("step %6ld/%ld | loss %.4f | lr %.3e | gnorm %.3f | %8.0f tok/s | %.4f TFLOP/s | MFU %s | "
           "%.0f ms (comm %.0f)%s\n",
           step, c->steps, r->loss, r->lr, r->gnorm, tps, tflops, mfu_text(mfu, sizeof mfu, sm->mfu, "%5.2f%%"),
           dt * 1e3, comm_ms, extra);
}

/* The checkpoint on the cadence and at the last step, then the preemption
 * check (a signal, the wall-clock budget): 1 when the run must stop now,
 * with the step checkpointed and the reason in why. */
static int checkpoint_or_stop(trainer *T, long step, char *why, size_t len) {
    const lm_config *c = &T->S.cfg;
    double save_s = 0.0;
    /* every stage's last step too: the next stage starts from that file */
    int saved = (c->ckpt_every > 0 && step % c->ckpt_every == 0) || step == c->steps ||
                step == stage_end(&T->deck, T->stage);
    long stg = T->deck.n_stages ? T->stage + 1 : 0;
    if (saved) save_s = save(&T->S, step, T->tokens, T->consumed, T->deck_text, &T->tok, stg, T->data_start);
    budget_step(&T->budget, lm_now() - T->probe.t0, save_s);
    int stop = step < c->steps && preempt_should_stop(comm_world(), &T->budget, why, len);
    if (stop && !saved) save(&T->S, step, T->tokens, T->consumed, T->deck_text, &T->tok, stg, T->data_start);
    return stop;
}

/* The run's closing lines: throughput, MFU, memory and communication over
 * all ranks, and the parallel layouts' reports. Collective. */
static void report_run(trainer *T, const run_totals *tot, double t_all) {
    lm_session *S = &T->S;
    const lm_config *c = &S->cfg;
    lm_group *world = comm_world();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double tps = (double)(T->tokens - T->tokens0) / t_all;
    double rss[2] = {(double)ru.ru_maxrss / 1024.0, tot->comm_s};
    comm_allreduce_max_f64(world, rss, 2);
    char mfu[32];
    lm_log("done: %ld step(s) in %.1f s, loss %.4f -> %.4f, %.0f tokens/s, %.4f TFLOP/s per rank, MFU %s, "
           "peak RSS %.1f MiB (largest rank), blocked in communication %.2f s (largest rank)\n",
           tot->steps, t_all, tot->first_loss, tot->last_loss, tps, T->fpt * tps / world->size / 1e12,
           mfu_text(mfu, sizeof mfu, T->peak > 0 ? T->fpt * tps / world->size / T->peak : NAN, "%.2f%%"), rss[0],
           rss[1]);
    if (tot->cut) lm_log("data: %ld sample(s) were longer than seq_len+1 and were cut\n", tot->cut);
    if (tot->masked)
        lm_log("data: %ld sample(s) had every target removed by the loss mask (no loss, no gradient)\n", tot->masked);
    if (T->pipe) bubble_report(S, &tot->bub);
    if (c->tp > 1)
        tp_comm_report(S->model, S->topo.tp_group, &T->probe.tp_moved, tot->steps, T->n_micro, c->zero, S->topo.dp);
    lm_zero_mem zm;
    zero_memory_bytes(S->zero, &zm);
    if (zm.n_opt_host || zm.n_par_host || zm.stage == 3) {
        /* what moved, how long the copy stream was busy and how long the
         * host waited for it: the share of transfer time hidden */
        double v[4] = {(double)lm_sde_count[LM_SDE_BYTES_H2D], (double)lm_sde_count[LM_SDE_BYTES_D2H],
                       S->dev->copy_busy ? S->dev->copy_busy(S->dev) : -1.0, zero_wait_seconds(S->zero)};
        comm_allreduce_max_f64(world, v, 4);
        if (zm.n_opt_host || zm.n_par_host)
            lm_log("transfers: %.1f MiB host to device, %.1f MiB device to host (largest rank); copy stream busy "
                   "%.4f s, host waited %.4f s for copies: %.0f%% of the transfer time hidden behind compute\n",
                   v[0] / 1048576.0, v[1] / 1048576.0, v[2], v[3],
                   v[2] > 0 ? 100.0 * (v[3] < v[2] ? 1.0 - v[3] / v[2] : 0.0) : 0.0);
        if (zm.n_opt_host)
            lm_log("host AdamW (rank 0): %ld chunk step(s), %ld of them during backward%s\n", zm.host_steps,
                   zm.host_early, c->grad_clip == 0 ? "" : " (train.grad_clip > 0: the clipping coefficient needs "
                   "the whole gradient norm first)");
        if (zm.stage == 3)
            lm_log("ZeRO-3 (rank 0): %ld gathers, %ld uploads, %ld evictions; gathered chunks at most %.2f MiB\n",
                   zm.gathers, zm.uploads, zm.evictions, (double)zm.slots_peak / 1048576.0);
    }
    if (zm.buckets_peak)
        lm_log("ZeRO-2 gradient buckets: at most %.1f MiB held at once (rank 0)\n",
               (double)zm.buckets_peak / (1024.0 * 1024.0));
    region_report(world);
}

/* Everything train_open opened, in reverse. */
static void train_close(trainer *T) {
    if (T->opened) probe_close(&T->probe);
    sde_reader_stop();
    prof_shutdown();
    metrics_close(T->mlog);
    lm_free(T->deck_text);
    tokrec_free(&T->tok);
}

/* The steps of the open stage from the session's start to the stage's
 * end: train, count, log, checkpoint, check for a stop. The JSONL line of
 * a logged step is written after its checkpoint and the preemption check,
 * so that its SDE counts include them. Returns LM_OK, or LM_STOPPED when a
 * signal or the budget stopped the run. */
static int run_stage(trainer *T, run_totals *tot) {
    const lm_config *c = &T->S.cfg;
    long end = stage_end(&T->deck, T->stage);
    for (long step = T->S.start_step + 1; step <= end; step++) {
        step_result r;
        probe_begin(&T->probe);
        train_step(T, step, &r);
        probe_end(&T->probe, T->batch.targets_global, T->fpt * (double)T->batch.targets_global);
        count_step(T, tot, step, &r);
        /* held-out evaluation after the update: every eval_every steps and
         * at the stage's last step */
        lm_valid_result vr;
        int evaluated = T->valid && ((c->eval_every > 0 && step % c->eval_every == 0) || step == end);
        if (evaluated) valid_run(T->valid, &vr);
        int logged = step % c->log_every == 0 || step == end || evaluated;
        lm_step_metrics sm = {0};
        if (logged) log_step(T, step, &r, &sm);
        if (evaluated) {
            valid_log(T->valid, &vr, step);
            sm.has_val = 1;
            sm.val_loss = vr.loss;
            sm.val_bpb = vr.bpb;
            sm.n_val_cat = vr.n_cat;
            sm.val_cat_names = vr.cat_names;
            sm.val_cat_loss = vr.cat_loss;
            sm.val_cat_bpb = vr.cat_bpb;
        }
        char why[256];
        int stop = checkpoint_or_stop(T, step, why, sizeof why);
        if (logged) {
            probe_after(&T->probe);
            sm.ckpt_ms = T->probe.ckpt_ms;
            sm.n_sde = T->probe.n_sde;
            sm.sde_vals = T->probe.n_sde ? T->probe.sde_vals : NULL;
            metrics_write(T->mlog, &sm);
        }
        if (stop) {
            lm_log("stopped early at step %ld of %ld: %s; the checkpoint of step %ld is written: resubmit the same "
                   "job (checkpoint.restart = auto) to continue (exit 3)\n", step, c->steps, why, step);
            return LM_STOPPED;
        }
    }
    return LM_OK;
}

/* `lamina train`: set up, then each stage from the one the start state is
 * in: open it (from the deck's restart, or the previous stage's last
 * checkpoint), run its steps, close it. Returns LM_OK, or LM_STOPPED. */
int cmd_train(int argc, char **argv) {
    trainer T;
    train_open(&T, argc, argv);
    const lm_config *deck = &T.deck;
    run_totals tot = {.first_loss = NAN, .last_loss = NAN};
    int rc = LM_OK;
    /* the stage to set up: the one after the checkpoint the run resumes from */
    long at = deck->n_stages ? session_restart_step(deck) : -1;
    int k = at >= 0 && at < deck->steps ? deck_stage_of(deck, at + 1) : at >= deck->steps ? deck_stage_of(deck, at) : 0;
    char from[LM_PATHLEN];
    const char *restart = NULL;
    for (;;) {
        int got = stage_open(&T, k, restart);
        if (got != k) { /* the full load fell back to an older checkpoint of another stage */
            lm_log("stage %d: the checkpoint loaded belongs to stage %d; setting that stage up instead\n", k + 1,
                   got + 1);
            stage_close(&T);
            k = got;
            continue;
        }
        rc = run_stage(&T, &tot);
        if (rc != LM_OK || k + 1 >= deck->n_stages || T.S.start_step >= deck->steps) break;
        /* the stage's last checkpoint starts the next stage */
        size_t dl = strnlen(deck->ckpt_dir, 4000); /* checkpoint.dir's limit leaves room for the name */
        memcpy(from, deck->ckpt_dir, dl);
        snprintf(from + dl, sizeof from - dl, "/step_%08ld.h5", stage_end(deck, k));
        lm_log("stage %d/%d done at step %ld\n", k + 1, deck->n_stages, stage_end(deck, k));
        stage_close(&T);
        restart = from;
        k++;
    }
    if (tot.steps) report_run(&T, &tot, lm_now() - T.t_run);
    stage_close(&T);
    train_close(&T);
    return rc;
}
