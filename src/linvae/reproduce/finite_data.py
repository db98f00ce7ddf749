"""``finite_data``: multi-epoch SGD on P = alpha N samples.

The long-time eps_g, m^2/Q and the training and population losses against alpha, with
the overlap of the samples' top principal component (:func:`linvae.data.pca_overlap`).
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..params import Params
from ..plot import describe, styled, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

# a small learning rate, so that the long-time state is close to the empirical minimum
P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.1)
#: The long-time values of a run, each a (mean, se) over replicas.
KEYS = ("eg", "overlap", "loss", "train_loss")
#: The in-memory entry of the one-pass run (mean and SE over replicas; not written).
ONE_PASS = "finite_data_one_pass"


@dataclass(frozen=True, kw_only=True)
class FiniteDataSettings(Settings):
    """N, replicas and length of the runs; the dataset sizes alpha = P/N and orders."""

    N: int
    replicas: int
    t_max: float
    alphas: tuple[float, ...]
    orders: tuple[Literal["shuffle", "cycle"], ...]


QUICK = FiniteDataSettings(N=500, replicas=8, t_max=200.0, alphas=(0.25, 1.0, 4.0, 16.0),
                           orders=("shuffle",))
FULL = FiniteDataSettings(N=1000, replicas=8, t_max=300.0,
                          alphas=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
                          orders=("shuffle", "cycle"))
TINY = FiniteDataSettings(N=40, replicas=3, t_max=20.0, alphas=(1.0, 4.0),
                          orders=("shuffle", "cycle"))


def _late_means(ds: xr.Dataset) -> dict[str, tuple[float, float]]:
    """Per quantity: the late-time mean per replica, then its mean and SE over replicas."""
    late = slice(-4, None)  # the last 40% of the run: the long-time state
    ok = ~np.asarray(ds["diverged"].values, dtype=bool)
    m, Q = ds["m"].values[ok][:, late, 0, 0], ds["Q"].values[ok][:, late, 0, 0]
    vals = {"eg": ds["eg"].values[ok][:, late], "overlap": m * m / Q,
            "loss": ds["loss"].values[ok][:, late]}
    if "train_loss" in ds:
        vals["train_loss"] = ds["train_loss"].values[ok][:, late]
    return {k: (float(v.mean(axis=1).mean()),
                float(v.mean(axis=1).std(ddof=1) / math.sqrt(v.shape[0])))
            for k, v in vals.items()}


def compute(s: FiniteDataSettings, *, progress: bool, threads: int | None) -> Data:
    """Multi-epoch SGD per alpha and order, one-pass SGD and the ODE's fixed point."""
    import xarray as xr

    from ..simulation import simulate
    from ..stability import stable_fixed_point
    from ..states import overlap_state

    N, R, t_max = int(s.N), int(s.replicas), float(s.t_max)
    alphas = np.asarray(s.alphas, dtype=np.float64)
    orders = tuple(s.orders)
    start = overlap_state(P)
    every = t_max / 10
    res = {o: {k: np.full((alphas.size, 2), np.nan) for k in KEYS} for o in orders}
    for i, a in enumerate(alphas):
        size = max(1, round(a * N))
        for o in orders:
            ds = simulate(P, N, t_max, record_every=every, seeds=R, seed=400 + i, init=start,
                          dataset_size=size, order=o, training_loss=True, threads=threads,
                          progress=progress)
            for k, v in _late_means(ds).items():
                res[o][k][i] = v
    one = _late_means(simulate(P, N, t_max, record_every=every, seeds=R, seed=399, init=start,
                               threads=threads, progress=progress))
    fp = stable_fixed_point(P)
    eg_fp = float(fp.eg)
    m_fp, Q_fp = float(fp.state["m"][0, 0]), float(fp.state["Q"][0, 0])
    data = xr.Dataset(
        {f"{k}_{stat}": (("order", "alpha"), np.array([res[o][k][:, c] for o in orders]))
         for k in KEYS for c, stat in enumerate(("mean", "se"))},
        coords={"order": list(orders), "alpha": alphas},
        attrs={**P.to_attrs(), "N": N, "replicas": R, "t_max": t_max,
               "init": "overlap_state(0.5)", "late_times": "last 40% of the run",
               "one_pass_eg": one["eg"][0], "one_pass_overlap": one["overlap"][0],
               "one_pass_loss": one["loss"][0],
               "ode_eg": eg_fp, "ode_overlap": m_fp * m_fp / Q_fp,
               "description": "long-time eps_g, m^2/Q, population and training loss vs "
               "alpha = P/N, multi-epoch SGD on P samples"})
    one_pass = xr.Dataset({k: (("stat",), np.array(v)) for k, v in one.items()},
                          coords={"stat": ["mean", "se"]})
    return {"finite_data.nc": data, ONE_PASS: one_pass}


