"""One-pass SGD at large N with the compiled engine (docs/model.md#sgd)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from . import _core, io, observables
from . import methods as _methods
from ._validate import check_int, check_real
from .data import DataSpec, check_data
from .dataset import make_dataset, parse_state, state_shapes, time_grid
from .errors import DivergenceWarning, SimulationInterrupted, SimulationTerminated
from .methods import METHODS as _METHOD_CLASSES
from .methods import Gram, Method, Weights, as_method, record_bytes
from .observables import ORDER_PARAMETERS, gram_sqrt, state_gram
from .params import Params, check_params

__all__ = ["METHODS", "STOP_SIGNALS", "Checkpoint", "DivergenceWarning",
           "SimulationInterrupted", "SimulationTerminated", "record_steps", "simulate"]

log = logging.getLogger("linvae.simulation")

#: Status codes of the engine, as reported in the dataset's ``divergence`` variable.
DIVERGENCE_REASONS = dict(enumerate(_core.STATUS_REASONS))

#: Names of the engines of :func:`simulate`, the weights themselves or the chain of their
#: Gram matrix (the keys of :data:`linvae.methods.METHODS`, the registry of their classes).
METHODS: tuple[str, ...] = tuple(_METHOD_CLASSES)

# Aim for ~0.1 s of engine work between returns to Python (progress, Ctrl-C).
_CHUNK_WORK = 2e7
# At most this many steps per chunk: the Gram chain's steps are so cheap that the work
# rule alone would ask for 1e6 and more, and the chunk's beta array is best kept small
# enough for the cache (2 MiB).
_CHUNK_STEPS = 2**18
# Seconds between progress lines in the log when there is no progress bar (batch jobs).
_LOG_EVERY = 60.0


#: Signals that :func:`simulate` can be asked to stop on (``stop_signals``), besides
#: Ctrl-C (SIGINT), which always stops it: SIGTERM ends a batch job at its wall-time
#: limit (SLURM, PBS), SIGUSR1/SIGUSR2 are what ``sbatch --signal`` sends ahead of it,
#: SIGHUP a closed terminal, SIGXCPU a CPU-time limit.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGXCPU")


def _signal_numbers(stop_signals: Iterable[str | int]) -> list[signal.Signals]:
    """Return the checked ``stop_signals`` as signal numbers, SIGINT first and always included."""
    if isinstance(stop_signals, (str, int)):
        stop_signals = [stop_signals]
    out = [signal.SIGINT]
    for s in stop_signals:
        if isinstance(s, str):
            name = s.upper() if s.upper().startswith("SIG") else "SIG" + s.upper()
        else:
            try:
                name = signal.Signals(s).name
            except (ValueError, TypeError):
                raise ValueError(f"stop_signals must name signals among {STOP_SIGNALS}, "
                                 f"got {s!r}") from None
        if name not in STOP_SIGNALS:
            raise ValueError(f"stop_signals must be among {STOP_SIGNALS}, got {s!r}")
        if not hasattr(signal, name):
            raise ValueError(f"stop_signals: {name} does not exist on this platform")
        sig = signal.Signals[name]
        if sig not in out:
            out.append(sig)
    return out


class _StopRequest:
    """The first stop signal received during a run (None while none came)."""

    signum: int | None = None


@contextlib.contextmanager
def _deferred_signals(signals: Iterable[signal.Signals]) -> Iterator[_StopRequest]:
    """Turn ``signals`` into a stop request for the duration of a run.

    The handler only records the signal; the chunk loop looks at it between chunks, so
    the engine state and the step counters are always committed together and a
    checkpoint written on the way out describes one consistent state. Later signals are
    ignored until the run has stopped (the checkpoint write is not cut short). The
    previous handlers are restored afterwards. A signal that is ignored (SIG_IGN, e.g.
    SIGINT of a background job) stays ignored, one whose handler was installed outside
    Python is left alone, and outside the main thread (where Python cannot take
    signals) nothing is installed.
    """
    request = _StopRequest()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if request.signum is None:
            request.signum = signum

    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN or old is None:
                continue
            previous[sig] = old
            signal.signal(sig, handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class Checkpoint:
    """Checkpointing of a run of :func:`simulate`: ``simulate(..., checkpoint=Checkpoint(path))``.

    The complete run state (weights, generator states, records so far) is saved to
    ``path``, atomically, every ``every`` seconds of wall time, when a stop signal
    arrives, and when the run ends (so resuming a finished run returns its result at
    once). The path is checked before any work. ``Checkpoint(path, every=60.0)`` is the
    keywords ``checkpoint=path, checkpoint_every=60.0`` of :func:`simulate`, and
    ``Checkpoint(path, resume=True)`` is ``checkpoint=path, resume=path``.

    Parameters
    ----------
    path : path
        The checkpoint file.
    every : float
        Seconds of wall time between checkpoints (>= 0; 0: after every chunk of about
        0.1 s of work).
    resume : bool
        Continue the run saved at ``path``, and keep checkpointing it there. The call
        must have the same parameters as the one that wrote it; the result is
        bit-identical to an uninterrupted run, whenever the interruption came. The file
        must exist (FileNotFoundError, before any work, if not).
    stop_signals : tuple of signal names
        Signals that stop the run like Ctrl-C, besides SIGINT (which always does): the
        run stops at the end of the current chunk (about 0.1 s), writes its checkpoint
        and raises :class:`~linvae.errors.SimulationTerminated`. Default
        ``("SIGTERM",)``, what batch systems send at the wall-time limit; add
        ``"SIGUSR1"`` for ``sbatch --signal=B:USR1@120``. Allowed: :data:`STOP_SIGNALS`.
    """

    path: str | os.PathLike[str]
    every: float = 600.0
    resume: bool = False
    stop_signals: tuple[str | int, ...] = ("SIGTERM",)

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"Checkpoint.path must be a file path (str or os.PathLike), got "
                            f"{type(self.path).__name__} {self.path!r}")
        object.__setattr__(self, "every", check_real("Checkpoint.every", self.every, ge=0.0))
        if not isinstance(self.resume, bool):
            raise TypeError(f"Checkpoint.resume must be True or False (the checkpoint to "
                            f"continue is path), got {type(self.resume).__name__} "
                            f"{self.resume!r}")
        signals: Any = self.stop_signals
        signals = (signals,) if isinstance(signals, (str, int)) else tuple(signals)
        _signal_numbers(signals)  # ValueError naming stop_signals, the value and the rule
        object.__setattr__(self, "stop_signals", signals)


#: What :func:`simulate`'s separate checkpoint keywords are when left out.
_CHECKPOINT_KEYWORDS: dict[str, Any] = {"checkpoint_every": 600.0, "resume": None,
                                        "stop_signals": ("SIGTERM",)}
#: What its separate data keywords are when left out: DataSpec's own defaults.
_DATA_KEYWORDS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(DataSpec)}


def _is_default(name: str, value: Any, default: Any) -> bool:
    """Whether a keyword of :func:`simulate` was left at (or given) its default value."""
    if value is default:
        return True
    if name == "stop_signals":  # ["SIGTERM"] or "TERM" say the same as ("SIGTERM",)
        try:
            return _signal_numbers(value) == _signal_numbers(default)
        except (TypeError, ValueError):
            return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # an array, say: not a default
        return False


def _checkpoint_options(checkpoint: str | os.PathLike[str] | Checkpoint | None,
                        keywords: dict[str, Any]) -> tuple[Any, float, Any, Any]:
    """Return (path, every, resume path, stop signals) from a Checkpoint or the keywords."""
    if not isinstance(checkpoint, Checkpoint):
        return (checkpoint, check_real("checkpoint_every", keywords["checkpoint_every"], ge=0.0),
                keywords["resume"], keywords["stop_signals"])
    given = [f"{k}={v!r}" for k, v in keywords.items()
             if not _is_default(k, v, _CHECKPOINT_KEYWORDS[k])]
    if given:
        raise TypeError(f"give the checkpoint options either as checkpoint=Checkpoint(...) or "
                        f"as keywords, not both: got checkpoint={checkpoint!r} and "
                        f"{', '.join(given)}")
    return (checkpoint.path, checkpoint.every, checkpoint.path if checkpoint.resume else None,
            checkpoint.stop_signals)


def _data_options(data: DataSpec | None, keywords: dict[str, Any]) -> DataSpec:
    """Return the checked data options, from a DataSpec or the keywords (by check_data)."""
    if data is None:
        return check_data(**keywords)
    if not isinstance(data, DataSpec):
        raise TypeError(f"data must be a linvae.DataSpec, the data options (e.g. "
                        f"DataSpec(noise='laplace')), got {type(data).__name__} {data!r}")
    given = [f"{k}={v!r}" for k, v in keywords.items() if not _is_default(k, v, _DATA_KEYWORDS[k])]
    if given:
        raise TypeError(f"give the data options either as data=DataSpec(...) or as keywords, "
                        f"not both: got data and {', '.join(given)}")
    # a DataSpec is built unchecked: check (and normalise) it as the keywords would be
    return check_data(**dataclasses.asdict(data))


def record_steps(N: int, t_max: float, record_every: float,
                 times: ArrayLike | None = None) -> NDArray[np.int64]:
    """Return the step counts s = round(t N) of the recorded states (increasing, unique).

    The recorded states are those of the grid of :func:`linvae.dataset.time_grid`.
    """
    t = time_grid(t_max, record_every, times)
    return np.unique(np.round(t * N).astype(np.int64))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _run_key(p: Params, *, steps: NDArray[np.int64], state: Mapping[str, NDArray[np.float64]] | None,
             **settings: Any) -> dict[str, Any]:
    """Everything that fixes a run's trajectory, as JSON-able values."""
    key: dict[str, Any] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                           for k, v in p.to_attrs().items()}
    key.update(settings)
    key["record_steps_sha256"] = hashlib.sha256(steps.tobytes()).hexdigest()
    key["init"] = "random" if state is None else hashlib.sha256(
        b"".join(np.ascontiguousarray(state[k]).tobytes() for k in ORDER_PARAMETERS)).hexdigest()
    return key


