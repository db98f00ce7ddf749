"""``linvae reproduce``: every figure family of the paper, with its data and a summary.

Six independent families, each written as ``<name>.png`` and ``<name>.pdf`` with its
data (netCDF, via :func:`linvae.io.save`) next to it:

1. ``sgd_vs_ode``: SGD against the ODE (m, d, Q, E, R, D, eps_g) and the SGD-ODE gap
   vs N with fitted exponents (theory -1/2), from N = 10 to 1e7 (1e6 with ``quick``):
   the weights up to N = 1e4, the Gram chain above (and at 3000, inside the weights'
   range); :func:`linvae.compare`.
2. ``collapse``: steady state vs beta with the numerical threshold and rho + eta;
   :func:`linvae.findings.collapse_sweep`.
3. ``superfluous``: (M, M*) = (2, 1) for beta below and above eta;
   :func:`linvae.findings.superfluous`.
4. ``annealing``: convergence time vs gamma with gamma*; :func:`linvae.findings.annealing`.
5. ``disentanglement``: m over time for M = M* = 2 with distinct rho;
   :func:`linvae.findings.disentanglement`.
6. ``optimal_beta``: steady-state eps_g vs beta for several rho, with the numerical
   minimum next to the optimum beta = eta; :func:`linvae.findings.optimal_beta`.

A family that fails is recorded (with its error) in ``summary.md`` and the others still
run; :func:`reproduce` returns a :class:`Report`.
"""


from __future__ import annotations

import logging
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import io
from .params import Params

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .comparison import Comparison

__all__ = ["FAMILIES", "Family", "Report", "plot_result", "reproduce", "run_compare",
           "save_figure"]

log = logging.getLogger("linvae")

FAMILIES = ("sgd_vs_ode", "collapse", "superfluous", "annealing", "disentanglement",
            "optimal_beta")
#: Variables of the standard figure (:func:`plot_result`)
STANDARD = ("m", "d", "Q", "E", "R", "D", "eg")
_LABELS = {"m": "m = WᵀW*/N", "d": "d = VᵀW*/N", "Q": "Q = WᵀW/N", "E": "E = VᵀV/N",
           "R": "R = WᵀV/N", "D": "D (encoder variance)", "eg": "ε_g (generalisation error)",
           "rate": "rate (KL)", "distortion": "distortion", "loss": "loss", "beta": "β(t)"}


# -- figures ---------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Save a figure atomically (temporary file + rename); the format is the suffix."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return io.atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _describe(attrs: Mapping[str, Any], *, swept: tuple[str, ...] = ()) -> str:
    """A short parameter line from dataset attributes, leaving out the ``swept`` ones."""
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


def _suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """A figure title wrapped to the figure's width (never clipped)."""
    import textwrap

    width = max(30, int(fig.get_figwidth() * 130 / fontsize))
    fig.suptitle("\n".join(textwrap.wrap(text, width)), fontsize=fontsize)


def plot_result(ds: xr.Dataset, variables: Sequence[str] | None = None,
                title: str | None = None) -> Figure:
    """The standard figure of a simulation or ODE dataset: each variable over t.

    Every entry of a matrix variable is drawn (the diagonal only if there are more than
    6); for a simulation the replica mean with a band of +- one standard deviation
    (diverged replicas left out).
    """
    from .plot import STYLE, _colors, _default_entries, _entry, figure

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
    for ax, v in zip(fig.axes, names, strict=False):
        da = ds[v]
        idxs = _default_entries(da)
        for c, idx in zip(_colors(len(idxs)), idxs, strict=True):
            e = _entry(da, idx)
            lab = f"{v}[{','.join(map(str, idx))}]" if idx else v
            if "replica" in e.dims:
                mean, sd = e.mean("replica").values, e.std("replica").values
                ax.fill_between(t, mean - sd, mean + sd, color=c, alpha=STYLE["band_alpha"],
                                lw=0)
                ax.plot(t, mean, color=c, lw=STYLE["linewidth"], label=lab)
            else:
                ax.plot(t, e.values, color=c, lw=STYLE["linewidth"], label=lab)
        ax.set_xlabel("t = steps / N")
        ax.set_ylabel(_LABELS.get(v, v), fontsize=STYLE["fontsize"])
        if len(idxs) > 1:
            ax.legend(fontsize=STYLE["fontsize"] - 1, frameon=False)
    for ax in fig.axes[len(names):]:
        ax.set_visible(False)
    if title is None:
        kind = "ODE" if "replica" not in ds.dims else \
            f"SGD, mean ± sd over {ds.sizes['replica']} replicas"
        title = f"{kind}: {_describe(ds.attrs)}"
    _suptitle(fig, title, fontsize=STYLE["fontsize"] + 1)
    return fig


