"""Finite-N fluctuations of the order parameters (docs/model.md#fluctuations).

One SGD step moves the flat state X (:class:`linvae.ode.StateLayout`) by f(X, y) / N,
where y = U^T x / sqrt(N) is the sample's projection on the weights U = [W*, W, V]:
given X, y is Gaussian with covariance S = G[:, *] P G[*, :] + eta G (G the Gram matrix
of docs/model.md#gram-chain). To leading order in 1/N every component of f is a
quadratic form in y plus a constant, f_i = y^T A_i y + c_i (x is centred, so there is no
linear term), hence in closed form (Isserlis)

    E f_i = tr(A_i S) + c_i                (= the ODEs' right-hand side)
    B_ij  = Cov(f_i, f_j) = 2 tr(A_i S A_j S).

The linear noise approximation follows: around the ODE solution x(t),
X = x(t) + N^(-1/2) zeta with Cov zeta = Sigma(t), dSigma/dt = J Sigma + Sigma J^T + B.

* :func:`diffusion` (B), :func:`increment_form` (the A_i, c_i and S themselves);
* :func:`initial_covariance`: N Cov X at the default random start, exactly;
* :func:`fluctuations`: the ODE mean with the predicted sd of every order parameter,
  of eps_g, and the full covariance, along a trajectory; :func:`predicted_spread`, the
  same for a simulation result, at its parameters, N, times and start;
* :func:`stationary_covariance`: Sigma at a stable fixed point (Lyapunov equation);
* :func:`plateau` and :func:`escape_time`: the unstable growth out of the collapsed
  plateau of the random start and the median time to escape it at finite N.

All covariances use the packed coordinates of :class:`linvae.ode.StateLayout` (Q and E
as upper triangles), which are non-redundant, so Sigma has no zero modes from symmetry.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp
from scipy.linalg import solve_continuous_lyapunov

from . import observables, ode
from ._validate import check_int, check_real
from .dataset import DIMS, parse_state
from .errors import IntegrationError
from .observables import ORDER_PARAMETERS
from .params import Params, check_params
from .states import random_init_state

__all__ = [
    "MEDIAN_ABS_NORMAL",
    "EscapeTime",
    "IncrementForm",
    "Plateau",
    "StationaryCovariance",
    "diffusion",
    "eg_gradient",
    "escape_time",
    "fluctuations",
    "increment_form",
    "initial_covariance",
    "plateau",
    "predicted_spread",
    "stationary_covariance",
]

Array = NDArray[np.float64]

#: Median of |Z| for Z ~ N(0, 1), the 3/4 quantile of the standard normal.
MEDIAN_ABS_NORMAL = 0.6744897501960817

#: Methods of scipy.integrate.solve_ivp accepted for the covariance equation.
_SOLVERS = ("LSODA", "RK45", "DOP853", "Radau", "BDF", "RK23")


# ---------------------------------------------------------------------------------------
# the one-step increment as a quadratic form in y
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IncrementForm:
    """N times one step's change of the flat state, f_i = y^T A_i y + c_i, y ~ N(0, S).

    Attributes
    ----------
    A : ndarray (n, K, K)
        Symmetric matrix of each flat coordinate's quadratic form; y = (y_*, a, b) has
        K = M* + 2M entries (projections on W*, W, V).
    c : ndarray (n,)
        The constant part of each coordinate.
    S : ndarray (K, K)
        Covariance of y given the state.
    """

    A: Array
    c: Array
    S: Array

    @property
    def drift(self) -> Array:
        """E f = tr(A_i S) + c_i, the ODEs' right-hand side."""
        return np.asarray(np.einsum("ipq,qp->i", self.A, self.S) + self.c)

    @property
    def covariance(self) -> Array:
        """B = Cov f, B_ij = 2 tr(A_i S A_j S) (Isserlis, for centred Gaussian y)."""
        AS = self.A @ self.S
        B = 2.0 * np.einsum("ipq,jqp->ij", AS, AS)
        return np.asarray(0.5 * (B + B.T))


def _quadratic(pairs: Sequence[tuple[Array, Array]]) -> Array:
    """A[k, l] of the matrix-valued quadratic form sum over pairs of (L y)(R y)^T."""
    T = sum(np.einsum("kp,lq->klpq", L, R) for L, R in pairs)
    T = np.asarray(T)
    return np.asarray(0.5 * (T + np.swapaxes(T, -1, -2)))