def _restore(path: str | os.PathLike[str], run_key: dict[str, Any], engine: Any,
             ops: dict[str, NDArray[np.float64]],
             train: dict[str, NDArray[np.float64]]) -> tuple[int, int]:
    """Load a checkpoint into the engine and the record arrays; returns (s0, n_done)."""
    meta, arrays = io.load_checkpoint(path)
    saved = meta["run"]
    saved.setdefault("method", "weights")  # written before there was a choice
    saved.setdefault("factors", "gaussian")
    diff = sorted(k for k in set(saved) | set(run_key) if saved.get(k) != run_key.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs call {run_key.get(k)!r}"
                            for k in diff)
        raise ValueError(f"resume: checkpoint {str(path)!r} belongs to another run ({details})")
    for k, v in {**ops, **train}.items():
        v[...] = arrays[f"op/{k}"]
    for r in range(ops["D"].shape[0]):
        prefix = f"replica{r}/"
        state: dict[str, Any] = {k[len(prefix):]: v for k, v in arrays.items()
                                 if k.startswith(prefix)}
        for k, v in list(state.items()):  # scalars were stored as 0-d arrays
            if np.ndim(v) == 0:
                state[k] = v.item()
        engine.set_state(r, state)
    return int(meta["s0"]), int(meta["n_done"])


