"""The limiting ODEs of the order parameters (MODEL.md section 5) and their integration.

The state is the set of order parameters ``m, d, Q, E, R, D`` (MODEL.md section 4).
Everything here works in matrix form and is vectorised over leading axes, so there is
no Python loop over latent indices. For solvers and for stability analysis the state
is also available as a flat vector (:class:`StateLayout`): Q and E, being symmetric,
are stored as their upper triangles, so the flat space has exactly the dimension of
the physical state space and its Jacobian has no spurious antisymmetric modes. This
matters in practice: on full matrices the antisymmetric parts of Q and E are dynamical
and can be unstable (at the superfluous-latent fixed point of MODEL.md section 6,
(M, M*) = (2, 1), beta = 0.9, tau = 0.2, they grow like exp(0.12 t) from rounding
errors and push the state out of the PSD cone near t = 300), while on symmetric states
that fixed point is stable.

Physicality (MODEL.md section 8): only states whose Gram matrix
``[[I, m^T, d^T], [m, Q, R], [d, R^T, E]]`` is positive semidefinite exist at finite N.
:func:`integrate` watches the smallest Gram eigenvalue with a terminal solver event and
at every recorded point; by default it raises :class:`UnphysicalStateError` when the
state leaves the cone, or with ``on_unphysical="truncate"`` it warns and returns the
physical part of the trajectory with ``attrs["truncated"] = 1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

from . import observables
from ._validate import check_real
from .dataset import make_dataset, parse_state, time_grid
from .observables import _T, ORDER_PARAMETERS  # the matrix transpose over leading axes
from .params import Params

__all__ = [
    "METHODS",
    "STIFF_METHODS",
    "StateLayout",
    "UnphysicalStateError",
    "UnphysicalStateWarning",
    "integrate",
    "jacobian",
    "layout",
    "min_gram_eigenvalue",
    "overlap_state",
    "pack",
    "random_init_state",
    "rhs",
    "unpack",
]

Array = NDArray[np.float64]
State = dict[str, Array]

#: Solvers accepted by :func:`integrate` (those of scipy.integrate.solve_ivp).
METHODS = ("LSODA", "Radau", "BDF", "RK45", "RK23", "DOP853")
#: Solvers that use the Jacobian (it is passed to them analytically).
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
        sizes = {"m": M * Ms, "d": M * Ms, "Q": ntri, "E": ntri, "R": M * M, "D": M}
        slices, start = {}, 0
        for k in ORDER_PARAMETERS:
            slices[k] = slice(start, start + sizes[k])
            start += sizes[k]
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
        M, Ms = self.M, self.M_star
        out = [f"{k}[{i},{j}]" for k in ("m", "d") for i in range(M) for j in range(Ms)]
        out += [f"{k}[{i},{j}]" for k in ("Q", "E") for i, j in zip(*self._iu, strict=True)]
        out += [f"R[{i},{j}]" for i in range(M) for j in range(M)]
        out += [f"D[{i}]" for i in range(M)]
        return out

    def pack(self, state: Mapping[str, ArrayLike]) -> Array:
        """Flat vector(s) of shape (..., size) from order parameters with leading axes."""
        s = {k: np.asarray(state[k], dtype=np.float64) for k in ORDER_PARAMETERS}
        lead = s["D"].shape[:-1]
        parts = [s["m"].reshape(*lead, -1), s["d"].reshape(*lead, -1),
                 s["Q"][..., self._iu[0], self._iu[1]], s["E"][..., self._iu[0], self._iu[1]],
                 s["R"].reshape(*lead, -1), s["D"]]
        return np.concatenate(parts, axis=-1)

    def unpack(self, y: ArrayLike) -> State:
        """Order parameters (with leading axes) from flat vector(s) of shape (..., size)."""
        y = np.asarray(y, dtype=np.float64)
        if y.shape[-1] != self.size:
            raise ValueError(f"flat state must have last axis of length {self.size} for "
                             f"(M, M_star) = ({self.M}, {self.M_star}), got shape {y.shape}")
        lead = y.shape[:-1]
        M, Ms, sl = self.M, self.M_star, self.slices
        return {"m": y[..., sl["m"]].reshape(*lead, M, Ms),
                "d": y[..., sl["d"]].reshape(*lead, M, Ms),
                "Q": y[..., sl["Q"]][..., self._sym],
                "E": y[..., sl["E"]][..., self._sym],
                "R": y[..., sl["R"]].reshape(*lead, M, M),
                "D": y[..., sl["D"]].copy()}


_LAYOUTS: dict[tuple[int, int], StateLayout] = {}


def layout(params: Params) -> StateLayout:
    """The flat layout for ``params`` (cached per (M, M*))."""
    key = (params.M, params.M_star)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = StateLayout(*key)
    return _LAYOUTS[key]


def pack(state: Mapping[str, ArrayLike], params: Params) -> Array:
    """Flat state vector from the dict of order parameters (see :class:`StateLayout`)."""
    return layout(params).pack(state)


def unpack(y: ArrayLike, params: Params) -> State:
    """Dict of order parameters from a flat state vector (see :class:`StateLayout`)."""
    return layout(params).unpack(y)


# ---------------------------------------------------------------------------------------
# right-hand side and its derivative, in matrix form
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Consts:
    """Parameter-derived constants, computed once per integration."""

    rho: Array
    Pe: Array
    eta: float
    tau: float
    lam: float
    eye: Array

    @classmethod
    def of(cls, p: Params) -> _Consts:
        return cls(rho=p.rho_vec, Pe=p.P + p.eta * np.eye(p.M_star), eta=p.eta, tau=p.tau,
                   lam=p.lam, eye=np.eye(p.M))


def _rhs_core(s: Mapping[str, Array], beta: float, c: _Consts) -> State:
    """MODEL.md section 5, vectorised over leading axes of the order parameters."""
    m, d, Q, E, R, D = (s[k] for k in ORDER_PARAMETERS)
    tau, eta, lam = c.tau, c.eta, c.lam
    Bb, Cab, Aaa = observables.moments(m, d, Q, E, R, c.rho, eta)
    K = Q + beta * c.eye
    B = Bb + lam * c.eye
    B = B + D[..., None, :] * c.eye  # + diag(D), broadcasting over leading axes
    BbK = Bb @ K
    CabK = Cab @ K
    Ebg = BbK - _T(Cab)
    Eag = CabK - Aaa
    Egg = Aaa - CabK - _T(CabK) + K @ BbK
    QB = Q @ B
    Qdiag = np.diagonal(Q, axis1=-2, axis2=-1)
    return {
        "m": tau * (d @ c.Pe - B @ m),
        "d": tau * ((m - K @ d) @ c.Pe - lam * d),
        "Q": tau * (Cab + _T(Cab) - QB - _T(QB)) + tau * tau * eta * Bb,
        "E": -tau * (Ebg + _T(Ebg) + 2.0 * lam * E) + tau * tau * eta * Egg,
        "R": tau * (Bb - Eag - lam * R - B @ R) - tau * tau * eta * Ebg,
        "D": -tau * (0.5 * Qdiag + 0.5 * beta * (1.0 - 1.0 / D)),
    }


def _jvp_core(s: Mapping[str, Array], ds: Mapping[str, Array], beta: float,
              c: _Consts) -> State:
    """Directional derivative of :func:`_rhs_core` at ``s`` along ``ds`` (product rule).

    ``ds`` may carry extra leading axes (e.g. one per basis direction); ``s`` broadcasts.
    """
    m, d, Q, E, R, D = (s[k] for k in ORDER_PARAMETERS)
    dm, dd, dQ, dE, dR, dD = (ds[k] for k in ORDER_PARAMETERS)
    tau, eta, lam, rho = c.tau, c.eta, c.lam, c.rho
    Bb, Cab, _ = observables.moments(m, d, Q, E, R, rho, eta)
    K = Q + beta * c.eye
    B = Bb + lam * c.eye + D[..., None, :] * c.eye
    dBb = (dd * rho) @ _T(d) + (d * rho) @ _T(dd) + eta * dE
    dCab = (dm * rho) @ _T(d) + (m * rho) @ _T(dd) + eta * dR
    dAaa = (dm * rho) @ _T(m) + (m * rho) @ _T(dm) + eta * dQ
    dK = dQ
    dB = dBb + dD[..., None, :] * c.eye
    dEbg = -_T(dCab) + dBb @ K + Bb @ dK
    dEag = -dAaa + dCab @ K + Cab @ dK
    dCabK = dCab @ K + Cab @ dK
    dEgg = (dAaa - dCabK - _T(dCabK)
            + dK @ Bb @ K + K @ dBb @ K + K @ Bb @ dK)
    dQB = dQ @ B + Q @ dB
    dQdiag = np.diagonal(dQ, axis1=-2, axis2=-1)
    return {
        "m": tau * (dd @ c.Pe - dB @ m - B @ dm),
        "d": tau * ((dm - dK @ d - K @ dd) @ c.Pe - lam * dd),
        "Q": tau * (dCab + _T(dCab) - dQB - _T(dQB)) + tau * tau * eta * dBb,
        "E": -tau * (dEbg + _T(dEbg) + 2.0 * lam * dE) + tau * tau * eta * dEgg,
        "R": tau * (dBb - dEag - lam * dR - dB @ R - B @ dR) - tau * tau * eta * dEbg,
        "D": -tau * (0.5 * dQdiag + 0.5 * beta * dD / (D * D)),
    }


def _as_state(state: Mapping[str, ArrayLike] | ArrayLike, params: Params) -> tuple[State, bool]:
    """(dict of arrays, was_flat) from a dict or a flat vector."""
    if isinstance(state, Mapping):
        missing = [k for k in ORDER_PARAMETERS if k not in state]
        if missing:
            raise ValueError(f"state is missing the order parameter(s) {missing} "
                             f"(needs all of {', '.join(ORDER_PARAMETERS)})")
        return {k: np.asarray(state[k], dtype=np.float64) for k in ORDER_PARAMETERS}, False
    return layout(params).unpack(state), True


def _beta_scalar(params: Params, t: float | None) -> float:
    return params.beta_inf if t is None else float(params.beta_at(t))


def rhs(t: float, state: Mapping[str, ArrayLike] | ArrayLike,
        params: Params) -> State | Array:
    """Time derivative of the order parameters, MODEL.md section 5.

    Parameters
    ----------
    t : float
        Time; enters only through beta(t).
    state : dict or array
        Either the dict ``{"m", "d", "Q", "E", "R", "D"}`` (matrix axes last, any leading
        axes) or flat vector(s) in the :class:`StateLayout` ordering.
    params : Params
        Model and SGD parameters.

    Returns
    -------
    dict or array
        The derivative in the same form as ``state``.
    """
    s, flat = _as_state(state, params)
    out = _rhs_core(s, _beta_scalar(params, t), _Consts.of(params))
    return layout(params).pack(out) if flat else out


def jacobian(params: Params, state: Mapping[str, ArrayLike] | ArrayLike,
             t: float | None = None) -> Array:
    """Analytic Jacobian of the flat right-hand side, a dense (n x n) array.

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
    lay = layout(params)
    s, _ = _as_state(state, params)
    if s["D"].shape != (params.M,):
        raise ValueError(f"jacobian needs a single state; got D of shape {s['D'].shape}")
    # one tangent per flat coordinate: the columns of J are the directional derivatives
    basis = lay.unpack(np.eye(lay.size))
    cols = lay.pack(_jvp_core(s, basis, _beta_scalar(params, t), _Consts.of(params)))
    return np.ascontiguousarray(cols.T)


