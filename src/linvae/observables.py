"""Closed forms in the order parameters (docs/model.md#order-parameters).

Everything here is vectorised over any leading axes (replica, t, ...): the order
parameters carry their matrix axes last, m and d as (..., M, M*), Q, E, R as (..., M, M)
and D as (..., M). Simulation and ODE results both go through these functions, so the
two can only differ by their order parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core

__all__ = [
    "DIMS",
    "KIND_TOL",
    "ORDER_PARAMETERS",
    "SYMMETRIC",
    "Derived",
    "Moments",
    "derived",
    "eg",
    "eg_authors",
    "gram_matrix",
    "gram_sqrt",
    "moments",
    "shapes_of",
    "state_gram",
]

#: Names of the order parameters, in the order used throughout the package, which is the
#: compiled code's declaration (cpp/linvae/model.hpp), from which everything else follows.
ORDER_PARAMETERS: tuple[str, ...] = tuple(name for name, _, _ in _core.ORDER_PARAMETERS)
#: The dims of each order parameter's matrix axes (latent and latent2 of size M, factor of size M*).
DIMS: dict[str, tuple[str, ...]] = {name: tuple(dims) for name, dims, _ in
                                    _core.ORDER_PARAMETERS}
#: The symmetric ones (M x M), which the flat ODE state keeps as an upper triangle.
SYMMETRIC: frozenset[str] = frozenset(name for name, _, sym in _core.ORDER_PARAMETERS if sym)


def shapes_of(M: int, M_star: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the order parameters for M latents and M* factors."""
    size = {"latent": M, "latent2": M, "factor": M_star}
    return {k: tuple(size[d] for d in DIMS[k]) for k in ORDER_PARAMETERS}

#: A latent is "learned" if some |m_ij| exceeds this, "noise" if not but Q_ii, E_ii or
#: R_ii does, else "collapsed".
KIND_TOL = 1e-6

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
    """Observables of docs/model.md#order-parameters.

    Generalisation error, rate, distortion, loss, and the authors' form of the
    generalisation error (for comparison only).
    """

    eg: Array
    rate: Array
    distortion: Array
    loss: Array
    eg_authors: Array


#: Up to this many matchings of latents to factors, eps_g enumerates them all at once
#: (vectorised over the leading axes); beyond, it solves an assignment problem per state.
_ENUMERATE_MATCHINGS = 720


def _matchings(M: int, M_star: int) -> Array:
    """Return every injective pairing of min(M, M*) factors with distinct latents.

    The result is an integer array (n_matchings, M*) of the latent paired with each
    factor (-1: none).
    """
    import itertools

    rows: list[Sequence[int]]
    if M >= M_star:
        rows = list(itertools.permutations(range(M), M_star))
    else:
        rows = []
        for factors in itertools.combinations(range(M_star), M):
            for latents in itertools.permutations(range(M)):
                row = [-1] * M_star
                for k, latent in zip(factors, latents, strict=True):
                    row[k] = latent
                rows.append(row)
    return np.asarray(rows, dtype=np.intp)


def _n_matchings(M: int, M_star: int) -> int:
    big, small = max(M, M_star), min(M, M_star)
    return math.perm(big, small)


