"""The limiting ODEs of the order parameters (docs/model.md#odes) and their integration.

The state is the set of order parameters ``m, d, Q, E, R, D`` (docs/model.md#order-parameters),
in matrix form with any leading axes. For solvers and for stability analysis the state
is also available as a flat vector (:class:`StateLayout`): Q and E, being symmetric,
are stored as their upper triangles, so the flat space has exactly the dimension of
the physical state space and its Jacobian has no spurious antisymmetric modes. This
matters in practice: on full matrices the antisymmetric parts of Q and E are dynamical
and can be unstable (at the superfluous-latent fixed point of docs/model.md#findings,
(M, M*) = (2, 1), beta = 0.9, tau = 0.2, they grow like exp(0.12 t) from rounding
errors and push the state out of the PSD cone near t = 300), while on symmetric states
that fixed point is stable.

Physicality (docs/model.md#pitfalls): only states whose Gram matrix
``[[I, m^T, d^T], [m, Q, R], [d, R^T, E]]`` is positive semidefinite exist at finite N.
:func:`integrate` watches the smallest Gram eigenvalue with a terminal solver event and
at every recorded point; by default it raises :class:`UnphysicalStateError` when the
state leaves the cone, or with ``on_unphysical="truncate"`` it warns and returns the
physical part of the trajectory with ``attrs["truncated"] = 1``.

Compiled: the right-hand side, its analytic Jacobian and beta(t) of the built-in schedule
kinds are evaluated in C++ (``linvae._core.OdeSystem``, cpp/linvae/ode.hpp), the package's
only implementation of the equations (the NumPy form in tests/ode_oracle.py is the tests'
oracle). :func:`integrate` runs the whole solver loop in C++ by default (method "auto";
C++ ports of SciPy's RK45 and Radau are "RK45" and "Radau"), and SciPy's solve_ivp
methods stay selectable (``solver="scipy"``), with the compiled right-hand side, Jacobian
and Gram check as their callbacks. :func:`integrate_grid` and :func:`steady_state_grid`
integrate, or settle at the stable fixed point, over a grid of parameters in one call,
in parallel over the points (OpenMP).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core, observables, schedules
from ._validate import check_int, check_real
from .dataset import DIMS, make_dataset, parse_state, time_grid
from .errors import IntegrationError, UnphysicalStateError
from .observables import KIND_TOL, ORDER_PARAMETERS, SYMMETRIC, shapes_of
from .params import FIELDS, Params, check_params
from .states import overlap_state

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "COMPILED_METHODS",
    "GRID_STATUS",
    "METHODS",
    "RUNAWAY",
    "SCIPY_METHODS",
    "STEADY_STATUS",
    "STIFF_METHODS",
    "IntegrationError",
    "StateLayout",
    "UnphysicalStateError",
    "UnphysicalStateWarning",
    "final_state",
    "integrate",
    "integrate_grid",
    "jacobian",
    "layout",
    "min_gram_eigenvalue",
    "pack",
    "rhs",
    "steady_state_grid",
    "unpack",
]

Array = NDArray[np.float64]
State = dict[str, Array]

#: Methods of scipy.integrate.solve_ivp (``integrate(..., solver="scipy")``).
SCIPY_METHODS = ("LSODA", "Radau", "BDF", "RK45", "RK23", "DOP853")
#: Methods whose whole loop runs in C++ (``solver="compiled"``, the default where there
#: is one): "auto" (RK45 while the problem is not stiff, Radau while it is stiff and Radau
#: is the cheaper, switching like LSODA) and ports of SciPy's "RK45" and "Radau" (the
#: same steps, to rounding).
COMPILED_METHODS = ("auto", "RK45", "Radau")
#: Methods accepted by :func:`integrate`.
METHODS = ("auto", "LSODA", "Radau", "BDF", "RK45", "RK23", "DOP853")
#: SciPy methods that use the Jacobian (it is passed to them analytically).
STIFF_METHODS = ("LSODA", "Radau", "BDF")


# ---------------------------------------------------------------------------------------
# flat layout
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateLayout:
    """Ordering of the order parameters in the flat state vector.

    Blocks, in order: ``m`` (M x M*, row-major), ``d`` (M x M*, row-major), ``Q`` (upper
    triangle, row-major, M(M+1)/2 entries), ``E`` (same), ``R`` (M x M, row-major), ``D``
    (M). :attr:`labels` names every coordinate, e.g. ``"Q[0,1]"``.
    """

    M: int
    M_star: int
    slices: dict[str, slice] = field(init=False, repr=False)
    size: int = field(init=False)
    _iu: tuple[NDArray[np.intp], NDArray[np.intp]] = field(init=False, repr=False)
    _sym: NDArray[np.intp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        M, Ms = self.M, self.M_star
        ntri = M * (M + 1) // 2
        shapes = shapes_of(M, Ms)
        slices, start = {}, 0
        for k in ORDER_PARAMETERS:
            size = ntri if k in SYMMETRIC else math.prod(shapes[k])
            slices[k] = slice(start, start + size)
            start += size
        iu = np.triu_indices(M)
        sym = np.empty((M, M), dtype=np.intp)  # (i, j) -> position of min/max in triangle
        sym[iu] = np.arange(ntri)
        sym[iu[1], iu[0]] = np.arange(ntri)
        set_ = object.__setattr__
        set_(self, "slices", slices)
        set_(self, "size", start)
        set_(self, "_iu", iu)
        set_(self, "_sym", sym)

    @property
    def labels(self) -> list[str]:
        """Name of each flat coordinate, e.g. ``["m[0,0]", ..., "Q[0,1]", ..., "D[1]"]``."""
        shapes = shapes_of(self.M, self.M_star)
        out = []
        for k in ORDER_PARAMETERS:
            index = zip(*self._iu, strict=True) if k in SYMMETRIC else np.ndindex(*shapes[k])
            out += [f"{k}[{','.join(map(str, ij))}]" for ij in index]
        return out

    def pack(self, state: Mapping[str, ArrayLike]) -> Array:
        """Flat vector(s) of shape (..., size) from order parameters with leading axes."""
        s = {k: np.asarray(state[k], dtype=np.float64) for k in ORDER_PARAMETERS}
        k0 = ORDER_PARAMETERS[0]
        lead = s[k0].shape[:s[k0].ndim - len(DIMS[k0])]
        parts = [s[k][..., self._iu[0], self._iu[1]] if k in SYMMETRIC
                 else s[k].reshape(*lead, -1) for k in ORDER_PARAMETERS]
        return np.concatenate(parts, axis=-1)

    def unpack(self, y: ArrayLike) -> State:
        """Order parameters (with leading axes) from flat vector(s) of shape (..., size)."""
        y = np.asarray(y, dtype=np.float64)
        if y.shape[-1] != self.size:
            raise ValueError(f"flat state must have last axis of length {self.size} for "
                             f"(M, M_star) = ({self.M}, {self.M_star}), got shape {y.shape}")
        lead = y.shape[:-1]
        shapes = shapes_of(self.M, self.M_star)
        return {k: y[..., self.slices[k]][..., self._sym] if k in SYMMETRIC
                else y[..., self.slices[k]].reshape(*lead, *shapes[k]) for k in ORDER_PARAMETERS}


_LAYOUTS: dict[tuple[int, int], StateLayout] = {}


def layout(params: Params) -> StateLayout:
    """Return the flat layout for ``params`` (cached per (M, M*))."""
    key = (params.M, params.M_star)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = StateLayout(*key)
    return _LAYOUTS[key]


def pack(state: Mapping[str, ArrayLike], params: Params) -> Array:
    """Flat state vector from the dict of order parameters (see :class:`StateLayout`)."""
    return layout(params).pack(state)


def unpack(y: ArrayLike, params: Params) -> State:
    """Return the dict of order parameters from a flat state vector (see :class:`StateLayout`)."""
    return layout(params).unpack(y)


# ---------------------------------------------------------------------------------------
# the compiled system: right-hand side, Jacobian, beta(t)
# ---------------------------------------------------------------------------------------
#: Schedule kinds whose beta(t) the compiled code evaluates: class -> (code, fields).
_SCHEDULE_CODES: dict[type[schedules.Schedule], tuple[int, tuple[str, ...]]] = {
    schedules.Constant: (0, ("beta",)),
    schedules.Tanh: (1, ("beta_inf", "gamma")),
    schedules.Linear: (2, ("beta_inf", "t_warmup", "beta0")),
    schedules.Sigmoid: (3, ("beta_inf", "gamma", "t_mid")),
    schedules.Cyclical: (4, ("beta_max", "period", "ratio", "n_cycles")),
}


def _schedule_spec(beta: schedules.Schedule) -> tuple[int, list[float]] | None:
    """(kind code, four parameters) of a built-in schedule; None for any other kind."""
    spec = _SCHEDULE_CODES.get(type(beta))
    if spec is None:
        return None
    code, names = spec
    values = [float(getattr(beta, name)) for name in names]
    return code, values + [0.0] * (4 - len(values))


def _compiled_beta(p: Params) -> bool:
    """Whether the compiled code evaluates p's beta(t) itself (a built-in schedule kind)."""
    return type(p.beta) in _SCHEDULE_CODES


