"""``disentanglement``: m over time for M = M* = 2 with distinct rho.

:func:`linvae.findings.disentanglement`.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..params import Params
from ..plot import describe, style_context, suptitle
from .registry import Data, FigureFamily, Settings, register, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

P = Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.5, tau=0.5)


@dataclass(frozen=True, kw_only=True)
class DisentanglementSettings(Settings):
    """The length of the run."""

    t_max: float


QUICK = DisentanglementSettings(t_max=2000.0)
FULL = DisentanglementSettings(t_max=3000.0)
TINY = DisentanglementSettings(t_max=50.0)


def compute(s: DisentanglementSettings, *, progress: bool, threads: int | None) -> Data:
    """Compute the trajectory from an entangled start and its disentanglement score."""
    from .. import findings

    return {"disentanglement.nc": findings.disentanglement(P, t_max=s.t_max, record_every=5.0)}


def plot(data: Data, s: DisentanglementSettings) -> Figure:
    """:func:`linvae.findings.plot_disentanglement`."""
    from .. import findings

    with style_context():
        fig = findings.plot_disentanglement(data["disentanglement.nc"])
        suptitle(fig, "Disentanglement from an entangled start", describe(P.to_attrs()))
    return fig


def parameters(data: Data, s: DisentanglementSettings) -> str:
    """Return the model and the length of the run."""
    return f"{P}, t ≤ {s.t_max:g}."


def summary(data: Data, s: DisentanglementSettings) -> list[str]:
    """Return the score at the start and the end, and the final m."""
    ds = data["disentanglement.nc"]
    m_txt = "; ".join(", ".join(f"{x:.3f}" for x in row) for row in ds["m"].isel(t=-1).values)
    return ["", *table(
        ["quantity", "value", "theory"],
        [["disentanglement score at t = 0", f"{float(ds['score'][0]):.3f}", ""],
         ["disentanglement score at the end", f"{float(ds['score'][-1]):.4f}",
          "→ 1 (m diagonal up to sign/permutation)"],
         ["m at the end (rows: latents)", f"[{m_txt}]",
          "diagonal up to sign and permutation"]])]


FAMILY = register(FigureFamily(
    name="disentanglement", title="Disentanglement", about="m over t, M = M* = 2",
    quick=QUICK, full=FULL, tiny=TINY, compute=compute, plot=plot, parameters=parameters,
    summary=summary))
