"""``optimal_beta``: the steady-state eps_g vs beta for several rho.

The numerical minimum next to the optimum beta = eta; :func:`linvae.findings.optimal_beta`.
The beta grid is dense on both sides of each rho's collapse threshold (where eps_g rises
continuously to rho; :func:`linvae.findings.refine_grid`).
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..params import Params
from ..plot import describe, style_context, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# small tau: the optimum beta = eta holds as tau -> 0 and moves by O(tau) otherwise
P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.01)


@dataclass(frozen=True, kw_only=True)
class OptimalBetaSettings(Settings):
    """The signal strengths rho, the swept beta and the points added at each threshold.

    ``near`` points are added below each rho's collapse threshold inside the grid and
    ``near // 2`` above it (:func:`linvae.findings.refine_grid`).
    """

    rhos: tuple[float, ...]
    betas: np.ndarray
    near: int


# quick: 19 beta per rho (14 evenly before), the quick run's time about the same (~0.1 s more)
QUICK = OptimalBetaSettings(rhos=(0.5, 2.0), betas=np.linspace(0.05, 2.5, 10), near=5)
FULL = OptimalBetaSettings(rhos=(0.5, 1.0, 2.0), betas=np.linspace(0.05, 2.5, 40), near=8)
TINY = OptimalBetaSettings(rhos=(0.5,), betas=np.linspace(0.5, 2.0, 4), near=2)


def compute(s: OptimalBetaSettings, *, progress: bool, threads: int | None) -> Data:
    """eps_g along beta per rho, and its numerical minimum."""
    from .. import findings
    from ..stability import collapse_threshold

    thresholds = [float(collapse_threshold(P.replace(rho=float(r)))) for r in s.rhos]
    betas = findings.refine_grid(s.betas, thresholds, s.near)
    return {"optimal_beta.nc": findings.optimal_beta(P, rhos=s.rhos, betas=betas)}


def plot(data: Data, s: OptimalBetaSettings) -> Figure:
    """:func:`linvae.findings.plot_optimal_beta`."""
    from .. import findings

    with style_context():
        fig = findings.plot_optimal_beta(data["optimal_beta.nc"])
        suptitle(fig, r"The optimal $\beta$ is $\eta$ for every $\rho$",
                 describe(P.to_attrs(), swept=("rho", "beta")))
    return fig


def parameters(data: Data, s: OptimalBetaSettings) -> str:
    """Return the model, the rho and the swept beta."""
    ds = data["optimal_beta.nc"]
    return (f"{P} (ρ ∈ {list(map(float, ds['rho'].values))}, β swept "
            f"over {ds.sizes['beta']} values ({len(s.betas)} evenly spaced, the others closer "
            f"and closer to each collapse threshold), then minimised numerically).")


def summary(data: Data, s: OptimalBetaSettings) -> list[str]:
    """Return the numerical optimum beta per rho, next to beta = eta."""
    ds = data["optimal_beta.nc"]
    return ["", *table(["ρ", "numerical optimum β", "ε_g there", "theory (τ → 0)"],
                       ([f"{rho:g}", f"{float(ds.sel(rho=rho)['beta_opt']):.4f}",
                         f"{float(ds.sel(rho=rho)['eg_min']):.2e}",
                         f"β = η = {P.eta:g}, ε_g = 0"] for rho in ds["rho"].values))]


FAMILY = register(FigureFamily(
    name="optimal_beta", title="The optimal β is η, whatever ρ",
    about="steady-state eps_g vs beta for several rho, minimum at beta = eta",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