def _new_system(p: Params, drift: ArrayLike | None = None) -> _core.OdeSystem:
    """Build the compiled ODEs of ``p``.

    For a schedule of another kind the callers pass beta(t) in (the system's own beta is
    then the constant beta_inf). ``drift``, a constant added to the right-hand side,
    exists for the tests (to leave the physical region on purpose).
    """
    spec = _schedule_spec(p.beta) or (0, [p.beta_inf, 0.0, 0.0, 0.0])
    extra = [] if drift is None else [float(v) for v in np.ravel(drift)]
    return _core.OdeSystem(p._to_core(), spec[0], spec[1], extra)


@functools.lru_cache(maxsize=512)
def _cached_system(p: Params) -> _core.OdeSystem:
    return _new_system(p)


_LAST_SYSTEM: tuple[Params | None, Any] = (None, None)


def _system(p: Params) -> _core.OdeSystem:
    """Return the compiled ODEs of ``p``, cached per parameter set.

    It is also cached for the last ``p`` by identity, so that root finding calling the
    right-hand side does not hash p each time.
    """
    global _LAST_SYSTEM
    last_p, last = _LAST_SYSTEM
    if last_p is p:
        return last
    try:
        system = _cached_system(p)
    except TypeError:  # a user-defined schedule that is not hashable
        return _new_system(p)
    _LAST_SYSTEM = (p, system)
    return system


def _beta_arg(p: Params, t: float | None) -> float | None:
    """Return the beta for the compiled calls: None where they evaluate beta(t) themselves."""
    if t is None:
        return p.beta_inf
    return None if _compiled_beta(p) else float(p.beta_at(t))


def _size(p: Params) -> int:
    M = p.M
    return 2 * M * p.M_star + M * (M + 1) + M * M + M


def _as_state(state: Mapping[str, ArrayLike] | ArrayLike, params: Params) -> tuple[Array, bool]:
    """(flat state vector(s), was_flat) from a dict of order parameters or flat vector(s)."""
    if (type(state) is np.ndarray and state.dtype == np.float64 and state.ndim == 1
            and state.shape[0] == _size(params)):
        return state, True  # the common case of solvers and root finding, checked cheaply
    lay = layout(params)
    if isinstance(state, Mapping):
        missing = [k for k in ORDER_PARAMETERS if k not in state]
        if missing:
            raise ValueError(f"state is missing the order parameter(s) {missing} "
                             f"(needs all of {', '.join(ORDER_PARAMETERS)})")
        return lay.pack(state), False
    y = np.asarray(state, dtype=np.float64)
    if y.ndim == 0 or y.shape[-1] != lay.size:
        raise ValueError(f"flat state must have last axis of length {lay.size} for "
                         f"(M, M_star) = ({params.M}, {params.M_star}), got shape {y.shape}")
    return y, True


def rhs(t: float | None, state: Mapping[str, ArrayLike] | ArrayLike,
        params: Params) -> State | Array:
    """Time derivative of the order parameters, docs/model.md#odes (compiled).

    Parameters
    ----------
    t : float
        Time; enters only through beta(t) (None: beta_inf).
    state : dict or array
        Either the dict ``{"m", "d", "Q", "E", "R", "D"}`` (matrix axes last, any leading
        axes; Q and E are read from their upper triangles) or flat vector(s) in the
        :class:`StateLayout` ordering.
    params : Params
        Model and SGD parameters.

    Returns
    -------
    dict or array
        The derivative in the same form as ``state``.
    """
    y, flat = _as_state(state, params)
    out = _system(params).rhs(0.0 if t is None else float(t), y, _beta_arg(params, t))
    return out if flat else layout(params).unpack(out)


