"""The exceptions linvae raises for what is not a bad argument.

Bad arguments raise the builtin TypeError or ValueError (docs/validation.md). The
classes here say what else went wrong. Each also derives from the builtin a caller
would have caught before it existed, so ``except RuntimeError`` or ``except OSError``
keeps working:

* :class:`OutputError` (an OSError): a result file, checkpoint or output folder cannot
  be written. Raised before any work is done, by the check of every output path.
* :class:`IntegrationError` (a RuntimeError): the ODE integration failed numerically,
  e.g. the state ran away or the solver gave up; :class:`UnphysicalStateError`, its
  subclass, when the state left the physical region.
* :class:`TooLargeError` (a ValueError): a problem size whose cost grows too fast to
  finish in reasonable time, refused up front with the limit and the reason.

All of them derive from :class:`LinvaeError`. A stopped simulation is not an error:
it raises :class:`linvae.SimulationInterrupted` (a KeyboardInterrupt).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "IntegrationError",
    "LinvaeError",
    "OutputError",
    "TooLargeError",
    "UnphysicalStateError",
]


class LinvaeError(Exception):
    """Base class of linvae's own exceptions."""


class OutputError(LinvaeError, OSError):
    """An output path (file, checkpoint or folder) cannot be written.

    Raised by the output checks before any computation. The instance is also the
    matching builtin: FileNotFoundError for a missing folder, PermissionError for one
    that is not writable, IsADirectoryError for a folder given as a file name.
    """

    @classmethod
    def of(cls, code: int, message: str) -> OutputError:
        """An OutputError that is also the builtin OSError subclass for ``code``."""
        sub = _BY_ERRNO.get(code, OutputError)
        return sub(code, message)

    def __str__(self) -> str:  # the message alone, without "[Errno n]"
        return str(self.strerror)


class _OutputNotFound(OutputError, FileNotFoundError):
    pass


class _OutputPermission(OutputError, PermissionError):
    pass


class _OutputIsADirectory(OutputError, IsADirectoryError):
    pass


class _OutputNotADirectory(OutputError, NotADirectoryError):
    pass


_BY_ERRNO: dict[int, type[OutputError]] = {
    errno.ENOENT: _OutputNotFound, errno.EACCES: _OutputPermission,
    errno.EPERM: _OutputPermission, errno.EROFS: _OutputPermission,
    errno.EISDIR: _OutputIsADirectory, errno.ENOTDIR: _OutputNotADirectory,
}


class IntegrationError(LinvaeError, RuntimeError):
    """The ODE integration failed numerically (the state ran away, became non-finite,
    or the solver gave up). ``t`` is the time it happened (NaN if unknown) and
    ``partial`` the dataset of the recorded points before it, or None."""

    def __init__(self, message: str, *, t: float = float("nan"),
                 partial: xr.Dataset | None = None) -> None:
        super().__init__(message)
        self.t = t
        self.partial = partial


class UnphysicalStateError(IntegrationError):
    """The ODE solution left the physical region (Gram matrix not PSD, or D <= 0).

    ``partial`` holds the dataset of the physical part of the trajectory (recorded
    points before the event), ``t`` the time the state left the region.
    """


class TooLargeError(LinvaeError, ValueError):
    """A problem size beyond what the function can finish in reasonable time, refused
    before any work; the message states the limit and why."""
