"""Fixed points of the limiting ODEs, their linear stability, and thresholds derived from it.

Everything here works on the ODEs of docs/model.md#odes (:mod:`linvae.ode`), in the
flat layout of :class:`linvae.ode.StateLayout` (Q and E stored as upper triangles, so
the Jacobian has no spurious antisymmetric modes). Fixed points are found by root
finding with the analytic Jacobian from many starts, as docs/model.md#pitfalls advises,
not by long integration; the integrator only supplies extra starting guesses.

Symmetries of the ODEs, used to deduplicate fixed points:

* latent sign flips: latent i's rows of m and d, and row and column i of Q, E and R
  change sign (the diagonal entries do not), D is unchanged;
* latent permutations: rows of m, d and D, rows and columns of Q, E and R;
* orthogonal transformations of the factors within a group of equal rho_k (sign flips of
  single factors included): m -> m O, d -> d O. For a group of g >= 2 equal rho_k these
  form a continuous family, so a fixed point comes with up to g(g-1)/2 zero eigenvalues
  that are symmetry directions, not instabilities; they are counted in
  :attr:`FixedPoint.n_symmetry` and left out of the stability verdict.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq, root

from . import observables
from ._validate import check_array, check_int, check_real
from .dataset import DIMS, parse_state, state_shapes
from .errors import TooLargeError
from .observables import ORDER_PARAMETERS
from .ode import (
    UnphysicalStateError,
    final_state,
    integrate,
    jacobian,
    layout,
    min_gram_eigenvalue,
    overlap_state,
    rhs,
)
from .params import Params

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "MAX_ROLE_STARTS",
    "MAX_STATE_SIZE",
    "FixedPoint",
    "Threshold",
    "annealing_threshold",
    "check_size",
    "collapse_growth_rate",
    "collapse_threshold",
    "collapse_thresholds",
    "collapsed_state",
    "convergence_time",
    "fixed_points",
    "jacobian",
    "latent_sector",
    "noise_threshold",
    "role_state",
    "stable_fixed_point",
    "step_size_limit",
]

Array = NDArray[np.float64]
State = dict[str, Array]

log = logging.getLogger("linvae.stability")

#: A latent is "learned" if some |m_ij| exceeds this, "noise" if not but Q_ii, E_ii or
#: R_ii does, else "collapsed".
KIND_TOL = 1e-6
#: Largest residual max|rhs| of a reported fixed point.
RESIDUAL_TOL = 1e-10


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _check_params(p: Any, name: str = "p") -> Params:
    if not isinstance(p, Params):
        raise TypeError(f"{name} must be a linvae.Params, got {type(p).__name__}")
    return p


#: Largest flat state (:class:`linvae.ode.StateLayout` size) and number of role starts
#: of a fixed-point analysis; see :func:`check_size`.
MAX_STATE_SIZE = 256
MAX_ROLE_STARTS = 600


def _n_role_starts(M: int, Ms: int) -> int:
    """len(_role_starts(p)), counted without building them."""
    return sum(math.comb(Ms, k) * (M - k + 1) for k in range(min(M, Ms) + 1)) + 1


def check_size(p: Params, what: str = "the fixed-point analysis") -> None:
    """Refuse (TooLargeError) an (M, M*) whose analysis would run for hours, up front.

    Every fixed point needs the eigenvalues of a dense n x n Jacobian, n the flat state
    size (about 2 M^2 + 2 M M*), so its cost grows like n^3 ~ M^6; the role starts, one
    root finding each, grow like 2^min(M, M*). Near the limits, n = 240 ((M, M*) =
    (10, 1)) or about 580 starts ((7, 7)), one search takes half a minute to a minute
    on one core.
    """
    n = layout(p).size
    starts = _n_role_starts(p.M, p.M_star)
    if n > MAX_STATE_SIZE or starts > MAX_ROLE_STARTS:
        raise TooLargeError(
            f"{what} is limited to states of at most {MAX_STATE_SIZE} entries and "
            f"{MAX_ROLE_STARTS} starting roles, and (M, M_star) = ({p.M}, {p.M_star}) has "
            f"{n} and {starts}: each fixed point needs the eigenvalues of a dense {n} x {n} "
            f"Jacobian (cost ~ n^3 ~ M^6) and the starts grow like 2^min(M, M*), so it "
            f"would run for hours (at (10, 1), n = 240, one search takes about half a "
            f"minute)")


def _constant(p: Params) -> Params:
    """The same parameters with beta fixed at its limit (fixed points refer to it)."""
    return p if p.beta.is_constant else p.replace(beta=p.beta_inf)


def _rhs_flat(p: Params) -> Callable[[Array], Array]:
    p = _constant(p)

    def f(y: Array) -> Array:
        return np.asarray(rhs(0.0, y, p))

    return f


def _gram_ok(state: Mapping[str, Array], tol: float = 1e-9) -> bool:
    G = observables.state_gram(state)
    scale = max(1.0, float(np.abs(G).max()))
    return bool(np.all(np.isfinite(G)) and np.linalg.eigvalsh(G)[0] >= -tol * scale
                and np.all(state["D"] > 0))


def _rho_groups(p: Params) -> list[list[int]]:
    """Indices of factors with equal rho_k (to rounding)."""
    groups: list[list[int]] = []
    for j, r in enumerate(p.rho):
        for g in groups:
            if math.isclose(p.rho[g[0]], r, rel_tol=1e-12, abs_tol=1e-14):
                g.append(j)
                break
        else:
            groups.append([j])
    return groups


def _symmetry_rank(p: Params, state: Mapping[str, Array]) -> int:
    """Dimension of the orbit of ``state`` under rotations of equal-rho factors."""
    lay = layout(p)
    tangents = []
    for g in _rho_groups(p):
        for a, b in itertools.combinations(g, 2):
            A = np.zeros((p.M_star, p.M_star))
            A[a, b], A[b, a] = 1.0, -1.0
            t = {k: np.zeros_like(np.asarray(state[k])) for k in ORDER_PARAMETERS}
            t["m"] = state["m"] @ A
            t["d"] = state["d"] @ A
            tangents.append(lay.pack(t))
    if not tangents:
        return 0
    T = np.array(tangents)
    s = np.linalg.svd(T, compute_uv=False)
    return int(np.sum(s > 1e-7 * max(1.0, float(s.max()))))


# ---------------------------------------------------------------------------------------
# starting states
# ---------------------------------------------------------------------------------------
def _learned_block(p: Params, rho: float) -> tuple[float, ...]:
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


@functools.lru_cache(maxsize=4096)
def _block(eta: float, beta: float, lam: float, tau: float, rho: float,
           noise: bool) -> tuple[float, ...]:
    """The fixed point of one latent alone: learning a factor of strength ``rho``, or
    (``noise``) fitting the background noise with m = d = 0. (m, d, Q, E, R, D).

    A latent whose cross overlaps with the others vanish evolves on its own (the
    invariant subspace of the sign flips among the model's symmetries), so these blocks are
    exact fixed points of the full ODEs when put on the diagonal. Found by continuation
    in tau from the small-tau closed form; falls back to that form if it fails.
    """
    p1 = Params(M=1, M_star=1, rho=0.0 if noise else rho, eta=eta, beta=beta, lam=lam,
                tau=tau)
    m, d, q, e, r, D = _learned_block(p1, 0.0 if noise else rho)
    if noise:
        m = d = 0.0
    y0 = layout(p1).pack({"m": [[m]], "d": [[d]], "Q": [[q]], "E": [[e]], "R": [[r]],
                          "D": [D]})
    out = _refine_continued(p1, y0, force=True)
    if out is None:
        return m, d, q, e, r, D
    s = layout(p1).unpack(out[0])
    blk = tuple(float(np.ravel(s[k])[0]) for k in ORDER_PARAMETERS)
    if not _gram_ok(s) or (not noise and abs(blk[0]) < KIND_TOL) or \
            max(blk[2], blk[3], abs(blk[4])) < KIND_TOL:
        return m, d, q, e, r, D  # converged to a collapsed or unphysical state
    return blk


def role_state(p: Params, roles: Sequence[int | str], *, exact: bool = True) -> State:
    """A state in which latent i plays ``roles[i]``, with no cross overlaps.

    A role is a factor index j (latent i learns factor j), ``"noise"`` (m = d = 0, fits
    the background noise) or ``"collapsed"`` (m = d = 0, Q = E = R = 0, D = 1). With
    ``exact`` each latent's block is its own one-latent fixed point at p's tau (found by
    continuation), so that for distinct learned factors the state is a fixed point of
    the full ODEs (if that block exists); otherwise the small-tau closed form
    Q = rho_j + eta - beta. The state is physical when no two latents learn the same
    factor.
    """
    p = _constant(_check_params(p))
    if len(roles) != p.M:
        raise ValueError(f"roles must have one entry per latent (M={p.M}), got {len(roles)}")
    M, Ms = p.M, p.M_star
    s = {"m": np.zeros((M, Ms)), "d": np.zeros((M, Ms)), "Q": np.zeros((M, M)),
         "E": np.zeros((M, M)), "R": np.zeros((M, M)), "D": np.ones(M)}
    for i, role in enumerate(roles):
        if isinstance(role, str):
            if role == "collapsed":
                continue
            if role != "noise":
                raise ValueError(f"roles[{i}] must be a factor index, 'noise' or "
                                 f"'collapsed', got {role!r}")
            j, rho = 0, 0.0
        else:
            j = check_int(f"roles[{i}]", role, ge=0, le=Ms - 1)
            rho = p.rho[j]
        noise = role == "noise"
        blk = (_block(p.eta, p.beta_inf, p.lam, p.tau, rho, noise) if exact
               else _learned_block(p, rho))
        m, d, q, e, r, D = blk
        if not noise:
            s["m"][i, j], s["d"][i, j] = m, d
        s["Q"][i, i], s["E"][i, i], s["R"][i, i], s["D"][i] = q, e, r, D
    return s


def _role_starts(p: Params) -> list[State]:
    """One start per assignment of roles up to latent permutation."""
    M, Ms = p.M, p.M_star
    starts = []
    for n_learn in range(min(M, Ms) + 1):
        for F in itertools.combinations(range(Ms), n_learn):
            rest = M - n_learn
            for n_noise in range(rest + 1):
                roles: list[int | str] = [*F, *(["noise"] * n_noise),
                                          *(["collapsed"] * (rest - n_noise))]
                starts.append(role_state(p, roles))
    # a permuted, sign-flipped copy of the "everything learned" start
    full = list(range(min(M, Ms)))[::-1] + ["collapsed"] * (M - min(M, Ms))
    s = role_state(p, full)
    s["m"][0] *= -1.0
    s["d"][0] *= -1.0
    starts.append(s)
    return starts


def _random_state(p: Params, rng: np.random.Generator, scale: float = 1.0) -> State:
    """A random physical state (random PSD Gram matrix with identity teacher block)."""
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


def _mixed_start(p: Params, overlap: float = 0.5) -> State:
    """Latents 0 and 1 mixing factors 0 and 1 at 45 degrees (entangled start)."""
    s = overlap_state(p, overlap)
    if min(p.M, p.M_star) >= 2:
        c = overlap / math.sqrt(2.0)
        s["m"][:2, :2] = s["d"][:2, :2] = np.array([[c, c], [c, -c]])
    return s


def _integration_starts(p: Params, starts: Iterable[State], t_max: float) -> list[State]:
    out = []
    for s in starts:
        try:  # only the end state is needed: no dataset of the run
            out.append(final_state(p, t_max, init=s, rtol=1e-8, atol=1e-10))
        except (UnphysicalStateError, RuntimeError, ValueError):
            continue
    return out


# ---------------------------------------------------------------------------------------
# root finding, classification, deduplication
# ---------------------------------------------------------------------------------------
def _refine(p: Params, y0: Array) -> tuple[Array, float] | None:
    """Root of the flat rhs near ``y0`` (hybr with the analytic Jacobian, Newton polish)."""
    f = _rhs_flat(p)
    inv_tau = 1.0 / p.tau  # the rhs is O(tau): solve the rescaled system

    def fun(y: Array) -> Array:
        return f(y) * inv_tau

    def jac(y: Array) -> Array:
        return jacobian(p, y) * inv_tau

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = root(fun, y0, jac=jac, method="hybr", options={"xtol": 1e-14, "maxfev": 2000})
        y = sol.x
        if not np.all(np.isfinite(y)):
            return None
        for _ in range(4):  # Newton polish to rounding level
            r = fun(y)
            if not np.all(np.isfinite(r)):
                return None
            if np.abs(r).max() < 1e-15:
                break
            try:
                step = np.linalg.lstsq(jac(y), -r, rcond=None)[0]
            except np.linalg.LinAlgError:
                break
            y_new = y + step
            if not np.all(np.isfinite(y_new)) or np.abs(fun(y_new)).max() >= np.abs(r).max():
                break
            y = y_new
        res = float(np.abs(f(y)).max())
    if not np.isfinite(res) or res > RESIDUAL_TOL:
        return None
    return y, res


def _refine_continued(p: Params, y0: Array, n_steps: int = 6,
                      force: bool = False) -> tuple[Array, float] | None:
    """:func:`_refine`, and if that fails, continuation in tau from a small step size.

    The starting guesses are small-tau closed forms; at larger tau the fixed points move
    (the tau^2 terms of docs/model.md#odes), so the guess is refined at tau / 2^n_steps
    first and followed up to tau in factors of 2. With ``force`` the continuation is
    used even when the direct refinement converges (it may converge to another root).
    """
    if not force:
        out = _refine(p, y0)
        if out is not None or n_steps == 0:
            return out
    taus = p.tau * 2.0 ** -np.arange(n_steps, -1, -1, dtype=np.float64)
    y = y0
    for tau in taus:
        out = _refine(p.replace(tau=float(tau)), y)
        if out is None:
            return None
        y = out[0]
    return out


def _classify(state: Mapping[str, Array]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    kinds, factors = [], []
    for i in range(state["D"].shape[0]):
        mrow = np.abs(state["m"][i])
        if mrow.max(initial=0.0) > KIND_TOL:
            kinds.append("learned")
            factors.append(int(np.argmax(mrow)))
        elif max(state["Q"][i, i], state["E"][i, i], abs(state["R"][i, i])) > KIND_TOL:
            kinds.append("noise")
            factors.append(-1)
        else:
            kinds.append("collapsed")
            factors.append(-1)
    return tuple(kinds), tuple(factors)


def _transform(state: Mapping[str, Array], perm: Sequence[int], signs: Array) -> State:
    """Latent i of the result is latent perm[i] of ``state`` times signs[i]."""
    P = np.asarray(perm)
    S = np.asarray(signs, dtype=np.float64)
    out = {"m": S[:, None] * state["m"][P], "d": S[:, None] * state["d"][P],
           "D": state["D"][P].copy()}
    for k in ("Q", "E", "R"):
        out[k] = S[:, None] * state[k][np.ix_(P, P)] * S[None, :]
    return out


def _canonical(state: Mapping[str, Array]) -> State:
    """Representative: learned latents first (by factor), then noise, then collapsed;
    each learned latent's largest |m| entry positive."""
    kinds, factors = _classify(state)
    order = {"learned": 0, "noise": 1, "collapsed": 2}
    M = len(kinds)
    perm = sorted(range(M), key=lambda i: (order[kinds[i]], factors[i],
                                           -float(state["Q"][i, i]), i))
    signs = np.ones(M)
    for n, i in enumerate(perm):
        if kinds[i] == "learned":
            row = state["m"][i]
            signs[n] = 1.0 if row[np.argmax(np.abs(row))] >= 0 else -1.0
    return _transform(state, perm, signs)


def _invariants(p: Params, s: Mapping[str, Array]) -> list[Array]:
    """Quantities that transform only under latent permutations and signs."""
    out = []
    for g in _rho_groups(p):
        X = np.concatenate([s["m"][:, g], s["d"][:, g]], axis=0)  # (2M, |g|)
        out.append(X @ X.T)
    return [*out, s["Q"], s["E"], s["R"]]


def _close(a: Array, b: Array, tol: float) -> bool:
    """np.allclose(a, b, atol=tol, rtol=0) for equal shapes, without its overhead."""
    return bool(np.abs(a - b).max(initial=0.0) <= tol)


def _equivalent(p: Params, a: Mapping[str, Array], b: Mapping[str, Array],
                tol: float = 1e-6) -> bool:
    """Whether b maps to a under a symmetry of the ODEs (see the module docstring)."""
    M = p.M
    if not _close(np.sort(a["D"]), np.sort(b["D"]), tol):
        return False
    if not _close(np.sort(np.diag(a["Q"])), np.sort(np.diag(b["Q"])), tol):
        return False
    ia = _invariants(p, a)
    ib = _invariants(p, b)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=M)))  # (2^M, M)
    for perm in itertools.permutations(range(M)):
        P = np.asarray(perm)
        if not _close(a["D"], b["D"][P], tol):
            continue
        ok = np.ones(len(signs), dtype=bool)
        for x, y in zip(ia, ib, strict=True):
            n = x.shape[0] // M  # 1 for Q, E, R; 2 for the stacked (m, d) Grams
            PP = np.concatenate([P + M * r for r in range(n)])
            SS = np.tile(signs, n)  # (2^M, n M)
            ty = SS[:, :, None] * y[np.ix_(PP, PP)][None] * SS[:, None, :]
            ok &= np.all(np.abs(ty - x[None]) <= tol, axis=(1, 2))
            if not ok.any():
                break
        if ok.any():
            return True
    return False


