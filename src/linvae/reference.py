"""A careful NumPy implementation of one-pass SGD (docs/model.md#data to #order-parameters).

This is the yardstick for the C++ engine: the tests check the engine's step against
it to rounding, and the benchmarks report the engine's speed as a ratio to it. It is
written the way a competent NumPy user would write it (preallocated buffers, BLAS
matrix-vector products, no Python loop over N), so the ratio is honest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .dataset import parse_state
from .observables import gram_sqrt, state_gram
from .params import Params

__all__ = ["ReferenceSGD", "orthonormal_teacher"]

Array = NDArray[np.float64]


def orthonormal_teacher(rng: np.random.Generator, N: int, M_star: int) -> Array:
    """W* with W*^T W* / N = I: an orthonormal frame (QR of a Gaussian matrix) times sqrt(N)."""
    q, r = np.linalg.qr(rng.standard_normal((N, M_star)))
    return np.asarray(q * np.sign(np.diag(r)) * np.sqrt(N))


class ReferenceSGD:
    """One replica of one-pass SGD with weights W, V (N x M), D (M) and teacher W* (N x M*)."""

    def __init__(self, params: Params, N: int, *, W: Array, V: Array, D: Array,
                 W_star: Array, rng: np.random.Generator | None = None) -> None:
        self.p = params
        self.N = N
        self.W = np.array(W, dtype=np.float64)
        self.V = np.array(V, dtype=np.float64)
        self.D = np.array(D, dtype=np.float64)
        self.W_star = np.array(W_star, dtype=np.float64)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        # the teacher enters x only through W* diag(sqrt(rho)) / sqrt(N): fold it once
        self._signal = self.W_star * (np.sqrt(params.rho_vec) / np.sqrt(N))
        self._x = np.empty(N)
        self.steps = 0

    @classmethod
    def random(cls, params: Params, N: int, seed: int = 0) -> ReferenceSGD:
        """Build the authors' default start: W, V i.i.d. N(0, 1), D = 1, random orthonormal W*."""
        rng = np.random.default_rng(seed)
        return cls(params, N, W=rng.standard_normal((N, params.M)),
                   V=rng.standard_normal((N, params.M)), D=np.ones(params.M),
                   W_star=orthonormal_teacher(rng, N, params.M_star), rng=rng)

    @classmethod
    def prescribed(cls, params: Params, N: int, state: Mapping[str, Any],
                   seed: int = 0) -> ReferenceSGD:
        """Realise a prescribed state exactly: [W*, W, V] = sqrt(N) F S.

        See docs/model.md#initial-states.
        """
        st = parse_state(state, params)
        rng = np.random.default_rng(seed)
        Ms, M = params.M_star, params.M
        frame, _ = np.linalg.qr(rng.standard_normal((N, Ms + 2 * M)))
        cols = np.sqrt(N) * frame @ gram_sqrt(state_gram(st))
        return cls(params, N, W=cols[:, Ms:Ms + M], V=cols[:, Ms + M:], D=st["D"],
                   W_star=cols[:, :Ms], rng=rng)

    @property
    def t(self) -> float:
        """The time t = steps / N."""
        return self.steps / self.N

    def sample_x(self) -> Array:
        """Draw a sample x = W* diag(sqrt(rho)) c / sqrt(N) + sqrt(eta) n, into a reused buffer."""
        c = self.rng.standard_normal(self.p.M_star)
        x = self._x
        self.rng.standard_normal(out=x)
        x *= np.sqrt(self.p.eta)
        x += self._signal @ c
        return x

    def step(self, x: Array | None = None, beta: float | None = None) -> None:
        """One SGD step of docs/model.md#sgd on ``x`` (a fresh sample if None)."""
        if x is None:
            x = self.sample_x()
        if beta is None:
            beta = float(self.p.beta_at(self.t))
        N, lam = self.N, self.p.lam
        tau, tau_V, tau_D = self.p.rates
        sqN = np.sqrt(N)
        W, V, D = self.W, self.V, self.D
        a = W.T @ x / sqN
        b = V.T @ x / sqN
        Q = W.T @ W / N                      # the value before the step
        g = -a + (Q + beta * np.eye(self.p.M)) @ b
        B = np.outer(b, b) + np.diag(D) + lam * np.eye(self.p.M)
        W_new = W + tau * (np.outer(x, b) / sqN - W @ B / N)
        V -= tau_V * (np.outer(x, g) / sqN + lam * V / N)
        W[...] = W_new
        D -= (tau_D / N) * (0.5 * np.diag(Q) + 0.5 * beta * (1.0 - 1.0 / D))
        self.steps += 1

    def order_parameters(self) -> dict[str, Any]:
        """Return the order parameters m, d, Q, E, R and D of the current weights."""
        N = self.N
        W, V, Ws = self.W, self.V, self.W_star
        return {"m": W.T @ Ws / N, "d": V.T @ Ws / N, "Q": W.T @ W / N, "E": V.T @ V / N,
                "R": W.T @ V / N, "D": self.D.copy()}
