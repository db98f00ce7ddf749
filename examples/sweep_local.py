"""Posterior-collapse phase diagram: a beta x N sweep of one-pass SGD, plus the ODE limit.

Runs on the cores of this machine (``executor="local"``). Interrupt it at any time and
run it again: finished grid points are skipped. The same script is what each element of
a SLURM job array runs (see ``sweep_job_array.sh``), with ``--shard env``.

    python examples/sweep_local.py                  # full grid, all cores
    python examples/sweep_local.py --quick          # small N, a few seconds
    python examples/sweep_local.py --shard 0/4      # a quarter of the grid
    python examples/sweep_local.py --merge-only     # just read and summarise the results

For rho = eta = 1 the collapsed state is stable for beta > rho + eta = 2
(docs/model.md#findings): at beta = 2.5 the overlap m decays to 0, below it SGD learns
the teacher.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import linvae
from linvae.sweeps import Grid, open_sweep, sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/phase"), help="output folder")
    ap.add_argument("--quick", action="store_true", help="small N and short runs")
    ap.add_argument("--shard", default=None,
                    help="'i/n' to run every n-th point from i, or 'env' in a SLURM job array")
    ap.add_argument("--workers", type=int, default=None, help="local processes")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads per task")
    ap.add_argument("--merge-only", action="store_true", help="do not run, only summarise")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, lam=0.0, tau=0.5)
    Ns = [300, 1_000] if args.quick else [1_000, 10_000]
    t_max = 20.0 if args.quick else 40.0
    grid = Grid(beta=[0.5, 1.0, 1.5, 2.5], N=Ns, replicas=4 if args.quick else 8)
    shard: tuple[int, int] | str | None = None
    if args.shard == "env":
        shard = "env"
    elif args.shard:
        i, n = (int(x) for x in args.shard.split("/"))
        shard = (i, n)

    if not args.merge_only:
        res = sweep(p, grid, "simulate", out=args.out / "sgd", executor="local",
                    max_workers=args.workers, threads_per_task=args.threads, shard=shard,
                    t_max=t_max, record_every=0.5, seed=1)
        print(res)
        # the N -> infinity limit from a prescribed start with overlap 0.2 (cheap: serial)
        ode = sweep(p, Grid(beta=grid.axes["beta"]), "ode", out=args.out / "ode",
                    executor="serial", t_max=t_max, record_every=0.5, init=0.2)
        print(ode)
        if shard is not None:
            return  # merge once every shard has finished

    sgd = open_sweep(args.out / "sgd")
    print(sgd.status.to_pandas())
    final = abs(sgd.m.isel(t=-1, latent=0, factor=0)).mean("replica")
    print("\n|m| at t_max, mean over replicas (rows beta, columns N):")
    print(final.to_pandas().round(3))
    ode_ds = open_sweep(args.out / "ode")
    print("\nODE limit m(t_max):")
    print(ode_ds.m.isel(t=-1, latent=0, factor=0).to_pandas().round(3))


if __name__ == "__main__":  # required: the local pool starts fresh worker processes
    main()
