"""The limiting ODEs in NumPy: the test oracle of the compiled ones (docs/model.md#odes).

Why this file is here: the package has one implementation of the ODEs, the compiled one
(cpp/linvae/ode.hpp, reached through :mod:`linvae.ode`). This is the matrix form of the
same equations, written independently and kept only to check the compiled code (its
right-hand side, Jacobian and integrations, tests/test_ode_compiled.py) and to measure it
(benchmarks/bench_ode.py, through :class:`PythonSystem`). Nothing in ``src/`` imports it.
It works on full matrices, vectorised over leading axes, and on flat vectors of
:class:`linvae.ode.StateLayout`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

from linvae import observables
from linvae.observables import _T, ORDER_PARAMETERS
from linvae.ode import layout
from linvae.params import Params

Array = NDArray[np.float64]
State = dict[str, Array]


@dataclass(frozen=True)
class Consts:
    """Parameter-derived constants."""

    rho: Array
    Pe: Array
    eta: float
    tau: float
    tau_V: float
    tau_D: float
    lam: float
    eye: Array

    @classmethod
    def of(cls, p: Params) -> Consts:
        tau, tau_V, tau_D = p.rates
        return cls(rho=p.rho_vec, Pe=p.P + p.eta * np.eye(p.M_star), eta=p.eta, tau=tau,
                   tau_V=tau_V, tau_D=tau_D, lam=p.lam, eye=np.eye(p.M))


def rhs_core(s: Mapping[str, Array], beta: float, c: Consts) -> State:
    """The ODEs of docs/model.md#odes, vectorised over leading axes of the order parameters."""
    m, d, Q, E, R, D = (s[k] for k in ORDER_PARAMETERS)
    tau, tV, tD, eta, lam = c.tau, c.tau_V, c.tau_D, c.eta, c.lam
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
        "d": tV * ((m - K @ d) @ c.Pe - lam * d),
        "Q": tau * (Cab + _T(Cab) - QB - _T(QB)) + tau * tau * eta * Bb,
        "E": -tV * (Ebg + _T(Ebg) + 2.0 * lam * E) + tV * tV * eta * Egg,
        "R": tau * (Bb - B @ R) - tV * (Eag + lam * R) - tau * tV * eta * Ebg,
        "D": -tD * (0.5 * Qdiag + 0.5 * beta * (1.0 - 1.0 / D)),
    }


def jvp_core(s: Mapping[str, Array], ds: Mapping[str, Array], beta: float, c: Consts) -> State:
    """Directional derivative of :func:`rhs_core` at ``s`` along ``ds`` (product rule).

    ``ds`` may carry extra leading axes (e.g. one per basis direction); ``s`` broadcasts.
    """
    m, d, Q, E, R, D = (s[k] for k in ORDER_PARAMETERS)
    dm, dd, dQ, dE, dR, dD = (ds[k] for k in ORDER_PARAMETERS)
    tau, tV, tD, eta, lam, rho = c.tau, c.tau_V, c.tau_D, c.eta, c.lam, c.rho
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
        "d": tV * ((dm - dK @ d - K @ dd) @ c.Pe - lam * dd),
        "Q": tau * (dCab + _T(dCab) - dQB - _T(dQB)) + tau * tau * eta * dBb,
        "E": -tV * (dEbg + _T(dEbg) + 2.0 * lam * dE) + tV * tV * eta * dEgg,
        "R": tau * (dBb - dB @ R - B @ dR) - tV * (dEag + lam * dR) - tau * tV * eta * dEbg,
        "D": -tD * (0.5 * dQdiag + 0.5 * beta * dD / (D * D)),
    }


def _beta(p: Params, t: float | None) -> float:
    return p.beta_inf if t is None else float(p.beta_at(t))


def rhs(t: float | None, y: Any, p: Params) -> Array:
    """Flat right-hand side (leading axes allowed); t = None means beta_inf."""
    lay = layout(p)
    return lay.pack(rhs_core(lay.unpack(y), _beta(p, t), Consts.of(p)))


def jacobian(p: Params, y: Any, t: float | None = None) -> Array:
    """Dense Jacobian of the flat right-hand side at one flat state."""
    lay = layout(p)
    basis = lay.unpack(np.eye(lay.size))
    cols = lay.pack(jvp_core(lay.unpack(y), basis, _beta(p, t), Consts.of(p)))
    return np.ascontiguousarray(cols.T)


def integrate(p: Params, y0: Array, t_eval: Array, method: str = "LSODA", rtol: float = 1e-8,
              atol: float = 1e-10) -> Array:
    """solve_ivp with the NumPy right-hand side (and Jacobian for the stiff methods): the
    recorded flat states, (len(t_eval), n). No physicality events: for physical runs."""
    lay = layout(p)
    c = Consts.of(p)
    basis = lay.unpack(np.eye(lay.size))
    const = p.beta.limit() if p.beta.is_constant else None

    def beta(t: float) -> float:
        return const if const is not None else float(p.beta_at(t))

    def fun(t: float, y: Array) -> Array:
        return lay.pack(rhs_core(lay.unpack(y), beta(t), c))

    def jac(t: float, y: Array) -> Array:
        return lay.pack(jvp_core(lay.unpack(y), basis, beta(t), c)).T

    kwargs: dict[str, Any] = {"jac": jac} if method in ("LSODA", "Radau", "BDF") else {}
    sol = solve_ivp(fun, (0.0, float(t_eval[-1])), y0, method=method, t_eval=t_eval, rtol=rtol,
                    atol=atol, **kwargs)
    assert sol.status == 0, sol.message
    return np.asarray(sol.y.T)


