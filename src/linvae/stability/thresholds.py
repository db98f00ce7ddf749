"""Thresholds from the stability of fixed points.

Posterior collapse, noise fitting, the step-size limit and the KL-annealing rate.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from .._validate import check_int, check_real
from ..ode import (
    jacobian,
    layout,
)
from ..params import Params, check_params

if TYPE_CHECKING:
    from typing_extensions import Self


from .search import (
    State,
    _classify,
    _constant,
    _gram_ok,
    _refine,
    check_size,
    fixed_points,
    role_state,
    stable_fixed_point,
)
from .statics import bulk_edge, check_alpha, spike, threshold_of

Array = NDArray[np.float64]

log = logging.getLogger("linvae.stability")

def collapsed_state(p: Params, factor: int = 0, *, latent: int | None = None) -> State:
    """Return the fixed point in which one latent has collapsed, the others at theirs.

    The collapsed latent k (``latent``, default ``factor``: latent k is the one that
    learns factor k) has m_k. = d_k. = 0, Q_kk = E_kk = R_kk = 0 and D_k = 1 (this solves
    the ODE exactly: with Q_kk = 0, dD_k/dt = 0 forces D_k = 1 for any lam), with no cross
    overlaps. Latent j != k learns factor j (j < M*) or fits noise (j >= M*) if root
    finding from that role converges to such a fixed point, else it is collapsed too.
    """
    p = _constant(check_params(p))
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
    """Flat indices of the coordinates that involve ``latent``.

    These are its rows of m and d, row and column of Q, E and R, and D_latent (see
    :func:`collapse_growth_rate`).
    """
    k = check_int("latent", latent, ge=0, le=p.M - 1)
    return np.asarray([i for i, lab in enumerate(layout(p).labels)
                       if k in _label_latents(lab)], dtype=np.intp)


def collapse_growth_rate(p: Params, factor: int = 0, *, latent: int | None = None) -> float:
    """Largest real part of the Jacobian's eigenvalues in one latent's sector.

    The sector is taken at the state where that latent has collapsed (< 0: that collapse
    is linearly stable).

    At that state the coordinates involving latent k (:func:`latent_sector`) form an
    invariant block of the Jacobian (no other coordinate feeds into them linearly; this
    follows from the sign-flip symmetry of latent k and is checked in the tests), so
    their eigenvalues are exactly those of the Jacobian that concern latent k; the other
    latents' own modes are left out, so that other thresholds do not interfere.
    """
    p = _constant(check_params(p))
    check_size(p, "collapse_growth_rate")
    k = _check_factor(p, factor) if latent is None else check_int("latent", latent, ge=0,
                                                                  le=p.M - 1)
    s = collapsed_state(p, latent=k)
    J = jacobian(p, s)
    idx = latent_sector(p, k)
    return float(np.linalg.eigvals(J[np.ix_(idx, idx)]).real.max())


class Threshold(float):
    """A threshold value (a float) that also says how it compares with a prediction.

    Attributes
    ----------
    predicted : float
        The closed form at lam = 0 and tau -> 0, e.g. rho_k + eta; NaN if there is none.
    shift : float
        value - predicted.
    what : str
        A description.
    """

    predicted: float
    shift: float
    what: str

    def __new__(cls, value: float, predicted: float = math.nan, what: str = "") -> Self:
        """Create the threshold ``value`` with its ``predicted`` value and description."""
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


def collapse_threshold(p: Params, factor: int = 0, *, alpha: float | None = None,
                       beta_max: float | None = None, n_scan: int | None = None,
                       xtol: float | None = None) -> Threshold:
    """Find the beta above which latent ``factor`` collapses.

    Without ``alpha``, the population answer: the beta above which the collapsed state of
    ``factor`` is linearly stable. The largest real eigenvalue in latent k's sector at
    its collapsed state (:func:`collapse_growth_rate`) is scanned over beta on a grid of
    ``n_scan`` (24) points in (0, beta_max] and the first crossing from positive to
    negative is located by Brent's method (to ``xtol``, 1e-10). Nothing here uses the
    closed form: the result is compared with the rho_k + eta of docs/model.md#findings
    afterwards (``.predicted``, ``.shift``). For lam > 0 the linearisation of
    (m_k, d_k) at the collapsed state gives Pe/(1 + lam) - lam/Pe (Pe = rho_k + eta),
    which the numerical value matches.

    With ``alpha`` = P / N, the threshold of the minimum of the training loss on P
    samples as N -> infinity (docs/model.md#training-minimum): l/(1 + lam) - lam/l with
    l the top eigenvalue of the samples' covariance on factor k (:func:`~linvae.stability.
    statics.spike`), the bulk edge below the BBP point. It is a closed form, so the
    search options do not apply; ``.predicted`` stays rho_k + eta, and ``.shift`` is what
    finite data moves.

    Returns NaN (with a RuntimeWarning) if the state is stable nowhere in the scanned
    range, e.g. because tau is past the step-size stability limit.
    """
    p = check_params(p)
    k = _check_factor(p, factor)
    if alpha is not None:
        _closed_form_only(beta_max=beta_max, n_scan=n_scan, xtol=xtol)
        a = check_alpha(alpha)
        ell, c2 = spike(p.rho[k], p.eta, a)
        below = "" if c2 > 0.0 else "; below the BBP point the latent sees only noise"
        return Threshold(threshold_of(ell, p.lam), p.rho[k] + p.eta,
                         f"collapse of factor {k} at alpha={a:g} (minimum of the training "
                         f"loss, N -> infinity, lam={p.lam:g}{below})")
    check_size(p, "collapse_threshold")
    n_scan = 24 if n_scan is None else check_int("n_scan", n_scan, ge=2)
    xtol = 1e-10 if xtol is None else check_real("xtol", xtol, gt=0.0)
    beta_max = 3.0 * (max(p.rho) + p.eta) + 1.0 if beta_max is None else \
        check_real("beta_max", beta_max, gt=0.0)
    value = _beta_crossing(p, k, beta_max, n_scan, xtol)
    return Threshold(value, p.rho[k] + p.eta,
                     f"collapse of factor {k} (lam={p.lam:g}, tau={p.tau:g})")


def _closed_form_only(**options: Any) -> None:
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: applies to the population search only; with "
                         f"alpha the threshold is a closed form")


def collapse_thresholds(p: Params, **kwargs: Any) -> list[Threshold]:
    """Return the collapse threshold of every factor k = 0 .. M* - 1, as a list of M* values.

    Factor k has a threshold only if latent k exists (k < M, see
    :func:`collapse_threshold`, which takes ``kwargs``); a factor without a latent of its
    own (M < M*) gets NaN, with its ``.predicted`` rho_k + eta still set, so the list
    always lines up with the ``factor`` dim of a result.
    """
    p = check_params(p)
    return [collapse_threshold(p, k, **kwargs) if k < p.M else
            Threshold(math.nan, p.rho[k] + p.eta,
                      f"factor {k} has no latent of its own (M={p.M} < M*={p.M_star})")
            for k in range(p.M_star)]


def noise_threshold(p: Params, *, alpha: float | None = None, beta_max: float | None = None,
                    n_scan: int | None = None, xtol: float | None = None) -> Threshold:
    """Find the beta above which a superfluous latent stops fitting the noise and collapses.

    Computed like :func:`collapse_threshold`, for latent M* of a model with M* + 1
    latents (``p`` itself if M > M*). docs/model.md#findings says "for beta > eta it
    collapses" (``.predicted`` = eta); that holds as tau -> 0, and the numerical value
    shows the finite-tau shift (about +eta tau / 4 at small tau). With ``alpha``, the
    minimum of the training loss on P = alpha N samples as N -> infinity: the latent
    fits the top of the noise bulk, eta (1 + alpha^(-1/2))^2, so l/(1 + lam) - lam/l with
    l that edge.
    """
    p = check_params(p)
    if alpha is not None:
        _closed_form_only(beta_max=beta_max, n_scan=n_scan, xtol=xtol)
        a = check_alpha(alpha)
        return Threshold(threshold_of(bulk_edge(p.eta, a), p.lam), p.eta,
                         f"noise fitting of a superfluous latent at alpha={a:g} (minimum of "
                         f"the training loss, N -> infinity, lam={p.lam:g})")
    if p.M <= p.M_star:
        p = p.replace(M=p.M_star + 1)
    check_size(p, "noise_threshold")
    n_scan = 24 if n_scan is None else check_int("n_scan", n_scan, ge=2)
    xtol = 1e-10 if xtol is None else check_real("xtol", xtol, gt=0.0)
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
    """Find the learning rate tau beyond which no fixed point of the ODEs is stable.

    With per-block rates (``tau_V``, ``tau_D`` given), all three are scaled together
    (:meth:`~linvae.Params.scaled_rates`), and the limit is the one of tau, W's rate.

    Starting at ``p.tau`` (where a stable fixed point must exist) tau is doubled until
    no stable fixed point is found, then bisected to relative precision ``rtol``. Each
    step searches all fixed points (:func:`fixed_points`, continued from the stable ones
    of the last tau known to be stable). ``.predicted`` is NaN (no closed form).
    """
    p = _constant(check_params(p))
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
        ok, st = _any_stable(p.scaled_rates(t / p.tau), seeds)
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
        ok, st = _any_stable(p.scaled_rates(mid / p.tau), seeds)
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


