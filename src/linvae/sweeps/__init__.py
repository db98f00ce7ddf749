"""Parameter sweeps that scale out and survive failure.

A sweep runs one *task* (``"simulate"``, ``"ode"``, ``"stability"``, or any registered
one) at every point of a :class:`Grid` of model parameters and run settings. Each point
writes its own result file ``<key>.nc`` atomically, where ``key`` is a stable hash of the
point's full parameter set, so that

- a re-run skips points whose result file exists and validates: an interrupted or killed
  sweep resumes where it stopped, and a grid that grows reuses what it shares;
- a point that raises is recorded in ``<key>.error.json`` (error text, traceback,
  parameters) while the others go on; the next run retries it;
- points are independent, so they run on a local process pool, on a
  ``dask.distributed`` cluster, or split over the elements of a SLURM job array
  (``shard=(i, n)`` or ``shard="env"``).

:func:`open_sweep` stacks all result files into one labelled dataset with the grid axes
as new dimensions and a ``status`` variable ("ok", "failed", "missing") over the grid.

The grid itself is saved in ``<out>/sweep.json`` when a sweep starts.

Modules: :mod:`~linvae.sweeps.hashing` (canonical values, point keys),
:mod:`~linvae.sweeps.grid`, :mod:`~linvae.sweeps.tasks` (the task registry and the
built-in tasks), :mod:`~linvae.sweeps.executors` (where the points run, sharding),
:mod:`~linvae.sweeps.store` (the sweep folder's files, merging) and
:mod:`~linvae.sweeps.runner` (:func:`sweep`).
"""

from __future__ import annotations

from .executors import shard_from_env
from .grid import Grid, _Block
from .hashing import PARAM_FIELDS, point_key
from .runner import sweep
from .store import SweepResult, TaskFailure, open_sweep
from .tasks import register_task, registered_tasks, task_cli_settings

__all__ = [
    "PARAM_FIELDS",
    "Grid",
    "SweepResult",
    "TaskFailure",
    "open_sweep",
    "point_key",
    "register_task",
    "registered_tasks",
    "shard_from_env",
    "sweep",
    "task_cli_settings",
]

# Pickles of these name their classes in linvae.sweeps, as before the package was split:
# old pickles load, and new ones load where the package is older.
for _cls in (Grid, _Block, SweepResult, TaskFailure):
    _cls.__module__ = __name__
del _cls
