"""The stability report: every fixed point of the ODEs and the thresholds, in one result.

:func:`stability_report` computes it; :class:`StabilityReport` renders itself as text
(``str``) and as a JSON-able dict (:meth:`StabilityReport.to_dict`), which is what
``linvae stability`` prints and writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..params import Params, check_params
from .search import FixedPoint, fixed_points
from .thresholds import (
    Threshold,
    annealing_threshold,
    collapse_thresholds,
    noise_threshold,
    step_size_limit,
)


@dataclass(frozen=True, eq=False)
class StabilityReport:
    """The fixed points of the ODEs at ``params`` and the thresholds derived from them.

    Attributes
    ----------
    params : Params
        The parameters.
    fixed_points : tuple of FixedPoint
        Every fixed point found, up to symmetry (:func:`fixed_points`).
    collapse : tuple of Threshold
        Collapse threshold beta_c of each factor k = 0 .. M* - 1, predicted rho_k + eta
        (:func:`collapse_thresholds`); NaN for a factor without a latent of its own
        (k >= M).
    noise : Threshold
        The beta above which a superfluous latent stops fitting the noise, predicted eta
        (:func:`noise_threshold`).
    gamma_star : float or None
        The annealing rate gamma* = -J_max/2 (:func:`annealing_threshold`); None if no
        fixed point is stable.
    gamma_star_error : str
        Why gamma* is None (the first line of the error); empty otherwise.
    tau_max : Threshold or None
        The step-size stability limit (:func:`step_size_limit`); None if not asked for.
    """

    params: Params
    fixed_points: tuple[FixedPoint, ...]
    collapse: tuple[Threshold, ...]
    noise: Threshold
    gamma_star: float | None
    gamma_star_error: str = ""
    tau_max: Threshold | None = None

    def __str__(self) -> str:
        p = self.params
        head = f"fixed points of the ODEs for {p} ({len(self.fixed_points)} found, up to symmetry):"
        lines = [head]
        lines += ["  " + fp.summary().replace("\n", "\n  ") for fp in self.fixed_points]
        lines.append("thresholds (numerical; prediction of docs/model.md#findings in "
                     "parentheses):")
        for k, t in enumerate(self.collapse):
            if k >= p.M:
                lines.append(f"  collapse of factor {k}: none, no latent of its own "
                             f"(M = {p.M})")
            else:
                lines.append(f"  collapse of factor {k}: beta_c = {float(t):.6g}  "
                             f"(rho_k + eta = {t.predicted:g})")
        lines.append(f"  superfluous latent stops fitting noise: beta = "
                     f"{float(self.noise):.6g}  (eta = {self.noise.predicted:g})")
        if self.gamma_star is None:
            lines.append(f"  KL annealing: gamma* undefined ({self.gamma_star_error})")
        else:
            lines.append(f"  KL annealing: gamma* = -J_max/2 = {self.gamma_star:.6g}")
        if self.tau_max is not None:
            lines.append(f"  step-size stability limit: tau_max = {float(self.tau_max):.6g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        n_stable = sum(fp.stable for fp in self.fixed_points)
        parts = [f"{len(self.fixed_points)} fixed points, {n_stable} stable",
                 "beta_c = [" + ", ".join(f"{float(t):.6g}" for t in self.collapse) + "]",
                 f"noise beta = {float(self.noise):.6g}",
                 "gamma* undefined" if self.gamma_star is None else
                 f"gamma* = {self.gamma_star:.6g}"]
        if self.tau_max is not None:
            parts.append(f"tau_max = {float(self.tau_max):.6g}")
        return f"StabilityReport({self.params!r}; {'; '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data.

        Keys ``params`` (the repr of the parameters), ``fixed_points`` (per fixed point
        its ``summary``, ``stable``, ``eg`` and ``max_real``) and ``thresholds``: each
        found threshold as ``{"value", "predicted"}`` (predicted NaN where there is no
        closed form) under ``collapse_<k>`` (only the factors with a latent of their
        own), ``noise``, ``gamma_star`` and ``tau_max``.
        """
        thr: dict[str, dict[str, float]] = {}
        for k, t in enumerate(self.collapse):
            if k < self.params.M:
                thr[f"collapse_{k}"] = _threshold_dict(t)
        thr["noise"] = _threshold_dict(self.noise)
        if self.gamma_star is not None:
            thr["gamma_star"] = _threshold_dict(self.gamma_star)
        if self.tau_max is not None:
            thr["tau_max"] = _threshold_dict(self.tau_max)
        return {"params": repr(self.params),
                "fixed_points": [{"summary": fp.summary(), "stable": bool(fp.stable),
                                  "eg": float(fp.eg), "max_real": float(fp.max_real)}
                                 for fp in self.fixed_points],
                "thresholds": thr}


def _threshold_dict(t: float) -> dict[str, float]:
    return {"value": float(t), "predicted": float(getattr(t, "predicted", math.nan))}


def stability_report(p: Params, *, step_limit: bool = False) -> StabilityReport:
    """Find every fixed point of the ODEs at ``p`` and the thresholds derived from them.

    Parameters
    ----------
    p : Params
        The parameters; a beta schedule is analysed at its limit beta_inf.
    step_limit : bool
        Also find the step-size stability limit tau_max (:func:`step_size_limit`, a
        bisection over tau: slower).

    Returns
    -------
    StabilityReport
        The fixed points, the collapse threshold of each factor, the noise-fitting
        threshold, gamma* (None, with the reason, if no fixed point is stable) and, with
        ``step_limit``, tau_max.
    """
    p = check_params(p)
    fps = tuple(fixed_points(p))
    collapse = tuple(collapse_thresholds(p))
    noise = noise_threshold(p)
    gamma_star: float | None = None
    gamma_star_error = ""
    try:
        gamma_star = annealing_threshold(p)
    except RuntimeError as exc:  # no stable fixed point: a finding, not a failure
        gamma_star_error = (str(exc).splitlines() or [type(exc).__name__])[0]
    tau_max = step_size_limit(p) if step_limit else None
    return StabilityReport(p, fps, collapse, noise, gamma_star, gamma_star_error, tau_max)
