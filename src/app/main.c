/* main.c — the lamina executable: MPI start-up and subcommand dispatch. */
#include "cmds.h"
#include "comm.h"
#include "common.h"
#include "metrics.h"
#include "preempt.h"
#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>
#include <string.h>
#ifdef LAMINA_CUDA
#include "cuda_info.h"
#endif

static void print_version(void) {
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    char *nl = strchr(mpi, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(mpi, ',');
    if (comma) *comma = 0;
    unsigned hmaj, hmin, hrel;
    H5get_libversion(&hmaj, &hmin, &hrel);
    lm_log("lamina %s (git %s)\n", LAMINA_VERSION, LAMINA_GIT);
    lm_log("backends:\n  cpu: float32, OpenBLAS (%s), OpenMP; bf16 emulation (train.precision = bf16)\n",
           openblas_get_config());
#ifdef LAMINA_CUDA
    char desc[2048], why[256], rt[32];
    lm_cuda_runtime_version(rt, sizeof rt);
    int n = lm_cuda_devices(desc, sizeof desc, why, sizeof why);
    int nccl = lm_nccl_version();
    lm_log("  cuda: bf16 compute, fp32 master weights; cuBLASLt GEMMs, flash attention (head_dim 64, 128), "
           "NCCL %d.%d.%d; built for %s (runtime %s)\n",
           nccl / 10000, nccl / 100 % 100, nccl % 100, LAMINA_CUDA_ARCH, rt);
    char ltwhy[512];
    if (lm_cublaslt_available(ltwhy, sizeof ltwhy)) lm_log("  cuBLASLt: loads (opened at the first GPU's creation)\n");
    else lm_log("  cuBLASLt: %s\n", ltwhy);
    if (n < 0) lm_log("  cuda devices: none usable (%s)\n", why);
    else lm_log("  cuda devices: %d\n%s", n, desc);
#else
    lm_log("  cuda: not built (no nvcc at build time, or CUDA=0)\n");
#endif
    lm_log("mpi: %s\nhdf5: %u.%u.%u (parallel)\npapi: %s\n", mpi, hmaj, hmin, hrel, papi_version_string());
}

static const char *usage_top =
    "usage: lamina <command> [args]\n"
    "  train DECK [section.key=value ...]   train or continue training per the input deck\n"
    "  prep --seq-len N -o OUT.h5 FILE...   text or JSONL into a token file\n"
    "  generate DECK [overrides] [--prompt TEXT|-] [--max-new-tokens N] [--temperature T] [--top-k K]\n"
    "           [--top-p P] [--seed S] [--no-cache]\n"
    "                                       sample text from the deck's latest checkpoint\n"
    "  plan DECK|PRESET --cluster FILE --gpus N[,N...]  predict memory and step time of every layout\n"
    "  convert --from-hf DIR -o FILE.h5 | --to-hf FILE.h5 -o DIR [--dtype D] [--shard-size B]\n"
    "                                       Hugging Face folders to and from checkpoints\n"
    "  vocab encode|decode|stats|train|expand|resize ...  SentencePiece tokenizers (lamina help vocab)\n"
    "  eval DECK|FILE.h5|HFDIR --task mc:FILE.jsonl|ppl:FILE ... [-o OUT.json]\n"
    "                                       multiple-choice accuracy and perplexity (lamina help eval)\n"
    "  help [command]                       this text, or a command's\n"
    "  --version                            version and build features\n"
    "Launch with mpirun -np N (or srun); every rank runs the same command.\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 bad input, 3 stopped early after a checkpoint.\n";

static void help(const char *cmd) {
    if (!cmd) lm_log("%s", usage_top);
    else if (!strcmp(cmd, "train"))
        lm_log("usage: lamina train DECK [section.key=value ...]\n"
               "  Trains per the INI deck DECK; any key may be overridden as section.key=value.\n"
               "  Resumes from checkpoint.dir/latest when checkpoint.restart = auto (the default).\n"
               "  Every key is listed in inputs/DECK.md; the resolved deck is printed at start.\n");
    else if (!strcmp(cmd, "prep")) {
        char *av[] = {"--help"};
        cmd_prep(1, av);
    } else if (!strcmp(cmd, "generate"))
        lm_log("usage: lamina generate DECK [section.key=value ...] [--prompt TEXT|-] [--max-new-tokens N]\n"
               "                       [--temperature T] [--top-k K] [--top-p P] [--seed S] [--no-cache]\n"
               "  Loads the model of DECK (checkpoint.dir/latest, else train.init) and prints a\n"
               "  sample that continues TEXT (-: stdin), with a KV cache. Defaults: 200 tokens,\n"
               "  temperature 0.8 (0 = greedy), top-k 40 (0 = all), top-p 1; the seed is train.seed.\n");
    else if (!strcmp(cmd, "plan"))
        lm_log("usage: lamina plan DECK|PRESET --cluster FILE|NAME --gpus N[,N...] [--global-batch B]\n"
               "                   [--seq-len T] [--top K] [--calibration FILE] [section.key=value ...]\n"
               "       lamina plan --deck DECK --cluster FILE|NAME [--gpus N] [section.key=value ...]\n"
               "  Predicts memory per GPU and step time of every dp x tp x pp layout (with the schedule, sp,\n"
               "  ZeRO stage 0-3, offload to host memory, micro-batch and recompute) of the model on N GPUs\n"
               "  of the cluster FILE (or inputs/clusters/NAME.ini), prints the fastest that fit and a\n"
               "  recommended line with the overrides to run it. PRESET: tiny, llama2-7b, llama2-13b,\n"
               "  llama2-70b (default batch 4M tokens). Overrides of parallel.tp/pp/virtual_stages/schedule/\n"
               "  sp/zero/offload/offload_frac/prefetch and train.micro_batch/recompute fix that choice.\n"
               "  --deck: the deck's own layout: device and host memory by category, fits, step time, MFU.\n"
               "  Calibration: perf/plan_calibration.ini. Method and validation: perf/PLAN.md.\n");
    else if (!strcmp(cmd, "convert"))
        lm_log("usage: lamina convert --from-hf DIR -o FILE.h5\n"
               "       lamina convert --to-hf FILE.h5 -o DIR [--dtype bf16|fp16|fp32] [--shard-size BYTES]\n"
               "                      [--tokenizer MODEL]\n"
               "  --from-hf: a LlamaForCausalLM folder (config.json, model.safetensors or shards with\n"
               "  model.safetensors.index.json; F32, BF16, F16) becomes a step-0 checkpoint (any number of\n"
               "  ranks, each reads its share). --to-hf: config.json, generation_config.json and safetensors\n"
               "  shards of at most --shard-size bytes (default 5G; K/M/G/T = x1000, KiB/MiB/GiB/TiB = x1024),\n"
               "  dtype bf16 by default. train.init also accepts such a folder directly.\n");
    else if (!strcmp(cmd, "eval"))
        lm_log("usage: lamina eval (DECK | FILE.h5 | HFDIR) --task KIND:FILE ... [--tokenizer M] [-o OUT.json]\n"
               "                   [--shots K] [--batch N] [--lang en|zh|auto] [section.key=value ...]\n"
               "  Scores the model of DECK (checkpoint.dir/latest, else train.init), of a checkpoint file or of\n"
               "  a Hugging Face folder, on any layout (overrides set parallel.* and train.device/precision).\n"
               "  mc:FILE.jsonl: multiple choice (SPEC section 10: letter scores, and the length-normalised\n"
               "  log-likelihood of each choice beside them); ppl:FILE (.jsonl with \"text\"/\"category\", or\n"
               "  plain text): loss, perplexity and bits per byte per category. The context is train.seq_len\n"
               "  (default for a file or folder: model.max_seq_len). --shots K: at most K dev items (default\n"
               "  all); --batch N: rows per forward per data-parallel rank (default 4). Details: src/app/CLI.md.\n");
    else if (!strcmp(cmd, "vocab")) {
        char *av[] = {"--help"};
        cmd_vocab(1, av);
    } else lm_fail(LM_ERR_INPUT, "help: unknown command '%s'\n%s", cmd, usage_top);
}

int main(int argc, char **argv) {
    /* Stop requests are recorded from the first instant (preempt.h); again
     * after MPI_Init in case the MPI library installed its own handler. */
    preempt_install();
    comm_init(&argc, &argv);
    preempt_install();
    if (argc < 2 || strcmp(argv[1], "train")) preempt_uninstall(); /* only train polls for a stop */
    int rc = 0;
    if (argc < 2) {
        if (lm_world_rank() == 0) fputs(usage_top, stderr);
        lm_fail(LM_ERR_INPUT, "no command given");
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) print_version();
    else if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) help(argc > 2 ? argv[2] : NULL);
    else if (!strcmp(cmd, "train")) rc = cmd_train(argc - 2, argv + 2);
    else if (!strcmp(cmd, "prep")) rc = cmd_prep(argc - 2, argv + 2);
    else if (!strcmp(cmd, "generate")) rc = cmd_generate(argc - 2, argv + 2);
    else if (!strcmp(cmd, "plan")) rc = cmd_plan(argc - 2, argv + 2);
    else if (!strcmp(cmd, "convert")) rc = cmd_convert(argc - 2, argv + 2);
    else if (!strcmp(cmd, "vocab")) rc = cmd_vocab(argc - 2, argv + 2);
    else if (!strcmp(cmd, "eval")) rc = cmd_eval(argc - 2, argv + 2);
    else lm_fail(LM_ERR_INPUT, "unknown command '%s' (see lamina help)", cmd);
    comm_finalize();
    return rc;
}