# ---------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------
def random_init_state(params: Params) -> State:
    """The N -> infinity limit of the default random start (W, V i.i.d. N(0, 1), D = 1).

    m = d = 0, Q = E = I, R = 0, D = 1. Note that m = d = 0 is invariant under the ODE
    (MODEL.md section 5): started here, the ODE never learns the teacher, while SGD at
    finite N escapes after a time ~ log N. Start the ODE from a prescribed state with
    O(1) overlaps (:func:`overlap_state`) or from a simulation's measured t = 0 state.
    """
    M, Ms = params.M, params.M_star
    return {"m": np.zeros((M, Ms)), "d": np.zeros((M, Ms)), "Q": np.eye(M), "E": np.eye(M),
            "R": np.zeros((M, M)), "D": np.ones(M)}


def overlap_state(params: Params, overlap: float = 0.5) -> State:
    """A physical start with O(1) teacher overlaps: latent k aligned with factor k.

    Column k of W and of V is ``overlap * W*_k + sqrt(1 - overlap^2) * (own unit
    direction)`` for k < min(M, M*), unit norm otherwise, all other directions
    orthogonal. Hence m = d = overlap * I (rectangular), Q = E = I, R = overlap^2 on
    the first min(M, M*) diagonal entries, D = 1; the Gram matrix is PSD by construction.
    """
    c = check_real("overlap", overlap, ge=-1.0, le=1.0)
    M, Ms = params.M, params.M_star
    J = np.eye(M, Ms)
    return {"m": c * J, "d": c * J, "Q": np.eye(M), "E": np.eye(M),
            "R": c * c * (J @ J.T), "D": np.ones(M)}


