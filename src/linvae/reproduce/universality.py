"""``universality``: the SGD-ODE gap vs N and its exponent for every data family.

Every noise and factor family of docs/model.md#data-families (Student-t down to
nu = 2.5), and the spread against :func:`linvae.fluctuations`.
"""


from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..params import Params
from ..plot import describe, n_label, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..comparison import Comparison

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
#: The noise families of docs/model.md#data-families, as (label, options of simulate).
DATA_FAMILIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gaussian", {}),
    ("rademacher", {"noise": "rademacher"}),
    ("uniform", {"noise": "uniform"}),
    ("laplace", {"noise": "laplace"}),
    ("factors rademacher", {"factors": "rademacher"}),
    ("student_t ν=10", {"noise": "student_t", "noise_df": 10.0}),
    ("student_t ν=4", {"noise": "student_t", "noise_df": 4.0}),
    ("student_t ν=3", {"noise": "student_t", "noise_df": 3.0}),
    ("student_t ν=2.5", {"noise": "student_t", "noise_df": 2.5}),
)
VARIABLES = ("m", "d", "Q", "E", "R")
#: Below this nu, Student-t noise makes the largest kick grow with N, so that a replica
#: can diverge after a single sample (docs/model.md#data-families): there, divergence is
#: the finding, said once per data family instead of once per point.
DIVERGENT_DF = 8 / 3


def expects_divergence(opts: dict[str, Any]) -> bool:
    """Whether the data family of the options ``opts`` diverges as a finding (nu < 8/3)."""
    return opts.get("noise") == "student_t" and float(opts.get("noise_df", np.inf)) < DIVERGENT_DF


