"""The figures: no legend or text on data, on each other or off the figure; one style.

:func:`linvae.plot.overlaps` draws a figure (Agg) and compares the renderer's boxes of
its legends and texts with its data (line segments, markers, bands) in display
coordinates. Every registered figure family is drawn on its tiny settings and checked,
as are ``plot_result``, ``Comparison.plot`` and the findings' figures; a figure with a
legend put on its data on purpose shows that the check sees it.

Three key figures are compared with baseline images under ``tests/baseline/`` (tiny
settings, small PNGs). After an intended change of a figure, rewrite them with::

    LINVAE_UPDATE_BASELINES=1 python -m pytest tests/test_figures.py -k baseline

and look at the new PNGs before committing them (docs/contributing.md, "Figures").
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import linvae
from linvae import findings, plot, reproduce
from linvae.states import overlap_state

BASELINE = Path(__file__).parent / "baseline"
#: RMS difference (0-255 scale, over the RGB pixels) a baseline image may differ by:
#: antialiasing and font hinting move a few edge pixels between machines; a moved legend,
#: a changed label or curve moves many more.
TOLERANCE = 3.0
#: The resolution of the baseline images (small files, still every text and line).
BASELINE_DPI = 60
UPDATE = os.environ.get("LINVAE_UPDATE_BASELINES", "") not in ("", "0")

@pytest.fixture(scope="module")
def drawn_families() -> dict[str, dict[str, Any]]:
    """Each registered family's figures on its tiny settings, computed once."""
    out: dict[str, dict[str, Any]] = {}
    for family in reproduce.families():
        s = family.settings("tiny")
        data = family.compute(s, progress=False, threads=1)
        drawn = family.plot(data, s)
        out[family.name] = dict(drawn) if isinstance(drawn, dict) else {family.name: drawn}
    return out


# ---------------------------------------------------------------------------------------
# the check has power
# ---------------------------------------------------------------------------------------
def _curve_figure() -> Any:
    fig = plot.figure()
    ax = fig.axes[0]
    x = np.linspace(0.0, 1.0, 200)
    ax.plot(x, 0.5 + 0.4 * np.sin(6 * x), label="a curve")
    ax.axhline(0.5, color="k", label="a level")  # two vertices only, the line across
    return fig


def test_overlaps_sees_a_legend_put_on_the_data() -> None:
    fig = _curve_figure()
    fig.axes[0].legend(loc="center")  # on purpose: in the middle of the curve
    problems = plot.overlaps(fig)
    assert any("legend of axes 0 covers data" in p for p in problems), problems


def test_overlaps_sees_a_line_that_only_crosses_the_legend() -> None:
    # no vertex under the legend: the segments count, not only the points
    fig = plot.figure()
    ax = fig.axes[0]
    ax.plot([0.0, 1.0], [0.0, 1.0], label="diagonal")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.legend(loc="center")
    assert any("covers data" in p for p in plot.overlaps(fig))


def test_overlaps_sees_texts_on_each_other_and_off_the_figure() -> None:
    fig = plot.figure()
    ax = fig.axes[0]
    ax.plot([0, 1], [0, 1])
    ax.text(0.1, 0.8, "one label", transform=ax.transAxes)
    ax.text(0.12, 0.8, "another label", transform=ax.transAxes)
    ax.text(1.05, 0.5, "a note far too long for the right margin of the figure",
            transform=ax.transAxes, in_layout=False)
    problems = plot.overlaps(fig)
    assert any("'one label'" in p and "overlaps" in p and "'another label'" in p
               for p in problems), problems
    assert any("outside the figure" in p for p in problems), problems


def test_a_legend_left_at_best_is_moved_off_the_data() -> None:
    fig = _curve_figure()
    plot.legend(fig.axes[0])
    assert plot.overlaps(fig) == []
    # and the same legend, full of entries, goes outside if no corner is free
    fig = _curve_figure()
    ax = fig.axes[0]
    for k in range(8):
        ax.plot([], [], label=f"entry {k} with a long label")
    plot.legend(ax)
    assert plot.overlaps(fig) == []


def test_crowded_tick_labels_are_thinned() -> None:
    fig = plot.figure(width=1.6, height=1.8)
    ax = fig.axes[0]
    ax.loglog([1.0, 3.0], [0.031, 0.061], "o")  # less than a decade each way
    assert plot.overlaps(fig) == []


# ---------------------------------------------------------------------------------------
# every figure of the package
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", reproduce.names())
def test_family_figures_have_no_overlaps(drawn_families: dict[str, dict[str, Any]],
                                         name: str) -> None:
    for stem, fig in drawn_families[name].items():
        problems = plot.overlaps(fig)
        assert problems == [], (stem, problems)