def jacobian(params: Params, state: Mapping[str, ArrayLike] | ArrayLike,
             t: float | None = None) -> Array:
    """Analytic Jacobian of the flat right-hand side, a dense (n x n) array (compiled).

    ``J[i, j] = d rhs_flat[i] / d y[j]`` with the flat ordering of :class:`StateLayout`
    (``layout(params).labels`` names the coordinates). An off-diagonal upper-triangle
    coordinate of Q or E moves both symmetric entries, as in :func:`unpack`.

    Parameters
    ----------
    params : Params
        Model and SGD parameters.
    state : dict or array
        A single state, as a dict of order parameters or a flat vector.
    t : float, optional
        Time at which beta(t) is taken; None (default) uses ``params.beta_inf``, the beta
        that fixed points and their stability refer to.
    """
    y, _ = _as_state(state, params)
    if y.shape != (layout(params).size,):
        raise ValueError(f"jacobian needs a single state; got a flat state of shape {y.shape}")
    return np.asarray(_system(params).jacobian(0.0 if t is None else float(t), y,
                                               _beta_arg(params, t)))


def min_gram_eigenvalue(state: Mapping[str, ArrayLike]) -> Array:
    """Smallest eigenvalue of the Gram matrix (docs/model.md#initial-states), over leading axes."""
    G = observables.state_gram(state)
    return np.asarray(np.linalg.eigvalsh(G)[..., 0])


# ---------------------------------------------------------------------------------------
# integration
# ---------------------------------------------------------------------------------------
#: An entry of the state beyond this in absolute value counts as a runaway (as the
#: default ``blowup`` of :func:`linvae.simulate`): the integration stops there.
RUNAWAY = 1e8


class UnphysicalStateWarning(RuntimeWarning):
    """Issued by ``integrate(on_unphysical="truncate")`` when it truncates a trajectory."""


def _check_init(init: Any, params: Params) -> State:
    import xarray as xr

    if init is None:
        return overlap_state(params)
    if isinstance(init, str):
        raise TypeError(
            f"init must be a state (dict of m, d, Q, E, R, D or a dataset slice), got "
            f"{init!r}: the ODE started from the random start's N -> infinity limit "
            f"(random_init_state) stays at m = d = 0 forever; start from overlap_state(p) "
            f"or from a simulation's measured t = 0 state")
    if not isinstance(init, (Mapping, xr.Dataset)):
        raise TypeError(f"init must be a dict of order parameters or an xarray Dataset "
                        f"slice, got {type(init).__name__}")
    return parse_state(init, params, name="init")