# ---------------------------------------------------------------------------------------
# the fixed point object
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FixedPoint:
    """A physical fixed point of the ODEs and its linear stability.

    Attributes
    ----------
    params : Params
        The parameters (beta fixed at its limit).
    state : dict
        Order parameters m, d, Q, E, R, D (canonical representative, see
        :func:`fixed_points`).
    eigenvalues : ndarray of complex
        Eigenvalues of the flat Jacobian, sorted by decreasing real part.
    stable : bool
        Every eigenvalue, apart from the ``n_symmetry`` zero modes of a continuous
        symmetry, has real part < -``eig_tol``.
    kinds : tuple of str
        Per latent: ``"learned"`` (m row nonzero), ``"noise"`` (m = d = 0 but Q_ii,
        E_ii or R_ii > 0: fits background noise) or ``"collapsed"`` (m = d = 0,
        Q_ii = E_ii = R_ii = 0, D_i = 1 at lam = 0).
    factors : tuple of int
        Per latent, the factor it mainly learns (largest |m_ij|), -1 if not learned.
    residual : float
        max |rhs| at the state.
    n_symmetry : int
        Number of zero eigenvalues that are symmetry directions (rotations of factors
        with equal rho_k), excluded from ``stable`` and ``max_real``.
    """

    params: Params
    state: State
    eigenvalues: NDArray[np.complex128]
    stable: bool
    kinds: tuple[str, ...]
    factors: tuple[int, ...]
    residual: float
    n_symmetry: int = 0
    _derived: observables.Derived = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p = self.params
        der = observables.derived(*(self.state[k] for k in ORDER_PARAMETERS), rho=p.rho_vec,
                                  eta=p.eta, beta=p.beta_inf, lam=p.lam)
        object.__setattr__(self, "_derived", der)

    @property
    def relevant_eigenvalues(self) -> NDArray[np.complex128]:
        """Eigenvalues without the symmetry zero modes, by decreasing real part."""
        if self.n_symmetry == 0:
            return self.eigenvalues
        drop = np.argsort(np.abs(self.eigenvalues))[: self.n_symmetry]
        keep = np.setdiff1d(np.arange(self.eigenvalues.size), drop)
        return self.eigenvalues[keep]

    @property
    def kind(self) -> tuple[str, ...]:
        """Alias of :attr:`kinds` (the kind of each latent)."""
        return self.kinds

    @property
    def max_real(self) -> float:
        """Largest real part of the relevant eigenvalues (J_max of docs/model.md#findings)."""
        return float(self.relevant_eigenvalues.real.max())

    @property
    def eg(self) -> float:
        return float(self._derived.eg)

    @property
    def rate(self) -> float:
        return float(self._derived.rate)

    @property
    def distortion(self) -> float:
        return float(self._derived.distortion)

    @property
    def loss(self) -> float:
        return float(self._derived.loss)

    @property
    def min_gram_eigenvalue(self) -> float:
        return float(min_gram_eigenvalue(self.state))

    @property
    def flat(self) -> Array:
        """The state as a flat vector (:class:`linvae.ode.StateLayout`)."""
        return layout(self.params).pack(self.state)

    def latent_rates(self) -> Array:
        """Rate per latent, 1/2 (Bb_ii + D_i - log D_i - 1)."""
        s, p = self.state, self.params
        Bb = observables.moments(s["m"], s["d"], s["Q"], s["E"], s["R"], p.rho_vec, p.eta).Bb
        D = s["D"]
        return 0.5 * (np.diag(Bb) + D - np.log(D) - 1.0)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}[f{f}]" if k == "learned" else k
                          for k, f in zip(self.kinds, self.factors, strict=True))
        sym = f", {self.n_symmetry} symmetry modes" if self.n_symmetry else ""
        return (f"FixedPoint({'stable' if self.stable else 'unstable'}; latents: {kinds}; "
                f"eg={self.eg:.4g}, rate={self.rate:.4g}, max Re(eig)={self.max_real:.4g}"
                f"{sym}, residual={self.residual:.1e}; beta={self.params.beta_inf:g}, "
                f"tau={self.params.tau:g})")

    def summary(self) -> str:
        """Multi-line description with the order parameters."""
        lines = [repr(self)]
        for k in ORDER_PARAMETERS:
            lines.append(f"  {k} = {np.array2string(self.state[k], precision=4)}")
        return "\n".join(lines)


