""":func:`sweep`: a task at every point of a grid, each point in its own result file."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._validate import check_int
from ..params import Params, check_params
from .executors import (
    _check_dask_workers,
    _check_executor_size,
    _check_importable,
    _check_shard,
    _dask_client,
    _execute,
    _is_dask_client,
    _Job,
    _local_workers,
    _needs_main,
    _Outcome,
    _run_futures,
    _run_local,
    _run_serial,
    _unguarded_call_site,
    _warn_oversubscribed,
    usable_cpus,
)
from .grid import Grid
from .hashing import PARAM_FIELDS, _encode, _job_key, _xarray
from .store import SweepResult, TaskFailure, _error_path, _result_valid, _write_spec
from .tasks import _get_task, _Task

log = logging.getLogger("linvae.sweeps")


def _settings_for(grid: Grid, task: _Task, task_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    task.check_settings(list(task_kwargs), "setting")
    task.check_settings([n for n in grid.names if n not in PARAM_FIELDS], "grid axis")
    both = sorted(set(task_kwargs) & set(grid.names))
    if both:
        raise ValueError(f"{both[0]!r} is both a grid axis and a fixed setting; give it once")
    fixed = dict(task_kwargs)
    if grid.replicas is not None:
        if "replicas" in fixed:
            raise ValueError("replicas is given both in the grid and to sweep(); give it once")
        task.check_settings(["replicas"], "setting (grid replicas)")
        fixed["replicas"] = grid.replicas
    xr = _xarray()
    for k, v in fixed.items():
        if xr is not None and isinstance(v, xr.Dataset):  # a state: its order parameters
            from ..dataset import state_of

            fixed[k] = state_of(v)
        _encode(fixed[k], k)
    return fixed


def _jobs(p: Params, grid: Grid, task: _Task, fixed: Mapping[str, Any],
          out: Path, threads: int) -> list[_Job]:
    jobs: list[_Job] = []
    keys: dict[str, int] = {}
    for i, point in enumerate(grid):
        changes = {k: v for k, v in point.items() if k in PARAM_FIELDS}
        try:
            params = p.replace(**changes) if changes else p
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid point {i} ({point}) gives invalid parameters: {exc}") \
                from None
        settings = task.bind({**fixed, **{k: v for k, v in point.items()
                                          if k not in PARAM_FIELDS}})
        key = _job_key(task.name, params, settings)
        if key in keys:
            raise ValueError(f"grid points {keys[key]} and {i} ({point}) are the same task")
        keys[key] = i
        jobs.append(_Job(index=i, key=key, task=task.name, fn=task.fn, params=params,
                         settings=settings, point=point, out=str(out),
                         threads=threads if task.takes_threads else None))
    return jobs


def sweep(p: Params, grid: Grid, task: str = "simulate", *, out: str | os.PathLike[str],
          executor: Any = "local", max_workers: int | None = None, threads_per_task: int = 1,
          shard: tuple[int, int] | str | None = None, retry_failed: bool = True,
          progress: bool = True, **task_kwargs: Any) -> SweepResult:
    """Run ``task`` at every point of ``grid``, each writing its own result file.

    Parameters
    ----------
    p : Params
        Base parameters; grid axes that are Params fields replace them point by point.
    grid : Grid
        The points.
    task : str
        ``"simulate"`` (:func:`linvae.simulate`, settings N, t_max, record_every, seed,
        init, dtype, times, blowup, method; ``grid.replicas`` is its ``seeds``), ``"ode"``
        (:func:`linvae.integrate`, settings t_max, init, record_every, method, rtol,
        atol, t_eval, on_unphysical, psd_tol), ``"stability"`` (from the stability
        module), or any task added with :func:`register_task`.
    out : path
        Output folder (created). Holds ``sweep.json`` (the grid), ``<key>.nc`` per point
        and ``<key>.error.json`` per failed point. Must be on a file system that every
        worker sees.
    executor : "local", "serial", "dask", dask Client, or concurrent.futures.Executor
        ``"local"``: a pool of processes on this machine (no extra install); a worker
        that dies takes only its own task down (see Notes). ``"serial"``: in this
        process, one task after another (debugging; exceptions keep their traceback in
        the error records). A ``dask.distributed.Client`` (or ``"dask"`` for the current
        one) runs each point as a dask task; dask is imported only then.
    max_workers : int, optional
        Processes of the local pool; default: usable cores // threads_per_task, >= 1,
        where the usable cores are this process's CPU affinity capped by its SLURM
        allocation (:func:`linvae.sweeps.executors.usable_cpus`).
    threads_per_task : int
        OpenMP threads per task: passed to the task (``simulate(threads=...)``) and set
        as ``OMP_NUM_THREADS`` in the local pool's workers. When the tasks running at
        once times ``threads_per_task`` exceed the usable cores (of this process, or of
        each dask worker's CPU set), a warning is logged and the sweep runs as asked.
    shard : (i, n), "env" or None
        Run only the points with index % n == i (index in row-major grid order); "env"
        takes (i, n) from the SLURM job-array variables (:func:`shard_from_env`). Each
        element of a job array sizes its local pool by its own allocation.
    retry_failed : bool
        Rerun points that failed before (default); False skips them.
    progress : bool
        Show a progress bar over the tasks.
    **task_kwargs
        Fixed settings of the task, the same at every point (e.g. ``N=1000,
        t_max=10.0`` for "simulate"). A setting is either a grid axis or fixed, not both.

    Returns
    -------
    SweepResult
        Counts, failures and ``.open()`` for the merged dataset (:func:`open_sweep`).

    Notes
    -----
    A point is skipped when its result file exists, opens and carries its key; so
    re-running the same call after an interruption, a crash or a failed task does only
    what is missing. Diverged replicas are data, not failures.

    With the local pool, a worker process that dies (killed, out of memory, crash)
    breaks the pool; the tasks then in flight are rerun one at a time, and one whose
    worker dies again when alone is recorded as failed, so the next run retries it.

    Per-point seeds: every point uses the same ``seed`` unless ``seed`` is a grid axis,
    so points differ only by their parameters (common random numbers).
    """
    from tqdm.auto import tqdm

    from ..io import check_output_folder

    t0 = time.perf_counter()
    p = check_params(p)
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a linvae.Grid, got {type(grid).__name__}")
    spec_task = _get_task(task)
    threads = check_int("threads_per_task", threads_per_task, ge=1)
    if max_workers is not None:
        max_workers = check_int("max_workers", max_workers, ge=1)
    shard_ = _check_shard(shard)
    is_client = not isinstance(executor, str) and _is_dask_client(executor)
    if isinstance(executor, str):
        if executor not in ("local", "serial", "dask"):
            raise ValueError(f"executor must be 'local', 'serial', 'dask', a dask Client or a "
                             f"concurrent.futures.Executor, got {executor!r}")
    elif not is_client and not isinstance(executor, cf.Executor):
        raise TypeError(f"executor must be 'local', 'serial', 'dask', a dask Client or a "
                        f"concurrent.futures.Executor, got {type(executor).__name__}")
    if executor == "local":
        _check_importable(spec_task)
    client = _dask_client(executor) if is_client or executor == "dask" else None
    fixed = _settings_for(grid, spec_task, task_kwargs)
    out_path = check_output_folder(out, "sweep output folder")
    jobs = _jobs(p, grid, spec_task, fixed, out_path.absolute(), threads)
    import_main = executor == "local" and _needs_main(jobs)
    if import_main and (where := _unguarded_call_site()) is not None:
        raise ValueError(
            f"the sweep is started at the top level of the script {where} without "
            f"'if __name__ == \"__main__\":', and its task {task!r} (or a value of the "
            f"grid) is defined in that script, so every worker process, which imports the "
            f"script to find it, would start the sweep again; put the sweep under that "
            f"guard, move the definition to a module, or use executor='serial'")

    out_path.mkdir(parents=True, exist_ok=True)
    _write_spec(out_path, spec_task.name, p, fixed, grid, [j.key for j in jobs])

    selected = jobs if shard_ is None else [j for j in jobs if j.index % shard_[1] == shard_[0]]
    todo, skipped = [], 0
    for job in selected:
        if _result_valid(out_path, job.key):
            skipped += 1
            _error_path(out_path, job.key).unlink(missing_ok=True)
        elif not retry_failed and _error_path(out_path, job.key).exists():
            continue
        else:
            todo.append(job)
    shard_txt = "" if shard_ is None else f" (shard {shard_[0]} of {shard_[1]})"
    log.info("sweep %r: %d grid points%s -> %s; %d already done, %d to run", task, len(jobs),
             shard_txt, out_path, skipped, len(todo))

    counts = {"done": 0, "diverged": 0}
    failures: list[TaskFailure] = []
    by_index = {j.index: j for j in todo}
    bar = tqdm(total=skipped + len(todo), initial=skipped, unit="task", desc=f"sweep {task}",
               disable=None if progress else True)

    def report(outcome: _Outcome) -> None:
        job = by_index[outcome.index]
        if outcome.ok:
            counts["done"] += 1
            counts["diverged"] += outcome.diverged
            log.debug("task %d (%s) done in %.2f s", job.index, job.point, outcome.seconds)
        else:
            failures.append(TaskFailure(job.index, job.key, job.point, outcome.error))
            log.warning("task %d (%s) failed: %s", job.index, job.point, outcome.error)
            bar.set_postfix(failed=len(failures))
        bar.update(1)

    try:
        if not todo:
            pass
        elif executor == "serial":
            cpus = usable_cpus()
            _warn_oversubscribed("the serial executor", 1, threads, cpus,
                                 f"lower threads_per_task to at most {cpus}")
            _run_serial(todo, report)
        elif executor == "local":
            workers = _local_workers(max_workers, threads, len(todo))
            log.info("running %d task(s) on %d local process(es), %d thread(s) each",
                     len(todo), min(workers, len(todo)), threads)
            _run_local(todo, workers, threads, report, import_main=import_main)
        elif client is not None:
            import distributed

            _check_dask_workers(client, threads)
            run_id = os.urandom(4).hex()
            _run_futures(todo, lambda j: client.submit(_execute, j, pure=False, retries=0,
                                                       key=f"linvae-{j.task}-{j.key}-{run_id}"),
                         distributed.as_completed, report)
        else:
            _check_executor_size(executor, threads, len(todo))
            _run_futures(todo, lambda j: executor.submit(_execute, j), cf.as_completed, report)
    finally:
        bar.close()

    failures.sort(key=lambda f: f.index)
    result = SweepResult(out=out_path, task=spec_task.name, total=len(jobs),
                         selected=len(selected), done=counts["done"], skipped=skipped,
                         failures=tuple(failures), diverged=counts["diverged"], shard=shard_,
                         seconds=time.perf_counter() - t0)
    if failures:
        log.warning("sweep %r: %d of %d task(s) failed (errors in %s/*.error.json); run the "
                    "sweep again to retry them", task, len(failures), len(todo), out_path)
    if counts["diverged"]:
        log.info("sweep %r: %d replica(s) diverged (recorded in the data, variable "
                 "'diverged')", task, counts["diverged"])
    log.info("%r", result)
    return result
