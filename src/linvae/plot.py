"""Figures for SGD-vs-ODE comparisons, drawn on matplotlib Figure/Axes objects.

Nothing here uses pyplot's global state: :func:`figure` builds a
``matplotlib.figure.Figure`` directly, which works under any backend (Agg included) and
can be saved with ``fig.savefig``; every function also draws on an ``ax`` you pass.

One style for every figure of the package (:func:`linvae.findings` figures,
:meth:`linvae.Comparison.plot` and the ``linvae reproduce`` families):

* sizes for a paper column (:data:`STYLE` ``"width"``, 3.4 in per panel, 7 in for a full
  row) and a slide, saved at ``STYLE["dpi"]``;
* one font (DejaVu Sans, matplotlib's own) and mathtext symbols, set by :data:`RC` inside
  :func:`style_context` (every drawing function here runs in it, see :func:`styled`),
  never in matplotlib's global rcParams;
* labels from one table: :func:`symbol` (``symbol("Q", (0, 0)) == "$Q_{00}$"``) and
  :func:`label`;
* colours that tell every curve apart (:func:`colors`, :func:`markers`);
* legends placed where they hide no data: a figure from :func:`figure` places each
  legend left at ``loc="best"`` when it is drawn, in the emptiest corner of its axes (no
  data point, line or text under it) or, if there is none, outside the axes
  (:func:`place_legends`); :func:`overlaps` checks a drawn figure for legends and texts
  on data, on each other or outside the figure;
* titles that fit: a short title, the parameters on a second line (:func:`suptitle`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from ._moved import forward
from .observables import ORDER_PARAMETERS
from .params import Params

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.transforms import Bbox

__all__ = [
    "BAND_SD",
    "LABELS",
    "RC",
    "STANDARD",
    "STYLE",
    "THEORY_LABEL",
    "apply_style",
    "arrange",
    "axis_label",
    "colors",
    "describe",
    "figure",
    "label",
    "legend",
    "mark",
    "markers",
    "n_label",
    "overlaps",
    "place_legends",
    "plot_gaps",
    "plot_result",
    "plot_trajectories",
    "power_label",
    "save_figure",
    "style_context",
    "styled",
    "suptitle",
    "symbol",
    "tidy_ticks",
    "vline",
]

#: The figures' style: line widths, band opacity, font sizes (pt), the qualitative
#: palette (up to 10 curves) and the sequential colour map (beyond, with markers), the
#: width of a panel (a paper column, in inches) and of a full row, the panel height, and
#: the resolution of saved raster files. Applied per figure, never to matplotlib's
#: global rcParams.
STYLE: dict[str, Any] = {"grid_alpha": 0.3, "linewidth": 1.3, "band_alpha": 0.2,
                         "fontsize": 8, "small": 7, "title": 8.5,
                         "palette": "tab10", "cmap": "viridis",
                         "markers": ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h"),
                         "width": 3.4, "full_width": 7.0, "height": 2.5, "dpi": 200,
                         "font": "DejaVu Sans"}

#: matplotlib settings of every figure, applied by :func:`style_context` (fonts are fixed
#: when a text is made, so a figure drawn inside it looks the same whatever the global
#: rcParams, and its pixels are stable for the tests' baseline images).
RC: dict[str, Any] = {
    "font.family": "sans-serif", "font.sans-serif": [STYLE["font"]],
    "mathtext.fontset": "dejavusans", "mathtext.default": "it",
    "font.size": STYLE["fontsize"], "axes.titlesize": STYLE["title"],
    "axes.labelsize": STYLE["fontsize"], "xtick.labelsize": STYLE["small"],
    "ytick.labelsize": STYLE["small"], "legend.fontsize": STYLE["small"],
    "figure.titlesize": STYLE["title"] + 0.5, "legend.frameon": False,
    "legend.handlelength": 1.8, "legend.labelspacing": 0.3, "legend.borderaxespad": 0.4,
    "legend.borderpad": 0.3, "legend.handletextpad": 0.5, "legend.columnspacing": 1.0,
    "axes.linewidth": 0.8, "xtick.major.width": 0.8, "ytick.major.width": 0.8,
    "xtick.major.size": 3.0, "ytick.major.size": 3.0, "xtick.minor.size": 1.8,
    "ytick.minor.size": 1.8, "lines.markersize": 4.0, "errorbar.capsize": 2.0,
    "axes.formatter.use_mathtext": False, "axes.axisbelow": True,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
    "figure.dpi": 100, "savefig.dpi": STYLE["dpi"],
    "figure.constrained_layout.w_pad": 3 / 72, "figure.constrained_layout.h_pad": 3 / 72,
}

#: Half-width of every spread band, in standard deviations (the replicas' mean +- 2 sd and
#: the theory's ODE +- 2 sigma / sqrt(N), about 95% of the runs for a Gaussian spread).
BAND_SD = 2
#: Legend entry of the predicted band (docs/model.md#fluctuations).
THEORY_LABEL = f"ODE ± {BAND_SD}σ/√N (theory)"

#: Names that used to live here: the module that has them now (the theory is computed
#: there, the figures only draw it).
_MOVED = {"predicted_spread": "finite_n"}


if TYPE_CHECKING:  # type checkers see the moved names, and no __getattr__ hiding typos
    from .finite_n import predicted_spread  # noqa: F401 - for type checkers
else:
    _forward = forward(__name__, _MOVED)

    def __getattr__(name: str) -> Any:
        if name == "StyledFigure":  # the class of figure()'s figures: they pickle
            return _figure_class()
        return _forward(name)


# ---------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------
#: The mathtext symbol (without dollars) of each variable and parameter.
_SYMBOLS = {"m": "m", "d": "d", "Q": "Q", "E": "E", "R": "R", "D": "D",
            "eg": r"\varepsilon_g", "eg_authors": r"\varepsilon_g^{\rm authors}",
            "beta": r"\beta", "beta_inf": r"\beta_\infty", "rho": r"\rho", "eta": r"\eta",
            "tau": r"\tau", "tau_V": r"\tau_V", "tau_D": r"\tau_D", "lam": r"\lambda",
            "mu": r"\mu", "gamma": r"\gamma",
            "gamma_star": r"\gamma^*", "alpha": r"\alpha", "sigma": r"\sigma", "t": "t",
            "N": "N", "M": "M", "M_star": "M^*", "delta": r"\delta",
            "t_conv": r"t_{\rm conv}", "t_esc": r"t_{\rm esc}", "J_max": r"J_{\max}",
            "Qkk": "Q_{kk}", "Ekk": "E_{kk}", "Rkk": "R_{kk}", "Dk": "D_k", "mk": "|m_k|"}
#: Variables named by a word, not a symbol.
_WORDS = {"rate": "rate", "distortion": "distortion", "loss": "loss",
          "train_loss": "training loss", "latent_rate": "rate", "score": "score",
          "max_real": r"$J_{\max}$"}

#: Axis label of each variable: what it is and its symbol.
LABELS: dict[str, str] = {
    "m": r"$m = W^{\top}W^{*}/N$", "d": r"$d = V^{\top}W^{*}/N$",
    "Q": r"$Q = W^{\top}W/N$", "E": r"$E = V^{\top}V/N$", "R": r"$R = W^{\top}V/N$",
    "D": r"encoder variance $D$", "eg": r"generalisation error $\varepsilon_g$",
    "eg_authors": r"$\varepsilon_g$ (authors' convention)",
    "rate": "rate (KL per sample)", "distortion": "distortion", "loss": "loss",
    "train_loss": "training loss", "beta": r"KL weight $\beta(t)$",
    "t": r"time $t$ = steps$/N$", "N": r"$N$", "score": "disentanglement score",
    "latent_rate": r"rate of latent $k$",
}


def _entry_text(entry: Sequence[int]) -> str:
    idx = [int(i) for i in entry]
    return ("," if any(i > 9 for i in idx) else "").join(map(str, idx))


def symbol(name: str, entry: Sequence[int] = ()) -> str:
    r"""Return the mathtext symbol of variable or parameter ``name``, with its entry.

    ``symbol("Q", (0, 0)) == "$Q_{00}$"``, ``symbol("eg") == "$\\varepsilon_g$"``,
    ``symbol("beta") == "$\\beta$"``; a variable named by a word keeps the word
    (``symbol("rate", (1,)) == "rate$_{1}$"``), an unknown name is returned as it is.
    """
    sub = _entry_text(entry)
    if name in _SYMBOLS:
        base = _SYMBOLS[name]
        if not sub:
            return f"${base}$"
        if "_" in base:  # a symbol with a subscript already: the entry in brackets
            return f"${base}[{sub}]$"
        return f"${base}_{{{sub}}}$"
    word = _WORDS.get(name, name)
    return f"{word}$_{{{sub}}}$" if sub else word


def label(name: str, entry: Sequence[int] = ()) -> str:
    """Return the axis label of ``name``: :data:`LABELS`, else its :func:`symbol`."""
    if not entry and name in LABELS:
        return LABELS[name]
    return symbol(name, entry)


def axis_label(ds: xr.Dataset, name: str) -> str:
    r"""Return the axis label of variable ``name`` of ``ds``.

    A known variable gets its entry of :data:`LABELS` (``"$m = W^{\\top}W^{*}/N$"``),
    short enough for a panel of a grid; another one its ``long_name`` (or its name).
    """
    if name in LABELS and (name in ds or name in ORDER_PARAMETERS or name == "eg"):
        return LABELS[name]
    if name not in ds:
        return name
    return str(ds[name].attrs.get("long_name", name))


def n_label(N: int) -> str:
    """N as written by hand: 16000, but 1e8 rather than 100000000."""
    text = str(int(N))
    return f"1e{len(text) - 1}" if int(N) >= 10**5 and text.rstrip("0") == "1" else text


def _number(x: float) -> str:
    return f"{x:g}".replace("e-0", "e-").replace("e+0", "e")


def describe(attrs: Mapping[str, Any], *, swept: tuple[str, ...] = ()) -> str:
    """Return a short parameter line (mathtext) from dataset attributes.

    The ``swept`` parameters are left out.
    """
    try:
        p = Params.from_attrs(dict(attrs))
    except (KeyError, TypeError, ValueError):
        return ""
    rho = np.atleast_1d(p.rho_vec)
    rho_s = _number(rho[0]) if np.all(rho == rho[0]) else \
        "(" + ", ".join(_number(r) for r in rho) + ")"
    beta = _number(p.beta_inf) if p.beta.is_constant else \
        rf"{p.beta.to_dict().get('kind', 'schedule')}\to{_number(p.beta_inf)}"
    parts = {"M": f"$M={p.M}$", "M_star": f"$M^*={p.M_star}$", "rho": rf"$\rho={rho_s}$",
             "eta": rf"$\eta={_number(p.eta)}$", "beta": rf"$\beta={beta}$",
             "lam": rf"$\lambda={_number(p.lam)}$", "tau": rf"$\tau={_number(p.tau)}$"}
    if p.tau_V is not None:
        parts["tau_V"] = rf"$\tau_V={_number(p.tau_V)}$"
    if p.tau_D is not None:
        parts["tau_D"] = rf"$\tau_D={_number(p.tau_D)}$"
    s = ", ".join(v for k, v in parts.items() if k not in swept)
    if "N" in attrs:
        s = f"$N={n_label(int(attrs['N']))}$, " + s
    return s


# ---------------------------------------------------------------------------------------
# style, figures, colours
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def style_context() -> Iterator[None]:
    """Apply :data:`RC` to what is made inside, and restore matplotlib's settings after."""
    import matplotlib

    with matplotlib.rc_context(cast(Any, RC)):
        yield


