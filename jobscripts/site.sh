# shellcheck shell=bash
# jobscripts/site.sh — every site-specific value of the lamina job scripts.
#
# Sourced by submit, submit-pbs, the sweeps and, inside the job, by
# lamina.sbatch and lamina.pbs. Edit the defaults below once per cluster.
# Every value can also be set from the environment (LAMINA_TIME=4:00:00 submit ...):
# the `: "${VAR=default}"` form keeps a value that is already set, even an
# empty one (empty = "none" for the lists and optional values). submit and
# submit-pbs export every LAMINA_* value to the job, so the job sees exactly
# what was resolved at submission, even if this file changes in between or the
# job is requeued later.
#
# The defaults describe a typical 8-GPU node (4 GPUs per socket, 2 sockets,
# >= 64 cores) with Open MPI built against PMIx and Slurm.

# --- where and as whom -------------------------------------------------------
: "${LAMINA_ACCOUNT=}"            # Slurm --account / PBS -A (empty: your default account)
: "${LAMINA_PARTITION=}"          # Slurm --partition (empty: the cluster's default partition)
: "${LAMINA_QOS=}"                # Slurm --qos (empty: the account's default QOS)
: "${LAMINA_PBS_QUEUE=}"          # PBS -q queue (empty: the server's default queue)
: "${LAMINA_PBS_PLACE=scatter:excl}"  # PBS -l place=: one chunk per node, nodes not shared (empty: the server's)
: "${LAMINA_TIME=02:00:00}"       # wall-clock limit per attempt, [D-]HH:MM:SS (PBS: HH:MM:SS)
: "${LAMINA_MEM=}"                # Slurm --mem per node, e.g. 480G (empty: the partition default)
: "${LAMINA_SBATCH_EXTRA=}"       # more sbatch options, e.g. "--constraint=a100_80g --exclusive"
: "${LAMINA_QSUB_EXTRA=}"         # more qsub options, e.g. "-l place=scatter:excl"

# --- software ----------------------------------------------------------------
: "${LAMINA_MODULE_INIT=}"        # file to source if `module` is not defined in the batch shell
                                   # (e.g. /etc/profile.d/lmod.sh); empty: try the usual places
: "${LAMINA_MODULES=}"            # modules to load, in order, e.g. "gcc/12 openmpi/4.1 hdf5-mpi/1.14 cuda/12.4 nccl/2.21"
: "${LAMINA_ENV=}"                # extra NAME=VALUE words exported to every rank, e.g. "NCCL_IB_HCA=mlx5 NCCL_DEBUG=WARN"
_lamina_site_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LAMINA_JOBSCRIPTS=$_lamina_site_dir}"                # this folder (the jobs source site.sh and lib.sh from it)
: "${LAMINA_BIN=$(dirname "$_lamina_site_dir")/build/lamina}"  # the lamina binary (default: this checkout's build)
: "${LAMINA_RUNS=${HOME:-/tmp}/lamina-runs}"              # run root: each job writes $LAMINA_RUNS/<jobname>-<jobid>/
                                   # (put it on the parallel file system: checkpoints are written collectively)

# --- the node and one rank ---------------------------------------------------
: "${LAMINA_GPUS_PER_NODE=8}"     # GPUs per node (0: CPU nodes); one rank per GPU
: "${LAMINA_RANKS_PER_NODE=$(( LAMINA_GPUS_PER_NODE > 0 ? LAMINA_GPUS_PER_NODE : 1 ))}"  # MPI ranks per node
: "${LAMINA_CPUS_PER_TASK=8}"     # cores per rank = OMP_NUM_THREADS (cores per node / ranks per node;
                                   # on GPU nodes the host side needs few, but the OpenMP CPU ops use them all)
: "${LAMINA_DEVICE=cuda}"         # train.device given to lamina (cuda, cpu; empty: the deck's value)