def _pick_solver(method: Any, solver: Any, p: Params) -> tuple[str, str]:
    """(solver, method) that :func:`integrate` runs, after checking the choice."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if solver is None:
        if method in COMPILED_METHODS and _compiled_beta(p):
            return "compiled", method
        # a schedule of a kind the compiled code does not know: SciPy, with beta(t) from
        # Python; "auto" is then LSODA, which switches between stiff and non-stiff too
        return "scipy", "LSODA" if method == "auto" else method
    if solver not in ("compiled", "scipy"):
        raise ValueError(f"solver must be 'compiled', 'scipy' or None, got {solver!r}")
    if solver == "compiled":
        if method not in COMPILED_METHODS:
            raise ValueError(f"method {method!r} has no compiled implementation (compiled: "
                             f"{COMPILED_METHODS}); use solver='scipy' for it")
        if not _compiled_beta(p):
            raise ValueError(f"solver='compiled' needs a schedule of a built-in kind "
                             f"({', '.join(c.kind for c in _SCHEDULE_CODES)}), got "
                             f"{type(p.beta).__name__}; use solver='scipy'")
    elif method == "auto":
        raise ValueError(f"method 'auto' is compiled only; with solver='scipy' choose one "
                         f"of {SCIPY_METHODS}")
    return solver, method


#: Step limit of a compiled integration (a guard against endless loops, not a tolerance).
_MAX_STEPS = 100_000_000


def integrate(p: Params, t_max: float = 20.0, init: Mapping[str, ArrayLike] | xr.Dataset |
              None = None, record_every: float = 0.1, method: str = "auto",
              rtol: float = 1e-8, atol: float = 1e-10, *, t_eval: ArrayLike | None = None,
              on_unphysical: Literal["raise", "truncate"] = "raise",
              psd_tol: float = 1e-8,
              solver: Literal["compiled", "scipy"] | None = None) -> xr.Dataset:
    """Integrate the ODEs of docs/model.md#odes, by default entirely in compiled code.

    Parameters
    ----------
    p : Params
        Model and SGD parameters (beta may be a schedule).
    t_max : float
        Final time, > 0.
    init : dict or xarray.Dataset, optional
        Start state: ``{"m", "d", "Q", "E", "R", "D"}`` as for the simulation, or a
        single-state dataset slice (``ds.isel(replica=0, t=0)``,
        ``ds.mean("replica").isel(t=0)``). Validated by :func:`linvae.dataset.parse_state`
        (shapes, symmetry, D > 0, Gram matrix PSD). Default: :func:`overlap_state`.
    record_every : float
        Spacing of the recorded times 0, record_every, ..., (t_max always recorded).
    method : str
        One of :data:`METHODS`. Default "auto": RK45 while the problem is not stiff and
        Radau (with the analytic Jacobian) while it is, switching as LSODA does, all in
        C++. "RK45" and "Radau" run compiled ports of SciPy's methods (the same steps, to
        rounding); "LSODA", "BDF", "RK23" and "DOP853" run SciPy's solve_ivp with the
        compiled right-hand side, Jacobian and Gram check as callbacks.
    rtol, atol : float
        Solver tolerances, > 0.
    t_eval : array, optional
        Record at these times instead (increasing, within [0, t_max]).
    on_unphysical : {"raise", "truncate"}
        What to do if the state leaves the physical region (smallest Gram eigenvalue
        below ``-psd_tol * max(1, max|G|)``, or some D_k <= 0): raise
        :class:`UnphysicalStateError` (default; the physical part is in its ``partial``),
        or warn with :class:`UnphysicalStateWarning` and return the recorded points
        before that time, with ``attrs["truncated"] = 1`` and ``attrs["t_unphysical"]``
        (it raises anyway if no physical point was recorded).
    psd_tol : float
        Tolerance of the PSD check, > 0 (relative to max(1, max|G|)).
    solver : {"compiled", "scipy"}, optional
        Who runs the solver loop. Default: compiled for the methods of
        :data:`COMPILED_METHODS` (if p's schedule is of a built-in kind; for another
        kind, SciPy with beta(t) from Python, "auto" meaning LSODA), else SciPy.

    Returns
    -------
    xarray.Dataset
        The layout of :func:`linvae.dataset.make_dataset` with lead ("t",); attrs add kind="ode",
        method, solver, rtol, atol, psd_tol, min_gram_eigenvalue (over the recorded
        points), truncated (0/1), t_unphysical (NaN unless truncated), nfev, njev.

    Raises
    ------
    UnphysicalStateError
        The state left the physical region (unless truncated, see ``on_unphysical``).
    IntegrationError
        The state ran away (an entry beyond :data:`RUNAWAY`, as for a tau beyond the
        step-size limit) or the solver failed; both are RuntimeErrors, and
        UnphysicalStateError is an IntegrationError. ``.partial`` holds the recorded
        points before the failure, if any.
    """
    run, opts = _integrate_run(p, t_max, init, record_every, method, rtol, atol, t_eval,
                               on_unphysical, psd_tol, solver)
    return _finish(p, run, **opts)


def final_state(p: Params, t_max: float, init: Mapping[str, ArrayLike] | xr.Dataset |
                None = None, *, method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10,
                psd_tol: float = 1e-8,
                solver: Literal["compiled", "scipy"] | None = None) -> State:
    """Return the state at ``t_max`` of :func:`integrate`, without the trajectory's dataset.

    Same arguments, checks and errors as :func:`integrate` with ``on_unphysical="raise"``,
    but no dataset of the trajectory is built: for callers that only need where a run ends.
    """
    run, opts = _integrate_run(p, t_max, init, t_max, method, rtol, atol, None, "raise",
                               psd_tol, solver)
    if run.status == 0 and run.first_bad < 0 and run.t.size:
        return layout(p).unpack(run.y[-1])
    _finish(p, run, **opts)  # raises for every run that did not end physically
    raise IntegrationError(f"ODE integration recorded no state ({run.message})")


def _integrate_run(p: Any, t_max: Any, init: Any, record_every: Any, method: Any, rtol: Any,
                   atol: Any, t_eval: Any, on_unphysical: Any, psd_tol: Any,
                   solver: Any) -> tuple[_Run, dict[str, Any]]:
    """Check the arguments of :func:`integrate` and run the solver."""
    p = check_params(p)
    t_max = check_real("t_max", t_max, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0)
    if record_every > t_max:
        raise ValueError(f"record_every must be <= t_max={t_max:g}, got {record_every!r}")
    solver, run_method = _pick_solver(method, solver, p)
    rtol = check_real("rtol", rtol, gt=0.0)
    atol = check_real("atol", atol, gt=0.0)
    psd_tol = check_real("psd_tol", psd_tol, gt=0.0)
    if on_unphysical not in ("raise", "truncate"):
        raise ValueError(f"on_unphysical must be 'raise' or 'truncate', got {on_unphysical!r}")
    state0 = _check_init(init, p)
    grid = time_grid(t_max, record_every, t_eval, name="t_eval")
    lay = layout(p)
    system = _system(p)
    y0 = lay.pack(state0)
    if solver == "compiled":
        r = system.integrate(y0, grid, t_max, run_method, rtol, atol, psd_tol, RUNAWAY,
                             _MAX_STEPS)
        n_rec = int(r["n_recorded"])
        run = _Run(status=int(r["status"]), event=int(r["event"]), t_event=float(r["t_event"]),
                   message=str(r["message"]), t=grid[:n_rec], y=r["y"][:n_rec],
                   first_bad=int(r["first_bad"]), lam_bad=float(r["lam_bad"]),
                   lam_min=float(r["lam_min"]), nfev=int(r["nfev"]), njev=int(r["njev"]))
    else:
        run = _run_scipy(p, system, y0, t_max, grid, run_method, rtol, atol, psd_tol)
    return run, {"method": run_method, "solver": solver, "rtol": rtol, "atol": atol,
                 "psd_tol": psd_tol, "on_unphysical": on_unphysical}


@dataclass
class _Run:
    """What a solver run gives the common post-processing of :func:`integrate`."""

    status: int  # 0 reached t_max, 1 terminal event, -1 solver failure
    event: int  # 0 Gram, 1 D, 2 runaway, -1 none
    t_event: float
    message: str
    t: Array
    y: Array
    first_bad: int  # first unphysical record (-1: none)
    lam_bad: float  # its smallest Gram eigenvalue
    lam_min: float  # smallest Gram eigenvalue over the records before it
    nfev: int
    njev: int


def _run_scipy(p: Params, system: _core.OdeSystem, y0: Array, t_max: float, grid: Array,
               method: str, rtol: float, atol: float, psd_tol: float) -> _Run:
    """solve_ivp with the compiled right-hand side, Jacobian and event functions."""
    from scipy.integrate import solve_ivp

    d_slice = layout(p).slices["D"]
    python_beta = not _compiled_beta(p)

    def fun(t: float, y: Array) -> Array:
        return system.rhs(t, y, float(p.beta_at(t)) if python_beta else None)

    def jac(t: float, y: Array) -> Array:
        return system.jacobian(t, y, float(p.beta_at(t)) if python_beta else None)

    def gram_event(t: float, y: Array) -> float:
        if not np.all(np.isfinite(y)):
            return -1.0  # left every region; runaway_event says so
        return float(system.gram_event(y, psd_tol))

    def d_event(t: float, y: Array) -> float:
        return float(y[d_slice].min())

    def runaway_event(t: float, y: Array) -> float:
        # without it a diverging state (tau beyond the step-size limit) is followed with
        # ever smaller steps until the linear algebra fails on non-finite numbers
        return RUNAWAY - float(np.abs(y).max()) if np.all(np.isfinite(y)) else -1.0

    for ev in (gram_event, d_event, runaway_event):
        ev.terminal = True  # type: ignore[attr-defined]
        ev.direction = -1  # type: ignore[attr-defined]

    kwargs: dict[str, Any] = {"jac": jac} if method in STIFF_METHODS else {}
    with np.errstate(all="ignore"):  # a runaway state is reported by the caller
        try:
            sol = solve_ivp(fun, (0.0, t_max), y0, method=method, t_eval=grid, rtol=rtol,
                            atol=atol, events=(gram_event, d_event, runaway_event), **kwargs)
        except (np.linalg.LinAlgError, FloatingPointError, OverflowError) as exc:
            raise IntegrationError(f"ODE integration failed numerically ({method}, "
                                   f"rtol={rtol:g}, atol={atol:g}): {exc}") from exc
    event, t_event = -1, math.nan
    if sol.status == 1:
        # only the earliest terminal event is recorded; a runaway is reported first
        for e in (2, 0, 1):
            if len(sol.t_events[e]):
                event, t_event = e, float(sol.t_events[e][0])
                break
    y = np.ascontiguousarray(sol.y.T, dtype=np.float64)
    first_bad, lam_bad, lam_min = (system.check_records(y, psd_tol) if len(sol.t)
                                   else (-1, math.nan, math.nan))
    return _Run(status=int(sol.status), event=event, t_event=t_event, message=str(sol.message),
                t=np.asarray(sol.t, dtype=np.float64), y=y, first_bad=int(first_bad),
                lam_bad=float(lam_bad), lam_min=float(lam_min), nfev=int(sol.nfev),
                njev=int(sol.njev))


def _finish(p: Params, run: _Run, *, method: str, solver: str, rtol: float, atol: float,
            psd_tol: float, on_unphysical: str) -> xr.Dataset:
    """Build the dataset of a run, or raise for a run that failed or left the region."""
    if run.status == -1:
        raise IntegrationError(f"ODE integration failed ({method}, rtol={rtol:g}, "
                               f"atol={atol:g}): {run.message}")
    lay = layout(p)
    ops = lay.unpack(run.y)
    t_rec = run.t
    attrs: dict[str, Any] = {
        "kind": "ode", "method": method, "solver": solver, "rtol": rtol, "atol": atol,
        "psd_tol": psd_tol, "min_gram_eigenvalue": run.lam_min, "truncated": 0,
        "t_unphysical": math.nan, "nfev": run.nfev, "njev": run.njev,
    }
    if run.status == 1 and run.event == 2:  # the state ran away
        t_bad = run.t_event
        attrs.update(truncated=1, t_unphysical=t_bad)
        partial = make_dataset(ops, t_rec, p, lead=("t",), attrs=attrs) if t_rec.size else None
        raise IntegrationError(
            f"ODE state ran away at t = {t_bad:.6g}: an order parameter went beyond "
            f"{RUNAWAY:g} in absolute value (tau={p.tau:g} may be beyond the step-size "
            f"limit, linvae.stability.step_size_limit, where SGD diverges too)", t=t_bad,
            partial=partial)
    if run.status == 1:  # a terminal event: the state left the physical region
        t_bad = run.t_event
        attrs.update(truncated=1, t_unphysical=t_bad)
        partial = make_dataset(ops, t_rec, p, lead=("t",), attrs=attrs) if t_rec.size else None
        what = ("the Gram matrix [[I, m^T, d^T], [m, Q, R], [d, R^T, E]] stopped being "
                "positive semidefinite" if run.event == 0 else "an encoder variance D_k "
                "reached 0")
        msg = (f"ODE state left the physical region at t = {t_bad:.6g}: {what} "
               f"(method={method}, rtol={rtol:g}, atol={atol:g}). Integration error near "
               f"the boundary of the PSD cone can push the state out, where it runs away "
               f"(docs/model.md#pitfalls); try a tighter rtol or Radau, and find fixed points by "
               f"root finding rather than long integration.")
        if on_unphysical == "raise" or partial is None:
            raise UnphysicalStateError(msg, t=t_bad, partial=partial)
        warnings.warn(msg + f" Returning the trajectory up to t = {t_rec[-1]:.6g}.",
                      UnphysicalStateWarning, stacklevel=3)
        return partial

    # the event only sees sign changes between steps; check the recorded points too
    if run.first_bad >= 0:
        i = run.first_bad
        t_bad = float(t_rec[i])
        attrs.update(truncated=1, t_unphysical=t_bad, min_gram_eigenvalue=run.lam_min)
        partial = (make_dataset({k: v[:i] for k, v in ops.items()}, t_rec[:i], p,
                                lead=("t",), attrs=attrs) if i else None)
        msg = (f"ODE state left the physical region at t = {t_bad:.6g} (smallest Gram "
               f"eigenvalue {run.lam_bad:.3g}; method={method}, rtol={rtol:g}); see "
               f"docs/model.md#pitfalls")
        if on_unphysical == "raise" or partial is None:
            raise UnphysicalStateError(msg, t=t_bad, partial=partial)
        warnings.warn(msg, UnphysicalStateWarning, stacklevel=3)
        return partial
    return make_dataset(ops, t_rec, p, lead=("t",), attrs=attrs)


# ---------------------------------------------------------------------------------------
# parameter grids
# ---------------------------------------------------------------------------------------
#: Points per call of the compiled grid loops (between calls Ctrl-C is seen).
_GRID_CHUNK = 2048
#: Largest residual max|rhs| of an accepted fixed point (as linvae.stability.RESIDUAL_TOL).
_RESIDUAL_TOL = 1e-10
#: Status codes of :func:`integrate_grid` points.
GRID_STATUS = {0: "reached t_max", 1: "left the physical region", 2: "ran away",
               3: "solver failed"}
#: Status codes of :func:`steady_state_grid` points.
STEADY_STATUS = {0: "stable fixed point", 1: "the fixed point found is not stable",
                 2: "no fixed point found", 3: "left the physical region or ran away"}


@dataclass(frozen=True)
class _GridPoints:
    """The points of a parameter grid, as the arrays the compiled loops take."""

    names: tuple[str, ...]
    values: tuple[Array, ...]
    rho: Array  # (P, M*)
    reals: dict[str, Array]  # each real parameter of linvae.params.FIELDS, (P,)
    kind: NDArray[np.int32]
    sched: Array  # (P, 4); column 0 is beta_inf for every kind

    @property
    def size(self) -> int:
        return int(self.kind.size)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(v.size for v in self.values)

    def beta_at(self, t: Array) -> Array:
        """beta(t) per point, (P, len(t)), from each point's schedule."""
        out = np.empty((self.size, t.size))
        rows, inv = np.unique(np.column_stack([self.kind, self.sched]), axis=0,
                              return_inverse=True)
        kinds = {code: cls for cls, (code, _) in _SCHEDULE_CODES.items()}
        for g, row in enumerate(rows):
            cls = kinds[int(row[0])]
            fields = _SCHEDULE_CODES[cls][1]
            values: dict[str, Any] = dict(zip(fields, row[1:1 + len(fields)], strict=True))
            if cls is schedules.Cyclical:
                values["n_cycles"] = int(values["n_cycles"])
            out[np.flatnonzero(inv.reshape(-1) == g)] = cls(**values)(t)
        return out


