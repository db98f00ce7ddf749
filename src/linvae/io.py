"""Reading and writing result datasets (netCDF), atomically.

A write goes to a temporary file in the target folder and is renamed over the target
only once complete, so a killed run never leaves a half-written file under the final
name. Reading gives back exactly the dataset that was written (values, dims, attrs).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from .params import Params

__all__ = [
    "NETCDF_LOCK",
    "atomic_write",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
]


#: The netCDF/HDF5 libraries are not thread-safe: every netCDF access in linvae holds this.
NETCDF_LOCK = threading.RLock()


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file gets the permissions of a normally created one (0666 less the umask), so
    results on a shared file system stay readable by the group.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder {str(folder)!r} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` (netCDF4) atomically; returns the path."""
    out = ds.copy()
    for name, var in out.variables.items():  # bools are not a netCDF type: store as int8
        if var.dtype == bool:
            out[name] = var.astype(np.int8)
            out[name].attrs["dtype"] = "bool"
    with NETCDF_LOCK:
        return atomic_write(path, lambda tmp: out.to_netcdf(tmp, engine="netcdf4"))


_PARAMS_ATTRS = {"M", "M_star", "rho", "eta", "lam", "tau", "beta_schedule"}


def load(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a dataset written by :func:`save`, fully into memory, with its types restored."""
    with NETCDF_LOCK:
        ds = xr.load_dataset(path, engine="netcdf4")
    for name in list(ds.variables):
        if ds[name].attrs.get("dtype") == "bool":
            attrs = {k: v for k, v in ds[name].attrs.items() if k != "dtype"}
            ds[name] = ds[name].astype(bool)
            ds[name].attrs = attrs
    # netCDF turns a length-1 rho into a scalar: restore the attributes a Params wrote
    # (datasets over a grid of parameters, such as a phase diagram, lack some of them)
    if _PARAMS_ATTRS <= ds.attrs.keys():
        ds.attrs.update(Params.from_attrs(ds.attrs).to_attrs())
    return ds


CHECKPOINT_FORMAT = "linvae-checkpoint-1"


def _digest(meta_json: str, arrays: Mapping[str, NDArray[Any]]) -> str:
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], meta: Mapping[str, Any],
                    arrays: Mapping[str, NDArray[Any]]) -> Path:
    """Write a checkpoint atomically: JSON metadata, named arrays and a SHA-256 over both."""
    meta_json = json.dumps({"format": CHECKPOINT_FORMAT, **meta}, sort_keys=True)
    payload: dict[str, Any] = {**arrays, "__meta__": np.array(meta_json),
               "__sha256__": np.array(_digest(meta_json, arrays))}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Read and verify a checkpoint; a truncated or altered file raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} is truncated or not a linvae checkpoint "
                         f"({exc})") from None
    try:
        meta_json = str(arrays.pop("__meta__"))
        digest = str(arrays.pop("__sha256__"))
        meta = json.loads(meta_json)
    except (KeyError, ValueError):
        raise ValueError(f"checkpoint {str(path)!r} is not a linvae checkpoint") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r}")
    if _digest(meta_json, arrays) != digest:
        raise ValueError(f"checkpoint {str(path)!r} is corrupted (checksum mismatch)")
    return meta, arrays
