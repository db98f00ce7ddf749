"""Reading and writing result datasets (netCDF), atomically.

A write goes to a temporary file in the target folder and is renamed over the target
only once complete, so a killed run never leaves a half-written file under the final
name. Reading gives back exactly the dataset that was written (values, dims, attrs).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import OutputError
from .params import Params

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "NETCDF_LOCK",
    "atomic_write",
    "check_output",
    "check_output_folder",
    "load",
    "load_checkpoint",
    "save",
    "save_checkpoint",
]


#: The netCDF/HDF5 libraries are not thread-safe; every netCDF access in linvae holds this.
NETCDF_LOCK = threading.RLock()


def _check_target(path: str | os.PathLike[str], what: str) -> tuple[Path, Path]:
    """(path, folder) if ``path`` can be a file written by rename; else OutputError.

    Cheap checks only (no file is created): the name is not a folder or a special
    file, and its folder exists and is writable.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputError.of(errno.ENOENT, f"{what} path is empty")
    if path.is_dir():
        raise OutputError.of(errno.EISDIR, f"{what} {str(path)!r} is a folder; give a file "
                                           f"name in it, e.g. {str(path / 'run.nc')!r}")
    if path.exists() and not path.is_file():
        raise OutputError.of(errno.EEXIST, f"{what} {str(path)!r} exists and is not a "
                                           f"regular file; it would be replaced")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputError.of(errno.ENOENT, f"output folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise OutputError.of(errno.ENOTDIR, f"{what} {str(path)!r}: {str(folder)!r} is not "
                                            f"a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError.of(errno.EACCES, f"output folder {str(folder)!r} is not writable")
    return path, folder


def _probe(folder: Path, name: str, what: str) -> None:
    """Create and remove a hidden file in ``folder``.

    That is the one test that file systems such as /proc, read-only mounts or full quotas
    answer truthfully.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise OutputError.of(exc.errno or errno.EACCES,
                             f"output folder {str(folder)!r} does not accept new files "
                             f"({exc.strerror or exc}), so {what} cannot be written "
                             f"there") from None
    os.close(fd)
    os.unlink(tmp)


def check_output(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse, before any work, a file path that :func:`atomic_write` could not write.

    Raises :class:`linvae.errors.OutputError` (also FileNotFoundError, PermissionError,
    IsADirectoryError as fits) with a one-line message naming the path: the path is a
    folder or a special file, its folder is missing or not writable, or creating a
    file there fails. ``what`` names the path in the message ("output", "checkpoint").
    """
    path, folder = _check_target(path, what)
    _probe(folder, path.name, f"the {what}")
    return path


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that cannot hold new result files.

    The folder may be missing if it can be created (its nearest existing ancestor is a
    writable folder); nothing is created here. Raises OutputError like
    :func:`check_output`.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputError.of(errno.ENOTDIR, f"{what} {str(path)!r} exists and is not a "
                                                f"folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError.of(errno.EACCES, f"{what} {str(path)!r} is not writable")
        _probe(path, "linvae", f"the {what}'s files")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError.of(errno.ENOTDIR, f"cannot create {what} {str(path)!r}: "
                                            f"{str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError.of(errno.EACCES, f"cannot create {what} {str(path)!r}: "
                                           f"{str(parent)!r} is not writable")
    _probe(parent, "linvae", f"{what} {str(path)!r}")
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file gets the permissions of a normally created one (0666 less the umask), so
    results on a shared file system stay readable by the group. An OSError while
    writing is raised as :class:`linvae.errors.OutputError` naming ``path`` (the
    temporary file is an internal detail and is removed).
    """
    path, folder = _check_target(path, "output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError.of(exc.errno or errno.EACCES,
                             f"cannot write {str(path)!r}: output folder {str(folder)!r} "
                             f"does not accept new files ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError.of(exc.errno or errno.EIO, f"cannot write {str(path)!r}: "
                             f"{exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` (netCDF4) atomically; returns the path.

    The path is checked first (:func:`check_output`): an unwritable one raises
    :class:`linvae.errors.OutputError` before anything is converted or written.
    """
    check_output(path)
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
    import xarray as xr

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
