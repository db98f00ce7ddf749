"""A sweep on a SLURM cluster through dask-jobqueue (not run by the tests).

Needs ``pip install 'linvae[dask]' dask-jobqueue`` on the login node and the compute
nodes, and an output folder on a file system that every node sees (the workers write
the result files themselves). Run it on the login node (or in a small long-running job):

    python examples/sweep_slurm.py --out /scratch/$USER/linvae/phase

dask-jobqueue submits worker jobs with sbatch; each worker job runs ``processes`` dask
workers with ``cores // processes`` threads each. A grid point is one dask task that
uses ``threads_per_task`` OpenMP threads, so each worker process gets one dask thread
and ``threads_per_task`` booked cores (``job_cpu = processes * threads_per_task``).

If the scheduler or this script dies, run it again: finished points are skipped. A
worker that dies mid-task (node failure, out of memory) is retried by dask on another
worker; after ``distributed.scheduler.allowed-failures`` deaths the point is recorded as
failed (``KilledWorker``) and the next run retries it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import linvae
from linvae.sweeps import Grid, sweep

THREADS_PER_TASK = 4  # OpenMP threads of one simulation (over its replicas)
PROCESSES_PER_JOB = 8  # dask worker processes per SLURM job (one task each at a time)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (shared FS)")
    ap.add_argument("--jobs", type=int, default=4, help="SLURM jobs (nodes) to start")
    ap.add_argument("--queue", default=None, help="SLURM partition")
    ap.add_argument("--account", default=None, help="SLURM account")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        # cores / processes = 1 dask thread per worker process: one task at a time ...
        cores=PROCESSES_PER_JOB,
        processes=PROCESSES_PER_JOB,
        # ... but book THREADS_PER_TASK cores for each, for the task's OpenMP threads
        # (sweep passes them as simulate(threads=...); the nanny's OMP_NUM_THREADS=1
        # default then only keeps BLAS and other libraries single-threaded)
        job_cpu=PROCESSES_PER_JOB * THREADS_PER_TASK,
        memory="64GB",
        walltime="04:00:00",
        log_directory=str(args.out / "dask-logs"),
    )
    cluster.scale(jobs=args.jobs)

    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, lam=0.0, tau=0.5)
    grid = Grid(beta=[0.25 * k for k in range(1, 13)], N=[1_000, 10_000, 100_000], replicas=16)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        res = sweep(p, grid, "simulate", out=args.out, executor=client,
                    threads_per_task=THREADS_PER_TASK, t_max=40.0, record_every=0.5)
    cluster.close()
    print(res)
    if res.ok:
        ds = res.open()
        linvae.io.save(ds, args.out / "merged.nc")
        print("merged dataset:", args.out / "merged.nc")


if __name__ == "__main__":
    main()
