"""Running the points of a sweep.

In this process, on a local process pool, on dask or any concurrent.futures executor, or
one shard of them per element of a SLURM job array.

Every point runs as :func:`_execute`, which writes the point's result or its error
record and never raises; the local pool also survives worker processes that die.
xarray is imported by the workers, dask only when a sweep runs on it.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import pickle
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validate import check_int
from .store import _write_error, _write_result
from .tasks import _Task

if TYPE_CHECKING:
    import xarray as xr

    from ..params import Params

log = logging.getLogger("linvae.sweeps")


# ---------------------------------------------------------------------------------------
# running one task (in a worker)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    index: int
    key: str
    task: str
    fn: Callable[..., xr.Dataset]
    params: Params
    settings: dict[str, Any]
    point: dict[str, Any]
    out: str
    threads: int | None  # None: the task takes no threads


@dataclass(frozen=True)
class _Outcome:
    index: int
    ok: bool
    error: str = ""
    seconds: float = 0.0
    diverged: int = 0


def _execute(job: _Job) -> _Outcome:
    """Run one task and write its result (or its error record); never raises Exception."""
    import xarray as xr

    t0 = time.perf_counter()
    try:
        kwargs = dict(job.settings)
        if job.threads is not None:
            kwargs["threads"] = job.threads
        ds = job.fn(job.params, **kwargs)
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"task {job.task!r} returned {type(ds).__name__}, not an "
                            f"xarray.Dataset")
        _write_result(job.out, job.key, job.task, job.point, job.settings, ds)
        diverged = int(np.count_nonzero(ds["diverged"].values)) if "diverged" in ds else 0
        return _Outcome(job.index, True, seconds=time.perf_counter() - t0, diverged=diverged)
    except Exception as exc:  # noqa: BLE001 - any error of a task is recorded, not raised
        return _record_lost(job, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                            seconds=time.perf_counter() - t0)


def _record_lost(job: _Job, error: str, tb: str = "", seconds: float = 0.0) -> _Outcome:
    """Record a failed task in its error file; the outcome carries the error too."""
    try:
        _write_error(job.out, job.key, index=job.index, task=job.task, point=job.point,
                     params=job.params, settings=job.settings, error=error, tb=tb)
    except OSError as exc:  # e.g. the output folder is not reachable from this worker
        log.warning("could not write the error record of task %s: %s", job.key, exc)
    return _Outcome(job.index, False, error, seconds)


# ---------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------
# "cpus" or "cpus(xnodes)"; more than 9 digits is not a count
_SLURM_NODE_CPUS = re.compile(r"^(\d{1,9})(?:\(x(\d{1,9})\))?$", re.ASCII)


def _positive_int(raw: str | None) -> int | None:
    """``raw`` as an integer >= 1, or None (unset, empty or not such an integer)."""
    try:
        n = int(raw.strip()) if raw is not None else 0
    except ValueError:
        return None
    return n if n >= 1 else None


def _parse_cpus_per_node(raw: str | None, node: str | None) -> int | None:
    """Return this node's entry of SLURM_JOB_CPUS_PER_NODE (``"4(x2),2"`` = 4, 4, 2).

    The node is SLURM_NODEID (relative to the job); without it, the first node, where a
    batch script runs. None when the value cannot be read.
    """
    if not raw:
        return None
    entries: list[tuple[int, int]] = []  # (cpus, number of nodes)
    for part in raw.split(","):
        m = _SLURM_NODE_CPUS.match(part.strip())
        if m is None:
            return None
        entries.append((int(m.group(1)), int(m.group(2) or 1)))
    try:
        index = int(node) if node is not None else 0
    except ValueError:
        index = 0
    cpus = entries[0][0]
    for n, repeat in entries:
        if index < repeat:
            cpus = n
            break
        index -= repeat
    return cpus if cpus >= 1 else None


def slurm_cpus(environ: Mapping[str, str] | None = None) -> int | None:
    """Return the CPUs of this process's SLURM allocation here, or None outside a job.

    ``SLURM_CPUS_PER_TASK`` (``--cpus-per-task``) if it is set; else the job's CPUs on
    this node, ``SLURM_CPUS_ON_NODE`` or ``SLURM_JOB_CPUS_PER_NODE`` (format like
    ``"4(x2),2"``). A value that is not a positive integer is skipped, and None is
    returned when nothing can be read.
    """
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env and "SLURM_JOBID" not in env:
        return None
    return (_positive_int(env.get("SLURM_CPUS_PER_TASK"))
            or _positive_int(env.get("SLURM_CPUS_ON_NODE"))
            or _parse_cpus_per_node(env.get("SLURM_JOB_CPUS_PER_NODE"),
                                    env.get("SLURM_NODEID")))


def usable_cpus(environ: Mapping[str, str] | None = None) -> int:
    """Return the cores this process may use: its affinity, capped by its SLURM allocation.

    The affinity mask (``os.sched_getaffinity``; ``os.cpu_count()`` where there is none)
    already reflects cgroups and ``taskset``; inside a SLURM job the allocation
    (:func:`slurm_cpus`) caps it too, since SLURM does not always bind the processes of a
    job to its cores. Always >= 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    slurm = slurm_cpus(environ)
    return max(1, min(cpus, slurm) if slurm is not None else cpus)


