"""``finite_data_statics``: the minimum of the training loss on P = alpha N samples.

(a) the (alpha, beta) phase diagram of collapse, with the population threshold
rho + eta; (b) eps_g and (c) the training and population losses against alpha at fixed
beta; (d) the rate-distortion curves for several alpha. The lines are the theory as
N -> infinity (:func:`linvae.stability.training_minimum`); long multi-epoch SGD runs are
points on them, with the per-dataset prediction for the same replicas
(:func:`linvae.stability.dataset_spectrum`).
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..params import Params
from ..plot import describe, styled, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5)
#: SGD runs at these two step sizes on the same datasets, extrapolated to tau -> 0.
TAUS = (0.1, 0.05)
#: What each run gives per replica, from SGD and from the per-dataset theory.
KEYS = ("Q", "eg", "train", "loss", "rate", "distortion")
#: (rho, eta) of the summary's table of thresholds.
TABLE = ((1.0, 1.0), (2.0, 1.0), (0.5, 1.0))
TABLE_ALPHAS = (0.5, 1.0, 2.0, 4.0, 16.0)
#: alpha rho^2 / eta^2 from which the outlier stands clear of the bulk (4 times the BBP
#: point's): the summary reports the disagreements on each side of it.
SEPARATED = 4.0


@dataclass(frozen=True, kw_only=True)
class StaticsSettings(Settings):
    """N, replicas and run length (tau t); the alphas and betas of the SGD points."""

    N: int
    replicas: int
    tau_t: float
    alphas: tuple[float, ...]
    phase_alphas: tuple[float, ...]
    rd_alphas: tuple[float, ...]
    rd_betas: tuple[float, ...]


FULL = StaticsSettings(N=300, replicas=4, tau_t=50.0, alphas=(1.5, 2.0, 4.0, 8.0, 16.0),
                       phase_alphas=(0.5, 2.0, 8.0), rd_alphas=(2.0, 8.0),
                       rd_betas=(0.25, 1.0, 1.6))
QUICK = StaticsSettings(N=150, replicas=3, tau_t=50.0, alphas=(2.0, 4.0, 16.0),
                        phase_alphas=(0.5, 4.0), rd_alphas=(4.0,), rd_betas=(0.25, 1.2))
TINY = StaticsSettings(N=60, replicas=2, tau_t=10.0, alphas=(2.0, 8.0), phase_alphas=(4.0,),
                       rd_alphas=(4.0,), rd_betas=(1.0,))


def _phase_betas(alpha: float) -> tuple[float, float]:
    """Return two betas: one alive only with finite data, one collapsed.

    The first lies between rho + eta and the finite-alpha threshold, the second above it.
    """
    from ..stability import collapse_threshold

    bc, pop = float(collapse_threshold(P, alpha=alpha)), P.rho[0] + P.eta
    return pop + 0.5 * (bc - pop), bc + 0.3


def _point(p: Params, alpha: float, s: StaticsSettings, seed: int, *, threads: int | None,
           progress: bool) -> dict[str, np.ndarray]:
    """Per replica: SGD extrapolated to tau -> 0 (row 0) and the per-dataset theory (row 1)."""
    from ..data import DataSpec
    from ..simulation import simulate
    from ..stability import dataset_spectrum, training_minimum
    from ..states import overlap_state

    N, R, size = int(s.N), int(s.replicas), max(1, round(alpha * s.N))
    runs = []
    for tau in TAUS:
        t = float(s.tau_t) / tau
        ds = simulate(p.replace(tau=tau), N, t, record_every=t / 10, seeds=R, seed=seed,
                      init=overlap_state(p, 0.5), data=DataSpec(dataset_size=size,
                                                                training_loss=True),
                      threads=threads, progress=progress)
        late = ds.isel(t=slice(-3, None)).where(~ds["diverged"]).mean("t")
        runs.append({"Q": late["Q"].values[:, 0, 0], "eg": late["eg"].values,
                     "train": late["train_loss"].values, "loss": late["loss"].values,
                     "rate": late["rate"].values, "distortion": late["distortion"].values})
    sgd = {k: 2.0 * runs[1][k] - runs[0][k] for k in KEYS}
    per = [training_minimum(p, spectrum=dataset_spectrum(p, N, size, seed=seed, replica=r,
                                                         threads=threads))
           for r in range(R)]
    theory = {"Q": [t.state["Q"][0, 0] for t in per], "eg": [t.eg for t in per],
              "train": [t.train["loss"] for t in per],
              "loss": [t.population["loss"] for t in per],
              "rate": [t.population["rate"] for t in per],
              "distortion": [t.population["distortion"] for t in per]}
    return {k: np.stack([sgd[k], np.asarray(theory[k])]) for k in KEYS}


def _runs(points: list[tuple[float, float]], s: StaticsSettings, seed: int, *,
          threads: int | None, progress: bool) -> xr.Dataset:
    import xarray as xr

    res = [_point(P.replace(beta=b), a, s, seed + i, threads=threads, progress=progress)
           for i, (a, b) in enumerate(points)]
    return xr.Dataset(
        {k: (("point", "source", "replica"), np.array([r[k] for r in res])) for k in KEYS},
        coords={"alpha": ("point", [a for a, _ in points]),
                "beta": ("point", [b for _, b in points]),
                "source": ["sgd", "dataset"]})


def _theory(alphas: np.ndarray, betas: np.ndarray) -> xr.Dataset:
    """Return the N -> infinity minimum on an (alpha, beta) grid (alpha = inf: population)."""
    import xarray as xr

    from ..stability import training_minimum

    out = {k: np.empty((alphas.size, betas.size)) for k in KEYS}
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            t = training_minimum(P.replace(beta=float(b)), None if math.isinf(a) else float(a))
            vals = {"Q": t.state["Q"][0, 0], "eg": t.eg, "train": t.train["loss"],
                    "loss": t.population["loss"], "rate": t.population["rate"],
                    "distortion": t.population["distortion"]}
            for k in KEYS:
                out[k][i, j] = vals[k]
    return xr.Dataset({k: (("alpha", "beta"), v) for k, v in out.items()},
                      coords={"alpha": alphas, "beta": betas})


def compute(s: StaticsSettings, *, progress: bool, threads: int | None) -> Data:
    """SGD points (tau -> 0) with their per-dataset predictions, and the theory lines."""
    import xarray as xr

    from ..stability import collapse_threshold, noise_threshold

    b0 = float(P.beta_inf)
    line = np.geomspace(0.1, 100.0, 121)
    phase = xr.Dataset(
        {"beta_c": ("alpha", [float(collapse_threshold(P, alpha=a)) for a in line]),
         "beta_noise": ("alpha", [float(noise_threshold(P, alpha=a)) for a in line])},
        coords={"alpha": line})
    along = np.geomspace(min(s.alphas) / 1.2, max(s.alphas) * 1.2, 60)
    rd_betas = np.linspace(0.05, 2.0 + 0.6, 80)
    curves = _theory(along, np.array([b0]))
    rd = _theory(np.array([*s.rd_alphas, math.inf]), rd_betas)
    pts = [(a, b0) for a in s.alphas]
    pts += [(a, b) for a in s.phase_alphas for b in _phase_betas(a)]
    pts += [(a, b) for a in s.rd_alphas for b in s.rd_betas]
    runs = _runs(pts, s, seed=900, threads=threads, progress=progress)
    attrs = {**P.to_attrs(), "N": int(s.N), "replicas": int(s.replicas),
             "taus": list(TAUS), "tau_t": float(s.tau_t), "init": "overlap_state(0.5)",
             "description": "multi-epoch SGD extrapolated to tau -> 0 against the minimum "
             "of the training loss (N -> infinity and per dataset)"}
    runs.attrs.update(attrs)
    return {"finite_data_statics.nc": runs, "finite_data_statics_phase.nc": phase,
            "finite_data_statics_alpha.nc": curves, "finite_data_statics_rd.nc": rd}


def _mean_se(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.sum(np.isfinite(v), axis=-1)
    return np.nanmean(v, axis=-1), np.nanstd(v, axis=-1, ddof=1) / np.sqrt(np.maximum(n, 1))


@styled
def plot(data: Data, s: StaticsSettings) -> Figure:
    """Draw the four panels, with one legend under them."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ..plot import STYLE, colors, figure, mark

    runs, phase = data["finite_data_statics.nc"], data["finite_data_statics_phase.nc"]
    curves, rd = data["finite_data_statics_alpha.nc"], data["finite_data_statics_rd.nc"]
    b0, pop = float(P.beta_inf), P.rho[0] + P.eta
    lw = STYLE["linewidth"]
    fig = figure(ncols=2, nrows=2)
    ax_a, ax_b, ax_c, ax_d = fig.axes
    theory: dict[str, Any] = {"color": "k", "lw": lw}
    sgd: dict[str, Any] = {"marker": "o", "ls": "none", "ms": 4, "color": "C0", "capsize": 1.5}
    per: dict[str, Any] = {"marker": "x", "ls": "none", "ms": 5, "color": "C3", "mew": 1.2}

    # (a) the phase diagram
    al = phase["alpha"].values
    ax_a.plot(al, phase["beta_c"].values, **theory)
    ax_a.plot(al, phase["beta_noise"].values, color="0.35", lw=lw, ls="--")
    ax_a.fill_between(al, phase["beta_c"].values, float(phase["beta_c"].max()) * 1.05,
                      color="0.9", lw=0)
    ax_a.axhline(pop, color="0.5", lw=lw * 0.8, ls=":")
    ax_a.axhline(P.eta, color="0.5", lw=lw * 0.8, ls=":")
    Qm, Qse = _mean_se(runs["Q"].sel(source="sgd").values)
    alive = Qm > np.maximum(3.0 * Qse, 0.02)  # SGD's latent is alive at this point
    pa, pb = runs["alpha"].values, runs["beta"].values
    ax_a.plot(pa[alive], pb[alive], "o", color="C0", ms=4)
    ax_a.plot(pa[~alive], pb[~alive], "o", color="C0", ms=4, mfc="none")
    ax_a.set_xscale("log")
    mark(ax_a, (P.eta / P.rho[0]) ** 2, "BBP")
    ax_a.set_ylim(0.0, min(float(phase["beta_c"].max()) * 1.05, 8.0))
    ax_a.set_xlabel(r"$\alpha = P/N$")
    ax_a.set_ylabel(r"$\beta$")
    ax_a.set_title("(a) collapse: where the latent dies")

    # (b) eps_g and (c) the losses against alpha, at beta = b0
    at = runs.where(runs["beta"] == b0, drop=True).sortby("alpha")
    a_pts = at["alpha"].values
    ac = curves["alpha"].values
    ax_b.plot(ac, curves["eg"].values[:, 0], **theory)
    for ax, k, ls in ((ax_b, "eg", "-"), (ax_c, "loss", "-"), (ax_c, "train", "--")):
        if ax is ax_c:
            ax.plot(ac, curves[k].values[:, 0], color="k", lw=lw, ls=ls)
        m, se = _mean_se(at[k].sel(source="sgd").values)
        fill = "C0" if k != "train" else "none"
        ax.errorbar(a_pts, m, yerr=se, **{**sgd, "mfc": fill})
        ax.plot(a_pts, np.nanmean(at[k].sel(source="dataset").values, axis=-1), **per)
    from ..stability import training_minimum

    ax_b.axhline(training_minimum(P).eg, color="0.5", lw=lw * 0.8, ls=":")
    from matplotlib.ticker import NullFormatter

    for ax in (ax_b, ax_c):
        ax.set_xscale("log")
        ax.set_xlabel(r"$\alpha = P/N$")
        # the alphas run are the ticks (minor log labels would overprint each other)
        ax.set_xticks(a_pts, [f"{a:g}" for a in a_pts])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_b.set_yscale("log")
    ax_b.set_ylabel(r"$\varepsilon_g$")
    ax_b.set_title(r"(b) generalisation error, $\beta=" + f"{b0:g}$")
    ax_c.set_ylabel("loss")
    ax_c.set_title("(c) population (solid), training (dashed)")

    # (d) rate-distortion curves
    cols = colors(len(s.rd_alphas) + 1)
    for i, a in enumerate([*s.rd_alphas, math.inf]):
        r = rd.sel(alpha=a)
        live = r["rate"].values > 0
        ax_d.plot(r["rate"].values[live], r["distortion"].values[live], color=cols[i], lw=lw,
                  ls="-" if math.isfinite(a) else ":")
        if math.isinf(a):
            continue
        pts = runs.where((runs["alpha"] == a) & np.isin(runs["beta"], s.rd_betas), drop=True)
        for src, style in (("sgd", sgd), ("dataset", per)):
            x = np.nanmean(pts["rate"].sel(source=src).values, axis=-1)
            y = np.nanmean(pts["distortion"].sel(source=src).values, axis=-1)
            kw: dict[str, Any] = {k: v for k, v in style.items() if k != "capsize"}
            ax_d.plot(x, y, **{**kw, "color": cols[i] if src == "sgd" else kw["color"]})
    ax_d.set_xlabel("rate (population)")
    ax_d.set_ylabel("distortion (population)")
    ax_d.set_title(r"(d) rate-distortion, $\beta$ varied")

    handles = [Line2D([], [], **theory, label=r"theory, $N\to\infty$, $\tau\to0$"),
               Patch(color="0.9", label="(a) collapsed (theory)"),
               Line2D([], [], color="0.35", lw=lw, ls="--",
                      label="(a) noise fitting of a superfluous latent"),
               Line2D([], [], color="0.5", lw=lw * 0.8, ls=":",
                      label=r"population ($\alpha\to\infty$): $\rho+\eta$, $\eta$, $\varepsilon_g$"),
               Line2D([], [], marker="o", ls="none", ms=4, color="C0",
                      label=r"SGD, extrapolated to $\tau\to0$ (open: collapsed, training loss)"),
               Line2D([], [], **per, label="per-dataset theory, same replicas")]
    handles += [Line2D([], [], color=cols[i], lw=lw, label=rf"(d) $\alpha={a:g}$")
                for i, a in enumerate(s.rd_alphas)]
    handles.append(Line2D([], [], color=cols[-1], lw=lw, ls=":",
                          label=r"(d) $\alpha\to\infty$"))
    try:
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
    except ValueError:  # matplotlib < 3.7
        fig.legend(handles=handles, loc="lower center", ncols=2)
    t_hi = float(s.tau_t) / TAUS[1]
    suptitle(fig, r"The minimum of the training loss on $P=\alpha N$ samples",
             f"$N={int(s.N)}$, {int(s.replicas)} replicas, SGD at $\\tau={TAUS[0]:g}$ and "
             f"${TAUS[1]:g}$ up to $t={t_hi:g}$; {describe(P.to_attrs(), swept=('tau', 'beta'))}")
    return fig