# -- family 1: SGD vs ODE ---------------------------------------------------------------


def run_compare(p: Params, out: Path, *, Ns: Sequence[int], t_max: float, replicas: int,
                record_every: float, seed: int = 0, threads: int | None = None,
                init: Any = None, progress: bool = True, attrs: Mapping[str, Any] | None = None,
                stem: str = "compare", sim_method: str | Mapping[int, str] = "weights",
                show: Sequence[int] | None = None) -> tuple[Comparison, list[Path]]:
    """Run :func:`linvae.compare`, write its data and the trajectories + gap figure.

    ``sim_method`` is passed to :func:`linvae.compare`; ``show`` picks the N whose
    trajectories are drawn (default: all; the gap panel always has every N).
    """
    from .comparison import compare
    from .plot import _n_label, figure, plot_gaps, plot_trajectories

    io.check_output_folder(out)  # before the simulations, not after
    cmp = compare(p, Ns=Ns, t_max=t_max, replicas=replicas, init=init,
                  record_every=record_every, seed=seed, threads=threads, progress=progress,
                  sim_method=sim_method)
    extra = dict(attrs or {})
    files: list[Path] = []
    ode = cmp.ode.copy()
    ode.attrs.update(extra)
    files.append(io.save(ode, out / f"{stem}_ode.nc"))
    for N, sim in cmp.sims.items():
        sim = sim.copy()
        sim.attrs.update(extra)
        files.append(io.save(sim, out / f"{stem}_sim_N{N}.nc"))
    gaps = cmp.gaps.copy()
    for stat in ("max", "rms"):
        gaps[f"exponent_{stat}"] = cmp.exponents[stat]
        gaps[f"prefactor_{stat}"] = cmp.prefactors[stat]
    gaps["variable"] = gaps["variable"].astype(str)
    gaps.attrs.update({**p.to_attrs(), **extra, "Ns": np.array(cmp.Ns), "replicas": replicas,
                       "t_max": t_max})
    files.append(io.save(gaps, out / f"{stem}_gaps.nc"))

    variables = [v for v in STANDARD if v in cmp.ode]
    drawn = cmp.sims if show is None else {int(n): cmp.sims[int(n)] for n in show}
    fig = figure(ncols=4, nrows=2, width=3.6, height=2.8)
    for ax, v in zip(fig.axes, variables, strict=False):
        plot_trajectories(cmp.ode, drawn, variable=v, ax=ax)
        ax.set_ylabel(_LABELS.get(v, v))
        if v != variables[0]:
            leg = ax.get_legend()
            if leg is not None:
                leg.remove()
    plot_gaps(cmp.gaps, stat="rms", exponents=cmp.exponents, prefactors=cmp.prefactors,
              ax=fig.axes[7])
    fig.axes[7].set_title("SGD–ODE gap vs N (rms)", fontsize=9)
    gram = [n for n in cmp.Ns if cmp.methods.get(n) == "gram"]
    how = f" (Gram chain at N = {', '.join(map(_n_label, gram))})" if gram else ""
    _suptitle(fig, f"SGD (mean ± sd, {replicas} replicas) vs ODE, N = "
                   f"{', '.join(map(_n_label, cmp.Ns))}{how}: {_describe(p.to_attrs())}")
    for suffix in (".png", ".pdf"):
        files.append(save_figure(fig, out / f"{stem}{suffix}"))
    return cmp, files


