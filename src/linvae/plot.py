"""Figures for SGD-vs-ODE comparisons, drawn on matplotlib Figure/Axes objects.

Nothing here uses pyplot's global state: :func:`figure` builds a
``matplotlib.figure.Figure`` directly, which works under any backend (Agg included) and
can be saved with ``fig.savefig``; every function also draws on an ``ax`` you pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["apply_style", "figure", "plot_gaps", "plot_trajectories"]

#: Small consistent style: applied per axes, never to matplotlib's global rcParams.
STYLE: dict[str, Any] = {"grid_alpha": 0.3, "linewidth": 1.6, "band_alpha": 0.2,
                         "fontsize": 9, "cmap": "viridis"}


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2,
           height: float = 3.2) -> Figure:
    """A Figure with a grid of styled axes (``fig.axes`` in row-major order)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    for k in range(nrows * ncols):
        apply_style(fig.add_subplot(nrows, ncols, k + 1))
    return fig


def apply_style(ax: Axes) -> Axes:
    """Grid, tick label size and no top/right spines."""
    ax.grid(True, alpha=STYLE["grid_alpha"])
    ax.tick_params(labelsize=STYLE["fontsize"])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def _new_ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else figure().axes[0]


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps[STYLE["cmap"]]
    return [cmap(x) for x in np.linspace(0.15, 0.85, max(n, 1))]


def _default_entries(da: xr.DataArray) -> list[tuple[int, ...]]:
    """All entries if few (<= 6), else the diagonal of a matrix variable."""
    shape = tuple(da.sizes[d] for d in da.dims if d not in ("replica", "t"))
    if not shape:
        return [()]
    every = [tuple(int(i) for i in ix) for ix in np.ndindex(*shape)]
    if len(shape) == 2 and len(every) > 6:
        return [(i, i) for i in range(min(shape))]
    return every


def _n_label(N: int) -> str:
    """N as written by hand: 16000, but 1e8 rather than 100000000."""
    text = str(int(N))
    return f"1e{len(text) - 1}" if int(N) >= 10**5 and text.rstrip("0") == "1" else text


def _entry(da: xr.DataArray, idx: tuple[int, ...]) -> xr.DataArray:
    dims = [d for d in da.dims if d not in ("replica", "t")]
    return da.isel(dict(zip(dims, idx, strict=True)))


def plot_trajectories(ode: xr.Dataset, sims: Mapping[int, xr.Dataset], variable: str = "m",
                      entries: Sequence[tuple[int, ...]] | None = None,
                      ax: Axes | None = None) -> Axes:
    """ODE trajectory (black) vs SGD replica mean +- one standard deviation per N.

    Diverged replicas (``diverged`` variable) are left out of the mean and spread.
    """
    ax = _new_ax(ax)
    if variable not in ode:
        raise ValueError(f"variable must be one of the dataset's variables, got {variable!r}")
    idxs = list(entries) if entries is not None else _default_entries(ode[variable])
    colors = _colors(len(sims))
    lw = STYLE["linewidth"]
    labelled: list[float] = []
    span = float(np.ptp(ode[variable].values)) or 1.0
    for k, idx in enumerate(idxs):
        first = k == 0
        for c, (N, sim) in zip(colors, sorted(sims.items()), strict=True):
            da = _entry(sim[variable], idx)
            if "diverged" in sim and "replica" in da.dims:
                da = da.isel(replica=np.flatnonzero(~sim["diverged"].values.astype(bool)))
            t = sim["t"].values
            if "replica" in da.dims:
                mean, sd = da.mean("replica").values, da.std("replica").values
                ax.fill_between(t, mean - sd, mean + sd, color=c, alpha=STYLE["band_alpha"],
                                lw=0)
            else:
                mean = da.values
            how = " Gram chain" if sim.attrs.get("method") == "gram" else ""
            ax.plot(t, mean, color=c, lw=lw * 0.8, ls="--",
                    label=f"SGD N={_n_label(N)}{how} (mean ± sd)" if first else None)
        ax.plot(ode["t"].values, _entry(ode[variable], idx).values, color="k", lw=lw,
                label="ODE" if first else None)
        y_end = float(_entry(ode[variable], idx)[-1])
        if idx and all(abs(y_end - y) > 0.03 * span for y in labelled):
            # label the entry at the end of its ODE line, unless it would overprint one
            labelled.append(y_end)
            ax.annotate(f"{variable}[{','.join(map(str, idx))}]",
                        (float(ode["t"].values[-1]), y_end),
                        fontsize=STYLE["fontsize"] - 1, xytext=(2, 0),
                        textcoords="offset points", va="center")
    ax.set_xlabel("t = steps / N")
    ax.set_ylabel(variable)
    ax.legend(fontsize=STYLE["fontsize"] - 1, frameon=False)
    return ax


