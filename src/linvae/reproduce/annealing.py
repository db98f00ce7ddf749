"""``annealing``: the convergence time vs gamma, with gamma*.

:func:`linvae.findings.annealing`.
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

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)


@dataclass(frozen=True, kw_only=True)
class AnnealingSettings(Settings):
    """The annealing rates gamma and the schedules."""

    gammas: np.ndarray
    kinds: tuple[str, ...]


QUICK = AnnealingSettings(gammas=np.geomspace(0.01, 1.0, 6), kinds=("tanh",))
FULL = AnnealingSettings(gammas=np.geomspace(0.01, 1.0, 13),
                         kinds=("tanh", "linear", "sigmoid", "cyclical"))
TINY = AnnealingSettings(gammas=np.geomspace(0.1, 1.0, 2), kinds=("tanh",))


def compute(s: AnnealingSettings, *, progress: bool, threads: int | None) -> Data:
    """Compute the convergence time per schedule and gamma."""
    from .. import findings

    return {"annealing.nc": findings.annealing(P, gammas=s.gammas, kinds=s.kinds)}


def plot(data: Data, s: AnnealingSettings) -> Figure:
    """:func:`linvae.findings.plot_annealing`."""
    from .. import findings

    with style_context():
        fig = findings.plot_annealing(data["annealing.nc"])
        suptitle(fig, r"KL annealing $\beta(t)\to\beta_\infty$: convergence time vs $\gamma$",
                 describe(P.to_attrs()).replace(r"$\beta=", r"$\beta_\infty="))
    return fig


def parameters(data: Data, s: AnnealingSettings) -> str:
    """Return the model, the schedules and the gamma."""
    return (f"{P} (β∞ = 0.5), schedules {list(s.kinds)}, "
            f"γ ∈ [{s.gammas[0]:g}, {s.gammas[-1]:g}] ({len(s.gammas)} values).")


def summary(data: Data, s: AnnealingSettings) -> list[str]:
    """gamma* and the convergence times next to the documented ones."""
    ann = data["annealing.nc"]
    gs, tc = float(ann["gamma_star"]), float(ann["t_constant"])
    rows = [["γ* = -J_max/2", f"{gs:.4f}", "0.068"],
            ["convergence time, constant β", f"{tc:.1f}", "61"]]
    if "tanh" in list(s.kinds):
        tt = ann["t_conv"].sel(schedule="tanh")
        rows += [[(f"convergence time, tanh, γ = {g:.3g} "
                   f"({'slower' if g < gs else 'faster'} than γ*)"),
                  f"{float(tt.sel(gamma=g)):.1f}", ""] for g in tt["gamma"].values]
    return ["", *table(["quantity", "numerical", "docs/model.md#findings"], rows)]


FAMILY = register(FigureFamily(
    name="annealing", title="KL annealing", about="convergence time vs gamma, gamma*",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