# -- the figure families ------------------------------------------------------------------


@dataclass
class Family:
    """Outcome of one figure family."""

    name: str
    ok: bool = False
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # summary.md rows
    error: str = ""


@dataclass
class Report:
    out: Path
    quick: bool
    families: list[Family]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.families)


def _settings(quick: bool) -> dict[str, Any]:
    # sgd_vs_ode: the weights at small N and the Gram chain (cost independent of N) from
    # inside their range up to N = 1e6 (quick) or 1e7, at t_max = 10: the gap over six
    # decades of N. 1e8 would be 1e9 steps, ~55 s, per replica.
    if quick:
        return {"Ns": (10, 100, 300, 1000, 10**4, 10**5, 10**6),
                "gram_Ns": (300, 10**4, 10**5, 10**6), "show": (100, 1000, 10**6),
                "t_max": 10.0, "replicas": 8, "record_every": 0.2,
                "betas": np.linspace(0.05, 3.0, 24), "phase": False,
                "sf_t_max": 300.0, "sf_vs_M": False,
                "gammas": np.geomspace(0.01, 1.0, 6), "kinds": ("tanh",),
                "dis_t_max": 2000.0, "opt_rhos": (0.5, 2.0),
                "opt_betas": np.linspace(0.05, 2.5, 14)}
    # the weights cost ~ replicas * t_max * N^2 (N = 1e4: ~10 s on 2 cores), the Gram
    # chain ~ replicas * t_max * N (N = 1e7: ~25 s)
    return {"Ns": (10, 100, 1000, 3000, 10**4, 10**5, 10**6, 10**7),
            "gram_Ns": (3000, 10**5, 10**6, 10**7), "show": (100, 1000, 10**4, 10**7),
            "t_max": 10.0, "replicas": 8, "record_every": 0.1,
            "betas": np.linspace(0.05, 3.0, 60), "phase": True,
            "sf_t_max": 600.0, "sf_vs_M": True,
            "gammas": np.geomspace(0.01, 1.0, 13), "kinds": ("tanh", "linear", "sigmoid",
                                                             "cyclical"),
            "dis_t_max": 3000.0, "opt_rhos": (0.5, 1.0, 2.0),
            "opt_betas": np.linspace(0.05, 2.5, 50)}


def _save_pair(fig: Figure, out: Path, name: str) -> list[Path]:
    return [save_figure(fig, out / f"{name}{s}") for s in (".png", ".pdf")]


def _fig_sgd_vs_ode(out: Path, s: Mapping[str, Any], progress: bool,
                    threads: int | None) -> Family:
    fam = Family("sgd_vs_ode")
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    methods = {n: "gram" if n in s["gram_Ns"] else "weights" for n in s["Ns"]}
    cmp, files = run_compare(p, out, Ns=s["Ns"], t_max=s["t_max"], replicas=s["replicas"],
                             record_every=s["record_every"], threads=threads,
                             progress=progress, stem="sgd_vs_ode", sim_method=methods,
                             show=s["show"])
    fam.files += files
    by = {m: [n for n in cmp.Ns if methods[n] == m] for m in ("weights", "gram")}
    decades = math.log10(max(cmp.Ns) / min(cmp.Ns))
    fam.lines.append(f"Parameters: {p}, start overlap_state(0.5), N = {cmp.Ns}, "
                     f"{s['replicas']} replicas, t ≤ {s['t_max']:g}.")
    fam.lines.append(f"SGD on the weights at N = {by['weights']}; the Gram chain (the exact "
                     f"finite-N law, docs/model.md#gram-chain) at N = {by['gram']}. The "
                     f"exponents are fitted over every N, {decades:.1f} decades.")
    fam.lines.append("")
    from .plot import _n_label

    fam.lines.append("| variable | " + " | ".join(f"rms gap N={_n_label(n)}" for n in cmp.Ns)
                     + " | exponent (rms) | exponent (max) | theory |")
    fam.lines.append("|---" * (len(cmp.Ns) + 4) + "|")
    for v in cmp.gaps["variable"].values:
        gaps = " | ".join(f"{float(cmp.gaps['rms'].sel(N=n, variable=v)):.3g}" for n in cmp.Ns)
        fam.lines.append(f"| {v} | {gaps} | {float(cmp.exponents['rms'].sel(variable=v)):.3f} "
                         f"| {float(cmp.exponents['max'].sel(variable=v)):.3f} | -0.5 |")
    if any(cmp.n_diverged.values()):
        fam.lines.append(f"\nDiverged replicas (excluded): {cmp.n_diverged}")
    return fam