def eg(m: Array, Q: Array, rho: ArrayLike) -> Array:
    """Return the generalisation error ``||W* P^(1/2) - W||_F^2 / N``.

    The norm is minimised over sign flips and matchings of latents to factors, the
    symmetries the loss cannot see.

    ``eps_g = sum_k rho_k + tr Q - 2 max_pi sum_{k matched} sqrt(rho_k) |m_{pi(k) k}|``:
    an unmatched factor counts rho_k in full, an unmatched latent its Q_kk. For
    M = M* = 1 this is ``rho - 2 sqrt(rho) |m| + Q``. Non-finite states give NaN.
    """
    m = np.asarray(m, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    rho_v = np.broadcast_to(np.asarray(rho, dtype=np.float64), m.shape[-1:])
    M, M_star = m.shape[-2:]
    # overlap of latent l with factor k, weighted by the factor's amplitude
    S = np.abs(m) * np.sqrt(rho_v)
    lead = S.shape[:-2]
    if M_star == 1:
        best = S[..., :, 0].max(axis=-1)
    elif M == 1:
        best = S[..., 0, :].max(axis=-1)
    elif _n_matchings(M, M_star) <= _ENUMERATE_MATCHINGS:
        pick = _matchings(M, M_star)                       # (n, M*)
        gathered = S[..., np.maximum(pick, 0), np.arange(M_star)]   # (..., n, M*)
        best = np.where(pick >= 0, gathered, 0.0).sum(axis=-1).max(axis=-1)
    else:
        from scipy.optimize import linear_sum_assignment

        flat = S.reshape(-1, M, M_star)
        best = np.full(flat.shape[0], np.nan)
        for i, s in enumerate(flat):
            if np.all(np.isfinite(s)):
                r, c = linear_sum_assignment(s, maximize=True)
                best[i] = s[r, c].sum()
        best = best.reshape(lead)
    return np.asarray(rho_v.sum() + np.trace(Q, axis1=-2, axis2=-1) - 2.0 * best)


def eg_authors(m: Array, Q: Array) -> Array:
    """Return the authors' code's form of eps_g, ``M* - 2 |1^T m 1| + 1^T Q 1``.

    That form assumes rho = 1 and sums m over all entries; it equals eps_g only for
    rho = 1 and M = M* = 1, and changes when a latent flips sign. Kept only to compare
    with that code.
    """
    M_star = np.shape(m)[-1]
    return np.asarray(M_star - 2.0 * np.abs(np.sum(m, axis=(-2, -1)))
                      + np.sum(Q, axis=(-2, -1)))


def _latent_rates(Bb: Array, D: Array) -> Array:
    Bdiag = np.diagonal(Bb, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):  # D <= 0 only on diverged replicas
        return np.asarray(0.5 * (Bdiag + D - np.log(D) - 1.0))


def latent_rates(m: Array, d: Array, Q: Array, E: Array, R: Array, D: Array, *,
                 rho: ArrayLike, eta: float) -> Array:
    """Return the rate of each latent k, 1/2 (Bb_kk + D_k - log D_k - 1), over the last axis.

    The rate of :func:`derived` is their sum.
    """
    return _latent_rates(moments(m, d, Q, E, R, rho, eta).Bb, D)


def derived(m: Array, d: Array, Q: Array, E: Array, R: Array, D: Array, *, rho: ArrayLike,
            eta: float, beta: ArrayLike, lam: float) -> Derived:
    """eps_g, rate, distortion and loss from the order parameters.

    ``beta`` broadcasts against the leading axes (a scalar, or beta(t) along the t axis).
    eps_g is :func:`eg`; ``eg_authors`` is :func:`eg_authors`.
    """
    Bb, Cab, _ = moments(m, d, Q, E, R, rho, eta)
    rate, distortion, loss = loss_terms(Bb, Cab, Q, E, D, beta=beta, lam=lam)
    return Derived(eg=eg(m, Q, rho), rate=rate, distortion=distortion, loss=loss,
                   eg_authors=eg_authors(m, Q))


def loss_terms(Bb: Array, Cab: Array, Q: Array, E: Array, D: Array, *, beta: ArrayLike,
               lam: float) -> tuple[Array, Array, Array]:
    """Rate, distortion and loss, averaged over a data distribution given by its moments.

    With the population's moments (:func:`moments`) this is the population loss; with
    a finite dataset's (Bb and Cab averaged over its samples) the training loss.
    """
    Qdiag = np.diagonal(Q, axis1=-2, axis2=-1)
    rate = np.sum(_latent_rates(Bb, D), axis=-1)
    distortion = (-np.trace(Cab, axis1=-2, axis2=-1)
                  + 0.5 * np.einsum("...ij,...ji->...", Q, Bb)
                  + 0.5 * np.sum(Qdiag * D, axis=-1))
    reg = 0.5 * lam * (np.trace(Q, axis1=-2, axis2=-1) + np.trace(E, axis1=-2, axis2=-1))
    loss = distortion + np.asarray(beta, dtype=np.float64) * rate + reg
    return rate, distortion, loss


def gram_matrix(m: Array, d: Array, Q: Array, E: Array, R: Array) -> Array:
    """G = [[I, m^T, d^T], [m, Q, R], [d, R^T, E]], the Gram matrix of [W*, W, V] / N.

    A state is physical only if G is positive semidefinite (docs/model.md#initial-states).
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
    """Return the Gram matrix of a state given as a mapping with m, d, Q, E, R.

    Any extra keys, such as D, are ignored; leading axes are kept.
    """
    return gram_matrix(*(np.asarray(state[k], dtype=np.float64) for k in ORDER_PARAMETERS[:5]))


def gram_sqrt(G: Array) -> Array:
    """Return the symmetric square root S of a PSD Gram matrix (S^T S = G).

    Tiny negative eigenvalues from rounding are set to zero. [W*, W, V] = sqrt(N) F S
    realises G (docs/model.md#initial-states).
    """
    lam, U = np.linalg.eigh(G)
    return np.asarray((U * np.sqrt(np.clip(lam, 0.0, None))) @ np.swapaxes(U, -1, -2))