F = TypeVar("F", bound=Callable[..., Any])


def styled(func: F) -> F:
    """Decorate a drawing function so that it runs inside :func:`style_context`."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style_context():
            return func(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


@functools.cache
def _figure_class() -> type[Figure]:
    """Return the Figure class that places its legends when drawn (:func:`place_legends`)."""
    from matplotlib.figure import Figure

    class StyledFigure(Figure):
        """A Figure arranged when drawn (:func:`arrange`), drawn and saved in :data:`RC`."""

        _placing = False

        def draw(self, renderer: Any) -> None:
            with style_context():
                if not self.get_visible() or self._placing:
                    super().draw(renderer)
                    return
                self._placing = True
                try:
                    arrange(self, renderer)
                finally:
                    self._placing = False
                engine = self.get_layout_engine()
                if engine is None or any(hasattr(ax, "_colorbar") for ax in _all_axes(self)):
                    super().draw(renderer)  # a colorbar's margins settle over two layouts
                    return
                # arrange() left the layout done (in figure units, for any dpi): not
                # done again for each file the figure is saved to
                engine.execute = lambda fig: None  # type: ignore[method-assign]
                try:
                    super().draw(renderer)
                finally:
                    del engine.execute

        def savefig(self, *args: Any, **kwargs: Any) -> None:
            """Save in the style's settings (resolution, fonts embedded as TrueType).

            The figure is arranged first on the screen's renderer (Agg, at the figure's
            own dpi), so that a PNG at any resolution and a PDF get the same layout.
            """
            with style_context():
                _prearrange(self)
                super().savefig(*args, **kwargs)

    StyledFigure.__module__ = __name__
    StyledFigure.__qualname__ = "StyledFigure"
    return StyledFigure


def panel_width(ncols: int) -> float:
    """Width (in) of a panel of a row of ``ncols``: a paper column, or a share of a row."""
    return float(min(STYLE["width"], STYLE["full_width"] / max(ncols, 1)))


def figure(ncols: int = 1, nrows: int = 1, *, width: float | None = None,
           height: float | None = None, empty: bool = False) -> Figure:
    """Return a Figure with a grid of styled axes (``fig.axes`` in row-major order).

    ``width`` and ``height`` are those of a panel, in inches: by default a paper column
    (3.4 in) per panel, the panels of a row sharing 7 in when there are more than two.
    ``empty``: the Figure of that size without axes (for subfigures or a gridspec of
    one's own). The Figure places its legends left at ``loc="best"`` when it is drawn
    (:func:`arrange`).
    """
    w = panel_width(ncols) if width is None else float(width)
    h = (STYLE["height"] if w >= 3.0 else max(1.9, 0.95 * w)) if height is None \
        else float(height)
    with style_context():
        fig = _figure_class()(figsize=(w * ncols, h * nrows), layout="constrained",
                              dpi=RC["figure.dpi"])
        for k in range(0 if empty else nrows * ncols):
            apply_style(fig.add_subplot(nrows, ncols, k + 1))
    return fig


def apply_style(ax: Axes) -> Axes:
    """Grid, tick label size and no top/right spines."""
    ax.grid(True, alpha=STYLE["grid_alpha"], lw=0.6)
    ax.tick_params(labelsize=STYLE["small"])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def _new_ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else figure().axes[0]


def colors(n: int) -> list[Any]:
    """``n`` colours, each curve its own: the qualitative palette up to 10, else a map.

    Beyond 10 curves the colours are spread over the sequential map (``STYLE["cmap"]``)
    and neighbours are told apart by :func:`markers`. Black is left for the theory.
    """
    from matplotlib import colormaps

    n = max(int(n), 1)
    if n <= 10:
        pal = colormaps[STYLE["palette"]]
        return [pal(k) for k in range(n)]
    cmap = colormaps[STYLE["cmap"]]
    return [cmap(x) for x in np.linspace(0.0, 0.92, n)]


def markers(n: int) -> list[str]:
    """``n`` marker symbols, cycling through ``STYLE["markers"]``."""
    ms = STYLE["markers"]
    return [ms[k % len(ms)] for k in range(max(int(n), 1))]


def vline(ax: Axes, x: float, label: str | None, color: Any = "k") -> None:
    """Draw a dotted vertical marker at ``x``.

    Nothing is drawn if ``x`` is not finite (e.g. no threshold).
    """
    if np.isfinite(x):
        ax.axvline(x, color=color, ls=":", lw=STYLE["linewidth"] * 0.8, label=label)


def mark(ax: Axes, x: float, text: str, color: Any = "0.35") -> None:
    """Mark ``x`` with a dotted vertical line, named ``text`` above the axes.

    The name is a tick label of a secondary x axis on top, so it never covers data and
    needs no legend entry. Nothing is drawn if ``x`` is not finite.
    """
    if not np.isfinite(x):
        return
    ax.axvline(x, color=color, ls=":", lw=STYLE["linewidth"] * 0.8)
    marks: list[tuple[float, str]] = getattr(ax, "_linvae_marks", [])
    marks.append((float(x), text))
    ax._linvae_marks = marks  # type: ignore[attr-defined]
    sec = getattr(ax, "_linvae_mark_axis", None)
    if sec is None:
        sec = ax.secondary_xaxis("top")
        sec.tick_params(length=2.0, labelsize=STYLE["small"], pad=1.0)
        sec.spines["top"].set_visible(False)
        ax._linvae_mark_axis = sec  # type: ignore[attr-defined]
    sec.set_xticks([m for m, _ in marks], [t for _, t in marks])
    from matplotlib.ticker import NullLocator

    sec.xaxis.set_minor_locator(NullLocator())


def legend(ax: Axes, *args: Any, outside: str | None = None, **kwargs: Any) -> Legend:
    """Add the legend of ``ax``, placed on empty ground when the figure is drawn.

    ``outside`` (``"right"`` or ``"below"``) puts it outside the axes at once; by default
    it goes in the corner of the axes with no data under it, or outside on the right if
    no corner is free (:func:`place_legends`). Other arguments go to ``ax.legend``.
    """
    kwargs.setdefault("loc", "best")
    with style_context():
        leg = ax.legend(*args, **kwargs)
    if outside is not None:
        if outside not in ("right", "below"):
            raise ValueError(f"outside must be 'right' or 'below', got {outside!r}")
        leg._linvae_outside = outside  # type: ignore[attr-defined]
    return leg


def _wrap_tokens(text: str) -> list[str]:
    """Split at spaces outside mathtext ($...$): the pieces a title may be wrapped at."""
    tokens, cur, math_mode = [], "", False
    for ch in text:
        if ch == "$":
            math_mode = not math_mode
        if ch == " " and not math_mode:
            if cur:
                tokens.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        tokens.append(cur)
    return tokens


def _text_width(text: str, fontsize: float) -> float:
    """Width of ``text`` in points, as drawn in the style's font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(family=[STYLE["font"]], size=fontsize,
                          math_fontfamily=RC["mathtext.fontset"])
    ismath = text.count("$") >= 2 and text.count("$") % 2 == 0
    try:
        w, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=ismath)
    except ValueError:  # not valid mathtext: measured as it is
        w, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=False)
    return float(w)