def _fig_collapse(out: Path, s: Mapping[str, Any]) -> Family:
    from . import findings

    fam = Family("collapse")
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.1)
    sweep = findings.collapse_sweep(p, s["betas"])
    phase = None
    fam.files.append(io.save(sweep, out / "collapse_sweep.nc"))
    if s["phase"]:
        phase = findings.phase_diagram(p, betas=np.linspace(0.05, 4.5, 91),
                                       rhos=np.linspace(0.0, 3.0, 61))
        fam.files.append(io.save(phase, out / "collapse_phase.nc"))
    fig = findings.plot_collapse(sweep, phase)
    _suptitle(fig, f"Posterior collapse: stable fixed point vs β "
                   f"({_describe(p.to_attrs(), swept=('beta',))})")
    fam.files += _save_pair(fig, out, "collapse")
    fam.lines.append(f"Parameters: {p} (β swept over {len(s['betas'])} values in "
                     f"[{s['betas'][0]:g}, {s['betas'][-1]:g}]).")
    fam.lines.append("")
    fam.lines.append("| factor | numerical threshold β_c | theory ρ_k + η |")
    fam.lines.append("|---|---|---|")
    for k in range(sweep.sizes["factor"]):
        fam.lines.append(f"| {k} | {float(sweep['threshold'][k]):.6f} | "
                         f"{float(sweep['predicted'][k]):g} |")
    return fam


def _fig_superfluous(out: Path, s: Mapping[str, Any]) -> Family:
    from . import findings
    from .stability import noise_threshold

    fam = Family("superfluous")
    p = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.2)
    traj = findings.superfluous(p, t_max=s["sf_t_max"], record_every=2.0)
    fam.files.append(io.save(traj, out / "superfluous_trajectories.nc"))
    vs_M = None
    if s["sf_vs_M"]:
        vs_M = findings.superfluous_vs_M(Ms=(1, 2, 3, 4))
        fam.files.append(io.save(vs_M, out / "superfluous_vs_M.nc"))
    fig = findings.plot_superfluous(traj, vs_M)
    _suptitle(fig, f"Superfluous latents, (M, M*) = (2, 1), β below and above η "
                 f"(ρ={p.rho[0]:g}, η={p.eta:g}, τ={p.tau:g})")
    fam.files += _save_pair(fig, out, "superfluous")
    thr = noise_threshold(p)
    fam.lines.append(f"Parameters: {p.replace(beta=0.5)} with β ∈ "
                     f"{[float(b) for b in np.atleast_1d(traj['beta'].values)][:4] if 'beta' in traj.coords else 'below/above η'}, "
                     f"t ≤ {s['sf_t_max']:g}.")
    fam.lines.append("")
    fam.lines.append("| quantity | numerical | theory |")
    fam.lines.append("|---|---|---|")
    fam.lines.append(f"| β above which the extra latent collapses (stops fitting noise) | "
                     f"{float(thr):.6f} | η = {thr.predicted:g} (τ → 0; finite-τ shift "
                     f"{float(thr) - thr.predicted:+.4f}) |")
    return fam


