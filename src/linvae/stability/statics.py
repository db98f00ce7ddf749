"""The minimum of the training loss on P = alpha N samples (docs/model.md#training-minimum).

At small tau, multi-epoch SGD on a finite dataset converges to a minimum of the training
loss. That minimum is built from the top eigenpairs of the samples' covariance S: each
latent sits on its own eigenvector, and one with eigenvalue l is alive iff
beta < l / (1 + lam) - lam / l. Everything here follows from a :class:`Spectrum`:

* :func:`spiked_spectrum`: the top eigenpairs as N -> infinity at fixed alpha (the spiked
  Marchenko-Pastur law), or of the population covariance (alpha = None);
* :func:`dataset_spectrum`: those of one realised training set, by a Lanczos iteration
  on its samples regenerated from their keys;
* :func:`training_minimum`: the order parameters, eps_g, and the training and population
  rate, distortion and loss at the minimum, from a spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from .._validate import check_int, check_real
from ..data import pca_overlap
from ..observables import eg, loss_terms, moments
from ..params import Params, check_params
from .search import _constant

if TYPE_CHECKING:
    from ..data import DataSpec

Array = NDArray[np.float64]

__all__ = ["Spectrum", "TrainingMinimum", "bulk_edge", "dataset_spectrum",
           "spiked_spectrum", "threshold_of", "training_minimum"]


def check_alpha(alpha: Any) -> float:
    """Return alpha = P / N as a float, or raise naming the rule (alpha > 0, finite)."""
    a = check_real("alpha", alpha, gt=0.0)
    if not math.isfinite(a):
        raise ValueError(f"alpha must be finite (omit it for the population), got {alpha!r}")
    return a


def bulk_edge(eta: float, alpha: float) -> float:
    """Return the top of the noise bulk of S as N -> infinity, eta (1 + alpha^(-1/2))^2."""
    return eta * (1.0 + 1.0 / math.sqrt(alpha)) ** 2


def spike(rho: float, eta: float, alpha: float) -> tuple[float, float]:
    """Return the top eigenvalue of S for a factor of strength rho, and its squared overlap.

    Above the BBP point alpha rho^2 > eta^2 the eigenvalue (rho + eta)(1 + eta/(alpha rho))
    leaves the bulk and its eigenvector keeps the squared overlap
    (1 - eta^2/(alpha rho^2)) / (1 + eta/(alpha rho)) with the factor (Baik, Ben Arous and
    Peche 2005; Paul 2007). Below, the factor's direction is lost in the bulk: the bulk
    edge, overlap 0.
    """
    c2 = float(pca_overlap(alpha, rho, eta))  # 0 at and below the BBP point
    if c2 <= 0.0:
        return bulk_edge(eta, alpha), 0.0
    return (rho + eta) * (1.0 + eta / (alpha * rho)), c2


def threshold_of(ell: float, lam: float) -> float:
    """Return the beta above which a latent on an eigenvalue ``ell`` of S collapses."""
    return ell / (1.0 + lam) - lam / ell


@dataclass(frozen=True)
class Spectrum:
    """The top eigenpairs of a data covariance, as the minimum sees them.

    Attributes
    ----------
    ell : ndarray, shape (k,)
        Eigenvalues, largest first.
    overlap : ndarray, shape (k, M*)
        Eigenvector j against the teacher: u_j . W*_f / sqrt(N) (a cosine when W* has
        norm sqrt(N)).
    source : str
        Where the spectrum comes from.
    """

    ell: Array
    overlap: Array
    source: str

    def __repr__(self) -> str:
        cos2 = np.round((self.overlap**2).sum(axis=1), 4).tolist()
        return (f"Spectrum({self.source}: ell={np.round(self.ell, 6).tolist()}, "
                f"squared overlaps with the teacher={cos2})")


def spiked_spectrum(p: Params, alpha: float | None = None) -> Spectrum:
    """Return the top M eigenpairs of S as N -> infinity at fixed alpha = P / N.

    Each factor above the BBP point gives an outlier on its own direction
    (:func:`spike`); the rest of the M eigenvalues sit at the bulk edge with no overlap.
    ``alpha=None`` gives the population covariance: rho_k + eta on factor k, then eta.
    """
    p = check_params(p)
    rows: list[tuple[float, int, float]] = []  # (eigenvalue, factor or -1, overlap)
    if alpha is None:
        rows = [(rho + p.eta, k, 1.0) for k, rho in enumerate(p.rho)]
        rest, source = p.eta, "population covariance"
    else:
        a = check_alpha(alpha)
        for k, rho in enumerate(p.rho):
            ell, c2 = spike(rho, p.eta, a)
            if c2 > 0.0:
                rows.append((ell, k, math.sqrt(c2)))
        rest, source = bulk_edge(p.eta, a), f"N -> infinity at alpha={a:g}"
    rows.sort(key=lambda r: -r[0])
    rows = (rows + [(rest, -1, 0.0)] * p.M)[:p.M]
    overlap = np.zeros((p.M, p.M_star))
    for j, (_, k, c) in enumerate(rows):
        if k >= 0:
            overlap[j, k] = c
    return Spectrum(np.array([r[0] for r in rows]), overlap, source)


def _latent(ell: float, beta: float, lam: float) -> tuple[float, float]:
    """(Q, kappa) of a latent on eigenvalue ell at the minimum, with V's column kappa W's.

    Minimising over V and D at fixed W gives kappa = l / (l (Q + beta) + lam) and
    D = beta / (beta + Q); stationarity in W is then
    f(Q) = l kappa (1 - kappa Q) - beta / (beta + Q) - lam = 0, and Q = 0 (collapsed) when
    f(0) <= 0. At lam = 0 the root is Q = l - beta.
    """
    if threshold_of(ell, lam) <= beta:
        return 0.0, ell / (ell * beta + lam) if ell * beta + lam > 0 else 0.0
    if lam == 0.0:
        return ell - beta, 1.0 / ell

    def f(Q: float) -> float:
        kappa = ell / (ell * (Q + beta) + lam)
        return ell * kappa * (1.0 - kappa * Q) - beta / (beta + Q) - lam

    hi = ell
    while f(hi) > 0.0:
        hi *= 2.0
    Q = float(brentq(f, 0.0, hi, xtol=1e-14, rtol=1e-13))
    return Q, ell / (ell * (Q + beta) + lam)


@dataclass(frozen=True)
class TrainingMinimum:
    """The minimum of the training loss, built from a :class:`Spectrum`.

    Attributes
    ----------
    params : Params
        The parameters (beta at its limit for a schedule).
    spectrum : Spectrum
        The eigenpairs it is built from; latent j sits on eigenvector j of the top M
        (any further ones are reported, not used).
    state : dict
        The order parameters m, d, Q, E, R, D.
    alive : ndarray of bool, shape (M,)
        Which latents have not collapsed.
    eg : float
        The generalisation error of the learned decoder.
    train, population : dict
        rate, distortion and loss on the training set and on the population.
    """

    params: Params
    spectrum: Spectrum
    state: dict[str, Array]
    alive: NDArray[np.bool_]
    eg: float
    train: dict[str, float]
    population: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain Python values (JSON-ready)."""
        attrs = {k: v.tolist() if isinstance(v, np.ndarray | np.generic) else v
                 for k, v in self.params.to_attrs().items()}
        return {"params": attrs, "source": self.spectrum.source,
                "ell": self.spectrum.ell.tolist(), "alive": self.alive.tolist(),
                "state": {k: v.tolist() for k, v in self.state.items()}, "eg": self.eg,
                "train": dict(self.train), "population": dict(self.population)}

    def __str__(self) -> str:
        """Render the minimum over a few lines, per latent and then the errors and losses."""
        lines = [(f"minimum of the training loss ({self.spectrum.source}; beta = "
                  f"{self.params.beta_inf:g}, lam = {self.params.lam:g}):")]
        for j, ell in enumerate(self.spectrum.ell[:self.params.M]):
            cos2 = float(np.sum(self.spectrum.overlap[j] ** 2))
            state = (f"Q = {self.state['Q'][j, j]:.6g}" if self.alive[j] else "collapsed")
            lines.append(f"  latent {j}: eigenvalue {ell:.6g} (squared overlap with the "
                         f"teacher {cos2:.4g}), collapses above beta = "
                         f"{threshold_of(float(ell), self.params.lam):.6g}; {state}")
        t, q = self.train, self.population
        lines += [f"  eps_g = {self.eg:.6g}",
                  (f"  training:   loss {t['loss']:.6g}, rate {t['rate']:.6g}, distortion "
                   f"{t['distortion']:.6g}"),
                  (f"  population: loss {q['loss']:.6g}, rate {q['rate']:.6g}, distortion "
                   f"{q['distortion']:.6g}")]
        return "\n".join(lines)

    def __repr__(self) -> str:
        Q = np.round(np.diagonal(self.state["Q"]), 6).tolist()
        t, q = self.train, self.population
        return (f"TrainingMinimum({self.spectrum.source}; alive={self.alive.tolist()}, "
                f"Q_kk={Q}, eps_g={self.eg:.6g}; training loss {t['loss']:.6g} "
                f"(rate {t['rate']:.6g}, distortion {t['distortion']:.6g}), population loss "
                f"{q['loss']:.6g} (rate {q['rate']:.6g}, distortion {q['distortion']:.6g}))")