def min_gram_eigenvalue(state: Mapping[str, ArrayLike]) -> Array:
    """Smallest eigenvalue of the Gram matrix (MODEL.md section 7), over leading axes."""
    G = observables.state_gram(state)
    return np.asarray(np.linalg.eigvalsh(G)[..., 0])


# ---------------------------------------------------------------------------------------
# integration
# ---------------------------------------------------------------------------------------
class UnphysicalStateError(RuntimeError):
    """The ODE solution left the physical region (Gram matrix not PSD, or D <= 0).

    ``partial`` holds the dataset of the physical part of the trajectory (recorded
    points before the event), ``t`` the time the state left the region.
    """

    def __init__(self, message: str, *, t: float, partial: xr.Dataset | None) -> None:
        super().__init__(message)
        self.t = t
        self.partial = partial


class UnphysicalStateWarning(RuntimeWarning):
    """Issued by ``integrate(on_unphysical="truncate")`` when it truncates a trajectory."""


def _check_init(init: Any, params: Params) -> State:
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


def integrate(p: Params, t_max: float = 20.0, init: Mapping[str, ArrayLike] | xr.Dataset |
              None = None, record_every: float = 0.1, method: str = "LSODA",
              rtol: float = 1e-8, atol: float = 1e-10, *, t_eval: ArrayLike | None = None,
              on_unphysical: Literal["raise", "truncate"] = "raise",
              psd_tol: float = 1e-8) -> xr.Dataset:
    """Integrate the ODEs of MODEL.md section 5 with scipy's solve_ivp.

    Parameters
    ----------
    p : Params
        Model and SGD parameters (beta may be a schedule).
    t_max : float
        Final time, > 0.
    init : dict or xarray.Dataset, optional
        Start state: ``{"m", "d", "Q", "E", "R", "D"}`` as for the simulation, or a
        single-state dataset slice (``ds.isel(replica=0, t=0)``,
        ``ds.mean("replica").isel(t=0)``). Validated by :func:`linvae.parse_state`
        (shapes, symmetry, D > 0, Gram matrix PSD). Default: :func:`overlap_state`.
    record_every : float
        Spacing of the recorded times 0, record_every, ..., (t_max always recorded).
    method : str
        One of :data:`METHODS`; default LSODA (switches to a stiff solver when needed).
        The analytic Jacobian is passed to LSODA, Radau and BDF.
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

    Returns
    -------
    xarray.Dataset
        The layout of :func:`linvae.make_dataset` with lead ("t",); attrs add kind="ode",
        method, rtol, atol, psd_tol, min_gram_eigenvalue (over the recorded points),
        truncated (0/1), t_unphysical (NaN unless truncated), nfev, njev.
    """
    if not isinstance(p, Params):
        raise TypeError(f"p must be a linvae.Params, got {type(p).__name__}")
    t_max = check_real("t_max", t_max, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0)
    if record_every > t_max:
        raise ValueError(f"record_every must be <= t_max={t_max:g}, got {record_every!r}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rtol = check_real("rtol", rtol, gt=0.0)
    atol = check_real("atol", atol, gt=0.0)
    psd_tol = check_real("psd_tol", psd_tol, gt=0.0)
    if on_unphysical not in ("raise", "truncate"):
        raise ValueError(f"on_unphysical must be 'raise' or 'truncate', got {on_unphysical!r}")
    state0 = _check_init(init, p)
    grid = time_grid(t_max, record_every, t_eval, name="t_eval")

    lay = layout(p)
    c = _Consts.of(p)
    const_beta = p.beta.limit() if p.beta.is_constant else None
    basis = lay.unpack(np.eye(lay.size))

    def beta_of(t: float) -> float:
        return const_beta if const_beta is not None else float(p.beta_at(t))

    def fun(t: float, y: Array) -> Array:
        return lay.pack(_rhs_core(lay.unpack(y), beta_of(t), c))

    def jac(t: float, y: Array) -> Array:
        return lay.pack(_jvp_core(lay.unpack(y), basis, beta_of(t), c)).T

    def gram_event(t: float, y: Array) -> float:
        s = lay.unpack(y)
        G = observables.state_gram(s)
        scale = max(1.0, float(np.abs(G).max()))
        return float(np.linalg.eigvalsh(G)[0]) / scale + psd_tol

    def d_event(t: float, y: Array) -> float:
        return float(y[lay.slices["D"]].min())

    for ev in (gram_event, d_event):
        ev.terminal = True  # type: ignore[attr-defined]
        ev.direction = -1  # type: ignore[attr-defined]

    kwargs: dict[str, Any] = {"jac": jac} if method in STIFF_METHODS else {}
    with np.errstate(all="ignore"):  # a runaway state is reported below, not as a warning
        sol = solve_ivp(fun, (0.0, t_max), lay.pack(state0), method=method, t_eval=grid,
                        rtol=rtol, atol=atol, events=(gram_event, d_event), **kwargs)
    if sol.status == -1:
        raise RuntimeError(f"ODE integration failed ({method}, rtol={rtol:g}, "
                           f"atol={atol:g}): {sol.message}")

    ops = lay.unpack(sol.y.T)
    t_rec = np.asarray(sol.t, dtype=np.float64)
    lam_min = min_gram_eigenvalue(ops) if t_rec.size else np.empty(0)
    attrs: dict[str, Any] = {
        "kind": "ode", "method": method, "rtol": rtol, "atol": atol, "psd_tol": psd_tol,
        "min_gram_eigenvalue": float(lam_min.min()) if lam_min.size else math.nan,
        "truncated": 0, "t_unphysical": math.nan, "nfev": int(sol.nfev),
        "njev": int(sol.njev),
    }

    if sol.status == 1:  # a terminal event: the state left the physical region
        which = "Gram" if len(sol.t_events[0]) else "D"
        t_bad = float((sol.t_events[0] if which == "Gram" else sol.t_events[1])[0])
        attrs.update(truncated=1, t_unphysical=t_bad)
        partial = make_dataset(ops, t_rec, p, lead=("t",), attrs=attrs) if t_rec.size else None
        what = ("the Gram matrix [[I, m^T, d^T], [m, Q, R], [d, R^T, E]] stopped being "
                "positive semidefinite" if which == "Gram" else "an encoder variance D_k "
                "reached 0")
        msg = (f"ODE state left the physical region at t = {t_bad:.6g}: {what} "
               f"(method={method}, rtol={rtol:g}, atol={atol:g}). Integration error near "
               f"the boundary of the PSD cone can push the state out, where it runs away "
               f"(MODEL.md section 8); try a tighter rtol or Radau, and find fixed points by "
               f"root finding rather than long integration.")
        if on_unphysical == "raise" or partial is None:
            raise UnphysicalStateError(msg, t=t_bad, partial=partial)
        warnings.warn(msg + f" Returning the trajectory up to t = {t_rec[-1]:.6g}.",
                      UnphysicalStateWarning, stacklevel=2)
        return partial

    # the event only sees sign changes between steps; check the recorded points too
    G_scale = np.maximum(1.0, np.abs(observables.state_gram(ops)).max(axis=(-2, -1)))
    bad = np.flatnonzero((lam_min / G_scale < -psd_tol) | np.any(ops["D"] <= 0, axis=-1))
    if bad.size:
        i = int(bad[0])
        t_bad = float(t_rec[i])
        attrs.update(truncated=1, t_unphysical=t_bad,
                     min_gram_eigenvalue=float(lam_min[:i].min()) if i else math.nan)
        partial = (make_dataset({k: v[:i] for k, v in ops.items()}, t_rec[:i], p,
                                lead=("t",), attrs=attrs) if i else None)
        msg = (f"ODE state left the physical region at t = {t_bad:.6g} (smallest Gram "
               f"eigenvalue {lam_min[i]:.3g}; method={method}, rtol={rtol:g}); see "
               f"MODEL.md section 8")
        if on_unphysical == "raise" or partial is None:
            raise UnphysicalStateError(msg, t=t_bad, partial=partial)
        warnings.warn(msg, UnphysicalStateWarning, stacklevel=2)
        return partial
    return make_dataset(ops, t_rec, p, lead=("t",), attrs=attrs)