def _warn_oversubscribed(where: str, tasks: int, threads: int, cpus: int,
                         advice: str) -> bool:
    """Log a warning when ``tasks`` at once times ``threads`` each exceed ``cpus``."""
    if tasks * threads <= cpus:
        return False
    log.warning("%s runs %d task(s) at once with threads_per_task=%d, %d threads on %d "
                "usable core(s): the threads compete for the cores and the sweep runs "
                "slower than it could; %s", where, tasks, threads, tasks * threads, cpus,
                advice)
    return True


def _local_workers(max_workers: int | None, threads: int, n_tasks: int,
                   cpus: int | None = None) -> int:
    """Return the local pool's size: ``max_workers``, or usable cores // threads (>= 1).

    Warns when the tasks that will run at once, times ``threads``, exceed the usable
    cores; an explicit choice is kept.
    """
    cpus = usable_cpus() if cpus is None else cpus
    workers = max_workers if max_workers is not None else max(1, cpus // threads)
    if threads > cpus:
        advice = f"lower threads_per_task to at most {cpus}"
    else:
        advice = (f"use max_workers <= {cpus // threads} (the default) or fewer "
                  f"threads_per_task")
    _warn_oversubscribed("the local pool", min(workers, max(n_tasks, 1)), threads, cpus,
                         advice)
    return workers


def _check_executor_size(executor: Any, threads: int, n_tasks: int) -> None:
    """Warn if a process or thread pool of this machine runs more threads than cores."""
    if not isinstance(executor, (cf.ThreadPoolExecutor, cf.ProcessPoolExecutor)):
        return  # it may run the tasks anywhere: nothing to compare with
    size = getattr(executor, "_max_workers", None)
    if isinstance(size, int) and size >= 1:
        cpus = usable_cpus()
        _warn_oversubscribed(f"the {type(executor).__name__}", min(size, max(n_tasks, 1)),
                             threads, cpus,
                             f"give it max_workers <= {max(1, cpus // threads)}")


def _worker_cpus() -> tuple[str, tuple[int, ...], int]:
    """Run on a dask worker: its host, its CPU set and its usable cores."""
    import socket

    try:
        cpuset = tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpuset = ()
    return socket.gethostname(), cpuset, usable_cpus()


def _check_dask_workers(client: Any, threads: int) -> list[str]:
    """Warn about groups of dask workers that run more threads than their cores.

    Each dask worker runs ``nthreads`` tasks at once, each with ``threads`` OpenMP
    threads. Workers on the same host with the same CPU set share those cores (e.g. a
    LocalCluster's), so their dask threads are added up. Returns the warnings' hosts.
    """
    try:
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        except TypeError:  # older distributed: every worker by default
            workers = client.scheduler_info()["workers"]
        cpus = client.run(_worker_cpus)
    except Exception as exc:  # noqa: BLE001 - a check only: the sweep runs without it
        log.debug("could not check the dask workers' cores: %s", exc)
        return []
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for addr, info in workers.items():
        if addr not in cpus:
            continue
        host, cpuset, usable = cpus[addr]
        group = groups.setdefault((host, cpuset), [0, 0, usable])
        group[0] += 1
        group[1] += int(info.get("nthreads", 1))
    flagged = []
    for (host, _), (n_workers, slots, usable) in groups.items():
        if _warn_oversubscribed(
                f"dask on {host} ({n_workers} worker(s), {slots} dask thread(s) in all)",
                slots, threads, usable,
                f"give the workers there {max(1, usable // threads)} dask thread(s) in "
                f"all, e.g. LocalCluster(n_workers={max(1, usable // threads)}, "
                f"threads_per_worker=1), or dask-jobqueue's cores=processes with "
                f"job_cpu=processes*threads_per_task"):
            flagged.append(host)
    return flagged


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    """Set the thread-count variables that spawned workers inherit, restore afterwards."""
    old = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: str(threads) for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker() -> None:
    from ..simulation import DivergenceWarning

    # divergence is data: it is counted in the outcome, not printed by every worker
    warnings.filterwarnings("ignore", category=DivergenceWarning)


Report = Callable[[_Outcome], None]


def _run_serial(jobs: Sequence[_Job], report: Report) -> None:
    for job in jobs:
        report(_execute(job))


def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
    # spawn, not fork: a forked child of a process that has used OpenMP can hang
    return cf.ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                  mp_context=multiprocessing.get_context("spawn"))