def _grid_points(p: Params, grid: Any) -> _GridPoints:
    """Check a grid (parameter name -> 1-d values) and expand its Cartesian product."""
    if not isinstance(grid, Mapping) or not grid:
        raise TypeError(f"grid must be a non-empty mapping of parameter name -> 1-d array "
                        f"of values, e.g. {{'beta': ..., 'rho': ...}}; got {grid!r}")
    spec = _schedule_spec(p.beta)
    if spec is None and "beta" in grid:  # a constant beta replaces the schedule anyway
        spec = (0, [p.beta_inf, 0.0, 0.0, 0.0])
    if spec is None:
        raise ValueError(f"parameter grids need a schedule of a built-in kind "
                         f"({', '.join(c.kind for c in _SCHEDULE_CODES)}), got "
                         f"{type(p.beta).__name__}")
    sched_fields = (() if p.beta.is_constant or type(p.beta) not in _SCHEDULE_CODES
                    else _SCHEDULE_CODES[type(p.beta)][1])
    allowed = [f.name for f in FIELDS if f.kind != "int"]
    if p.M_star > 1:
        allowed += [f"rho_{k}" for k in range(p.M_star)]
    allowed += list(sched_fields)
    names: list[str] = []
    values: list[Array] = []
    for name, raw in grid.items():
        if name not in allowed:
            raise ValueError(f"grid: unknown parameter {name!r}; a grid varies some of "
                             f"{allowed}")
        try:
            v = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"grid[{name!r}] must be a 1-d array of numbers, got "
                            f"{raw!r}") from exc
        v = v.reshape(1) if v.ndim == 0 else v
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty 1-d array, got shape "
                             f"{v.shape}")
        for i, x in enumerate(v):  # each value as a parameter: the usual checks and messages
            try:
                _grid_value(p, name, float(x), sched_fields)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"grid[{name!r}][{i}]: {exc}") from None
        names.append(name)
        values.append(v)
    if "beta" in names and any(n in sched_fields for n in names):
        raise ValueError(f"grid: 'beta' (a constant beta) and the schedule fields "
                         f"{[n for n in names if n in sched_fields]} exclude each other")
    if "rho" in names and any(n.startswith("rho_") for n in names):
        raise ValueError("grid: 'rho' (every factor) and 'rho_k' (one factor) exclude "
                         "each other")
    mesh = [a.ravel() for a in np.meshgrid(*values, indexing="ij")]
    P = mesh[0].size
    rho = np.tile(p.rho_vec, (P, 1))
    # a rate not given follows tau, also where tau is swept (NaN until then)
    cols = {f.name: np.full(P, np.nan if getattr(p, f.name) is None else getattr(p, f.name))
            for f in FIELDS if f.kind in ("real", "rate")}
    kind = np.full(P, spec[0], dtype=np.int32)
    sched = np.tile(np.asarray(spec[1], dtype=np.float64), (P, 1))
    for name, a in zip(names, mesh, strict=True):
        if name == "rho":
            rho[:] = a[:, None]
        elif name.startswith("rho_"):
            rho[:, int(name[4:])] = a
        elif name in cols:
            cols[name] = a
        elif name == "beta":
            kind[:] = 0
            sched[:] = 0.0
            sched[:, 0] = a
        else:
            sched[:, sched_fields.index(name)] = a
    for f in FIELDS:
        if f.kind == "rate":
            cols[f.name] = np.where(np.isnan(cols[f.name]), cols["tau"], cols[f.name])
    return _GridPoints(tuple(names), tuple(values), rho, cols, kind, sched)


