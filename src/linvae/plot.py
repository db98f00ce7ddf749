"""Figures for SGD-vs-ODE comparisons, drawn on matplotlib Figure/Axes objects.

Nothing here uses pyplot's global state: :func:`figure` builds a
``matplotlib.figure.Figure`` directly, which works under any backend (Agg included) and
can be saved with ``fig.savefig``; every function also draws on an ``ax`` you pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._moved import forward
from .params import Params

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["BAND_SD", "STANDARD", "STYLE", "THEORY_LABEL", "apply_style", "axis_label", "colors",
           "describe", "figure", "n_label", "plot_gaps", "plot_result", "plot_trajectories",
           "save_figure", "suptitle", "vline"]

#: Small consistent style: applied per axes, never to matplotlib's global rcParams.
STYLE: dict[str, Any] = {"grid_alpha": 0.3, "linewidth": 1.6, "band_alpha": 0.2,
                         "fontsize": 9, "cmap": "viridis"}

#: Half-width of every spread band, in standard deviations: the replicas' mean +- 2 sd and
#: the theory's ODE +- 2 sigma / sqrt(N) (about 95% of the runs for a Gaussian spread).
BAND_SD = 2
#: Legend entry of the predicted band (docs/model.md#fluctuations).
THEORY_LABEL = f"ODE ± {BAND_SD}σ/√N (theory)"

#: Names that used to live here: the module that has them now (the theory is computed
#: there, the figures only draw it).
_MOVED = {"predicted_spread": "finite_n"}


if TYPE_CHECKING:  # type checkers see the moved names, and no __getattr__ hiding typos
    from .finite_n import predicted_spread  # noqa: F401 - for type checkers
else:
    __getattr__ = forward(__name__, _MOVED)


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2,
           height: float = 3.2) -> Figure:
    """Return a Figure with a grid of styled axes (``fig.axes`` in row-major order)."""
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


def colors(n: int) -> list[Any]:
    """``n`` colours spread over the style's colormap."""
    from matplotlib import colormaps

    cmap = colormaps[STYLE["cmap"]]
    return [cmap(x) for x in np.linspace(0.15, 0.85, max(n, 1))]


def vline(ax: Axes, x: float, label: str | None, color: Any = "k") -> None:
    """Draw a dotted vertical marker at ``x``.

    Nothing is drawn if ``x`` is not finite (e.g. no threshold).
    """
    if np.isfinite(x):
        ax.axvline(x, color=color, ls=":", lw=STYLE["linewidth"] * 0.8, label=label)


def axis_label(ds: xr.Dataset, name: str) -> str:
    """Return the axis label of variable ``name``, from its ``long_name``.

    A long name that defines the symbol ("decoder-teacher overlap m = W^T W*/N") gives
    the definition alone ("m = W^T W*/N"), short enough for a panel of a grid.
    """
    if name not in ds:
        return name
    long_name = str(ds[name].attrs.get("long_name", name))
    at = long_name.find(f" {name} = ")
    return long_name[at + 1:] if at >= 0 else long_name


def _default_entries(da: xr.DataArray) -> list[tuple[int, ...]]:
    """All entries if few (<= 6), else the diagonal of a matrix variable."""
    shape = tuple(da.sizes[d] for d in da.dims if d not in ("replica", "t"))
    if not shape:
        return [()]
    every = [tuple(int(i) for i in ix) for ix in np.ndindex(*shape)]
    if len(shape) == 2 and len(every) > 6:
        return [(i, i) for i in range(min(shape))]
    return every


def n_label(N: int) -> str:
    """N as written by hand: 16000, but 1e8 rather than 100000000."""
    text = str(int(N))
    return f"1e{len(text) - 1}" if int(N) >= 10**5 and text.rstrip("0") == "1" else text


def _entry(da: xr.DataArray, idx: tuple[int, ...]) -> xr.DataArray:
    dims = [d for d in da.dims if d not in ("replica", "t")]
    return da.isel(dict(zip(dims, idx, strict=True)))


def _theory_sd(theory: xr.Dataset | None, variable: str, N: int) -> xr.DataArray | None:
    """Return the predicted sd of ``variable`` at N from ``theory``: its ``<variable>_sd``.

    Either along a dim N (:attr:`linvae.Comparison.spread`) or at the single N of
    ``attrs["N"]`` (:func:`linvae.fluctuations`), scaled by sqrt(N0 / N).
    """
    name = f"{variable}_sd"
    if theory is None or name not in theory:
        return None
    sd = theory[name]
    if "N" in sd.dims:
        if int(N) not in {int(n) for n in sd["N"].values}:
            return None
        return sd.sel(N=int(N))
    return sd * math.sqrt(float(theory.attrs.get("N", 1)) / N)


def _draw_theory(ax: Axes, t: np.ndarray, mean: np.ndarray, sd: xr.DataArray,
                 color: Any) -> None:
    """ODE +- BAND_SD sd as two dotted lines, the sd taken onto the ODE's times ``t``."""
    s = np.interp(t, np.asarray(sd["t"].values, dtype=np.float64), sd.values)
    for sign in (-1.0, 1.0):
        ax.plot(t, mean + sign * BAND_SD * s, color=color, ls=":", lw=STYLE["linewidth"] * 0.8)


