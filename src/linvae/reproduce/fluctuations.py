"""``fluctuations``: the finite-N theory (docs/model.md#fluctuations) against the Gram chain.

(a) the predicted vs measured sd of m and Q over N; (b) the median escape time from the
collapsed plateau vs ln N for two beta; (c) the slope 1/(2 lambda) against beta, which
diverges at rho + eta. :func:`linvae.fluctuations`, :func:`linvae.escape_time`.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..params import Params
from ..plot import describe, n_label, styled, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The model, with a large growth rate lambda on the plateau, so that the escape takes few
#: steps (docs/model.md#fluctuations, "Measured").
P = Params(M=1, M_star=1, rho=2.0, eta=0.5, beta=0.2, tau=1.5)
TIMES = (1.0, 2.5)
VARIABLES = ("m", "Q")
ESCAPE_BETAS = (0.2, 1.0)
#: The slope's panel follows the documented table (tau = 0.5) up to rho + eta = 2.5.
SLOPE_PARAMS = Params(M=1, M_star=1, rho=2.0, eta=0.5, beta=0.2, tau=0.5)


@dataclass(frozen=True, kw_only=True)
class FluctuationsSettings(Settings):
    """N and replicas of the spread and of the escape time; the beta of the slope."""

    Ns: tuple[int, ...]
    replicas: int
    escape_Ns: tuple[int, ...]
    escape_replicas: tuple[int, ...]
    slope_betas: tuple[float, ...]


QUICK = FluctuationsSettings(Ns=(10**3, 10**4), replicas=100, escape_Ns=(10**3, 10**4),
                             escape_replicas=(200, 200), slope_betas=(1.0, 2.0, 2.4))
# the Gram chain at ~100 ns per step; 200 replicas give the sd to 5% (1/sqrt(2 R)), and the
# median escape time to ~1-2%
FULL = FluctuationsSettings(Ns=(10**3, 10**4, 10**5), replicas=200,
                            escape_Ns=(10**3, 10**4, 10**5), escape_replicas=(400, 400, 100),
                            slope_betas=(0.2, 0.5, 1.0, 1.5, 2.0, 2.3, 2.4, 2.45, 2.49))
TINY = FluctuationsSettings(Ns=(100, 300), replicas=10, escape_Ns=(100, 300),
                            escape_replicas=(10, 10), slope_betas=(1.0, 2.0))


def first_passage(ds: Any, target: float) -> np.ndarray:
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


def median_se(x: np.ndarray, seed: int) -> tuple[float, float]:
    """Median (inf entries, runs not escaped yet, count as late) and its bootstrap SE."""
    rng = np.random.default_rng(seed)
    med = float(np.median(x))
    boot = np.median(x[rng.integers(0, x.size, size=(200, x.size))], axis=1)
    return med, float(np.std(boot[np.isfinite(boot)])) if np.isfinite(med) else math.nan


def compute(s: FluctuationsSettings, *, progress: bool, threads: int | None) -> Data:
    """Compute the spread, the escape times and the slope: measured and predicted."""
    import xarray as xr

    from ..finite_n import escape_time, fluctuations, plateau
    from ..simulation import simulate
    from ..states import overlap_state

    p = P
    start = overlap_state(p)

    # (a) the spread at fixed times: predicted sigma / sqrt(N) against R Gram chain runs
    times = np.asarray(TIMES)
    Ns, R = list(s.Ns), int(s.replicas)
    lna = fluctuations(p, 1, float(times[-1]), init=start, t_eval=np.r_[0.0, times])
    lna = lna.isel(t=slice(1, None))
    pred = np.zeros((len(VARIABLES), times.size, len(Ns)))
    meas = np.zeros_like(pred)
    for j, N in enumerate(Ns):
        ds = simulate(p, N, float(times[-1]), times=times, seeds=R, seed=100 + j, init=start,
                      method="gram", threads=threads, progress=progress)
        ok = ~np.asarray(ds["diverged"].values, dtype=bool)
        for i, v in enumerate(VARIABLES):
            # the first entry: m[0, 0] and Q[0, 0] of the (1, 1) model
            meas[i, :, j] = ds[v].values[ok][:, :, 0, 0].std(axis=0, ddof=1)
            pred[i, :, j] = lna[f"{v}_sd"].values[:, 0, 0] / math.sqrt(N)
    se = meas / math.sqrt(2.0 * (R - 1))  # sd of a Gaussian sample's sd
    sd_data = xr.Dataset(
        {"sd_predicted": (("variable", "time", "N"), pred),
         "sd_measured": (("variable", "time", "N"), meas),
         "sd_measured_se": (("variable", "time", "N"), se)},
        coords={"variable": list(VARIABLES), "time": times, "N": Ns},
        attrs={**p.to_attrs(), "replicas": R, "init": "overlap_state(0.5)",
               "method": "gram", "description": "sd of m[0,0] and Q[0,0] over Gram chain "
               "replicas and predicted by the linear noise approximation"})

    # (b) the median escape time from the random start, measured and predicted
    eNs, eR = list(s.escape_Ns), list(s.escape_replicas)
    betas = list(ESCAPE_BETAS)
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
            passage = first_passage(ds, e.level * e.m_fixed)
            t_meas[b, j], t_se[b, j] = median_se(passage, seed=b * 100 + j)
    esc_data = xr.Dataset(
        {"t_predicted": (("beta", "N"), t_pred), "t_measured": (("beta", "N"), t_meas),
         "t_measured_se": (("beta", "N"), t_se), "t_asymptotic": (("beta", "N"), t_asym),
         "rate": (("beta",), rates), "slope": (("beta",), slopes),
         "offset": (("beta",), offsets), "replicas": (("N",), eR)},
        coords={"beta": betas, "N": eNs},
        attrs={**p.to_attrs(), "level": 0.5, "init": "random", "method": "gram",
               "description": "median time for |m| to reach half its fixed-point value "
               "from the random start: Gram chain replicas and linvae.escape_time"})

    # (c) the slope 1 / (2 lambda) against beta, up to the collapse threshold
    sb = np.asarray(s.slope_betas, dtype=np.float64)
    lam_b = np.array([plateau(SLOPE_PARAMS.replace(beta=float(b))).rate for b in sb])
    thr = float(SLOPE_PARAMS.rho_vec[0] + SLOPE_PARAMS.eta)
    slope_data = xr.Dataset({"rate": (("beta",), lam_b), "slope": (("beta",), 0.5 / lam_b)},
                            coords={"beta": sb},
                            attrs={**SLOPE_PARAMS.to_attrs(), "threshold": thr})
    return {"fluctuations_sd.nc": sd_data, "fluctuations_escape.nc": esc_data,
            "fluctuations_slope.nc": slope_data}


@styled
def plot(data: Data, s: FluctuationsSettings) -> Figure:
    """Draw (a) the spread vs N, (b) the escape time vs ln N, (c) the slope vs beta.

    (b)'s dotted large-N form leaves out the relaxation from the random start onto the
    plateau, so it lies under the data at these N; the legend says so. (c) is at
    tau = 0.5, where the plateau exists up to the threshold (at the tau = 1.5 of (a) and
    (b) the ODE runs away above beta ~ 2.4); (b)'s two slopes at tau = 1.5 are marked in
    it too, and the legend says why the two tau.
    """
    from matplotlib.lines import Line2D

    from ..plot import STYLE, colors, figure, legend, mark, markers, symbol

    sd, esc, sl = (data[f"fluctuations_{k}.nc"] for k in ("sd", "escape", "slope"))
    times = np.asarray(sd["time"].values)
    Ns = [int(n) for n in sd["N"].values]
    pred, meas, se = (sd[k].values for k in ("sd_predicted", "sd_measured", "sd_measured_se"))
    betas = [float(b) for b in esc["beta"].values]
    eNs = [int(n) for n in esc["N"].values]
    t_pred, t_meas, t_se = (esc[k].values for k in ("t_predicted", "t_measured",
                                                    "t_measured_se"))
    slopes, offsets = esc["slope"].values, esc["offset"].values
    sb, lam_b, thr = sl["beta"].values, sl["rate"].values, float(sl.attrs["threshold"])
    lw = STYLE["linewidth"] * 0.9

    fig = figure(ncols=3, height=3.3)
    ax_a, ax_b, ax_c = fig.axes
    n_series = len(VARIABLES) * times.size
    cols, marks = colors(n_series), markers(n_series)
    Nf = np.geomspace(min(Ns), max(Ns), 20)
    for k, (i, ti) in enumerate(np.ndindex(len(VARIABLES), times.size)):
        v, c = VARIABLES[i], cols[k]
        ax_a.errorbar(Ns, meas[i, ti], yerr=se[i, ti], fmt=marks[k], color=c, ms=3.5,
                      label=f"{symbol(v, (0, 0))}, $t={times[ti]:g}$")
        ax_a.loglog(Nf, pred[i, ti, 0] * np.sqrt(Ns[0] / Nf), color=c, lw=lw)
    ax_a.plot([], [], color="k", lw=lw, label=r"theory $\sigma/\sqrt{N}$")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    ax_a.set_xlabel(symbol("N"))
    ax_a.set_ylabel("sd over replicas")
    ax_a.set_title(f"(a) spread, {s.replicas} replicas")
    legend(ax_a, outside="below")
    bcols = colors(len(betas))
    lnN = np.log(np.asarray(eNs, dtype=np.float64))
    lnf = np.linspace(lnN[0], lnN[-1], 20)
    for b, beta in enumerate(betas):
        c = bcols[b]
        ax_b.errorbar(lnN, t_meas[b], yerr=t_se[b], fmt="o", color=c, ms=3.5,
                      label=rf"$\beta={beta:g}$ ($1/2\mu={slopes[b]:.2f}$)")
        ax_b.plot(lnN, t_pred[b], "-", color=c, lw=lw)
        ax_b.plot(lnf, slopes[b] * lnf + offsets[b], ":", color=c, lw=lw)
    handles, _ = ax_b.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", marker="o", ls="none", ms=3.5,
                       label="measured median"),
                Line2D([], [], color="0.3", lw=lw, label="escape_time (theory)"),
                Line2D([], [], color="0.3", ls=":", lw=lw,
                       label="large-$N$ form (leaves out the\nrelaxation onto the plateau)")]
    ax_b.set_xlabel(r"$\ln N$")
    ax_b.set_ylabel(r"median escape time $t_{\rm esc}$")
    ax_b.set_title("(b) escape from the plateau")
    legend(ax_b, handles=handles, outside="below")
    ax_c.semilogy(sb, 0.5 / lam_b, "o-", color="k", ms=3, lw=lw,
                  label=rf"$\tau={SLOPE_PARAMS.tau:g}$ (at $\tau={P.tau:g}$ the ODE" "\n"
                        r"runs away near $\rho+\eta$)")
    for b, beta in enumerate(betas):
        ax_c.plot([beta], [slopes[b]], "D", color=bcols[b], ms=4.5, mec="k", mew=0.5,
                  label=rf"$\tau={P.tau:g}$, from (b)" if b == 0 else None)
    mark(ax_c, thr, r"$\rho+\eta$")
    ax_c.set_xlabel(symbol("beta"))
    ax_c.set_ylabel(r"slope $1/2\mu$ of $t_{\rm esc}(\ln N)$")
    ax_c.set_title(r"(c) growth rate $\mu\to0$")
    legend(ax_c, outside="below")
    suptitle(fig, "Finite-$N$ theory against the Gram chain",
             f"{describe(P.to_attrs(), swept=('beta',))}; (a) at $\\beta={P.beta_inf:g}$ from "
             f"overlap_state(0.5), (b) from the random start")
    return fig


def parameters(data: Data, s: FluctuationsSettings) -> str:
    """Return the model, the starts and the replicas."""
    R = s.replicas
    return (f"{P}; (a) from overlap_state(0.5), {R} Gram chain "
            f"replicas per N (relative standard error of an sd "
            f"{100 / math.sqrt(2 * R):.1f}%); (b) from the random start, level 0.5, "
            f"replicas {dict(zip(s.escape_Ns, s.escape_replicas, strict=True))}.")


def summary(data: Data, s: FluctuationsSettings) -> list[str]:
    """Predicted vs measured sd and escape times, and the slope against beta."""
    sd, esc, sl = (data[f"fluctuations_{k}.nc"] for k in ("sd", "escape", "slope"))
    times, Ns = sd["time"].values, [int(n) for n in sd["N"].values]
    pred, meas, se = (sd[k].values for k in ("sd_predicted", "sd_measured", "sd_measured_se"))
    betas, eNs = esc["beta"].values, [int(n) for n in esc["N"].values]
    rates, slopes = esc["rate"].values, esc["slope"].values
    t_pred, t_meas, t_se = (esc[k].values for k in ("t_predicted", "t_measured",
                                                    "t_measured_se"))
    sb, lam_b, thr = sl["beta"].values, sl["rate"].values, float(sl.attrs["threshold"])
    lines = [("μ is the growth rate of the overlaps on the plateau (`escape_time(...).rate`, "
              "lambda in docs/model.md#fluctuations); λ in the figures' parameters is "
              "the L2 weight lam."), ""]
    lines += table(["variable", "t", "N", "predicted sd", "measured sd",
                    "measured / predicted"],
                   ([f"{VARIABLES[i]}[0,0]", f"{times[ti]:g}", n_label(Ns[j]),
                     f"{pred[i, ti, j]:.4g}", f"{meas[i, ti, j]:.4g} ± {se[i, ti, j]:.2g}",
                     f"{meas[i, ti, j] / pred[i, ti, j]:.3f}"]
                    for i, ti, j in np.ndindex(*pred.shape)))
    lines.append("")
    lines += table(["β", "μ", "slope 1/(2μ)", "N", "predicted median t_esc",
                    "measured (± bootstrap SE)", "measured / predicted"],
                   ([f"{betas[b]:g}", f"{rates[b]:.3f}", f"{slopes[b]:.3f}", n_label(eNs[j]),
                     f"{t_pred[b, j]:.3f}", f"{t_meas[b, j]:.3f} ± {t_se[b, j]:.3f}",
                     f"{t_meas[b, j] / t_pred[b, j]:.3f}"]
                    for b, j in np.ndindex(*t_pred.shape)))
    lines += ["", (f"Slope of the escape time against ln N, {SLOPE_PARAMS} with β swept "
                   f"(μ → 0 as β → ρ + η = {thr:g}):"), ""]
    lines += table(["β", *(f"{b:g}" for b in sb)],
                   [["μ", *(f"{x:.4g}" for x in lam_b)],
                    ["1/(2μ)", *(f"{0.5 / x:.3g}" for x in lam_b)]])
    return lines


FAMILY = register(FigureFamily(
    name="fluctuations", title="Finite-N fluctuations and the escape from the plateau",
    about="finite-N theory against the Gram chain: predicted vs measured sd over N, median "
          "escape time from the plateau vs ln N, slope 1/(2 lambda) vs beta",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