@pytest.fixture(scope="module")
def run() -> xr.Dataset:
    p = linvae.Params(M=1, M_star=1, beta=0.5, tau=0.5)
    return linvae.simulate(p, 2000, 2.0, 0.05, seeds=4, seed=3, init=overlap_state(p),
                           method="gram", progress=False)


def test_plot_result_labels_sgd_and_ode_and_tells_them_apart(run: xr.Dataset) -> None:
    from linvae.finite_n import predicted_spread

    fig = plot.plot_result(run, theory=predicted_spread(run))
    assert plot.overlaps(fig) == []
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["SGD", "ODE"] and plot.THEORY_LABEL in labels
    sgd = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    ode = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sgd and ode  # solid SGD (in its band), dashed ODE ...
    assert min(ln.get_zorder() for ln in ode) > max(ln.get_zorder() for ln in sgd)  # on top
    assert ax.get_ylabel() == plot.LABELS["m"] == r"$m = W^{\top}W^{*}/N$"
    # an ODE file with matrix entries: each entry its own colour and name
    p = linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], beta=0.5, tau=0.5)
    fig = plot.plot_result(linvae.integrate(p, t_max=10.0, init=overlap_state(p)))
    assert plot.overlaps(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["$m_{00}$", "$m_{01}$", "$m_{10}$", "$m_{11}$"]


def test_comparison_plot_fits_a_page(run: xr.Dataset) -> None:
    p = linvae.Params(M=1, M_star=1, beta=0.5, tau=0.5)
    cmp = linvae.compare(p, Ns=[200, 800, 3200], t_max=1.0, replicas=3, record_every=0.1,
                         sim_method="gram", progress=False)
    fig = cmp.plot()
    assert plot.overlaps(fig) == []
    width, _ = fig.get_size_inches()
    assert width <= plot.STYLE["full_width"] + 1e-9
    assert fig.axes[0].get_title() == "(a) $m$: SGD vs ODE"


def test_findings_figures_have_no_overlaps() -> None:
    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    betas = findings.refine_grid(np.linspace(0.1, 3.0, 8), [2.0], 4)
    sweep = findings.collapse_sweep(p, betas)
    phase = findings.phase_diagram(p, betas=np.linspace(0.1, 3.5, 18),
                                   rhos=np.linspace(0.0, 2.0, 9))
    cascade = findings.collapse_sweep(linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], eta=0.5,
                                                    tau=0.1), np.linspace(0.2, 3.0, 12))
    traj = findings.superfluous(t_max=40.0, record_every=2.0)
    vs_m = findings.superfluous_vs_M(Ms=(1, 2, 3))
    ann = findings.annealing(gammas=np.geomspace(0.05, 1.0, 3), kinds=("tanh", "linear"))
    dis = findings.disentanglement(t_max=60.0, record_every=2.0)
    opt = findings.optimal_beta(p.replace(tau=0.01), rhos=(0.5, 1.0),
                                betas=np.linspace(0.2, 2.2, 9))
    figures = {"collapse": findings.plot_collapse(sweep, phase),
               "cascade": findings.plot_collapse(cascade),
               "superfluous": findings.plot_superfluous(traj, vs_m),
               "annealing": findings.plot_annealing(ann),
               "disentanglement": findings.plot_disentanglement(dis),
               "optimal_beta": findings.plot_optimal_beta(opt)}
    for name, fig in figures.items():
        assert plot.overlaps(fig) == [], name


# ---------------------------------------------------------------------------------------
# honest curves, one style
# ---------------------------------------------------------------------------------------
def test_the_collapse_grid_is_dense_at_the_threshold() -> None:
    base = np.linspace(0.05, 3.0, 14)
    grid = findings.refine_grid(base, [2.0], 6)
    added = np.setdiff1d(grid, base)
    width = (3.0 - 0.05) / 6
    # evenly spaced in sqrt(beta_c - beta), the collapse's square root drawn evenly, and
    # one point next to the threshold; half as many above it
    want = np.r_[2.0 - width * np.r_[1e-6, (np.arange(1, 7) / 6) ** 2],
                 2.0 + width * np.r_[1e-6, (np.arange(1, 4) / 3) ** 2]]
    np.testing.assert_allclose(np.sort(added), np.sort(want[want <= 3.0]))
    sweep = reproduce.get("collapse")
    data = sweep.compute(sweep.settings("quick"), progress=False, threads=1)
    ds = data["collapse_sweep.nc"]
    b, eg = ds["beta"].values, ds["eg"].values
    thr = float(ds["threshold"][0])
    # continuous at the threshold: no jump between neighbours there bigger than the
    # square root allows
    near = (b > thr - 0.3) & (b < thr + 0.3)
    assert np.all(np.isfinite(eg[near]))
    assert np.max(np.abs(np.diff(eg[near]))) < 0.3