def _make_fixed_point(p: Params, y: Array, residual: float, eig_tol: float) -> FixedPoint:
    state = _canonical(layout(p).unpack(y))
    for k in ("Q", "E"):
        state[k] = 0.5 * (state[k] + state[k].T)
    ev = np.linalg.eigvals(jacobian(p, state)).astype(np.complex128)
    ev = ev[np.argsort(-ev.real, kind="stable")]
    n_sym = _symmetry_rank(p, state)
    fp = FixedPoint(p, state, ev, False, *_classify(state), residual, n_sym)
    rel = fp.relevant_eigenvalues
    zero_ok = n_sym == 0 or bool(np.all(np.sort(np.abs(ev))[:n_sym] < 1e3 * eig_tol))
    object.__setattr__(fp, "stable", bool(rel.real.max() < -eig_tol and zero_ok))
    return fp


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def fixed_points(p: Params, starts: Iterable[Mapping[str, ArrayLike] | ArrayLike] | None = None,
                 *, default_starts: bool = True, n_random: int = 4,
                 integrate_starts: bool | None = None, seed: int = 0,
                 eig_tol: float = 1e-9) -> list[FixedPoint]:
    """Every physical fixed point found from many starts, deduplicated up to symmetry.

    Parameters
    ----------
    p : Params
        Parameters; a schedule is replaced by its limit beta_inf.
    starts : iterable of states, optional
        Extra starting guesses (dicts of order parameters or flat vectors), e.g. a fixed
        point at nearby parameters for continuation.
    default_starts : bool
        Also start from every assignment of roles to latents (learned factor j, noise,
        collapsed, see :func:`role_state`), a permuted and sign-flipped copy, an
        entangled start, and ``n_random`` random physical states.
    n_random : int
        Number of random physical starts (seeded by ``seed``).
    integrate_starts : bool, optional
        Also integrate the ODE from the overlap start, the entangled start and the
        random starts and refine the end states. Default: True if M <= 2.
    seed : int
        Seed of the random starts.
    eig_tol : float
        An eigenvalue counts as negative when its real part is < -eig_tol.

    Returns
    -------
    list of FixedPoint
        Stable ones first, then by increasing loss. Each state is a canonical
        representative: learned latents first (ordered by factor, largest |m| entry
        positive), then noise-fitting, then collapsed latents.
    """
    p = _constant(_check_params(p))
    check_size(p, "fixed_points")
    if p.beta_inf <= 0:
        raise ValueError(
            f"beta (its limit beta_inf) must be > 0 for a fixed-point analysis, got "
            f"{p.beta_inf:g}: at beta = 0, dD_k/dt = -tau Q_kk / 2, so no state with "
            f"Q_kk > 0 is fixed and every collapsed state with any D_k is (a continuum)")
    n_random = check_int("n_random", n_random, ge=0)
    eig_tol = check_real("eig_tol", eig_tol, gt=0.0)
    seed = check_int("seed", seed, ge=0)
    lay = layout(p)
    guesses: list[Array] = []
    shapes = state_shapes(p)
    for i, s in enumerate(starts if starts is not None else []):
        if isinstance(s, Mapping):
            missing = [k for k in ORDER_PARAMETERS if k not in s]
            if missing:
                raise ValueError(f"starts[{i}] is missing the order parameter(s) {missing}")
            guesses.append(lay.pack({k: check_array(f"starts[{i}][{k!r}]", s[k], shapes[k])
                                     for k in ORDER_PARAMETERS}))
        else:
            y = np.asarray(s, dtype=np.float64)
            lay.unpack(y)  # raises, naming the expected length, if the shape is wrong
            if not np.all(np.isfinite(y)):
                raise ValueError(f"starts[{i}] must be finite, got {y.tolist()}")
            guesses.append(y)
    if default_starts:
        rng = np.random.default_rng(seed)
        rand = [_random_state(p, rng, scale) for scale in
                np.geomspace(0.3, 2.0, n_random)] if n_random else []
        base = [*_role_starts(p), _mixed_start(p), overlap_state(p, 0.5)]
        guesses += [lay.pack(s) for s in base + rand]
        if integrate_starts is None:
            integrate_starts = p.M <= 2
        if integrate_starts:
            ends = _integration_starts(p, [overlap_state(p, 0.5), _mixed_start(p), *rand],
                                       t_max=max(100.0, 20.0 / p.tau))
            guesses += [lay.pack(s) for s in ends]

    found: list[FixedPoint] = []
    for y0 in guesses:
        out = _refine_continued(p, y0)
        if out is None:
            continue
        y, res = out
        s = lay.unpack(y)
        if not _gram_ok(s):
            continue
        cs = _canonical(s)
        if any(_equivalent(p, f.state, cs) for f in found):
            continue
        found.append(_make_fixed_point(p, y, res, eig_tol))
    found.sort(key=lambda f: (not f.stable, f.loss))
    return found