def _grid_value(p: Params, name: str, x: float, sched_fields: tuple[str, ...]) -> None:
    """Raise as Params (or the schedule) would for parameter ``name`` = ``x``."""
    if name == "rho":
        p.replace(rho=x)
    elif name.startswith("rho_"):
        rho = list(p.rho)
        rho[int(name[4:])] = x
        p.replace(rho=rho)
    elif name in sched_fields:
        dataclasses.replace(p.beta, **{name: int(x) if name == "n_cycles" and x.is_integer()
                                       else x})
    else:
        p.replace(**{name: x})


def _grid_init(p: Params, init: Any, size: int) -> Array:
    state = overlap_state(p) if init is None else _check_init(init, p)
    return np.ascontiguousarray(np.tile(layout(p).pack(state), (size, 1)))


def _threads(threads: Any) -> int:
    return 0 if threads is None else check_int("threads", threads, ge=1)


def _grid_solver(method: Any, rtol: Any, atol: Any,
                 psd_tol: Any) -> tuple[str, float, float, float]:
    """Check and return the solver arguments of the grid calls, which run compiled."""
    if not isinstance(method, str) or method not in COMPILED_METHODS:
        raise ValueError(f"method must be one of {COMPILED_METHODS} (grids run compiled), "
                         f"got {method!r}")
    return (method, check_real("rtol", rtol, gt=0.0), check_real("atol", atol, gt=0.0),
            check_real("psd_tol", psd_tol, gt=0.0))


def _chunks(size: int) -> list[slice]:
    return [slice(i, min(i + _GRID_CHUNK, size)) for i in range(0, size, _GRID_CHUNK)]


