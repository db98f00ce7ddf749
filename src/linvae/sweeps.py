"""Parameter sweeps that scale out and survive failure.

A sweep runs one *task* (``"simulate"``, ``"ode"``, or any registered one) at every point
of a :class:`Grid` of model parameters and run settings. Each point writes its own result
file ``<key>.nc`` atomically, where ``key`` is a stable hash of the point's full
parameter set, so that

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
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import math
import multiprocessing
import os
import pickle
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from . import io
from ._validate import check_int
from .dataset import state_of
from .ode import integrate, overlap_state
from .params import Params
from .schedules import Schedule, from_dict
from .simulation import DivergenceWarning, simulate

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
]

log = logging.getLogger("linvae.sweeps")

#: Fields of :class:`linvae.Params` that a grid axis may vary.
PARAM_FIELDS = ("M", "M_star", "rho", "eta", "beta", "lam", "tau")

#: Version of the point-hash recipe; part of every hash.
_HASH_VERSION = 1
# Settings added to a built-in task after sweeps had been run with it. At these values,
# which do what the task did before, they stay out of the point hash, so that the
# result files of those sweeps keep their keys (and are not computed again).
_LATER_DEFAULTS: dict[str, dict[str, str]] = {"simulate": {"method": "weights"}}
_SPEC_FILE = "sweep.json"
#: Setting names a task receives from the sweep itself, never from the grid or the user.
_RESERVED = ("threads",)
#: Dims of the result datasets, which grid dims must not reuse.
_DATA_DIMS = ("replica", "t", "latent", "latent2", "factor")
#: Tasks that modules outside this one register when imported.
_LAZY_TASKS = {"stability": "linvae.stability"}


# ---------------------------------------------------------------------------------------
# canonical values: JSON storage and hashing
# ---------------------------------------------------------------------------------------
def _encode(value: Any, name: str = "value") -> Any:
    """A JSON-able form of a grid value or setting that :func:`_decode` inverts."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return _encode(value.item(), name)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Schedule):
        return {"__schedule__": value.to_dict()}
    if isinstance(value, xr.Dataset):
        return {k: v.tolist() for k, v in state_of(value).items()}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{name} must have string keys, got {k!r}")
            out[k] = _encode(v, f"{name}[{k!r}]")
        return out
    if isinstance(value, (np.ndarray, xr.DataArray)):
        return _encode(np.asarray(value).tolist(), name)
    if isinstance(value, (list, tuple, range)):
        return [_encode(v, name) for v in value]
    raise TypeError(f"{name} must be a number, string, bool, None, sequence, mapping or "
                    f"beta schedule, got {type(value).__name__} {value!r}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__schedule__"}:
            return from_dict(value["__schedule__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _normalise(value: Any) -> Any:
    """Make equal values hash equally: 2.0 and 2 are one number, NaN is a string."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _canonical_json(value: Any) -> str:
    return json.dumps(_normalise(_encode(value)), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def _params_json(p: Params) -> dict[str, Any]:
    """Params.to_attrs as plain JSON (the schedule as an object, not a string)."""
    attrs = p.to_attrs()
    attrs["beta_schedule"] = json.loads(attrs["beta_schedule"])
    return dict(_encode(attrs))


def point_key(task: str, params: Params, settings: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a task's full parameter set.

    The hash covers the task name, ``params.to_attrs()`` and every setting (defaults
    included), written as canonical JSON (sorted keys, integral floats as integers), so
    that equal parameter sets give equal keys on any machine and in any session.
    """
    blob = _canonical_json({"v": _HASH_VERSION, "task": task, "params": _params_json(params),
                            "settings": dict(settings)})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _label(value: Any) -> Any:
    """A scalar coordinate label for a grid value."""
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, Schedule):
        return repr(value)
    return json.dumps(_encode(value))


def _coordinate(values: Sequence[Any]) -> np.ndarray:
    """Grid values as a 1-d coordinate: numbers or strings (non-scalars by their label)."""
    labels = [_label(v) for v in values]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels)
    if all(isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=bool)
    return np.asarray([str(v) for v in labels])


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, like every result file (:func:`linvae.io.save`)."""
    text = json.dumps(obj, indent=1) + "\n"

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    io.atomic_write(path, write)


# ---------------------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
    name: str
    fn: Callable[..., xr.Dataset]
    settings: Mapping[str, inspect.Parameter]
    any_settings: bool  # fn takes **kwargs
    takes_threads: bool

    def check_settings(self, names: Sequence[str], where: str) -> None:
        for n in names:
            if n in PARAM_FIELDS:
                raise ValueError(f"{n!r} is a model parameter: set it in p "
                                 f"(p.replace({n}=...)) or make it a grid axis, not a {where}")
            if n in _RESERVED:
                raise ValueError(f"{n!r} is set by sweep itself (threads_per_task), not a {where}")
            if n not in self.settings and not self.any_settings:
                hint = "; use replicas" if n == "seeds" else ""
                raise ValueError(f"unknown {where} {n!r} for task {self.name!r}{hint}; "
                                 f"allowed: {', '.join(self.settings) or '(none)'}")

    def bind(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """All settings with the task's defaults filled in (what the hash covers)."""
        missing = [n for n, par in self.settings.items()
                   if par.default is inspect.Parameter.empty and n not in settings]
        if missing:
            raise ValueError(f"task {self.name!r} needs the setting(s) {', '.join(missing)}: "
                             f"give them as sweep(..., {missing[0]}=...) or as a grid axis")
        full = {n: par.default for n, par in self.settings.items()}
        full.update(settings)
        return full