def _data_option(opts: dict[str, Any]) -> str:
    """Return the data options as simulate takes them ("noise=student_t, noise_df=2.5")."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in opts.items()) or "noise=gaussian"


def divergence_notes(label: str, opts: dict[str, Any],
                     runs: Sequence[tuple[int, Any]]) -> list[str]:
    """Return the warnings of the replicas that diverged in the runs of one data family.

    ``runs`` are (N, simulate's dataset) in the order run. Each names the figure family,
    the data family and its options, and the point: one per N with a divergence, or, where
    divergence is expected (:func:`expects_divergence`), one for the family with the
    count per N.
    """
    name = label.replace("ν", "nu")  # plain text on any terminal
    head = f"universality, {name} ({_data_option(opts)})"
    counts = [(N, int(ds["diverged"].values.sum()), int(ds.sizes["replica"]), ds)
              for N, ds in runs]
    hit = [c for c in counts if c[1]]
    if not hit:
        return []
    if expects_divergence(opts):
        total = sum(c[2] for c in counts)
        per_N = ", ".join(f"N={N}: {k}" for N, k, _, _ in hit)
        return [(f"{head}: {sum(c[1] for c in hit)} of {total} replicas diverged ({per_N}), "
                 f"as expected for nu < 8/3; they are left out of the fits")]
    notes = []
    for N, k, n, ds in hit:
        r = int(np.flatnonzero(ds["diverged"].values)[0])
        first = (f"replica {r} at t = {float(ds['t_diverged'].values[r]):.4g}: "
                 f"{ds['divergence'].values[r]}")
        notes.append(f"{head}, N={N}: {k} of {n} replicas diverged ({first}); they are left "
                     f"out of the fits")
    return notes


def _recording(simulate: Callable[..., Any], opts: dict[str, Any],
               runs: list[tuple[int, Any]]) -> Callable[..., Any]:
    """Return ``simulate`` with the data options ``opts`` that keeps each run in ``runs``.

    Its DivergenceWarnings (one per replica, without N or data family) are not shown:
    :func:`divergence_notes` says them per point or family.
    """
    from ..errors import DivergenceWarning

    def run(p: Params, N: int, *args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)
            ds = simulate(p, N, *args, **opts, **kwargs)
        runs.append((int(N), ds))
        return ds

    return run


@dataclass(frozen=True, kw_only=True)
class UniversalitySettings(Settings):
    """N, replicas, length and record interval of the runs of every data family."""

    Ns: tuple[int, ...]
    replicas: int
    t_max: float
    record_every: float


QUICK = UniversalitySettings(Ns=(250, 1000, 2000), replicas=8, t_max=3.0, record_every=0.2)
# the weights, Student-t and Laplace draws cost ~10 and ~5 times a Gaussian one
FULL = UniversalitySettings(Ns=(250, 1000, 4000), replicas=24, t_max=4.0, record_every=0.2)
TINY = UniversalitySettings(Ns=(50, 100), replicas=3, t_max=0.6, record_every=0.2)


def gap_exponents(cmp: Comparison, variables: Sequence[str], n_boot: int,
                  seed: int) -> dict[str, np.ndarray]:
    """Fitted exponents of the rms gap and of the median replica's gap, with bootstrap SEs.

    Each replica's mean-square gap (over t and entries) is computed once; the rms gap at
    N is the root of their mean, the "median" gap the root of their median, which heavy
    tails across replicas do not drag. The SEs resample replicas at every N. Diverged
    replicas are left out (the caller counts them).
    """
    from ..comparison import gap_statistics

    Ns = np.asarray(cmp.Ns, dtype=np.float64)
    ms = [np.array([[float(gap_statistics(cmp.sims[n].isel(replica=[r]), cmp.ode, [v])["rms"][0])
                     ** 2 for r in range(cmp.sims[n].sizes["replica"])] for v in variables])
          for n in cmp.Ns]  # per N: (variable, replica); NaN for a diverged replica
    ms = [a[:, np.isfinite(a).all(axis=0)] for a in ms]
    x = np.log(Ns)

    def fit(stat: Callable[[np.ndarray], np.ndarray], samples: list[np.ndarray]) -> np.ndarray:
        y = 0.5 * np.log(np.array([stat(a) for a in samples]))  # (N, variable)
        return np.polyfit(x, y, 1)[0]

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, stat in (("rms", lambda a: a.mean(axis=-1)),
                       ("median", lambda a: np.median(a, axis=-1))):
        boot = np.array([fit(stat, [a[:, rng.integers(0, a.shape[1], a.shape[1])] for a in ms])
                         for _ in range(n_boot)])
        out[name], out[f"{name}_se"] = fit(stat, ms), boot.std(axis=0, ddof=1)
        out[f"{name}_gap"] = np.sqrt(np.array([stat(a) for a in ms]))  # (N, variable)
    return out


def compute(s: UniversalitySettings, *, progress: bool, threads: int | None) -> Data:
    """Compare SGD with the ODE for every data family: gaps, exponents and spread.

    Diverged replicas are warned about once per point (N and data family), or once per
    data family where divergence is expected (:func:`expects_divergence`).
    """
    import xarray as xr

    from ..comparison import compare
    from ..errors import DivergenceWarning
    from ..simulation import simulate

    Ns, R, t_max = list(s.Ns), int(s.replicas), float(s.t_max)
    labels = [lab for lab, _ in DATA_FAMILIES]
    V = list(VARIABLES)
    shape = (len(labels), len(V))
    exps = {k: np.full(shape, np.nan) for k in ("rms", "rms_se", "median", "median_se")}
    gaps = {k: np.full((len(labels), len(Ns), len(V)), np.nan) for k in ("rms", "median")}
    ratio = np.full((len(labels), len(Ns), len(V)), np.nan)
    diverged = np.zeros(len(labels), dtype=np.int64)
    for f, (label, opts) in enumerate(DATA_FAMILIES):
        runs: list[tuple[int, Any]] = []
        with warnings.catch_warnings(record=True) as caught:  # said with the family below
            cmp = compare(P, Ns=Ns, t_max=t_max, replicas=R, record_every=s.record_every,
                          seed=300 + 10 * f, threads=threads, progress=progress, variables=V,
                          simulate_fn=_recording(simulate, opts, runs))
        name = label.replace("ν", "nu")
        seen: dict[Any, Any] = {}  # a warning repeated at one place is shown once
        for w in caught:  # e.g. compare's "all replicas diverged at N=...": name the family
            warnings.warn_explicit(f"universality, {name} ({_data_option(opts)}): {w.message}",
                                   w.category, w.filename, w.lineno, registry=seen)
        for note in divergence_notes(label, opts, runs):
            warnings.warn(note, DivergenceWarning, stacklevel=2)
        e = gap_exponents(cmp, V, n_boot=200, seed=f)
        for k, arr in exps.items():
            arr[f] = e[k]
        gaps["rms"][f], gaps["median"][f] = e["rms_gap"], e["median_gap"]
        if cmp.spread_ratio is not None:
            ratio[f] = cmp.spread_ratio["ratio"].sel(variable=V).values
        diverged[f] = sum(cmp.n_diverged.values())
    data = xr.Dataset(
        {"gap_rms": (("family", "N", "variable"), gaps["rms"]),
         "gap_median": (("family", "N", "variable"), gaps["median"]),
         "exponent_rms": (("family", "variable"), exps["rms"]),
         "exponent_rms_se": (("family", "variable"), exps["rms_se"]),
         "exponent_median": (("family", "variable"), exps["median"]),
         "exponent_median_se": (("family", "variable"), exps["median_se"]),
         "spread_ratio": (("family", "N", "variable"), ratio),
         "diverged": (("family",), diverged)},
        coords={"family": labels, "N": Ns, "variable": V},
        attrs={**P.to_attrs(), "replicas": R, "t_max": t_max, "init": "overlap_state(0.5)",
               "description": "SGD-ODE gap vs N per noise family (weights), fitted exponents "
               "with bootstrap SEs, and measured / predicted sd (linear noise approximation)"})
    return {"universality.nc": data}


def plot(data: Data, s: UniversalitySettings) -> Figure:
    """Draw (a) the gap of Q vs N, (b) the fitted exponents, (c) the spread vs the theory."""
    from ..plot import colors, figure, legend, markers, style_context, symbol

    ds = data["universality.nc"]
    labels = [str(f) for f in ds["family"].values]
    Ns = [int(n) for n in ds["N"].values]
    V = [str(v) for v in ds["variable"].values]
    R, t_max = s.replicas, float(s.t_max)
    gap, ratio = ds["gap_rms"].values, ds["spread_ratio"].values
    exps, exps_se = ds["exponent_rms"].values, ds["exponent_rms_se"].values

    with style_context():
        fig = figure(ncols=3, height=4.8)
        ax_a, ax_b, ax_c = fig.axes
        cols, marks = colors(len(labels)), markers(len(labels))
        qi = V.index("Q")
        Q = symbol("Q")
        for f, label in enumerate(labels):
            ax_a.loglog(Ns, gap[f, :, qi], "-", marker=marks[f], color=cols[f], ms=3, lw=1.0,
                        label=f"{label} ({exps[f, qi]:+.2f})")
            ax_c.plot(Ns, ratio[f, :, qi], "-", marker=marks[f], color=cols[f], ms=3, lw=1.0,
                      label=label)
        Nf = np.geomspace(min(Ns), max(Ns), 10)
        ax_a.loglog(Nf, gap[0, 0, qi] * np.sqrt(Ns[0] / Nf), "k:", lw=1.0, label=r"$N^{-1/2}$")
        ax_a.set_xlabel("$N$")
        ax_a.set_ylabel(f"rms gap of {Q}")
        ax_a.set_title("(a) SGD–ODE gap (fitted exponent)")
        legend(ax_a, outside="below")
        x = np.arange(len(labels))
        for j, v in enumerate(V):
            ax_b.errorbar(x + 0.12 * (j - 2), exps[:, j], yerr=exps_se[:, j],
                          fmt="o", ms=3, capsize=2, label=symbol(v))
        ax_b.axhline(-0.5, color="k", ls=":", lw=1.0)
        ax_b.set_xticks(x, labels, rotation=60, ha="right")
        ax_b.set_ylabel("gap exponent")
        ax_b.set_title("(b) exponents ± bootstrap SE")
        legend(ax_b, outside="below", ncols=3)
        ax_c.axhline(1.0, color="k", ls=":", lw=1.0)
        ax_c.set_xscale("log")
        ax_c.set_yscale("log")
        for ax in (ax_a, ax_c):
            ax.set_xticks(Ns, [n_label(n) for n in Ns])
            ax.minorticks_off()
        ax_c.set_xlabel("$N$")
        ax_c.set_ylabel(f"sd of {Q} / theory")
        ax_c.set_title(f"(c) spread, {R} replicas")
        legend(ax_c, outside="below")
        suptitle(fig, "Universality of the SGD–ODE gap across data families",
                 f"{describe(P.to_attrs())}, $t \\leq {t_max:g}$")
    return fig


def parameters(data: Data, s: UniversalitySettings) -> str:
    """Return the model, the start and the runs."""
    return (f"{P}, start overlap_state(0.5), N = {list(s.Ns)}, {s.replicas} replicas per "
            f"N and family, t ≤ {float(s.t_max):g}. Exponents of the rms gap (± bootstrap SE "
            f"over replicas) and, in brackets, of the median replica's gap, which "
            f"heavy tails across replicas do not drag; theory -0.5.")


def summary(data: Data, s: UniversalitySettings) -> list[str]:
    """Per data family: its excess kurtosis, the exponents and the spread ratio of Q."""
    from ..data import excess_kurtosis

    ds = data["universality.nc"]
    V = [str(v) for v in ds["variable"].values]
    Ns = [int(n) for n in ds["N"].values]
    qi = V.index("Q")
    e, e_se, e_med = (ds[k].values for k in ("exponent_rms", "exponent_rms_se",
                                             "exponent_median"))
    ratio, diverged = ds["spread_ratio"].values, ds["diverged"].values
    rows = []
    for f, (label, opts) in enumerate(DATA_FAMILIES):
        kurt = excess_kurtosis(opts.get("noise", "gaussian"), opts.get("noise_df"))
        rows.append([label, f"{kurt:g}",
                     *(f"{e[f, j]:+.3f} ± {e_se[f, j]:.3f} ({e_med[f, j]:+.3f})"
                       for j in range(len(V))),
                     f"{ratio[f, -1, qi]:.2f}", f"{diverged[f]} of {s.replicas * len(Ns)}"])
    return ["", *table(["family", "excess kurtosis", *V,
                        f"sd ratio of Q (N={n_label(Ns[-1])})", "diverged"], rows)]


FAMILY = register(FigureFamily(
    name="universality", title="Universality across data families",
    about="gap exponent per noise family",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