# The threads that are starting local-pool workers which must not import __main__.
_NO_MAIN_THREADS: set[int] = set()
_NO_MAIN_LOCK = threading.Lock()
_original_preparation_data: Callable[[str], dict[str, Any]] | None = None


def _preparation_data_without_main(name: str) -> dict[str, Any]:
    assert _original_preparation_data is not None
    data = _original_preparation_data(name)
    if threading.get_ident() in _NO_MAIN_THREADS:
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


@contextlib.contextmanager
def _workers_skip_main() -> Iterator[None]:
    """Start this thread's spawned workers without running the caller's main module.

    A spawned worker normally runs the parent's main script again (as "__mp_main__")
    so that objects defined there can be unpickled. A script without the
    ``if __name__ == "__main__":`` guard then starts the sweep again in every worker,
    where starting processes is forbidden, and every worker dies. The jobs of built-in
    tasks need nothing from the script, so for them the preparation data that
    multiprocessing sends to the workers leaves the main module out.
    """
    global _original_preparation_data
    from multiprocessing import spawn

    if not callable(getattr(spawn, "get_preparation_data", None)):  # another Python
        yield
        return
    me = threading.get_ident()
    with _NO_MAIN_LOCK:
        if not _NO_MAIN_THREADS:
            _original_preparation_data = spawn.get_preparation_data
            spawn.get_preparation_data = _preparation_data_without_main
        _NO_MAIN_THREADS.add(me)
    try:
        yield
    finally:
        with _NO_MAIN_LOCK:
            _NO_MAIN_THREADS.discard(me)
            if not _NO_MAIN_THREADS and _original_preparation_data is not None:
                spawn.get_preparation_data = _original_preparation_data  # type: ignore[assignment]


