"""The paper's three findings, and disentanglement, as data and as figures.

Each finding has a function that computes it from the ODEs (docs/model.md#odes and
docs/model.md#findings) and returns an :class:`xarray.Dataset`, and a separate ``plot_*``
function that draws that dataset on a matplotlib Figure (no pyplot state; see
:mod:`linvae.plot`):

1. posterior collapse: :func:`collapse_sweep` (steady state vs beta, thresholds marked;
   several factors with distinct rho_k give a cascade), :func:`phase_diagram`
   ((beta, rho) plane) -> :func:`plot_collapse`;
2. superfluous latents: :func:`superfluous` ((M, M*) = (2, 1) over time for beta below
   and above eta) and :func:`superfluous_vs_M` (eps_g, convergence time and slowest
   eigenvalue vs M) -> :func:`plot_superfluous`;
3. KL annealing: :func:`annealing` (convergence time vs gamma per schedule, constant
   beta and gamma* for reference) -> :func:`plot_annealing`;
4. disentanglement: :func:`disentanglement` (m from entangled to diagonal, with
   :func:`disentanglement_score`) -> :func:`plot_disentanglement`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from . import observables, schedules
from ._validate import check_int, check_real
from .dataset import state_of
from .observables import ORDER_PARAMETERS
from .ode import integrate, steady_state_grid
from .params import Params, check_params
from .plot import (
    STYLE,
    apply_style,
    colors,
    figure,
    legend,
    mark,
    markers,
    styled,
    symbol,
    vline,
)
from .stability import (
    FixedPoint,
    annealing_threshold,
    collapse_threshold,
    collapse_thresholds,
    convergence_time,
    fixed_point_data,
    fixed_points,
)
from .states import entangled_state, generic_state, overlap_state

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "annealing",
    "collapse_sweep",
    "disentanglement",
    "disentanglement_score",
    "latent_rates",
    "optimal_beta",
    "phase_diagram",
    "plot_annealing",
    "plot_collapse",
    "plot_disentanglement",
    "plot_optimal_beta",
    "plot_superfluous",
    "refine_grid",
    "superfluous",
    "superfluous_vs_M",
]

Array = NDArray[np.float64]


def _grid(name: str, values: ArrayLike, *, gt: float | None = None,
          ge: float | None = None) -> Array:
    a = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a non-empty 1-d sequence of finite numbers, "
                         f"got {values!r}")
    if gt is not None and not np.all(a > gt):
        raise ValueError(f"{name} must be > {gt:g} elementwise, got {a.tolist()}")
    if ge is not None and not np.all(a >= ge):
        raise ValueError(f"{name} must be >= {ge:g} elementwise, got {a.tolist()}")
    return a


def refine_grid(values: ArrayLike, at: ArrayLike, below: int = 8, above: int | None = None,
                width: float | None = None) -> Array:
    """Return the sorted grid ``values`` with points added on both sides of each ``at``.

    ``below`` points are added under each threshold and ``above`` (default
    ``below // 2``) over it, at distances ``width * (k / n)**2`` (k = 1 .. n) and one
    at ``1e-6 * width``: evenly spaced in the square root of the distance, the law of a
    continuous transition such as the collapse (|m| ~ (beta_c - beta)^(1/2)), which a
    coarse grid would draw as a jump. ``width`` defaults to a sixth of the grid's range.
    Points outside the grid's range, and thresholds that are not finite or outside it,
    are left out.
    """
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    below = check_int("below", below, ge=0)
    above = below // 2 if above is None else check_int("above", above, ge=0)
    lo, hi = float(v.min()), float(v.max())
    w = (hi - lo) / 6.0 if width is None else check_real("width", width, gt=0.0)

    def steps(n: int) -> Array:
        return np.r_[1e-6, (np.arange(1, n + 1) / n) ** 2] * w if n else np.zeros(0)

    extra = [c + sign * steps(n) for c in np.atleast_1d(np.asarray(at, dtype=np.float64))
             if np.isfinite(c) and lo < c < hi for sign, n in ((-1.0, below), (1.0, above))]
    out = np.concatenate([v, *extra])
    return np.unique(out[(out >= lo) & (out <= hi)])


def latent_rates(ds: xr.Dataset) -> xr.DataArray:
    """Return the rate per latent, 1/2 (Bb_kk + D_k - log D_k - 1), from a dataset.

    The dataset holds order parameters (any leading dims); its ``rate`` is the sum of
    these over latents.
    """
    rho = np.atleast_1d(np.asarray(ds.attrs["rho"], dtype=np.float64))
    r = observables.latent_rates(*(ds[k].values for k in ORDER_PARAMETERS), rho=rho,
                                 eta=float(ds.attrs["eta"]))
    return xr.DataArray(r, dims=ds["D"].dims, coords=ds["D"].coords,
                        attrs={"long_name": "rate of latent k"})


# ---------------------------------------------------------------------------------------
# 1. posterior collapse
# ---------------------------------------------------------------------------------------
def _stable_along(ps: Sequence[Params]) -> list[FixedPoint | None]:
    """Stable fixed point for each parameter set, continued from the previous one."""
    out: list[FixedPoint | None] = []
    prev: list[dict[str, Array]] = []
    for p in ps:
        fps = fixed_points(p, prev, n_random=0, integrate_starts=False)
        stable = [f for f in fps if f.stable]
        out.append(stable[0] if stable else None)
        prev = [stable[0].state] if stable else []
    return out


def collapse_sweep(p: Params, betas: ArrayLike | None = None) -> xr.Dataset:
    """Steady state vs beta: the stable fixed point at each beta, thresholds marked.

    Parameters
    ----------
    p : Params
        Parameters; ``p.beta`` is replaced by each value of ``betas``.
    betas : array, optional
        Values of beta, > 0 (at beta = 0 D_k -> 0 and no fixed point with Q > 0 exists).
        Default: 60 values up to 1.3 (max rho + eta).

    Returns
    -------
    xarray.Dataset
        Over ``beta``: the order parameters of the stable fixed point (found by root
        finding, continued along beta), eg, rate, distortion, latent_rate (per latent),
        n_learned, n_noise, max_real (slowest eigenvalue). Over ``factor``: the numerical
        ``threshold`` (:func:`linvae.collapse_threshold`) and the ``predicted`` rho_k + eta
        (for factors with a latent, k < M). NaN where no stable fixed point is found.
    """
    p = check_params(p)
    if betas is None:
        betas = np.linspace(0.02, 1.3 * (max(p.rho) + p.eta), 60)
    b = _grid("betas", betas, gt=0.0)
    fps = _stable_along([p.replace(beta=float(x)) for x in b])
    data = fixed_point_data(fps, p, ("beta",), fields=(
        "eg", "rate", "distortion", "latent_rate", "n_learned", "n_noise", "max_real"))
    thr = [float(t) for t in collapse_thresholds(p)]
    data["threshold"] = (("factor",), np.array(thr))
    data["predicted"] = (("factor",), np.array(p.rho) + p.eta)
    ds = xr.Dataset(data, coords={"beta": b, "latent": np.arange(p.M),
                                  "latent2": np.arange(p.M), "factor": np.arange(p.M_star)},
                    attrs={**p.to_attrs(), "finding": "collapse"})
    ds["threshold"].attrs["long_name"] = "numerical collapse threshold in beta"
    ds["predicted"].attrs["long_name"] = "rho_k + eta (docs/model.md#findings, lam = 0)"
    return ds


def phase_diagram(p: Params, betas: ArrayLike | None = None,
                  rhos: ArrayLike | None = None) -> xr.Dataset:
    """Map the (beta, rho) plane for one latent and one factor (M = M* = 1 is imposed).

    The stable fixed points of all points come from one compiled, parallel call
    (:func:`linvae.ode.steady_state_grid`), hence the fine default grid (100 x 61).

    Returns
    -------
    xarray.Dataset
        rate, eg, learned (1 if the stable fixed point has the latent learned, 0 if
        collapsed or noise-fitting, -1 if none is stable) over (rho, beta), and the
        numerical collapse ``threshold`` and ``predicted`` rho + eta over rho.
    """
    p = check_params(p).replace(M=1, M_star=1, rho=1.0)
    if betas is None:
        betas = np.linspace(0.05, 4.0, 100)
    if rhos is None:
        rhos = np.linspace(0.0, 3.0, 61)
    b = _grid("betas", betas, gt=0.0)
    r = _grid("rhos", rhos, ge=0.0)
    steady = steady_state_grid(p, {"rho": r, "beta": b})
    rate, eg = steady["rate"].values, steady["eg"].values
    learned = np.where(steady["stable"].values, steady["n_learned"].values > 0, -1)
    learned = learned.astype(np.int64)
    thr = np.array([float(collapse_threshold(p.replace(rho=float(rho)), 0)) for rho in r])
    ds = xr.Dataset({"rate": (("rho", "beta"), rate), "eg": (("rho", "beta"), eg),
                     "learned": (("rho", "beta"), learned),
                     "threshold": (("rho",), thr), "predicted": (("rho",), r + p.eta)},
                    coords={"rho": r, "beta": b},
                    attrs={**{k: v for k, v in p.to_attrs().items() if k != "rho"},
                           "finding": "phase_diagram"})
    return ds


def optimal_beta(p: Params, rhos: ArrayLike = (0.5, 1.0, 2.0),
                 betas: ArrayLike | None = None, *, xtol: float = 1e-5) -> xr.Dataset:
    """Find the beta that minimises the steady-state eps_g, for several signal strengths rho.

    For M = M* = 1 (imposed), at small tau, the stable fixed point has Q = rho + eta - beta
    and m = sqrt(Q), so the learned decoder equals the true one, and eps_g = 0, at
    beta = eta whatever rho. This finds the minimum numerically: the stable fixed point's
    eps_g on the ``betas`` grid, then a bounded scalar minimisation (to ``xtol`` in beta)
    around the best grid point, continued from its fixed point.

    Returns
    -------
    xarray.Dataset
        eg over (rho, beta), and over rho the numerical minimiser ``beta_opt``, the
        minimum ``eg_min`` and the ``predicted`` optimum eta.
    """
    from scipy.optimize import minimize_scalar

    p = check_params(p).replace(M=1, M_star=1, rho=1.0)
    if betas is None:
        betas = np.linspace(0.05, 2.0 * p.eta + 0.5, 41)
    r = _grid("rhos", rhos, gt=0.0)
    b = _grid("betas", betas, gt=0.0)
    if xtol <= 0:
        raise ValueError(f"xtol must be > 0, got {xtol!r}")
    eg = np.full((r.size, b.size), np.nan)
    opt, eg_min = np.full(r.size, np.nan), np.full(r.size, np.nan)
    for i, rho in enumerate(r):
        pr = p.replace(rho=float(rho))
        fps = _stable_along([pr.replace(beta=float(x)) for x in b])
        eg[i] = [f.eg if f is not None else np.nan for f in fps]
        if np.all(np.isnan(eg[i])):
            continue
        j = int(np.nanargmin(eg[i]))
        lo, hi = b[max(j - 1, 0)], b[min(j + 1, b.size - 1)]
        start = fps[j]
        assert start is not None  # eg[i, j] is finite

        def eg_at(beta: float, pr: Params = pr, start: FixedPoint = start) -> float:
            fps = fixed_points(pr.replace(beta=float(beta)), [start.state], n_random=0,
                               integrate_starts=False)
            stable = [f.eg for f in fps if f.stable]
            return stable[0] if stable else math.inf

        res = minimize_scalar(eg_at, bounds=(lo, hi), method="bounded",
                              options={"xatol": xtol})
        opt[i], eg_min[i] = float(res.x), float(res.fun)
    return xr.Dataset({"eg": (("rho", "beta"), eg), "beta_opt": (("rho",), opt),
                       "eg_min": (("rho",), eg_min),
                       "predicted": (("rho",), np.full(r.size, p.eta))},
                      coords={"rho": r, "beta": b},
                      attrs={**{k: v for k, v in p.to_attrs().items() if k not in ("rho", "beta")},
                             "finding": "optimal_beta"})


@styled
def plot_optimal_beta(ds: xr.Dataset, fig: Figure | None = None) -> Figure:
    """Plot the steady-state eps_g vs beta, one curve per rho.

    The numerical minimum of each curve is marked (circle), and the predicted optimum
    beta = eta (dotted, the optimum as tau -> 0). Where no stable fixed point is found
    the curve is left open.
    """
    if fig is None:
        fig = figure(ncols=1, height=2.8)
    ax = fig.axes[0] if fig.axes else apply_style(fig.add_subplot(1, 1, 1))
    lw = STYLE["linewidth"]
    b = ds["beta"].values
    for c, rho in zip(colors(ds.sizes["rho"]), ds["rho"].values, strict=True):
        sel = ds.sel(rho=rho)
        ax.plot(b, sel["eg"].values, color=c, lw=lw, label=rf"$\rho={rho:g}$")
        ax.plot(float(sel["beta_opt"]), float(sel["eg_min"]), "o", color=c, ms=4.5,
                mec="k", mew=0.6, zorder=3)
    ax.plot([], [], "o", color="0.6", mec="k", mew=0.6, ms=4.5, label="numerical minimum")
    eta = float(ds["predicted"].values[0])
    mark(ax, eta, r"$\beta=\eta$ (theory, $\tau\to0$)")
    ax.set_xlabel(symbol("beta"))
    ax.set_ylabel(r"steady-state $\varepsilon_g$")
    legend(ax)
    return fig


@styled
def plot_collapse(sweep: xr.Dataset, phase: xr.Dataset | None = None,
                  fig: Figure | None = None) -> Figure:
    """eps_g and rate vs beta, overlaps vs beta, and (if given) the phase diagram.

    Thresholds found numerically are dotted vertical lines, named beta_c above the
    axes; the phase diagram shows the
    rate with the numerical threshold (white) over the predicted rho + eta (dashed). The
    curves join the sweep's points: sample densely near the threshold
    (:func:`refine_grid`) for the continuous transition to look continuous.
    """
    ncols = 3 if phase is not None else 2
    if fig is None:
        fig = figure(ncols=ncols)
    axes = fig.axes if len(fig.axes) >= ncols else [apply_style(fig.add_subplot(1, ncols,
                                                                               k + 1))
                                                    for k in range(ncols)]
    lw = STYLE["linewidth"]
    b = sweep["beta"].values
    ax = axes[0]
    ax.plot(b, sweep["eg"].values, color="k", lw=lw, label=symbol("eg"))
    cols = colors(sweep.sizes["latent"])
    for k in range(sweep.sizes["latent"]):
        ax.plot(b, sweep["latent_rate"].values[:, k], color=cols[k], lw=lw, ls="--",
                label=f"rate of latent {k}" if sweep.sizes["latent"] > 1 else "rate")
    thresholds = [float(x) for x in sweep["threshold"].values]
    named = [(thr, r"$\beta_c$" if len(thresholds) == 1 else rf"$\beta_{{c,{k}}}$")
             for k, thr in enumerate(thresholds)]  # marked on panels (a) and (b)
    for thr, text in named:
        mark(ax, thr, text)
    ax.set_xlabel(symbol("beta"))
    ax.set_ylabel("stable fixed point")
    ax.set_title("(a) error and rate")
    legend(ax)
    ax = axes[1]
    M, Ms = sweep.sizes["latent"], sweep.sizes["factor"]
    for k in range(min(M, Ms)):
        ax.plot(b, np.abs(sweep["m"].values[:, k, k]), color=cols[k], lw=lw,
                label=f"$|{symbol('m', (k, k)).strip('$')}|$")
        ax.plot(b, sweep["Q"].values[:, k, k], color=cols[k], lw=lw * 0.8, ls="--",
                label=symbol("Q", (k, k)))
    for k in range(min(M, Ms), M):
        ax.plot(b, sweep["Q"].values[:, k, k], color=cols[k], lw=lw * 0.8, ls="-.",
                label=f"{symbol('Q', (k, k))} (superfluous)")
    for thr, text in named:
        mark(ax, thr, text)
    ax.set_xlabel(symbol("beta"))
    ax.set_ylabel("overlap")
    ax.set_title("(b) overlaps")
    legend(ax)
    if phase is not None:
        ax = axes[2]
        from matplotlib.colors import PowerNorm

        # a power norm: the rate spans decades, and the small values near the boundary matter
        pm = ax.pcolormesh(phase["beta"].values, phase["rho"].values, phase["rate"].values,
                           shading="nearest", cmap=STYLE["cmap"], norm=PowerNorm(0.3),
                           rasterized=True)
        fig.colorbar(pm, ax=ax, label="rate at the stable fixed point")
        ax.plot(phase["threshold"].values, phase["rho"].values, color="w", lw=lw,
                label=r"$\beta_c$ (numerical)")
        ax.plot(phase["predicted"].values, phase["rho"].values, color="k", lw=lw * 0.8,
                ls="--", label=r"$\rho+\eta$")
        ax.set_xlim(float(phase["beta"].min()), float(phase["beta"].max()))
        ax.set_xlabel(symbol("beta"))
        ax.set_ylabel(symbol("rho"))
        ax.set_title(r"(c) phase diagram, $M=M^*=1$")
        ax.grid(False)
        legend(ax)
    return fig


# ---------------------------------------------------------------------------------------
# 2. superfluous latents
# ---------------------------------------------------------------------------------------
def superfluous(p: Params | None = None, betas: ArrayLike | None = None,
                t_max: float = 1000.0, record_every: float = 2.0,
                overlap: float = 0.1) -> xr.Dataset:
    """ODE trajectories with superfluous latents, for beta below and above eta.

    Parameters
    ----------
    p : Params, optional
        Default (M, M*) = (2, 1), rho = eta = 1, tau = 0.2 (docs/model.md#findings). M must
        exceed M*.
    betas : array, optional
        Default (0.5 eta, 1.5 eta).
    t_max, record_every : float
        Length and spacing of the ODE trajectories.
    overlap : float
        Start: :func:`generic_state` (every latent, the superfluous ones included,
        overlaps the factors a little).

    Returns
    -------
    xarray.Dataset
        Over (beta, t): Q, E, R, D of every latent's diagonal (Qkk, Ekk, Rkk, Dk over
        ``latent``), latent_rate, eg, rate; over beta the stable fixed point's Qkk, Rkk,
        Dk, eg (``fp_*``) and its slowest eigenvalue ``max_real``.
    """
    p = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2) if p is None \
        else check_params(p)
    if p.M <= p.M_star:
        raise ValueError(f"superfluous latents need M > M_star, got M={p.M}, "
                         f"M_star={p.M_star}")
    b = _grid("betas", (0.5 * p.eta, 1.5 * p.eta) if betas is None else betas, gt=0.0)
    t_max = check_real("t_max", t_max, gt=0.0)
    record_every = check_real("record_every", record_every, gt=0.0, le=t_max)
    runs, fps = [], []
    for x in b:
        pb = p.replace(beta=float(x))
        ds = integrate(pb, t_max=t_max, init=generic_state(pb, overlap),
                       record_every=record_every, rtol=1e-9, atol=1e-11)
        runs.append(ds)
        st = [f for f in fixed_points(pb, [state_of(ds.isel(t=-1))],
                                      n_random=0, integrate_starts=False) if f.stable]
        fps.append(st[0] if st else None)
    t = runs[0]["t"].values
    diag = {k: np.array([np.diagonal(ds[k].values, axis1=-2, axis2=-1) for ds in runs])
            for k in ("Q", "E", "R")}
    nan = np.full(p.M, np.nan)
    out = xr.Dataset(
        {"Qkk": (("beta", "t", "latent"), diag["Q"]),
         "Ekk": (("beta", "t", "latent"), diag["E"]),
         "Rkk": (("beta", "t", "latent"), diag["R"]),
         "Dk": (("beta", "t", "latent"), np.array([ds["D"].values for ds in runs])),
         "mk": (("beta", "t", "latent"), np.array([np.abs(ds["m"].values).max(axis=-1)
                                                   for ds in runs])),
         "latent_rate": (("beta", "t", "latent"),
                         np.array([latent_rates(ds).values for ds in runs])),
         "eg": (("beta", "t"), np.array([ds["eg"].values for ds in runs])),
         "rate": (("beta", "t"), np.array([ds["rate"].values for ds in runs])),
         "fp_Qkk": (("beta", "latent"), np.array([np.diag(f.state["Q"]) if f else nan
                                                  for f in fps])),
         "fp_Rkk": (("beta", "latent"), np.array([np.diag(f.state["R"]) if f else nan
                                                  for f in fps])),
         "fp_Dk": (("beta", "latent"), np.array([f.state["D"] if f else nan for f in fps])),
         "fp_eg": (("beta",), np.array([f.eg if f else np.nan for f in fps])),
         "max_real": (("beta",), np.array([f.max_real if f else np.nan for f in fps]))},
        coords={"beta": b, "t": t, "latent": np.arange(p.M)},
        attrs={**{k: v for k, v in p.to_attrs().items() if k not in ("beta",
                                                                     "beta_schedule")},
               "finding": "superfluous", "overlap": overlap})
    return out


def superfluous_vs_M(p: Params | None = None, Ms: Sequence[int] = (1, 2, 3),
                     betas: ArrayLike | None = None, delta: float = 1e-3,
                     overlap: float = 0.01) -> xr.Dataset:
    """eps_g at the stable fixed point, convergence time and slowest eigenvalue vs M.

    ``p`` gives M*, rho, eta, tau (default M* = 1, rho = eta = 1, tau = 0.2); each M in
    ``Ms`` (>= 1) and beta in ``betas`` (default 0.5 eta and 1.5 eta) is evaluated. The
    convergence time (:func:`linvae.stability.convergence_time`) starts from
    :func:`generic_state` with the given ``overlap``: the superfluous latents start with
    small overlaps with the factors, as after a random start at finite N. (From
    :func:`linvae.states.overlap_state` they would start with m = 0 exactly, which the ODE
    preserves, and the slowest mode, in which a noise-fitting latent un-learns the
    factor, would never be excited.)
    """
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.2) if p is None \
        else check_params(p)
    Ms = [check_int("Ms[i]", M, ge=1) for M in Ms]
    if not Ms:
        raise ValueError("Ms must not be empty")
    b = _grid("betas", (0.5 * p.eta, 1.5 * p.eta) if betas is None else betas, gt=0.0)
    delta = check_real("delta", delta, gt=0.0)
    shape = (b.size, len(Ms))
    eg, tc, jm, nn = (np.full(shape, np.nan) for _ in range(4))
    for i, x in enumerate(b):
        for j, M in enumerate(Ms):
            pm = p.replace(M=M, beta=float(x))
            det = convergence_time(pm, delta, init=generic_state(pm, overlap),
                                   return_details=True)
            fp = det["fixed_point"]
            eg[i, j], tc[i, j], jm[i, j] = fp.eg, det["t"], fp.max_real
            nn[i, j] = fp.kinds.count("noise")
    return xr.Dataset({"eg": (("beta", "M"), eg), "t_conv": (("beta", "M"), tc),
                       "max_real": (("beta", "M"), jm), "n_noise": (("beta", "M"), nn)},
                      coords={"beta": b, "M": np.asarray(Ms)},
                      attrs={"M_star": p.M_star, "rho": np.array(p.rho), "eta": p.eta,
                             "lam": p.lam, "tau": p.tau, "delta": delta,
                             "overlap": overlap, "finding": "superfluous_vs_M"})


@styled
def plot_superfluous(traj: xr.Dataset, vs_M: xr.Dataset | None = None,
                     fig: Figure | None = None) -> Figure:
    """Plot the extra latent's Q_kk, R_kk and rate over time (beta below/above eta).

    If ``vs_M`` is given, also plot eps_g, convergence time and slowest eigenvalue vs M
    (a 2 x 2 figure).
    """
    from matplotlib.lines import Line2D

    if fig is None:
        fig = figure(ncols=2) if vs_M is None else figure(ncols=2, nrows=2)
    axes = fig.axes
    lw = STYLE["linewidth"]
    Ms = int(np.atleast_1d(traj.attrs["rho"]).size)
    extra = list(range(Ms, traj.sizes["latent"]))
    cols = colors(traj.sizes["beta"])
    t = traj["t"].values
    for c, beta in zip(cols, traj["beta"].values, strict=True):
        sel = traj.sel(beta=beta)
        for k in extra:
            lab = rf"$\beta={beta:g}$" if k == extra[0] else None
            axes[0].plot(t, sel["Qkk"].values[:, k], color=c, lw=lw, label=lab)
            axes[0].plot(t, sel["Rkk"].values[:, k], color=c, lw=lw * 0.8, ls="--")
            axes[0].plot(t, sel["mk"].values[:, k], color=c, lw=lw * 0.8, ls=":")
            axes[1].plot(t, sel["latent_rate"].values[:, k], color=c, lw=lw, label=lab)
    handles, _ = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.4", lw=lw, ls=ls, label=symbol(name)) for ls, name in
                (("-", "Qkk"), ("--", "Rkk"), (":", "mk"))]
    eta = float(traj.attrs["eta"])
    axes[0].set_xlabel(symbol("t"))
    axes[0].set_ylabel("extra latent $k$")
    axes[0].set_title(rf"(a) superfluous latent, $\eta={eta:g}$")
    legend(axes[0], handles=handles)
    axes[1].set_xlabel(symbol("t"))
    axes[1].set_ylabel("rate of the extra latent")
    axes[1].set_title("(b) its rate")
    legend(axes[1])
    if vs_M is not None:
        cols = colors(vs_M.sizes["beta"])
        M = vs_M["M"].values
        for c, beta in zip(cols, vs_M["beta"].values, strict=True):
            sel = vs_M.sel(beta=beta)
            axes[2].plot(M, sel["eg"].values, "o-", color=c, lw=lw, label=rf"$\beta={beta:g}$")
            axes[3].plot(M, sel["t_conv"].values, "o-", color=c, lw=lw,
                         label=rf"$\beta={beta:g}$")
            axes[3].plot(M, -1.0 / sel["max_real"].values, "s--", color=c, lw=lw * 0.7,
                         mfc="none")
        axes[2].set_xlabel("latents $M$")
        axes[2].set_ylabel(r"$\varepsilon_g$ at the stable fixed point")
        axes[2].set_title("(c) error vs $M$")
        legend(axes[2])
        handles, _ = axes[3].get_legend_handles_labels()
        handles += [Line2D([], [], color="0.4", lw=lw, marker="o", label=r"$t_{\rm conv}$"),
                    Line2D([], [], color="0.4", lw=lw * 0.7, ls="--", marker="s", mfc="none",
                           label=r"$-1/J_{\max}$")]
        axes[3].set_xlabel("latents $M$")
        axes[3].set_ylabel(r"$t_{\rm conv}$ and $-1/J_{\max}$")
        axes[3].set_yscale("log")
        axes[3].set_title("(d) convergence time")
        legend(axes[3], handles=handles)
        for ax in axes[2:4]:
            ax.set_xticks(M)
    return fig


# ---------------------------------------------------------------------------------------
# 3. KL annealing
# ---------------------------------------------------------------------------------------
def annealing(p: Params | None = None, gammas: ArrayLike | None = None,
              kinds: Sequence[str] = schedules.RATE_KINDS, delta: float = 1e-3,
              overlap: float = 0.01) -> xr.Dataset:
    """Convergence time vs annealing rate gamma, per schedule, against constant beta.

    Parameters
    ----------
    p : Params, optional
        Default rho = eta = 1, beta = 0.5, tau = 0.5 (docs/model.md#findings). Its beta (or
        its schedule's limit) is beta_inf.
    gammas : array, optional
        Rates gamma > 0; default 16 values from 0.01 to 1, log-spaced.
    kinds : sequence of str
        Schedules, among :data:`linvae.schedules.RATE_KINDS` (see
        :func:`linvae.schedules.make_schedule`).
    delta : float
        Tolerance of :func:`linvae.stability.convergence_time`.
    overlap : float
        Start :func:`linvae.states.overlap_state` with this overlap; the default 0.01 (an
        O(N^-1/2) start, like the authors' random start at N = 10^4) reproduces the times
        61 / 75 / 174 / 60 of docs/model.md#findings.

    Returns
    -------
    xarray.Dataset
        ``t_conv`` over (schedule, gamma); ``t_constant`` (constant beta_inf), and
        ``gamma_star`` = -J_max / 2 (:func:`linvae.stability.annealing_threshold`).
    """
    p = Params(rho=1.0, eta=1.0, beta=0.5, tau=0.5) if p is None else check_params(p)
    g = _grid("gammas", np.geomspace(0.01, 1.0, 16) if gammas is None else gammas, gt=0.0)
    kinds = list(kinds)
    for k in kinds:
        if k not in schedules.RATE_KINDS:
            raise ValueError(f"kinds must be among {schedules.RATE_KINDS}, got {k!r}")
    delta = check_real("delta", delta, gt=0.0)
    beta_inf = p.beta_inf
    p0 = p.replace(beta=beta_inf)
    init = overlap_state(p0, overlap)
    t_const = convergence_time(p0, delta, init=init)
    tc = np.array([[convergence_time(p.replace(beta=schedules.make_schedule(k, beta_inf, float(x))),
                                     delta, init=init) for x in g] for k in kinds])
    gstar = annealing_threshold(p0)
    return xr.Dataset({"t_conv": (("schedule", "gamma"), tc), "t_constant": ((), t_const),
                       "gamma_star": ((), gstar)},
                      coords={"schedule": kinds, "gamma": g},
                      attrs={**{k: v for k, v in p0.to_attrs().items()
                                if k != "beta_schedule"},
                             "beta_inf": beta_inf, "delta": delta, "overlap": overlap,
                             "finding": "annealing"})


@styled
def plot_annealing(ann: xr.Dataset, fig: Figure | None = None) -> Figure:
    """Convergence time vs gamma per schedule; constant beta (dashed) and gamma* (dotted)."""
    if fig is None:
        fig = figure(height=2.8)
    ax = fig.axes[0]
    lw = STYLE["linewidth"]
    g = ann["gamma"].values
    n = ann.sizes["schedule"]
    for c, mk, k in zip(colors(n), markers(n), ann["schedule"].values, strict=True):
        ax.plot(g, ann["t_conv"].sel(schedule=k).values, marker=mk, ms=3.5, color=c, lw=lw,
                label=str(k))
    ax.axhline(float(ann["t_constant"]), color="k", ls="--", lw=lw * 0.8,
               label=r"constant $\beta=\beta_\infty$")
    gs = float(ann["gamma_star"])
    vline(ax, gs, rf"$\gamma^*={gs:.3g}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"annealing rate $\gamma$")
    delta = float(ann.attrs["delta"])
    ax.set_ylabel(rf"convergence time $t_{{\rm conv}}$ ($\delta={delta:g}$)")
    legend(ax, title="schedule" if n > 1 else None)
    return fig


# ---------------------------------------------------------------------------------------
# 4. disentanglement
# ---------------------------------------------------------------------------------------
def disentanglement_score(m: ArrayLike) -> Array:
    """1 - off-diagonal mass / total mass of m, after the best permutation and signs.

    The mass is m_ij^2 (sign-free); the permutation (a latent per factor) maximises the
    diagonal mass (Hungarian algorithm). 1 means every factor is carried by its own
    latent; 1/M* means mass spread evenly. Vectorised over leading axes.
    """
    a = np.asarray(m, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"m must have at least 2 dims (..., M, M_star), got {a.shape}")
    mass = a * a
    flat = mass.reshape(-1, *mass.shape[-2:])
    out = np.empty(flat.shape[0])
    for n, w in enumerate(flat):
        total = w.sum()
        if not np.isfinite(total):
            out[n] = np.nan
            continue
        rows, cols = linear_sum_assignment(-w)
        out[n] = w[rows, cols].sum() / total if total > 0 else np.nan
    return out.reshape(mass.shape[:-2])


def disentanglement(p: Params | None = None, t_max: float = 600.0,
                    record_every: float = 2.0, overlap: float = 0.5,
                    angle: float = 0.6) -> xr.Dataset:
    """ODE from an entangled start (:func:`entangled_state`): m becomes diagonal.

    Default p: M = M* = 2, rho = (3, 1), eta = 1, beta = 1, tau = 0.5 (distinct rho_k are
    needed: with equal rho_k any rotation is a fixed point too). Returns the ODE dataset
    with ``score`` (:func:`disentanglement_score`) over t, and attrs ``max_real`` (the
    slowest eigenvalue at the stable fixed point, which sets the time scale).
    """
    p = Params(M=2, M_star=2, rho=[3.0, 1.0], eta=1.0, beta=1.0, tau=0.5) if p is None \
        else check_params(p)
    ds = integrate(p, t_max=t_max, init=entangled_state(p, overlap, angle),
                   record_every=record_every, rtol=1e-9, atol=1e-11)
    ds["score"] = (("t",), disentanglement_score(ds["m"].values))
    ds["score"].attrs["long_name"] = "disentanglement score"
    st = [f for f in fixed_points(p, [state_of(ds.isel(t=-1))],
                                  n_random=0, integrate_starts=False) if f.stable]
    ds.attrs.update(finding="disentanglement", overlap=overlap, angle=angle,
                    max_real=st[0].max_real if st else math.nan)
    return ds


@styled
def plot_disentanglement(ds: xr.Dataset, fig: Figure | None = None) -> Figure:
    """Entries of m over time (left) and the disentanglement score (right)."""
    if fig is None:
        fig = figure(ncols=2)
    ax0, ax1 = fig.axes[:2]
    lw = STYLE["linewidth"]
    t = ds["t"].values
    M, Ms = ds.sizes["latent"], ds.sizes["factor"]
    cols = colors(M * Ms)
    for n, (i, j) in enumerate(np.ndindex(M, Ms)):
        ax0.plot(t, ds["m"].values[:, i, j], color=cols[n], lw=lw,
                 ls="-" if i == j else "--", label=symbol("m", (i, j)))
    ax0.set_xlabel(symbol("t"))
    ax0.set_ylabel(symbol("m"))
    ax0.set_title("(a) the entries of $m$")
    legend(ax0)
    ax1.plot(t, ds["score"].values, color="k", lw=lw)
    ax1.set_ylim(0.0, 1.05)
    ax1.set_xlabel(symbol("t"))
    ax1.set_ylabel("disentanglement score")
    ax1.set_title("(b) score (1: disentangled)")
    return fig