def stable_fixed_point(p: Params, starts: Iterable[Mapping[str, ArrayLike]] | None = None,
                       **kwargs: Any) -> FixedPoint:
    """The stable fixed point for beta_inf (the one of lowest loss if several).

    Raises RuntimeError if no stable fixed point is found (e.g. tau beyond
    :func:`step_size_limit`).
    """
    fps = fixed_points(p, starts, **kwargs)
    stable = [f for f in fps if f.stable]
    if not stable:
        raise RuntimeError(
            f"no stable fixed point found for {_constant(p)}; found {len(fps)} unstable "
            f"one(s){': ' + '; '.join(map(repr, fps)) if fps else ''}. The step size may "
            f"be beyond step_size_limit(p)")
    return stable[0]


def collapsed_state(p: Params, factor: int = 0, *, latent: int | None = None) -> State:
    """The fixed point in which one latent has collapsed, the others at theirs.

    The collapsed latent k (``latent``, default ``factor``: latent k is the one that
    learns factor k) has m_k. = d_k. = 0, Q_kk = E_kk = R_kk = 0 and D_k = 1 (this solves
    the ODE exactly: with Q_kk = 0, dD_k/dt = 0 forces D_k = 1 for any lam), with no cross
    overlaps. Latent j != k learns factor j (j < M*) or fits noise (j >= M*) if root
    finding from that role converges to such a fixed point, else it is collapsed too.
    """
    p = _constant(_check_params(p))
    k = _check_factor(p, factor) if latent is None else check_int("latent", latent, ge=0,
                                                                  le=p.M - 1)
    check_size(p, "collapsed_state")
    roles: list[int | str] = []
    for j in range(p.M):
        roles.append("collapsed" if j == k else (j if j < p.M_star else "noise"))
    lay = layout(p)
    # try the full assignment, then with more and more of the other latents collapsed
    others = [j for j in range(p.M) if j != k]
    for n_drop in range(p.M):
        for drop in itertools.combinations(others, n_drop):
            r = ["collapsed" if j in drop else roles[j] for j in range(p.M)]
            out = _refine(p, lay.pack(role_state(p, r)))
            if out is None:
                continue
            st = lay.unpack(out[0])
            kinds, _ = _classify(st)
            want = ["collapsed" if ri == "collapsed" else ("noise" if ri == "noise" else
                                                           "learned") for ri in r]
            if list(kinds) == want and _gram_ok(st) and _cross_zero(st, k):
                return st
    raise RuntimeError(f"could not find the state with latent {k} collapsed for {p}")


