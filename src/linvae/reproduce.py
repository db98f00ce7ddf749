"""``linvae reproduce``: every figure family of the paper, with its data and a summary.

Nine independent families, each written as ``<name>.png`` and ``<name>.pdf`` with its
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
7. ``fluctuations``: the finite-N theory (docs/model.md#fluctuations) against the Gram
   chain: predicted vs measured sd of m and Q over N, and the median escape time from
   the collapsed plateau vs ln N for two beta, with the slope 1/(2 lambda) against beta
   (it diverges at rho + eta); :func:`linvae.fluctuations`, :func:`linvae.escape_time`.

8. ``universality``: the SGD-ODE gap vs N and its fitted exponent for every noise and
   factor family of docs/model.md#data-families (Student-t down to nu = 2.5), and the
   spread against :func:`linvae.fluctuations`.
9. ``finite_data``: multi-epoch SGD on P = alpha N samples: long-time eps_g, m^2/Q and
   the training and population losses against alpha, with the overlap of the samples'
   top principal component (:func:`linvae.data.pca_overlap`).

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

from . import io
from ._moved import forward
from .params import Params
from .plot import (
    describe,
    n_label,
    save_figure,
    suptitle,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .comparison import Comparison

__all__ = ["FAMILIES", "Family", "Report", "reproduce"]

log = logging.getLogger("linvae")

FAMILIES = ("sgd_vs_ode", "collapse", "superfluous", "annealing", "disentanglement",
            "optimal_beta", "fluctuations", "universality", "finite_data")

#: Names that used to live here: the module that has them now (the command line uses
#: them too, and it does not depend on this script).
_MOVED = {"run_compare": "comparison"}


if TYPE_CHECKING:  # type checkers see the moved names, and no __getattr__ hiding typos
    from .comparison import run_compare  # noqa: F401 - for type checkers
else:
    __getattr__ = forward(__name__, _MOVED)


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
    """Outcome of a :func:`reproduce` run: the output folder, the mode and each family."""

    out: Path
    quick: bool
    families: list[Family]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every figure family succeeded."""
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
                "opt_betas": np.linspace(0.05, 2.5, 14),
                "fl_Ns": (10**3, 10**4), "fl_replicas": 100,
                "esc_Ns": (10**3, 10**4), "esc_replicas": (200, 200),
                "slope_betas": (1.0, 2.0, 2.4),
                "uni_Ns": (250, 1000, 2000), "uni_replicas": 8, "uni_t_max": 3.0,
                "uni_record_every": 0.2,
                "fd_N": 500, "fd_replicas": 8, "fd_t_max": 200.0,
                "fd_alphas": (0.25, 1.0, 4.0, 16.0), "fd_orders": ("shuffle",)}
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
            "opt_betas": np.linspace(0.05, 2.5, 50),
            # fluctuations: the Gram chain at ~100 ns per step; 200 replicas give the sd to
            # 5% (1/sqrt(2 R)), and the median escape time to ~1-2%
            "fl_Ns": (10**3, 10**4, 10**5), "fl_replicas": 200,
            "esc_Ns": (10**3, 10**4, 10**5), "esc_replicas": (400, 400, 100),
            "slope_betas": (0.2, 0.5, 1.0, 1.5, 2.0, 2.3, 2.4, 2.45, 2.49),
            # universality: the weights, Student-t and Laplace draws cost ~10 and ~5 times
            # a Gaussian one
            "uni_Ns": (250, 1000, 4000), "uni_replicas": 24, "uni_t_max": 4.0,
            "uni_record_every": 0.2,
            "fd_N": 1000, "fd_replicas": 8, "fd_t_max": 300.0,
            "fd_alphas": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
            "fd_orders": ("shuffle", "cycle")}


def _save_pair(fig: Figure, out: Path, name: str) -> list[Path]:
    return [save_figure(fig, out / f"{name}{s}") for s in (".png", ".pdf")]