_TASKS: dict[str, _Task] = {}


def register_task(name: str, fn: Callable[..., xr.Dataset], *, replace: bool = False) -> None:
    """Make ``fn`` available as ``sweep(task=name)``.

    Parameters
    ----------
    name : str
        Task name.
    fn : callable
        ``fn(params, **settings) -> xarray.Dataset``. Its keyword parameters (after the
        first, which receives the :class:`linvae.Params`) are the task's settings: they
        may be grid axes or fixed ``sweep(...)`` keywords; those without a default are
        required. A parameter named ``threads`` receives ``threads_per_task`` and is not
        part of the point hash. ``fn`` must be importable by worker processes (defined
        at module level; in the calling script only if it starts the sweep under
        ``if __name__ == "__main__":``, which :func:`sweep` checks for the local pool).
    replace : bool
        Allow replacing a task registered under the same name with another function.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    old = _TASKS.get(name)
    if old is not None and old.fn is not fn and not replace:
        raise ValueError(f"a task named {name!r} is already registered ({old.fn!r}); "
                         f"pass replace=True to replace it")
    sig = inspect.signature(fn)
    pars = list(sig.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not pars or pars[0].kind not in positional:
        raise TypeError(f"task {name!r}: fn must take the Params as its first positional "
                        f"argument, got signature {sig}")
    settings = {p.name: p for p in pars[1:]
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY) and p.name not in _RESERVED}
    _TASKS[name] = _Task(name=name, fn=fn, settings=settings,
                         any_settings=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in pars),
                         takes_threads="threads" in sig.parameters)


def registered_tasks() -> tuple[str, ...]:
    """Names of the tasks :func:`sweep` can run."""
    return tuple(_TASKS)


def _get_task(name: str) -> _Task:
    if not isinstance(name, str):
        raise TypeError(f"task must be a task name (str), got {type(name).__name__}")
    if name not in _TASKS and name in _LAZY_TASKS:
        module = _LAZY_TASKS[name]
        try:
            importlib.import_module(module)  # registers the task on import
            why = "did not register it"
        except ImportError as exc:
            why = f"could not be imported ({exc})"
        if name not in _TASKS:
            raise ValueError(f"task {name!r} is provided by the analysis module {module}, "
                             f"which {why}; registered tasks: {', '.join(_TASKS)}")
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(_TASKS)} "
                         f"(add one with linvae.sweeps.register_task)")
    return _TASKS[name]


def _simulate_task(params: Params, *, N: int, t_max: float, record_every: float = 0.1,
                   replicas: int = 1, seed: int = 0, init: Any = "random",
                   dtype: str = "float64", times: Any = None, blowup: float = 1e8,
                   threads: int | None = None, method: str = "weights") -> xr.Dataset:
    """Task "simulate": :func:`linvae.simulate` with ``seeds=replicas``, no progress bar."""
    return simulate(params, N, t_max, record_every, seeds=replicas, seed=seed, init=init,
                    threads=threads, dtype=dtype,  # type: ignore[arg-type]
                    progress=False, times=times, blowup=blowup,
                    method=method)  # type: ignore[arg-type]


def _ode_task(params: Params, *, t_max: float = 20.0, init: Any = None,
              record_every: float = 0.1, method: str = "auto", rtol: float = 1e-8,
              atol: float = 1e-10, t_eval: Any = None, on_unphysical: str = "raise",
              psd_tol: float = 1e-8) -> xr.Dataset:
    """Task "ode": :func:`linvae.integrate`; ``init`` may also be a number, the overlap
    of :func:`linvae.ode.overlap_state` (default: that state with overlap 0.5)."""
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        init = overlap_state(params, init)
    return integrate(params, t_max, init, record_every, method, rtol, atol, t_eval=t_eval,
                     on_unphysical=on_unphysical,  # type: ignore[arg-type]
                     psd_tol=psd_tol)


register_task("simulate", _simulate_task)
register_task("ode", _ode_task)


def _allowed_axes() -> tuple[str, ...]:
    names = list(PARAM_FIELDS)
    for task in _TASKS.values():
        names += [n for n in task.settings if n not in names and n != "replicas"]
    return tuple(names)


# ---------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    """One grid dimension: a single axis, or several zipped axes along one dim."""

    dim: str
    axes: dict[str, list[Any]]
    zipped: bool

    @property
    def size(self) -> int:
        return len(next(iter(self.axes.values())))


def _check_axis(name: str, values: Any) -> list[Any]:
    if name not in _allowed_axes():
        raise ValueError(f"unknown grid axis {name!r}; allowed: model parameters "
                         f"{', '.join(PARAM_FIELDS)} and run settings "
                         f"{', '.join(_allowed_axes()[len(PARAM_FIELDS):])} "
                         f"(replicas is a separate keyword)")
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(
            values, (Sequence, np.ndarray, xr.DataArray, range)):
        raise TypeError(f"grid axis {name!r} must be a sequence of values, got "
                        f"{type(values).__name__} {values!r}; wrap a single value in a list, "
                        f"or pass a fixed setting to sweep(...) instead")
    out = list(values.tolist() if isinstance(values, (np.ndarray, xr.DataArray)) else values)
    if not out:
        raise ValueError(f"grid axis {name!r} is empty")
    for v in out:
        _encode(v, f"grid axis {name!r} value")
    return out


def _check_unique(what: str, rows: Sequence[Any]) -> None:
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = _canonical_json(row)
        if key in seen:
            raise ValueError(f"{what} has a repeated value {row!r} (positions {seen[key]} "
                             f"and {i}); every grid point must be distinct")
        seen[key] = i


class Grid:
    """Points of a parameter sweep: a cartesian product of axes, zipped axes, or both.

    Parameters
    ----------
    replicas : int, optional
        Number of independent replicas per point (``seeds`` of :func:`linvae.simulate`);
        default 1. Only for tasks that take a ``replicas`` setting.
    **axes : sequence
        Axis name -> values. A name is a :class:`linvae.Params` field (M, M_star, rho,
        eta, beta, lam, tau) or a run setting of a task (N, t_max, seed, record_every,
        ...). ``Grid(beta=[...], N=[...])`` is their cartesian product, one dim per axis,
        in the order given.

    Examples
    --------
    >>> g = Grid(beta=[0.5, 1.0, 1.5, 2.5], N=[1_000, 10_000], replicas=8)
    >>> g.dims, g.shape, len(g)
    (('beta', 'N'), (4, 2), 8)
    >>> z = Grid.zip(beta=[0.5, 1.0], rho=[1.0, 2.0])       # 2 points along dim "point"
    >>> (z * Grid(N=[500, 1000])).shape                     # zipped x cartesian
    (2, 2)
    """

    __slots__ = ("_blocks", "_replicas")

    def __init__(self, *, replicas: int | None = None, **axes: Any) -> None:
        blocks = []
        for name, values in axes.items():
            vals = _check_axis(name, values)
            _check_unique(f"grid axis {name!r}", vals)
            blocks.append(_Block(dim=name, axes={name: vals}, zipped=False))
        self._init(blocks, replicas)

    def _init(self, blocks: Sequence[_Block], replicas: int | None) -> None:
        names = [n for b in blocks for n in b.axes]
        dims = [b.dim for b in blocks]
        for seen, what in ((names, "axis"), (dims, "dim")):
            dup = sorted({n for n in seen if seen.count(n) > 1})
            if dup:
                raise ValueError(f"grid {what} {dup[0]!r} appears more than once")
        self._blocks: tuple[_Block, ...] = tuple(blocks)
        self._replicas = None if replicas is None else check_int("replicas", replicas, ge=1)

    @classmethod
    def zip(cls, *, dim: str = "point", replicas: int | None = None, **axes: Any) -> Grid:
        """Axes varied together (like the built-in zip) along the single dim ``dim``.

        All axes must have the same length; point i takes value i of every axis.
        """
        if not isinstance(dim, str) or not dim.isidentifier():
            raise ValueError(f"dim must be an identifier, got {dim!r}")
        if dim in _DATA_DIMS or dim in _allowed_axes():
            raise ValueError(f"dim must not be a dataset dim or an axis name, got {dim!r}")
        if not axes:
            raise ValueError("Grid.zip needs at least one axis")
        checked = {n: _check_axis(n, v) for n, v in axes.items()}
        lengths = {n: len(v) for n, v in checked.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zipped axes must have equal lengths, got "
                             f"{', '.join(f'{n}: {k}' for n, k in lengths.items())}")
        _check_unique(f"zipped axes ({', '.join(checked)})",
                      [list(row) for row in zip(*checked.values(), strict=True)])
        grid = cls.__new__(cls)
        grid._init([_Block(dim=dim, axes=checked, zipped=True)], replicas)
        return grid

    def __mul__(self, other: Grid) -> Grid:
        """Cartesian product of two grids (dims of ``self`` first)."""
        if not isinstance(other, Grid):
            return NotImplemented
        if None not in (self._replicas, other._replicas) and self._replicas != other._replicas:
            raise ValueError(f"the grids have different replicas ({self._replicas} and "
                             f"{other._replicas})")
        grid = Grid.__new__(Grid)
        grid._init([*self._blocks, *other._blocks],
                   self._replicas if self._replicas is not None else other._replicas)
        return grid

    # -- views -------------------------------------------------------------------------
    @property
    def replicas(self) -> int | None:
        """Replicas per point (None: the task's default)."""
        return self._replicas

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names, one per cartesian axis or zipped group."""
        return tuple(b.dim for b in self._blocks)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b.size for b in self._blocks)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of all axes (parameters and settings the grid varies)."""
        return tuple(n for b in self._blocks for n in b.axes)

    @property
    def axes(self) -> dict[str, list[Any]]:
        """Axis name -> values (copies)."""
        return {n: list(v) for b in self._blocks for n, v in b.axes.items()}

    def __len__(self) -> int:
        return math.prod(self.shape)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The points in row-major order (last dim fastest), as axis name -> value."""
        for idx in itertools.product(*(range(b.size) for b in self._blocks)):
            yield {n: v[i] for b, i in zip(self._blocks, idx, strict=True)
                   for n, v in b.axes.items()}

    def coords(self) -> dict[str, Any]:
        """xarray coordinates of the grid dims (zipped axes as non-index coordinates)."""
        out: dict[str, Any] = {}
        for b in self._blocks:
            if b.zipped:
                out[b.dim] = np.arange(b.size)
                for n, v in b.axes.items():
                    out[n] = (b.dim, _coordinate(v))
            else:
                ((n, v),) = b.axes.items()
                out[n] = _coordinate(v)
        return out

    # -- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; :meth:`from_dict` inverts it."""
        return {"replicas": self._replicas,
                "blocks": [{"dim": b.dim, "zipped": b.zipped,
                            "axes": {n: _encode(v) for n, v in b.axes.items()}}
                           for b in self._blocks]}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Grid:
        grid = cls.__new__(cls)
        grid._init([_Block(dim=b["dim"], zipped=bool(b["zipped"]),
                           axes={n: _decode(v) for n, v in b["axes"].items()})
                    for b in spec["blocks"]], spec.get("replicas"))
        return grid

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return _canonical_json(self.to_dict()) == _canonical_json(other.to_dict())

    def __hash__(self) -> int:
        return hash(_canonical_json(self.to_dict()))

    def __repr__(self) -> str:
        parts = []
        for b in self._blocks:
            ax = ", ".join(f"{n}={v!r}" if len(v) <= 6 else f"{n}=[{len(v)} values]"
                           for n, v in b.axes.items())
            parts.append(f"zip({ax})" if b.zipped else ax)
        rep = "" if self._replicas is None else f", replicas={self._replicas}"
        return f"Grid({' x '.join(parts)}{rep}; {len(self)} points)"


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


def _result_path(out: str | Path, key: str) -> Path:
    return Path(out) / f"{key}.nc"


def _error_path(out: str | Path, key: str) -> Path:
    return Path(out) / f"{key}.error.json"


def _write_error(job: _Job, error: str, tb: str = "") -> None:
    record = {"key": job.key, "index": job.index, "task": job.task,
              "point": _encode(job.point), "params": _params_json(job.params),
              "settings": _encode(job.settings), "error": error, "traceback": tb,
              "host": socket.gethostname(), "pid": os.getpid(),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_json(_error_path(job.out, job.key), _normalise(record))


def _execute(job: _Job) -> _Outcome:
    """Run one task and write its result (or its error record); never raises Exception."""
    t0 = time.perf_counter()
    try:
        kwargs = dict(job.settings)
        if job.threads is not None:
            kwargs["threads"] = job.threads
        ds = job.fn(job.params, **kwargs)
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"task {job.task!r} returned {type(ds).__name__}, not an "
                            f"xarray.Dataset")
        ds = ds.copy()
        ds.attrs.update(sweep_key=job.key, sweep_task=job.task,
                        sweep_point=json.dumps(_encode(job.point)),
                        sweep_settings=_canonical_json(job.settings))
        io.save(ds, _result_path(job.out, job.key))
        _error_path(job.out, job.key).unlink(missing_ok=True)
        diverged = int(np.count_nonzero(ds["diverged"].values)) if "diverged" in ds else 0
        return _Outcome(job.index, True, seconds=time.perf_counter() - t0, diverged=diverged)
    except Exception as exc:  # noqa: BLE001 - any error of a task is recorded, not raised
        return _record_lost(job, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                            seconds=time.perf_counter() - t0)


def _record_lost(job: _Job, error: str, tb: str = "", seconds: float = 0.0) -> _Outcome:
    """Record a failed task in its error file; the outcome carries the error too."""
    try:
        _write_error(job, error, tb)
    except OSError as exc:  # e.g. the output folder is not reachable from this worker
        log.warning("could not write the error record of task %s: %s", job.key, exc)
    return _Outcome(job.index, False, error, seconds)


def _result_valid(out: str | Path, key: str) -> bool:
    """The result file exists, opens, and carries this point's key."""
    path = _result_path(out, key)
    if not path.exists():
        return False
    try:
        with io.NETCDF_LOCK, netCDF4.Dataset(path, "r") as nc:
            ok = getattr(nc, "sweep_key", None) == key
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("result file %s exists but could not be read (%s); it will be redone",
                    path, exc)
        return False
    if not ok:
        log.warning("result file %s does not carry the key %s; it will be redone", path, key)
    return ok


# ---------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------
def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
    """Whether unpickling the jobs needs the caller's main module (a task function or a
    value such as a schedule class defined in the script)."""
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
    """"file:line" of the statement of the main script that led to this call, if it is
    at the script's top level and not inside ``if __name__ == "__main__":``."""
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
    """The local pool's fresh worker processes must be able to import the task function."""
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
    """The shard ``(i, n)`` of this SLURM job-array element.

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


# ---------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFailure:
    """A grid point whose task failed: its position, key, values and error text."""

    index: int
    key: str
    point: dict[str, Any]
    error: str

    def __repr__(self) -> str:
        where = ", ".join(f"{k}={v!r}" for k, v in self.point.items()) or "(single point)"
        return f"[{self.index}] {where} ({self.key}): {self.error}"


@dataclass(frozen=True)
class SweepResult:
    """What a :func:`sweep` call did.

    Attributes
    ----------
    out : Path
        Output folder.
    task : str
        Task name.
    total : int
        Grid points in the whole sweep.
    selected : int
        Points this call was responsible for (all, or this shard's).
    done, skipped, failed : int
        Points computed now, found already done, and failed now.
    failures : tuple of TaskFailure
        The failed points with their errors (also in ``<key>.error.json``).
    diverged : int
        Diverged replicas over the points computed now (data, not failures).
    shard : (int, int) or None
        The shard that ran.
    seconds : float
        Wall time of the call.
    """

    out: Path
    task: str
    total: int
    selected: int
    done: int
    skipped: int
    failures: tuple[TaskFailure, ...] = field(default=())
    diverged: int = 0
    shard: tuple[int, int] | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """True when every selected point has a result."""
        return self.done + self.skipped == self.selected

    def open(self) -> xr.Dataset:
        """The merged dataset of the whole sweep (:func:`open_sweep`)."""
        return open_sweep(self.out)

    def __repr__(self) -> str:
        shard = "" if self.shard is None else f", shard {self.shard[0]}/{self.shard[1]}"
        head = (f"SweepResult(out={str(self.out)!r}, task={self.task!r}: {self.selected} of "
                f"{self.total} points{shard}: {self.done} done, {self.skipped} skipped, "
                f"{self.failed} failed in {self.seconds:.1f} s")
        if self.diverged:
            head += f"; {self.diverged} diverged replicas"
        lines = [head + ")"]
        lines += [f"  failed {f!r}" for f in self.failures[:10]]
        if self.failed > 10:
            lines.append(f"  ... and {self.failed - 10} more (see {self.out}/*.error.json)")
        return "\n".join(lines)


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
    for k, v in fixed.items():
        if isinstance(v, xr.Dataset):  # a state slice: keep the order parameters only
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
        later = _LATER_DEFAULTS.get(task.name, {})
        key = point_key(task.name, params, {k: v for k, v in settings.items()
                                            if not (k in later and isinstance(v, str)
                                                    and v == later[k])})
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
        Processes of the local pool; default: usable CPUs // threads_per_task, >= 1.
    threads_per_task : int
        OpenMP threads per task: passed to the task (``simulate(threads=...)``) and set
        as ``OMP_NUM_THREADS`` in the local pool's workers, so that tasks times threads
        does not exceed the cores.
    shard : (i, n), "env" or None
        Run only the points with index % n == i (index in row-major grid order); "env"
        takes (i, n) from the SLURM job-array variables (:func:`shard_from_env`).
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
    t0 = time.perf_counter()
    if not isinstance(p, Params):
        raise TypeError(f"p must be a linvae.Params, got {type(p).__name__}")
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
    out_path = io.check_output_folder(out, "sweep output folder")
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
    spec = {"linvae_sweep": 1, "task": spec_task.name, "params": _params_json(p),
            "settings": _encode(fixed), "grid": grid.to_dict(),
            "keys": [j.key for j in jobs]}
    _write_json(out_path / _SPEC_FILE, spec)

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

    from tqdm.auto import tqdm

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
            _run_serial(todo, report)
        elif executor == "local":
            workers = max_workers or max(1, _available_cpus() // threads)
            log.info("running %d task(s) on %d local process(es), %d thread(s) each",
                     len(todo), min(workers, len(todo)), threads)
            _run_local(todo, workers, threads, report, import_main=import_main)
        elif client is not None:
            import distributed

            run_id = os.urandom(4).hex()
            _run_futures(todo, lambda j: client.submit(_execute, j, pure=False, retries=0,
                                                       key=f"linvae-{j.task}-{j.key}-{run_id}"),
                         distributed.as_completed, report)
        else:
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


# ---------------------------------------------------------------------------------------
# merging
# ---------------------------------------------------------------------------------------
def _snap_time(datasets: list[xr.Dataset], rtol: float = 1e-12) -> list[xr.Dataset]:
    """Give times equal up to rounding (e.g. round(t N)/N at different N) one value."""
    ts = [ds["t"].values for ds in datasets if "t" in ds.coords]
    if len(ts) < 2 or all(np.array_equal(ts[0], t) for t in ts[1:]):
        return datasets
    allt = np.unique(np.concatenate(ts))
    rep = allt.copy()
    for i in range(1, allt.size):
        if allt[i] - rep[i - 1] <= rtol * max(1.0, abs(allt[i])):
            rep[i] = rep[i - 1]
    out = []
    for ds in datasets:
        if "t" not in ds.coords:
            out.append(ds)
            continue
        new = rep[np.searchsorted(allt, ds["t"].values)]
        if np.unique(new).size != new.size:  # would merge two records: leave as is
            return datasets
        out.append(ds.assign_coords(t=new))
    return out


def _placeholder(template: xr.Dataset) -> xr.Dataset:
    """A dataset shaped like ``template`` with NaN (numbers) or "" (strings) everywhere."""
    data_vars = {}
    for name, var in template.data_vars.items():
        if var.dtype.kind in "US":
            data = np.full(var.shape, "", dtype=var.dtype)
        elif var.dtype.kind in "fc":
            data = np.full(var.shape, np.nan, dtype=var.dtype)
        elif var.dtype.kind in "iub":
            data = np.full(var.shape, np.nan)
        else:
            data = np.full(var.shape, np.nan, dtype=object)
        data_vars[name] = (var.dims, data, var.attrs)
    return xr.Dataset(data_vars, coords=template.coords)


def _read_spec(out: Path) -> dict[str, Any]:
    path = out / _SPEC_FILE
    if not path.exists():
        raise FileNotFoundError(f"{str(out)!r} is not a sweep folder: {_SPEC_FILE} is missing "
                                f"(it is written when linvae.sweep starts)")
    with open(path) as f:
        spec = json.load(f)
    if not isinstance(spec, dict) or spec.get("linvae_sweep") != 1:
        raise ValueError(f"{path} is not a linvae sweep description")
    return spec


def _read_error(out: Path, key: str) -> str:
    try:
        with open(_error_path(out, key)) as f:
            return str(json.load(f).get("error", "unknown error"))
    except (OSError, ValueError):
        return "failed (unreadable error record)"


def open_sweep(out: str | os.PathLike[str]) -> xr.Dataset:
    """All results of a sweep as one labelled dataset over the grid.

    Parameters
    ----------
    out : path
        The sweep's output folder.

    Returns
    -------
    xarray.Dataset
        Every variable of the per-point results with the grid dims in front: one dim per
        cartesian axis (coordinate: its values; non-scalar values such as rho vectors or
        beta schedules are labelled by strings) and one dim per zipped group (coordinate
        0..n-1, the zipped axes as coordinates along it). Results of different shapes
        (e.g. t_max or M as axes) are aligned, with NaN where a point has no entry.
        ``status`` ("ok", "failed", "missing"), ``error`` (the error text of failed
        points) and ``key`` (the result file stem) are given over the grid; a point
        that is not "ok" is NaN (strings: ""). Attributes: those common to all results,
        plus ``sweep_task``, ``sweep_grid`` and ``sweep_settings`` (JSON).
    """
    out = Path(out)
    spec = _read_spec(out)
    grid = Grid.from_dict(spec["grid"])
    keys: list[str] = spec["keys"]
    if len(keys) != len(grid):
        raise ValueError(f"{out / _SPEC_FILE} is inconsistent: {len(keys)} keys for a grid of "
                         f"{len(grid)} points")
    results: list[xr.Dataset | None] = []
    status, errors = [], []
    for key in keys:
        ds = None
        if _result_valid(out, key):
            ds = io.load(_result_path(out, key))
        results.append(ds)
        if ds is not None:
            status.append("ok")
            errors.append("")
        elif _error_path(out, key).exists():
            status.append("failed")
            errors.append(_read_error(out, key))
        else:
            status.append("missing")
            errors.append("")

    dims, shape = grid.dims, grid.shape
    present = _snap_time([ds for ds in results if ds is not None])
    if present:
        aligned = list(xr.align(*present, join="outer"))
        empty = _placeholder(aligned[0])
        it = iter(aligned)
        full = [next(it) if ds is not None else empty for ds in results]
        cat = xr.concat(full, dim="__point", data_vars="all", coords="minimal",
                        compat="override", join="exact", combine_attrs="drop_conflicts")
        data_vars = {}
        for name, var in cat.data_vars.items():
            var = var.transpose("__point", ...)
            data_vars[name] = ((*dims, *var.dims[1:]),
                               var.values.reshape(*shape, *var.shape[1:]), var.attrs)
        coords = {k: v for k, v in cat.coords.items() if "__point" not in v.dims}
        for name in set(data_vars) & set(grid.coords()):  # e.g. beta(t) when beta is an axis
            renamed = f"{name}_t" if "t" in data_vars[name][0] else f"{name}_var"
            data_vars[renamed] = data_vars.pop(name)
        merged = xr.Dataset(data_vars, coords=coords, attrs=cat.attrs)
    else:
        merged = xr.Dataset()
    merged = merged.assign_coords(grid.coords())
    for name, values in (("status", status), ("error", errors), ("key", keys)):
        merged[name] = (dims, np.asarray(values, dtype=str).reshape(shape))
    merged["status"].attrs["long_name"] = "task status: ok, failed or missing"
    for k in ("sweep_key", "sweep_point", "sweep_settings"):
        merged.attrs.pop(k, None)
    merged.attrs.update(sweep_task=spec["task"], sweep_grid=json.dumps(spec["grid"]),
                        sweep_settings=json.dumps(spec["settings"]))
    return merged