def _fig_annealing(out: Path, s: Mapping[str, Any]) -> Family:
    from . import findings

    fam = Family("annealing")
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    ann = findings.annealing(p, gammas=s["gammas"], kinds=s["kinds"])
    fam.files.append(io.save(ann, out / "annealing.nc"))
    fig = findings.plot_annealing(ann)
    _suptitle(fig, f"KL annealing β(t) → β∞: convergence time vs γ "
                 f"({_describe(p.to_attrs())})")
    fam.files += _save_pair(fig, out, "annealing")
    gs = float(ann["gamma_star"])
    tc = float(ann["t_constant"])
    fam.lines.append(f"Parameters: {p} (β∞ = 0.5), schedules {list(s['kinds'])}, "
                     f"γ ∈ [{s['gammas'][0]:g}, {s['gammas'][-1]:g}] ({len(s['gammas'])} values).")
    fam.lines.append("")
    fam.lines.append("| quantity | numerical | docs/model.md#findings |")
    fam.lines.append("|---|---|---|")
    fam.lines.append(f"| γ* = -J_max/2 | {gs:.4f} | 0.068 |")
    fam.lines.append(f"| convergence time, constant β | {tc:.1f} | 61 |")
    if "tanh" in list(s["kinds"]):
        tt = ann["t_conv"].sel(schedule="tanh")
        for g in tt["gamma"].values:
            fam.lines.append(f"| convergence time, tanh, γ = {g:.3g} "
                             f"({'slower' if g < gs else 'faster'} than γ*) | "
                             f"{float(tt.sel(gamma=g)):.1f} | |")
    return fam


def _fig_disentanglement(out: Path, s: Mapping[str, Any]) -> Family:
    from . import findings

    fam = Family("disentanglement")
    p = Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.5, tau=0.5)
    ds = findings.disentanglement(p, t_max=s["dis_t_max"], record_every=5.0)
    fam.files.append(io.save(ds, out / "disentanglement.nc"))
    fig = findings.plot_disentanglement(ds)
    _suptitle(fig, f"Disentanglement: m from an entangled start ({_describe(p.to_attrs())})")
    fam.files += _save_pair(fig, out, "disentanglement")
    m_end = ds["m"].isel(t=-1).values
    fam.lines.append(f"Parameters: {p}, t ≤ {s['dis_t_max']:g}.")
    fam.lines.append("")
    fam.lines.append("| quantity | value | theory |")
    fam.lines.append("|---|---|---|")
    fam.lines.append(f"| disentanglement score at t = 0 | {float(ds['score'][0]):.3f} | |")
    fam.lines.append(f"| disentanglement score at the end | {float(ds['score'][-1]):.4f} | "
                     "→ 1 (m diagonal up to sign/permutation) |")
    m_txt = "; ".join(", ".join(f"{x:.3f}" for x in row) for row in m_end)
    fam.lines.append(f"| m at the end (rows: latents) | [{m_txt}] | diagonal up to sign and "
                     "permutation |")
    return fam


def _fig_optimal_beta(out: Path, s: Mapping[str, Any]) -> Family:
    from . import findings

    fam = Family("optimal_beta")
    # small tau: the optimum beta = eta holds as tau -> 0 and moves by O(tau) otherwise
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.01)
    ds = findings.optimal_beta(p, rhos=s["opt_rhos"], betas=s["opt_betas"])
    fam.files.append(io.save(ds, out / "optimal_beta.nc"))
    fig = findings.plot_optimal_beta(ds)
    desc = _describe(p.to_attrs(), swept=("rho", "beta"))
    _suptitle(fig, f"Steady-state ε_g vs β for several ρ ({desc})")
    fam.files += _save_pair(fig, out, "optimal_beta")
    fam.lines.append(f"Parameters: {p} (ρ ∈ {list(map(float, ds['rho'].values))}, β swept "
                     f"over {ds.sizes['beta']} values, then minimised numerically).")
    fam.lines.append("")
    fam.lines.append("| ρ | numerical optimum β | ε_g there | theory (τ → 0) |")
    fam.lines.append("|---|---|---|---|")
    for rho in ds["rho"].values:
        sel = ds.sel(rho=rho)
        fam.lines.append(f"| {rho:g} | {float(sel['beta_opt']):.4f} | "
                         f"{float(sel['eg_min']):.2e} | β = η = {p.eta:g}, ε_g = 0 |")
    return fam


