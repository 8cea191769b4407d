#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# jobscripts/weak.sh — weak-scaling sweep on Slurm: one lamina job per GPU
# count (jobscripts/submit), all into one sweep folder, SWEEP=weak in job.env.
# Weak scaling: the same batch per data-parallel replica (work per GPU fixed).
#
#   jobscripts/weak.sh [options] DECK [section.key=value ...]
#     -l, --gpus "N1 N2 ..."   GPU counts (default LAMINA_SWEEP_GPUS)
#     -b, --batch-per-replica B  sequences per data-parallel replica and step (default: the
#                              deck's global_batch / dp at the first count); global = B x dp
#     -o, --out DIR            the sweep folder (default $LAMINA_RUNS/<name>-weak-<date>)
#     -J, --job-name NAME      job name prefix: jobs are NAME-weak-gNNNN (default: the deck's name)
#     -t, --time T             time limit per job (default LAMINA_TIME)
#     -S, --sbatch OPTION      one more sbatch option for every job (repeatable)
#     -d, --dry-run            print the sbatch commands instead of running them
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
lamina_sweep weak submit "$@"