def _worst(runs: xr.Dataset) -> dict[tuple[str, bool], tuple[float, float]]:
    """Return the largest |SGD - theory| per quantity, far from or near the BBP point.

    For each, against the N -> infinity theory and against the per-dataset theory, over
    the points and replicas.
    """
    from ..stability import training_minimum

    out: dict[tuple[str, bool], tuple[float, float]] = {}
    for i in range(runs.sizes["point"]):
        pt = runs.isel(point=i)
        a, b = float(pt["alpha"]), float(pt["beta"])
        above = a * P.rho[0] ** 2 >= SEPARATED * P.eta ** 2
        th = training_minimum(P.replace(beta=b), a)
        theory = {"Q": th.state["Q"][0, 0], "eg": th.eg, "train": th.train["loss"]}
        for k, val in theory.items():
            sgd, per = pt[k].sel(source="sgd").values, pt[k].sel(source="dataset").values
            w = out.get((k, above), (0.0, 0.0))
            out[k, above] = (max(w[0], float(np.nanmax(np.abs(sgd - val)))),
                             max(w[1], float(np.nanmax(np.abs(sgd - per)))))
    return out


def parameters(data: Data, s: StaticsSettings) -> str:
    """Return the model and the runs."""
    return (f"{P} (β varied in (a) and (d)), N = {int(s.N)}, {int(s.replicas)} replicas, "
            f"start overlap_state(0.5). Each SGD point is two runs on the same datasets, at "
            f"τ = {TAUS[0]:g} and {TAUS[1]:g} up to τt = {float(s.tau_t):g}, extrapolated "
            f"to τ → 0 (2 X(τ/2) − X(τ)) from the means over their last three records.")


