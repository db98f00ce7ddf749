"""Starting states of the order parameters: one home for every prescribed start.

Each function returns a dict of m, d, Q, E, R, D (shapes as in :func:`linvae.dataset.state_shapes`)
whose Gram matrix is positive semidefinite (docs/model.md#initial-states), so that it
is the state of some actual weights:

* :func:`random_init_state`: the N -> infinity limit of the default random start;
* :func:`overlap_state`: latent k aligned with factor k, O(1) overlaps;
* :func:`generic_state`: every latent overlaps every factor a little;
* :func:`entangled_state`: two latents mixing two factors by an angle;
* :func:`mixed_state`, :func:`random_physical_state` and :func:`learned_block`: starting
  guesses of the fixed-point search (:mod:`linvae.stability`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ._validate import check_real
from .params import Params, check_params

__all__ = [
    "entangled_state",
    "generic_state",
    "learned_block",
    "mixed_state",
    "overlap_state",
    "random_init_state",
    "random_physical_state",
]

Array = NDArray[np.float64]
State = dict[str, Array]


def random_init_state(p: Params) -> State:
    """Return the N -> infinity limit of the default random start (W, V i.i.d. N(0, 1), D = 1).

    m = d = 0, Q = E = I, R = 0, D = 1. Note that m = d = 0 is invariant under the ODE
    (docs/model.md#odes): started here, the ODE never learns the teacher, while SGD at
    finite N escapes after a time ~ log N. Start the ODE from a prescribed state with
    O(1) overlaps (:func:`overlap_state`) or from a simulation's measured t = 0 state.
    """
    M, Ms = check_params(p).M, p.M_star
    return {"m": np.zeros((M, Ms)), "d": np.zeros((M, Ms)), "Q": np.eye(M), "E": np.eye(M),
            "R": np.zeros((M, M)), "D": np.ones(M)}


def overlap_state(p: Params, overlap: float = 0.5) -> State:
    """Build a physical start with O(1) teacher overlaps: latent k aligned with factor k.

    Column k of W and of V is ``overlap * W*_k + sqrt(1 - overlap^2) * (own unit
    direction)`` for k < min(M, M*), unit norm otherwise, all other directions
    orthogonal. Hence m = d = overlap * I (rectangular), Q = E = I, R = overlap^2 on
    the first min(M, M*) diagonal entries, D = 1; the Gram matrix is PSD by construction.
    """
    c = check_real("overlap", overlap, ge=-1.0, le=1.0)
    M, Ms = check_params(p).M, p.M_star
    J = np.eye(M, Ms)
    return {"m": c * J, "d": c * J, "Q": np.eye(M), "E": np.eye(M),
            "R": c * c * (J @ J.T), "D": np.ones(M)}


def generic_state(p: Params, overlap: float = 0.01) -> State:
    """Build a physical start in which every latent overlaps every factor a little.

    m = d = overlap * A with ``A_ij = 2^-|i-j|`` (so no two latents are interchangeable),
    W = W* m^T + (own unit directions), V likewise with other own directions: Q = E =
    ``m m^T + diag(1 - |m_i|^2)``, R = m m^T, D = 1. Unlike :func:`overlap_state`,
    a superfluous latent starts with m != 0, as after a random start at finite N, so the
    slow mode in which it un-learns the factor is excited. For M = M* = 1 it equals
    overlap_state(p, overlap).
    """
    p = check_params(p)
    c = check_real("overlap", overlap, ge=-1.0, le=1.0)
    M, Ms = p.M, p.M_star
    i, j = np.indices((M, Ms))
    C = c * 2.0 ** -np.abs(i - j).astype(np.float64)
    norm2 = (C * C).sum(axis=1)
    if np.any(norm2 > 1.0):
        raise ValueError(f"overlap={c:g} is too large for M={M}, M_star={Ms}: a latent's "
                         f"squared overlaps sum to {norm2.max():.3g} > 1")
    G = C @ C.T
    return {"m": C, "d": C.copy(), "Q": G + np.diag(1.0 - norm2),
            "E": G + np.diag(1.0 - norm2), "R": G.copy(), "D": np.ones(M)}


def entangled_state(p: Params, overlap: float = 0.5, angle: float = 0.6) -> State:
    """Build a physical start in which latents 0 and 1 mix factors 0 and 1 by ``angle``.

    Avoid angle = pi/4 (mod pi/2): that start is invariant under a symmetry of the ODEs
    (swapping the two latents combined with a sign flip of one factor), which the ODE
    preserves, so m stays at score 1/2 forever (a saddle); SGD noise would break it.

    W and V columns are overlap * (rotated teacher) + sqrt(1 - overlap^2) * (own unit
    directions, distinct for W and V): m = d = overlap * O (O a rotation by ``angle`` in
    the first two factors), Q = E = I, R = overlap^2 O O^T = overlap^2 I on those
    latents. Needs M >= 2 and M* >= 2.
    """
    p = check_params(p)
    if min(p.M, p.M_star) < 2:
        raise ValueError(f"an entangled start needs M >= 2 and M_star >= 2, got "
                         f"M={p.M}, M_star={p.M_star}")
    c = check_real("overlap", overlap, ge=-1.0, le=1.0)
    angle = check_real("angle", angle)
    s = overlap_state(p, c)
    O = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    s["m"][:2, :2] = c * O
    s["d"][:2, :2] = c * O
    s["R"][:2, :2] = c * c * (O @ O.T)
    return s


def learned_block(p: Params, rho: float) -> tuple[float, ...]:
    """Small-tau, lam = 0 closed form of a latent learning a factor of strength ``rho``.

    With W and V parallel to the teacher: Q = rho + eta - beta, m = sqrt(Q),
    d = m / Pe, E = d^2, R = m d, D = beta / Pe (Pe = rho + eta); clipped to stay
    positive. Returns (m, d, Q, E, R, D); rho = 0 gives the noise-fitting latent.
    """
    beta = p.beta_inf
    pe = rho + p.eta
    q = max(pe - beta, 0.1 * pe)
    m = math.sqrt(q)
    d = m / pe
    D = beta / (beta + q) if beta > 0 else 0.1
    return m, d, q, d * d, m * d, D


def random_physical_state(p: Params, rng: np.random.Generator, scale: float = 1.0) -> State:
    """Draw a random physical state (random PSD Gram matrix with identity teacher block)."""
    M, Ms = p.M, p.M_star
    K = Ms + 2 * M
    A = rng.standard_normal((K, K + 2))
    G = A @ A.T / (K + 2)
    Li = np.linalg.inv(np.linalg.cholesky(G[:Ms, :Ms]))
    T = np.eye(K)
    T[:Ms, :Ms] = Li
    G = T @ G @ T.T
    G[Ms:, :] *= math.sqrt(scale)
    G[:, Ms:] *= math.sqrt(scale)
    a, b = Ms, Ms + M
    return {"m": G[a:b, :a].copy(), "d": G[b:, :a].copy(), "Q": G[a:b, a:b].copy(),
            "E": G[b:, b:].copy(), "R": G[a:b, b:].copy(), "D": rng.uniform(0.4, 1.2, M)}


def mixed_state(p: Params, overlap: float = 0.5) -> State:
    """Latents 0 and 1 mixing factors 0 and 1 at 45 degrees (entangled start)."""
    s = overlap_state(p, overlap)
    if min(p.M, p.M_star) >= 2:
        c = overlap / math.sqrt(2.0)
        s["m"][:2, :2] = s["d"][:2, :2] = np.array([[c, c], [c, -c]])
    return s