def _teacher_first(S: NDArray[np.float64], M_star: int) -> NDArray[np.float64]:
    """Return U^T S, U orthogonal, whose first M* columns are exactly [I; 0].

    A prescribed start is [W*, W, V] = sqrt(N) F S with F the orthonormalised frame of
    [W*, W, V]; with this square root of the Gram matrix W* is F's first M* columns,
    which depend on the teacher's own draw alone. A finite dataset needs that: its
    teacher is part of the dataset, which replicas may share.
    """
    q, r = np.linalg.qr(S[:, :M_star], mode="complete")
    q[:, :M_star] *= np.sign(np.diag(r))
    out = q.T @ S
    out[:, :M_star] = np.eye(S.shape[0], M_star)  # so up to rounding already
    return np.asarray(out)


def new_engine(p: Params, N: int, *, replicas: int = 1, seed: int = 0,
               method: str | Method = "weights", dtype: str = "float64",
               noise: str = "gaussian", blowup: float = 1e8, data: DataSpec | None = None,
               **options: Any) -> Any:
    """Build the compiled engine that :func:`simulate` runs: ``as_method(...).engine(...)``.

    That is ``_core.GramEngine`` for the Gram chain, else ``_core.Engine64`` or
    ``_core.Engine32`` by ``dtype`` (see :mod:`linvae.methods`). The arguments are taken
    as checked (by :func:`simulate`); the compiled constructor checks sizes again.
    ``data`` holds the data options (default: ``noise`` alone, fresh samples every
    step). ``options`` are the method's own (``compensated`` for the Gram chain).
    """
    meth = as_method(method, dtype)
    if options:
        meth = dataclasses.replace(meth, **options)
    data = data if data is not None else check_data(noise=noise)
    return meth.engine(p, N, replicas=replicas, seed=seed, data=data, blowup=blowup)