def test_labels_are_mathtext_from_one_table() -> None:
    assert plot.symbol("Q", (0, 0)) == "$Q_{00}$"
    assert plot.symbol("eg") == r"$\varepsilon_g$"
    assert plot.symbol("beta") == r"$\beta$" and plot.symbol("tau") == r"$\tau$"
    assert plot.symbol("D", (1,)) == "$D_{1}$"
    assert plot.symbol("m", (10, 2)) == "$m_{10,2}$"
    assert plot.symbol("rate", (1,)) == "rate$_{1}$"
    assert plot.label("t") == r"time $t$ = steps$/N$"
    text = plot.describe(linvae.Params(rho=[2.0, 1.0], M=2, M_star=2).to_attrs())
    assert r"$\rho=(2, 1)$" in text and r"$\tau=" in text


def test_colours_tell_every_curve_apart() -> None:
    from matplotlib.colors import to_hex

    for n in (1, 4, 10):
        assert len({to_hex(c) for c in plot.colors(n)}) == n
    many = plot.colors(14)
    assert len({to_hex(c) for c in many}) == 14
    assert len(set(plot.markers(14)[:10])) == 10


def test_titles_wrap_into_even_lines() -> None:
    text = ("Steady-state generalisation error against the KL weight for several signal "
            r"strengths, $M=1$, $M^*=1$, $\eta=1$, $\lambda=0$, $\tau=0.01$")
    lines = plot.balanced_lines(text, 3.4 * 72 - 12, 9.0)
    assert len(lines) >= 2 and " ".join(lines) == text
    widths = [plot._text_width(line, 9.0) for line in lines]
    assert min(widths) > 0.6 * max(widths)  # no word left alone on the last line
    assert all(line.count("$") % 2 == 0 for line in lines)  # never inside mathtext


def test_the_style_does_not_depend_on_the_global_rcparams(run: xr.Dataset) -> None:
    import matplotlib

    with matplotlib.rc_context({"font.family": "serif", "font.size": 20.0,
                                "mathtext.fontset": "cm"}):
        fig = plot.plot_result(run, variables=["m"])
    label = fig.axes[0].xaxis.label
    assert label.get_fontname() == "DejaVu Sans"
    assert label.get_fontsize() == plot.STYLE["fontsize"]
    assert matplotlib.rcParams["font.family"] != ["serif"]  # restored


# ---------------------------------------------------------------------------------------
# baseline images
# ---------------------------------------------------------------------------------------
def _render(fig: Any) -> Any:
    """The figure as a Pillow RGB image at the baselines' resolution."""
    from PIL import Image

    buf = io.BytesIO()
    with plot.style_context():
        fig.savefig(buf, format="png", dpi=BASELINE_DPI, metadata={"Software": None})
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize("name", ["sgd_vs_ode", "collapse", "optimal_beta"])
def test_baseline(drawn_families: dict[str, dict[str, Any]], name: str) -> None:
    """The figure, in the baseline's 256 colours, against the baseline (RMS over pixels).

    The baselines are palette PNGs (small files); a new rendering is mapped onto the
    baseline's palette before the comparison, so that the same figure gives RMS 0.
    """
    from PIL import Image

    fig = drawn_families[name][name]
    path = BASELINE / f"{name}.png"
    got = _render(fig)
    if UPDATE:
        BASELINE.mkdir(exist_ok=True)
        got.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                     dither=Image.Dither.NONE).save(path, "PNG", optimize=True)
        assert path.stat().st_size < 60_000, f"{path} is too large for a baseline"
        return
    if not path.exists():
        pytest.fail(f"no baseline {path}: write it with LINVAE_UPDATE_BASELINES=1")
    want = Image.open(path)
    assert got.size == want.size, (f"{name}: {got.size} px, the baseline {want.size}; if "
                                   f"the change is intended, LINVAE_UPDATE_BASELINES=1")
    mapped = got.quantize(palette=want.convert("P") if want.mode != "P" else want,
                          dither=Image.Dither.NONE)
    a = np.asarray(mapped.convert("RGB"), dtype=np.float64)
    b = np.asarray(want.convert("RGB"), dtype=np.float64)
    rms = float(np.sqrt(np.mean((a - b) ** 2)))
    assert rms <= TOLERANCE, (f"{name} differs from {path} by RMS {rms:.2f} > "
                              f"{TOLERANCE}; if the change is intended, "
                              f"LINVAE_UPDATE_BASELINES=1")