def summary(data: Data, s: StaticsSettings) -> list[str]:
    """Return the thresholds at a few (rho, eta, alpha), then the worst disagreements."""
    from ..stability import collapse_threshold, noise_threshold

    rows = []
    for rho, eta in TABLE:
        p = P.replace(rho=rho, eta=eta)
        rows.append([f"{rho:g}", f"{eta:g}", "latent of the factor",
                     *(f"{float(collapse_threshold(p, alpha=a)):.4f}" for a in TABLE_ALPHAS),
                     f"{rho + eta:g}"])
        rows.append([f"{rho:g}", f"{eta:g}", "superfluous latent",
                     *(f"{float(noise_threshold(p, alpha=a)):.4f}" for a in TABLE_ALPHAS),
                     f"{eta:g}"])
    worst = _worst(data["finite_data_statics.nc"])
    names = {"Q": "Q", "eg": "ε_g", "train": "training loss"}
    side = {True: f"α ρ²/η² ≥ {SEPARATED:g}", False: f"α ρ²/η² < {SEPARATED:g}"}
    return ["", ("Collapse thresholds in β of the minimum of the training loss (N → ∞, "
                 "λ = 0): a latent is alive below them."), "",
            *table(["ρ", "η", "latent", *(f"α = {a:g}" for a in TABLE_ALPHAS), "α → ∞"],
                   rows),
            "", ("Worst disagreement over every SGD point and replica (SGD extrapolated to "
                 "τ → 0; the N → ∞ theory also carries the sample-to-sample scatter at this "
                 "N):"), "",
            *table(["quantity", "points", "vs N → ∞ theory", "vs per-dataset theory"],
                   [[names[k], side[above], f"{w[0]:.4f}", f"{w[1]:.4f}"]
                    for (k, above), w in sorted(worst.items(), key=lambda kv: not kv[0][1])]),
            "", (f"Below α ρ²/η² = {SEPARATED:g} the outlier is close to the bulk (the BBP "
                 "point is at 1), and in the bulk the top eigenvalues of the samples are "
                 "O(N^-2/3) apart. Within the run SGD reaches the span of the top few "
                 "eigenvectors, not the top one: Q and the training loss still match, the "
                 "overlap m (hence ε_g) less so.")]


FAMILY = register(FigureFamily(
    name="finite_data_statics", title="The minimum of the training loss on a finite dataset",
    about="finite data: collapse threshold, errors and rate-distortion vs alpha = P/N",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
