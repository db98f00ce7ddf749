"""The files of a sweep folder, and what a sweep call reports.

``sweep.json`` describes the sweep (task, base parameters, fixed settings, grid, point
keys); each point writes ``<key>.nc``, its result with the point's key in its attributes,
or ``<key>.error.json``, the record of its failure. :func:`open_sweep` merges them.
xarray and netCDF4 are imported by the functions that read and write those files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .grid import Grid
from .hashing import _canonical_json, _encode, _normalise, _params_json

if TYPE_CHECKING:
    import xarray as xr

    from ..params import Params

log = logging.getLogger("linvae.sweeps")

_SPEC_FILE = "sweep.json"


# ---------------------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------------------
def _result_path(out: str | Path, key: str) -> Path:
    return Path(out) / f"{key}.nc"


def _error_path(out: str | Path, key: str) -> Path:
    return Path(out) / f"{key}.error.json"


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, like every result file (:func:`linvae.io.save`)."""
    from .. import io

    io.write_text(path, json.dumps(obj, indent=1) + "\n")


def _write_spec(out: Path, task: str, p: Params, settings: Mapping[str, Any],
                grid: Grid, keys: list[str]) -> None:
    _write_json(out / _SPEC_FILE, {"linvae_sweep": 1, "task": task, "params": _params_json(p),
                                   "settings": _encode(settings), "grid": grid.to_dict(),
                                   "keys": keys})


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


def _write_result(out: str | Path, key: str, task: str, point: Mapping[str, Any],
                  settings: Mapping[str, Any], ds: xr.Dataset) -> None:
    """Save a point's result, marked with its key, and drop its old error record."""
    from .. import io

    ds = ds.copy()
    ds.attrs.update(sweep_key=key, sweep_task=task, sweep_point=json.dumps(_encode(point)),
                    sweep_settings=_canonical_json(settings))
    io.save(ds, _result_path(out, key))
    _error_path(out, key).unlink(missing_ok=True)


def _write_error(out: str | Path, key: str, *, index: int, task: str,
                 point: Mapping[str, Any], params: Params, settings: Mapping[str, Any],
                 error: str, tb: str = "") -> None:
    record = {"key": key, "index": index, "task": task,
              "point": _encode(point), "params": _params_json(params),
              "settings": _encode(settings), "error": error, "traceback": tb,
              "host": socket.gethostname(), "pid": os.getpid(),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_json(_error_path(out, key), _normalise(record))


def _read_error(out: Path, key: str) -> str:
    try:
        with open(_error_path(out, key)) as f:
            return str(json.load(f).get("error", "unknown error"))
    except (OSError, ValueError):
        return "failed (unreadable error record)"


def _result_valid(out: str | Path, key: str) -> bool:
    """Whether the result file exists, opens, and carries this point's key."""
    import netCDF4

    from .. import io

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
# what a sweep call did
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
        """Points that failed now (the number of ``failures``)."""
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """True when every selected point has a result."""
        return self.done + self.skipped == self.selected

    def open(self) -> xr.Dataset:
        """Open the merged dataset of the whole sweep (:func:`open_sweep`)."""
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
    """Build a dataset shaped like ``template`` with NaN (numbers) or "" (strings) everywhere."""
    import xarray as xr

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
    import xarray as xr

    from .. import io

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