def balanced_lines(text: str, width_pt: float, fontsize: float) -> list[str]:
    """Wrap ``text`` into the fewest lines no wider than ``width_pt``, of even lengths.

    Breaks fall at spaces outside mathtext; of the wraps with the fewest lines the one
    whose longest line is shortest is taken, so that no word is left alone on a line.
    """
    if _text_width(text, fontsize) <= width_pt:
        return [text]
    tokens = _wrap_tokens(text)
    n = len(tokens)
    size = [_text_width(tok, fontsize) for tok in tokens]
    space = _text_width("a a", fontsize) - 2 * _text_width("a", fontsize)
    cum = np.concatenate([[0.0], np.cumsum(size)])

    def width(i: int, j: int) -> float:  # tokens[i:j] on one line
        return float(cum[j] - cum[i]) + space * (j - i - 1)

    # best[k][j]: the smallest longest line of tokens[:j] in k lines, and where it breaks
    inf = math.inf
    best: list[list[tuple[float, int]]] = [[(0.0, 0)] + [(inf, 0)] * n]
    for _ in range(n):
        prev = best[-1]
        row = [(inf, 0)] * (n + 1)
        for j in range(1, n + 1):
            row[j] = min((max(prev[i][0], width(i, j)), i) for i in range(j))
        best.append(row)
        if row[n][0] <= width_pt:
            break
    k, j, cuts = len(best) - 1, n, []
    while k > 0:
        i = best[k][j][1]
        cuts.append((i, j))
        j, k = i, k - 1
    return [" ".join(tokens[i:j]) for i, j in reversed(cuts)]


def suptitle(fig: Figure, text: str, params: str | None = None,
             fontsize: float | None = None) -> None:
    """Set a figure's title: ``text``, then ``params`` (e.g. :func:`describe`) below it.

    Each part is wrapped to the figure's width into lines of even length (never a word
    alone on a line, never clipped; :func:`balanced_lines`).
    """
    fs = float(STYLE["title"] + 0.5 if fontsize is None else fontsize)
    width = fig.get_figwidth() * 72 - 12
    lines = balanced_lines(text, width, fs)
    if params:
        lines += balanced_lines(params, width, fs)
    with style_context():
        fig.suptitle("\n".join(lines), fontsize=fs)


# ---------------------------------------------------------------------------------------
# legends on empty ground, and the check of a drawn figure
# ---------------------------------------------------------------------------------------
#: Where a legend is tried inside its axes, in order of preference (matplotlib's codes).
_INSIDE = {"upper right": 1, "upper left": 2, "lower left": 3, "lower right": 4,
           "upper center": 9, "lower center": 8, "center right": 7, "center left": 6}