def plot_gaps(gaps: xr.Dataset, stat: str = "rms", variables: Sequence[str] | None = None,
              exponents: xr.Dataset | None = None, prefactors: xr.Dataset | None = None,
              ax: Axes | None = None) -> Axes:
    """SGD-ODE gap vs N on log-log axes, with fitted lines and an N^-1/2 guide.

    If ``gaps`` has the coordinate ``method`` (:func:`linvae.compare`), the points of
    the Gram chain are drawn open and those of the weights filled.
    """
    ax = _new_ax(ax)
    if stat not in gaps:
        raise ValueError(f"stat must be one of {list(gaps.data_vars)}, got {stat!r}")
    N = np.asarray(gaps["N"].values, dtype=np.float64)
    names = list(variables) if variables is not None else [str(v) for v in
                                                           gaps["variable"].values]
    colors = _colors(len(names))
    Nfine = np.geomspace(N.min(), N.max(), 50)
    gram = (np.asarray(gaps["method"].values) == "gram") if "method" in gaps.coords \
        else np.zeros(N.size, dtype=bool)
    for c, v in zip(colors, names, strict=True):
        g = gaps[stat].sel(variable=v).values
        label = v
        if exponents is not None:
            label += f" (slope {float(exponents[stat].sel(variable=v)):.2f})"
        ax.loglog(N[~gram], g[~gram], "o", color=c, label=label if not gram.all() else None)
        ax.loglog(N[gram], g[gram], "o", mfc="none", color=c,
                  label=label if gram.all() else None)
        if exponents is not None and prefactors is not None:
            e = float(exponents[stat].sel(variable=v))
            a = float(prefactors[stat].sel(variable=v))
            if np.isfinite(e) and np.isfinite(a):
                ax.loglog(Nfine, a * Nfine**e, color=c, lw=STYLE["linewidth"] * 0.7)
    # the guide passes through the geometric mean of all gaps at the geometric mean of N
    vals = np.asarray(gaps[stat].sel(variable=names).values, dtype=np.float64)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        n0, g0 = np.exp(np.mean(np.log(N))), np.exp(np.mean(np.log(vals)))
        ax.loglog(Nfine, g0 * (Nfine / n0) ** -0.5, "k:", lw=STYLE["linewidth"],
                  label="∝ N^-1/2")
    if gram.any() and not gram.all():
        ax.plot([], [], "o", color="0.4", label="weights")
        ax.plot([], [], "o", mfc="none", color="0.4", label="Gram chain")
    from matplotlib.ticker import NullFormatter

    if N.max() / N.min() <= 1e3:
        # label exactly the N used; log-axis minor labels would overprint each other
        ax.set_xticks(N, [f"{int(n)}" for n in N])
        ax.xaxis.set_minor_formatter(NullFormatter())
    # wider ranges keep the decades of the log axis: the N's labels would collide
    ax.set_xlabel("N")
    ax.set_ylabel(f"{stat} |SGD - ODE|")
    # the gaps fall from upper left to lower right: the upper right corner is free
    n_entries = len(ax.get_legend_handles_labels()[1])
    if n_entries > 4:  # head room above the points for the legend
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (hi / lo) ** 0.5)
    ax.legend(fontsize=STYLE["fontsize"] - 2, frameon=False, loc="upper right",
              ncols=2 if n_entries > 6 else 1, columnspacing=0.8, handletextpad=0.3)
    return ax
