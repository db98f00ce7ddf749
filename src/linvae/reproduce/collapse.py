"""``collapse``: the steady state vs beta, with the numerical threshold and rho + eta.

:func:`linvae.findings.collapse_sweep` (and, in the full run,
:func:`linvae.findings.phase_diagram`). The threshold is located first and the beta grid
made dense on both sides of it (:func:`linvae.findings.refine_grid`): the transition is
continuous (Q ~ beta_c - beta), and a coarse grid would draw it as a jump.
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

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.1)


@dataclass(frozen=True, kw_only=True)
class CollapseSettings(Settings):
    """The swept beta, the points added on each side of the threshold, the phase diagram.

    ``near`` points are added below the threshold and ``near // 2`` above it, closer and
    closer to it (:func:`linvae.findings.refine_grid`).
    """

    betas: np.ndarray
    near: int
    phase: bool


# about as many fixed points as the even grids they replace (quick: 25 for 24, full: 60)
QUICK = CollapseSettings(betas=np.linspace(0.05, 3.0, 14), near=6, phase=False)
FULL = CollapseSettings(betas=np.linspace(0.05, 3.0, 40), near=12, phase=True)
TINY = CollapseSettings(betas=np.linspace(0.5, 3.0, 4), near=3, phase=False)


def compute(s: CollapseSettings, *, progress: bool, threads: int | None) -> Data:
    """Compute the steady state along beta, and the phase diagram if asked for."""
    from .. import findings
    from ..stability import collapse_thresholds

    betas = findings.refine_grid(s.betas, [float(t) for t in collapse_thresholds(P)], s.near)
    data = {"collapse_sweep.nc": findings.collapse_sweep(P, betas)}
    if s.phase:
        data["collapse_phase.nc"] = findings.phase_diagram(P, betas=np.linspace(0.05, 4.5, 91),
                                                           rhos=np.linspace(0.0, 3.0, 61))
    return data


def plot(data: Data, s: CollapseSettings) -> Figure:
    """:func:`linvae.findings.plot_collapse`."""
    from .. import findings

    with style_context():
        fig = findings.plot_collapse(data["collapse_sweep.nc"], data.get("collapse_phase.nc"))
        suptitle(fig, r"Posterior collapse: the stable fixed point vs $\beta$",
                 describe(P.to_attrs(), swept=("beta",)))
    return fig


def parameters(data: Data, s: CollapseSettings) -> str:
    """Return the model and the swept beta."""
    n = data["collapse_sweep.nc"].sizes["beta"]
    return (f"{P} (β swept over {n} values in [{s.betas[0]:g}, {s.betas[-1]:g}]: "
            f"{len(s.betas)} evenly spaced, the others closer and closer to the threshold).")


def summary(data: Data, s: CollapseSettings) -> list[str]:
    """Return the numerical threshold of each factor next to rho_k + eta."""
    sweep = data["collapse_sweep.nc"]
    return ["", *table(["factor", "numerical threshold β_c", "theory ρ_k + η"],
                       ([str(k), f"{float(sweep['threshold'][k]):.6f}",
                         f"{float(sweep['predicted'][k]):g}"]
                        for k in range(sweep.sizes["factor"])))]


FAMILY = register(FigureFamily(
    name="collapse", title="Posterior collapse threshold",
    about="steady state vs beta, threshold rho + eta",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