def _sample(xy: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` (display units) along a polyline; NaN vertices break it."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ok = np.all(np.isfinite(xy), axis=1)
    out = [xy[ok]]
    if xy.shape[0] > 1:
        seg = ok[:-1] & ok[1:]
        a, d = xy[:-1][seg], np.diff(xy, axis=0)[seg]
        n = np.minimum(np.ceil(np.hypot(d[:, 0], d[:, 1]) / step), 4000).astype(np.int64)
        if n.size and n.sum() > 0:
            idx = np.repeat(np.arange(n.size), n)
            start = np.repeat(np.cumsum(n) - n, n)
            frac = (np.arange(idx.size) - start) / np.repeat(np.maximum(n, 1), n)
            out.append(a[idx] + frac[:, None] * d[idx])
    return np.concatenate(out) if len(out) > 1 else out[0]


class _AxesData:
    """What an axes draws as data, in display coordinates: points and filled regions.

    ``points`` samples every line (every 1.5 pt along its segments), marker, error bar,
    scatter point and band edge inside the axes; ``regions`` are the bands' outlines;
    ``top`` is the highest data point but full-height lines (``axvline``), or NaN.
    """

    def __init__(self, ax: Axes) -> None:
        from matplotlib.collections import LineCollection, PathCollection, PolyCollection

        px = float(_root(ax).dpi) / 72.0  # display units per point
        step = max(1.0, 1.5 * px)
        chunks: list[np.ndarray] = [np.zeros((0, 2))]
        low: list[bool] = [True]  # whether a chunk counts for ``top``
        self.regions: list[Any] = []
        vertical = ax.get_xaxis_transform(which="grid")  # axvline's: the axes' full height
        for line in ax.get_lines():
            if not line.get_visible() or (line.get_alpha() == 0):
                continue
            xy = np.asarray(np.ma.filled(np.ma.asarray(line.get_xydata(), dtype=np.float64),
                                         np.nan)).reshape(-1, 2)
            if xy.size == 0:
                continue
            xy = line.get_transform().transform(xy)
            counts = line.get_transform() is not vertical
            if str(line.get_linestyle()).lower() not in ("none", "", " "):
                chunks.append(_sample(xy, step))
            else:
                chunks.append(xy[np.all(np.isfinite(xy), axis=1)])
            low.append(counts)
            if str(line.get_marker()).lower() not in ("none", "", " ") and \
                    line.get_markersize() > 0:
                r = 0.5 * float(line.get_markersize()) * px
                xy = xy[np.all(np.isfinite(xy), axis=1)]
                chunks += [xy + np.array(o) for o in ((r, 0), (-r, 0), (0, r), (0, -r))]
                low += [counts] * 4
        for coll in ax.collections:
            if not coll.get_visible():
                continue
            if isinstance(coll, LineCollection):
                tr = coll.get_transform()
                segs = [np.asarray(s, dtype=np.float64) for s in coll.get_segments()]
                chunks += [_sample(tr.transform(s), step) for s in segs if s.size]
            elif isinstance(coll, PolyCollection):
                tr = coll.get_transform()
                for path in coll.get_paths():
                    p = tr.transform_path(path)
                    verts = np.asarray(p.vertices, dtype=np.float64)
                    if verts.size:
                        self.regions.append(p)
                        chunks.append(_sample(verts, step))
            elif isinstance(coll, PathCollection):
                offs = np.asarray(coll.get_offsets(), dtype=np.float64).reshape(-1, 2)
                if offs.size:
                    chunks.append(coll.get_offset_transform().transform(offs))
            low += [True] * (len(chunks) - len(low))
        box = ax.bbox
        self.bbox = box.frozen()

        def inside(pts: np.ndarray) -> np.ndarray:
            keep = np.all(np.isfinite(pts), axis=1) & (pts[:, 0] >= box.x0 - 1) & \
                (pts[:, 0] <= box.x1 + 1) & (pts[:, 1] >= box.y0 - 1) & \
                (pts[:, 1] <= box.y1 + 1)
            return pts[keep]

        self.points = inside(np.concatenate(chunks))
        ys = inside(np.concatenate([c for c, k in zip(chunks, low, strict=True) if k]))[:, 1]
        self.top = float(ys.max()) if ys.size else math.nan

    def covered(self, bb: Bbox) -> int:
        """How many of the data's points (and filled regions' spots) lie inside ``bb``."""
        if not self.bbox.overlaps(bb):
            return 0
        p = self.points
        n = int(np.count_nonzero((p[:, 0] > bb.x0) & (p[:, 0] < bb.x1) & (p[:, 1] > bb.y0)
                                 & (p[:, 1] < bb.y1)))
        if self.regions:
            gx, gy = np.meshgrid(np.linspace(bb.x0, bb.x1, 5)[1:-1],
                                 np.linspace(bb.y0, bb.y1, 5)[1:-1])
            grid = np.column_stack([gx.ravel(), gy.ravel()])
            n += sum(int(np.count_nonzero(r.contains_points(grid))) for r in self.regions)
        return n


def _root(artist: Any) -> Any:
    """Return the (root) Figure an artist is drawn in."""
    try:
        return artist.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: no subfigures in linvae's figures anyway
        return artist.figure


def _subfigures(fig: Any) -> list[Any]:
    """Return ``fig`` and its subfigures, nested ones too."""
    out = [fig]
    for sub in getattr(fig, "subfigs", ()):
        out += _subfigures(sub)
    return out


def _all_axes(fig: Any) -> list[Axes]:
    """Return the axes of ``fig`` and of its subfigures, and their child axes."""
    out: list[Axes] = []
    todo = [ax for f in _subfigures(fig) for ax in f.axes]
    while todo:
        ax = todo.pop(0)
        out.append(ax)
        todo += list(getattr(ax, "child_axes", ()))
    return out


def _shrunk(bb: Bbox, by: float) -> Bbox:
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(bb.x0 + by, bb.y0 + by, max(bb.x0 + by, bb.x1 - by),
                             max(bb.y0 + by, bb.y1 - by))


def _padded(bb: Bbox, by: float) -> Bbox:
    from matplotlib.transforms import Bbox

    return Bbox.from_extents(bb.x0 - by, bb.y0 - by, bb.x1 + by, bb.y1 + by)


def _layout(fig: Figure) -> None:
    engine = fig.get_layout_engine()
    if engine is not None and _all_axes(fig):
        with contextlib.suppress(ValueError):
            engine.execute(fig)


def _put_inside(leg: Legend, code: int) -> None:
    leg.set_bbox_to_anchor(None)
    leg._loc = code  # type: ignore[attr-defined]


def _put_outside(leg: Legend, side: str, renderer: RendererBase) -> None:
    """Anchor ``leg`` right of its axes, or below its tick labels and x label."""
    from matplotlib.transforms import offset_copy

    ax = leg.axes
    fig = _root(ax)
    if side == "below":
        tight = ax.get_tightbbox(renderer, bbox_extra_artists=[])
        gap = 0.0 if tight is None else (ax.bbox.y0 - tight.y0) * 72.0 / float(fig.dpi)
        leg._loc = 9  # type: ignore[attr-defined]  # upper center
        leg.set_bbox_to_anchor((0.5, 0.0), transform=offset_copy(
            ax.transAxes, fig=fig, x=0.0, y=-(max(gap, 0.0) + 1.0), units="points"))
    else:
        tight = ax.get_tightbbox(renderer, bbox_extra_artists=[])
        gap = 0.0 if tight is None else (tight.x1 - ax.bbox.x1) * 72.0 / float(fig.dpi)
        leg._loc = 2  # type: ignore[attr-defined]  # upper left
        leg.set_bbox_to_anchor((1.0, 1.0), transform=offset_copy(
            ax.transAxes, fig=fig, x=max(gap, 0.0), y=0.0, units="points"))
    leg._linvae_side = side  # type: ignore[attr-defined]


def _auto_legends(fig: Figure) -> list[Legend]:
    out = []
    for ax in _all_axes(fig):
        leg = ax.get_legend()
        if leg is None or not leg.get_visible():
            continue
        if getattr(leg, "_linvae_auto", False) or leg._loc == 0:  # type: ignore[attr-defined]
            leg._linvae_auto = True  # type: ignore[attr-defined]
            out.append(leg)
    return out


def _tick_labels(axis: Any, renderer: RendererBase) -> list[Bbox]:
    """Boxes of the tick labels an axis draws."""
    return [lab.get_window_extent(renderer) for tick in axis._update_ticks()
            for lab in (tick.label1, tick.label2)
            if lab.get_visible() and lab.get_text().strip()]


def _crowded(axis: Any, renderer: RendererBase) -> bool:
    boxes = _tick_labels(axis, renderer)
    return any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_label(x: float) -> str:
    """Return ``x`` as a power of ten in plain text: ``10⁻²``, ``2×10⁻²``.

    Unicode superscripts rather than mathtext: the log axes' many tick labels cost no
    mathtext layout (the figures' time goes into their texts), and look the same.
    """
    if x <= 0 or not np.isfinite(x):
        return ""
    e = math.floor(math.log10(x) + 1e-9)
    m = round(x / 10.0**e, 6)
    if m >= 10:
        e, m = e + 1, m / 10
    power = "10" + str(e).translate(_SUPERSCRIPT)
    return power if m == 1 else f"{m:g}×{power}"


def _sparse_log_label(x: float, pos: int | None = None) -> str:
    """Return a log axis' minor tick label at 2 and 5 times a power of ten, else ""."""
    if x <= 0 or not np.isfinite(x):
        return ""
    e = math.floor(math.log10(x) + 1e-9)
    return power_label(x) if round(x / 10.0**e, 6) in (2.0, 5.0) else ""


def _plain_log_formatters(axis: Any) -> None:
    """Give a log axis with matplotlib's default labels the plain-text ones.

    (:func:`power_label`; which ticks are labelled is left to matplotlib's formatter.)
    """
    from matplotlib.ticker import LogFormatter, LogFormatterSciNotation

    class PowerFormatter(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return power_label(x)

    for which, fmt in (("major", axis.get_major_formatter()),
                       ("minor", axis.get_minor_formatter())):
        if type(fmt) is LogFormatterSciNotation:
            new = PowerFormatter(base=cast(Any, fmt)._base, labelOnlyBase=fmt.labelOnlyBase,
                                 minor_thresholds=fmt.minor_thresholds)
            if which == "major":
                axis.set_major_formatter(new)
            else:
                axis.set_minor_formatter(new)


def arrange(fig: Figure, renderer: RendererBase | None = None) -> None:
    """Lay the figure out, place its legends (:func:`place_legends`), thin its ticks.

    (:func:`tidy_ticks`.) Nothing is done if the figure has not changed since the last
    time (a figure saved as PNG, then PDF). A :func:`figure` does this each time it is
    drawn, and then draws without laying out again.
    """
    if not any(ax.get_visible() for ax in _all_axes(fig)):
        return
    if getattr(fig, "_linvae_arranged", None) == _signature(fig):
        return
    if renderer is None:
        renderer = fig._get_renderer()  # type: ignore[attr-defined]
    for ax in _all_axes(fig):
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                _plain_log_formatters(axis)
    # place_legends lays the figure out first; its last change may not be laid out yet
    if not _auto_legends(fig) or place_legends(fig, renderer):
        _layout(fig)
    if tidy_ticks(fig, renderer, laid_out=True):  # with the axes' final sizes
        _layout(fig)
        if place_legends(fig, renderer, laid_out=True, keep=True):
            _layout(fig)
    fig._linvae_arranged = _signature(fig)  # type: ignore[attr-defined]


def _prearrange(fig: Figure) -> None:
    """:func:`arrange` ``fig`` on Agg at the figure's own dpi, if it changed since.

    Always the same renderer and resolution (the screen's, 100 dpi), whatever file the
    figure goes to: the same figure is arranged the same way each time, and a file at a
    higher resolution (whose texts are relatively smaller) fits in that layout.
    """
    if getattr(fig, "_linvae_arranged", None) == _signature(fig):
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    old = fig.canvas
    canvas = FigureCanvasAgg(fig)
    try:
        arrange(fig, canvas.get_renderer())
    finally:
        fig.set_canvas(old)


def tidy_ticks(fig: Figure, renderer: RendererBase | None = None, *,
               laid_out: bool = False) -> bool:
    """Thin the tick labels of every axis whose labels overprint each other.

    A log axis labels its minor ticks at 2 and 5 times a power of ten only, then none;
    a linear axis with matplotlib's automatic ticks gets half as many. Axes whose ticks
    were set explicitly are left alone. A :func:`figure` does this when it is drawn.
    Return whether an axis was changed.
    """
    from matplotlib.ticker import AutoLocator, FuncFormatter, MaxNLocator, NullFormatter

    if renderer is None:
        renderer = fig._get_renderer()  # type: ignore[attr-defined]
    axes = _all_axes(fig)
    if not any(ax.get_visible() for ax in axes):
        return False
    if not laid_out:
        _layout(fig)
    changed = False
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            # a colorbar sets its ticks again each time it is drawn: left alone
            if not ax.get_visible() or hasattr(ax, "_colorbar") or \
                    not _crowded(axis, renderer):
                continue
            changed = True
            if axis.get_scale() == "log":
                axis.set_minor_formatter(FuncFormatter(_sparse_log_label))
                if _crowded(axis, renderer):
                    axis.set_minor_formatter(NullFormatter())
            elif isinstance(axis.get_major_locator(), (AutoLocator, MaxNLocator)):
                n = max(2, len(axis.get_majorticklocs()) // 2)
                axis.set_major_locator(MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]))
    return changed


def place_legends(fig: Figure, renderer: RendererBase | None = None, *,
                  laid_out: bool = False, keep: bool = False) -> bool:
    """Place each of the figure's legends left at ``loc="best"`` where it hides nothing.

    Each is tried in the corners (then the edges' middles) of its axes, and put in the
    first where no data point, no segment of a line (sampled every 1.5 pt, so that a
    line crossing the legend counts, not only its vertices), no filled band, annotation
    or other legend lies under it. If there is none, and the axes scale their y range to
    the data, room is made at the top (the y range raised by at most 45% of the axes'
    height) and the corners tried again; else the legend goes outside the axes, on the
    right, or below if it is wider than a third of the axes (:func:`legend` may ask for
    a side). The layout is redone after each change, and the others placed again
    (``laid_out``: the figure's layout is up to date already; ``keep``: the legends
    outside stay there). Return whether the last change (a legend outside its axes, a
    new y range) is not laid out yet.
    """
    legs = _auto_legends(fig)
    if not legs:
        return False
    if renderer is None:
        renderer = fig._get_renderer()  # type: ignore[attr-defined]
    dirty = not laid_out
    for leg in legs:
        was = (leg._loc, getattr(leg, "_linvae_side", None))  # type: ignore[attr-defined]
        if keep and was[1]:
            continue
        leg._linvae_side = None  # type: ignore[attr-defined]
        asked = getattr(leg, "_linvae_outside", None)
        if asked:
            _put_outside(leg, asked, renderer)
        else:
            _put_inside(leg, leg._loc if leg._loc in _INSIDE.values() else 1)  # type: ignore[attr-defined]
        dirty = dirty or was[1] != leg._linvae_side  # type: ignore[attr-defined]
    pad = 1.5 * float(fig.dpi) / 72.0
    for _ in range(2 * len(legs) + 1):
        if dirty:
            _layout(fig)
            dirty = False
        data = [_AxesData(ax) for ax in _all_axes(fig) if ax.get_visible()]
        taken = [_padded(t.get_window_extent(renderer), 1.0) for ax in _all_axes(fig)
                 for t in ax.texts if t.get_visible() and t.get_text().strip()]
        outside = [leg for leg in legs if leg._linvae_side]  # type: ignore[attr-defined]
        taken += [leg.get_window_extent(renderer) for leg in outside]
        moved = False
        for leg in legs:
            if leg._linvae_side:  # type: ignore[attr-defined]
                continue
            ok = _best_inside(leg, data, taken, pad, renderer)
            if not ok:
                ylim = _headroom(leg, pad, renderer)
                if ylim is not None:  # the y range raised: the corners tried again
                    new = [_AxesData(ax) for ax in _all_axes(fig) if ax.get_visible()]
                    ok = _best_inside(leg, new, taken, pad, renderer)
                    if ok:
                        dirty = True
                    else:
                        _no_headroom(leg.axes)
            if ok:
                taken.append(leg.get_window_extent(renderer))
            else:
                _no_headroom(leg.axes)
                box = leg.axes.bbox
                wide = leg.get_window_extent(renderer).width > box.width / 3
                _put_outside(leg, "below" if wide else "right", renderer)
                moved = True
        if not moved:
            break
        dirty = True
        if all(leg._linvae_side for leg in legs):  # type: ignore[attr-defined]
            break  # every legend outside: nothing left to place again
    return dirty


def _best_inside(leg: Legend, data: Sequence[_AxesData], taken: Sequence[Bbox], pad: float,
                 renderer: RendererBase) -> bool:
    """Put ``leg`` in the first place inside its axes with nothing under it, if any."""
    box = leg.axes.bbox
    for code in _INSIDE.values():
        leg._loc = code  # type: ignore[attr-defined]
        bb = leg.get_window_extent(renderer)
        if bb.width > box.width or bb.height > box.height:
            return False
        if not any(bb.overlaps(t) for t in taken) and \
                not any(d.covered(_padded(bb, pad)) for d in data):
            return True
    return False


def _headroom(leg: Legend, pad: float, renderer: RendererBase
              ) -> tuple[float, float] | None:
    """Raise the top of the y range of ``leg``'s axes to free a band for it, if allowed.

    Only once per axes, for axes that scale to their data, and for a legend at most 45%
    of the axes' height (the data keep the rest). Return the y range it had, or None if
    it was left alone.
    """
    ax = leg.axes
    if getattr(ax, "_linvae_headroom", False) or not ax.get_autoscaley_on() or \
            ax.yaxis_inverted():
        return None
    height = ax.bbox.height
    frac = (leg.get_window_extent(renderer).height + 3 * pad) / max(height, 1.0)
    data_top = _AxesData(ax).top
    if frac > 0.45 or not np.isfinite(data_top):
        return None
    top = (data_top - ax.bbox.y0) / max(height, 1.0)  # the data's top, axes fraction
    scale = ax.yaxis.get_transform()
    lo, hi = ax.get_ylim()
    s_lo, s_hi = (float(v) for v in scale.transform([lo, hi]))
    s_top = s_lo + max(top, 0.0) * (s_hi - s_lo)
    s_new = s_lo + (s_top - s_lo) / (1.0 - frac)
    if not np.isfinite(s_new) or s_new <= s_hi:
        return None
    ax.set_ylim(lo, float(scale.inverted().transform([s_new])[0]))
    ax._linvae_headroom = (lo, hi)  # type: ignore[attr-defined]
    return (lo, hi)


def _no_headroom(ax: Axes) -> None:
    """Undo :func:`_headroom`: the y range as it was (the legend goes outside after all)."""
    was = getattr(ax, "_linvae_headroom", None)
    if isinstance(was, tuple):
        ax.set_ylim(*was)
        ax.set_autoscaley_on(True)
        ax._linvae_headroom = "undone"  # type: ignore[attr-defined]  # not tried again


def _signature(fig: Figure) -> tuple[Any, ...]:
    """Return what the layout and the legends' places depend on (not the resolution).

    A figure drawn again with the same signature keeps its arrangement and its layout
    (:func:`arrange`); any other change (a new title, ticks, limits, data) redoes both.
    """
    axes = _all_axes(fig)
    legs = [ax.get_legend() for ax in axes]
    return (tuple(fig.get_size_inches()), tuple(id(leg) for leg in legs),
            tuple((id(ax), ax.get_visible(), len(ax.lines), len(ax.collections),
                   len(ax.texts), tuple(ax.get_xlim()), tuple(ax.get_ylim()),
                   ax.get_xscale(), ax.get_yscale(), ax.title.get_text(),
                   ax.xaxis.label.get_text(), ax.yaxis.label.get_text(),
                   tuple(ax.xaxis.get_majorticklocs()), tuple(ax.yaxis.get_majorticklocs()),
                   tuple(ax.get_position().bounds) if not ax.get_in_layout() else ())
                  for ax in axes),
            tuple(t.get_text() for f in _subfigures(fig) for t in f.texts))


def _rotated_quad(t: Any, renderer: RendererBase) -> np.ndarray | None:
    """Corners of a rotated text's box (display), or None if it is not rotated."""
    if not hasattr(t, "get_rotation"):
        return None
    rot = float(t.get_rotation()) % 180.0
    if rot in (0.0, 90.0):
        return None
    env = t.get_window_extent(renderer)
    th = math.radians(rot if rot < 90 else 180 - rot)
    c, s = math.cos(th), math.sin(th)
    det = c * c - s * s
    if abs(det) < 1e-6:
        return None
    w = (c * env.width - s * env.height) / det
    h = (c * env.height - s * env.width) / det
    if rot < 90:
        return np.array([[env.x0 + h * s, env.y0], [env.x1, env.y0 + w * s],
                         [env.x1 - h * s, env.y1], [env.x0, env.y1 - w * s]])
    return np.array([[env.x0, env.y0 + h * c], [env.x0 + w * c, env.y0],
                     [env.x1, env.y1 - h * c], [env.x1 - w * c, env.y1]])


def _quads_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quadrilaterals overlap (separating axis theorem)."""
    for q in (a, b):
        for k in range(4):
            edge = q[(k + 1) % 4] - q[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def _quad(bb: Bbox) -> np.ndarray:
    return np.array([[bb.x0, bb.y0], [bb.x1, bb.y0], [bb.x1, bb.y1], [bb.x0, bb.y1]])


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _figure_texts(fig: Figure, renderer: RendererBase) -> list[tuple[str, str, Any]]:
    """Return (what, kind, artist) of every drawn text and legend of ``fig``.

    kind: "legend", "text" (an annotation inside axes), "title", "label", "tick".
    """
    out: list[tuple[str, str, Any]] = []
    for i, ax in enumerate(_all_axes(fig)):
        if not ax.get_visible():
            continue
        where = f"axes {i}"
        titles = (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None))
        out += [(f"title {_short(t.get_text())!r} of {where}", "title", t) for t in titles
                if t is not None]
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            out.append((f"{name} label {_short(axis.label.get_text())!r} of {where}", "label",
                        axis.label))
            out.append((f"{name} offset text of {where}", "label", axis.get_offset_text()))
            for tick in cast(Any, axis)._update_ticks():
                for lab in (tick.label1, tick.label2):
                    out.append((f"{name} tick label {lab.get_text()!r} of {where}", "tick",
                                lab))
        out += [(f"text {_short(t.get_text())!r} in {where}", "text", t) for t in ax.texts]
        leg = ax.get_legend()
        if leg is not None:
            out.append((f"legend of {where}", "legend", leg))
    for n, f in enumerate(_subfigures(fig)):
        where = "figure" if n == 0 else f"subfigure {n}"
        out += [(f"{where} text {_short(t.get_text())!r}", "title", t) for t in f.texts]
        for name in ("_suptitle", "_supxlabel", "_supylabel"):
            t = getattr(f, name, None)
            if t is not None:
                out.append((f"{where} {name.strip('_')} {_short(t.get_text())!r}", "title", t))
        out += [(f"{where} legend {k}", "legend", leg) for k, leg in enumerate(f.legends)]
    seen: set[int] = set()
    drawn = []
    for w, k, a in out:
        if id(a) in seen or not a.get_visible() or (k != "legend" and not a.get_text().strip()):
            continue
        seen.add(id(a))
        drawn.append((w, k, a))
    return drawn


def overlaps(fig: Figure, tol: float = 1.0) -> list[str]:
    """Draw ``fig`` (Agg) and return its layout faults, one sentence each.

    A fault is a legend, or a text inside the axes, that covers data (a point, a
    line's segment or a band, in display coordinates: :class:`_AxesData`); two texts or
    legends (titles, labels, tick labels, annotations) that overlap; a text or legend
    outside the figure or touching its edge. ``tol`` (pixels) is what boxes may touch
    by. An empty list: nothing to fix.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if isinstance(fig, _figure_class()):
        _prearrange(fig)
    old = fig.canvas
    canvas = FigureCanvasAgg(fig)
    try:
        canvas.draw()
        renderer = canvas.get_renderer()
        items = _figure_texts(fig, renderer)
        boxes = [a.get_window_extent(renderer) for _, _, a in items]
        data = [_AxesData(ax) for ax in _all_axes(fig) if ax.get_visible()]
        width, height = fig.bbox.width, fig.bbox.height
        problems = []
        for (what, kind, _), bb in zip(items, boxes, strict=True):
            if kind in ("legend", "text"):
                n = sum(d.covered(_shrunk(bb, tol)) for d in data)
                if n:
                    problems.append(f"{what} covers data ({n} points of lines, markers "
                                    f"or bands under it)")
            if bb.x0 < tol or bb.y0 < tol or bb.x1 > width - tol or bb.y1 > height - tol:
                problems.append(f"{what} is outside the figure or touches its edge")
        quads = [_rotated_quad(a, renderer) for _, _, a in items]
        inner = [_shrunk(bb, tol / 2) for bb in boxes]
        ext = np.array([[b.x0, b.y0, b.x1, b.y1] for b in inner]).reshape(-1, 4)
        hit = (ext[:, None, 0] < ext[None, :, 2]) & (ext[None, :, 0] < ext[:, None, 2]) & \
            (ext[:, None, 1] < ext[None, :, 3]) & (ext[None, :, 1] < ext[:, None, 3])
        for i, j in zip(*np.nonzero(np.triu(hit, k=1)), strict=True):
            qi, qj = quads[i], quads[j]
            if (qi is not None or qj is not None) and not _quads_overlap(
                    _quad(inner[i]) if qi is None else qi,
                    _quad(inner[j]) if qj is None else qj):
                continue
            problems.append(f"{items[i][0]} overlaps {items[j][0]}")
        return problems
    finally:
        fig.set_canvas(old)


# ---------------------------------------------------------------------------------------
# the figures of a run and of a comparison
# ---------------------------------------------------------------------------------------
def _default_entries(da: xr.DataArray) -> list[tuple[int, ...]]:
    """All entries if few (<= 6), else the diagonal of a matrix variable."""
    shape = tuple(da.sizes[d] for d in da.dims if d not in ("replica", "t"))
    if not shape:
        return [()]
    every = [tuple(int(i) for i in ix) for ix in np.ndindex(*shape)]
    if len(shape) == 2 and len(every) > 6:
        return [(i, i) for i in range(min(shape))]
    return every


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
        ax.plot(t, mean + sign * BAND_SD * s, color=color, ls=":", lw=STYLE["linewidth"] * 0.7)


def _keep_data_in_view(ax: Axes, lims: tuple[float, float]) -> None:
    """Let the theory widen the y-range by at most half of the data's.

    The LNA band of a random start grows like e^(lambda t) until the escape and would
    flatten the data.
    """
    lo, hi = lims
    lo2, hi2 = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(max(lo2, lo - 0.5 * span), min(hi2, hi + 0.5 * span))


def _sgd(ax: Axes, t: np.ndarray, da: xr.DataArray, color: Any,
         label: str | None) -> tuple[Any, ...]:
    """Draw the replica mean (solid) in a band of +- BAND_SD sd; return the legend handle."""
    lw = STYLE["linewidth"]
    if "replica" in da.dims:
        mean, sd = da.mean("replica").values, da.std("replica").values
        band = ax.fill_between(t, mean - BAND_SD * sd, mean + BAND_SD * sd, color=color,
                               alpha=STYLE["band_alpha"], lw=0)
        (line,) = ax.plot(t, mean, color=color, lw=lw, label=label)
        return (band, line)
    (line,) = ax.plot(t, da.values, color=color, lw=lw, label=label)
    return (line,)


def _ode(ax: Axes, t: np.ndarray, y: np.ndarray, label: str | None) -> Any:
    """Draw the ODE: black, dashed, on top of the SGD it is compared with."""
    (line,) = ax.plot(t, y, color="k", lw=STYLE["linewidth"] * 0.8, ls=(0, (4, 2)),
                      zorder=3, label=label)
    return line


@styled
def plot_trajectories(ode: xr.Dataset, sims: Mapping[int, xr.Dataset], variable: str = "m",
                      entries: Sequence[tuple[int, ...]] | None = None,
                      ax: Axes | None = None, theory: xr.Dataset | None = None) -> Axes:
    """SGD replica mean +- 2 standard deviations per N (solid, in a band) vs the ODE.

    The ODE is black and dashed, on top. Diverged replicas (``diverged`` variable) are
    left out of the mean and spread. With ``theory``, the predicted band ODE +- 2 sigma /
    sqrt(N) is drawn as dotted lines in each N's colour: ``theory`` holds
    ``<variable>_sd`` over t, along a dim N (e.g. :attr:`linvae.Comparison.spread`) or at
    the N of its ``attrs["N"]`` (e.g. :func:`linvae.fluctuations`), then scaled by
    N^(-1/2) to each N.
    """
    ax = _new_ax(ax)
    legend(ax, *_draw_trajectories(ode, sims, variable, entries, ax, theory))
    return ax


def _draw_trajectories(ode: xr.Dataset, sims: Mapping[int, xr.Dataset], variable: str,
                       entries: Sequence[tuple[int, ...]] | None, ax: Axes,
                       theory: xr.Dataset | None) -> tuple[list[Any], list[str]]:
    """Draw :func:`plot_trajectories` on ``ax``; return its legend's handles and labels."""
    if variable not in ode:
        raise ValueError(f"variable must be one of the dataset's variables, got {variable!r}")
    idxs = list(entries) if entries is not None else _default_entries(ode[variable])
    cols = colors(len(sims))
    lw = STYLE["linewidth"]
    labelled: list[float] = []
    span = float(np.ptp(ode[variable].values)) or 1.0
    bands: list[tuple[np.ndarray, np.ndarray, xr.DataArray, Any]] = []
    handles: list[Any] = []
    labels: list[str] = []
    for k, idx in enumerate(idxs):
        first = k == 0
        for c, (N, sim) in zip(cols, sorted(sims.items()), strict=True):
            da = _entry(sim[variable], idx)
            if "diverged" in sim and "replica" in da.dims:
                da = da.isel(replica=np.flatnonzero(~sim["diverged"].values.astype(bool)))
            how = " Gram chain" if sim.attrs.get("method") == "gram" else ""
            lab = f"SGD N={n_label(N)}{how} (mean ± {BAND_SD} sd)"
            h = _sgd(ax, sim["t"].values, da, c, lab if first else None)
            if first:
                handles.append(h if len(h) > 1 else h[0])
                labels.append(lab)
            th = _theory_sd(theory, variable, N)
            if th is not None:
                bands.append((ode["t"].values, _entry(ode[variable], idx).values,
                              _entry(th, idx), c))
        line = _ode(ax, ode["t"].values, _entry(ode[variable], idx).values,
                    "ODE" if first else None)
        if first:
            handles.append(line)
            labels.append("ODE")
        y_end = float(_entry(ode[variable], idx)[-1])
        if len(idxs) > 1 and all(abs(y_end - y) > 0.03 * span for y in labelled):
            # name the entry at the end of its ODE line, unless it would overprint one
            labelled.append(y_end)
            ax.annotate(symbol(variable, idx), (float(ode["t"].values[-1]), y_end),
                        fontsize=STYLE["small"], xytext=(2, 0), textcoords="offset points",
                        va="center", annotation_clip=False)
    if bands:
        lims = ax.get_ylim()
        for t_ode, mean_ode, sd_th, c in bands:
            _draw_theory(ax, t_ode, mean_ode, sd_th, c)
        (proxy,) = ax.plot([], [], color="k", ls=":", lw=lw * 0.7, label=THEORY_LABEL)
        handles.append(proxy)
        labels.append(THEORY_LABEL)
        _keep_data_in_view(ax, lims)
    ax.set_xlabel(LABELS["t"])
    ax.set_ylabel(label(variable))
    return handles, labels


@styled
def plot_gaps(gaps: xr.Dataset, stat: str = "rms", variables: Sequence[str] | None = None,
              exponents: xr.Dataset | None = None, prefactors: xr.Dataset | None = None,
              ax: Axes | None = None) -> Axes:
    """SGD-ODE gap vs N on log-log axes, with fitted lines and an N^-1/2 guide.

    If ``gaps`` has the coordinate ``method`` (:func:`linvae.compare`), the points of
    the Gram chain are drawn open and those of the weights filled. Each variable has its
    colour and marker; its legend entry gives the fitted exponent.
    """
    ax = _new_ax(ax)
    if stat not in gaps:
        raise ValueError(f"stat must be one of {list(gaps.data_vars)}, got {stat!r}")
    N = np.asarray(gaps["N"].values, dtype=np.float64)
    names = list(variables) if variables is not None else [str(v) for v in
                                                           gaps["variable"].values]
    cols, marks = colors(len(names)), markers(len(names))
    Nfine = np.geomspace(N.min(), N.max(), 50)
    gram = (np.asarray(gaps["method"].values) == "gram") if "method" in gaps.coords \
        else np.zeros(N.size, dtype=bool)
    for c, mk, v in zip(cols, marks, names, strict=True):
        g = gaps[stat].sel(variable=v).values
        lab = symbol(v)
        if exponents is not None:
            lab += f" ({float(exponents[stat].sel(variable=v)):+.2f})".replace("-", "−")
        ax.loglog(N[~gram], g[~gram], mk, color=c, ms=3.5, label=lab if not gram.all() else None)
        ax.loglog(N[gram], g[gram], mk, mfc="none", color=c, ms=3.5,
                  label=lab if gram.all() else None)
        if exponents is not None and prefactors is not None:
            e = float(exponents[stat].sel(variable=v))
            a = float(prefactors[stat].sel(variable=v))
            if np.isfinite(e) and np.isfinite(a):
                ax.loglog(Nfine, a * Nfine**e, color=c, lw=STYLE["linewidth"] * 0.6)
    # the guide passes through the geometric mean of all gaps at the geometric mean of N
    vals = np.asarray(gaps[stat].sel(variable=names).values, dtype=np.float64)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        n0, g0 = np.exp(np.mean(np.log(N))), np.exp(np.mean(np.log(vals)))
        ax.loglog(Nfine, g0 * (Nfine / n0) ** -0.5, "k:", lw=STYLE["linewidth"],
                  label=r"$\propto N^{-1/2}$")
    if gram.any() and not gram.all():
        ax.plot([], [], "o", color="0.4", ms=3.5, label="weights")
        ax.plot([], [], "o", mfc="none", color="0.4", ms=3.5, label="Gram chain")
    from matplotlib.ticker import NullFormatter

    if N.max() / N.min() <= 1e3:
        # label exactly the N used; log-axis minor labels would overprint each other
        ax.set_xticks(N, [f"{int(n)}" for n in N])
        ax.xaxis.set_minor_formatter(NullFormatter())
    # wider ranges keep the decades of the log axis: the N's labels would collide
    ax.set_xlabel(LABELS["N"])
    ax.set_ylabel(f"{stat} gap |SGD − ODE|")
    n_entries = len(ax.get_legend_handles_labels()[1])
    legend(ax, ncols=2 if n_entries > 5 else 1, columnspacing=0.8, handletextpad=0.3,
           title="fitted exponent" if exponents is not None else None,
           title_fontsize=STYLE["small"])
    return ax


#: Variables of the standard figure (:func:`plot_result`)
STANDARD = (*ORDER_PARAMETERS, "eg")


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int | None = None) -> Path:
    """Save a figure atomically (temporary file + rename); the format is the suffix.

    ``dpi`` (raster formats) defaults to ``STYLE["dpi"]``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    from .io import atomic_write

    res = int(STYLE["dpi"] if dpi is None else dpi)
    with style_context():
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=res))


@styled
def plot_result(ds: xr.Dataset, variables: Sequence[str] | None = None,
                title: str | None = None, theory: xr.Dataset | None = None) -> Figure:
    """Draw the standard figure of a simulation or ODE dataset: each variable over t.

    Every entry of a matrix variable is drawn (the diagonal only if there are more than
    6), each in its colour; for a simulation the replica mean (solid, labelled "SGD") in
    a band of +- 2 standard deviations (diverged replicas left out). ``theory`` (e.g.
    :func:`linvae.finite_n.predicted_spread`) adds the ODE (black, dashed, on top,
    labelled "ODE") and the predicted band ODE +- 2 sigma / sqrt(N) (dotted, in each
    entry's colour): it holds the ODE's variables and ``<v>_sd`` over t at the N of its
    ``attrs["N"]``. ``title`` replaces the first line of the title (what is drawn); the
    parameters stay on the second.
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
    sgd = "replica" in ds.dims
    ncols = 2 if len(names) > 1 else 1
    nrows = math.ceil(len(names) / ncols)
    fig = figure(ncols=ncols, nrows=nrows, height=2.1)
    t = ds["t"].values
    with_ode = theory is not None and any(v in theory for v in names)
    for n, (ax, v) in enumerate(zip(fig.axes, names, strict=False)):
        da = ds[v]
        idxs = _default_entries(da)
        single = len(idxs) == 1
        bands: list[tuple[np.ndarray, np.ndarray, xr.DataArray, Any]] = []
        handles: list[Any] = []
        labels: list[str] = []
        for c, idx in zip(colors(len(idxs)), idxs, strict=True):
            name = ("SGD" if sgd else "ODE") if single else symbol(v, idx)
            h = _sgd(ax, t, _entry(da, idx), c, name)
            handles.append(h if len(h) > 1 else h[0])
            labels.append(name)
            if theory is not None and v in theory:
                _ode(ax, theory["t"].values, _entry(theory[v], idx).values, None)
                if f"{v}_sd" in theory:
                    bands.append((theory["t"].values, _entry(theory[v], idx).values,
                                  _entry(theory[f"{v}_sd"], idx), c))
        if bands:
            lims = ax.get_ylim()
            for t_th, mean_th, sd_th, c in bands:
                _draw_theory(ax, t_th, mean_th, sd_th, c)
            _keep_data_in_view(ax, lims)
        key = n == 0 and (sgd or with_ode)
        if key:  # the styles are explained once, in the first panel
            from matplotlib.lines import Line2D

            if not single and sgd:
                from matplotlib.patches import Patch

                grey = "0.45"
                handles.append((Patch(color=grey, alpha=STYLE["band_alpha"], lw=0),
                                Line2D([], [], color=grey, lw=STYLE["linewidth"])))
                labels.append("SGD")
            if with_ode:
                handles.append(Line2D([], [], color="k", lw=STYLE["linewidth"] * 0.8,
                                      ls=(0, (4, 2))))
                labels.append("ODE")
            if theory is not None and any(f"{x}_sd" in theory for x in names):
                handles.append(Line2D([], [], color="k", ls=":", lw=STYLE["linewidth"] * 0.7))
                labels.append(THEORY_LABEL)
        ax.set_xlabel(LABELS["t"])
        ax.set_ylabel(axis_label(ds, v))
        if not single or key:
            legend(ax, handles, labels)
    for ax in fig.axes[len(names):]:
        ax.set_visible(False)
    if title is None:
        if sgd:
            title = (f"SGD, mean ± {BAND_SD} sd over {ds.sizes['replica']} replicas"
                     + (", vs the ODE" if theory is not None else ""))
        else:
            title = "ODE"
    suptitle(fig, title, describe(ds.attrs))
    return fig