# --- launch and binding ------------------------------------------------------
# LAMINA_LAUNCHER: srun (Slurm only; PMIx wire-up, no mpirun daemons),
# mpirun or mpiexec (Open MPI: reads the Slurm or PBS (tm) allocation itself).
: "${LAMINA_LAUNCHER=srun}"
: "${LAMINA_SRUN_MPI=pmix}"       # srun --mpi= plugin: pmix (Open MPI 4/5 built with PMIx), pmi2; `srun --mpi=list`
# srun flags. --cpu-bind=cores pins each rank to its -c cores (block distribution:
# rank i gets the i-th group, so ranks 0-3 sit on socket 0 next to GPUs 0-3 on the
# usual 8-GPU boards). GPUs: see LAMINA_GPU_BIND.
: "${LAMINA_SRUN_FLAGS=--cpu-bind=cores --distribution=block:block}"
# LAMINA_GPU_BIND (srun): `node` = every rank sees all GPUs of its node and lamina
# takes GPU (local rank mod GPUs), which keeps NVLink/P2P between the ranks of a
# node (NCCL's fastest path); `task` = srun --gpus-per-task=1 --gpu-bind=closest:
# each rank sees only the GPU nearest its cores (as device 0; lamina then takes
# it), which is what some sites require, but device cgroups may then hide the
# peer GPUs from NCCL.
: "${LAMINA_GPU_BIND=node}"
# mpirun / mpiexec flags; {ranks} {rpn} {cpt} {nodes} {nodefile} are filled in by the job:
# ppr:{rpn}:node places {rpn} consecutive ranks per node, PE={cpt} gives each
# {cpt} cores and binds it to them (Open MPI 4.x syntax). MPICH/Cray/Intel MPI:
# replace with their equivalents (e.g. "-n {ranks} -ppn {rpn} --cpu-bind depth -d {cpt}")
# and set LAMINA_MPI_EXPORT to their per-variable export flag or empty.
_lamina_d='-np {ranks} --map-by ppr:{rpn}:node:PE={cpt} --bind-to core'
: "${LAMINA_MPIRUN_FLAGS=$_lamina_d}"
# PBS: the launcher and its flags ({nodefile} = $PBS_NODEFILE: Open MPI built
# without PBS (tm) support learns the hosts from it; with tm it is harmless).
: "${LAMINA_PBS_LAUNCHER=mpiexec}"
_lamina_d='-np {ranks} --hostfile {nodefile} --map-by ppr:{rpn}:node:PE={cpt} --bind-to core'
: "${LAMINA_MPIEXEC_FLAGS=$_lamina_d}"
: "${LAMINA_MPI_EXPORT=-x}"       # mpirun flag that exports one variable to remote ranks (Open MPI: -x NAME)

# --- preemption, time limit, requeue ------------------------------------------
# Seconds before the time limit at which the batch shell gets SIGUSR1 (Slurm
# --signal=B:USR1@N; PBS: lamina's train.max_minutes = walltime - N). Must cover
# one training step plus one checkpoint write of the whole model state
# (16 bytes/parameter with AdamW: a 7B model writes ~112 GB), plus Slurm's
# up-to-60-s early delivery.
: "${LAMINA_SIGNAL_SECS=600}"
: "${LAMINA_MAX_REQUEUES=50}"     # give up requeueing after this many restarts (a guard against loops)
: "${LAMINA_REQUEUE_ON_TERM=0}"   # 1: requeue also after SIGTERM (scancel, preemption, time limit); 0: only
                                   # after SIGUSR1 or train.max_minutes (the scheduler requeues preempted jobs itself)
: "${LAMINA_PBS_RESUBMIT=1}"      # PBS: when qrerun is refused (it needs operator rights on most servers),
                                   # submit a successor job into the same run folder instead

# --- scaling sweeps (strong.sh, weak.sh, strong-pbs.sh, weak-pbs.sh) ------------
: "${LAMINA_SWEEP_GPUS=8 16 32 64 128 256 512}"  # GPU counts, one job each (-l overrides)

unset _lamina_site_dir _lamina_d
# Every LAMINA_* value goes to the job (Slurm: sbatch --export=ALL; PBS: the
# submission file submit-pbs writes).
export LAMINA_ACCOUNT LAMINA_PARTITION LAMINA_QOS LAMINA_PBS_QUEUE LAMINA_PBS_PLACE LAMINA_TIME LAMINA_MEM \
  LAMINA_SBATCH_EXTRA LAMINA_QSUB_EXTRA LAMINA_MODULE_INIT LAMINA_MODULES LAMINA_ENV LAMINA_JOBSCRIPTS \
  LAMINA_BIN LAMINA_RUNS LAMINA_GPUS_PER_NODE LAMINA_RANKS_PER_NODE LAMINA_CPUS_PER_TASK LAMINA_DEVICE \
  LAMINA_LAUNCHER LAMINA_PBS_LAUNCHER LAMINA_SRUN_MPI LAMINA_SRUN_FLAGS LAMINA_GPU_BIND LAMINA_MPIRUN_FLAGS LAMINA_MPIEXEC_FLAGS \
  LAMINA_MPI_EXPORT LAMINA_SIGNAL_SECS LAMINA_MAX_REQUEUES LAMINA_REQUEUE_ON_TERM LAMINA_PBS_RESUBMIT LAMINA_SWEEP_GPUS
