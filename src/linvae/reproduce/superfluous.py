"""``superfluous``: (M, M*) = (2, 1) for beta below and above eta.

:func:`linvae.findings.superfluous` (and, in the full run,
:func:`linvae.findings.superfluous_vs_M`).
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

P = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.2)


@dataclass(frozen=True, kw_only=True)
class SuperfluousSettings(Settings):
    """The length of the runs, and whether to add the steady state vs M."""

    t_max: float
    vs_M: bool


QUICK = SuperfluousSettings(t_max=300.0, vs_M=False)
FULL = SuperfluousSettings(t_max=600.0, vs_M=True)
TINY = SuperfluousSettings(t_max=20.0, vs_M=False)


def compute(s: SuperfluousSettings, *, progress: bool, threads: int | None) -> Data:
    """Compute the trajectories below and above eta, and the steady state vs M if asked for."""
    from .. import findings

    data = {"superfluous_trajectories.nc": findings.superfluous(P, t_max=s.t_max,
                                                                record_every=2.0)}
    if s.vs_M:
        data["superfluous_vs_M.nc"] = findings.superfluous_vs_M(Ms=(1, 2, 3, 4))
    return data


def plot(data: Data, s: SuperfluousSettings) -> Figure:
    """:func:`linvae.findings.plot_superfluous`."""
    from .. import findings

    with style_context():
        fig = findings.plot_superfluous(data["superfluous_trajectories.nc"],
                                        data.get("superfluous_vs_M.nc"))
        suptitle(fig, r"Superfluous latents: $\beta$ below and above $\eta$",
                 describe(P.to_attrs(), swept=("beta",)))
    return fig


def parameters(data: Data, s: SuperfluousSettings) -> str:
    """Return the model, the beta of the runs and their length."""
    traj = data["superfluous_trajectories.nc"]
    betas = ([float(b) for b in np.atleast_1d(traj["beta"].values)][:4]
             if "beta" in traj.coords else "below/above η")
    return f"{P.replace(beta=0.5)} with β ∈ {betas}, t ≤ {s.t_max:g}."


def summary(data: Data, s: SuperfluousSettings) -> list[str]:
    """Return the beta above which the extra latent collapses, next to eta."""
    from ..stability import noise_threshold

    thr = noise_threshold(P)
    return ["", *table(
        ["quantity", "numerical", "theory"],
        [["β above which the extra latent collapses (stops fitting noise)",
          f"{float(thr):.6f}",
          f"η = {thr.predicted:g} (τ → 0; finite-τ shift {float(thr) - thr.predicted:+.4f})"]])]


FAMILY = register(FigureFamily(
    name="superfluous", title="Superfluous latents",
    about="(M, M*) = (2, 1), beta below/above eta",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