def _fig_sgd_vs_ode(out: Path, s: Mapping[str, Any], progress: bool,
                    threads: int | None) -> Family:
    from .comparison import run_compare

    fam = Family("sgd_vs_ode")
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    methods = {n: "gram" if n in s["gram_Ns"] else "weights" for n in s["Ns"]}
    cmp, files = run_compare(p, out, Ns=s["Ns"], t_max=s["t_max"], replicas=s["replicas"],
                             record_every=s["record_every"], threads=threads,
                             progress=progress, stem="sgd_vs_ode", sim_method=methods,
                             show=s["show"])
    fam.files += files
    if cmp.spread is not None:
        spread = cmp.spread.copy()
        spread.attrs.update({**p.to_attrs(), "replicas": s["replicas"]})
        fam.files.append(io.save(spread, out / "sgd_vs_ode_spread.nc"))
    by = {m: [n for n in cmp.Ns if methods[n] == m] for m in ("weights", "gram")}
    decades = math.log10(max(cmp.Ns) / min(cmp.Ns))
    fam.lines.append(f"Parameters: {p}, start overlap_state(0.5), N = {cmp.Ns}, "
                     f"{s['replicas']} replicas, t ≤ {s['t_max']:g}.")
    fam.lines.append(f"SGD on the weights at N = {by['weights']}; the Gram chain (the exact "
                     f"finite-N law, docs/model.md#gram-chain) at N = {by['gram']}. The "
                     f"exponents are fitted over every N, {decades:.1f} decades.")
    fam.lines.append("")

    fam.lines.append("| variable | " + " | ".join(f"rms gap N={n_label(n)}" for n in cmp.Ns)
                     + " | exponent (rms) | exponent (max) | theory |")
    fam.lines.append("|---" * (len(cmp.Ns) + 4) + "|")
    for v in cmp.gaps["variable"].values:
        gaps = " | ".join(f"{float(cmp.gaps['rms'].sel(N=n, variable=v)):.3g}" for n in cmp.Ns)
        fam.lines.append(f"| {v} | {gaps} | {float(cmp.exponents['rms'].sel(variable=v)):.3f} "
                         f"| {float(cmp.exponents['max'].sel(variable=v)):.3f} | -0.5 |")
    ratio = cmp.spread_ratio
    if ratio is not None:
        fam.lines.append("")
        fam.lines.append(f"Replica sd / predicted sd (linear noise approximation, "
                         f"docs/model.md#fluctuations), median over t > 0 and entries; "
                         f"{s['replicas']} replicas know an sd to "
                         f"~{100 / math.sqrt(2 * (s['replicas'] - 1)):.0f}%:")
        fam.lines.append("")
        fam.lines.append("| variable | " + " | ".join(f"N={n_label(n)}" for n in cmp.Ns)
                         + " |")
        fam.lines.append("|---" * (len(cmp.Ns) + 1) + "|")
        for v in ratio["variable"].values:
            row = " | ".join(f"{float(ratio['ratio'].sel(N=n, variable=v)):.2f}"
                             for n in cmp.Ns)
            fam.lines.append(f"| {v} | {row} |")
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
    suptitle(fig, f"Posterior collapse: stable fixed point vs β "
                   f"({describe(p.to_attrs(), swept=('beta',))})")
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
    suptitle(fig, f"Superfluous latents, (M, M*) = (2, 1), β below and above η "
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
    suptitle(fig, f"KL annealing β(t) → β∞: convergence time vs γ "
                 f"({describe(p.to_attrs())})")
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
    suptitle(fig, f"Disentanglement: m from an entangled start ({describe(p.to_attrs())})")
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
    desc = describe(p.to_attrs(), swept=("rho", "beta"))
    suptitle(fig, f"Steady-state ε_g vs β for several ρ ({desc})")
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


#: The finite-N family's model: a large growth rate lambda on the plateau, so that the
#: escape takes few steps (docs/model.md#fluctuations, "Measured").
_FL_PARAMS = Params(M=1, M_star=1, rho=2.0, eta=0.5, beta=0.2, tau=1.5)
_FL_TIMES = (1.0, 2.5)
_FL_VARIABLES = ("m", "Q")
_ESC_BETAS = (0.2, 1.0)
#: The slope's panel follows the documented table (tau = 0.5) up to rho + eta = 2.5.
_SLOPE_PARAMS = Params(M=1, M_star=1, rho=2.0, eta=0.5, beta=0.2, tau=0.5)


def _first_passage(ds: Any, target: float) -> np.ndarray:
    """Return per replica the first time ``|m|`` reaches ``target``.

    Linear interpolation between records; inf if it never does within the run.
    """
    t = np.asarray(ds["t"].values, dtype=np.float64)
    m = np.abs(np.asarray(ds["m"].values, dtype=np.float64)[:, :, 0, 0])
    out = np.full(m.shape[0], np.inf)
    for r in range(m.shape[0]):
        hit = np.flatnonzero(m[r] >= target)
        if hit.size:
            k = int(hit[0])
            if k == 0:
                out[r] = t[0]
            else:
                f = (target - m[r, k - 1]) / (m[r, k] - m[r, k - 1])
                out[r] = t[k - 1] + f * (t[k] - t[k - 1])
    return out


def _median_se(x: np.ndarray, seed: int) -> tuple[float, float]:
    """Median (inf entries, runs not escaped yet, count as late) and its bootstrap SE."""
    rng = np.random.default_rng(seed)
    med = float(np.median(x))
    boot = np.median(x[rng.integers(0, x.size, size=(200, x.size))], axis=1)
    return med, float(np.std(boot[np.isfinite(boot)])) if np.isfinite(med) else math.nan


def _fig_fluctuations(out: Path, s: Mapping[str, Any], progress: bool,
                      threads: int | None) -> Family:
    import xarray as xr

    from .finite_n import escape_time, fluctuations, plateau
    from .plot import colors, figure
    from .simulation import simulate
    from .states import overlap_state

    fam = Family("fluctuations")
    p = _FL_PARAMS
    start = overlap_state(p)

    # (a) the spread at fixed times: predicted sigma / sqrt(N) against R Gram chain runs
    times = np.asarray(_FL_TIMES)
    Ns, R = list(s["fl_Ns"]), int(s["fl_replicas"])
    lna = fluctuations(p, 1, float(times[-1]), init=start, t_eval=np.r_[0.0, times])
    lna = lna.isel(t=slice(1, None))
    pred = np.zeros((len(_FL_VARIABLES), times.size, len(Ns)))
    meas = np.zeros_like(pred)
    for j, N in enumerate(Ns):
        ds = simulate(p, N, float(times[-1]), times=times, seeds=R, seed=100 + j, init=start,
                      method="gram", threads=threads, progress=progress)
        ok = ~np.asarray(ds["diverged"].values, dtype=bool)
        for i, v in enumerate(_FL_VARIABLES):
            # the first entry: m[0, 0] and Q[0, 0] of the (1, 1) model
            meas[i, :, j] = ds[v].values[ok][:, :, 0, 0].std(axis=0, ddof=1)
            pred[i, :, j] = lna[f"{v}_sd"].values[:, 0, 0] / math.sqrt(N)
    se = meas / math.sqrt(2.0 * (R - 1))  # sd of a Gaussian sample's sd
    sd_data = xr.Dataset(
        {"sd_predicted": (("variable", "time", "N"), pred),
         "sd_measured": (("variable", "time", "N"), meas),
         "sd_measured_se": (("variable", "time", "N"), se)},
        coords={"variable": list(_FL_VARIABLES), "time": times, "N": Ns},
        attrs={**p.to_attrs(), "replicas": R, "init": "overlap_state(0.5)",
               "method": "gram", "description": "sd of m[0,0] and Q[0,0] over Gram chain "
               "replicas and predicted by the linear noise approximation"})
    fam.files.append(io.save(sd_data, out / "fluctuations_sd.nc"))

    # (b) the median escape time from the random start, measured and predicted
    eNs, eR = list(s["esc_Ns"]), list(s["esc_replicas"])
    betas = list(_ESC_BETAS)
    shape = (len(betas), len(eNs))
    t_pred, t_meas, t_se, t_asym = (np.full(shape, np.nan) for _ in range(4))
    rates, slopes, offsets = (np.zeros(len(betas)) for _ in range(3))
    for b, beta in enumerate(betas):
        q = p.replace(beta=beta)
        for j, N in enumerate(eNs):
            e = escape_time(q, N)
            rates[b], slopes[b], offsets[b] = e.rate, e.slope, e.offset
            t_pred[b, j], t_asym[b, j] = e.t, e.t_asymptotic
            # long enough for nearly every run to escape: the spread of ln|A| / lambda
            t_run = 1.15 * e.t + 0.5
            ds = simulate(q, N, t_run, record_every=0.01, seeds=eR[j], seed=200 + 10 * b + j,
                          method="gram", threads=threads, progress=progress)
            passage = _first_passage(ds, e.level * e.m_fixed)
            t_meas[b, j], t_se[b, j] = _median_se(passage, seed=b * 100 + j)
    esc_data = xr.Dataset(
        {"t_predicted": (("beta", "N"), t_pred), "t_measured": (("beta", "N"), t_meas),
         "t_measured_se": (("beta", "N"), t_se), "t_asymptotic": (("beta", "N"), t_asym),
         "rate": (("beta",), rates), "slope": (("beta",), slopes),
         "offset": (("beta",), offsets), "replicas": (("N",), eR)},
        coords={"beta": betas, "N": eNs},
        attrs={**p.to_attrs(), "level": 0.5, "init": "random", "method": "gram",
               "description": "median time for |m| to reach half its fixed-point value "
               "from the random start: Gram chain replicas and linvae.escape_time"})
    fam.files.append(io.save(esc_data, out / "fluctuations_escape.nc"))

    # (c) the slope 1 / (2 lambda) against beta, up to the collapse threshold
    sb = np.asarray(s["slope_betas"], dtype=np.float64)
    lam_b = np.array([plateau(_SLOPE_PARAMS.replace(beta=float(b))).rate for b in sb])
    thr = float(_SLOPE_PARAMS.rho_vec[0] + _SLOPE_PARAMS.eta)
    slope_data = xr.Dataset({"rate": (("beta",), lam_b), "slope": (("beta",), 0.5 / lam_b)},
                            coords={"beta": sb},
                            attrs={**_SLOPE_PARAMS.to_attrs(), "threshold": thr})
    fam.files.append(io.save(slope_data, out / "fluctuations_slope.nc"))

    fig = figure(ncols=3, width=3.9, height=3.2)
    ax_a, ax_b, ax_c = fig.axes
    cols = colors(len(_FL_VARIABLES) * times.size)
    Nf = np.geomspace(min(Ns), max(Ns), 20)
    for k, (i, ti) in enumerate(np.ndindex(len(_FL_VARIABLES), times.size)):
        v, c = _FL_VARIABLES[i], cols[k]
        ax_a.errorbar(Ns, meas[i, ti], yerr=se[i, ti], fmt="o", color=c, ms=4, capsize=2,
                      label=f"{v}, t = {times[ti]:g}")
        ax_a.loglog(Nf, pred[i, ti, 0] * np.sqrt(Ns[0] / Nf), color=c, lw=1.2)
    ax_a.plot([], [], color="k", lw=1.2, label="theory σ/√N")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel("N")
    ax_a.set_ylabel("sd over replicas")
    ax_a.set_title(f"(a) spread, {R} replicas (Gram chain)", fontsize=9)
    ax_a.legend(fontsize=7, frameon=False)
    bcols = colors(len(betas))
    lnN = np.log(np.asarray(eNs, dtype=np.float64))
    lnf = np.linspace(lnN[0], lnN[-1], 20)
    for b, beta in enumerate(betas):
        c = bcols[b]
        ax_b.errorbar(lnN, t_meas[b], yerr=t_se[b], fmt="o", color=c, ms=4, capsize=2,
                      label=f"β = {beta:g}: measured median")
        ax_b.plot(lnN, t_pred[b], "-", color=c, lw=1.2,
                  label=f"escape_time (slope 1/(2μ) = {slopes[b]:.3f})")
        ax_b.plot(lnf, slopes[b] * lnf + offsets[b], ":", color=c, lw=1.0)
    ax_b.plot([], [], "k:", lw=1.0, label="large-N form slope ln N + offset")
    ax_b.set_xlabel("ln N")
    ax_b.set_ylabel("median escape time")
    ax_b.set_title("(b) escape from the plateau (random start)", fontsize=9)
    ax_b.legend(fontsize=6.5, frameon=False, loc="upper left")
    ax_c.semilogy(sb, 0.5 / lam_b, "o-", color="k", ms=3, lw=1.0)
    ax_c.axvline(thr, color="k", ls=":", lw=1.0, label=f"ρ + η = {thr:g}")
    ax_c.set_xlabel("β")
    ax_c.set_ylabel("slope 1/(2μ) of t_esc vs ln N")
    ax_c.set_title(f"(c) growth rate μ → 0 at ρ + η (τ = {_SLOPE_PARAMS.tau:g})", fontsize=9)
    ax_c.legend(fontsize=7, frameon=False)
    suptitle(fig, f"Finite-N theory against the Gram chain "
                  f"({describe(p.to_attrs(), swept=('beta',))}; (a) β = {p.beta_inf:g} from "
                  f"overlap_state(0.5))")
    fam.files += _save_pair(fig, out, "fluctuations")

    fam.lines.append(f"Parameters: {p}; (a) from overlap_state(0.5), {R} Gram chain "
                     f"replicas per N (relative standard error of an sd "
                     f"{100 / math.sqrt(2 * R):.1f}%); (b) from the random start, level 0.5, "
                     f"replicas {dict(zip(eNs, eR, strict=True))}.")
    fam.lines.append("μ is the growth rate of the overlaps on the plateau (`escape_time(...).rate`, "
                     "lambda in docs/model.md#fluctuations); λ in the figures' parameters is "
                     "the L2 weight lam.")
    fam.lines.append("")
    fam.lines.append("| variable | t | N | predicted sd | measured sd | measured / predicted |")
    fam.lines.append("|---|---|---|---|---|---|")
    for i, ti, j in np.ndindex(*pred.shape):
        fam.lines.append(f"| {_FL_VARIABLES[i]}[0,0] | {times[ti]:g} | {n_label(Ns[j])} | "
                         f"{pred[i, ti, j]:.4g} | {meas[i, ti, j]:.4g} ± {se[i, ti, j]:.2g} | "
                         f"{meas[i, ti, j] / pred[i, ti, j]:.3f} |")
    fam.lines.append("")
    fam.lines.append("| β | μ | slope 1/(2μ) | N | predicted median t_esc | measured "
                     "(± bootstrap SE) | measured / predicted |")
    fam.lines.append("|---|---|---|---|---|---|---|")
    for b, j in np.ndindex(*shape):
        fam.lines.append(f"| {betas[b]:g} | {rates[b]:.3f} | {slopes[b]:.3f} | "
                         f"{n_label(eNs[j])} | {t_pred[b, j]:.3f} | {t_meas[b, j]:.3f} ± "
                         f"{t_se[b, j]:.3f} | {t_meas[b, j] / t_pred[b, j]:.3f} |")
    fam.lines.append("")
    fam.lines.append(f"Slope of the escape time against ln N, {_SLOPE_PARAMS} with β swept "
                     f"(μ → 0 as β → ρ + η = {thr:g}):")
    fam.lines.append("")
    fam.lines.append("| β | " + " | ".join(f"{b:g}" for b in sb) + " |")
    fam.lines.append("|---" * (sb.size + 1) + "|")
    fam.lines.append("| μ | " + " | ".join(f"{x:.4g}" for x in lam_b) + " |")
    fam.lines.append("| 1/(2μ) | " + " | ".join(f"{0.5 / x:.3g}" for x in lam_b) + " |")
    return fam


# universality: the noise families of docs/model.md#data-families, as (label, options)
_UNI_FAMILIES: tuple[tuple[str, dict[str, Any]], ...] = (
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
_UNI_VARIABLES = ("m", "d", "Q", "E", "R")


def _gap_exponents(cmp: Comparison, variables: Sequence[str], n_boot: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Fitted exponents of the rms gap and of the median replica's gap, with bootstrap SEs.

    Each replica's mean-square gap (over t and entries) is computed once; the rms gap at
    N is the root of their mean, the "median" gap the root of their median, which heavy
    tails across replicas do not drag. The SEs resample replicas at every N. Diverged
    replicas are left out (the caller counts them).
    """
    from .comparison import gap_statistics

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


def _fig_universality(out: Path, s: Mapping[str, Any], progress: bool,
                      threads: int | None) -> Family:
    import functools

    import xarray as xr

    from .comparison import compare
    from .plot import colors, figure
    from .simulation import simulate

    fam = Family("universality")
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    Ns, R, t_max = list(s["uni_Ns"]), int(s["uni_replicas"]), float(s["uni_t_max"])
    labels = [lab for lab, _ in _UNI_FAMILIES]
    V = list(_UNI_VARIABLES)
    shape = (len(labels), len(V))
    exps = {k: np.full(shape, np.nan) for k in ("rms", "rms_se", "median", "median_se")}
    gaps = {k: np.full((len(labels), len(Ns), len(V)), np.nan) for k in ("rms", "median")}
    ratio = np.full((len(labels), len(Ns), len(V)), np.nan)
    diverged = np.zeros(len(labels), dtype=np.int64)
    for f, (_, opts) in enumerate(_UNI_FAMILIES):
        cmp = compare(p, Ns=Ns, t_max=t_max, replicas=R, record_every=s["uni_record_every"],
                      seed=300 + 10 * f, threads=threads, progress=progress, variables=V,
                      simulate_fn=functools.partial(simulate, **opts))
        e = _gap_exponents(cmp, V, n_boot=200, seed=f)
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
        attrs={**p.to_attrs(), "replicas": R, "t_max": t_max, "init": "overlap_state(0.5)",
               "description": "SGD-ODE gap vs N per noise family (weights), fitted exponents "
               "with bootstrap SEs, and measured / predicted sd (linear noise approximation)"})
    fam.files.append(io.save(data, out / "universality.nc"))

    fig = figure(ncols=3, width=3.9, height=3.2)
    ax_a, ax_b, ax_c = fig.axes
    cols = colors(len(labels))
    qi = V.index("Q")
    for f, label in enumerate(labels):
        ax_a.loglog(Ns, gaps["rms"][f, :, qi], "o-", color=cols[f], ms=3, lw=1.0,
                    label=f"{label} ({exps['rms'][f, qi]:+.2f})")
        ax_c.plot(Ns, ratio[f, :, qi], "o-", color=cols[f], ms=3, lw=1.0)
    Nf = np.geomspace(min(Ns), max(Ns), 10)
    ax_a.loglog(Nf, gaps["rms"][0, 0, qi] * np.sqrt(Ns[0] / Nf), "k:", lw=1.0, label="N^-1/2")
    ax_a.set_xlabel("N")
    ax_a.set_ylabel("rms SGD–ODE gap of Q")
    ax_a.set_title("(a) gap of Q vs N (fitted exponent)", fontsize=9)
    ax_a.legend(fontsize=6, frameon=False)
    x = np.arange(len(labels))
    for j, v in enumerate(V):
        ax_b.errorbar(x + 0.12 * (j - 2), exps["rms"][:, j], yerr=exps["rms_se"][:, j],
                      fmt="o", ms=3, capsize=2, label=v)
    ax_b.axhline(-0.5, color="k", ls=":", lw=1.0)
    ax_b.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax_b.set_ylabel("exponent of the rms gap")
    ax_b.set_title("(b) fitted exponents ± bootstrap SE", fontsize=9)
    ax_b.legend(fontsize=6, frameon=False, ncol=5)
    ax_c.axhline(1.0, color="k", ls=":", lw=1.0)
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    for ax in (ax_a, ax_c):
        ax.set_xticks(Ns, [n_label(n) for n in Ns])
        ax.minorticks_off()
    ax_c.set_xlabel("N")
    ax_c.set_ylabel("measured / predicted sd of Q")
    ax_c.set_title(f"(c) spread vs linvae.finite_n ({R} replicas)", fontsize=9)
    suptitle(fig, f"Universality of the SGD–ODE gap across data families, {describe(p.to_attrs())}"
                  f", t ≤ {t_max:g}")
    fam.files += _save_pair(fig, out, "universality")

    fam.lines.append(f"Parameters: {p}, start overlap_state(0.5), N = {Ns}, {R} replicas per "
                     f"N and family, t ≤ {t_max:g}. Exponents of the rms gap (± bootstrap SE "
                     f"over replicas) and, in brackets, of the median replica's gap, which "
                     f"heavy tails across replicas do not drag; theory -0.5.")
    fam.lines.append("")
    fam.lines.append("| family | excess kurtosis | " + " | ".join(V) + " | sd ratio of Q "
                     f"(N={n_label(Ns[-1])}) | diverged |")
    fam.lines.append("|---" * (len(V) + 4) + "|")
    from .data import excess_kurtosis

    for f, (label, opts) in enumerate(_UNI_FAMILIES):
        kurt = excess_kurtosis(opts.get("noise", "gaussian"), opts.get("noise_df"))
        cells = " | ".join(f"{exps['rms'][f, j]:+.3f} ± {exps['rms_se'][f, j]:.3f} "
                           f"({exps['median'][f, j]:+.3f})" for j in range(len(V)))
        fam.lines.append(f"| {label} | {kurt:g} | {cells} | {ratio[f, -1, qi]:.2f} | "
                         f"{diverged[f]} of {R * len(Ns)} |")
    return fam


# a small learning rate, so that the long-time state is close to the empirical minimum
_FD_PARAMS = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.1)


def _fig_finite_data(out: Path, s: Mapping[str, Any], progress: bool,
                     threads: int | None) -> Family:
    import xarray as xr

    from .data import pca_overlap
    from .plot import figure
    from .simulation import simulate
    from .stability import stable_fixed_point
    from .states import overlap_state

    fam = Family("finite_data")
    p = _FD_PARAMS
    N, R, t_max = int(s["fd_N"]), int(s["fd_replicas"]), float(s["fd_t_max"])
    alphas = np.asarray(s["fd_alphas"], dtype=np.float64)
    orders = tuple(s["fd_orders"])
    start = overlap_state(p)
    every = t_max / 10
    late = slice(-4, None)  # the last 40% of the run: the long-time state

    def summary(ds: xr.Dataset) -> dict[str, tuple[float, float]]:
        ok = ~np.asarray(ds["diverged"].values, dtype=bool)
        m, Q = ds["m"].values[ok][:, late, 0, 0], ds["Q"].values[ok][:, late, 0, 0]
        vals = {"eg": ds["eg"].values[ok][:, late], "overlap": m * m / Q,
                "loss": ds["loss"].values[ok][:, late]}
        if "train_loss" in ds:
            vals["train_loss"] = ds["train_loss"].values[ok][:, late]
        # per replica the late-time mean, then mean and SE over replicas
        return {k: (float(v.mean(axis=1).mean()),
                    float(v.mean(axis=1).std(ddof=1) / math.sqrt(v.shape[0])))
                for k, v in vals.items()}

    keys = ("eg", "overlap", "loss", "train_loss")
    res = {o: {k: np.full((alphas.size, 2), np.nan) for k in keys} for o in orders}
    for i, a in enumerate(alphas):
        P = max(1, round(a * N))
        for o in orders:
            ds = simulate(p, N, t_max, record_every=every, seeds=R, seed=400 + i, init=start,
                          dataset_size=P, order=o, training_loss=True, threads=threads,
                          progress=progress)
            for k, v in summary(ds).items():
                res[o][k][i] = v
    one = summary(simulate(p, N, t_max, record_every=every, seeds=R, seed=399, init=start,
                           threads=threads, progress=progress))
    fp = stable_fixed_point(p)
    eg_fp = float(fp.eg)
    m_fp, Q_fp = float(fp.state["m"][0, 0]), float(fp.state["Q"][0, 0])
    data = xr.Dataset(
        {f"{k}_{stat}": (("order", "alpha"), np.array([res[o][k][:, c] for o in orders]))
         for k in keys for c, stat in enumerate(("mean", "se"))},
        coords={"order": list(orders), "alpha": alphas},
        attrs={**p.to_attrs(), "N": N, "replicas": R, "t_max": t_max,
               "init": "overlap_state(0.5)", "late_times": "last 40% of the run",
               "one_pass_eg": one["eg"][0], "one_pass_overlap": one["overlap"][0],
               "one_pass_loss": one["loss"][0],
               "ode_eg": eg_fp, "ode_overlap": m_fp * m_fp / Q_fp,
               "description": "long-time eps_g, m^2/Q, population and training loss vs "
               "alpha = P/N, multi-epoch SGD on P samples"})
    fam.files.append(io.save(data, out / "finite_data.nc"))

    fig = figure(ncols=3, width=3.9, height=3.2)
    ax_a, ax_b, ax_c = fig.axes
    styles = {"shuffle": ("o-", "C0"), "cycle": ("s--", "C1")}
    for o in orders:
        fmt, c = styles[o]
        ax_a.errorbar(alphas, res[o]["eg"][:, 0], yerr=res[o]["eg"][:, 1], fmt=fmt, color=c,
                      ms=3, capsize=2, lw=1.0, label=f"P samples, {o}")
        ax_b.errorbar(alphas, res[o]["overlap"][:, 0], yerr=res[o]["overlap"][:, 1], fmt=fmt,
                      color=c, ms=3, capsize=2, lw=1.0, label=o)
        ax_c.plot(alphas, res[o]["loss"][:, 0], fmt, color=c, ms=3, lw=1.0,
                  label=f"population loss, {o}")
        ax_c.plot(alphas, res[o]["train_loss"][:, 0], fmt, color=c, ms=3, lw=1.0, alpha=0.5,
                  mfc="none", label=f"training loss, {o}")
    af = np.geomspace(alphas[0], alphas[-1], 200)
    ax_b.plot(af, pca_overlap(af, float(p.rho_vec[0]), p.eta), color="0.5", lw=1.0,
              label="top principal component (τ → 0)")
    for ax, k, fpv in ((ax_a, "eg", eg_fp), (ax_b, "overlap", m_fp * m_fp / Q_fp)):
        ax.axhline(one[k][0], color="k", lw=1.0, label="one-pass SGD")
        ax.axhline(fpv, color="k", ls=":", lw=1.0, label="ODE fixed point")
        ax.set_xscale("log")
        ax.set_xlabel("α = P / N")
    ax_c.axhline(one["loss"][0], color="k", lw=1.0, label="one-pass SGD")
    ax_c.set_xscale("log")
    ax_c.set_xlabel("α = P / N")
    ax_a.set_ylabel("long-time ε_g")
    ax_b.set_ylabel("long-time m² / Q")
    ax_c.set_ylabel("long-time loss")
    ax_a.set_title("(a) generalisation error", fontsize=9)
    ax_b.set_title("(b) decoder-teacher overlap m²/Q", fontsize=9)
    ax_c.set_title("(c) population vs training loss", fontsize=9)
    ax_a.legend(fontsize=6.5, frameon=False)
    ax_b.legend(fontsize=6.5, frameon=False)
    ax_c.legend(fontsize=6, frameon=False)
    suptitle(fig, f"Multi-epoch SGD on P = α N samples, N = {N}, {R} replicas, t = {t_max:g} "
                  f"({t_max:g} / α epochs): {describe(p.to_attrs())}")
    fam.files += _save_pair(fig, out, "finite_data")

    fam.lines.append(f"Parameters: {p}, N = {N}, start overlap_state(0.5), {R} replicas, "
                     f"t ≤ {t_max:g} (t/α epochs); long-time values are means over the last "
                     f"40% of the run, ± SE over replicas. One-pass SGD: ε_g = "
                     f"{one['eg'][0]:.4f} ± {one['eg'][1]:.4f}, m²/Q = {one['overlap'][0]:.4f}, "
                     f"loss = {one['loss'][0]:.4f}; "
                     f"ODE fixed point ε_g = {eg_fp:.4f}, m²/Q = {m_fp * m_fp / Q_fp:.4f}.")
    fam.lines.append("")
    fam.lines.append("m²/Q is compared with cos² of the top principal component of the P "
                     "samples and W* (`pca_overlap`, N → ∞), which SGD learns as τ → 0.")
    fam.lines.append("")
    fam.lines.append("| α = P/N | order | ε_g | m²/Q | top PC cos² | population loss | "
                     "training loss |")
    fam.lines.append("|---|---|---|---|---|---|---|")
    pc = pca_overlap(alphas, float(p.rho_vec[0]), p.eta)
    for i, a in enumerate(alphas):
        for o in orders:
            r = res[o]
            fam.lines.append(f"| {a:g} | {o} | {r['eg'][i, 0]:.4f} ± {r['eg'][i, 1]:.4f} | "
                             f"{r['overlap'][i, 0]:.4f} ± {r['overlap'][i, 1]:.4f} | "
                             f"{pc[i]:.4f} | {r['loss'][i, 0]:.4f} | "
                             f"{r['train_loss'][i, 0]:.4f} |")
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
              "optimal_beta": "6. The optimal β is η, whatever ρ",
              "fluctuations": "7. Finite-N fluctuations and the escape from the plateau",
              "universality": "8. Universality across data families",
              "finite_data": "9. Multi-epoch SGD on a finite dataset"}
    for f in report.families:
        lines += ["", f"## {titles.get(f.name, f.name)}", ""]
        if f.ok:
            lines += f.lines
            data = [p.name for p in f.files if p.suffix == ".nc"]
            lines += ["", f"Data: {', '.join(data)}"]
        else:
            lines.append(f"FAILED: `{f.error}`")
    path = report.out / "summary.md"
    io.write_text(path, "\n".join(lines) + "\n")
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
        Smaller N, fewer replicas and grid points (about 60 s on 2 cores, against about
        410 s).
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
        "fluctuations": lambda: _fig_fluctuations(out, s, progress, threads),
        "universality": lambda: _fig_universality(out, s, progress, threads),
        "finite_data": lambda: _fig_finite_data(out, s, progress, threads),
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