def _needs_main(jobs: Sequence[_Job]) -> bool:
    """Whether unpickling the jobs needs the caller's main module.

    That is, a task function or a value such as a schedule class defined in the script.
    """
    return any(b"__main__" in pickle.dumps(job) for job in jobs)


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, *test.comparators]
    return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def _unguarded_call_site() -> str | None:
    """Return "file:line" of the statement of the main script that led to this call.

    Only if it is at the script's top level and not inside ``if __name__ == "__main__":``
    (else None).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:
        return None
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>"
                                     and frame.f_globals is vars(main)):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            if isinstance(node, ast.If) and _is_main_guard(node) and \
                    node.body[0].lineno <= line <= (node.body[-1].end_lineno or line):
                return None
            break
    return f"{path}:{line}"


def _run_local(jobs: Sequence[_Job], workers: int, threads: int, report: Report, *,
               import_main: bool = False) -> None:
    """Process pool with recovery from dead workers.

    When a worker process dies (killed, out of memory, os._exit, segfault), the pool
    breaks and every task in flight is lost with it. Those tasks are rerun one at a time
    in a single-worker pool, which tells the culprit from the bystanders: a task whose
    worker dies again when it runs alone is recorded as failed, the others complete.
    Then the remaining tasks go on in parallel. The workers import the caller's main
    module only if ``import_main`` (the jobs need it, see :func:`_workers_skip_main`).
    """
    pending = list(jobs)
    finished: set[int] = set()

    def note(outcome: _Outcome) -> None:
        finished.add(outcome.index)
        report(outcome)

    skip_main = contextlib.nullcontext() if import_main else _workers_skip_main()
    with _thread_env(threads), skip_main:
        while pending:
            in_flight = _run_pool_once(pending, workers, note)
            if in_flight:
                log.warning("a worker process died; rerunning the %d task(s) it took down "
                            "one at a time to find the one that kills its worker",
                            len(in_flight))
            while in_flight:  # one at a time: a pool that breaks now names its culprit
                for job in _run_pool_once(in_flight, 1, note):
                    note(_record_lost(job, "worker process died while running this task "
                                           "(killed by a signal, out of memory, os._exit or "
                                           "a crash), also when it ran alone"))
                in_flight = [j for j in in_flight if j.index not in finished]
            remaining = [j for j in pending if j.index not in finished]
            if len(remaining) == len(pending):
                raise RuntimeError("the local process pool broke before it ran any task")
            pending = remaining


def _run_pool_once(jobs: Sequence[_Job], workers: int, report: Report) -> list[_Job]:
    """Run ``jobs`` on one pool, at most ``workers`` in flight.

    Returns the jobs that were in flight when a worker died (the pool is then broken and
    abandoned; jobs not yet submitted are left to the caller), or [] when all finished.
    """
    queue = list(reversed(jobs))
    running: dict[cf.Future[_Outcome], _Job] = {}
    broken = False
    with _new_pool(min(workers, len(jobs))) as pool:
        while (queue or running) and not broken:
            while queue and len(running) < workers:
                try:
                    running[pool.submit(_execute, queue[-1])] = queue[-1]
                except cf.process.BrokenProcessPool:
                    broken = True
                    break
                queue.pop()
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = broken or any(isinstance(f.exception(), cf.process.BrokenProcessPool)
                                   for f in done)
            if broken:
                done, _ = cf.wait(running)  # a broken pool settles every future at once
            for fut in done:
                exc = fut.exception()
                if isinstance(exc, cf.process.BrokenProcessPool):
                    continue  # lost with its worker: stays in running
                job = running.pop(fut)
                # another exception: the job never ran (e.g. the task cannot be pickled)
                report(fut.result() if exc is None else
                       _record_lost(job, f"{type(exc).__name__}: {exc}"))
    return list(running.values())


def _check_importable(task: _Task) -> None:
    """Check that the local pool's fresh worker processes can import the task function."""
    fn = task.fn
    main = sys.modules.get("__main__")
    interactive = fn.__module__ == "__main__" and not getattr(main, "__file__", None)
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ValueError(f"task {task.name!r}: the local process pool cannot send {fn!r} to "
                         f"its workers ({exc}); define it at module level, or use "
                         f"executor='serial'") from None
    if interactive:
        raise ValueError(f"task {task.name!r} is defined in an interactive session (__main__), "
                         f"which the local pool's worker processes cannot import; move it to "
                         f"a module, or use executor='serial' or a dask Client")


