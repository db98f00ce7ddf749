"""One-pass SGD at large N with the compiled engine (MODEL.md sections 1 to 4 and 7)."""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from . import _core, io
from ._validate import check_int, check_real
from .dataset import make_dataset, parse_state, time_grid
from .observables import ORDER_PARAMETERS, gram_sqrt, state_gram
from .params import Params

__all__ = ["DivergenceWarning", "SimulationInterrupted", "record_steps", "simulate"]

#: Status codes of the engine, as reported in the dataset's ``divergence`` variable.
DIVERGENCE_REASONS = {0: "", 1: "non-finite value", 2: "D <= 0", 3: "blow-up"}

# Aim for ~0.1 s of engine work between returns to Python (progress, Ctrl-C).
_CHUNK_WORK = 2e7


class DivergenceWarning(RuntimeWarning):
    """A replica diverged and was stopped; the others went on."""


class SimulationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`simulate`; ``partial`` holds what was recorded so far."""

    def __init__(self, partial: xr.Dataset) -> None:
        super().__init__("simulation interrupted; the recorded part is in .partial")
        self.partial = partial


def record_steps(N: int, t_max: float, record_every: float,
                 times: ArrayLike | None = None) -> NDArray[np.int64]:
    """Step counts s = round(t N) of the recorded states (increasing, unique) for the
    grid of :func:`linvae.dataset.time_grid`."""
    t = time_grid(t_max, record_every, times)
    return np.unique(np.round(t * N).astype(np.int64))

def _available_memory() -> float:
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return math.inf


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
             ops: dict[str, NDArray[np.float64]]) -> tuple[int, int]:
    """Load a checkpoint into the engine and the record arrays; returns (s0, n_done)."""
    meta, arrays = io.load_checkpoint(path)
    saved = meta["run"]
    diff = sorted(k for k in set(saved) | set(run_key) if saved.get(k) != run_key.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs call {run_key.get(k)!r}"
                            for k in diff)
        raise ValueError(f"resume: checkpoint {str(path)!r} belongs to another run ({details})")
    for k, v in ops.items():
        v[...] = arrays[f"op/{k}"]
    for r in range(ops["D"].shape[0]):
        prefix = f"replica{r}/"
        state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        for k in ("dec1", "vdec", "has_pending", "steps", "status"):
            state[k] = state[k].item()
        engine.set_state(r, state)
    return int(meta["s0"]), int(meta["n_done"])


def simulate(p: Params, N: int, t_max: float, record_every: float = 0.1, *, seeds: int = 1,
             seed: int = 0, init: str | Mapping[str, Any] | xr.Dataset = "random",
             threads: int | None = None, dtype: Literal["float64", "float32"] = "float64",
             progress: bool = True, times: ArrayLike | None = None,
             blowup: float = 1e8, checkpoint: str | os.PathLike[str] | None = None,
             checkpoint_every: float = 600.0,
             resume: str | os.PathLike[str] | None = None,
             noise: Literal["gaussian", "rademacher"] = "gaussian") -> xr.Dataset:
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
        t = 0 as in MODEL.md section 7.
    threads : int, optional
        OpenMP threads over replicas (default: all available, at most S).
    dtype : "float64" or "float32"
        Precision of the weights. float32 updates them in float arithmetic and draws
        float normals (its trajectories are not the float64 ones rounded, but follow
        the same ODE with the same N^-1/2 fluctuations); about 1.7x faster, half the
        memory. Order parameters are summed in float64 (for float32, Q and the step's
        projections in float over runs of 128 rows first).
    progress : bool
        Show a progress bar on a terminal or in a notebook.
    times : array-like, optional
        Explicit recorded times in [0, t_max] instead of the regular grid.
    blowup : float
        A diagonal entry of Q or E above this counts as divergence.
    checkpoint : path, optional
        Save the complete run state (weights, generator states, records so far) to this
        file, atomically, every ``checkpoint_every`` seconds of wall time and on Ctrl-C.
    checkpoint_every : float
        Seconds between checkpoints.
    resume : path, optional
        Continue the run saved in this checkpoint. The call must have the same parameters
        as the one that wrote it; the result is bit-identical to an uninterrupted run.
    noise : "gaussian" or "rademacher"
        Distribution of the background noise n. Gaussian is the model; Rademacher
        (n_i = +-1) has the same first two moments, hence the same ODE limit, and is
        faster to draw. The signal factors c stay Gaussian.

    Returns
    -------
    xarray.Dataset
        m, d (replica, t, latent, factor); Q, E, R (replica, t, latent, latent2);
        D (replica, t, latent); eg, rate, distortion, loss (replica, t); beta (t);
        diverged, t_diverged, divergence (replica). Attributes hold every parameter.
        A diverged replica's records after its divergence are NaN.
    """
    if not isinstance(p, Params):
        raise TypeError(f"p must be a linvae.Params, got {type(p).__name__}")
    N = check_int("N", N, ge=1)
    t_max = check_real("t_max", t_max, gt=0.0)
    if times is None:
        record_every = check_real("record_every", record_every, gt=0.0, le=t_max)
    S = check_int("seeds", seeds, ge=1)
    seed = check_int("seed", seed, ge=0, le=2**63 - 1)  # stored as a netCDF int64
    blowup = check_real("blowup", blowup, gt=0.0)
    checkpoint_every = check_real("checkpoint_every", checkpoint_every, ge=0.0)
    if noise not in ("gaussian", "rademacher"):
        raise ValueError(f"noise must be 'gaussian' or 'rademacher', got {noise!r}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
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
            raise ValueError(f"N must be >= M_star={p.M_star} for an orthonormal teacher, got {N}")
    else:
        state = parse_state(init, p)
        K = p.M_star + 2 * p.M
        if N < K:
            raise ValueError(f"N must be >= M_star + 2 M = {K} to realise a prescribed init, "
                             f"got {N}")

    if t_max * N > 2.0**62:  # steps are counted in int64
        raise ValueError(f"t_max={t_max:g} at N={N} means {t_max * N:.3g} steps, beyond the "
                         f"engine's limit of 2^62")
    itemsize = 8 if dtype == "float64" else 4
    weights = S * ((2 * p.M + p.M_star + 1) * N * itemsize + 40 * N)  # W, V, W*, x, streams
    T_est = np.size(times) if times is not None else t_max / record_every + 2
    records = T_est * (S * (2 * p.M * p.M_star + 3 * p.M * p.M + p.M) + 2) * 8
    avail = _available_memory()
    if weights + records > avail:  # say so before allocating, naming what dominates
        what = (f"N={N} with seeds={S} needs about {weights / 2**30:.1f} GiB for the weights"
                if weights >= records else
                f"record_every={record_every:g} with t_max={t_max:g} and seeds={S} records "
                f"{T_est:.3g} times, which needs about {records / 2**30:.3g} GiB")
        raise MemoryError(f"{what}, but only {avail / 2**30:.1f} GiB of memory is available")

    steps = record_steps(N, t_max, record_every, times)
    total = round(t_max * N)
    T = steps.size
    ops = {k: np.full((S, T, *shape), np.nan)
           for k, shape in (("m", (p.M, p.M_star)), ("d", (p.M, p.M_star)), ("Q", (p.M, p.M)),
                            ("E", (p.M, p.M)), ("R", (p.M, p.M)), ("D", (p.M,)))}
    # what a checkpoint must agree on to continue this very run
    run_key = _run_key(p, N=N, t_max=t_max, seeds=S, seed=seed, dtype=dtype, blowup=blowup,
                       noise=noise, steps=steps, state=state)

    engine_cls = _core.Engine64 if dtype == "float64" else _core.Engine32
    engine = engine_cls(N=N, M=p.M, M_star=p.M_star, rho=list(p.rho), eta=p.eta, lam=p.lam,
                        tau=p.tau, blowup=blowup, seed=seed, replicas=S,
                        rademacher=noise == "rademacher")
    s0, n_done = 0, 0  # next step to take, records taken
    if resume is not None:
        s0, n_done = _restore(resume, run_key, engine, ops)
    elif state is None:
        engine.init_random(nthreads)
    else:
        engine.init_prescribed(gram_sqrt(state_gram(state)), state["D"].tolist(), nthreads)

    attrs = {"kind": "simulation", "N": N, "seed": seed, "replicas": S, "t_max": t_max,
             "record_every": record_every if times is None else float("nan"), "dtype": dtype,
             "init": "random" if state is None else "prescribed", "blowup": blowup, "noise": noise,
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
        return ds

    def save_checkpoint() -> None:
        assert checkpoint is not None
        arrays = {f"op/{k}": v for k, v in ops.items()}
        for r in range(S):
            for k, v in engine.get_state(r).items():
                arrays[f"replica{r}/{k}"] = np.asarray(v)
        io.save_checkpoint(checkpoint, {"run": run_key, "s0": s0, "n_done": n_done}, arrays)

    per_step = N * (p.M + 1) * math.ceil(S / nthreads)
    chunk = max(1, min(total, int(_CHUNK_WORK / per_step)))
    last_save = time.monotonic()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=s0, unit="step", unit_scale=True,
               desc=f"simulate N={N} S={S}", disable=None if progress else True, leave=False)
    try:
        while n_done < T and not np.all(engine.status()[0] != 0):
            n = min(chunk, total - s0)
            last = s0 + n >= total
            hi = s0 + n + 1 if last else s0 + n  # the final state is recorded by the last run
            lo_i, hi_i = np.searchsorted(steps, [s0, hi])
            offsets = (steps[lo_i:hi_i] - s0).astype(np.int64)
            beta = p.beta_at((s0 + np.arange(n)) / N)
            engine.run(beta, offsets, ops["m"], ops["d"], ops["Q"], ops["E"], ops["R"],
                       ops["D"], rec_start=int(lo_i), threads=nthreads)
            s0, n_done = s0 + n, int(hi_i)
            bar.update(n)
            if checkpoint is not None and not last and \
                    time.monotonic() - last_save >= checkpoint_every:
                save_checkpoint()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        bar.close()
        if checkpoint is not None:  # the engine is between chunks: its state is consistent
            save_checkpoint()
        raise SimulationInterrupted(dataset(n_done)) from None
    bar.close()

    ds = dataset(T)
    for r in np.flatnonzero(ds["diverged"].values):
        warnings.warn(f"replica {r} diverged at t = {float(ds['t_diverged'][r]):.4g} "
                      f"({ds['divergence'].values[r]}); it was stopped, its later records are "
                      f"NaN, and the other replicas went on", DivergenceWarning, stacklevel=2)
    return ds