@styled
def plot(data: Data, s: FiniteDataSettings) -> Figure:
    """Draw (a) eps_g, (b) m^2/Q with the top principal component, (c) the losses vs alpha.

    One legend for the three panels, under them.
    """
    from matplotlib.lines import Line2D

    from ..data import pca_overlap
    from ..plot import STYLE, figure

    ds, one = data["finite_data.nc"], data[ONE_PASS]
    alphas = ds["alpha"].values
    N, R, t_max = int(s.N), int(s.replicas), float(s.t_max)
    eg_fp, overlap_fp = float(ds.attrs["ode_eg"]), float(ds.attrs["ode_overlap"])
    lw = STYLE["linewidth"] * 0.8

    fig = figure(ncols=3)
    ax_a, ax_b, ax_c = fig.axes
    styles = {"shuffle": ("o", "-", "C0"), "cycle": ("s", "--", "C1")}
    handles: list[Any] = []
    for o in s.orders:
        mk, ls, c = styles[o]
        r = ds.sel(order=o)
        h = ax_a.errorbar(alphas, r["eg_mean"].values, yerr=r["eg_se"].values, marker=mk,
                          ls=ls, color=c, ms=3, lw=lw, label=f"multi-epoch, {o} order")
        handles.append(h)
        ax_b.errorbar(alphas, r["overlap_mean"].values, yerr=r["overlap_se"].values,
                      marker=mk, ls=ls, color=c, ms=3, lw=lw)
        ax_c.plot(alphas, r["loss_mean"].values, marker=mk, ls=ls, color=c, ms=3, lw=lw)
        ax_c.plot(alphas, r["train_loss_mean"].values, marker=mk, ls=ls, color=c, ms=3,
                  lw=lw, alpha=0.6, mfc="none")
    af = np.geomspace(alphas[0], alphas[-1], 200)
    ax_b.plot(af, pca_overlap(af, float(P.rho_vec[0]), P.eta), color="C2", lw=lw * 1.2)
    one_style = {"color": "0.45", "lw": lw * 1.4}
    ode_style = {"color": "k", "ls": (0, (4, 2)), "lw": lw, "zorder": 3}
    for ax, k, fpv in ((ax_a, "eg", eg_fp), (ax_b, "overlap", overlap_fp)):
        ax.axhline(float(one[k][0]), **one_style)
        ax.axhline(fpv, **ode_style)
    ax_c.axhline(float(one["loss"][0]), **one_style)
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:
        ax.set_xscale("log")
        ax.set_xlabel(r"$\alpha = P/N$")
        # the alphas run are the ticks (minor log labels would overprint each other)
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.xaxis.set_minor_formatter(NullFormatter())
    eg = np.asarray(ds["eg_mean"].values, dtype=np.float64)
    if np.all(eg > 0) and eg.max() > 10 * eg.min():  # eps_g falls by decades with alpha
        ax_a.set_yscale("log")
    ax_a.set_ylabel(r"long-time $\varepsilon_g$")
    ax_b.set_ylabel(r"long-time $m^2/Q$")
    ax_c.set_ylabel("long-time loss")
    ax_a.set_title("(a) generalisation error")
    ax_b.set_title("(b) overlap $m^2/Q$")
    ax_c.set_title("(c) loss: population, training")
    handles += [Line2D([], [], **one_style, label="one-pass SGD"),
                Line2D([], [], **ode_style, label="ODE fixed point"),
                Line2D([], [], color="C2", lw=lw * 1.2,
                       label=r"top principal component, (b) ($N\to\infty$, $\tau\to0$)"),
                Line2D([], [], color="0.3", marker="o", ls="none", ms=3,
                       label="population loss, (c)"),
                Line2D([], [], color="0.3", marker="o", ls="none", ms=3, mfc="none",
                       alpha=0.6, label="training loss, (c)")]
    try:
        fig.legend(handles=handles, loc="outside lower center", ncols=3)
    except ValueError:  # matplotlib < 3.7
        fig.legend(handles=handles, loc="lower center", ncols=3)
    suptitle(fig, r"Multi-epoch SGD on $P=\alpha N$ samples",
             f"$N={N}$, {R} replicas, $t={t_max:g}$ (${t_max:g}/\\alpha$ epochs); "
             f"{describe(P.to_attrs())}")
    return fig


def parameters(data: Data, s: FiniteDataSettings) -> str:
    """Return the model, the runs, one-pass SGD and the ODE's fixed point."""
    ds, one = data["finite_data.nc"], data[ONE_PASS]
    return (f"{P}, N = {int(s.N)}, start overlap_state(0.5), {int(s.replicas)} replicas, "
            f"t ≤ {float(s.t_max):g} (t/α epochs); long-time values are means over the last "
            f"40% of the run, ± SE over replicas. One-pass SGD: ε_g = "
            f"{float(one['eg'][0]):.4f} ± {float(one['eg'][1]):.4f}, m²/Q = "
            f"{float(one['overlap'][0]):.4f}, loss = {float(one['loss'][0]):.4f}; "
            f"ODE fixed point ε_g = {float(ds.attrs['ode_eg']):.4f}, "
            f"m²/Q = {float(ds.attrs['ode_overlap']):.4f}.")


def summary(data: Data, s: FiniteDataSettings) -> list[str]:
    """Per alpha and order: the long-time values next to the top principal component."""
    from ..data import pca_overlap

    ds = data["finite_data.nc"]
    alphas = ds["alpha"].values
    pc = pca_overlap(alphas, float(P.rho_vec[0]), P.eta)
    rows = []
    for i, a in enumerate(alphas):
        for o in s.orders:
            r = {k: ds[k].sel(order=o).values for k in ds.data_vars}
            rows.append([f"{a:g}", o, f"{r['eg_mean'][i]:.4f} ± {r['eg_se'][i]:.4f}",
                         f"{r['overlap_mean'][i]:.4f} ± {r['overlap_se'][i]:.4f}",
                         f"{pc[i]:.4f}", f"{r['loss_mean'][i]:.4f}",
                         f"{r['train_loss_mean'][i]:.4f}"])
    return ["", ("m²/Q is compared with cos² of the top principal component of the P "
                 "samples and W* (`pca_overlap`, N → ∞), which SGD learns as τ → 0."), "",
            *table(["α = P/N", "order", "ε_g", "m²/Q", "top PC cos²", "population loss",
                    "training loss"], rows)]


FAMILY = register(FigureFamily(
    name="finite_data", title="Multi-epoch SGD on a finite dataset",
    about="multi-epoch SGD: long-time eps_g and m^2/Q vs alpha = P/N",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