def training_minimum(p: Params, alpha: float | None = None, *,
                     spectrum: Spectrum | None = None) -> TrainingMinimum:
    """Return the minimum of the training loss on P = alpha N samples.

    With ``alpha`` (and no ``spectrum``) the answer as N -> infinity at fixed alpha
    (:func:`spiked_spectrum`); with ``spectrum`` the minimum for that covariance, e.g. one
    dataset's own (:func:`dataset_spectrum`); with neither, the minimum of the population
    loss (the fixed point of the ODEs as tau -> 0). It does not depend on tau. Latent j
    sits on eigenvector j of the spectrum, W_j = sqrt(N Q_j) u_j and V_j = kappa_j W_j
    (docs/model.md#training-minimum).
    """
    p = _constant(check_params(p))
    if p.beta_inf <= 0.0:
        raise ValueError(f"beta must be > 0 for the minimum of the training loss (at beta = 0 "
                         f"the encoder variances go to 0), got {p.beta_inf:g}")
    if spectrum is not None and alpha is not None:
        raise TypeError("training_minimum takes alpha or spectrum, not both")
    spec = spectrum if spectrum is not None else spiked_spectrum(p, alpha)
    k = spec.ell.shape[0] if spec.ell.ndim == 1 else -1
    if k < p.M or spec.overlap.shape != (k, p.M_star):
        raise ValueError(f"spectrum must hold at least M={p.M} eigenpairs against "
                         f"M*={p.M_star} factors, got ell {spec.ell.shape} and overlap "
                         f"{spec.overlap.shape}")
    ell, overlap = spec.ell[:p.M], spec.overlap[:p.M]  # the latents take the top M
    beta, lam = float(p.beta_inf), float(p.lam)
    Qk, kap = np.zeros(p.M), np.zeros(p.M)
    for j, ell_j in enumerate(ell):
        Qk[j], kap[j] = _latent(float(ell_j), beta, lam)
    m = np.sqrt(Qk)[:, None] * overlap
    state = {"m": m, "d": kap[:, None] * m, "Q": np.diag(Qk), "E": np.diag(kap**2 * Qk),
             "R": np.diag(kap * Qk), "D": beta / (beta + Qk)}
    train_Bb = np.diag(kap**2 * ell * Qk)
    train_Cab = np.diag(kap * ell * Qk)
    pop = moments(state["m"], state["d"], state["Q"], state["E"], state["R"], p.rho, p.eta)

    def terms(Bb: Array, Cab: Array) -> dict[str, float]:
        rate, dist, loss = loss_terms(Bb, Cab, state["Q"], state["E"], state["D"], beta=beta,
                                      lam=lam)
        return {"rate": float(rate), "distortion": float(dist), "loss": float(loss)}

    return TrainingMinimum(p, spec, state, Qk > 0.0, float(eg(m, state["Q"], p.rho)),
                           terms(train_Bb, train_Cab), terms(pop.Bb, pop.Cab))


