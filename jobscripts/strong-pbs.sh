#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# jobscripts/strong-pbs.sh — strong-scaling sweep on PBS Pro / OpenPBS: one lamina job per GPU
# count (jobscripts/submit-pbs), all into one sweep folder, SWEEP=strong in job.env.
# Strong scaling: the same global batch at every count (less work per GPU).
#
#   jobscripts/strong-pbs.sh [options] DECK [section.key=value ...]
#     -l, --gpus "N1 N2 ..."   GPU counts (default LAMINA_SWEEP_GPUS)
#     -g, --global-batch B     the fixed global batch (default: the deck's train.global_batch)
#     -o, --out DIR            the sweep folder (default $LAMINA_RUNS/<name>-strong-<date>)
#     -J, --job-name NAME      job name prefix: jobs are NAME-strong-gNNNN (default: the deck's name)
#     -t, --time T             time limit per job (default LAMINA_TIME)
#     -S, --qsub OPTION        one more qsub option for every job (repeatable)
#     -d, --dry-run            print the qsub commands instead of running them
# dp = GPUs / (tp x pp); every count is checked before anything is submitted.
# Defaults also from the environment of perf/scaling.py submit: GPUS,
# GLOBAL_BATCH, PER_RANK_BATCH, MICRO_BATCH, STEPS (the options win).
# SWEEPDIR/jobs lists gpus, global batch, job id and run folder per job.
# Prints the job ids, one per line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=site.sh
source "$here/site.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
lamina_sweep strong submit-pbs "$@"
