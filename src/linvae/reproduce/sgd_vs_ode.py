"""``sgd_vs_ode``: SGD against the ODE and the SGD-ODE gap vs N (:func:`linvae.compare`).

The trajectories of m, d, Q, E, R, D and eps_g, and the gap vs N with fitted exponents
(theory -1/2), from N = 10 to 1e7 (1e6 with ``quick``): the weights up to N = 1e4, the
Gram chain above (and at 3000, inside the weights' range).
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..params import Params
from ..plot import n_label
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..comparison import Comparison

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
_STEM = "sgd_vs_ode"


@dataclass(frozen=True, kw_only=True)
class SgdVsOdeSettings(Settings):
    """System sizes (those simulated by the Gram chain, those drawn) and the runs."""

    Ns: tuple[int, ...]
    gram_Ns: tuple[int, ...]
    show: tuple[int, ...]
    t_max: float
    replicas: int
    record_every: float


# the weights at small N and the Gram chain (cost independent of N) from inside their range
# up to N = 1e6 (quick) or 1e7, at t_max = 10: the gap over six decades of N. 1e8 would be
# 1e9 steps, ~55 s, per replica.
QUICK = SgdVsOdeSettings(Ns=(10, 100, 300, 1000, 10**4, 10**5, 10**6),
                         gram_Ns=(300, 10**4, 10**5, 10**6), show=(100, 1000, 10**6),
                         t_max=10.0, replicas=8, record_every=0.2)
# the weights cost ~ replicas * t_max * N^2 (N = 1e4: ~10 s on 2 cores), the Gram chain
# ~ replicas * t_max * N (N = 1e7: ~25 s)
FULL = SgdVsOdeSettings(Ns=(10, 100, 1000, 3000, 10**4, 10**5, 10**6, 10**7),
                        gram_Ns=(3000, 10**5, 10**6, 10**7), show=(100, 1000, 10**4, 10**7),
                        t_max=10.0, replicas=8, record_every=0.1)
TINY = SgdVsOdeSettings(Ns=(10, 100, 300), gram_Ns=(300,), show=(10, 300), t_max=1.0,
                        replicas=3, record_every=0.2)


def _methods(s: SgdVsOdeSettings) -> dict[int, str]:
    return {n: "gram" if n in s.gram_Ns else "weights" for n in s.Ns}


def compute(s: SgdVsOdeSettings, *, progress: bool, threads: int | None) -> Data:
    """Compare SGD with the ODE at every N: the trajectories, gaps and spread."""
    from ..comparison import compare, comparison_data

    cmp = compare(P, Ns=s.Ns, t_max=s.t_max, replicas=s.replicas, init=None,
                  record_every=s.record_every, seed=0, threads=threads, progress=progress,
                  sim_method=_methods(s))
    data = comparison_data(cmp, stem=_STEM, replicas=s.replicas, t_max=s.t_max)
    if cmp.spread is not None:
        spread = cmp.spread.copy()
        spread.attrs.update({**P.to_attrs(), "replicas": s.replicas})
        data[f"{_STEM}_spread.nc"] = spread
    return data


def _comparison(data: Data) -> Comparison:
    """Return the :class:`linvae.Comparison` whose data these are (what the files hold)."""
    import xarray as xr

    from ..comparison import Comparison

    gaps = data[f"{_STEM}_gaps.nc"]
    Ns = [int(n) for n in gaps["N"].values]
    sims = {n: data[f"{_STEM}_sim_N{n}.nc"] for n in Ns}
    stats = ("max", "rms")
    return Comparison(
        params=P, ode=data[f"{_STEM}_ode.nc"], sims=sims, gaps=gaps[list(stats)],
        exponents=xr.Dataset({k: gaps[f"exponent_{k}"] for k in stats}),
        prefactors=xr.Dataset({k: gaps[f"prefactor_{k}"] for k in stats}),
        n_diverged={n: int(np.sum(sim["diverged"].values)) if "diverged" in sim else 0
                    for n, sim in sims.items()},
        methods={n: str(m) for n, m in zip(Ns, gaps["method"].values, strict=True)},
        spread=data.get(f"{_STEM}_spread.nc"))


def plot(data: Data, s: SgdVsOdeSettings) -> Figure:
    """Trajectories per variable and the gap vs N (:func:`linvae.comparison.run_compare`)."""
    from ..comparison import plot_comparison

    return plot_comparison(_comparison(data), replicas=s.replicas, show=s.show)


def parameters(data: Data, s: SgdVsOdeSettings) -> str:
    """Return the model, the start, the N and the runs."""
    Ns = [int(n) for n in data[f"{_STEM}_gaps.nc"]["N"].values]
    return (f"{P}, start overlap_state(0.5), N = {Ns}, {s.replicas} replicas, "
            f"t ≤ {s.t_max:g}.")


def summary(data: Data, s: SgdVsOdeSettings) -> list[str]:
    """Return the rms gap per N and variable with the fitted exponents; the measured spread."""
    cmp = _comparison(data)
    methods = _methods(s)
    by = {m: [n for n in cmp.Ns if methods[n] == m] for m in ("weights", "gram")}
    decades = math.log10(max(cmp.Ns) / min(cmp.Ns))
    lines = [(f"SGD on the weights at N = {by['weights']}; the Gram chain (the exact "
              f"finite-N law, docs/model.md#gram-chain) at N = {by['gram']}. The "
              f"exponents are fitted over every N, {decades:.1f} decades."), ""]
    lines += table(
        ["variable", *(f"rms gap N={n_label(n)}" for n in cmp.Ns), "exponent (rms)",
         "exponent (max)", "theory"],
        ([str(v), *(f"{float(cmp.gaps['rms'].sel(N=n, variable=v)):.3g}" for n in cmp.Ns),
          f"{float(cmp.exponents['rms'].sel(variable=v)):.3f}",
          f"{float(cmp.exponents['max'].sel(variable=v)):.3f}", "-0.5"]
         for v in cmp.gaps["variable"].values))
    ratio = cmp.spread_ratio
    if ratio is not None:
        lines += ["", (f"Replica sd / predicted sd (linear noise approximation, "
                       f"docs/model.md#fluctuations), median over t > 0 and entries; "
                       f"{s.replicas} replicas know an sd to "
                       f"~{100 / math.sqrt(2 * (s.replicas - 1)):.0f}%:"), ""]
        lines += table(["variable", *(f"N={n_label(n)}" for n in cmp.Ns)],
                       ([str(v), *(f"{float(ratio['ratio'].sel(N=n, variable=v)):.2f}"
                                   for n in cmp.Ns)] for v in ratio["variable"].values))
    if any(cmp.n_diverged.values()):
        lines.append(f"\nDiverged replicas (excluded): {cmp.n_diverged}")
    return lines


FAMILY = register(FigureFamily(
    name="sgd_vs_ode", title="SGD vs ODE (deterministic limit, gap ∝ N^-1/2)",
    about="SGD vs ODE, gap vs N from N = 10 to 1e7",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
