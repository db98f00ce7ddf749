"""Reading and writing result datasets (netCDF), atomically.

A write goes to a temporary file in the target folder and is renamed over the target
only once complete, so a killed run never leaves a half-written file under the final
name. Reading gives back exactly the dataset that was written (values, dims, attrs).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from .params import Params

__all__ = ["load", "save"]


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` (netCDF4) atomically; returns the path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder {str(folder)!r} is not writable")
    out = ds.copy()
    for name, var in out.variables.items():  # bools are not a netCDF type: store as int8
        if var.dtype == bool:
            out[name] = var.astype(np.int8)
            out[name].attrs["dtype"] = "bool"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a dataset written by :func:`save`, fully into memory, with its types restored."""
    ds = xr.load_dataset(path, engine="netcdf4")
    for name in list(ds.variables):
        if ds[name].attrs.get("dtype") == "bool":
            attrs = {k: v for k, v in ds[name].attrs.items() if k != "dtype"}
            ds[name] = ds[name].astype(bool)
            ds[name].attrs = attrs
    if "beta_schedule" in ds.attrs:  # netCDF turns a length-1 rho into a scalar: restore it
        ds.attrs.update(Params.from_attrs(ds.attrs).to_attrs())
    return ds