def dataset_spectrum(p: Params, N: int, dataset_size: int, *, seed: int = 0, replica: int = 0,
                     data: DataSpec | None = None,
                     dtype: Literal["float64", "float32"] = "float64", k: int | None = None,
                     threads: int | None = None, tol: float = 1e-10) -> Spectrum:
    """Return the top eigenpairs of one realised training set's covariance S.

    The dataset is the one that ``simulate(p, N, seed=seed, dataset_size=dataset_size,
    ...)`` trains replica ``replica`` on (``data`` gives its other options, and ``dtype``
    the precision its noise is drawn in). S v is computed by regenerating the P samples
    from their keys (``apply_covariance``), so no P x N array is stored, and the top
    ``k`` (default M) eigenpairs come from a Lanczos iteration (ARPACK). The overlaps
    are taken with the dataset's own teacher.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    from .. import _core
    from ..data import DataSpec
    from ..methods import Weights

    p = check_params(p)
    N = check_int("N", N, ge=2)
    P = check_int("dataset_size", dataset_size, ge=1)
    replica = check_int("replica", replica, ge=0)
    k = p.M if k is None else check_int("k", k, ge=1, le=N - 2)
    if k > N - 2:
        raise ValueError(f"N must be >= M + 2 = {k + 2} for a Lanczos iteration, got {N}")
    tol = check_real("tol", tol, gt=0.0)
    nt = (int(_core.build_info()["max_threads"]) if threads is None
          else check_int("threads", threads, ge=1))
    spec = DataSpec() if data is None else data
    if spec.dataset_size not in (None, P):
        raise ValueError(f"data.dataset_size={spec.dataset_size} differs from "
                         f"dataset_size={P}")
    from dataclasses import replace

    spec = replace(spec, dataset_size=P, training_loss=False)
    engine = Weights(dtype).engine(p, N, replicas=replica + 1, seed=seed, data=spec,
                                   blowup=1e8)
    engine.init_random(nt)
    Ws = np.asarray(engine.weights(replica)["W_star"])

    def matmat(Y: Array) -> Array:
        Y2 = np.ascontiguousarray(np.asarray(Y, dtype=np.float64).reshape(N, -1))
        return engine.apply_covariance(replica, Y2, nt)

    op = LinearOperator((N, N), matvec=matmat, matmat=matmat, dtype=np.float64)
    v0 = np.random.default_rng([seed, replica, 0x5EC7]).standard_normal(N)
    ell, U = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(ell)[::-1]
    ell, U = ell[order], U[:, order]
    overlap = U.T @ Ws / math.sqrt(N)
    return Spectrum(np.asarray(ell), np.asarray(overlap),
                    f"dataset of replica {replica} (seed {seed}, N={N}, P={P})")
