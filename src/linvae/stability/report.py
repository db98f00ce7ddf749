"""The stability report: every fixed point of the ODEs and the thresholds, in one result.

:func:`stability_report` computes it; :class:`StabilityReport` renders itself as text
(``str``) and as a JSON-able dict (:meth:`StabilityReport.to_dict`), which is what
``linvae stability`` prints and writes.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..observables import ORDER_PARAMETERS
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
        (:func:`noise_threshold`). If M <= M* there is none, and this is the threshold
        of one more latent; the text, repr and :meth:`to_dict` then leave it out.
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
        """Return the report as text, in lines of fewer than 120 characters.

        Each fixed point is its repr and its order parameters (matrix rows aligned); then
        the thresholds, each next to its prediction. A latent or factor that is absent
        says so (a factor without a latent of its own) or is not mentioned (no
        superfluous latent when M <= M*).
        """
        p = self.params
        head = f"fixed points of the ODEs ({len(self.fixed_points)} found, up to symmetry) for"
        lines = ([f"{head} {p}:"] if len(f"{head} {p}:") <= WIDTH else
                 [head, *_wrap(f"{p}:", "  ", "    ", sep=", ")])
        for fp in self.fixed_points:
            lines += _wrap(repr(fp), "  ", "      ")
            for name in ORDER_PARAMETERS:
                prefix = f"    {name} = "
                lines += (prefix + np.array2string(fp.state[name], precision=4, prefix=prefix,
                                                   max_line_width=WIDTH)).splitlines()
        lines.append("thresholds (numerical; prediction of docs/model.md#findings in "
                     "parentheses):")
        for k, t in enumerate(self.collapse):
            if k >= p.M:
                lines.append(f"  collapse of factor {k}: none, no latent of its own "
                             f"(M = {p.M})")
            else:
                lines.append(f"  collapse of factor {k}: beta_c = {float(t):.6g}  "
                             f"(rho_k + eta = {t.predicted:g})")
        if self.has_superfluous:
            lines.append(f"  superfluous latent stops fitting noise: beta = "
                         f"{float(self.noise):.6g}  (eta = {self.noise.predicted:g})")
        if self.gamma_star is None:
            lines += _wrap(f"KL annealing: gamma* undefined ({self.gamma_star_error})", "  ",
                           "    ", sep=" ")
        else:
            lines.append(f"  KL annealing: gamma* = -J_max/2 = {self.gamma_star:.6g}")
        if self.tau_max is not None:
            lines.append(f"  step-size stability limit: tau_max = {float(self.tau_max):.6g}")
        return "\n".join(lines)

    @property
    def has_superfluous(self) -> bool:
        """Whether the model has a superfluous latent (M > M*), whose :attr:`noise` applies."""
        return self.params.M > self.params.M_star

    def __repr__(self) -> str:
        n_stable = sum(fp.stable for fp in self.fixed_points)
        parts = [f"{len(self.fixed_points)} fixed points, {n_stable} stable",
                 "beta_c = [" + ", ".join(f"{float(t):.6g}" for t in self.collapse) + "]",
                 *([f"noise beta = {float(self.noise):.6g}"] if self.has_superfluous else []),
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
        own), ``noise`` (only if there is a superfluous latent, M > M*), ``gamma_star``
        and ``tau_max``.
        """
        thr: dict[str, dict[str, float]] = {}
        for k, t in enumerate(self.collapse):
            if k < self.params.M:
                thr[f"collapse_{k}"] = _threshold_dict(t)
        if self.has_superfluous:
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


#: Lines of the text are shorter than this
WIDTH = 119


def _wrap(text: str, first: str, rest: str, *, sep: str = "; ") -> list[str]:
    """Return ``text`` in lines of at most WIDTH characters, broken after ``sep``.

    The first line starts with ``first``, the others with ``rest``; a part longer than a
    line is broken at spaces.
    """
    parts = text.split(sep)
    lines: list[str] = []
    line = first + parts[0]
    for part in parts[1:]:
        if len(line) + len(sep) + len(part) <= WIDTH:
            line += sep + part
        else:
            lines.append(line + sep.rstrip())
            line = rest + part
    lines.append(line)
    out: list[str] = []
    for ln in lines:
        indent = first if not out else rest
        out += textwrap.wrap(ln[len(indent):], WIDTH, initial_indent=indent,
                             subsequent_indent=rest, break_on_hyphens=False,
                             break_long_words=False) if len(ln) > WIDTH else [ln]
    return out


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
