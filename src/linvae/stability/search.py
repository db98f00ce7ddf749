"""Fixed points of the limiting ODEs: their search, deduplication and linear stability.

The search runs from many starts, the deduplication is up to symmetry, and
:class:`FixedPoint` holds a fixed point with its linear stability.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import root

from .. import observables
from .._validate import check_array, check_int, check_real
from ..dataset import DIMS, state_shapes
from ..errors import TooLargeError
from ..observables import KIND_TOL, ORDER_PARAMETERS
from ..ode import (
    UnphysicalStateError,
    final_state,
    jacobian,
    layout,
    min_gram_eigenvalue,
    rhs,
)
from ..params import Params, check_params
from ..states import learned_block, mixed_state, overlap_state, random_physical_state

if TYPE_CHECKING:
    from ..finite_n import StationaryCovariance

Array = NDArray[np.float64]
State = dict[str, Array]

log = logging.getLogger("linvae.stability")

#: Largest residual max|rhs| of a reported fixed point.
RESIDUAL_TOL = 1e-10


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

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
    """Return the same parameters with beta fixed at its limit (fixed points refer to it)."""
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
    """Group the indices of factors with equal rho_k (to rounding)."""
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
@functools.lru_cache(maxsize=4096)
def _block(eta: float, beta: float, lam: float, rates: tuple[float, float, float], rho: float,
           noise: bool) -> tuple[float, ...]:
    """Return the fixed point (m, d, Q, E, R, D) of one latent alone.

    The latent learns a factor of strength ``rho``, or (``noise``) fits the background
    noise with m = d = 0.

    A latent whose cross overlaps with the others vanish evolves on its own (the
    invariant subspace of the sign flips among the model's symmetries), so these blocks are
    exact fixed points of the full ODEs when put on the diagonal. Found by continuation
    in tau from the small-tau closed form; falls back to that form if it fails.
    """
    p1 = Params(M=1, M_star=1, rho=0.0 if noise else rho, eta=eta, beta=beta, lam=lam,
                tau=rates[0], tau_V=rates[1], tau_D=rates[2])
    m, d, q, e, r, D = learned_block(p1, 0.0 if noise else rho)
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
    """Build a state in which latent i plays ``roles[i]``, with no cross overlaps.

    A role is a factor index j (latent i learns factor j), ``"noise"`` (m = d = 0, fits
    the background noise) or ``"collapsed"`` (m = d = 0, Q = E = R = 0, D = 1). With
    ``exact`` each latent's block is its own one-latent fixed point at p's tau (found by
    continuation), so that for distinct learned factors the state is a fixed point of
    the full ODEs (if that block exists); otherwise the small-tau closed form
    Q = rho_j + eta - beta. The state is physical when no two latents learn the same
    factor.
    """
    p = _constant(check_params(p))
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
        blk = (_block(p.eta, p.beta_inf, p.lam, p.rates, rho, noise) if exact
               else learned_block(p, rho))
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
    y = y0
    for k in range(n_steps, -1, -1):  # every rate scaled by 2^-k, ratios kept
        out = _refine(p.scaled_rates(2.0**-k), y)
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
    """Return the representative of ``state`` under the model's symmetries.

    Learned latents first (by factor), then noise, then collapsed; each learned latent's
    largest ``|m|`` entry positive.
    """
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
        """Generalisation error eps_g at the fixed point."""
        return float(self._derived.eg)

    @property
    def rate(self) -> float:
        """Rate (KL term of the loss) at the fixed point."""
        return float(self._derived.rate)

    @property
    def distortion(self) -> float:
        """Distortion (reconstruction term of the loss) at the fixed point."""
        return float(self._derived.distortion)

    @property
    def loss(self) -> float:
        """Loss (distortion + beta rate + L2 term) at the fixed point."""
        return float(self._derived.loss)

    @property
    def min_gram_eigenvalue(self) -> float:
        """Smallest eigenvalue of the state's Gram matrix (negative for an unphysical state)."""
        return float(min_gram_eigenvalue(self.state))

    @property
    def flat(self) -> Array:
        """The state as a flat vector (:class:`linvae.ode.StateLayout`)."""
        return layout(self.params).pack(self.state)

    def covariance(self) -> StationaryCovariance:
        """Return the stationary finite-N covariance here.

        N Cov X = Sigma, J Sigma + Sigma J^T + B = 0
        (:func:`linvae.finite_n.stationary_covariance`, docs/model.md#fluctuations).

        Raises ValueError if the fixed point is not linearly stable, including a symmetry
        zero mode (``n_symmetry > 0``), along which the spread grows without bound.
        """
        from ..finite_n import stationary_covariance  # lazily: stability does not need it

        return stationary_covariance(self.params, self.state)

    def latent_rates(self) -> Array:
        """Rate per latent, 1/2 (Bb_ii + D_i - log D_i - 1)."""
        return observables.latent_rates(*(self.state[k] for k in ORDER_PARAMETERS),
                                        rho=self.params.rho_vec, eta=self.params.eta)

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


#: Per-fixed-point values :func:`fixed_point_data` can tabulate: name -> (dims after the
#: leading ones, value of a fixed point, value where there is none).
_FIXED_POINT_FIELDS: dict[str, tuple[tuple[str, ...], Callable[[FixedPoint], Any], Any]] = {
    "eg": ((), lambda f: f.eg, math.nan),
    "rate": ((), lambda f: f.rate, math.nan),
    "distortion": ((), lambda f: f.distortion, math.nan),
    "loss": ((), lambda f: f.loss, math.nan),
    "max_real": ((), lambda f: f.max_real, math.nan),
    "latent_rate": (("latent",), lambda f: f.latent_rates(), math.nan),
    "n_learned": ((), lambda f: f.kinds.count("learned"), -1),
    "n_noise": ((), lambda f: f.kinds.count("noise"), -1),
}


def fixed_point_data(fps: Sequence[FixedPoint | None], p: Params, lead: tuple[str, ...] = (),
                     fields: Sequence[str] = ("eg", "rate", "max_real")) -> dict[str, Any]:
    """Stack the data variables of fixed points along ``lead`` (``()`` for a single one).

    Holds the order parameters (dims as in simulation results) and ``fields`` (names of
    :data:`_FIXED_POINT_FIELDS`); ``None`` stands for "no fixed point here" and gives NaN
    (-1 for counts).
    """
    if len(lead) > 1 or (not lead and len(fps) != 1):
        raise ValueError(f"fixed_point_data stacks along at most one dim; got lead={lead} "
                         f"and {len(fps)} fixed points")
    shapes = state_shapes(p)

    def stack(values: list[Any]) -> Any:
        return np.asarray(values if lead else values[0])

    data: dict[str, Any] = {
        k: ((*lead, *DIMS[k]), stack([f.state[k] if f else np.full(shapes[k], np.nan)
                                      for f in fps])) for k in ORDER_PARAMETERS}
    for name in fields:
        dims, value, missing = _FIXED_POINT_FIELDS[name]
        fill = np.full(p.M, missing) if dims else missing
        data[name] = ((*lead, *dims), stack([value(f) if f else fill for f in fps]))
    return data


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
    p = _constant(check_params(p))
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
        rand = [random_physical_state(p, rng, scale) for scale in
                np.geomspace(0.3, 2.0, n_random)] if n_random else []
        base = [*_role_starts(p), mixed_state(p), overlap_state(p, 0.5)]
        guesses += [lay.pack(s) for s in base + rand]
        if integrate_starts is None:
            integrate_starts = p.M <= 2
        if integrate_starts:
            ends = _integration_starts(p, [overlap_state(p, 0.5), mixed_state(p), *rand],
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
    """Return the stable fixed point for beta_inf (the one of lowest loss if several).

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


def _eg_of(p: Params, s: Mapping[str, Array]) -> float:
    return float(observables.derived(*(s[k] for k in ORDER_PARAMETERS), rho=p.rho_vec,
                                     eta=p.eta, beta=p.beta_inf, lam=p.lam).eg)
