"""Sweep tasks for the tests, in a plain module on the tests' path (``pythonpath`` in
pyproject.toml): the spawned workers of the local pool import a task function by its
module, and a test module's name depends on pytest's import mode."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

import linvae


def crashy_task(params: linvae.Params, *, N: int, t_max: float, marker: str,
                threads: int | None = None) -> xr.Dataset:
    """Counts its attempts; kills its worker (os._exit) while the file crash-<beta> exists,
    or once if crash-once-<beta> exists (removing it)."""
    folder, beta = Path(marker), repr(params.beta_inf)
    count = folder / f"attempts-{beta}"
    count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
    once = folder / f"crash-once-{beta}"
    if once.exists():
        once.unlink()
        os._exit(3)
    if (folder / f"crash-{beta}").exists():
        os._exit(3)
    ds = linvae.simulate(params, N, t_max, 0.5, threads=threads, progress=False)
    return ds.assign_attrs(omp=os.environ.get("OMP_NUM_THREADS", ""), threads=threads)