def _run_family(name: str, fn: Callable[[], Family]) -> Family:
    log.info("figure family %s ...", name)
    t0 = time.perf_counter()
    try:
        fam = fn()
        fam.ok = True
    except Exception as exc:  # noqa: BLE001 - one family's failure must not stop the others
        fam = Family(name, ok=False)
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        fam.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"
        log.error("figure family %s failed: %s", name, fam.error)
    fam.seconds = time.perf_counter() - t0
    if fam.ok:
        log.info("figure family %s done in %.1f s", name, fam.seconds)
    return fam


def _write_summary(report: Report) -> Path:
    import linvae

    mode = "--quick" if report.quick else "default"
    lines = ["# linvae reproduce: summary", "",
             (f"linvae {linvae.__version__}, settings: {mode}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}."),
             f"Total run time: **{report.seconds:.1f} s**.", "",
             "| family | status | time (s) | figures |", "|---|---|---|---|"]
    for f in report.families:
        figs = ", ".join(p.name for p in f.files if p.suffix in (".png", ".pdf"))
        status = "ok" if f.ok else "**FAILED**"
        lines.append(f"| {f.name} | {status} | {f.seconds:.1f} | {figs or '-'} |")
    titles = {"sgd_vs_ode": "1. SGD vs ODE (deterministic limit, gap ∝ N^-1/2)",
              "collapse": "2. Posterior collapse threshold",
              "superfluous": "3. Superfluous latents",
              "annealing": "4. KL annealing",
              "disentanglement": "5. Disentanglement",
              "optimal_beta": "6. The optimal β is η, whatever ρ"}
    for f in report.families:
        lines += ["", f"## {titles.get(f.name, f.name)}", ""]
        if f.ok:
            lines += f.lines
            data = [p.name for p in f.files if p.suffix == ".nc"]
            lines += ["", f"Data: {', '.join(data)}"]
        else:
            lines.append(f"FAILED: `{f.error}`")
    path = report.out / "summary.md"
    text = "\n".join(lines) + "\n"
    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    io.atomic_write(path, write)
    return path


def reproduce(out: str | os.PathLike[str] = "linvae-reproduce", *, quick: bool = False,
              progress: bool = True, threads: int | None = None,
              only: Sequence[str] | None = None) -> Report:
    """Regenerate the figure families into ``out`` (created if missing).

    Parameters
    ----------
    out : path
        Output folder: ``<family>.png``, ``<family>.pdf``, the data as netCDF, and
        ``summary.md``.
    quick : bool
        Smaller N, fewer replicas and grid points (under 2 minutes on 2 cores, against
        about 10 minutes).
    progress : bool
        Progress bars for the simulations.
    threads : int, optional
        OpenMP threads of the simulations.
    only : sequence of str, optional
        Subset of :data:`FAMILIES`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    out = io.check_output_folder(out)  # before hours of work, not after
    out.mkdir(parents=True, exist_ok=True)
    names = list(FAMILIES) if only is None else list(only)
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        raise ValueError(f"only must be among {FAMILIES}, got {bad}")
    s = _settings(quick)
    runners: dict[str, Callable[[], Family]] = {
        "sgd_vs_ode": lambda: _fig_sgd_vs_ode(out, s, progress, threads),
        "collapse": lambda: _fig_collapse(out, s),
        "superfluous": lambda: _fig_superfluous(out, s),
        "annealing": lambda: _fig_annealing(out, s),
        "disentanglement": lambda: _fig_disentanglement(out, s),
        "optimal_beta": lambda: _fig_optimal_beta(out, s),
    }
    log.info("reproducing %s into %s (%s settings)", ", ".join(names), out,
             "quick" if quick else "default")
    t0 = time.perf_counter()
    fams = [_run_family(n, runners[n]) for n in names]
    report = Report(out=out, quick=quick, families=fams, seconds=time.perf_counter() - t0)
    path = _write_summary(report)
    log.info("wrote %s (%d of %d families ok, %.1f s)", path,
             sum(f.ok for f in fams), len(fams), report.seconds)
    return report
