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
it raises :class:`SimulationInterrupted` (a KeyboardInterrupt), or
:class:`SimulationTerminated` (also a SystemExit) for a signal other than Ctrl-C. A
replica that diverges while the others go on gives a :class:`DivergenceWarning`.
"""

from __future__ import annotations

import errno
import math
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import xarray as xr

__all__ = [
    "DivergenceWarning",
    "IntegrationError",
    "LinvaeError",
    "OutputError",
    "SimulationInterrupted",
    "SimulationTerminated",
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
        """Build an OutputError that is also the builtin OSError subclass for ``code``."""
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
    """The ODE integration failed numerically.

    The state ran away, became non-finite, or the solver gave up. ``t`` is the time it
    happened (NaN if unknown) and ``partial`` the dataset of the recorded points before
    it, or None.
    """

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
    """A problem size beyond what the function can finish in reasonable time.

    Refused before any work; the message states the limit and why.
    """


class DivergenceWarning(RuntimeWarning):
    """A replica diverged and was stopped; the others went on."""


class SimulationInterrupted(KeyboardInterrupt):
    """A run of :func:`simulate` stopped by Ctrl-C (or another stop signal).

    The run stops between chunks, so everything here describes one consistent state.

    Attributes
    ----------
    partial : xarray.Dataset
        What was recorded so far (attributes ``partial`` = 1 if the run is incomplete,
        ``t_reached``, ``stopped_by``).
    signal : int
        The signal that stopped the run (``signal.SIGINT`` for Ctrl-C).
    checkpoint : Path or None
        The checkpoint written on the way out (None without ``checkpoint=``); resume
        from it with ``simulate(..., resume=checkpoint)``.
    t : float
        The time t = steps / N the run had reached.
    exit_code : int
        The conventional exit status for the signal, 128 + its number (130 for SIGINT,
        143 for SIGTERM, 138 for SIGUSR1 on Linux).
    """

    def __init__(self, partial: xr.Dataset | None = None, *, signum: int = signal.SIGINT,
                 checkpoint: Path | None = None, t: float = math.nan,
                 message: str = "") -> None:
        super().__init__(message or "simulation interrupted; the recorded part is in "
                                    ".partial")
        self.partial = partial
        self.signal = int(signum)
        self.checkpoint = checkpoint
        self.t = t
        self.exit_code = 128 + int(signum)

    def __reduce__(self) -> tuple[Any, ...]:  # the partial dataset stays behind
        state: dict[str, Any] = {"signal": self.signal, "checkpoint": self.checkpoint,
                                 "t": self.t, "exit_code": self.exit_code, "args": self.args}
        if isinstance(self, SystemExit):
            state["code"] = self.code
        return (type(self), (None,), state)


class SimulationTerminated(SimulationInterrupted, SystemExit):
    """A run stopped by SIGTERM or another requested signal (not Ctrl-C).

    Also a SystemExit with ``code`` = :attr:`exit_code`: left uncaught, it ends a
    script quietly with the conventional status (143 for SIGTERM), as the signal would
    have, after the checkpoint is written. Caught, it is a
    :class:`SimulationInterrupted` like any other.
    """

    def __init__(self, partial: xr.Dataset | None = None, *, signum: int = signal.SIGTERM,
                 checkpoint: Path | None = None, t: float = math.nan,
                 message: str = "") -> None:
        super().__init__(partial, signum=signum, checkpoint=checkpoint, t=t, message=message)
        self.code = self.exit_code