def _run_futures(jobs: Sequence[_Job], submit: Callable[[_Job], Any],
                 as_completed: Callable[[Any], Iterator[Any]], report: Report) -> None:
    """Run on a dask Client or any concurrent.futures.Executor: submit all, collect."""
    futures = {submit(job): job for job in jobs}
    for fut in as_completed(list(futures)):
        job = futures.pop(fut)
        try:
            outcome = fut.result()
        except Exception as exc:  # noqa: BLE001 - e.g. dask's KilledWorker
            outcome = _record_lost(job, f"{type(exc).__name__}: {exc}")
        report(outcome)
        if hasattr(fut, "release"):
            fut.release()


def _dask_client(executor: Any) -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("executor='dask' needs dask.distributed: "
                          "pip install 'linvae[dask]'") from exc
    if executor == "dask":
        try:
            return distributed.get_client()
        except ValueError as exc:
            raise ValueError("executor='dask' needs a running dask.distributed Client "
                             "(e.g. Client(LocalCluster()) or a dask-jobqueue cluster); "
                             "or pass the client itself as executor=client") from exc
    return executor


def _is_dask_client(executor: Any) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(
        executor, "submit")


# ---------------------------------------------------------------------------------------
# sharding
# ---------------------------------------------------------------------------------------
def shard_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Return the shard ``(i, n)`` of this SLURM job-array element.

    Reads ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` (or ``..._MAX``), with
    ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_STEP`` so that arrays like
    ``--array=1-16`` or ``--array=0-30:2`` map to shards 0..n-1.

    Raises
    ------
    RuntimeError
        Not inside a SLURM job array (the variables are not set).
    """
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env:
        raise RuntimeError("shard='env' needs SLURM_ARRAY_TASK_ID (and SLURM_ARRAY_TASK_COUNT): "
                           "run inside a SLURM job array (sbatch --array=0-N), or pass "
                           "shard=(i, n) explicitly")

    def get(name: str, default: int | None = None) -> int:
        raw = env.get(name)
        if raw is None:
            if default is None:
                raise RuntimeError(f"{name} is not set")
            return default
        try:
            return int(raw)
        except ValueError:
            raise RuntimeError(f"{name} must be an integer, got {raw!r}") from None

    task_id = get("SLURM_ARRAY_TASK_ID")
    lo = get("SLURM_ARRAY_TASK_MIN", 0)
    step = max(1, get("SLURM_ARRAY_TASK_STEP", 1))
    if "SLURM_ARRAY_TASK_COUNT" in env:
        n = get("SLURM_ARRAY_TASK_COUNT")
    elif "SLURM_ARRAY_TASK_MAX" in env:
        n = (get("SLURM_ARRAY_TASK_MAX") - lo) // step + 1
    else:
        raise RuntimeError("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor "
                           "SLURM_ARRAY_TASK_MAX is")
    i = (task_id - lo) // step
    if not 0 <= i < n:
        raise RuntimeError(f"SLURM array task id {task_id} gives shard {i}, outside 0..{n - 1} "
                           f"(min={lo}, step={step}, count={n})")
    return i, n


def _check_shard(shard: Any) -> tuple[int, int] | None:
    if shard is None:
        return None
    if isinstance(shard, str):
        if shard != "env":
            raise ValueError(f"shard must be None, (i, n) or 'env', got {shard!r}")
        return shard_from_env()
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise TypeError(f"shard must be None, a pair (i, n) or 'env', got {shard!r}")
    n = check_int("shard count n", shard[1], ge=1)
    i = check_int("shard index i", shard[0], ge=0, le=n - 1)
    return i, n