def _cross_zero(s: Mapping[str, Array], k: int, tol: float = 1e-8) -> bool:
    return bool(np.abs(s["m"][k]).max() < tol and np.abs(s["d"][k]).max() < tol
                and np.abs(s["Q"][k]).max() < tol and np.abs(s["E"][k]).max() < tol
                and np.abs(s["R"][k]).max() < tol and np.abs(s["R"][:, k]).max() < tol)


def _check_factor(p: Params, factor: Any) -> int:
    k = check_int("factor", factor, ge=0)
    if k >= p.M_star:
        raise ValueError(f"factor must be in 0..{p.M_star - 1} (M_star={p.M_star}), got {k}")
    if k >= p.M:
        raise ValueError(f"factor must be < M={p.M}: latent k is the one that learns or "
                         f"drops factor k, and there are only {p.M} latents; got {k}")
    return k


def _label_latents(label: str) -> tuple[int, ...]:
    name, rest = label.split("[")
    ix = tuple(int(v) for v in rest.rstrip("]").split(","))
    return (ix[0],) if name in ("m", "d", "D") else ix  # Q, E, R: both indices


def latent_sector(p: Params, latent: int) -> NDArray[np.intp]:
    """Flat indices of the coordinates that involve ``latent``: its rows of m and d, row
    and column of Q, E and R, and D_latent (see :func:`collapse_growth_rate`)."""
    k = check_int("latent", latent, ge=0, le=p.M - 1)
    return np.asarray([i for i, lab in enumerate(layout(p).labels)
                       if k in _label_latents(lab)], dtype=np.intp)