def empty_records(p: Params, replicas: int, T: int) -> dict[str, NDArray[np.float64]]:
    """NaN-filled (replicas, T, ...) arrays of the order parameters, for an engine's run."""
    return {k: np.full((replicas, T, *shape), np.nan) for k, shape in state_shapes(p).items()}


def simulate(p: Params, N: int, t_max: float, record_every: float = 0.1, *, seeds: int = 1,
             seed: int = 0, init: str | Mapping[str, Any] | xr.Dataset = "random",
             threads: int | None = None, dtype: Literal["float64", "float32"] = "float64",
             progress: bool = True, times: ArrayLike | None = None,
             blowup: float = 1e8,
             checkpoint: str | os.PathLike[str] | Checkpoint | None = None,
             checkpoint_every: float = 600.0,
             resume: str | os.PathLike[str] | None = None,
             noise: Literal["gaussian", "rademacher", "laplace", "uniform",
                            "student_t"] = "gaussian",
             stop_signals: Iterable[str | int] = ("SIGTERM",),
             method: Literal["weights", "gram"] | Method = "weights",
             noise_df: float | None = None,
             factors: Literal["gaussian", "rademacher"] = "gaussian",
             dataset_size: int | None = None, order: Literal["shuffle", "cycle"] = "shuffle",
             dataset_seed: int | None = None, training_loss: bool = False,
             data: DataSpec | None = None) -> xr.Dataset:
    """Run one-pass SGD for ``seeds`` independent replicas and record the order parameters.

    Parameters
    ----------
    p : Params
        Model and SGD parameters; ``p.beta`` may be a schedule (evaluated at t = s/N
        before step s).
    N : int
        Input dimension.
    t_max : float
        Length of the run in time t = steps / N (round(t_max N) steps).
    record_every : float
        Spacing of the recorded times (ignored when ``times`` is given).
    seeds : int
        Number of independent replicas S; replica r uses the random streams of
        (seed, r) only, so results do not depend on ``threads``.
    seed : int
        Base seed, 0 <= seed < 2**63.
    init : "random" or mapping or Dataset
        ``"random"``: W, V i.i.d. N(0, 1), D = 1 (the authors' default). Otherwise a
        state {"m", "d", "Q", "E", "R", "D"} (or a dataset slice) realised exactly at
        t = 0 as in docs/model.md#initial-states.
    threads : int, optional
        OpenMP threads over replicas (default: all available, at most S).
    dtype : "float64" or "float32"
        Precision of the weights of ``method="weights"`` (the same as
        ``method=Weights(dtype=...)``; not given with a method object). float32 updates
        them in float arithmetic and draws float normals (its trajectories are not the
        float64 ones rounded, but follow the same ODE with the same N^-1/2
        fluctuations); about 1.7x faster, half the memory. Order parameters are summed in
        float64 (for float32, Q and the step's projections in float over runs of 128
        rows first).
    progress : bool
        Show a progress bar on a terminal or in a notebook.
    times : array-like, optional
        Explicit recorded times in [0, t_max] instead of the regular grid.
    blowup : float
        A diagonal entry of Q or E above this counts as divergence.
    checkpoint : Checkpoint or path, optional
        Checkpointing, as a :class:`Checkpoint` (``Checkpoint(path, every=600.0,
        resume=False, stop_signals=("SIGTERM",))``, which then holds all its options: the
        keywords ``checkpoint_every``, ``resume`` and ``stop_signals`` must be left out,
        else TypeError), or the path alone with those keywords. Save the complete run
        state (weights, generator states, records so far) to this file, atomically,
        every ``checkpoint_every`` seconds of wall time, when a stop signal arrives, and
        when the run ends (so resuming a finished run returns its result at once). The
        path is checked before any work.
    checkpoint_every : float
        Seconds between checkpoints (``Checkpoint.every``).
    resume : path, optional
        Continue the run saved in this checkpoint. The call must have the same parameters
        as the one that wrote it; the result is bit-identical to an uninterrupted run,
        whenever the interruption came. Give ``checkpoint`` too (the same path) to keep
        checkpointing the continued run; ``checkpoint=Checkpoint(path, resume=True)`` is
        ``checkpoint=path, resume=path``. The file must exist (FileNotFoundError).
    noise : "gaussian", "rademacher", "laplace", "uniform" or "student_t"
        Distribution of the background noise n_i, each with mean 0 and variance 1
        (docs/model.md#data-families). This and the other data options (``noise_df``,
        ``factors``, ``dataset_size``, ``order``, ``dataset_seed``, ``training_loss``)
        can be given together as ``data`` instead. Gaussian is the model; the others have the same
        first two moments, hence the same ODE limit. Rademacher (+-1) is the fastest to
        draw; Student-t needs ``noise_df``.
    stop_signals : sequence of signal names
        Signals that stop the run like Ctrl-C, besides SIGINT (which always does): the
        run stops at the end of the current chunk (about 0.1 s), writes its checkpoint
        and raises :class:`SimulationTerminated`. Default ``("SIGTERM",)``, what batch
        systems send at the wall-time limit; add ``"SIGUSR1"`` for ``sbatch
        --signal=B:USR1@120``. Allowed: :data:`STOP_SIGNALS`. The handlers are in place
        only during the call (in the main thread) and the previous ones are restored.
        (``Checkpoint.stop_signals``.)
    method : "weights", "gram", Weights or Gram
        A name of :data:`linvae.methods.METHODS` or a method object holding its options
        (:class:`linvae.Weights`, :class:`linvae.Gram`; ``method="gram"`` is
        ``method=Gram()``, ``method="weights", dtype="float32"`` is
        ``method=Weights(dtype="float32")``). ``"weights"``: SGD itself on the N-vectors
        W, V (cost per step ~ N). ``"gram"``: the Gram chain of docs/model.md#gram-chain,
        which draws the exact finite-N law of the order parameters at a cost per step
        independent of N (about 55 ns for M = M* = 1). It needs Gaussian noise, float64
        and N >= M* + 2M. Its trajectories have the same law as those of "weights", but
        the same seed gives another (equally distributed) trajectory.
    noise_df : float, optional
        Degrees of freedom nu > 2 of ``noise="student_t"`` (scaled to variance 1; its
        fourth moment is finite only for nu > 4).
    factors : "gaussian" or "rademacher"
        Distribution of the factors c_f (variance 1 either way).
    dataset_size : int, optional
        Train on a finite dataset of P samples, visited over and over (multi-epoch SGD,
        docs/model.md#finite-datasets), instead of a fresh sample every step (None, the
        default). Sample mu is regenerated from its key at every visit, so memory is that
        of one-pass SGD for any P. The recorded observables (and ``eg``) are still those
        of the population.
    order : "shuffle" or "cycle"
        Order of the visits to a finite dataset: a fresh pseudo-random permutation every
        epoch (keyed by the seed and the replica), or mu = step mod P.
    dataset_seed : int, optional
        Every replica trains on the one dataset (teacher and samples) of this seed.
        Without it, each replica draws its own from (seed, replica).
    training_loss : bool
        Also record ``train_loss``, the loss averaged over the P training samples. Each
        record then costs P passes over the weights (P N M operations instead of N M).
    data : DataSpec, optional
        The data options above (``noise`` to ``training_loss``) as one
        :class:`linvae.DataSpec`, e.g. ``data=DataSpec(noise="laplace",
        dataset_size=1000)``, checked as the keywords are. The separate keywords must then
        be left out (TypeError).

    Raises
    ------
    SimulationInterrupted
        Ctrl-C (SIGINT) stopped the run; ``.partial``, ``.checkpoint``, ``.exit_code``.
    SimulationTerminated
        Another signal of ``stop_signals`` did; a SimulationInterrupted and a
        SystemExit (uncaught: exit status 128 + signal number, e.g. 143).
    linvae.errors.OutputError
        ``checkpoint`` cannot be written (checked before any work).
    TypeError
        Options given both as an object (``data``, a method object, a
        :class:`Checkpoint`) and as the separate keywords it replaces.

    Returns
    -------
    xarray.Dataset
        m, d (replica, t, latent, factor); Q, E, R (replica, t, latent, latent2);
        D (replica, t, latent); eg, rate, distortion, loss (replica, t); beta (t);
        diverged, t_diverged, divergence (replica). Attributes hold every parameter.
        A diverged replica's records after its divergence are NaN.
    """
    p = check_params(p)
    N = check_int("N", N, ge=1)
    t_max = check_real("t_max", t_max, gt=0.0)
    if times is None:
        record_every = check_real("record_every", record_every, gt=0.0, le=t_max)
    S = check_int("seeds", seeds, ge=1)
    seed = check_int("seed", seed, ge=0, le=2**63 - 1)  # stored as a netCDF int64
    blowup = check_real("blowup", blowup, gt=0.0)
    # a Checkpoint, or the separate keywords: one path, period, resume path, signals
    ckpt_object = isinstance(checkpoint, Checkpoint)
    path, checkpoint_every, resume, stop_signals = _checkpoint_options(
        checkpoint, {"checkpoint_every": checkpoint_every, "resume": resume,
                     "stop_signals": stop_signals})
    # a DataSpec, or the separate keywords: one DataSpec, checked
    data = _data_options(data, {"noise": noise, "noise_df": noise_df, "factors": factors,
                                "dataset_size": dataset_size, "order": order,
                                "dataset_seed": dataset_seed, "training_loss": training_loss})
    meth = as_method(method, dtype)  # a name (with dtype) or a Method object
    meth.check(p, N, data)
    gram = isinstance(meth, Gram)
    dtype = meth.dtype if isinstance(meth, Weights) else "float64"
    K = p.M_star + 2 * p.M  # columns of [W*, W, V]
    signals = _signal_numbers(stop_signals)
    # from here on a stop signal only sets a flag, seen between chunks of the run
    with _deferred_signals(signals) as stop:
        ckpt = io.check_output(path, "checkpoint") if path is not None else None
        if resume is not None and not Path(resume).is_file():
            raise FileNotFoundError(f"checkpoint {str(resume)!r} does not exist")
        info = _core.build_info()
        nthreads = (min(S, int(info["max_threads"])) if threads is None
                    else check_int("threads", threads, ge=1))
        if max(p.M, p.M_star) > info["max_latents"]:
            raise ValueError(f"M and M_star must be <= {info['max_latents']} "
                             f"for the engine, got M={p.M}, M_star={p.M_star}")

        if isinstance(init, str):
            if init != "random":
                raise ValueError(f"init must be 'random' or a state mapping, got {init!r}")
            state = None
            if N < p.M_star:
                raise ValueError(f"N must be >= M_star={p.M_star} for an orthonormal teacher, "
                                 f"got {N}")
        else:
            state = parse_state(init, p)
            if N < K:
                raise ValueError(f"N must be >= M_star + 2 M = {K} to realise a prescribed init, "
                                 f"got {N}")

        if t_max * N > 2.0**62:  # steps are counted in int64
            raise ValueError(f"t_max={t_max:g} at N={N} means {t_max * N:.3g} steps, beyond the "
                             f"engine's limit of 2^62")
        weights = meth.weight_bytes(p, N, S, data)
        T_est = np.size(times) if times is not None else t_max / record_every + 2
        records = record_bytes(p, S, T_est)
        avail = _methods.available_memory()
        if weights + records > avail:  # say so before allocating, naming what dominates
            what = (f"N={N} with seeds={S} needs about {weights / 2**30:.1f} GiB for the weights"
                    if weights >= records else
                    f"record_every={record_every:g} with t_max={t_max:g} and seeds={S} records "
                    f"{T_est:.3g} times, which needs about {records / 2**30:.3g} GiB")
            raise MemoryError(f"{what}, but only {avail / 2**30:.1f} GiB of memory is available")

        steps = record_steps(N, t_max, record_every, times)
        total = round(t_max * N)
        T = steps.size
        ops = empty_records(p, S, T)
        # the training set's moments Bb and Cab at each record
        train = ({k: np.full((S, T, p.M, p.M), np.nan) for k in ("train_Bb", "train_Cab")}
                 if data.training_loss else {})
        # what a checkpoint must agree on to continue this very run
        run_key = _run_key(p, N=N, t_max=t_max, seeds=S, seed=seed, dtype=dtype, blowup=blowup,
                           method=meth.name, steps=steps, state=state, **data.attrs())

        engine = meth.engine(p, N, replicas=S, seed=seed, data=data, blowup=blowup)
        s0, n_done = 0, 0  # next step to take, records taken
        if resume is not None:
            s0, n_done = _restore(resume, run_key, engine, ops, train)
        elif state is None:
            engine.init_random(nthreads)
        elif gram:  # the Gram matrix itself: the start is taken exactly
            engine.init_gram(state_gram(state), state["D"].tolist(), nthreads)
        else:
            S_root = gram_sqrt(state_gram(state))
            if data.dataset_size is not None:  # the dataset's teacher, whatever W and V
                S_root = _teacher_first(S_root, p.M_star)
            engine.init_prescribed(S_root, state["D"].tolist(), nthreads)

        attrs = {"kind": "simulation", "N": N, "seed": seed, "replicas": S, "t_max": t_max,
                 "record_every": record_every if times is None else float("nan"), "dtype": dtype,
                 "init": "random" if state is None else "prescribed", "blowup": blowup,
                 **data.attrs(), "method": meth.name,
                 "linvae_version": version("linvae")}

        def dataset(n_done: int) -> xr.Dataset:
            status, taken = engine.status()
            reasons = np.array([DIVERGENCE_REASONS[int(c)] for c in status], dtype=object)
            ds = make_dataset({k: v[:, :n_done] for k, v in ops.items()}, steps[:n_done] / N, p,
                              lead=("replica", "t"), attrs=attrs)
            diverged = status != 0
            ds["diverged"] = ("replica", diverged)
            ds["t_diverged"] = ("replica", np.where(diverged, taken / N, np.nan))
            ds["divergence"] = ("replica", reasons.astype(str))
            if train:
                beta_t = ds["beta"].values
                ds["train_loss"] = (("replica", "t"), observables.loss_terms(
                    train["train_Bb"][:, :n_done], train["train_Cab"][:, :n_done],
                    ops["Q"][:, :n_done], ops["E"][:, :n_done], ops["D"][:, :n_done],
                    beta=beta_t, lam=p.lam)[2])
                ds["train_loss"].attrs["long_name"] = "loss averaged over the training set"
            return ds

        def save_checkpoint() -> None:
            assert ckpt is not None
            arrays = {f"op/{k}": v for k, v in {**ops, **train}.items()}
            for r in range(S):
                for k, v in engine.get_state(r).items():
                    arrays[f"replica{r}/{k}"] = np.asarray(v)
            io.save_checkpoint(ckpt, {"run": run_key, "s0": s0, "n_done": n_done}, arrays)

        # work per step in the units of _CHUNK_WORK (the Gram chain's from its timings)
        per_step = (10 * K * K / 9 if gram else N * (p.M + 1)) \
            * math.ceil(S / nthreads)
        chunk = max(1, min(total, _CHUNK_STEPS, int(_CHUNK_WORK / per_step)))
        last_save = time.monotonic()
        saved_at = s0 if resume is not None and ckpt is not None and \
            Path(resume).resolve() == Path(ckpt).resolve() else -1
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=s0, unit="step", unit_scale=True,
                   desc=f"simulate {meth.name} N={N} S={S}", disable=None if progress else True,
                   leave=False)
        # without a terminal the bar is off: a batch log gets a line now and then instead
        log_progress = progress and bool(bar.disable)
        t_start, s_start, last_log = time.monotonic(), s0, time.monotonic()
        try:
            while n_done < T and stop.signum is None and not np.all(engine.status()[0] != 0):
                n = min(chunk, total - s0)
                last = s0 + n >= total
                hi = s0 + n + 1 if last else s0 + n  # the last run records the final state
                lo_i, hi_i = np.searchsorted(steps, [s0, hi])
                offsets = (steps[lo_i:hi_i] - s0).astype(np.int64)
                # the same values either way; a constant needs no evaluation per step
                beta = (np.full(n, p.beta_inf) if p.beta.is_constant
                        else p.beta_at((s0 + np.arange(n)) / N))
                # a signal here only sets a flag, never raises, so the engine state and
                # the counters below are always committed together
                engine.run(beta, offsets, ops, rec_start=int(lo_i), threads=nthreads,
                           train_Bb=train.get("train_Bb"), train_Cab=train.get("train_Cab"))
                s0, n_done = s0 + n, int(hi_i)
                bar.update(n)
                if log_progress and time.monotonic() - last_log >= _LOG_EVERY:
                    last_log = time.monotonic()
                    rate = (s0 - s_start) / max(last_log - t_start, 1e-9)
                    log.info("simulate %s N=%d S=%d: t = %.4g of %g (%.0f%%), %s so far, "
                             "about %s to go", meth.name, N, S, s0 / N, t_max, 100 * s0 / total,
                             _duration(last_log - t_start), _duration((total - s0) / rate))
                if ckpt is not None and not last and \
                        time.monotonic() - last_save >= checkpoint_every:
                    save_checkpoint()
                    saved_at, last_save = s0, time.monotonic()
        except KeyboardInterrupt:  # raised by Python code, not by a signal (deferred above)
            stop.signum = signal.SIGINT
        finally:
            bar.close()
        # still inside the deferral: a second signal cannot cut the final write short
        if ckpt is not None and saved_at != s0:
            save_checkpoint()
        if stop.signum is not None:
            partial = dataset(n_done)
            partial.attrs.update(partial=int(n_done < T), t_reached=s0 / N,
                                 stopped_by=signal.Signals(stop.signum).name)
            name = signal.Signals(stop.signum).name
            again = ("checkpoint=Checkpoint(..., resume=True)" if ckpt_object
                     else f"resume={str(ckpt)!r}")
            where = (f"checkpoint written to {str(ckpt)!r}: run the same call with "
                     f"{again} to continue" if ckpt is not None else
                     "no checkpoint= was given, so a rerun starts over")
            msg = (f"simulation stopped by {name} at t = {s0 / N:.6g} of {t_max:g}; {where}; "
                   f"the recorded part is in .partial")
            if stop.signum == signal.SIGINT:
                raise SimulationInterrupted(partial, signum=stop.signum, checkpoint=ckpt,
                                            t=s0 / N, message=msg)
            # an uncaught SystemExit prints nothing itself, so say it here
            log.warning("%s", msg, extra={"linvae_stop_notice": True})
            raise SimulationTerminated(partial, signum=stop.signum, checkpoint=ckpt,
                                       t=s0 / N, message=msg)

        ds = dataset(T)
        for r in np.flatnonzero(ds["diverged"].values):
            warnings.warn(f"replica {r} diverged at t = {float(ds['t_diverged'][r]):.4g} "
                          f"({ds['divergence'].values[r]}); it was stopped, its later records "
                          f"are NaN, and the other replicas went on", DivergenceWarning,
                          stacklevel=2)
        return ds