def _grid_derived(ops: Mapping[str, Array], pts: _GridPoints, beta: Array) -> dict[str, Array]:
    """Compute the derived observables of :func:`linvae.observables.derived` per point.

    The parameters are per point (ops and ``beta`` have the point axis first).
    """
    lead = ops["D"].shape[:-1]
    extra = (1,) * (len(lead) - 1)
    out: dict[str, Array] = {}
    rows, inv = np.unique(pts.rho, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    for g, rho in enumerate(rows):  # eps_g needs one rho vector at a time
        idx = np.flatnonzero(inv == g)
        kw: dict[str, Any] = {"rho": rho,
                              "eta": pts.reals["eta"][idx].reshape(-1, *extra, 1, 1),
                              "beta": beta[idx], "lam": pts.reals["lam"][idx].reshape(-1, *extra)}
        der = observables.derived(*(ops[k][idx] for k in ORDER_PARAMETERS), **kw)
        for name, v in der._asdict().items():
            out.setdefault(name, np.empty(lead))[idx] = v
    return out


def _grid_dataset(p: Params, pts: _GridPoints, ops: Mapping[str, Array],
                  per_point: Mapping[str, tuple[tuple[str, ...], NDArray[Any]]],
                  attrs: Mapping[str, Any], lead: tuple[str, ...] = ()) -> xr.Dataset:
    """Dataset over the grid dims (and ``lead``, e.g. "t"); ops have the point axis first."""
    import xarray as xr

    shape = pts.shape
    data: dict[str, Any] = {}
    for k in ORDER_PARAMETERS:
        v = ops[k]
        data[k] = ((*pts.names, *lead, *DIMS[k]), v.reshape(*shape, *v.shape[1:]))
    for k, (dims, v) in per_point.items():
        data[k] = ((*pts.names, *dims), v.reshape(*shape, *v.shape[1:]))
    coords: dict[str, Any] = dict(zip(pts.names, pts.values, strict=True))
    coords.update({"latent": np.arange(p.M), "latent2": np.arange(p.M),
                   "factor": np.arange(p.M_star)})
    swept = {"rho" if n.startswith("rho") else n for n in pts.names}
    if swept - {f.name for f in FIELDS}:  # a field of beta's schedule
        swept |= {"beta", "beta_schedule"}
    if "beta" in swept:
        swept |= {"beta", "beta_schedule"}
    base = {k: v for k, v in p.to_attrs().items() if k not in swept}
    return xr.Dataset(data, coords=coords, attrs={**base, **attrs,
                                                  "grid": ",".join(pts.names)})


def integrate_grid(p: Params, grid: Mapping[str, ArrayLike], t_max: float = 100.0,
                   init: Mapping[str, ArrayLike] | xr.Dataset | None = None, *,
                   record_every: float | None = None, t_eval: ArrayLike | None = None,
                   method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10,
                   psd_tol: float = 1e-8, threads: int | None = None) -> xr.Dataset:
    """Integrate the ODEs at every point of a parameter grid, in parallel, in one call.

    Each point is ``p`` with the grid's parameters replaced, and is integrated exactly
    as :func:`integrate` with the compiled ``method`` would (same steps, same numbers);
    the points run on OpenMP threads.

    Parameters
    ----------
    p : Params
        The base parameters (M and M* are shared by every point; beta's schedule must be
        of a built-in kind).
    grid : mapping
        Parameter name -> 1-d values; the grid is their Cartesian product, in this
        order. Names: "rho" (every factor), "rho_k" (factor k, if M* > 1), "eta",
        "beta" (a constant beta), "lam", "tau", "tau_V", "tau_D" (a rate not given
        follows tau at each point), and the fields of ``p.beta`` if it is a schedule
        (e.g. "gamma", "beta_inf" of a Tanh). Every value is checked as the parameter
        would be.
    t_max : float
        Final time, > 0.
    init : dict or xarray.Dataset, optional
        One start state for every point (as for :func:`integrate`); default
        :func:`overlap_state`.
    record_every, t_eval : optional
        Recorded times as for :func:`integrate`; default: only t_max.
    method : str
        One of :data:`COMPILED_METHODS`.
    rtol, atol, psd_tol : float
        As for :func:`integrate`.
    threads : int, optional
        OpenMP threads (default: all available).

    Returns
    -------
    xarray.Dataset
        Over (*grid names, "t", ...): the order parameters, eg, rate, distortion, loss,
        eg_authors, and beta(t) (unless beta is a grid dimension). Over the grid:
        ``status`` (:data:`GRID_STATUS`: 0 reached t_max, 1 left the physical region,
        2 ran away, 3 solver failed), ``t_unphysical`` (the time it failed, else NaN),
        ``min_gram_eigenvalue`` (over the physical records) and ``nfev``. A point that
        fails is not an error: its records from the failure on are NaN.
    """
    p = check_params(p)
    pts = _grid_points(p, grid)
    t_max = check_real("t_max", t_max, gt=0.0)
    if record_every is None and t_eval is None:
        times = np.array([t_max])
    else:
        every = t_max if record_every is None else check_real("record_every", record_every,
                                                              gt=0.0, le=t_max)
        times = time_grid(t_max, every, t_eval, name="t_eval")
    method, rtol, atol, psd_tol = _grid_solver(method, rtol, atol, psd_tol)
    nthreads = _threads(threads)
    y0 = _grid_init(p, init, pts.size)
    P, T, n = pts.size, times.size, layout(p).size
    Y = np.empty((P, T, n))
    status = np.empty(P, dtype=np.int64)
    t_bad = np.full(P, np.nan)
    lam_min = np.empty(P)
    nfev = np.empty(P, dtype=np.int64)
    for sl in _chunks(P):
        r = _core.ode_integrate_grid(
            p.M, p.M_star, pts.rho[sl], {k: v[sl] for k, v in pts.reals.items()}, pts.kind[sl],
            pts.sched[sl], y0[sl], times, t_max, method, rtol, atol, psd_tol, RUNAWAY,
            _MAX_STEPS, nthreads)
        Y[sl] = r["y"]
        lam_min[sl] = r["lam_min"]
        nfev[sl] = r["nfev"]
        st, ev, fb, n_rec = r["status"], r["event"], r["first_bad"], r["n_recorded"]
        code = np.where(st == 0, 0, np.where(st == 1, np.where(ev == 2, 2, 1), 3))
        tb = np.where(st == 1, r["t_event"], np.nan)
        # a record that fails the PSD check ends the physical part, as in integrate
        late = (fb >= 0) & ((code == 0) | (times[np.clip(fb, 0, T - 1)] < tb))
        code = np.where(late, 1, code)
        tb = np.where(late, times[np.clip(fb, 0, T - 1)], tb)
        cut = np.where(fb >= 0, np.minimum(fb, n_rec), n_rec)
        for i in np.flatnonzero(cut < T):
            Y[sl][i, cut[i]:] = np.nan
        status[sl], t_bad[sl] = code, tb
    ops = layout(p).unpack(Y)
    beta_t = pts.beta_at(times)
    der = _grid_derived(ops, pts, beta_t)
    per_point: dict[str, tuple[tuple[str, ...], NDArray[Any]]] = {
        k: (("t",), v) for k, v in der.items()}
    if "beta" not in pts.names:
        per_point["beta"] = (("t",), beta_t)
    per_point.update(status=((), status), t_unphysical=((), t_bad),
                     min_gram_eigenvalue=((), lam_min), nfev=((), nfev))
    ds = _grid_dataset(p, pts, ops, per_point, {
        "kind": "ode_grid", "method": method, "solver": "compiled", "rtol": rtol,
        "atol": atol, "psd_tol": psd_tol, "t_max": t_max,
        "status_codes": "; ".join(f"{k} {v}" for k, v in GRID_STATUS.items())}, lead=("t",))
    return ds.assign_coords(t=times)


def _symmetry_modes(rho: Array) -> NDArray[np.int32]:
    """Count, per point, the rotation zero modes among equal rho_k.

    That is sum g (g - 1) / 2 over the groups of g equal rho_k (equal as in
    linvae.stability).
    """
    out = np.zeros(rho.shape[0], dtype=np.int32)
    if rho.shape[1] == 1:
        return out
    rows, inv = np.unique(rho, axis=0, return_inverse=True)
    for g, row in enumerate(rows):
        groups: list[int] = []  # sizes of the groups of equal rho_k
        firsts: list[float] = []
        for r in row:
            for i, f in enumerate(firsts):
                if math.isclose(f, r, rel_tol=1e-12, abs_tol=1e-14):
                    groups[i] += 1
                    break
            else:
                firsts.append(float(r))
                groups.append(1)
        out[inv.reshape(-1) == g] = sum(n * (n - 1) // 2 for n in groups)
    return out


def steady_state_grid(p: Params, grid: Mapping[str, ArrayLike],
                      init: Mapping[str, ArrayLike] | xr.Dataset | None = None, *,
                      t_settle: float | None = None, max_rounds: int = 6,
                      method: str = "auto", rtol: float = 1e-6, atol: float = 1e-9,
                      psd_tol: float = 1e-8, eig_tol: float = 1e-9,
                      threads: int | None = None) -> xr.Dataset:
    """Find the stable fixed point each point of a parameter grid settles at, in one call.

    At every point (``p`` with the grid's parameters, see :func:`integrate_grid`) the ODE
    is integrated from ``init`` for ``t_settle``; the end state is refined by Newton's
    method with the analytic Jacobian at beta_inf and accepted if it is a physical fixed
    point (residual ``max|rhs| <= 1e-10``), close to the end state, whose Jacobian has every
    eigenvalue below -eig_tol (up to the zero modes of rotations among equal rho_k).
    Otherwise the run goes on for twice as long and is refined again, up to
    ``max_rounds`` times. All of it is compiled, in parallel over the points.

    This is the fixed point the dynamics reach from ``init``; :func:`linvae.fixed_points`
    searches every fixed point from many starts and is the tool for one point.

    Parameters
    ----------
    p, grid, init, method, psd_tol, threads
        As for :func:`integrate_grid`.
    rtol, atol : float
        Tolerances of the runs, > 0. They only have to bring the state near the fixed
        point, which Newton's method then finds to rounding, hence the looser defaults
        (1e-6, 1e-9; 2 to 4 times faster than integrate's 1e-8, 1e-10, same results).
    t_settle : float, optional
        Length of the first run, > 0; default max(100, 20 / min tau).
    max_rounds : int
        Number of runs and refinements, >= 1.
    eig_tol : float
        An eigenvalue counts as negative below -eig_tol, > 0.

    Returns
    -------
    xarray.Dataset
        Over the grid: the fixed point's order parameters, eg, rate, distortion, loss
        and eg_authors (at beta_inf), ``max_real`` (the largest real part of the
        Jacobian's eigenvalues, symmetry zero modes left out), ``stable`` (bool),
        ``status`` (:data:`STEADY_STATUS`), ``residual``, ``t_end`` (how long it ran),
        ``n_learned`` (latents with some ``|m_ij| > linvae.observables.KIND_TOL``) and the
        ``eigenvalues`` (complex, by decreasing real part, over ``mode``). NaN where no
        fixed point was accepted (``stable`` False).
    """
    p = check_params(p)
    pts = _grid_points(p, grid)
    if np.any(pts.sched[:, 0] <= 0):
        raise ValueError("steady_state_grid needs beta (its limit beta_inf) > 0 at every "
                         "point: at beta = 0, dD_k/dt = -tau Q_kk / 2 has no fixed point "
                         "with Q_kk > 0")
    t_settle = (max(100.0, 20.0 / float(pts.reals["tau"].min())) if t_settle is None
                else check_real("t_settle", t_settle, gt=0.0))
    max_rounds = check_int("max_rounds", max_rounds, ge=1)
    method, rtol, atol, psd_tol = _grid_solver(method, rtol, atol, psd_tol)
    eig_tol = check_real("eig_tol", eig_tol, gt=0.0)
    nthreads = _threads(threads)
    y0 = _grid_init(p, init, pts.size)
    n_zero = _symmetry_modes(pts.rho)
    P, n = pts.size, layout(p).size
    out = {"y": np.empty((P, n)), "eig_real": np.empty((P, n)), "eig_imag": np.empty((P, n)),
           "status": np.empty(P, dtype=np.int64), "residual": np.empty(P),
           "t_end": np.empty(P), "max_real": np.empty(P)}
    for sl in _chunks(P):
        r = _core.ode_steady_state_grid(
            p.M, p.M_star, pts.rho[sl], {k: v[sl] for k, v in pts.reals.items()}, pts.kind[sl],
            pts.sched[sl], y0[sl], n_zero[sl], t_settle, max_rounds, method, rtol, atol,
            psd_tol, RUNAWAY, _RESIDUAL_TOL, eig_tol, _MAX_STEPS, nthreads)
        for k, v in out.items():
            v[sl] = r[k]
    status = np.where(out["status"] < 0, 3, out["status"])
    stable = status == 0
    Y = np.where(stable[:, None], out["y"], np.nan)
    ops = layout(p).unpack(Y)
    der = _grid_derived(ops, pts, pts.sched[:, 0])
    per_point: dict[str, tuple[tuple[str, ...], NDArray[Any]]] = {
        k: ((), v) for k, v in der.items()}
    n_learned = np.sum(np.abs(ops["m"]).max(axis=-1) > KIND_TOL, axis=-1)
    eig = out["eig_real"] + 1j * out["eig_imag"]
    per_point.update(
        max_real=((), np.where(stable, out["max_real"], np.nan)), stable=((), stable),
        status=((), status), residual=((), out["residual"]), t_end=((), out["t_end"]),
        n_learned=((), np.where(stable, n_learned, -1)),
        eigenvalues=(("mode",), np.where(stable[:, None], eig, np.nan)))
    return _grid_dataset(p, pts, ops, per_point, {
        "kind": "steady_state_grid", "method": method, "solver": "compiled", "rtol": rtol,
        "atol": atol, "psd_tol": psd_tol, "eig_tol": eig_tol, "t_settle": t_settle,
        "max_rounds": max_rounds,
        "status_codes": "; ".join(f"{k} {v}" for k, v in STEADY_STATUS.items())})