def collapse_growth_rate(p: Params, factor: int = 0, *, latent: int | None = None) -> float:
    """Largest real part of the Jacobian's eigenvalues in one latent's sector at the
    state where that latent has collapsed (< 0: that collapse is linearly stable).

    At that state the coordinates involving latent k (:func:`latent_sector`) form an
    invariant block of the Jacobian (no other coordinate feeds into them linearly; this
    follows from the sign-flip symmetry of latent k and is checked in the tests), so
    their eigenvalues are exactly those of the Jacobian that concern latent k; the other
    latents' own modes are left out, so that other thresholds do not interfere.
    """
    p = _constant(_check_params(p))
    check_size(p, "collapse_growth_rate")
    k = _check_factor(p, factor) if latent is None else check_int("latent", latent, ge=0,
                                                                  le=p.M - 1)
    s = collapsed_state(p, latent=k)
    J = jacobian(p, s)
    idx = latent_sector(p, k)
    return float(np.linalg.eigvals(J[np.ix_(idx, idx)]).real.max())


class Threshold(float):
    """A threshold value (a float) that also says how it compares with a prediction.

    Attributes: ``predicted`` (the closed form at lam = 0 and tau -> 0, e.g. rho_k + eta;
    NaN if there is none), ``shift`` (value - predicted), ``what`` (a description).
    """

    predicted: float
    shift: float
    what: str

    def __new__(cls, value: float, predicted: float = math.nan, what: str = "") -> Self:
        obj = super().__new__(cls, value)
        obj.predicted = float(predicted)
        obj.shift = float(value) - float(predicted)
        obj.what = what
        return obj

    def __repr__(self) -> str:
        pred = (f"; predicted {self.predicted:.8g}, shift {self.shift:+.3g}"
                if math.isfinite(self.predicted) else "")
        return f"Threshold({float(self):.8g}; {self.what}{pred})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Threshold, (float(self), self.predicted, self.what))


def _beta_crossing(p: Params, latent: int, beta_max: float, n_scan: int,
                   xtol: float) -> float:
    """First beta in (0, beta_max] where the growth rate turns from > 0 to <= 0."""

    def g(beta: float) -> float:
        return collapse_growth_rate(p.replace(beta=float(beta)), latent=latent)

    prev_b, prev_g = math.nan, math.nan
    for b in np.linspace(beta_max / n_scan, beta_max, n_scan):
        gb = g(float(b))
        if prev_g > 0 >= gb:
            return float(brentq(g, prev_b, float(b), xtol=xtol,
                                rtol=4 * np.finfo(float).eps))
        prev_b, prev_g = float(b), gb
    warnings.warn(f"the collapsed state of latent {latent} is not stable for any beta in "
                  f"(0, {beta_max:g}] at tau={p.tau:g}: tau may be past the step-size "
                  f"stability limit (which decreases with beta)", RuntimeWarning,
                  stacklevel=3)
    return math.nan


def collapse_threshold(p: Params, factor: int = 0, *, beta_max: float | None = None,
                       n_scan: int = 24, xtol: float = 1e-10) -> Threshold:
    """beta above which the collapsed state of ``factor`` is linearly stable, numerically.

    The largest real eigenvalue in latent k's sector at its collapsed state
    (:func:`collapse_growth_rate`) is scanned over beta on a grid of ``n_scan`` points in
    (0, beta_max] and the first crossing from positive to negative is located by Brent's
    method. Nothing here uses the closed form: the result is compared with the
    rho_k + eta of docs/model.md#findings afterwards (``.predicted``, ``.shift``). For
    lam > 0 the linearisation of (m_k, d_k) at the collapsed state gives
    Pe/(1 + lam) - lam/Pe (Pe = rho_k + eta),
    which the numerical value matches.

    Returns NaN (with a RuntimeWarning) if the state is stable nowhere in the scanned
    range, e.g. because tau is past the step-size stability limit.
    """
    p = _check_params(p)
    k = _check_factor(p, factor)
    check_size(p, "collapse_threshold")
    n_scan = check_int("n_scan", n_scan, ge=2)
    xtol = check_real("xtol", xtol, gt=0.0)
    beta_max = 3.0 * (max(p.rho) + p.eta) + 1.0 if beta_max is None else \
        check_real("beta_max", beta_max, gt=0.0)
    value = _beta_crossing(p, k, beta_max, n_scan, xtol)
    return Threshold(value, p.rho[k] + p.eta,
                     f"collapse of factor {k} (lam={p.lam:g}, tau={p.tau:g})")