def _flat_state(p: Params, state: Mapping[str, ArrayLike] | ArrayLike) -> Array:
    lay = ode.layout(p)
    if isinstance(state, Mapping):
        missing = [k for k in ORDER_PARAMETERS if k not in state]
        if missing:
            raise ValueError(f"state is missing the order parameter(s) {missing} "
                             f"(needs all of {', '.join(ORDER_PARAMETERS)})")
        y = lay.pack(state)
    else:
        y = np.asarray(state, dtype=np.float64)
    if y.shape != (lay.size,):
        raise ValueError(f"state must be one flat state of length {lay.size} for "
                         f"(M, M_star) = ({p.M}, {p.M_star}) or a dict of order parameters, "
                         f"got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("state must be finite")
    return y


def increment_form(p: Params, state: Mapping[str, ArrayLike] | ArrayLike,
                   t: float | None = None) -> IncrementForm:
    """Return the one-step increment f = N (X' - X) as quadratic forms in y, to leading order.

    From the update of docs/model.md#sgd, with H = b b^T + Delta + lam I, K = Q + beta I,
    g = -a + K b, and ``||x||^2 / N`` -> eta in the squared terms:

        f_m = tau ( b y_*^T - H m )          f_d = -tau_V ( g y_*^T + lam d )
        f_Q = tau ( a b^T + b a^T - Q H - H Q ) + tau^2 eta b b^T
        f_E = -tau_V ( g b^T + b g^T + 2 lam E ) + tau_V^2 eta g g^T
        f_R = tau ( b b^T - H R ) - tau_V ( a g^T + lam R ) - tau tau_V eta b g^T
        f_D = -tau_D ( diag(Q) / 2 + beta / 2 (1 - 1/D) )

    (tau is the rate of W, tau_V and tau_D those of V and D: :attr:`Params.rates`.)

    Parameters
    ----------
    p : Params
        Model and SGD parameters.
    state : dict or array
        One state (dict of order parameters or flat vector).
    t : float, optional
        Time at which beta(t) is taken; None: beta_inf.
    """
    p = check_params(p)
    x = _flat_state(p, state)
    beta = p.beta_inf if t is None else float(p.beta_at(check_real("t", t, ge=0.0)))
    return _form(p, x, beta)


def _form(p: Params, x: Array, beta: float) -> IncrementForm:
    lay = ode.layout(p)
    s = lay.unpack(x)
    m, d, Q, E, R, D = (s[k] for k in ORDER_PARAMETERS)
    M, Ms, eta, lam = p.M, p.M_star, p.eta, p.lam
    tau, tV, tD = p.rates
    K = Ms + 2 * M
    eye = np.eye(K)
    Ss, Sa, Sb = eye[:Ms], eye[Ms:Ms + M], eye[Ms + M:]
    Kmat = Q + beta * np.eye(M)
    Gam = -Sa + Kmat @ Sb  # g = Gam y
    Am = _quadratic([(tau * Sb, Ss - m.T @ Sb)])
    Ad = _quadratic([(-tV * Gam, Ss)])
    AQ = _quadratic([(tau * Sa, Sb), (tau * Sb, Sa), (-tau * Q @ Sb, Sb), (-tau * Sb, Q @ Sb),
                     (tau * tau * eta * Sb, Sb)])
    AE = _quadratic([(-tV * Gam, Sb), (-tV * Sb, Gam), (tV * tV * eta * Gam, Gam)])
    AR = _quadratic([(tau * Sb, Sb), (-tau * Sb, R.T @ Sb), (-tV * Sa, Gam),
                     (-tau * tV * eta * Sb, Gam)])
    iu = np.triu_indices(M)
    A = np.concatenate([Am.reshape(-1, K, K), Ad.reshape(-1, K, K), AQ[iu], AE[iu],
                        AR.reshape(-1, K, K), np.zeros((M, K, K))])
    Dl = D + lam  # diagonal of Delta + lam I
    cQ = -tau * (Q * Dl[None, :] + Dl[:, None] * Q)
    with np.errstate(divide="ignore", invalid="ignore"):
        cD = -tD * (0.5 * np.diag(Q) + 0.5 * beta * (1.0 - 1.0 / D))
    c = np.concatenate([(-tau * Dl[:, None] * m).ravel(), (-tV * lam * d).ravel(), cQ[iu],
                        (-2.0 * tV * lam * E)[iu],
                        (-tau * Dl[:, None] * R - tV * lam * R).ravel(), cD])
    G = observables.state_gram(s)
    rho = p.rho_vec
    S = (G[:, :Ms] * rho) @ G[:Ms, :] + eta * G
    return IncrementForm(A=A, c=c, S=0.5 * (S + S.T))


def diffusion(p: Params, state: Mapping[str, ArrayLike] | ArrayLike,
              t: float | None = None) -> Array:
    """B(X) = Cov f, the covariance of N times one step's change of the flat state.

    Exact to leading order in 1/N (corrections are O(1/N) relative): B_ij =
    2 tr(A_i S A_j S) with the quadratic forms of :func:`increment_form`. Coordinates
    in the order of ``linvae.ode.layout(p).labels``.
    """
    return increment_form(p, state, t).covariance


def _diffusion(p: Params, x: Array, beta: float) -> Array:
    return _form(p, x, beta).covariance


# ---------------------------------------------------------------------------------------
# covariance of the random start
# ---------------------------------------------------------------------------------------
def initial_covariance(p: Params) -> Array:
    """N Cov X at the default random start (W, V i.i.d. N(0, 1), D = 1), exactly.

    With W*^T W* / N = I: m_ij = sum_n W_ni W*_nj / N has variance 1/N, and so do d_ij,
    R_ij, and Q_ij, E_ij for i != j; Q_ii = chi^2_N / N and E_ii have variance 2/N; D = 1
    is fixed. Distinct entries are uncorrelated (their covariances are odd moments or
    products of independent entries), so the matrix is diagonal in the packed layout.
    """
    p = check_params(p)
    lay = ode.layout(p)
    var = np.ones(lay.size)
    iu = np.triu_indices(p.M)
    diag = (iu[0] == iu[1]).astype(np.float64)
    for k in ("Q", "E"):
        var[lay.slices[k]] = 1.0 + diag
    var[lay.slices["D"]] = 0.0
    return np.diag(var)


# ---------------------------------------------------------------------------------------
# eps_g by the delta method
# ---------------------------------------------------------------------------------------
#: Step of the finite differences of eps_g (a piecewise linear function of m and Q).
_EG_STEP = 1e-7
#: Forward and backward slopes further apart than this mark a kink (tie of matchings,
#: or a matched m_ij = 0): there the delta method does not apply and the gradient is NaN.
_EG_KINK = 1e-4


def eg_gradient(p: Params, X: ArrayLike) -> Array:
    """Gradient of eps_g (:func:`linvae.observables.eg`) in the flat coordinates.

    eps_g is piecewise linear in |m| and Q (a minimum over matchings), so finite
    differences give its gradient exactly where it is differentiable; where the forward
    and backward slopes disagree (a tie between matchings, or a matched m_ij = 0, e.g. on
    the collapsed manifold m = 0) the gradient is NaN. ``X`` is one flat state or
    several (..., n).
    """
    p = check_params(p)
    lay = ode.layout(p)
    X = np.asarray(X, dtype=np.float64)
    if X.shape[-1:] != (lay.size,):
        raise ValueError(f"X must have last axis of length {lay.size}, got shape {X.shape}")
    idx = np.r_[np.arange(lay.size)[lay.slices["m"]], np.arange(lay.size)[lay.slices["Q"]]]
    step = np.zeros((idx.size, lay.size))
    step[np.arange(idx.size), idx] = _EG_STEP

    def eg_at(Y: Array) -> Array:
        s = lay.unpack(Y)
        return observables.eg(s["m"], s["Q"], p.rho_vec)

    e0 = eg_at(X)[..., None]
    fwd = (eg_at(X[..., None, :] + step) - e0) / _EG_STEP
    bwd = (e0 - eg_at(X[..., None, :] - step)) / _EG_STEP
    g = np.zeros((*X.shape[:-1], lay.size))
    g[..., idx] = np.where(np.abs(fwd - bwd) > _EG_KINK, np.nan, 0.5 * (fwd + bwd))
    return g


# ---------------------------------------------------------------------------------------
# the covariance along a trajectory
# ---------------------------------------------------------------------------------------
def _check_init(p: Params, init: Any) -> tuple[dict[str, Array], Array, str]:
    """(mean state at t = 0, N Cov X at t = 0, kind) of ``init``."""
    n = ode.layout(p).size
    if isinstance(init, str):
        if init != "random":
            raise ValueError(f"init must be 'random' or a state (dict of m, d, Q, E, R, D or "
                             f"a dataset slice), got {init!r}")
        return random_init_state(p), initial_covariance(p), "random"
    if not isinstance(init, (Mapping, xr.Dataset)):
        raise TypeError(f"init must be 'random' or a state (dict of m, d, Q, E, R, D or a "
                        f"dataset slice), got {type(init).__name__}")
    return parse_state(init, p, name="init"), np.zeros((n, n)), "prescribed"


def _sd_variables(p: Params, var: Array) -> dict[str, tuple[tuple[str, ...], Array]]:
    """Return ``X_sd`` per order parameter (matrix form, symmetric Q and E).

    The input holds packed variances with leading axis t.
    """
    sd = ode.layout(p).unpack(np.sqrt(np.clip(var, 0.0, None)))
    return {f"{k}_sd": (("t", *DIMS[k]), sd[k]) for k in ORDER_PARAMETERS}


def _component_coords(p: Params) -> dict[str, Any]:
    labels = np.asarray(ode.layout(p).labels)
    return {"component": labels, "component2": labels}


def fluctuations(p: Params, N: int, t_max: float, init: str | Mapping[str, ArrayLike] |
                 xr.Dataset = "random", record_every: float = 0.1, *,
                 t_eval: ArrayLike | None = None, method: str = "LSODA", rtol: float = 1e-8,
                 atol: float = 1e-10) -> xr.Dataset:
    """Compute the ODE mean and the predicted finite-N covariance of the order parameters.

    Solves dSigma/dt = J Sigma + Sigma J^T + B(x(t)) along the ODE solution x(t), with J
    the ODEs' Jacobian and B = :func:`diffusion`; Cov X(t) = Sigma(t) / N to leading order.

    Parameters
    ----------
    p : Params
        Model and SGD parameters (beta may be a schedule).
    N : int
        Input dimension, >= 1; it only scales the covariance.
    t_max : float
        Final time, > 0.
    init : "random" or dict or xarray.Dataset
        ``"random"`` (default): the default random start of :func:`linvae.simulate`; the
        mean starts at its limit (m = d = 0, Q = E = I, R = 0, D = 1, where it stays on the
        collapsed manifold m = d = 0) and Sigma(0) is its exact covariance
        (:func:`initial_covariance`). A state: a prescribed start, Sigma(0) = 0.
    record_every, t_eval
        Recorded times, as for :func:`linvae.integrate`.
    method : str
        solve_ivp method for the joint mean and covariance equations (default LSODA).
    rtol, atol : float
        Tolerances, > 0 (for :func:`linvae.integrate` and for the covariance).

    Returns
    -------
    xarray.Dataset
        :func:`linvae.integrate`'s dataset (the mean) plus, over t, ``X_sd`` for each order
        parameter X (same dims as X), ``eg_sd`` (delta method, NaN where eps_g is not
        differentiable, see :func:`eg_gradient`) and ``cov`` (t, component, component2),
        the covariance Sigma / N of the flat coordinates named by ``component``. attrs add
        N, init and lna_method.
    """
    p = check_params(p)
    N = check_int("N", N, ge=1)
    t_max = check_real("t_max", t_max, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0)
    if record_every > t_max:
        raise ValueError(f"record_every must be <= t_max={t_max:g}, got {record_every!r}")
    if not isinstance(method, str) or method not in _SOLVERS:
        raise ValueError(f"method must be one of {_SOLVERS}, got {method!r}")
    rtol = check_real("rtol", rtol, gt=0.0)
    atol = check_real("atol", atol, gt=0.0)
    state0, sigma0, kind = _check_init(p, init)
    ds = ode.integrate(p, t_max, init=state0, record_every=record_every, t_eval=t_eval,
                       rtol=rtol, atol=atol)
    times = ds["t"].values
    sigma = _lna(p, ode.layout(p).pack(state0), sigma0, times, method, rtol, atol)
    lay = ode.layout(p)
    cov = sigma / N
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    X = lay.pack({k: ds[k].values for k in ORDER_PARAMETERS})
    grad = eg_gradient(p, X)
    eg_var = np.einsum("ti,tij,tj->t", grad, cov, grad)
    out = ds.assign(_sd_variables(p, var))
    out["eg_sd"] = ("t", np.sqrt(np.clip(eg_var, 0.0, None)))
    out = out.assign_coords(_component_coords(p))
    out["cov"] = (("t", "component", "component2"), cov)
    for k in ORDER_PARAMETERS:
        out[f"{k}_sd"].attrs["long_name"] = f"predicted standard deviation of {k} at N"
    out["eg_sd"].attrs["long_name"] = "predicted standard deviation of eps_g at N"
    out["cov"].attrs["long_name"] = "predicted covariance Sigma / N of the flat coordinates"
    out.attrs.update(N=N, init=kind, lna_method=method)
    return out


def predicted_spread(ds: xr.Dataset) -> xr.Dataset:
    """Return the ODE with the predicted finite-N spread for a simulation result.

    It is the dataset of :func:`fluctuations` at the file's parameters, N and times, from
    its start.

    The start is the file's ``init``: ``"random"`` (the default random start, whose exact
    initial law the prediction takes), or a prescribed one, taken as the replica mean at
    t = 0. Raises ValueError if the file is not a simulation with that information.
    """
    if ds.attrs.get("kind") != "simulation" or "N" not in ds.attrs:
        raise ValueError("not a simulation result (attrs kind = 'simulation' and N)")
    try:
        p = Params.from_attrs(dict(ds.attrs))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the file's parameters are incomplete ({exc})") from None
    t = np.asarray(ds["t"].values, dtype=np.float64)
    init: Any = ds.attrs.get("init")
    if init == "prescribed":
        if t[0] != 0.0:
            raise ValueError("the prescribed start is not recorded (the first time is "
                             f"t = {t[0]:g}, not 0)")
        init = ds.isel(t=0).mean("replica") if "replica" in ds.dims else ds.isel(t=0)
    elif init != "random":
        raise ValueError(f"unknown start (attrs init = {init!r})")
    t_end = float(t[-1])
    if t_end <= 0.0:
        raise ValueError("the file holds only t = 0")
    every = float(t[1] - t[0]) if t.size > 1 else t_end
    return fluctuations(p, int(ds.attrs["N"]), t_end, init=init,
                        record_every=min(every, t_end), t_eval=t)


def _lna(p: Params, x0: Array, sigma0: Array, times: Array, method: str, rtol: float,
         atol: float) -> Array:
    """Sigma at ``times`` from the joint equations of the mean and of Sigma."""
    n = x0.size
    constant = p.beta.is_constant
    beta_inf = p.beta_inf

    def fun(t: float, z: Array) -> Array:
        x = np.ascontiguousarray(z[:n])
        sig = z[n:].reshape(n, n)
        tt = None if constant else t
        beta = beta_inf if constant else float(p.beta_at(t))
        J = ode.jacobian(p, x, tt)
        dsig = J @ sig
        dsig = dsig + dsig.T + _diffusion(p, x, beta)
        return np.concatenate([np.asarray(ode.rhs(tt, x, p)), dsig.ravel()])

    z0 = np.concatenate([x0, sigma0.ravel()])
    if times[-1] <= 0.0:
        return sigma0[None].copy()
    sol = solve_ivp(fun, (0.0, float(times[-1])), z0, method=method, t_eval=times,
                    rtol=rtol, atol=atol)
    if sol.status != 0 or sol.y.shape[1] != times.size:
        raise IntegrationError(f"covariance equation failed ({method}): {sol.message}")
    sig = sol.y[n:].T.reshape(times.size, n, n)
    return np.asarray(0.5 * (sig + np.swapaxes(sig, -1, -2)))


# ---------------------------------------------------------------------------------------
# stable fixed points: the Lyapunov equation
# ---------------------------------------------------------------------------------------
#: A state counts as a fixed point if max |rhs| is at most this (times max(1, max |X|)).
FIXED_POINT_TOL = 1e-8


@dataclass(frozen=True)
class StationaryCovariance:
    """The stationary covariance at a stable fixed point: Cov X = :attr:`sigma` / N.

    Attributes
    ----------
    sigma : xarray.DataArray (component, component2)
        Sigma, the solution of J Sigma + Sigma J^T + B = 0, over the named flat
        coordinates.
    eg_var : float
        N Var eps_g by the delta method (NaN where eps_g is not differentiable).
    eigenvalues : ndarray of complex
        Eigenvalues of J, by decreasing real part.
    """

    sigma: xr.DataArray
    eg_var: float
    eigenvalues: NDArray[np.complex128]

    def sd(self, N: int) -> xr.DataArray:
        """Predicted standard deviation of each flat coordinate at input dimension N."""
        N = check_int("N", N, ge=1)
        v = np.sqrt(np.clip(np.diagonal(self.sigma.values), 0.0, None) / N)
        return xr.DataArray(v, dims=("component",),
                            coords={"component": self.sigma["component"].values})

    def eg_sd(self, N: int) -> float:
        """Predicted standard deviation of eps_g at input dimension N."""
        N = check_int("N", N, ge=1)
        return math.sqrt(max(self.eg_var, 0.0) / N) if math.isfinite(self.eg_var) \
            else math.nan


def stationary_covariance(p: Params, state: Mapping[str, ArrayLike] | xr.Dataset
                          ) -> StationaryCovariance:
    """N Cov X at a stable fixed point: J Sigma + Sigma J^T + B = 0 (at beta_inf).

    Parameters
    ----------
    p : Params
        Model and SGD parameters; fixed points refer to beta_inf.
    state : dict or xarray.Dataset
        The fixed point (e.g. ``linvae.stable_fixed_point(p).state``). It must be a
        physical state with max |rhs| <= FIXED_POINT_TOL and every eigenvalue of J must
        have negative real part (a zero mode, e.g. a rotation among equal rho_k, has no
        stationary spread).
    """
    p = check_params(p)
    s = parse_state(state, p, name="state")
    x = ode.layout(p).pack(s)
    res = float(np.abs(np.asarray(ode.rhs(None, x, p))).max())
    if res > FIXED_POINT_TOL * max(1.0, float(np.abs(x).max())):
        raise ValueError(f"state must be a fixed point of the ODEs at beta={p.beta_inf:g}: "
                         f"max |rhs| must be <= {FIXED_POINT_TOL:g}, got {res:.3g}")
    J = ode.jacobian(p, x)
    eig = np.linalg.eigvals(J).astype(np.complex128)
    eig = eig[np.argsort(-eig.real)]
    if eig[0].real >= -1e-9:
        raise ValueError(f"state must be a linearly stable fixed point (every eigenvalue of "
                         f"the Jacobian with real part < 0) to have a stationary covariance; "
                         f"its largest real part is {eig[0].real:.3g}")
    B = _diffusion(p, x, p.beta_inf)
    sig = solve_continuous_lyapunov(J, -B)
    sig = 0.5 * (sig + sig.T)
    g = eg_gradient(p, x)
    eg_var = float(g @ sig @ g)
    return StationaryCovariance(
        sigma=xr.DataArray(sig, dims=("component", "component2"), coords=_component_coords(p),
                           attrs={"long_name": "N Cov X at the fixed point"}),
        eg_var=eg_var, eigenvalues=eig)


# ---------------------------------------------------------------------------------------
# escape from the collapsed plateau
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plateau:
    """The collapsed plateau of the default random start and its unstable mode (M = M* = 1).

    Attributes
    ----------
    state : dict
        The plateau: the limit of the ODE from the random start's N -> infinity state
        (m = d = 0; Q, E, R, D relax to the fixed point of the collapsed manifold, fully
        collapsed for beta > eta, fitting the noise below).
    rate : float
        lambda, the largest eigenvalue of the Jacobian's odd block (m, d) there.
    mode : ndarray
        Its right eigenvector v over (m, d), scaled so that its m entry is 1.
    amplitude_sd : float
        s_A: sqrt(N) (m, d)(t) ~ A e^(lambda t) v on the plateau at large t, with
        A ~ N(0, s_A^2) (the exact law of the random start and the noise along the way).
    t_relax : float
        Time after which the collapsed trajectory sits at ``state`` and the odd sector
        along v (the other mode has decayed).
    """

    state: dict[str, Array]
    rate: float
    mode: Array
    amplitude_sd: float
    t_relax: float
    _forward: Any = field(repr=False, compare=False)
    _adjoint: Any = field(repr=False, compare=False)


#: Even coordinates (Q, E, R, D) of the (1, 1) flat state, after the odd ones (m, d).
_N_EVEN = 4
_ODD = np.array([0, 1], dtype=np.intp)
_EVEN = np.array([2, 3, 4, 5], dtype=np.intp)


def _check_escape_params(p: Any) -> Params:
    p = check_params(p)
    if (p.M, p.M_star) != (1, 1):
        raise ValueError(
            f"the plateau escape is implemented for M = M_star = 1 only, got (M, M_star) = "
            f"({p.M}, {p.M_star}): with several latents, several unstable modes grow at once "
            f"from comparable random amplitudes and compete once they are O(1), so the first "
            f"passage depends on the whole amplitude vector, not on one amplitude through a "
            f"monotone map")
    if not p.beta.is_constant:
        raise ValueError(f"the plateau escape needs a constant beta, got the schedule "
                         f"{p.beta!r}")
    return p


def _newton(p: Params, x: Array, idx: NDArray[np.intp], what: str) -> Array:
    """Refine a fixed point of the ODEs over the coordinates ``idx`` (the others held)."""
    x = x.copy()
    for _ in range(50):
        r = np.asarray(ode.rhs(None, x, p))
        if np.abs(r).max() < 1e-13:
            break
        J = ode.jacobian(p, x)
        x[idx] -= np.linalg.solve(J[np.ix_(idx, idx)], r[idx])
    r = np.asarray(ode.rhs(None, x, p))
    if np.abs(r).max() > 1e-10:
        raise IntegrationError(f"could not locate {what} for {p} (max |rhs| = "
                               f"{np.abs(r).max():.3g})")
    return x


def _settle(p: Params, x0: Array, what: str, t_max: float = 5000.0) -> tuple[Array, float]:
    """Integrate from x0 until max |rhs| < 1e-7 (Newton refines it); (state, time)."""
    lay = ode.layout(p)
    t, x = 0.0, x0
    chunk = 25.0 / p.tau
    while t < t_max:
        x = lay.pack(ode.final_state(p, chunk, init=lay.unpack(x)))
        t += chunk
        if np.abs(np.asarray(ode.rhs(None, x, p))).max() < 1e-7:
            return x, t
    raise IntegrationError(f"{what} not reached by t = {t_max:g} for {p}")


def plateau(p: Params) -> Plateau:
    """Return the collapsed plateau of the default random start and its growing mode.

    That is the plateau, its growth rate lambda and the law of the amplitude of the
    growing mode (M = M* = 1, constant beta).

    On m = d = 0 the odd sector (m, d) decouples (sign-flip symmetry) and its LNA is a
    2-d linear SDE along the collapsed trajectory x0(t): zeta' = J_odd(t) zeta + noise of
    covariance B_odd(t), zeta(0) ~ N(0, I) (the exact random start). With u(t) the
    adjoint solution, u' = -J_odd^T u, u(t) e^(lambda t) -> w (left eigenvector at the
    plateau, w^T v = 1), the amplitude A = lim e^(-lambda t) w^T zeta(t) is
    u(0)^T zeta(0) + the integral of u^T dnoise: a centred Gaussian of variance
    s_A^2 = e^(-2 lambda T) (w^T Sigma(T) w + w^T B_c w / (2 lambda)) for any T after
    which the trajectory sits at the plateau.

    Raises ValueError unless lambda > 0 (at lam = 0, collapse is stable and there is no
    escape for beta >= rho + eta).
    """
    pl = _plateau(_check_escape_params(p))
    return dataclasses.replace(pl, state={k: v.copy() for k, v in pl.state.items()},
                               mode=pl.mode.copy())


@functools.lru_cache(maxsize=64)
def _plateau(p: Params) -> Plateau:
    lay = ode.layout(p)
    x0 = lay.pack(random_init_state(p))
    xc, t_relax = _settle(p, x0, "the collapsed plateau")
    xc = _newton(p, xc, _EVEN, "the collapsed plateau")
    Jc = ode.jacobian(p, xc)[np.ix_(_ODD, _ODD)]
    ev, vr = np.linalg.eig(Jc)
    order = np.argsort(-ev.real)
    lam_g = float(ev[order[0]].real)
    if lam_g <= 0.0:
        raise ValueError(
            f"the collapsed plateau is stable for {p} (growth rate {lam_g:.4g} <= 0; at "
            f"lam = 0 collapse is stable for beta >= rho + eta): there is no escape")
    v = np.real(vr[:, order[0]])
    v = v / v[0]  # its m entry is 1
    evl, vl = np.linalg.eig(Jc.T)
    w = np.real(vl[:, int(np.argmax(evl.real))])
    w = w / (w @ v)
    gap = lam_g - float(ev[order[1]].real)
    T = max(t_relax, 40.0 / gap)

    def state_at(x_even: Array) -> Array:
        x = np.zeros(lay.size)
        x[_EVEN] = x_even
        return x

    # Sigma_odd along the collapsed trajectory, scaled by e^(-2 lambda t) (no overflow)
    def forward(t: float, z: Array) -> Array:
        x = state_at(z[:_N_EVEN])
        sig = z[_N_EVEN:].reshape(2, 2)
        Jo = ode.jacobian(p, x)[np.ix_(_ODD, _ODD)] - lam_g * np.eye(2)
        Bo = _diffusion(p, x, p.beta_inf)[np.ix_(_ODD, _ODD)]
        ds = Jo @ sig
        ds = ds + ds.T + math.exp(-2.0 * lam_g * t) * Bo
        return np.concatenate([np.asarray(ode.rhs(None, x, p))[_EVEN], ds.ravel()])

    z0 = np.concatenate([x0[_EVEN], initial_covariance(p)[np.ix_(_ODD, _ODD)].ravel()])
    fwd = solve_ivp(forward, (0.0, T), z0, method="LSODA", rtol=1e-10, atol=1e-13,
                    dense_output=True)
    if fwd.status != 0:
        raise IntegrationError(f"odd-sector covariance failed for {p}: {fwd.message}")

    # u e^(lambda t), backwards from w at T
    def adjoint(t: float, u: Array) -> Array:
        x = state_at(fwd.sol(t)[:_N_EVEN])
        Jo = ode.jacobian(p, x)[np.ix_(_ODD, _ODD)]
        return np.asarray(-(Jo.T - lam_g * np.eye(2)) @ u)

    adj = solve_ivp(adjoint, (T, 0.0), w, method="LSODA", rtol=1e-10, atol=1e-13,
                    dense_output=True)
    if adj.status != 0:
        raise IntegrationError(f"odd-sector adjoint failed for {p}: {adj.message}")
    sig = fwd.y[_N_EVEN:, -1].reshape(2, 2)
    Bc = _diffusion(p, xc, p.beta_inf)[np.ix_(_ODD, _ODD)]
    sA2 = float(w @ sig @ w) + math.exp(-2.0 * lam_g * T) * float(w @ Bc @ w) / (2.0 * lam_g)
    return Plateau(state=lay.unpack(xc), rate=lam_g, mode=v, amplitude_sd=math.sqrt(sA2),
                   t_relax=T, _forward=fwd, _adjoint=adj)


@dataclass(frozen=True)
class EscapeTime:
    """Predicted median time to escape the collapsed plateau at input dimension N.

    Attributes
    ----------
    t : float
        Median first time at which |m| reaches ``level * m_fixed``.
    rate : float
        lambda, the growth rate of the odd sector on the plateau.
    slope, offset : float
        The large-N form t ~ slope ln N + offset, slope = 1 / (2 lambda). ``t`` equals it
        when the escape starts after the plateau has settled (large N); for smaller N,
        ``t`` follows the transient of the collapsed trajectory as well.
    N : int
    level : float
    m_fixed : float
        |m| at the stable fixed point reached after the escape.
    amplitude_sd : float
        s_A of :class:`Plateau`.
    """

    t: float
    rate: float
    slope: float
    offset: float
    N: int
    level: float
    m_fixed: float
    amplitude_sd: float

    @property
    def t_asymptotic(self) -> float:
        """Large-N form of the escape time, ``slope ln N + offset``."""
        return self.slope * math.log(self.N) + self.offset

    def __float__(self) -> float:
        return self.t


#: |m| (as a fraction of the level) beyond which the linear regime ends: the large-N form
#: hands over to the ODE there (its O(m^2) terms are then below 1e-3 of the linear ones).
_HANDOVER = 0.02


def _first_passage(p: Params, x: Array, target: float,
                   forcing: Callable[[float], Array] | None = None) -> float:
    """Return the time until ``|m|`` reaches target for the ODE from x.

    ``forcing(t)``, if given, is added on the odd coordinates.
    """

    def reach(t: float, y: Array) -> float:
        return abs(float(y[0])) - target

    reach.terminal = True  # type: ignore[attr-defined]
    reach.direction = 1  # type: ignore[attr-defined]

    def fun(t: float, y: Array) -> Array:
        dy = np.asarray(ode.rhs(None, y, p))
        if forcing is not None:
            dy[_ODD] += forcing(t)
        return dy

    sol = solve_ivp(fun, (0.0, 1e5), x, method="LSODA", rtol=1e-10, atol=1e-14,
                    events=reach, jac=lambda t, y: ode.jacobian(p, y))
    if not len(sol.t_events[0]):
        raise IntegrationError(f"|m| never reached {target:.4g} for {p}")
    return float(sol.t_events[0][0])


@functools.lru_cache(maxsize=64)
def _m_fixed(p: Params) -> float:
    """|m| at the stable fixed point the escape from the plateau leads to."""
    pl = _plateau(p)
    lay = ode.layout(p)
    x_fp, _ = _settle(p, lay.pack(pl.state) + np.r_[1e-6 * pl.mode, np.zeros(_N_EVEN)],
                      "the fixed point after the escape")
    x_fp = _newton(p, x_fp, np.arange(lay.size), "the fixed point after the escape")
    if np.linalg.eigvals(ode.jacobian(p, x_fp)).real.max() >= 0:
        raise IntegrationError(f"the state reached after the escape is not stable for {p}")
    return float(abs(x_fp[0]))


def escape_time(p: Params, N: int, level: float = 0.5) -> EscapeTime:
    """Predict the median escape time from the collapsed plateau of the default random start.

    That is the median time, from the default random start, at which ``|m|`` first
    reaches ``level`` times its value at the stable fixed point.

    Supported: M = M* = 1 with a constant beta and an unstable plateau (growth rate
    lambda > 0, i.e. beta < rho + eta at lam = 0). Larger M or M* are refused: several
    latents grow at once from comparable random amplitudes and compete, so the first
    passage is not one monotone function of one Gaussian amplitude.

    On the plateau sqrt(N) (m, d) ~ A e^(lambda t) v with A ~ N(0, s_A^2)
    (:func:`plateau`). The first passage is a decreasing function of ``|A|``, so its
    median is the first passage at ``|A|`` = q s_A, q = 0.6745 the median of
    ``|N(0, 1)|``: the linear regime's conditional mean path N^(-1/2) q s_A e^(lambda t)
    c(t) up to ``|m|`` = delta0 (2% of the level), then the deterministic ODE. At large N
    this gives

        t_esc = ln N / (2 lambda) + (ln delta0 - ln(q s_A)) / lambda + T(delta0),

    T(delta0) the ODE's time from the plateau + delta0 v to the level. Corrections are
    O(N^(-1/2)) (fluctuations of the other coordinates at the passage).

    Parameters
    ----------
    p : Params
        (M, M*) = (1, 1), constant beta.
    N : int
        Input dimension, >= 3 (the Gram chain's M* + 2M).
    level : float
        Fraction of the fixed point's ``|m|``, 0 < level < 1.
    """
    p = _check_escape_params(p)
    N = check_int("N", N, ge=3)
    level = check_real("level", level, gt=0.0, lt=1.0)
    pl = _plateau(p)
    xc = ode.layout(p).pack(pl.state)
    m_fixed = _m_fixed(p)
    target = level * m_fixed
    delta0 = _HANDOVER * target
    lam_g, qs = pl.rate, MEDIAN_ABS_NORMAL * pl.amplitude_sd
    t_det = _first_passage(p, xc + np.r_[delta0 * pl.mode, np.zeros(_N_EVEN)], target)
    offset = (math.log(delta0) - math.log(qs)) / lam_g + t_det
    slope = 0.5 / lam_g
    scale = qs / math.sqrt(N)

    if (math.log(delta0) - math.log(scale)) / lam_g >= pl.t_relax:
        t = slope * math.log(N) + offset  # the linear regime outlasts the transient
    else:
        t = _median_passage(p, pl, N, target)
    return EscapeTime(t=t, rate=lam_g, slope=slope, offset=offset, N=N, level=level,
                      m_fixed=m_fixed, amplitude_sd=pl.amplitude_sd)


def _median_passage(p: Params, pl: Plateau, N: int, target: float) -> float:
    """First passage of the conditional mean path given A = q s_A, from t = 0.

    In the linear regime E[zeta(t) | A] = Sigma(t) u(t) A / s_A^2 solves
    zeta' = J zeta + B u A / s_A^2 from Sigma(0) u(0) A / s_A^2: the noise still to come
    pushes the path along the adjoint. The same forcing added to the nonlinear ODE carries
    the path through the transient of the collapsed trajectory into the escape (it decays
    like e^(-lambda t), so it is negligible once m is O(1)).
    """
    lay = ode.layout(p)
    k = MEDIAN_ABS_NORMAL / pl.amplitude_sd / math.sqrt(N)  # N^(-1/2) A / s_A^2
    x0 = lay.pack(random_init_state(p))
    odd0 = k * initial_covariance(p)[np.ix_(_ODD, _ODD)] @ pl._adjoint.sol(0.0)
    xc = lay.pack(pl.state)
    w = np.asarray(pl._adjoint.sol(pl.t_relax))
    Bc = _diffusion(p, xc, p.beta_inf)[np.ix_(_ODD, _ODD)]

    def forcing(t: float) -> Array:
        if t >= pl.t_relax:
            return np.asarray(k * math.exp(-pl.rate * t) * (Bc @ w))
        x = xc.copy()
        x[_EVEN] = pl._forward.sol(t)[:_N_EVEN]
        Bo = _diffusion(p, x, p.beta_inf)[np.ix_(_ODD, _ODD)]
        return np.asarray(k * math.exp(-pl.rate * t) * (Bo @ pl._adjoint.sol(t)))

    return _first_passage(p, np.r_[odd0, x0[_EVEN]], target, forcing)
