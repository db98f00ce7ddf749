"""Labelled datasets of order parameters, and parsing of prescribed states.

Simulation and ODE results share one layout: dims ``replica`` (simulation only), ``t``,
``latent`` (M), ``latent2`` (M) and ``factor`` (M*); variables m, d, Q, E, R, D and the
derived eg, rate, distortion, loss (and eg_authors); attributes with every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import observables
from ._validate import check_array
from .observables import DIMS, ORDER_PARAMETERS, shapes_of
from .params import Params

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DIMS",
    "MAX_RECORDS",
    "make_dataset",
    "parse_state",
    "state_of",
    "state_shapes",
    "time_grid",
]

Array = NDArray[np.float64]

#: Most recorded times a run may ask for (a bound on memory, and on what anyone can plot).
MAX_RECORDS = 1e8

#: Matrix dims of each order parameter (after any replica/t dims).
_LONG_NAMES = {
    "m": "decoder-teacher overlap m = W^T W*/N",
    "d": "encoder-teacher overlap d = V^T W*/N",
    "Q": "decoder self-overlap Q = W^T W/N",
    "E": "encoder self-overlap E = V^T V/N",
    "R": "decoder-encoder overlap R = W^T V/N",
    "D": "encoder variances D",
    "eg": "generalisation error eps_g",
    "eg_authors": "eps_g in the authors' convention (rho = 1, m summed; comparison only)",
    "rate": "rate (KL per sample)",
    "distortion": "distortion",
    "loss": "loss = distortion + beta rate + L2",
    "beta": "KL weight beta(t)",
}


def state_shapes(p: Params) -> dict[str, tuple[int, ...]]:
    """Shapes of the order parameters (:data:`ORDER_PARAMETERS`) for the sizes of ``p``."""
    return shapes_of(p.M, p.M_star)


def make_dataset(ops: Mapping[str, Array], t: Array, params: Params, *,
                 lead: tuple[str, ...] = ("replica", "t"),
                 attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Build the labelled dataset from order-parameter arrays with leading dims ``lead``.

    The derived observables are computed here, from the order parameters, so every
    producer of a dataset gets them from the same code.
    """
    import xarray as xr

    beta_t = params.beta_at(t)
    der = observables.derived(*(ops[k] for k in ORDER_PARAMETERS), rho=params.rho_vec,
                              eta=params.eta, beta=beta_t, lam=params.lam)
    data_vars: dict[str, Any] = {k: ((*lead, *DIMS[k]), np.asarray(ops[k]))
                                 for k in ORDER_PARAMETERS}
    data_vars.update({k: (lead, np.asarray(v)) for k, v in der._asdict().items()})
    data_vars["beta"] = (("t",), beta_t)
    coords: dict[str, Any] = {"t": np.asarray(t, dtype=np.float64),
                              "latent": np.arange(params.M), "latent2": np.arange(params.M),
                              "factor": np.arange(params.M_star)}
    if "replica" in lead:
        coords["replica"] = np.arange(np.shape(ops["D"])[lead.index("replica")])
    ds = xr.Dataset(data_vars, coords=coords, attrs={**params.to_attrs(), **(attrs or {})})
    for name, long_name in _LONG_NAMES.items():
        if name in ds:
            ds[name].attrs["long_name"] = long_name
    ds["t"].attrs["long_name"] = "time t = steps / N"
    return ds


def state_of(source: xr.Dataset | Mapping[str, Any]) -> dict[str, Array]:
    """Return the order parameters of a dataset slice or a mapping, as plain arrays."""
    import xarray as xr

    out = {}
    for k in ORDER_PARAMETERS:
        if k not in source:
            raise ValueError(f"init is missing the order parameter {k!r} "
                             f"(needs all of {', '.join(ORDER_PARAMETERS)})")
        v = source[k]
        out[k] = np.asarray(v.values if isinstance(v, xr.DataArray) else v, dtype=np.float64)
    return out


def parse_state(init: xr.Dataset | Mapping[str, Any], params: Params, *,
                name: str = "init", psd_tol: float = 1e-10) -> dict[str, Array]:
    """Validate a prescribed state: shapes, finiteness, symmetry, D > 0, Gram matrix PSD.

    Raises ValueError naming the order parameter and the rule it breaks.
    """
    import xarray as xr

    if not isinstance(init, (Mapping, xr.Dataset)):
        raise TypeError(f"{name} must be a mapping of the order parameters "
                        f"{', '.join(ORDER_PARAMETERS)} or a dataset slice, got "
                        f"{type(init).__name__}")
    if isinstance(init, xr.Dataset):
        extra = [d for d in ("replica", "t") if d in init.dims]
        if extra:
            raise ValueError(f"{name} must be a single state: select one point along "
                             f"{extra} first (e.g. ds.isel(replica=0, t=0) or ds.mean('replica'))")
    raw = state_of(init)
    shapes = state_shapes(params)
    state = {k: check_array(f"{name}[{k!r}]", raw[k], shapes[k]) for k in ORDER_PARAMETERS}
    if not np.all(state["D"] > 0):
        raise ValueError(f"{name}['D'] must be > 0 elementwise, got {state['D'].tolist()}")
    for k in ("Q", "E"):
        if not np.allclose(state[k], state[k].T, rtol=1e-10, atol=1e-12):
            raise ValueError(f"{name}[{k!r}] must be symmetric, got {state[k].tolist()}")
        state[k] = 0.5 * (state[k] + state[k].T)
    G = observables.state_gram(state)
    lam_min = float(np.linalg.eigvalsh(G)[0])
    if lam_min < -psd_tol * max(1.0, float(np.abs(G).max())):
        raise ValueError(
            f"{name} is not a realisable state: the Gram matrix "
            f"[[I, m^T, d^T], [m, Q, R], [d, R^T, E]] of [W*, W, V]/N must be positive "
            f"semidefinite, but its smallest eigenvalue is {lam_min:.3g} (e.g. Q must be "
            f">= m m^T, E >= d d^T, and R limited by Q and E)")
    return state


def time_grid(t_max: float, record_every: float, times: ArrayLike | None = None, *,
              name: str = "times") -> Array:
    """Return the recorded times: 0, record_every, 2 record_every, ..., and t_max itself.

    If ``times`` is given, return those explicit times instead (strictly increasing within
    [0, t_max]). Simulation and ODE both record on this grid.
    """
    if times is not None:
        grid = np.asarray(times, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError(f"{name} must be a non-empty 1-d array of finite times, got "
                             f"{np.array2string(grid, threshold=6)}")
        if np.any(np.diff(grid) <= 0) or grid[0] < 0 or grid[-1] > t_max * (1 + 1e-12):
            raise ValueError(f"{name} must be strictly increasing within [0, t_max={t_max:g}], "
                             f"got {np.array2string(grid, threshold=6)}")
        return np.minimum(grid, t_max)
    if t_max / record_every > MAX_RECORDS:
        raise ValueError(f"record_every={record_every:g} with t_max={t_max:g} asks for "
                         f"{t_max / record_every:.3g} recorded times; at most {MAX_RECORDS:.0e}")
    # a small slack so that t_max = k * record_every is recorded despite rounding
    n = math.floor(t_max / record_every * (1 + 1e-12) + 1e-9)
    grid = record_every * np.arange(n + 1, dtype=np.float64)
    if t_max - grid[-1] > 1e-9 * t_max:  # always record the end point
        grid = np.append(grid, t_max)
    return np.minimum(grid, t_max)