def collapse_thresholds(p: Params, **kwargs: Any) -> list[Threshold]:
    """The collapse threshold of every factor k = 0 .. M* - 1, as a list of M* values.

    Factor k has a threshold only if latent k exists (k < M, see
    :func:`collapse_threshold`, which takes ``kwargs``); a factor without a latent of its
    own (M < M*) gets NaN, with its ``.predicted`` rho_k + eta still set, so the list
    always lines up with the ``factor`` dim of a result.
    """
    p = _check_params(p)
    return [collapse_threshold(p, k, **kwargs) if k < p.M else
            Threshold(math.nan, p.rho[k] + p.eta,
                      f"factor {k} has no latent of its own (M={p.M} < M*={p.M_star})")
            for k in range(p.M_star)]


def noise_threshold(p: Params, *, beta_max: float | None = None, n_scan: int = 24,
                    xtol: float = 1e-10) -> Threshold:
    """beta above which a superfluous latent stops fitting the noise and collapses.

    Computed like :func:`collapse_threshold`, for latent M* of a model with M* + 1
    latents (``p`` itself if M > M*). docs/model.md#findings says "for beta > eta it
    collapses" (``.predicted`` = eta); that holds as tau -> 0, and the numerical value
    shows the finite-tau shift (about +eta tau / 4 at small tau).
    """
    p = _check_params(p)
    if p.M <= p.M_star:
        p = p.replace(M=p.M_star + 1)
    check_size(p, "noise_threshold")
    n_scan = check_int("n_scan", n_scan, ge=2)
    xtol = check_real("xtol", xtol, gt=0.0)
    beta_max = 3.0 * p.eta + 1.0 if beta_max is None else \
        check_real("beta_max", beta_max, gt=0.0)
    value = _beta_crossing(p, p.M_star, beta_max, n_scan, xtol)
    return Threshold(value, p.eta, f"noise fitting of a superfluous latent "
                                   f"(lam={p.lam:g}, tau={p.tau:g})")


def _any_stable(p: Params, starts: Sequence[Mapping[str, Array]]) -> tuple[bool, list[State]]:
    fps = fixed_points(p, starts, integrate_starts=False)
    st = [f.state for f in fps if f.stable]
    return bool(st), st


def step_size_limit(p: Params, *, tau_max: float = 50.0, rtol: float = 1e-6) -> Threshold:
    """The learning rate tau beyond which no fixed point of the ODEs is stable.

    Starting at ``p.tau`` (where a stable fixed point must exist) tau is doubled until
    no stable fixed point is found, then bisected to relative precision ``rtol``. Each
    step searches all fixed points (:func:`fixed_points`, continued from the stable ones
    of the last tau known to be stable). ``.predicted`` is NaN (no closed form).
    """
    p = _constant(_check_params(p))
    tau_max = check_real("tau_max", tau_max, gt=p.tau)
    rtol = check_real("rtol", rtol, gt=0.0)
    ok, seeds = _any_stable(p, [])
    if not ok:
        raise ValueError(f"no stable fixed point at tau={p.tau:g} for {p}: start below the "
                         f"step-size limit (try a smaller tau)")
    lo, hi = p.tau, None
    t = p.tau
    steps, t0 = 0, time.perf_counter()  # searches so far: they time the estimate
    while hi is None:
        t = min(2.0 * t, tau_max)
        ok, st = _any_stable(p.replace(tau=t), seeds)
        steps += 1
        if ok:
            lo, seeds = t, st
            if t >= tau_max:
                warnings.warn(f"a fixed point is still stable at tau_max={tau_max:g}",
                              RuntimeWarning, stacklevel=2)
                return Threshold(math.inf, math.nan, "step-size limit")
        else:
            hi = t
    while hi - lo > rtol * lo:
        left = math.ceil(math.log2((hi - lo) / (rtol * lo)))
        log.info("step_size_limit: tau_max in [%.8g, %.8g], %d bisection steps to go (about "
                 "%.0f s)", lo, hi, left, left * (time.perf_counter() - t0) / max(1, steps))
        mid = 0.5 * (lo + hi)
        ok, st = _any_stable(p.replace(tau=mid), seeds)
        if ok:
            lo, seeds = mid, st
        else:
            hi = mid
        steps += 1
    return Threshold(0.5 * (lo + hi), math.nan,
                     f"step-size limit (beta={p.beta_inf:g}, lam={p.lam:g})")


def annealing_threshold(p: Params, **kwargs: Any) -> float:
    """gamma* = -J_max / 2, J_max the largest real eigenvalue at the stable fixed point.

    docs/model.md#findings: a tanh schedule beta_inf tanh(gamma t) slower than gamma*
    (gamma < gamma*) delays convergence. ``p.beta`` may be a schedule; its limit is used.
    """
    fp = stable_fixed_point(p, **kwargs)
    return -0.5 * fp.max_real