def _keep_data_in_view(ax: Axes, lims: tuple[float, float]) -> None:
    """Let the theory widen the y-range by at most half of the data's.

    The LNA band of a random start grows like e^(lambda t) until the escape and would
    flatten the data.
    """
    lo, hi = lims
    lo2, hi2 = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(max(lo2, lo - 0.5 * span), min(hi2, hi + 0.5 * span))


def plot_trajectories(ode: xr.Dataset, sims: Mapping[int, xr.Dataset], variable: str = "m",
                      entries: Sequence[tuple[int, ...]] | None = None,
                      ax: Axes | None = None, theory: xr.Dataset | None = None) -> Axes:
    """ODE trajectory (black) vs SGD replica mean +- 2 standard deviations per N.

    Diverged replicas (``diverged`` variable) are left out of the mean and spread. With
    ``theory``, the predicted band ODE +- 2 sigma / sqrt(N) is drawn as dotted lines in
    each N's colour: ``theory`` holds ``<variable>_sd`` over t, along a dim N (e.g.
    :attr:`linvae.Comparison.spread`) or at the N of its ``attrs["N"]`` (e.g.
    :func:`linvae.fluctuations`), then scaled by N^(-1/2) to each N.
    """
    ax = _new_ax(ax)
    if variable not in ode:
        raise ValueError(f"variable must be one of the dataset's variables, got {variable!r}")
    idxs = list(entries) if entries is not None else _default_entries(ode[variable])
    cols = colors(len(sims))
    lw = STYLE["linewidth"]
    labelled: list[float] = []
    span = float(np.ptp(ode[variable].values)) or 1.0
    bands: list[tuple[np.ndarray, np.ndarray, xr.DataArray, Any]] = []
    for k, idx in enumerate(idxs):
        first = k == 0
        for c, (N, sim) in zip(cols, sorted(sims.items()), strict=True):
            da = _entry(sim[variable], idx)
            if "diverged" in sim and "replica" in da.dims:
                da = da.isel(replica=np.flatnonzero(~sim["diverged"].values.astype(bool)))
            t = sim["t"].values
            if "replica" in da.dims:
                mean, sd = da.mean("replica").values, da.std("replica").values
                ax.fill_between(t, mean - BAND_SD * sd, mean + BAND_SD * sd, color=c,
                                alpha=STYLE["band_alpha"], lw=0)
            else:
                mean = da.values
            how = " Gram chain" if sim.attrs.get("method") == "gram" else ""
            ax.plot(t, mean, color=c, lw=lw * 0.8, ls="--",
                    label=f"SGD N={n_label(N)}{how} (mean ± {BAND_SD} sd)" if first else None)
            th = _theory_sd(theory, variable, N)
            if th is not None:
                bands.append((ode["t"].values, _entry(ode[variable], idx).values,
                              _entry(th, idx), c))
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
    if bands:
        lims = ax.get_ylim()
        for t_ode, mean_ode, sd_th, c in bands:
            _draw_theory(ax, t_ode, mean_ode, sd_th, c)
        ax.plot([], [], color="k", ls=":", lw=lw * 0.8, label=THEORY_LABEL)
        _keep_data_in_view(ax, lims)
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
    cols = colors(len(names))
    Nfine = np.geomspace(N.min(), N.max(), 50)
    gram = (np.asarray(gaps["method"].values) == "gram") if "method" in gaps.coords \
        else np.zeros(N.size, dtype=bool)
    for c, v in zip(cols, names, strict=True):
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


#: Variables of the standard figure (:func:`plot_result`)
STANDARD = ("m", "d", "Q", "E", "R", "D", "eg")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Save a figure atomically (temporary file + rename); the format is the suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    from .io import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def describe(attrs: Mapping[str, Any], *, swept: tuple[str, ...] = ()) -> str:
    """Return a short parameter line from dataset attributes, leaving out the ``swept`` ones."""
    try:
        p = Params.from_attrs(dict(attrs))
    except (KeyError, TypeError, ValueError):
        return ""
    rho = np.atleast_1d(p.rho_vec)
    rho_s = f"{rho[0]:g}" if np.all(rho == rho[0]) else "(" + ", ".join(f"{r:g}" for r in rho) + ")"
    beta = f"{p.beta_inf:g}" if p.beta.is_constant else f"{p.beta.to_dict().get('kind', 'schedule')}→{p.beta_inf:g}"
    parts = {"M": f"M={p.M}", "M_star": f"M*={p.M_star}", "rho": f"ρ={rho_s}",
             "eta": f"η={p.eta:g}", "beta": f"β={beta}", "lam": f"λ={p.lam:g}",
             "tau": f"τ={p.tau:g}"}
    s = ", ".join(v for k, v in parts.items() if k not in swept)
    if "N" in attrs:
        s = f"N={int(attrs['N'])}, " + s
    return s


def suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """Set a figure title wrapped to the figure's width (never clipped)."""
    import textwrap

    width = max(30, int(fig.get_figwidth() * 130 / fontsize))
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=fontsize)


def plot_result(ds: xr.Dataset, variables: Sequence[str] | None = None,
                title: str | None = None, theory: xr.Dataset | None = None) -> Figure:
    """Draw the standard figure of a simulation or ODE dataset: each variable over t.

    Every entry of a matrix variable is drawn (the diagonal only if there are more than
    6); for a simulation the replica mean with a band of +- 2 standard deviations
    (diverged replicas left out). ``theory`` (e.g. :func:`linvae.finite_n.predicted_spread`)
    adds the ODE (thin black) and the predicted band ODE +- 2 sigma / sqrt(N) (dotted, in
    each entry's colour): it holds the ODE's variables and ``<v>_sd`` over t at the N of
    its ``attrs["N"]``.
    """
    extra = [str(d) for d in ds.dims if d not in ("replica", "t", "latent", "latent2", "factor")]
    if extra:  # e.g. a merged sweep, whose grid dims come first
        raise ValueError(f"the data has the dims {', '.join(extra)} besides replica, t, "
                         f"latent, latent2 and factor (a merged sweep?), so it holds more "
                         f"than one run; plot one point: ds.sel({extra[0]}=...), or its own "
                         f"result file (named in the sweep's variable 'key')")
    have = [str(v) for v in ds.data_vars if "t" in ds[v].dims]
    if not have:
        raise ValueError("the file has no variables over time t; linvae plot reads the "
                         "results of 'linvae simulate' and 'linvae ode'")
    names = list(variables) if variables is not None else [v for v in STANDARD if v in ds]
    bad = [v for v in names if v not in ds or "t" not in ds[v].dims]
    if bad or not names:
        raise ValueError(f"variables must be among the file's time series {have}, got "
                         f"{bad or names}")
    if "replica" in ds.dims and "diverged" in ds:
        alive = np.flatnonzero(~ds["diverged"].values.astype(bool))
        if alive.size == 0:
            raise ValueError("every replica in the file diverged; nothing to plot")
        ds = ds.isel(replica=alive)
    ncols = 2 if len(names) > 1 else 1
    nrows = math.ceil(len(names) / ncols)
    fig = figure(ncols=ncols, nrows=nrows, width=4.0, height=2.6)
    t = ds["t"].values
    n_theory = 0
    for ax, v in zip(fig.axes, names, strict=False):
        da = ds[v]
        idxs = _default_entries(da)
        bands: list[tuple[np.ndarray, np.ndarray, xr.DataArray, Any]] = []
        for c, idx in zip(colors(len(idxs)), idxs, strict=True):
            e = _entry(da, idx)
            lab = f"{v}[{','.join(map(str, idx))}]" if idx else v
            if "replica" in e.dims:
                mean, sd = e.mean("replica").values, e.std("replica").values
                ax.fill_between(t, mean - BAND_SD * sd, mean + BAND_SD * sd, color=c,
                                alpha=STYLE["band_alpha"], lw=0)
                ax.plot(t, mean, color=c, lw=STYLE["linewidth"], label=lab)
            else:
                ax.plot(t, e.values, color=c, lw=STYLE["linewidth"], label=lab)
            if theory is not None and v in theory and f"{v}_sd" in theory:
                bands.append((theory["t"].values, _entry(theory[v], idx).values,
                              _entry(theory[f"{v}_sd"], idx), c))
        if bands:
            lims = ax.get_ylim()
            for k, (t_th, mean_th, sd_th, c) in enumerate(bands):
                ax.plot(t_th, mean_th, color="k", lw=STYLE["linewidth"] * 0.6,
                        label="ODE" if k == 0 and n_theory == 0 else None)
                _draw_theory(ax, t_th, mean_th, sd_th, c)
            if n_theory == 0:  # explained once, in the first panel
                ax.plot([], [], color="k", ls=":", lw=STYLE["linewidth"] * 0.8,
                        label=THEORY_LABEL)
            n_theory += 1
            _keep_data_in_view(ax, lims)
        ax.set_xlabel("t = steps / N")
        ax.set_ylabel(axis_label(ds, v), fontsize=STYLE["fontsize"])
        if len(idxs) > 1 or (bands and n_theory == 1):
            ax.legend(fontsize=STYLE["fontsize"] - 1, frameon=False)
    for ax in fig.axes[len(names):]:
        ax.set_visible(False)
    if title is None:
        kind = "ODE" if "replica" not in ds.dims else \
            f"SGD, mean ± {BAND_SD} sd over {ds.sizes['replica']} replicas"
        if theory is not None:
            kind += f", and {THEORY_LABEL}"
        title = f"{kind}: {describe(ds.attrs)}"
    suptitle(fig, title, fontsize=STYLE["fontsize"] + 1)
    return fig
