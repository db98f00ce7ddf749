#!/bin/bash
# A sweep as a SLURM job array, without dask: element i of n runs the grid points with
# index % n == i (shard="env" reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT), each
# on the cores of its own allocation. Every element writes one result file per point
# into the same folder, which must be on a shared file system.
#
#   sbatch examples/sweep_job_array.sh                      # run (or resume) the sweep
#   sbatch --dependency=afterany:<jobid> --wrap \
#     "python examples/sweep_local.py --out $OUT --merge-only"   # summarise when all ended
#
# Resubmitting the same array after a timeout, a node failure or a failed task redoes
# only what is missing or failed: finished points are skipped. Elements may also run
# with a different array size (e.g. --array=0-3 instead of 0-15): shards are just a
# partition of the grid, and the result files do not depend on it.
#
#SBATCH --job-name=linvae-sweep
#SBATCH --array=0-15
#SBATCH --cpus-per-task=8
#SBATCH --mem-per-cpu=2G
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x_%A_%a.out
#SBATCH --requeue

set -euo pipefail

OUT=${OUT:-$PWD/runs/phase}
THREADS_PER_TASK=${THREADS_PER_TASK:-1}
mkdir -p logs

# One local process per THREADS_PER_TASK cores of this allocation; sweep() sets
# OMP_NUM_THREADS=$THREADS_PER_TASK in its worker processes itself.
python examples/sweep_local.py --out "$OUT" --shard env --threads "$THREADS_PER_TASK"