def convergence_time(p: Params, delta: float = 1e-3, *,
                     init: Mapping[str, ArrayLike] | xr.Dataset | float = 0.01,
                     t_max: float | None = None,
                     record_every: float = 0.02, rtol: float = 1e-9, atol: float = 1e-11,
                     method: str = "auto", return_details: bool = False) -> Any:
    """Time after which eps_g stays within ``delta`` of its limit, from the ODE.

    The ODE is integrated from ``init`` under ``p``'s schedule: a state, or a number c
    for :func:`linvae.ode.overlap_state` with overlap c. The default c = 0.01 is an
    O(N^-1/2) start like the authors' random one at N = 10^4 (m = d = 0 exactly would
    never move); it reproduces the times of docs/model.md#findings, 61 (constant beta),
    75, 174 and 60 (tanh, gamma = 0.05, 0.02, 0.1) for rho = eta = 1, beta_inf = 0.5, tau = 0.5.
    The result depends on the start (e.g. c = 0.5 gives 47 for constant beta). The end
    state is refined to the fixed point of beta_inf by root finding (it must be stable),
    and that fixed point's eps_g is the limit. The run is also extended while the
    schedule has yet to leave beta_inf again (a cyclical schedule in a hold phase). The time is the last crossing of
    |eps_g(t) - eps_g(inf)| = delta, linearly interpolated between recorded points. If
    the run has not settled by ``t_max`` it is extended (doubling, up to 64 t_max).

    Returns a float, or with ``return_details`` a dict with ``t``, the dataset, the
    fixed point and the limit.
    """
    p = _check_params(p)
    check_size(p, "convergence_time")
    delta = check_real("delta", delta, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0)
    if isinstance(init, (Mapping, xr.Dataset)):
        state0 = parse_state(init, p)
    else:
        state0 = overlap_state(p, check_real("init", init, ge=-1.0, le=1.0))
    t_end = check_real("t_max", t_max, gt=0.0) if t_max is not None else \
        max(200.0, 60.0 / p.tau)
    p0 = _constant(p)
    for _ in range(7):
        if not _schedule_settled(p, t_end):
            t_end *= 2.0
            continue
        ds = integrate(p, t_max=t_end, init=state0, record_every=min(record_every, t_end),
                       rtol=rtol, atol=atol, method=method)
        end = {k: ds[k].isel(t=-1).values for k in ORDER_PARAMETERS}
        out = _refine(p0, layout(p0).pack(end))
        if out is not None:
            fp = _make_fixed_point(p0, out[0], out[1], 1e-9)
            dist = np.abs(out[0] - layout(p0).pack(end)).max()
            err = np.abs(ds["eg"].values - _eg_of(p0, layout(p0).unpack(out[0])))
            if dist < 1e-6 and err[-1] < 0.01 * delta and fp.stable:
                break
        t_end *= 2.0
    else:
        raise RuntimeError(f"eps_g did not settle within delta={delta:g} of a stable fixed "
                           f"point by t={t_end / 2:g} for {p}")
    eg_inf = _eg_of(p0, layout(p0).unpack(out[0]))
    t = ds["t"].values
    above = np.flatnonzero(err > delta)
    if above.size == 0:
        t_conv = 0.0
    else:
        i = int(above[-1])
        e0, e1 = err[i] - delta, err[i + 1] - delta
        t_conv = float(t[i] + (t[i + 1] - t[i]) * e0 / (e0 - e1))
    if return_details:
        return {"t": t_conv, "dataset": ds, "fixed_point": fp, "eg_inf": eg_inf}
    return t_conv


def _schedule_settled(p: Params, t_end: float) -> bool:
    """Whether |beta(t) - beta_inf| never grows after t_end (checked on a dense grid up
    to 4 t_end), so that a state settled at t_end stays settled. A cyclical schedule in
    a hold phase is at beta_inf for a while and then leaves it again."""
    if p.beta.is_constant:
        return True
    t = np.linspace(t_end, 4.0 * t_end, 8001)
    dev = np.abs(p.beta_at(t) - p.beta_inf)
    return bool(np.all(np.diff(dev) <= 1e-12 * max(1.0, p.beta_inf)))


def _eg_of(p: Params, s: Mapping[str, Array]) -> float:
    return float(observables.derived(*(s[k] for k in ORDER_PARAMETERS), rho=p.rho_vec,
                                     eta=p.eta, beta=p.beta_inf, lam=p.lam).eg)


def stability_task(p: Params, thresholds: bool = True) -> xr.Dataset:
    """The sweep task ``"stability"``: the stable fixed point of ``p`` as one dataset.

    Holds the fixed point's order parameters (dims as in simulation results), eps_g,
    rate, loss, the largest real part of the Jacobian's eigenvalues (``max_real``; -1/it
    is the slowest time scale), how many fixed points were found, and, with
    ``thresholds``, the numerically found collapse threshold of every factor
    (:func:`collapse_thresholds`: NaN for a factor without a latent, M < M*). Where no
    fixed point is stable (tau beyond the step-size limit) ``stable`` is False and the
    state is NaN: that is data about the grid point, not a failure.
    """
    fps = fixed_points(p)
    stable = [f for f in fps if f.stable]
    fp = stable[0] if stable else None
    state = fp.state if fp is not None else {
        k: np.full(shape, np.nan) for k, shape in state_shapes(p).items()}
    data: dict[str, Any] = {k: (DIMS[k], np.asarray(state[k])) for k in ORDER_PARAMETERS}
    for name in ("eg", "rate", "loss", "max_real"):
        data[name] = ((), float(getattr(fp, name)) if fp is not None else np.nan)
    data["stable"] = ((), fp is not None)
    data["n_fixed_points"] = ((), len(fps))
    if thresholds:
        data["collapse_threshold"] = (("factor",), np.array(
            [float(t) for t in collapse_thresholds(p)]))
    return xr.Dataset(data, coords={"latent": np.arange(p.M), "latent2": np.arange(p.M),
                                    "factor": np.arange(p.M_star)},
                      attrs={**p.to_attrs(), "kind": "stability"})


def _register_sweep_task() -> None:
    from .sweeps import register_task

    register_task("stability", stability_task, replace=True)


_register_sweep_task()