def random_state(p: Params, rng: np.random.Generator, rank_extra: int = 2) -> State:
    """A random physical state: a random PSD Gram matrix with identity teacher block."""
    M, Ms = p.M, p.M_star
    K = Ms + 2 * M
    A = rng.standard_normal((K, K + rank_extra))
    G = A @ A.T / (K + rank_extra)
    Li = np.linalg.inv(np.linalg.cholesky(G[:Ms, :Ms]))
    T = np.eye(K)
    T[:Ms, :Ms] = Li  # congruence keeps G PSD and makes its teacher block I
    G = T @ G @ T.T
    a, b = Ms, Ms + M
    return {"m": G[a:b, :a], "d": G[b:, :a], "Q": G[a:b, a:b], "E": G[b:, b:],
            "R": G[a:b, b:], "D": rng.uniform(0.3, 1.5, M)}


class PythonSystem:
    """The oracle behind the interface of ``linvae._core.OdeSystem``: every call in NumPy and
    SciPy, as linvae computed it before the compiled ODEs (the right-hand side, Jacobian and
    Gram checks in NumPy; integrations by solve_ivp's LSODA with the three terminal events).

    Put in place of the compiled system (``monkeypatch.setattr(linvae.ode, "_system",
    PythonSystem.of)``), the public functions run the old way: the benchmarks measure the
    compiled code against it in the same run.
    """

    _cache: ClassVar[dict[Params, PythonSystem]] = {}

    def __init__(self, p: Params) -> None:
        self.p = p
        self.lay = layout(p)
        self.c = Consts.of(p)
        self.basis = self.lay.unpack(np.eye(self.lay.size))
        self.size = self.lay.size

    @classmethod
    def of(cls, p: Params) -> PythonSystem:
        if p not in cls._cache:
            cls._cache[p] = cls(p)
        return cls._cache[p]

    def beta(self, t: float) -> float:
        return float(self.p.beta_at(t))

    def rhs(self, t: float, y: Array, beta: float | None = None) -> Array:
        b = self.beta(t) if beta is None else beta
        return self.lay.pack(rhs_core(self.lay.unpack(y), b, self.c))

    def jacobian(self, t: float, y: Array, beta: float | None = None) -> Array:
        b = self.beta(t) if beta is None else beta
        return np.ascontiguousarray(
            self.lay.pack(jvp_core(self.lay.unpack(y), self.basis, b, self.c)).T)

    def _gram(self, Y: Array) -> tuple[Array, Array]:
        G = observables.state_gram(self.lay.unpack(Y))
        return np.linalg.eigvalsh(G)[..., 0], np.maximum(1.0, np.abs(G).max(axis=(-2, -1)))

    def gram_event(self, y: Array, psd_tol: float) -> float:
        lam, scale = self._gram(y)
        return float(lam / scale + psd_tol)

    def min_gram_eigenvalue(self, Y: Array) -> Array:
        return self._gram(Y)[0]

    def check_records(self, Y: Array, psd_tol: float) -> tuple[int, float, float]:
        if not len(Y):
            return -1, math.nan, math.nan
        lam, scale = self._gram(Y)
        bad = np.flatnonzero((lam / scale < -psd_tol) | np.any(Y[:, self.lay.slices["D"]] <= 0,
                                                               axis=-1))
        i = int(bad[0]) if bad.size else len(Y)
        return (i if bad.size else -1, float(lam[i]) if bad.size else math.nan,
                float(lam[:i].min()) if i else math.nan)

    def integrate(self, y0: Array, t_eval: Array, t_max: float, method: str, rtol: float,
                  atol: float, psd_tol: float, runaway: float, max_steps: int) -> dict[str, Any]:
        d_slice = self.lay.slices["D"]

        def gram_event(t: float, y: Array) -> float:
            return self.gram_event(y, psd_tol) if np.all(np.isfinite(y)) else -1.0

        def d_event(t: float, y: Array) -> float:
            return float(y[d_slice].min())

        def runaway_event(t: float, y: Array) -> float:
            return runaway - float(np.abs(y).max()) if np.all(np.isfinite(y)) else -1.0

        for ev in (gram_event, d_event, runaway_event):
            ev.terminal = True  # type: ignore[attr-defined]
            ev.direction = -1  # type: ignore[attr-defined]
        with np.errstate(all="ignore"):
            sol = solve_ivp(self.rhs, (0.0, t_max), y0, method="LSODA", t_eval=t_eval,
                            rtol=rtol, atol=atol, jac=self.jacobian,
                            events=(gram_event, d_event, runaway_event))
        event, t_event = -1, math.nan
        if sol.status == 1:
            for e in (2, 0, 1):
                if len(sol.t_events[e]):
                    event, t_event = e, float(sol.t_events[e][0])
                    break
        Y = np.full((len(t_eval), self.size), np.nan)
        Y[:len(sol.t)] = sol.y.T
        first, lam_bad, lam_min = self.check_records(Y[:len(sol.t)], psd_tol)
        return {"status": int(sol.status), "event": event, "t_event": t_event,
                "n_recorded": len(sol.t), "nfev": int(sol.nfev), "njev": int(sol.njev),
                "nlu": 0, "nsteps": 0, "switches": 0, "message": str(sol.message), "y": Y,
                "first_bad": first, "lam_bad": lam_bad, "lam_min": lam_min}
