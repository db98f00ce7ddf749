"""Closed forms in the order parameters (MODEL.md section 4).

Everything here is vectorised over any leading axes (replica, t, ...): the order
parameters carry their matrix axes last, m and d as (..., M, M*), Q, E, R as (..., M, M)
and D as (..., M). Simulation and ODE results both go through these functions, so the
two can only differ by their order parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ORDER_PARAMETERS",
    "Derived",
    "Moments",
    "derived",
    "gram_matrix",
    "gram_sqrt",
    "moments",
    "state_gram",
]

#: Names of the order parameters, in the order used throughout the package.
ORDER_PARAMETERS = ("m", "d", "Q", "E", "R", "D")

Array = NDArray[np.float64]


def _T(a: Array) -> Array:
    return np.swapaxes(a, -1, -2)


class Moments(NamedTuple):
    """Second moments of the codes over the data distribution, at fixed weights.

    ``Bb = E[b b^T]``, ``Cab = E[a b^T]`` and ``Aaa = E[a a^T]``.
    """

    Bb: Array
    Cab: Array
    Aaa: Array


def moments(m: Array, d: Array, Q: Array, E: Array, R: Array, rho: ArrayLike,
            eta: float) -> Moments:
    """Bb = d P d^T + eta E, Cab = m P d^T + eta R, Aaa = m P m^T + eta Q."""
    rho = np.asarray(rho, dtype=np.float64)
    dP = d * rho
    mP = m * rho
    return Moments(Bb=dP @ _T(d) + eta * E, Cab=mP @ _T(d) + eta * R, Aaa=mP @ _T(m) + eta * Q)


class Derived(NamedTuple):
    """Observables of MODEL.md section 4: generalisation error, rate, distortion, loss."""

    eg: Array
    rate: Array
    distortion: Array
    loss: Array


def derived(m: Array, d: Array, Q: Array, E: Array, R: Array, D: Array, *, rho: ArrayLike,
            eta: float, beta: ArrayLike, lam: float) -> Derived:
    """eps_g, rate, distortion and loss from the order parameters.

    ``beta`` broadcasts against the leading axes (a scalar, or beta(t) along the t axis).
    eps_g follows the authors' convention 1^T T 1 - 2 |1^T m 1| + 1^T Q 1 with T = I.
    """
    Bb, Cab, _ = moments(m, d, Q, E, R, rho, eta)
    M_star = m.shape[-1]
    Qdiag = np.diagonal(Q, axis1=-2, axis2=-1)
    Bdiag = np.diagonal(Bb, axis1=-2, axis2=-1)
    eg = M_star - 2.0 * np.abs(m.sum(axis=(-2, -1))) + Q.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):  # D <= 0 only on diverged replicas
        rate = 0.5 * np.sum(Bdiag + D - np.log(D) - 1.0, axis=-1)
    distortion = (-np.trace(Cab, axis1=-2, axis2=-1)
                  + 0.5 * np.einsum("...ij,...ji->...", Q, Bb)
                  + 0.5 * np.sum(Qdiag * D, axis=-1))
    reg = 0.5 * lam * (np.trace(Q, axis1=-2, axis2=-1) + np.trace(E, axis1=-2, axis2=-1))
    loss = distortion + np.asarray(beta, dtype=np.float64) * rate + reg
    return Derived(eg=eg, rate=rate, distortion=distortion, loss=loss)


def gram_matrix(m: Array, d: Array, Q: Array, E: Array, R: Array) -> Array:
    """G = [[I, m^T, d^T], [m, Q, R], [d, R^T, E]], the Gram matrix of [W*, W, V] / N.

    A state is physical only if G is positive semidefinite (MODEL.md section 7).
    """
    M, M_star = m.shape[-2:]
    lead = m.shape[:-2]
    K = M_star + 2 * M
    G = np.empty((*lead, K, K))
    a, b = M_star, M_star + M
    G[..., :a, :a] = np.eye(M_star)
    G[..., :a, a:b] = _T(m)
    G[..., :a, b:] = _T(d)
    G[..., a:b, :a] = m
    G[..., a:b, a:b] = Q
    G[..., a:b, b:] = R
    G[..., b:, :a] = d
    G[..., b:, a:b] = _T(R)
    G[..., b:, b:] = E
    return G


def state_gram(state: Mapping[str, ArrayLike]) -> Array:
    """The Gram matrix of a state given as a mapping with m, d, Q, E, R (any extra keys,
    such as D, are ignored), over leading axes."""
    return gram_matrix(*(np.asarray(state[k], dtype=np.float64) for k in ORDER_PARAMETERS[:5]))


def gram_sqrt(G: Array) -> Array:
    """Symmetric square root S of a PSD Gram matrix (S^T S = G; tiny negative eigenvalues
    from rounding are set to zero). [W*, W, V] = sqrt(N) F S realises G (MODEL.md s. 7)."""
    lam, U = np.linalg.eigh(G)
    return np.asarray((U * np.sqrt(np.clip(lam, 0.0, None))) @ np.swapaxes(U, -1, -2))
